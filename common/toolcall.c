/* toolcall.c - streaming parser for DeepSeek tool-call tokens (see
 * toolcall.h).
 *
 * Like reasoning.c, every decision is taken on `pending`, the undecided
 * tail of the input, and bytes leave it only once later input cannot change
 * their fate; that makes the output independent of the input's split.
 * `raw` keeps the section's literal text since the last complete call, so
 * that a malformed call can be handed back as plain content verbatim. */
#include "common/toolcall.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CALLS_BEGIN "<｜tool▁calls▁begin｜>"
#define CALLS_END "<｜tool▁calls▁end｜>"
#define CALL_BEGIN "<｜tool▁call▁begin｜>"
#define CALL_END "<｜tool▁call▁end｜>"
#define SEP "<｜tool▁sep｜>"

enum {
    TC_TEXT,    /* plain content */
    TC_SECTION, /* inside the call section, between calls */
    TC_CALL,    /* inside a call body */
};

dsa_err dsa_toolcall_init(dsa_toolcall_parser *p, const char *id_prefix)
{
    memset(p, 0, sizeof *p);
    p->state = TC_TEXT;
    p->id_prefix = strdup(id_prefix ? id_prefix : "call_");
    if (!p->id_prefix)
        return dsa_fail(DSA_NOMEM, "toolcall: out of memory");
    return DSA_OK;
}

void dsa_toolcall_deinit(dsa_toolcall_parser *p)
{
    for (size_t i = 0; i < p->n_calls; i++) {
        free(p->calls[i].id);
        free(p->calls[i].name);
        free(p->calls[i].arguments);
    }
    free(p->calls);
    free(p->id_prefix);
    dsa_chat_buf_deinit(&p->pending);
    dsa_chat_buf_deinit(&p->raw);
    dsa_chat_buf_deinit(&p->body);
    dsa_chat_buf_deinit(&p->content);
    memset(p, 0, sizeof *p);
}

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static const char *find(const char *h, size_t hn, const char *needle)
{
    size_t nn = strlen(needle);
    for (size_t i = 0; i + nn <= hn; i++)
        if (!memcmp(h + i, needle, nn))
            return h + i;
    return NULL;
}

static int starts(const char *s, size_t n, const char *tag)
{
    size_t t = strlen(tag);
    return n >= t && !memcmp(s, tag, t);
}

/* s[0..n) is a proper, non-empty prefix of tag. */
static int is_partial(const char *s, size_t n, const char *tag)
{
    return n > 0 && n < strlen(tag) && !memcmp(s, tag, n);
}

/* Longest suffix of s[0..n) that is a proper prefix of tag. */
static size_t partial_suffix(const char *s, size_t n, const char *tag)
{
    size_t t = strlen(tag);
    for (size_t k = t - 1 < n ? t - 1 : n; k > 0; k--)
        if (!memcmp(s + n - k, tag, k))
            return k;
    return 0;
}

static char *dup_trim(const char *s, size_t n)
{
    while (n > 0 && is_ws(*s))
        s++, n--;
    while (n > 0 && is_ws(s[n - 1]))
        n--;
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* Where a call body's arguments start, from `from` (just after the name
 * line): whitespace and an opening ```json line are skipped.  Returns 1
 * while the input so far cannot tell (final = no more input). */
static int args_start(const char *b, size_t n, size_t from, int final, size_t *at)
{
    size_t a = from;
    while (a < n && is_ws(b[a]))
        a++;
    if (!final && n - a < 3 && !memcmp(b + a, "```", n - a))
        return 1; /* nothing yet, or "`"/"``" that may open a fence */
    if (n - a >= 3 && !memcmp(b + a, "```", 3)) {
        const char *line = memchr(b + a, '\n', n - a);
        if (!line && !final)
            return 1;
        a = line ? (size_t)(line - b) + 1 : n;
        while (a < n && is_ws(b[a]))
            a++;
    }
    *at = a;
    return 0;
}

/* Splits a whole body "TYPE<｜tool▁sep｜>NAME\n```json\nARGS\n```" into its
 * name and arguments (both untrimmed).  DSA_FORMAT without a separator. */
