/* chat.c - DeepSeek-V3 / R1 chat templates: recognition and rendering.
 *
 * The renderer is a transcription of the two Jinja templates (see chat.h and
 * tests/data/chat/README.md for where they come from).  Rendering runs in two
 * passes: normalise() validates the cJSON messages into a flat array of
 * chat_msg (borrowing strings from the cJSON tree, owning only joined
 * content parts), then render() walks it with the templates' namespace
 * flags. */
#include "common/chat.h"
#include "common/chat_int.h"
#include "common/pyjson.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Canonical-form hashes (dsa_chat_template_hash) of the recognised
 * templates: V3 from tests/data/deepseek-v3-tokenizer/
 * tokenizer_config.json, R1 from tests/data/chat/r1_chat_template.jinja.
 * test_chat.c recomputes both from the files. */
#define HASH_V3 UINT64_C(0x22af5c0c0fb56ec4)
#define HASH_R1 UINT64_C(0x61ad04999bc1f42b)
/* tests/data/chat/r1_distill_chat_template.jinja */
#define HASH_R1_DISTILL UINT64_C(0x601b3306184bcad6)

/* ---- buffer and UTF-8 helpers ------------------------------------------ */

dsa_err dsa_chat_buf_append(dsa_chat_buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p)
            return dsa_fail(DSA_NOMEM, "chat: out of memory (%zu bytes)",
                            cap);
        b->data = p;
        b->cap = cap;
    }
    if (n)
        memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
    return DSA_OK;
}

dsa_err dsa_chat_buf_puts(dsa_chat_buf *b, const char *s)
{
    return dsa_chat_buf_append(b, s, strlen(s));
}

void dsa_chat_buf_consume(dsa_chat_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
    } else {
        memmove(b->data, b->data + n, b->len - n);
        b->len -= n;
    }
    if (b->data)
        b->data[b->len] = '\0';
}

void dsa_chat_buf_deinit(dsa_chat_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

size_t dsa_chat_utf8_complete(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    /* Find the lead byte of the last (possibly partial) character. */
    size_t i = n, back = 0;
    while (i > 0 && back < 4) {
        i--;
        back++;
        if ((u[i] & 0xC0) != 0x80)
            break;
    }
    if (n == 0 || (u[i] & 0xC0) == 0x80)
        return n; /* only continuation bytes: not a sequence we can finish */
    size_t need = u[i] >= 0xF8   ? 1 /* never a lead byte */
                  : u[i] >= 0xF0 ? 4
                  : u[i] >= 0xE0 ? 3
                  : u[i] >= 0xC0 ? 2
                                 : 1;
    return n - i < need ? i : n;
}

/* ---- variants and recognition ------------------------------------------ */

const char *dsa_chat_variant_name(dsa_chat_variant v)
{
    switch (v) {
    case DSA_CHAT_V3: return "deepseek-v3";
    case DSA_CHAT_R1: return "deepseek-r1";
    case DSA_CHAT_R1_DISTILL: return "deepseek-r1-distill";
    default: return "unknown";
    }
}

dsa_err dsa_chat_variant_from_name(const char *name, dsa_chat_variant *out)
{
    if (name && (!strcasecmp(name, "v3") || !strcasecmp(name, "deepseek-v3")))
        *out = DSA_CHAT_V3;
    else if (name &&
             (!strcasecmp(name, "r1") || !strcasecmp(name, "deepseek-r1")))
        *out = DSA_CHAT_R1;
    else if (name && (!strcasecmp(name, "r1-distill") ||
                      !strcasecmp(name, "deepseek-r1-distill")))
        *out = DSA_CHAT_R1_DISTILL;
    else
        return dsa_fail(DSA_INVAL,
                        "chat template '%s': unknown name (expected v3, "
                        "deepseek-v3, r1, deepseek-r1, r1-distill, deepseek-r1-distill or auto)",
                        name ? name : "(null)");
    return DSA_OK;
}

static uint64_t fnv1a(uint64_t h, unsigned char c)
{
    return (h ^ c) * UINT64_C(0x100000001b3);
}

/* Canonical form, hashed on the fly: text outside tags byte for byte; inside
 * {{ }} and {% %} tags whitespace is dropped and string literals are
 * hashed after decoding their escapes, with a marker byte around them so
 * that "a"+"b" and "ab" differ; {# #} comments vanish. */
uint64_t dsa_chat_template_hash(const char *t)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    const char *p = t;
    while (*p) {
        if (p[0] == '{' && p[1] == '#') {
            const char *e = strstr(p + 2, "#}");
            p = e ? e + 2 : p + strlen(p);
            continue;
        }
        if (!(p[0] == '{' && (p[1] == '{' || p[1] == '%'))) {
            h = fnv1a(h, (unsigned char)*p++);
            continue;
        }
        char close = p[1] == '{' ? '}' : '%';
        h = fnv1a(h, (unsigned char)p[0]);
        h = fnv1a(h, (unsigned char)p[1]);
        p += 2;
        while (*p && !(p[0] == close && p[1] == '}')) {
            if (*p == '\'' || *p == '"') {
                char q = *p++;
                h = fnv1a(h, 0x01);
                while (*p && *p != q) {
                    unsigned char c = (unsigned char)*p++;
                    if (c == '\\' && *p) {
                        char e = *p++;
                        c = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r'
                                                                       : (unsigned char)e;
                    }
                    h = fnv1a(h, c);
                }
                if (*p)
                    p++;
                h = fnv1a(h, 0x01);
            } else if (isspace((unsigned char)*p)) {
                p++;
            } else {
                h = fnv1a(h, (unsigned char)*p++);
            }
        }
        if (*p) {
            h = fnv1a(h, (unsigned char)p[0]);
            h = fnv1a(h, (unsigned char)p[1]);
            p += 2;
        }
    }
    return h;
}

