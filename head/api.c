/* api.c - OpenAI request parsing/validation and response formatting (see
 * api.h).  Responses are written by hand into a dsa_jbuf rather than built
 * as cJSON trees: field order matches OpenAI's and a streamed token costs
 * one buffer append instead of a tree. */
#include "head/api.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "head/json_in.h"
#include "head/tools.h"

/* ---- buffer ---------------------------------------------------------------- */

static int jbuf_reserve(dsa_jbuf *b, size_t n)
{
    if (b->oom)
        return -1;
    if (b->len + n + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1)
        cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) {
        b->oom = 1;
        return -1;
    }
    b->data = d;
    b->cap = cap;
    return 0;
}

void dsa_jbuf_put(dsa_jbuf *b, const char *s, size_t n)
{
    if (jbuf_reserve(b, n))
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
}

void dsa_jbuf_puts(dsa_jbuf *b, const char *s)
{
    dsa_jbuf_put(b, s, strlen(s));
}

void dsa_jbuf_printf(dsa_jbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char tmp[256];
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof tmp) {
        dsa_jbuf_put(b, tmp, (size_t)n);
        return;
    }
    if (jbuf_reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when invalid. */
static int utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    int len;
    unsigned min;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, min = 0x10000;
    else
        return 0;
    if ((size_t)len > n)
        return 0;
    unsigned cp = c & (0x3f >> (len - 1));
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

size_t dsa_api_text_chars(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t chars = 0;
    for (size_t i = 0; i < n; chars++) {
        int l = utf8_len(p + i, n - i);
        i += l ? (size_t)l : 1;
    }
    return chars;
}

void dsa_jbuf_str(dsa_jbuf *b, const char *s, size_t n)
{
    if (jbuf_reserve(b, n + 2))
        return;
    dsa_jbuf_put(b, "\"", 1);
    const unsigned char *p = (const unsigned char *)s;
    size_t run = 0; /* bytes copied verbatim, flushed in one put */
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            run++;
            i++;
            continue;
        }
        if (c >= 0x80) {
            int l = utf8_len(p + i, n - i);
            if (l) {
                run += (size_t)l;
                i += (size_t)l;
                continue;
            }
        }
        dsa_jbuf_put(b, (const char *)p + i - run, run);
        run = 0;
        switch (c) {
        case '"': dsa_jbuf_put(b, "\\\"", 2); break;
        case '\\': dsa_jbuf_put(b, "\\\\", 2); break;
        case '\n': dsa_jbuf_put(b, "\\n", 2); break;
        case '\r': dsa_jbuf_put(b, "\\r", 2); break;
        case '\t': dsa_jbuf_put(b, "\\t", 2); break;
        default:
            if (c < 0x20)
                dsa_jbuf_printf(b, "\\u%04x", c);
            else
                dsa_jbuf_put(b, "\xef\xbf\xbd", 3); /* invalid byte: U+FFFD */
        }
        i++;
    }
    dsa_jbuf_put(b, (const char *)p + n - run, run);
    dsa_jbuf_put(b, "\"", 1);
}

void dsa_jbuf_float(dsa_jbuf *b, double v)
{
    if (!isfinite(v))
        v = -9999.0;
    dsa_jbuf_printf(b, "%.9g", v);
}

void dsa_jbuf_reset(dsa_jbuf *b)
{
    b->len = 0;
    b->oom = 0;
    if (b->data)
        b->data[0] = 0;
}