static dsa_err split_body(const char *b, size_t n, const char **name, size_t *n_name,
                          const char **args, size_t *n_args)
{
    const char *sep = find(b, n, SEP);
    if (!sep)
        return DSA_FORMAT;
    const char *nm = sep + strlen(SEP), *end = b + n;
    const char *nl = memchr(nm, '\n', (size_t)(end - nm));
    *name = nm;
    *n_name = (size_t)((nl ? nl : end) - nm);
    size_t from = nl ? (size_t)(nl + 1 - b) : n, at, k0 = from;
    args_start(b, n, from, 1, &at);
    const char *a = b + at, *a_end = end;
    /* with a fence, the arguments end at the last closing fence */
    while (k0 < n && is_ws(b[k0]))
        k0++;
    if (n - k0 >= 3 && !memcmp(b + k0, "```", 3))
        for (size_t k = (size_t)(a_end - a); k >= 3; k--)
            if (!memcmp(a + k - 3, "```", 3)) {
                a_end = a + k - 3;
                break;
            }
    *args = a;
    *n_args = (size_t)(a_end - a);
    return DSA_OK;
}

static dsa_err set_arguments(dsa_toolcall *c, const char *a, size_t n)
{
    char *d = dup_trim(a, n);
    if (!d)
        return dsa_fail(DSA_NOMEM, "toolcall: out of memory");
    if (!d[0]) {
        free(d);
        if (!(d = strdup("{}")))
            return dsa_fail(DSA_NOMEM, "toolcall: out of memory");
    }
    free(c->arguments);
    c->arguments = d;
    c->n_arguments = strlen(d);
    return DSA_OK;
}

/* Appends a call named name[0..n) (trimmed) with empty arguments.
 * DSA_FORMAT when the name is empty. */
static dsa_err new_call(dsa_toolcall_parser *p, const char *name, size_t n)
{
    dsa_toolcall c = {0};
    c.name = dup_trim(name, n);
    c.arguments = strdup("");
    if (c.name && !c.name[0]) {
        free(c.name);
        free(c.arguments);
        return DSA_FORMAT;
    }
    size_t n_id = strlen(p->id_prefix) + 24;
    c.id = malloc(n_id);
    if (c.id)
        snprintf(c.id, n_id, "%s%zu", p->id_prefix, p->n_calls);
    if (!c.name || !c.arguments || !c.id)
        goto nomem;
    if (p->n_calls == p->cap_calls) {
        size_t cap = p->cap_calls ? 2 * p->cap_calls : 4;
        dsa_toolcall *nc = realloc(p->calls, cap * sizeof *nc);
        if (!nc)
            goto nomem;
        p->calls = nc;
        p->cap_calls = cap;
    }
    p->calls[p->n_calls++] = c;
    return DSA_OK;
nomem:
    free(c.id);
    free(c.name);
    free(c.arguments);
    return dsa_fail(DSA_NOMEM, "toolcall: out of memory");
}

/* Parses a whole call body into a new call.  DSA_FORMAT when the body is
 * not a call (no separator, empty name). */
static dsa_err add_call(dsa_toolcall_parser *p, const char *b, size_t n)
{
    const char *name, *args;
    size_t n_name, n_args;
    dsa_err err = split_body(b, n, &name, &n_name, &args, &n_args);
    if (!err)
        err = new_call(p, name, n_name);
    if (!err && (err = set_arguments(&p->calls[p->n_calls - 1], args, n_args))) {
        dsa_toolcall *c = &p->calls[--p->n_calls];
        free(c->id);
        free(c->name);
        free(c->arguments);
    }
    return err;
}

/* The body so far opens a call once its name line is complete: the call is
 * handed on from then on, its arguments growing as they come. */
static dsa_err open_call(dsa_toolcall_parser *p)
{
    const char *b = p->body.data;
    size_t n = p->body.len;
    const char *sep = b ? find(b, n, SEP) : NULL;
    if (!sep)
        return DSA_OK;
    const char *name = sep + strlen(SEP);
    const char *nl = memchr(name, '\n', (size_t)(b + n - name));
    if (!nl)
        return DSA_OK;
    dsa_err err = new_call(p, name, (size_t)(nl - name));
    if (err == DSA_FORMAT)
        return DSA_OK; /* an empty name: decided at the call's end */
    if (err)
        return err;
    p->open = 1;
    p->name_end = (size_t)(nl + 1 - b);
    return DSA_OK;
}

/* Moves the open call's arguments on to what the body now settles: never
 * past a "```" (the closing fence may follow), trailing whitespace or a
 * cut UTF-8 character, so what was handed on stays a prefix of the final
 * arguments (split_body + trim). */