dsa_err dsa_chat_detect(const char *tmpl, dsa_chat_variant *out)
{
    if (!tmpl)
        return dsa_fail(DSA_NOTFOUND, "chat template: none in the checkpoint "
                                      "(set the chat-template override to "
                                      "v3 or r1)");
    uint64_t h = dsa_chat_template_hash(tmpl);
    if (h == HASH_V3) {
        *out = DSA_CHAT_V3;
        return DSA_OK;
    }
    if (h == HASH_R1) {
        *out = DSA_CHAT_R1;
        return DSA_OK;
    }
    if (h == HASH_R1_DISTILL) {
        *out = DSA_CHAT_R1_DISTILL;
        return DSA_OK;
    }
    const char *kind = strstr(tmpl, TOK_USER) && strstr(tmpl, TOK_ASSISTANT)
                           ? "a DeepSeek-style template, but not the "
                             "DeepSeek-V3 or DeepSeek-R1 template this server "
                             "renders"
                           : "not a DeepSeek-V3 or DeepSeek-R1 template";
    return dsa_fail(DSA_UNSUPPORTED,
                    "chat template (%zu bytes, canonical hash %016llx): %s; "
                    "set the chat-template override to v3, r1 or r1-distill to render "
                    "with one of those anyway",
                    strlen(tmpl), (unsigned long long)h, kind);
}

dsa_err dsa_chat_select(const char *tmpl, const char *override,
                        dsa_chat_variant *out)
{
    if (!override || !*override || !strcasecmp(override, "auto"))
        return dsa_chat_detect(tmpl, out);
    return dsa_chat_variant_from_name(override, out);
}

/* ---- normalisation ----------------------------------------------------- */

static void msgs_free(chat_msg *m, size_t n)
{
    if (!m)
        return;
    for (size_t i = 0; i < n; i++) {
        free(m[i].owned);
        free(m[i].calls);
    }
    free(m);
}

/* Content of message i: a string, or a list of text parts joined with "\n".
 * *present is false for null/absent content. */
static dsa_err content_get(const cJSON *msg, size_t i, chat_msg *m,
                           bool *present)
{
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(msg, "content");
    *present = false;
    if (!c || cJSON_IsNull(c))
        return DSA_OK;
    if (cJSON_IsString(c)) {
        m->content = c->valuestring;
        *present = true;
        return DSA_OK;
    }
    if (!cJSON_IsArray(c))
        return dsa_fail(DSA_INVAL, "messages[%zu].content: must be a string "
                                   "or an array of text parts", i);
    dsa_chat_buf b = {0};
    size_t j = 0;
    const cJSON *part;
    cJSON_ArrayForEach(part, c) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
        dsa_err err = DSA_OK;
        if (!cJSON_IsObject(part))
            err = dsa_fail(DSA_INVAL, "messages[%zu].content[%zu]: must be "
                                      "an object", i, j);
        else if (!cJSON_IsString(type) || strcmp(type->valuestring, "text"))
            err = dsa_fail(DSA_INVAL, "messages[%zu].content[%zu].type: "
                                      "must be \"text\" (only text parts are "
                                      "supported)", i, j);
        else if (!cJSON_IsString(text))
            err = dsa_fail(DSA_INVAL, "messages[%zu].content[%zu].text: must "
                                      "be a string", i, j);
        else if (j > 0)
            err = dsa_chat_buf_append(&b, "\n", 1);
        if (!err)
            err = dsa_chat_buf_puts(&b, text->valuestring);
        if (err) {
            dsa_chat_buf_deinit(&b);
            return err;
        }
        j++;
    }
    if (!b.data && dsa_chat_buf_append(&b, "", 0))
        return DSA_NOMEM;
    m->owned = b.data;
    m->content = b.data;
    *present = true;
    return DSA_OK;
}