void dsa_jbuf_deinit(dsa_jbuf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* ---- errors ---------------------------------------------------------------- */

const char *dsa_api_error_type(int status)
{
    switch (status) {
    case 400: case 413: case 404: case 405: return "invalid_request_error";
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 429: return "rate_limit_error";
    case 503: return "service_unavailable";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

dsa_err dsa_api_fail(dsa_api_error *e, int status, const char *param, const char *fmt, ...)
{
    e->status = status;
    e->type = dsa_api_error_type(status);
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return DSA_INVAL;
}

void dsa_api_error_json(dsa_jbuf *b, const dsa_api_error *e)
{
    dsa_jbuf_puts(b, "{\"error\":{\"message\":");
    dsa_jbuf_str(b, e->message, strlen(e->message));
    dsa_jbuf_puts(b, ",\"type\":");
    const char *type = e->type ? e->type : dsa_api_error_type(e->status);
    dsa_jbuf_str(b, type, strlen(type));
    dsa_jbuf_puts(b, ",\"param\":");
    if (e->param[0])
        dsa_jbuf_str(b, e->param, strlen(e->param));
    else
        dsa_jbuf_puts(b, "null");
    dsa_jbuf_printf(b, ",\"code\":%d}}", e->status);
}

/* ---- request parsing ---------------------------------------------------- */

typedef struct num_field {
    const char *name;
    double *out;
    double lo, hi;
    int lo_open;    /* lo excluded */
} num_field;

static dsa_err get_number(const cJSON *root, const char *name, double lo, double hi,
                          int lo_open, double *out, dsa_api_error *e)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!v || cJSON_IsNull(v))
        return DSA_OK;
    if (!cJSON_IsNumber(v))
        return dsa_api_fail(e, 400, name, "'%s' must be a number", name);
    double d = v->valuedouble;
    if (!isfinite(d) || d < lo || d > hi || (lo_open && d == lo))
        return dsa_api_fail(e, 400, name, "'%s' must be in %s%g, %g], got %g", name,
                            lo_open ? "(" : "[", lo, hi, d);
    *out = d;
    return DSA_OK;
}

static dsa_err get_int(const cJSON *root, const char *name, double lo, double hi,
                       int64_t *out, dsa_api_error *e)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!v || cJSON_IsNull(v))
        return DSA_OK;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
        return dsa_api_fail(e, 400, name, "'%s' must be an integer", name);
    double d = v->valuedouble;
    if (d < lo || d > hi)
        return dsa_api_fail(e, 400, name, "'%s' must be in [%.0f, %.0f], got %.0f", name, lo,
                            hi, d);
    *out = (int64_t)d;
    return DSA_OK;
}

static dsa_err get_bool(const cJSON *root, const char *name, int *out, dsa_api_error *e)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!v || cJSON_IsNull(v))
        return DSA_OK;
    if (!cJSON_IsBool(v))
        return dsa_api_fail(e, 400, name, "'%s' must be a boolean", name);
    *out = cJSON_IsTrue(v);
    return DSA_OK;
}

static dsa_err parse_ids(const cJSON *arr, const char *param, int32_t **ids, int32_t *n,
                         dsa_api_error *e)
{
    int count = cJSON_GetArraySize(arr);
    *ids = malloc((size_t)(count > 0 ? count : 1) * sizeof **ids);
    if (!*ids)
        return DSA_NOMEM;
    *n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble) ||
            it->valuedouble < 0 || it->valuedouble > INT32_MAX) {
            free(*ids);
            *ids = NULL;
            return dsa_api_fail(e, 400, param, "'%s' must hold non-negative integer token ids",
                                param);
        }
        (*ids)[(*n)++] = (int32_t)it->valuedouble;
    }
    return DSA_OK;
}

static dsa_err parse_prompt(const cJSON *root, dsa_api_request *r, dsa_api_error *e)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "prompt");
    if (!p || cJSON_IsNull(p))
        return dsa_api_fail(e, 400, "prompt", "'prompt' is required");
    if (cJSON_IsString(p)) {
        r->prompts = calloc(1, sizeof *r->prompts);
        if (!r->prompts || !(r->prompts[0].text = strdup(p->valuestring)))
            return DSA_NOMEM;
        r->prompts[0].n_text = strlen(p->valuestring);
        r->n_prompts = 1;
        return DSA_OK;
    }
    if (!cJSON_IsArray(p) || r->kind == DSA_API_GENERATE)
        return dsa_api_fail(e, 400, "prompt", "'prompt' must be a string%s",
                            r->kind == DSA_API_GENERATE
                                ? ""
                                : ", a list of strings, a list of token ids or a list of "
                                  "token id lists");
    int n = cJSON_GetArraySize(p);
    if (n == 0)
        return dsa_api_fail(e, 400, "prompt", "'prompt' must not be empty");
    const cJSON *first = p->child;
    if (cJSON_IsNumber(first)) {
        r->prompts = calloc(1, sizeof *r->prompts);
        if (!r->prompts)
            return DSA_NOMEM;
        r->n_prompts = 1;
        return parse_ids(p, "prompt", &r->prompts[0].ids, &r->prompts[0].n_ids, e);
    }
    if (n > DSA_API_MAX_PROMPTS)
        return dsa_api_fail(e, 400, "prompt", "at most %d prompts per request",
                            DSA_API_MAX_PROMPTS);
    r->prompts = calloc((size_t)n, sizeof *r->prompts);
    if (!r->prompts)
        return DSA_NOMEM;
    const cJSON *it;
    cJSON_ArrayForEach(it, p) {
        dsa_api_prompt *q = &r->prompts[r->n_prompts++];
        if (cJSON_IsString(it)) {
            if (!(q->text = strdup(it->valuestring)))
                return DSA_NOMEM;
            q->n_text = strlen(it->valuestring);
        } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) > 0) {
            dsa_err err = parse_ids(it, "prompt", &q->ids, &q->n_ids, e);
            if (err)
                return err;
        } else {
            return dsa_api_fail(e, 400, "prompt", "'prompt' list items must be strings or "
                                "non-empty token id lists");
        }
    }
    return DSA_OK;
}

