/* api_logits.c - the sampler-side request parameters of the OpenAI API as
 * vLLM takes them (stop_token_ids, min_tokens, logit_bias,
 * allowed_token_ids, prompt_logprobs, echo) and the prompt_logprobs output
 * (see api.h).  The worker applies them (proto/step.h logit controls). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "head/api.h"

#define PROMPT_LOGPROBS_MAX 20 /* vLLM's default max_logprobs */

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* A JSON list of integer token ids (any int32 value; the vocabulary check
 * comes later) into a malloc'd array. */
static dsa_err id_list(const cJSON *v, const char *name, int32_t **ids, int *n,
                       dsa_api_error *e)
{
    if (!cJSON_IsArray(v))
        return dsa_api_fail(e, 400, name, "'%s' must be a list of integer token ids", name);
    int count = cJSON_GetArraySize(v);
    if (!(*ids = malloc((size_t)(count > 0 ? count : 1) * sizeof **ids)))
        return DSA_NOMEM;
    *n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, v) {
        if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble) ||
            fabs(it->valuedouble) > INT32_MAX)
            return dsa_api_fail(e, 400, name, "'%s' must be a list of integer token ids",
                                name);
        (*ids)[(*n)++] = (int32_t)it->valuedouble;
    }
    return DSA_OK;
}

static dsa_err parse_stop_token_ids(const cJSON *root, dsa_api_request *r, dsa_api_error *e)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "stop_token_ids");
    if (!v || cJSON_IsNull(v))
        return DSA_OK;
    return id_list(v, "stop_token_ids", &r->stop_token_ids, &r->n_stop_token_ids, e);
}

/* min_tokens >= 0 and at most max_tokens when that is given (vLLM). */
static dsa_err parse_min_tokens(const cJSON *root, dsa_api_request *r, dsa_api_error *e)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "min_tokens");
    if (!v || cJSON_IsNull(v))
        return DSA_OK;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0 ||
        v->valuedouble > INT32_MAX)
        return dsa_api_fail(e, 400, "min_tokens", "'min_tokens' must be an integer >= 0");
    r->min_tokens = (int64_t)v->valuedouble;
    if (r->max_tokens >= 0 && r->min_tokens > r->max_tokens)
        return dsa_api_fail(e, 400, "min_tokens", "min_tokens must be less than or equal to "
                            "max_tokens=%lld, got %lld", (long long)r->max_tokens,
                            (long long)r->min_tokens);
    return DSA_OK;
}

/* {"id": bias}: keys integers written as strings, values numbers clamped
 * to [-100, 100] (vLLM); a repeated key keeps its last value, as a JSON
 * object read into a dict does. */
static dsa_err parse_logit_bias(const cJSON *root, dsa_api_request *r, dsa_api_error *e)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "logit_bias");
    if (!v || cJSON_IsNull(v))
        return DSA_OK;
    if (!cJSON_IsObject(v))
        return dsa_api_fail(e, 400, "logit_bias", "'logit_bias' must be an object mapping "
                            "token ids to numbers");
    int count = cJSON_GetArraySize(v);
    if (count == 0)
        return DSA_OK;
    typedef struct { int32_t id; int order; float val; } ent;
    ent *t = malloc((size_t)count * sizeof *t);
    if (!t)
        return DSA_NOMEM;
    int n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, v) {
        char *end = NULL;
        long long id = strtoll(it->string, &end, 10);
        if (!it->string[0] || *end || id < INT32_MIN || id > INT32_MAX) {
            free(t);
            return dsa_api_fail(e, 400, "logit_bias", "Found token_id `%.40s` in logit_bias "
                                "but token_id must be an integer or string representing an "
                                "integer", it->string);
        }
        if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble)) {
            free(t);
            return dsa_api_fail(e, 400, "logit_bias", "logit_bias values must be numbers");
        }
        double b = it->valuedouble < -100 ? -100 : it->valuedouble > 100 ? 100 : it->valuedouble;
        t[n] = (ent){.id = (int32_t)id, .order = n, .val = (float)b};
        n++;
    }
    /* sort by id, the last occurrence first among equals, then keep it */
    for (int i = 1; i < n; i++) {
        ent x = t[i];
        int j = i;
        while (j > 0 && (t[j - 1].id > x.id || (t[j - 1].id == x.id && t[j - 1].order < x.order))) {
            t[j] = t[j - 1];
            j--;
        }
        t[j] = x;
    }
    r->bias_ids = malloc((size_t)n * sizeof *r->bias_ids);
    r->bias_values = malloc((size_t)n * sizeof *r->bias_values);
    if (!r->bias_ids || !r->bias_values) {
        free(t);
        return DSA_NOMEM;
    }
    for (int i = 0; i < n; i++) {
        if (r->n_bias && r->bias_ids[r->n_bias - 1] == t[i].id)
            continue;
        r->bias_ids[r->n_bias] = t[i].id;
        r->bias_values[r->n_bias++] = t[i].val;
    }
    free(t);
    return DSA_OK;
}