static dsa_err stream_args(dsa_toolcall_parser *p, int final)
{
    if (!p->open)
        return DSA_OK;
    dsa_toolcall *c = &p->calls[p->n_calls - 1];
    const char *b = p->body.data;
    size_t n = p->body.len, at;
    if (args_start(b, n, p->name_end, final, &at))
        return DSA_OK;
    const char *f = find(b + at, n - at, "```");
    size_t end = f ? (size_t)(f - b) : n - partial_suffix(b + at, n - at, "```");
    while (end > at && is_ws(b[end - 1]))
        end--;
    end = at + dsa_chat_utf8_complete(b + at, end - at);
    if (end - at <= c->n_arguments)
        return DSA_OK;
    size_t add = end - at - c->n_arguments;
    char *a = realloc(c->arguments, c->n_arguments + add + 1);
    if (!a)
        return dsa_fail(DSA_NOMEM, "toolcall: out of memory");
    memcpy(a + c->n_arguments, b + at + c->n_arguments, add);
    c->n_arguments += add;
    a[c->n_arguments] = '\0';
    c->arguments = a;
    return DSA_OK;
}

/* Ends the open call at its "<｜tool▁call▁end｜>" (complete = 1: its
 * arguments become the whole fenced text) or cut short by a marker or the
 * end of output (the arguments stay as handed on, "{}" when none). */
static dsa_err close_call(dsa_toolcall_parser *p, int complete)
{
    dsa_toolcall *c = &p->calls[p->n_calls - 1];
    const char *name, *args;
    size_t n_name, n_args;
    dsa_err err = DSA_OK;
    if (complete && !split_body(p->body.data, p->body.len, &name, &n_name, &args, &n_args))
        err = set_arguments(c, args, n_args);
    else if (!complete && !(err = stream_args(p, 1)) && c->n_arguments == 0)
        err = set_arguments(c, "{}", 2);
    p->open = 0;
    dsa_chat_buf_consume(&p->raw, p->raw.len);
    dsa_chat_buf_consume(&p->body, p->body.len);
    p->n_section_calls++;
    return err;
}

static dsa_err take(dsa_toolcall_parser *p, dsa_chat_buf *to, size_t n)
{
    dsa_err err = dsa_chat_buf_append(to, p->pending.data, n);
    if (!err)
        dsa_chat_buf_consume(&p->pending, n);
    return err;
}

/* Hands the section's raw text (and the current body) back as content. */
static dsa_err give_back_raw(dsa_toolcall_parser *p)
{
    dsa_err err = dsa_chat_buf_append(&p->content, p->raw.data, p->raw.len);
    if (!err)
        err = dsa_chat_buf_append(&p->content, p->body.data, p->body.len);
    dsa_chat_buf_consume(&p->raw, p->raw.len);
    dsa_chat_buf_consume(&p->body, p->body.len);
    return err;
}