static dsa_err calls_get(const cJSON *msg, size_t i, chat_msg *m)
{
    const cJSON *tcs = cJSON_GetObjectItemCaseSensitive(msg, "tool_calls");
    if (!tcs || cJSON_IsNull(tcs))
        return DSA_OK;
    if (!cJSON_IsArray(tcs))
        return dsa_fail(DSA_INVAL, "messages[%zu].tool_calls: must be an "
                                   "array", i);
    size_t n = (size_t)cJSON_GetArraySize(tcs);
    if (n == 0)
        return DSA_OK;
    m->calls = calloc(n, sizeof *m->calls);
    if (!m->calls)
        return dsa_fail(DSA_NOMEM, "chat: out of memory");
    size_t k = 0;
    const cJSON *tc;
    cJSON_ArrayForEach(tc, tcs) {
        chat_call *c = &m->calls[k];
        if (!cJSON_IsObject(tc))
            return dsa_fail(DSA_INVAL, "messages[%zu].tool_calls[%zu]: must "
                                       "be an object", i, k);
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(tc, "type");
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(tc, "function");
        if (type && !(cJSON_IsString(type) &&
                      !strcmp(type->valuestring, "function")))
            return dsa_fail(DSA_INVAL, "messages[%zu].tool_calls[%zu].type: "
                                       "must be \"function\"", i, k);
        if (!cJSON_IsObject(fn))
            return dsa_fail(DSA_INVAL, "messages[%zu].tool_calls[%zu]."
                                       "function: must be an object", i, k);
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        const cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
        if (!cJSON_IsString(name))
            return dsa_fail(DSA_INVAL, "messages[%zu].tool_calls[%zu]."
                                       "function.name: must be a string", i, k);
        if (!cJSON_IsString(args))
            return dsa_fail(DSA_INVAL, "messages[%zu].tool_calls[%zu]."
                                       "function.arguments: must be a string "
                                       "(JSON text)", i, k);
        c->type = "function";
        c->name = name->valuestring;
        c->arguments = args->valuestring;
        k++;
    }
    m->n_calls = n;
    return DSA_OK;
}

static dsa_err normalise(const cJSON *messages, chat_msg **out, size_t *n_out)
{
    if (!cJSON_IsArray(messages))
        return dsa_fail(DSA_INVAL, "messages: must be an array");
    size_t n = (size_t)cJSON_GetArraySize(messages);
    if (n == 0)
        return dsa_fail(DSA_INVAL, "messages: must not be empty");
    chat_msg *ms = calloc(n, sizeof *ms);
    if (!ms)
        return dsa_fail(DSA_NOMEM, "chat: out of memory");
    dsa_err err = DSA_OK;
    size_t i = 0;
    const cJSON *msg;
    cJSON_ArrayForEach(msg, messages) {
        chat_msg *m = &ms[i];
        if (!cJSON_IsObject(msg)) {
            err = dsa_fail(DSA_INVAL, "messages[%zu]: must be an object", i);
            goto fail;
        }
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(msg, "role");
        if (!role) {
            err = dsa_fail(DSA_INVAL, "messages[%zu].role: missing", i);
            goto fail;
        }
        if (!cJSON_IsString(role)) {
            err = dsa_fail(DSA_INVAL, "messages[%zu].role: must be a string",
                           i);
            goto fail;
        }
        const char *r = role->valuestring;
        if (!strcmp(r, "system"))
            m->role = ROLE_SYSTEM;
        else if (!strcmp(r, "user"))
            m->role = ROLE_USER;
        else if (!strcmp(r, "assistant"))
            m->role = ROLE_ASSISTANT;
        else if (!strcmp(r, "tool"))
            m->role = ROLE_TOOL;
        else {
            err = dsa_fail(DSA_INVAL, "messages[%zu].role: unsupported role "
                                      "'%.64s' (expected system, user, "
                                      "assistant or tool)", i, r);
            goto fail;
        }
        bool present;
        if ((err = content_get(msg, i, m, &present)))
            goto fail;
        if (m->role == ROLE_ASSISTANT && (err = calls_get(msg, i, m)))
            goto fail;
        if (m->calls && present && m->content[0] == '\0')
            present = false; /* "" with tool calls: the tool-call turn */
        if (!present) {
            m->content = NULL;
            if (!m->calls) {
                err = dsa_fail(DSA_INVAL, "messages[%zu].content: %s", i,
                               m->role == ROLE_ASSISTANT
                                   ? "missing (an assistant message needs "
                                     "content or tool_calls)"
                                   : "missing");
                goto fail;
            }
        }
        i++;
    }
    *out = ms;
    *n_out = n;
    return DSA_OK;
fail:
    msgs_free(ms, n);
    return err;
}