static dsa_err parse_allowed(const cJSON *root, dsa_api_request *r, dsa_api_error *e)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "allowed_token_ids");
    if (!v || cJSON_IsNull(v))
        return DSA_OK;
    dsa_err err = id_list(v, "allowed_token_ids", &r->allowed_ids, &r->n_allowed, e);
    if (err)
        return err;
    if (r->n_allowed == 0)
        return dsa_api_fail(e, 400, "allowed_token_ids",
                            "allowed_token_ids is not None and empty!");
    qsort(r->allowed_ids, (size_t)r->n_allowed, sizeof *r->allowed_ids, cmp_i32);
    int n = 1;
    for (int i = 1; i < r->n_allowed; i++)
        if (r->allowed_ids[i] != r->allowed_ids[n - 1])
            r->allowed_ids[n++] = r->allowed_ids[i];
    r->n_allowed = n;
    return DSA_OK;
}

/* prompt_logprobs: 0..max_logprobs, not with stream (vLLM refuses > 0
 * there); echo on completions asks for the prompt's logprobs when logprobs
 * are asked, as vLLM does; max_tokens 0 is allowed only with echo. */
static dsa_err parse_prompt_logprobs(const cJSON *root, dsa_api_request *r, dsa_api_error *e)
{
    r->prompt_logprobs = -1;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "prompt_logprobs");
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
            return dsa_api_fail(e, 400, "prompt_logprobs", "'prompt_logprobs' must be an "
                                "integer");
        if (v->valuedouble < -1)
            return dsa_api_fail(e, 400, "prompt_logprobs", "`prompt_logprobs` must be a "
                                "positive value or -1.");
        if (v->valuedouble == -1 || v->valuedouble > PROMPT_LOGPROBS_MAX)
            return dsa_api_fail(e, 400, "prompt_logprobs", "Requested prompt logprobs of %s, "
                                "which is greater than max allowed: %d",
                                v->valuedouble == -1 ? "the whole vocabulary" : "more",
                                PROMPT_LOGPROBS_MAX);
        if (r->kind == DSA_API_GENERATE)
            return dsa_api_fail(e, 400, "prompt_logprobs", "'prompt_logprobs' is not "
                                "supported on /generate");
        if (r->stream && v->valuedouble > 0)
            return dsa_api_fail(e, 400, "prompt_logprobs", "`prompt_logprobs` are not "
                                "available when `stream=True`.");
        r->prompt_logprobs = (int)v->valuedouble;
    }
    return DSA_OK;
}

static dsa_err parse_echo(const cJSON *root, dsa_api_request *r, dsa_api_error *e)
{
    (void)root;
    if (r->echo && r->kind == DSA_API_GENERATE)
        return dsa_api_fail(e, 400, "echo", "'echo' is not supported here");
    if (r->echo && r->logprobs && r->prompt_logprobs < 0)
        r->prompt_logprobs = r->top_logprobs;
    if (r->max_tokens == 0 && !(r->echo && r->kind == DSA_API_COMPLETION))
        return dsa_api_fail(e, 400, "max_tokens", "'max_tokens' must be at least 1");
    return DSA_OK;
}