static dsa_err parse_stop(const cJSON *root, dsa_api_request *r, dsa_api_error *e)
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(root, "stop");
    if (!s || cJSON_IsNull(s))
        return DSA_OK;
    if (cJSON_IsString(s)) {
        if (s->valuestring[0] && !(r->stop[r->n_stop++] = strdup(s->valuestring)))
            return DSA_NOMEM;
        return DSA_OK;
    }
    if (!cJSON_IsArray(s))
        return dsa_api_fail(e, 400, "stop", "'stop' must be a string or a list of strings");
    if (cJSON_GetArraySize(s) > DSA_API_MAX_STOP)
        return dsa_api_fail(e, 400, "stop", "at most %d stop strings", DSA_API_MAX_STOP);
    const cJSON *it;
    cJSON_ArrayForEach(it, s) {
        if (!cJSON_IsString(it))
            return dsa_api_fail(e, 400, "stop", "'stop' must be a string or a list of strings");
        if (it->valuestring[0] && !(r->stop[r->n_stop++] = strdup(it->valuestring)))
            return DSA_NOMEM;
    }
    return DSA_OK;
}

static dsa_err parse_fields(const cJSON *root, dsa_api_request *r, dsa_api_error *e)
{
    dsa_err err;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsString(v))
            return dsa_api_fail(e, 400, "model", "'model' must be a string");
        if (!(r->model = strdup(v->valuestring)))
            return DSA_NOMEM;
    }
    if (r->kind == DSA_API_CHAT) {
        v = cJSON_GetObjectItemCaseSensitive(root, "messages");
        if (!v)
            return dsa_api_fail(e, 400, "messages", "'messages' is required");
        if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) == 0)
            return dsa_api_fail(e, 400, "messages", "'messages' must be a non-empty array");
        const cJSON *m;
        int i = 0;
        cJSON_ArrayForEach(m, v) {
            const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
            if (!cJSON_IsObject(m) || !cJSON_IsString(role))
                return dsa_api_fail(e, 400, "messages", "messages[%d] must be an object with "
                                    "a string 'role'", i);
            i++;
        }
        if (!(r->messages = cJSON_Duplicate(v, 1)))
            return DSA_NOMEM;
        if ((err = dsa_tools_parse(root, r, e)))
            return err;
    } else if ((err = parse_prompt(root, r, e))) {
        return err;
    }
    int64_t i64;
    i64 = -1;
    if ((err = get_int(root, "max_tokens", 0, INT32_MAX, &i64, e)))
        return err;
    r->max_tokens = i64;
    if (r->kind == DSA_API_CHAT) {
        i64 = -1;
        if ((err = get_int(root, "max_completion_tokens", 1, INT32_MAX, &i64, e)))
            return err;
        if (i64 > 0)
            r->max_tokens = i64;
    }
    if ((err = get_number(root, "temperature", 0, 2, 0, &r->temperature, e)) ||
        (err = get_number(root, "top_p", 0, 1, 1, &r->top_p, e)) ||
        (err = get_number(root, "min_p", 0, 1, 0, &r->min_p, e)) ||
        (err = get_number(root, "presence_penalty", -2, 2, 0, &r->presence_penalty, e)) ||
        (err = get_number(root, "frequency_penalty", -2, 2, 0, &r->frequency_penalty, e)) ||
        (err = get_number(root, "repetition_penalty", 0, 2, 1, &r->repetition_penalty, e)) ||
        (err = get_int(root, "top_k", -1, INT32_MAX, &r->top_k, e)))
        return err;
    v = cJSON_GetObjectItemCaseSensitive(root, "seed");
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
            fabs(v->valuedouble) > 9223372036854775807.0)
            return dsa_api_fail(e, 400, "seed", "'seed' must be an integer");
        r->has_seed = 1;
        r->seed = (uint64_t)(int64_t)v->valuedouble;
    }
    if ((err = parse_stop(root, r, e)) || (err = get_bool(root, "stream", &r->stream, e)) ||
        (err = get_bool(root, "ignore_eos", &r->ignore_eos, e)) ||
        (err = get_bool(root, "skip_special_tokens", &r->skip_special_tokens, e)) ||
        (err = get_bool(root, "add_generation_prompt", &r->add_generation_prompt, e)))
        return err;
    v = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsObject(v))
            return dsa_api_fail(e, 400, "stream_options", "'stream_options' must be an object");
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(v, "include_usage");
        if (u && !cJSON_IsNull(u) && !cJSON_IsBool(u))
            return dsa_api_fail(e, 400, "stream_options.include_usage",
                                "'stream_options.include_usage' must be a boolean");
        r->include_usage = cJSON_IsTrue(u);
    }
    i64 = 1;
    if ((err = get_int(root, "n", 1, DSA_API_MAX_N, &i64, e)))
        return err;
    r->n = (int)i64;
    v = cJSON_GetObjectItemCaseSensitive(root, "logprobs");
    if (r->kind == DSA_API_CHAT) {
        if ((err = get_bool(root, "logprobs", &r->logprobs, e)))
            return err;
        i64 = 0;
        if ((err = get_int(root, "top_logprobs", 0, 20, &i64, e)))
            return err;
        r->top_logprobs = (int)i64;
        if (r->top_logprobs > 0 && !r->logprobs)
            return dsa_api_fail(e, 400, "top_logprobs",
                                "'top_logprobs' requires 'logprobs' to be true");
    } else if (v && !cJSON_IsNull(v)) {
        i64 = 0;
        if ((err = get_int(root, "logprobs", 0, 20, &i64, e)))
            return err;
        r->logprobs = 1;
        r->top_logprobs = (int)i64;
    }
    v = cJSON_GetObjectItemCaseSensitive(root, "user");
    if (v && !cJSON_IsNull(v) && !cJSON_IsString(v))
        return dsa_api_fail(e, 400, "user", "'user' must be a string");
    if ((err = get_bool(root, "echo", &r->echo, e)))
        return err;
    if ((err = dsa_api_parse_logits(root, r, e)))
        return err;
    if (r->n > 1 && r->n_prompts > 1 && r->n * r->n_prompts > DSA_API_MAX_PROMPTS)
        return dsa_api_fail(e, 400, "n", "n times the number of prompts must be at most %d",
                            DSA_API_MAX_PROMPTS);
    if ((err = dsa_api_parse_params(root, r, e)))
        return err;
    return DSA_OK;
}