static dsa_err step(dsa_toolcall_parser *p, int final)
{
    dsa_chat_buf *q = &p->pending;
    dsa_err err;
    for (;;) {
        const char *s = q->data;
        size_t n = q->len;
        switch (p->state) {
        case TC_TEXT: {
            const char *e = find(s, n, CALLS_BEGIN);
            if (e) {
                if ((err = take(p, &p->content, (size_t)(e - s))))
                    return err;
                dsa_chat_buf_consume(&p->raw, p->raw.len);
                if ((err = take(p, &p->raw, strlen(CALLS_BEGIN))))
                    return err;
                p->n_section_calls = 0;
                p->state = TC_SECTION;
                break;
            }
            if (final)
                return take(p, &p->content, n);
            size_t safe = n - partial_suffix(s, n, CALLS_BEGIN);
            return take(p, &p->content, dsa_chat_utf8_complete(s, safe));
        }
        case TC_SECTION: {
            size_t k = 0;
            while (k < n && is_ws(s[k]))
                k++;
            if (k && (err = take(p, &p->raw, k)))
                return err;
            s = q->data;
            n = q->len;
            if (starts(s, n, CALL_BEGIN)) {
                if ((err = take(p, &p->raw, strlen(CALL_BEGIN))))
                    return err;
                p->state = TC_CALL;
                break;
            }
            if (starts(s, n, CALLS_END)) {
                dsa_chat_buf_consume(q, strlen(CALLS_END));
                dsa_chat_buf_consume(&p->raw, p->raw.len);
                p->state = TC_TEXT;
                break;
            }
            if (!final && (n == 0 || is_partial(s, n, CALL_BEGIN) ||
                           is_partial(s, n, CALLS_END)))
                return DSA_OK;
            if (n == 0 && p->n_section_calls > 0) {
                /* Output ended after complete calls without
                 * "<｜tool▁calls▁end｜>": fine, drop the whitespace. */
                dsa_chat_buf_consume(&p->raw, p->raw.len);
            } else if ((err = give_back_raw(p))) {
                /* Stray text, or a section with no call: plain content. */
                return err;
            }
            p->state = TC_TEXT;
            if (n == 0)
                return DSA_OK;
            break;
        }
        case TC_CALL: {
            const char *e_end = find(s, n, CALL_END);
            const char *e_begin = find(s, n, CALL_BEGIN);
            const char *e_close = find(s, n, CALLS_END);
            const char *e_bad = e_begin;
            if (e_close && (!e_bad || e_close < e_bad))
                e_bad = e_close;
            if (e_end && (!e_bad || e_end < e_bad)) {
                if ((err = take(p, &p->body, (size_t)(e_end - s))))
                    return err;
                if (p->open) {
                    dsa_chat_buf_consume(q, strlen(CALL_END));
                    if ((err = close_call(p, 1)))
                        return err;
                    p->state = TC_SECTION;
                    break;
                }
                err = add_call(p, p->body.data, p->body.len);
                if (err == DSA_OK) {
                    dsa_chat_buf_consume(q, strlen(CALL_END));
                    dsa_chat_buf_consume(&p->raw, p->raw.len);
                    dsa_chat_buf_consume(&p->body, p->body.len);
                    p->n_section_calls++;
                } else if (err == DSA_FORMAT) {
                    if ((err = take(p, &p->body, strlen(CALL_END))) ||
                        (err = give_back_raw(p)))
                        return err;
                } else {
                    return err;
                }
                p->state = TC_SECTION;
                break;
            }
            if (e_bad) {
                /* A call cut short by the next marker: plain content, or,
                 * once handed on, a call with the arguments it has. */
                if ((err = take(p, &p->body, (size_t)(e_bad - s))) ||
                    (!p->open && (err = open_call(p))) ||
                    (err = p->open ? close_call(p, 0) : give_back_raw(p)))
                    return err;
                p->state = TC_SECTION;
                break;
            }
            if (final) {
                /* Output ended inside a call: as above. */
                if ((err = take(p, &p->body, n)) || (!p->open && (err = open_call(p))) ||
                    (err = p->open ? close_call(p, 0) : give_back_raw(p)))
                    return err;
                p->state = TC_TEXT;
                return DSA_OK;
            }
            size_t hold = partial_suffix(s, n, CALL_END);
            size_t h2 = partial_suffix(s, n, CALL_BEGIN);
            size_t h3 = partial_suffix(s, n, CALLS_END);
            if (h2 > hold)
                hold = h2;
            if (h3 > hold)
                hold = h3;
            if ((err = take(p, &p->body, n - hold)) || (!p->open && (err = open_call(p))))
                return err;
            return stream_args(p, 0);
        }
        }
    }
}

static dsa_err deliver(dsa_toolcall_parser *p, size_t i_first, dsa_err err,
                       dsa_toolcall_delta *out)
{
    if (!err && !p->content.data)
        err = dsa_chat_buf_append(&p->content, "", 0);
    if (err) {
        *out = (dsa_toolcall_delta){"", 0, i_first, 0};
        return err;
    }
    *out = (dsa_toolcall_delta){p->content.data, p->content.len, i_first,
                                p->n_calls - i_first};
    return DSA_OK;
}

dsa_err dsa_toolcall_feed(dsa_toolcall_parser *p, const char *data, size_t n,
                          dsa_toolcall_delta *out)
{
    size_t i_first = p->n_calls;
    dsa_chat_buf_consume(&p->content, p->content.len);
    dsa_err err = dsa_chat_buf_append(&p->pending, data, n);
    if (!err)
        err = step(p, 0);
    return deliver(p, i_first, err, out);
}

dsa_err dsa_toolcall_finish(dsa_toolcall_parser *p, dsa_toolcall_delta *out)
{
    size_t i_first = p->n_calls;
    dsa_chat_buf_consume(&p->content, p->content.len);
    dsa_err err = dsa_chat_buf_append(&p->pending, "", 0);
    if (!err)
        err = step(p, 1);
    return deliver(p, i_first, err, out);
}

dsa_err dsa_toolcall_to_json(const dsa_toolcall *calls, size_t n,
                             cJSON **out)
{
    cJSON *arr = cJSON_CreateArray();
    if (!arr)
        goto nomem;
    for (size_t i = 0; i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        if (!o)
            goto nomem;
        cJSON_AddItemToArray(arr, o);
        cJSON *fn;
        if (!cJSON_AddStringToObject(o, "id", calls[i].id) ||
            !cJSON_AddStringToObject(o, "type", "function") ||
            !(fn = cJSON_AddObjectToObject(o, "function")) ||
            !cJSON_AddStringToObject(fn, "name", calls[i].name) ||
            !cJSON_AddStringToObject(fn, "arguments", calls[i].arguments))
            goto nomem;
    }
    *out = arr;
    return DSA_OK;
nomem:
    cJSON_Delete(arr);
    return dsa_fail(DSA_NOMEM, "toolcall: out of memory");
}