dsa_err dsa_api_parse_logits(const cJSON *root, dsa_api_request *r, dsa_api_error *e)
{
    dsa_err err;
    if ((err = parse_stop_token_ids(root, r, e)) || (err = parse_min_tokens(root, r, e)) ||
        (err = parse_logit_bias(root, r, e)) || (err = parse_allowed(root, r, e)) ||
        (err = parse_prompt_logprobs(root, r, e)) || (err = parse_echo(root, r, e)))
        return err;
    return DSA_OK;
}

dsa_err dsa_api_chat_echo(const dsa_api_request *r, dsa_jbuf *out)
{
    if (!r->echo || r->kind != DSA_API_CHAT)
        return DSA_OK;
    const cJSON *last = NULL, *m;
    cJSON_ArrayForEach(m, r->messages) last = m;
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(last, "role");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(last, "content");
    /* the reply's role: the assistant with a generation prompt, else the
     * last message's own */
    if (!cJSON_IsString(role) || (r->add_generation_prompt && strcmp(role->valuestring,
                                                                       "assistant")))
        return DSA_OK;
    if (cJSON_IsString(content)) {
        dsa_jbuf_puts(out, content->valuestring);
    } else if (cJSON_IsArray(content)) {
        int first = 1;
        const cJSON *part;
        cJSON_ArrayForEach(part, content) {
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(part, "text");
            if (!cJSON_IsString(t))
                continue;
            if (!first)
                dsa_jbuf_puts(out, "\n");
            dsa_jbuf_puts(out, t->valuestring);
            first = 0;
        }
    }
    return out->oom ? DSA_NOMEM : DSA_OK;
}

dsa_err dsa_api_check_vocab(const dsa_api_request *r, int64_t vocab, dsa_api_error *e)
{
    /* both lists are sorted: the ends decide */
    if (r->n_bias && (r->bias_ids[0] < 0 || r->bias_ids[r->n_bias - 1] >= vocab))
        return dsa_api_fail(e, 400, "logit_bias", "token_id(s) [%d] in logit_bias contain "
                            "out-of-vocab token ids. Vocabulary size: %lld",
                            r->bias_ids[0] < 0 ? r->bias_ids[0] : r->bias_ids[r->n_bias - 1],
                            (long long)vocab);
    if (r->n_allowed && (r->allowed_ids[0] < 0 || r->allowed_ids[r->n_allowed - 1] >= vocab))
        return dsa_api_fail(e, 400, "allowed_token_ids", "allowed_token_ids contains "
                            "out-of-vocab token id!");
    return DSA_OK;
}

static void put_entry(dsa_jbuf *b, int first, int32_t id, float logprob, int32_t rank,
                      const char *text, size_t n_text)
{
    dsa_jbuf_printf(b, "%s\"%d\":{\"logprob\":", first ? "" : ",", id);
    dsa_jbuf_float(b, logprob);
    dsa_jbuf_printf(b, ",\"rank\":%d,\"decoded_token\":", rank);
    dsa_jbuf_str(b, text, n_text);
    dsa_jbuf_puts(b, "}");
}

void dsa_api_prompt_logprobs_json(dsa_jbuf *b, const dsa_api_prompt_lp *lp, int n)
{
    dsa_jbuf_puts(b, "[null");
    for (int i = 0; i < n; i++) {
        const dsa_api_prompt_lp *p = &lp[i];
        dsa_jbuf_puts(b, ",{");
        put_entry(b, 1, p->token, p->logprob, p->rank, p->text, p->n_text);
        for (int j = 0; j < p->n_top; j++)
            if (p->top_ids[j] != p->token)
                put_entry(b, 0, p->top_ids[j], p->top_logprob[j], j + 1, p->top_text[j],
                          p->top_n_text[j]);
        dsa_jbuf_puts(b, "}");
    }
    dsa_jbuf_puts(b, "]");
}