dsa_err dsa_api_parse(dsa_api_kind kind, const char *body, size_t len, dsa_api_request *r,
                      dsa_api_error *e)
{
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->max_tokens = -1;
    r->temperature = -1;
    r->top_p = -1;
    r->top_k = -1;
    r->n = 1;
    r->repetition_penalty = 1;
    r->skip_special_tokens = 1;
    r->add_generation_prompt = 1;
    r->add_special_tokens = kind != DSA_API_CHAT;
    cJSON *root;
    dsa_err err = dsa_json_in_parse(body, len, &root, &r->n_nul, e);
    if (err)
        return err;
    if (!cJSON_IsObject(root))
        err = dsa_api_fail(e, 400, NULL, "request body must be a JSON object");
    else
        err = parse_fields(root, r, e);
    cJSON_Delete(root);
    for (int i = 0; !err && r->n_nul && i < r->n_prompts; i++)
        if (r->prompts[i].text)
            dsa_json_nul_restore(r->prompts[i].text, r->prompts[i].n_text);
    if (err == DSA_NOMEM)
        dsa_api_fail(e, 500, NULL, "out of memory");
    if (err)
        dsa_api_request_free(r);
    return err;
}

void dsa_api_request_free(dsa_api_request *r)
{
    free(r->model);
    cJSON_Delete(r->messages);
    cJSON_Delete(r->tools);
    for (int i = 0; i < r->n_prompts; i++) {
        free(r->prompts[i].text);
        free(r->prompts[i].ids);
    }
    free(r->prompts);
    for (int i = 0; i < r->n_stop; i++)
        free(r->stop[i]);
    free(r->request_id);
    free(r->ignored);
    free(r->gram_text);
    free(r->tool_named);
    free(r->stop_token_ids);
    free(r->bias_ids);
    free(r->bias_values);
    free(r->allowed_ids);
    memset(r, 0, sizeof *r);
}