/* ---- rendering --------------------------------------------------------- */

/* The text of one tool call after its "<｜tool▁call▁begin｜>". */
static dsa_err put_call(dsa_chat_buf *b, const chat_call *c)
{
    dsa_err err;
    if ((err = dsa_chat_buf_puts(b, c->type)) ||
        (err = dsa_chat_buf_puts(b, TOK_SEP)) ||
        (err = dsa_chat_buf_puts(b, c->name)) ||
        (err = dsa_chat_buf_puts(b, "\n```json\n")) ||
        (err = dsa_chat_buf_puts(b, c->arguments)) ||
        (err = dsa_chat_buf_puts(b, "\n```" TOK_CALL_END)))
        return err;
    return DSA_OK;
}

/* Template state: the Jinja namespace of both templates. */
typedef struct chat_ns {
    bool is_first;        /* a tool call was rendered (never reset) */
    bool is_tool;         /* inside a run of tool outputs */
    bool is_output_first; /* no tool output rendered yet (never reset) */
} chat_ns;

#define PUT(s) do { if ((err = dsa_chat_buf_puts(b, (s)))) return err; } while (0)

static dsa_err render_assistant(dsa_chat_variant v, chat_ns *ns,
                                const chat_msg *m, dsa_chat_buf *b)
{
    dsa_err err;
    /* V3 (and the distills) take the tool-call branch when content is none;
     * R1 whenever the message has tool calls, and then also prints any
     * content. */
    bool tool_turn = v != DSA_CHAT_R1 ? m->content == NULL : m->calls != NULL;
    if (tool_turn) {
        ns->is_tool = false;
        for (size_t k = 0; k < m->n_calls; k++) {
            /* ns.is_first is never reset: only the conversation's first
             * call opens with "<｜Assistant｜><｜tool▁calls▁begin｜>"; every
             * later one, in any turn, starts with "\n". */
            bool opens = !ns->is_first;
            if (opens) {
                PUT(TOK_ASSISTANT);
                if (v == DSA_CHAT_R1 && m->content)
                    PUT(m->content);
                PUT(TOK_CALLS_BEGIN TOK_CALL_BEGIN);
                ns->is_first = true;
            } else {
                PUT("\n" TOK_CALL_BEGIN);
            }
            if ((err = put_call(b, &m->calls[k])))
                return err;
            /* V3 closes the section after each non-opening call. */
            if (v != DSA_CHAT_R1 && !opens)
                PUT(TOK_CALLS_END TOK_EOS);
        }
        if (v == DSA_CHAT_R1)
            PUT(TOK_CALLS_END TOK_EOS);
        return DSA_OK;
    }
    if (ns->is_tool) {
        PUT(TOK_OUTPUTS_END);
        PUT(m->content);
        PUT(TOK_EOS);
        ns->is_tool = false;
        return DSA_OK;
    }
    const char *content = m->content;
    if (dsa_chat_variant_reasons(v)) {
        /* content.split('</think>')[-1] */
        const char *p;
        while ((p = strstr(content, "</think>")))
            content = p + strlen("</think>");
    }
    PUT(TOK_ASSISTANT);
    PUT(content);
    PUT(TOK_EOS);
    return DSA_OK;
}