dsa_err dsa_api_parse_tokenize(const char *body, size_t len, int detokenize,
                               dsa_api_tokenize *t, dsa_api_error *e)
{
    memset(t, 0, sizeof *t);
    t->add_special_tokens = 1;
    t->add_generation_prompt = 1;
    cJSON *root;
    dsa_err err = dsa_json_in_parse(body, len, &root, &t->n_nul, e);
    if (err)
        return err;
    if (!cJSON_IsObject(root)) {
        err = dsa_api_fail(e, 400, NULL, "request body must be a JSON object");
        goto out;
    }
    if (detokenize) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "tokens");
        if (!cJSON_IsArray(v))
            err = dsa_api_fail(e, 400, "tokens", "'tokens' must be a list of token ids");
        else
            err = parse_ids(v, "tokens", &t->ids, &t->n_ids, e);
        goto out;
    }
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "prompt");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "messages");
    if (cJSON_IsString(p)) {
        t->n_prompt = strlen(p->valuestring);
        if (!(t->prompt = strdup(p->valuestring)))
            err = DSA_NOMEM;
        else
            dsa_json_nul_restore(t->prompt, t->n_prompt);
    } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) > 0) {
        dsa_api_request tr = {.kind = DSA_API_CHAT}; /* `tools`, as a chat has them */
        if (!(t->messages = cJSON_Duplicate(m, 1)))
            err = DSA_NOMEM;
        else if ((err = dsa_tools_parse(root, &tr, e)))
            cJSON_Delete(tr.tools);
        else
            t->tools = tr.tools;
    } else {
        err = dsa_api_fail(e, 400, p ? "prompt" : "messages",
                           "'prompt' (a string) or 'messages' (a non-empty array) is required");
    }
    if (!err)
        err = get_bool(root, "add_special_tokens", &t->add_special_tokens, e);
    if (!err)
        err = get_bool(root, "add_generation_prompt", &t->add_generation_prompt, e);
out:
    cJSON_Delete(root);
    if (err == DSA_NOMEM)
        dsa_api_fail(e, 500, NULL, "out of memory");
    if (err)
        dsa_api_tokenize_free(t);
    return err;
}

void dsa_api_tokenize_free(dsa_api_tokenize *t)
{
    free(t->prompt);
    cJSON_Delete(t->tools);
    cJSON_Delete(t->messages);
    free(t->ids);
    memset(t, 0, sizeof *t);
}

/* ---- responses ---------------------------------------------------------- */

static void put_meta(dsa_jbuf *b, const dsa_api_resp_meta *m, const char *object)
{
    dsa_jbuf_puts(b, "{\"id\":");
    dsa_jbuf_str(b, m->id, strlen(m->id));
    dsa_jbuf_printf(b, ",\"object\":\"%s\",\"created\":%lld,\"model\":", object,
                    (long long)m->created);
    dsa_jbuf_str(b, m->model, strlen(m->model));
}

static void put_usage(dsa_jbuf *b, const dsa_api_usage *u)
{
    dsa_jbuf_printf(b, "{\"prompt_tokens\":%lld,\"completion_tokens\":%lld,"
                    "\"total_tokens\":%lld}",
                    (long long)u->prompt_tokens, (long long)u->completion_tokens,
                    (long long)(u->prompt_tokens + u->completion_tokens));
}

static void put_bytes(dsa_jbuf *b, const char *s, size_t n)
{
    dsa_jbuf_puts(b, "[");
    for (size_t i = 0; i < n; i++)
        dsa_jbuf_printf(b, "%s%u", i ? "," : "", (unsigned char)s[i]);
    dsa_jbuf_puts(b, "]");
}

/* chat: {"content":[{token, logprob, bytes, top_logprobs:[...]}]} */
static void put_chat_logprobs(dsa_jbuf *b, const dsa_api_logprob *lp, int n)
{
    dsa_jbuf_puts(b, "{\"content\":[");
    for (int i = 0; i < n; i++) {
        dsa_jbuf_puts(b, i ? ",{\"token\":" : "{\"token\":");
        dsa_jbuf_str(b, lp[i].text, lp[i].n_text);
        dsa_jbuf_puts(b, ",\"logprob\":");
        dsa_jbuf_float(b, lp[i].logprob);
        dsa_jbuf_puts(b, ",\"bytes\":");
        put_bytes(b, lp[i].text, lp[i].n_text);
        dsa_jbuf_puts(b, ",\"top_logprobs\":[");
        for (int j = 0; j < lp[i].n_top; j++) {
            dsa_jbuf_puts(b, j ? ",{\"token\":" : "{\"token\":");
            dsa_jbuf_str(b, lp[i].top_text[j], lp[i].top_n_text[j]);
            dsa_jbuf_puts(b, ",\"logprob\":");
            dsa_jbuf_float(b, lp[i].top_logprob[j]);
            dsa_jbuf_puts(b, ",\"bytes\":");
            put_bytes(b, lp[i].top_text[j], lp[i].top_n_text[j]);
            dsa_jbuf_puts(b, "}");
        }
        dsa_jbuf_puts(b, "]}");
    }
    dsa_jbuf_puts(b, "]}");
}

/* completions: {"tokens":[], "token_logprobs":[], "top_logprobs":[{}],
 * "text_offset":[]} */
static void put_completion_logprobs(dsa_jbuf *b, const dsa_api_logprob *lp, int n,
                                    size_t offset)
{
    dsa_jbuf_puts(b, "{\"tokens\":[");
    for (int i = 0; i < n; i++) {
        if (i)
            dsa_jbuf_puts(b, ",");
        dsa_jbuf_str(b, lp[i].text, lp[i].n_text);
    }
    dsa_jbuf_puts(b, "],\"token_logprobs\":[");
    for (int i = 0; i < n; i++) {
        if (i)
            dsa_jbuf_puts(b, ",");
        if (lp[i].none)
            dsa_jbuf_puts(b, "null");
        else
            dsa_jbuf_float(b, lp[i].logprob);
    }
    dsa_jbuf_puts(b, "],\"top_logprobs\":[");
    for (int i = 0; i < n; i++) {
        if (lp[i].none) {
            dsa_jbuf_puts(b, i ? ",null" : "null");
            continue;
        }
        dsa_jbuf_puts(b, i ? ",{" : "{");
        for (int j = 0; j < lp[i].n_top; j++) {
            if (j)
                dsa_jbuf_puts(b, ",");
            dsa_jbuf_str(b, lp[i].top_text[j], lp[i].top_n_text[j]);
            dsa_jbuf_puts(b, ":");
            dsa_jbuf_float(b, lp[i].top_logprob[j]);
        }
        dsa_jbuf_puts(b, "}");
    }
    dsa_jbuf_puts(b, "],\"text_offset\":[");
    for (int i = 0; i < n; i++) {
        dsa_jbuf_printf(b, "%s%zu", i ? "," : "", offset);
        offset += dsa_api_text_chars(lp[i].text, lp[i].n_text);
    }
    dsa_jbuf_puts(b, "]}");
}

/* [{"index":i,"id":..,"type":"function","function":{"name":..,
 * "arguments":..}}]; index only in stream deltas (i_first >= 0). */
static void put_tool_calls(dsa_jbuf *b, const dsa_toolcall *calls, size_t n)
{
    dsa_jbuf_puts(b, "[");
    for (size_t i = 0; i < n; i++) {
        dsa_jbuf_puts(b, i ? ",{" : "{");
        dsa_jbuf_puts(b, "\"id\":");
        dsa_jbuf_str(b, calls[i].id, strlen(calls[i].id));
        dsa_jbuf_puts(b, ",\"type\":\"function\",\"function\":{\"name\":");
        dsa_jbuf_str(b, calls[i].name, strlen(calls[i].name));
        dsa_jbuf_puts(b, ",\"arguments\":");
        dsa_jbuf_str(b, calls[i].arguments, strlen(calls[i].arguments));
        dsa_jbuf_puts(b, "}}");
    }
    dsa_jbuf_puts(b, "]");
}