static dsa_err render(dsa_chat_variant v, const chat_msg *ms, size_t n,
                      bool add_generation_prompt, const char *bos,
                      dsa_chat_buf *b)
{
    dsa_err err;
    chat_ns ns = {.is_first = false, .is_tool = false,
                  .is_output_first = true};

    PUT(bos ? bos : "");
    bool first_sp = true;
    for (size_t i = 0; i < n; i++) {
        if (ms[i].role != ROLE_SYSTEM)
            continue;
        /* the distills' ns.system_prompt = message['content']: the last wins */
        if (v == DSA_CHAT_R1_DISTILL) {
            size_t last = i;
            for (size_t j = i + 1; j < n; j++)
                if (ms[j].role == ROLE_SYSTEM)
                    last = j;
            PUT(ms[last].content);
            break;
        }
        if (!first_sp)
            PUT("\n\n");
        PUT(ms[i].content);
        first_sp = false;
    }
    for (size_t i = 0; i < n; i++) {
        const chat_msg *m = &ms[i];
        switch (m->role) {
        case ROLE_SYSTEM:
            break;
        case ROLE_USER:
            ns.is_tool = false;
            PUT(TOK_USER);
            PUT(m->content);
            break;
        case ROLE_ASSISTANT:
            if ((err = render_assistant(v, &ns, m, b)))
                return err;
            break;
        case ROLE_TOOL:
            ns.is_tool = true;
            if (ns.is_output_first) {
                PUT(TOK_OUTPUTS_BEGIN);
                ns.is_output_first = false;
            } else if (v != DSA_CHAT_R1) {
                PUT("\n");
            }
            PUT(TOK_OUTPUT_BEGIN);
            PUT(m->content);
            PUT(TOK_OUTPUT_END);
            break;
        }
    }
    if (ns.is_tool)
        PUT(TOK_OUTPUTS_END);
    if (add_generation_prompt && !ns.is_tool)
        PUT(dsa_chat_variant_reasons(v) ? TOK_ASSISTANT "<think>\n" : TOK_ASSISTANT);
    return DSA_OK;
}

#undef PUT

/* Both entry points: the messages normalised, then the model's template or,
 * with tools, vLLM's tool template. */
static dsa_err render_chat(dsa_chat_variant v, const cJSON *messages, const cJSON *tools,
                           bool add_generation_prompt, const char *bos_token, char **out)
{
    if ((int)v < 0 || (int)v >= DSA_CHAT_VARIANT_COUNT)
        return dsa_fail(DSA_INVAL, "chat: unknown template variant %d", (int)v);
    chat_msg *ms = NULL;
    size_t n = 0;
    dsa_err err = normalise(messages, &ms, &n);
    if (err)
        return err;
    dsa_chat_buf b = {0};
    if (!(err = dsa_chat_buf_append(&b, "", 0)))
        err = tools ? dsa_chat_render_tool_template(ms, n, tools, add_generation_prompt, bos_token, &b)
                    : render(v, ms, n, add_generation_prompt, bos_token, &b);
    msgs_free(ms, n);
    if (err) {
        dsa_chat_buf_deinit(&b);
        return err;
    }
    *out = b.data;
    return DSA_OK;
}

dsa_err dsa_chat_render(dsa_chat_variant v, const cJSON *messages,
                        bool add_generation_prompt, const char *bos_token,
                        char **out)
{
    return render_chat(v, messages, NULL, add_generation_prompt, bos_token, out);
}

dsa_err dsa_chat_render_tools(dsa_chat_variant v, const cJSON *messages, const cJSON *tools,
                              bool add_generation_prompt, const char *bos_token, char **out)
{
    if (!cJSON_IsArray(tools) || cJSON_GetArraySize(tools) == 0)
        tools = NULL;
    return render_chat(v, messages, tools, add_generation_prompt, bos_token, out);
}

/* Python's str.strip() for the whitespace a message can carry. */
static void strip_ws(const char **s, size_t *n)
{
    while (*n && strchr(" \t\n\r\v\f", (*s)[0]))
        (*s)++, (*n)--;
    while (*n && strchr(" \t\n\r\v\f", (*s)[*n - 1]))
        (*n)--;
}

dsa_err dsa_chat_continue_final(const cJSON *messages, char *text)
{
    const cJSON *last = NULL, *it;
    cJSON_ArrayForEach(it, messages)
        last = it;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(last, "content");
    const char *s = NULL;
    if (cJSON_IsString(c)) {
        s = c->valuestring;
    } else if (cJSON_IsArray(c)) {
        /* transformers continues the last part that has text */
        for (const cJSON *p = c->child; p; p = p->next) {
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "text");
            if (cJSON_IsString(t))
                s = t->valuestring;
        }
    }
    if (!s)
        return dsa_fail(DSA_INVAL, "continue_final_message is set but the final message has "
                        "no text to continue");
    size_t n = strlen(s);
    strip_ws(&s, &n);
    if (n == 0) /* "" is found at the end: nothing is cut */
        return DSA_OK;
    /* the last occurrence of the stripped text, as str.rindex finds it */
    size_t len = strlen(text);
    char *hit = NULL;
    for (char *p = text; (size_t)(p - text) + n <= len;) {
        char *q = memmem(p, len - (size_t)(p - text), s, n);
        if (!q)
            break;
        hit = q;
        p = q + 1;
    }
    if (!hit)
        return dsa_fail(DSA_INVAL, "continue_final_message is set but the final message does "
                        "not appear in the chat after applying the chat template");
    hit[n] = 0;
    return DSA_OK;
}