/* ,"stop_reason": the stop token id, the stop string or null (vLLM). */
static void put_stop_reason(dsa_jbuf *b, int has_stop_token, int32_t stop_token,
                            const char *stop_str)
{
    dsa_jbuf_puts(b, ",\"stop_reason\":");
    if (has_stop_token)
        dsa_jbuf_printf(b, "%d", stop_token);
    else if (stop_str)
        dsa_jbuf_str(b, stop_str, strlen(stop_str));
    else
        dsa_jbuf_puts(b, "null");
}

void dsa_api_sse_chunk(dsa_jbuf *b, const dsa_api_resp_meta *m, const dsa_api_delta *d,
                       int include_usage)
{
    int chat = m->kind == DSA_API_CHAT;
    dsa_jbuf_puts(b, "data: ");
    put_meta(b, m, chat ? "chat.completion.chunk" : "text_completion");
    dsa_jbuf_printf(b, ",\"choices\":[{\"index\":%d,", d->index);
    if (chat) {
        dsa_jbuf_puts(b, "\"delta\":{");
        int any = 0;
        if (d->role) {
            dsa_jbuf_puts(b, "\"role\":");
            dsa_jbuf_str(b, d->role, strlen(d->role));
            any = 1;
        }
        if (d->n_reasoning) {
            /* both names: DeepSeek's API and vLLM use reasoning_content,
             * newer vLLM and OpenRouter use reasoning */
            dsa_jbuf_puts(b, any ? ",\"reasoning_content\":" : "\"reasoning_content\":");
            dsa_jbuf_str(b, d->reasoning, d->n_reasoning);
            dsa_jbuf_puts(b, ",\"reasoning\":");
            dsa_jbuf_str(b, d->reasoning, d->n_reasoning);
            any = 1;
        }
        if (d->n_content || (d->role && !d->n_reasoning)) {
            dsa_jbuf_puts(b, any ? ",\"content\":" : "\"content\":");
            dsa_jbuf_str(b, d->content ? d->content : "", d->n_content);
            any = 1;
        }
        if (d->n_tool_deltas) {
            dsa_jbuf_puts(b, any ? ",\"tool_calls\":" : "\"tool_calls\":");
            dsa_tools_put_deltas(b, d->tool_deltas, d->n_tool_deltas);
        }
        dsa_jbuf_puts(b, "},\"logprobs\":");
        if (d->n_logprobs)
            put_chat_logprobs(b, d->logprobs, d->n_logprobs);
        else
            dsa_jbuf_puts(b, "null");
    } else {
        dsa_jbuf_puts(b, "\"text\":");
        dsa_jbuf_str(b, d->content ? d->content : "", d->n_content);
        dsa_jbuf_puts(b, ",\"logprobs\":");
        if (d->n_logprobs)
            put_completion_logprobs(b, d->logprobs, d->n_logprobs, d->text_offset);
        else
            dsa_jbuf_puts(b, "null");
    }
    dsa_jbuf_puts(b, ",\"finish_reason\":");
    if (d->finish_reason) {
        dsa_jbuf_str(b, d->finish_reason, strlen(d->finish_reason));
        put_stop_reason(b, d->has_stop_token, d->stop_token, d->stop_str);
    } else {
        dsa_jbuf_puts(b, "null");
    }
    dsa_jbuf_puts(b, include_usage ? "}],\"usage\":null}\n\n" : "}]}\n\n");
}

void dsa_api_sse_usage(dsa_jbuf *b, const dsa_api_resp_meta *m, const dsa_api_usage *u)
{
    dsa_jbuf_puts(b, "data: ");
    put_meta(b, m, m->kind == DSA_API_CHAT ? "chat.completion.chunk" : "text_completion");
    dsa_jbuf_puts(b, ",\"choices\":[],\"usage\":");
    put_usage(b, u);
    dsa_jbuf_puts(b, "}\n\n");
}

void dsa_api_sse_done(dsa_jbuf *b)
{
    dsa_jbuf_puts(b, "data: [DONE]\n\n");
}

void dsa_api_sse_error(dsa_jbuf *b, const dsa_api_error *e)
{
    dsa_jbuf_puts(b, "data: ");
    dsa_api_error_json(b, e);
    dsa_jbuf_puts(b, "\n\n");
}


void dsa_api_response(dsa_jbuf *b, const dsa_api_resp_meta *m, const dsa_api_choice *c,
                      int n_choices, const dsa_api_usage *u)
{
    if (m->kind == DSA_API_GENERATE) {
        dsa_jbuf_puts(b, "{\"text\":");
        dsa_jbuf_str(b, c[0].text, c[0].n_text);
        dsa_jbuf_puts(b, "}");
        return;
    }
    int chat = m->kind == DSA_API_CHAT;
    put_meta(b, m, chat ? "chat.completion" : "text_completion");
    dsa_jbuf_puts(b, ",\"choices\":[");
    for (int i = 0; i < n_choices; i++) {
        dsa_jbuf_printf(b, "%s{\"index\":%d,", i ? "," : "", i);
        if (chat) {
            dsa_jbuf_puts(b, "\"message\":{\"role\":\"assistant\",\"content\":");
            if (c[i].n_tool_calls && !c[i].n_text)
                dsa_jbuf_puts(b, "null");
            else
                dsa_jbuf_str(b, c[i].text, c[i].n_text);
            if (c[i].reasoning) {
                dsa_jbuf_puts(b, ",\"reasoning_content\":");
                dsa_jbuf_str(b, c[i].reasoning, c[i].n_reasoning);
                dsa_jbuf_puts(b, ",\"reasoning\":");
                dsa_jbuf_str(b, c[i].reasoning, c[i].n_reasoning);
            }
            dsa_jbuf_puts(b, ",\"tool_calls\":");
            put_tool_calls(b, c[i].tool_calls, c[i].n_tool_calls);
            dsa_jbuf_puts(b, "},\"logprobs\":");
            if (c[i].has_logprobs)
                put_chat_logprobs(b, c[i].logprobs, c[i].n_logprobs);
            else
                dsa_jbuf_puts(b, "null");
        } else {
            dsa_jbuf_puts(b, "\"text\":");
            dsa_jbuf_str(b, c[i].text, c[i].n_text);
            dsa_jbuf_puts(b, ",\"logprobs\":");
            if (c[i].has_logprobs)
                put_completion_logprobs(b, c[i].logprobs, c[i].n_logprobs, 0);
            else
                dsa_jbuf_puts(b, "null");
        }
        dsa_jbuf_puts(b, ",\"finish_reason\":");
        dsa_jbuf_str(b, c[i].finish_reason, strlen(c[i].finish_reason));
        put_stop_reason(b, c[i].has_stop_token, c[i].stop_token, c[i].stop_str);
        /* vLLM writes the field on every choice, null when not asked */
        if (!chat)
            dsa_jbuf_printf(b, ",\"prompt_logprobs\":%s",
                            c[i].prompt_logprobs ? c[i].prompt_logprobs : "null");
        dsa_jbuf_puts(b, "}");
    }
    dsa_jbuf_puts(b, "],\"usage\":");
    put_usage(b, u);
    if (chat)
        dsa_jbuf_printf(b, ",\"prompt_logprobs\":%s",
                        n_choices > 0 && c[0].prompt_logprobs ? c[0].prompt_logprobs : "null");
    dsa_jbuf_puts(b, "}");
}

/* ---- auth -------------------------------------------------------------- */

int dsa_api_auth_check(const char *header, size_t n, const char *const *keys, int n_keys)
{
    if (n_keys == 0)
        return 1;
    if (!header || n < 7 || strncasecmp(header, "Bearer ", 7) != 0)
        return 0;
    header += 7;
    n -= 7;
    while (n && *header == ' ')
        header++, n--;
    int ok = 0;
    /* every key is compared in full, whatever matched before: the time
     * depends on the configured keys' lengths alone */
    for (int k = 0; k < n_keys; k++) {
        size_t kl = strlen(keys[k]);
        volatile unsigned char diff = (unsigned char)(kl != n);
        for (size_t i = 0; i < kl; i++)
            diff |= (unsigned char)(keys[k][i] ^ (i < n ? header[i] : 0));
        ok |= diff == 0;
    }
    return ok;
}
