/* api_params.c - vLLM's extra request parameters, and the OpenAI ones vLLM
 * does not read (see api.h, dsa_api_parse_params).
 *
 * Rule: a parameter vLLM accepts is applied as vLLM applies it or refused
 * with a 400 whose `param` names it; nothing is silently dropped.  The
 * parameters whose effect needs no code here (vLLM itself ignores them for
 * this model, e.g. `documents`, which the DeepSeek-V3/R1 chat templates do
 * not read) are type-checked and accepted.  docs/api-parameters.md is the
 * table of every parameter with our behaviour and vLLM's.
 *
 * The simple cases are one declarative table; the parameters with an
 * effect are read by the functions below it. */
#include "head/api.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { K_CHAT = 1, K_COMPL = 2, K_BOTH = 3 };

typedef enum ptype { T_BOOL, T_INT, T_NUMBER, T_STRING, T_OBJECT, T_LIST } ptype;

typedef enum paction {
    P_ACCEPT,       /* type-checked; no effect, as in vLLM (the docs say why) */
    P_REFUSE,       /* any non-null value is refused */
    P_REFUSE_SET,   /* refused unless false, 0 or empty (vLLM's default) */
} paction;

typedef struct param_rule {
    const char *name;
    unsigned kinds;
    ptype type;
    paction act;
    const char *why;    /* P_REFUSE*: the end of the error message */
} param_rule;

static const param_rule rules[] = {
    /* OpenAI parameters vLLM reads and does not act on */
    {"user", K_BOTH, T_STRING, P_ACCEPT, NULL},
    /* OpenAI parameters vLLM's request models do not have (vLLM drops them
     * with a warning): bookkeeping only, no effect on the output */
    {"store", K_CHAT, T_BOOL, P_ACCEPT, NULL},
    {"metadata", K_CHAT, T_OBJECT, P_ACCEPT, NULL},
    {"service_tier", K_CHAT, T_STRING, P_ACCEPT, NULL},
    {"prediction", K_CHAT, T_OBJECT, P_ACCEPT, NULL},
    {"prompt_cache_key", K_CHAT, T_STRING, P_ACCEPT, NULL},
    {"safety_identifier", K_CHAT, T_STRING, P_ACCEPT, NULL},
    /* ... and those that would change the output: refused */
    {"audio", K_CHAT, T_OBJECT, P_REFUSE, "audio output is not supported"},
    {"web_search_options", K_CHAT, T_OBJECT, P_REFUSE, "web search is not supported"},
    {"functions", K_CHAT, T_LIST, P_REFUSE, "the deprecated 'functions' is not supported; "
     "use 'tools'"},
    {"function_call", K_CHAT, T_OBJECT, P_REFUSE, "the deprecated 'function_call' is not "
     "supported; use 'tool_choice'"},
    {"verbosity", K_CHAT, T_STRING, P_REFUSE, "'verbosity' is not supported"},
    /* vLLM's sampling parameters */
    {"length_penalty", K_BOTH, T_NUMBER, P_ACCEPT, NULL}, /* beam search only */
    {"spaces_between_special_tokens", K_BOTH, T_BOOL, P_ACCEPT, NULL},
    {"bad_words", K_BOTH, T_LIST, P_REFUSE_SET, "'bad_words' is not supported"},
    {"use_beam_search", K_BOTH, T_BOOL, P_REFUSE_SET, "beam search is not supported"},
    /* vLLM's extra parameters */
    {"documents", K_CHAT, T_LIST, P_ACCEPT, NULL},
    {"mm_processor_kwargs", K_CHAT, T_OBJECT, P_ACCEPT, NULL},
    {"vllm_xargs", K_BOTH, T_OBJECT, P_ACCEPT, NULL},
    {"guided_decoding_backend", K_BOTH, T_STRING, P_ACCEPT, NULL},
    {"guided_whitespace_pattern", K_BOTH, T_STRING, P_ACCEPT, NULL},
    {"chat_template", K_CHAT, T_STRING, P_REFUSE, "a chat template in the request is not "
     "accepted (vLLM refuses it too unless started with --trust-request-chat-template); "
     "the server renders the checkpoint's template"},
    {"structural_tag", K_BOTH, T_STRING, P_REFUSE, "'structural_tag' is not supported"},
    {"logits_processors", K_BOTH, T_LIST, P_REFUSE_SET, "the `logits_processors` argument is "
     "not supported by this server"},
    {"cache_salt", K_BOTH, T_STRING, P_REFUSE, "'cache_salt' is not supported: the prefix "
     "cache is shared by all requests"},
    {"kv_transfer_params", K_BOTH, T_OBJECT, P_REFUSE, "disaggregated serving "
     "(kv_transfer_params) is not supported"},
    {"return_token_ids", K_BOTH, T_BOOL, P_REFUSE_SET, "'return_token_ids' is not supported"},
    {"prompt_embeds", K_COMPL, T_STRING, P_REFUSE, "prompt embeddings are not supported (vLLM "
     "needs --enable-prompt-embeds for them)"},
    {"suffix", K_COMPL, T_STRING, P_REFUSE, "suffix is not currently supported"},
};

static const char *type_name(ptype t)
{
    switch (t) {
    case T_BOOL: return "a boolean";
    case T_INT: return "an integer";
    case T_NUMBER: return "a number";
    case T_STRING: return "a string";
    case T_OBJECT: return "an object";
    default: return "a list";
    }
}

static int type_ok(const cJSON *v, ptype t)
{
    switch (t) {
    case T_BOOL: return cJSON_IsBool(v);
    case T_INT: return cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble);
    case T_NUMBER: return cJSON_IsNumber(v);
    case T_STRING: return cJSON_IsString(v);
    case T_OBJECT: return cJSON_IsObject(v);
    default: return cJSON_IsArray(v);
    }
}

/* false, 0, "" and [] / {}: what vLLM's validators treat as not set */
static int falsy(const cJSON *v)
{
    if (cJSON_IsFalse(v))
        return 1;
    if (cJSON_IsNumber(v))
        return v->valuedouble == 0;
    if (cJSON_IsString(v))
        return v->valuestring[0] == 0;
    if (cJSON_IsArray(v) || cJSON_IsObject(v))
        return v->child == NULL;
    return 0;
}

static dsa_err apply_rules(const cJSON *root, const dsa_api_request *r, dsa_api_error *e)
{
    unsigned kind = r->kind == DSA_API_CHAT ? K_CHAT : K_COMPL;
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) {
        const param_rule *p = &rules[i];
        if (!(p->kinds & kind))
            continue;
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, p->name);
        if (!v || cJSON_IsNull(v))
            continue;
        /* a guide may be given as a JSON text as well as an object */
        int ok = type_ok(v, p->type) || (p->act == P_REFUSE && p->type == T_OBJECT &&
                                         cJSON_IsString(v));
        if (!ok)
            return dsa_api_fail(e, 400, p->name, "'%s' must be %s", p->name,
                                type_name(p->type));
        if (p->act == P_REFUSE || (p->act == P_REFUSE_SET && !falsy(v)))
            return dsa_api_fail(e, 400, p->name, "%s", p->why);
    }
    return DSA_OK;
}

/* ---- parameters with an effect ------------------------------------------ */

static const cJSON *field(const cJSON *root, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

static dsa_err get_flag(const cJSON *root, const char *name, int *out, dsa_api_error *e)
{
    const cJSON *v = field(root, name);
    if (!v)
        return DSA_OK;
    if (!cJSON_IsBool(v))
        return dsa_api_fail(e, 400, name, "'%s' must be a boolean", name);
    *out = cJSON_IsTrue(v);
    return DSA_OK;
}

/* Which sampling fields the request set (the others come from the
 * checkpoint's generation_config.json, head/params.h), and completions'
 * max_tokens default of 16: CompletionRequest.max_tokens = 16, so only an
 * explicit null leaves the length to the context. */
static dsa_err parse_given(const cJSON *root, dsa_api_request *r)
{
    r->has_top_k = field(root, "top_k") != NULL;
    r->has_min_p = field(root, "min_p") != NULL;
    r->has_repetition_penalty = field(root, "repetition_penalty") != NULL;
    if (r->kind == DSA_API_COMPLETION && r->max_tokens < 0 &&
        !cJSON_GetObjectItemCaseSensitive(root, "max_tokens"))
        r->max_tokens = 16;
    return DSA_OK;
}

/* best_of: vLLM's SamplingParams needs best_of >= n, and its V1 engine
 * refuses best_of > 1; null, 0 and 1 (with n = 1) mean "n". */
static dsa_err parse_best_of(const cJSON *root, const dsa_api_request *r, dsa_api_error *e)
{
    const cJSON *v = field(root, "best_of");
    if (!v || (cJSON_IsNumber(v) && v->valuedouble == 0))
        return DSA_OK;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
        return dsa_api_fail(e, 400, "best_of", "'best_of' must be an integer");
    if (v->valuedouble < r->n)
        return dsa_api_fail(e, 400, "best_of", "best_of must be greater than or equal to n, "
                            "got n=%d and best_of=%.0f.", r->n, v->valuedouble);
    if (v->valuedouble > 1)
        return dsa_api_fail(e, 400, "best_of", "best_of > 1 is not supported (as in vLLM's "
                            "V1 engine): use n");
    return DSA_OK;
}

/* stream_options only with stream (vLLM: "Stream options can only be
 * defined when `stream=True`", an empty object passing); include_usage
 * defaults to true inside it, as vLLM's StreamOptions has it. */
static dsa_err parse_stream_options(const cJSON *root, dsa_api_request *r, dsa_api_error *e)
{
    const cJSON *v = field(root, "stream_options");
    if (!v || !cJSON_IsObject(v))
        return DSA_OK; /* the type was checked by parse_fields */
    if (v->child && !r->stream)
        return dsa_api_fail(e, 400, "stream_options",
                            "Stream options can only be defined when `stream=True`.");
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(v, "include_usage");
    if (!u)
        r->include_usage = 1;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(v, "continuous_usage_stats");
    if (c && !cJSON_IsNull(c) && !cJSON_IsBool(c))
        return dsa_api_fail(e, 400, "stream_options.continuous_usage_stats",
                            "'stream_options.continuous_usage_stats' must be a boolean");
    if (cJSON_IsTrue(c))
        return dsa_api_fail(e, 400, "stream_options.continuous_usage_stats",
                            "'stream_options.continuous_usage_stats' is not supported");
    return DSA_OK;
}

/* truncate_prompt_tokens >= -1 (-1: max_model_len); the bound against
 * max_model_len is checked once that is known (head/params.h). */
static dsa_err parse_truncate(const cJSON *root, dsa_api_request *r, dsa_api_error *e)
{
    const cJSON *v = field(root, "truncate_prompt_tokens");
    if (!v)
        return DSA_OK;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
        v->valuedouble < -1 || v->valuedouble > INT32_MAX)
        return dsa_api_fail(e, 400, "truncate_prompt_tokens",
                            "'truncate_prompt_tokens' must be an integer >= -1");
    r->has_truncate = 1;
    r->truncate_prompt_tokens = (int64_t)v->valuedouble;
    return DSA_OK;
}

/* continue_final_message and add_generation_prompt, both also settable
 * through chat_template_kwargs (vLLM merges those over the request's
 * values).  The DeepSeek-V3/R1 templates read no other variable, so other
 * chat_template_kwargs have no effect, as in vLLM. */
static dsa_err parse_chat_render(const cJSON *root, dsa_api_request *r, dsa_api_error *e)
{
    dsa_err err;
    if ((err = get_flag(root, "continue_final_message", &r->continue_final_message, e)))
        return err;
    const cJSON *agp = field(root, "add_generation_prompt");
    if (r->continue_final_message && agp && cJSON_IsTrue(agp))
        return dsa_api_fail(e, 400, "continue_final_message", "Cannot set both "
                            "`continue_final_message` and `add_generation_prompt` to True.");
    const cJSON *kw = field(root, "chat_template_kwargs");
    if (kw) {
        if (!cJSON_IsObject(kw))
            return dsa_api_fail(e, 400, "chat_template_kwargs",
                                "'chat_template_kwargs' must be an object");
        const cJSON *a = field(kw, "add_generation_prompt");
        const cJSON *c = field(kw, "continue_final_message");
        if (a)
            r->add_generation_prompt = !falsy(a);
        if (c)
            r->continue_final_message = !falsy(c);
    }
    /* transformers' apply_chat_template refuses both (add_generation_prompt
     * defaults to true, so continuing needs it set to false) */
    if (r->continue_final_message && r->add_generation_prompt)
        return dsa_api_fail(e, 400, "continue_final_message", "continue_final_message and "
                            "add_generation_prompt are not compatible: set "
                            "add_generation_prompt to false to continue the final message");
    return DSA_OK;
}

static dsa_err parse_misc(const cJSON *root, dsa_api_request *r, dsa_api_error *e)
{
    dsa_err err;
    if ((err = get_flag(root, "include_stop_str_in_output", &r->include_stop_str_in_output,
                        e)) ||
        (err = get_flag(root, "add_special_tokens", &r->add_special_tokens, e)) ||
        (err = get_flag(root, "return_tokens_as_token_ids", &r->return_tokens_as_token_ids,
                        e)))
        return err;
    const cJSON *v = field(root, "priority");
    if (v) {
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
            return dsa_api_fail(e, 400, "priority", "'priority' must be an integer");
        if (v->valuedouble != 0)
            return dsa_api_fail(e, 400, "priority", "Got priority %.0f but Priority "
                                "scheduling is not enabled.", v->valuedouble);
    }
    v = field(root, "request_id");
    if (v) {
        if (!cJSON_IsString(v))
            return dsa_api_fail(e, 400, "request_id", "'request_id' must be a string");
        if (strlen(v->valuestring) > DSA_API_MAX_REQUEST_ID)
            return dsa_api_fail(e, 400, "request_id", "'request_id' must be at most %d "
                                "bytes", DSA_API_MAX_REQUEST_ID);
        if (v->valuestring[0] && !(r->request_id = strdup(v->valuestring)))
            return DSA_NOMEM;
    }
    if (r->kind == DSA_API_CHAT) {
        v = field(root, "reasoning_effort");
        if (v && (!cJSON_IsString(v) || (strcmp(v->valuestring, "low") &&
                                         strcmp(v->valuestring, "medium") &&
                                         strcmp(v->valuestring, "high"))))
            return dsa_api_fail(e, 400, "reasoning_effort",
                                "'reasoning_effort' must be 'low', 'medium' or 'high'");
        int include = 1;
        if ((err = get_flag(root, "include_reasoning", &include, e)))
            return err;
        if (!include)
            return dsa_api_fail(e, 400, "include_reasoning",
                                "'include_reasoning': false is not supported");
        v = field(root, "modalities");
        if (v) {
            const cJSON *it;
            if (!cJSON_IsArray(v))
                return dsa_api_fail(e, 400, "modalities", "'modalities' must be a list");
            cJSON_ArrayForEach(it, v) {
                if (!cJSON_IsString(it) || strcmp(it->valuestring, "text"))
                    return dsa_api_fail(e, 400, "modalities", "only the \"text\" modality "
                                        "is supported");
            }
        }
    }
    return DSA_OK;
}

/* Every field of vLLM's ChatCompletionRequest and CompletionRequest, and
 * the OpenAI ones of the table above: anything else is reported as
 * ignored, as vLLM logs "fields were present in the request but ignored". */
static const char *const known[] = {
    "messages", "model", "prompt", "frequency_penalty", "logit_bias", "logprobs",
    "top_logprobs", "max_tokens", "max_completion_tokens", "n", "presence_penalty",
    "response_format", "seed", "stop", "stream", "stream_options", "suffix", "temperature",
    "top_p", "tools", "tool_choice", "reasoning_effort", "include_reasoning",
    "parallel_tool_calls", "user", "best_of", "use_beam_search", "top_k", "min_p",
    "repetition_penalty", "length_penalty", "stop_token_ids", "include_stop_str_in_output",
    "ignore_eos", "min_tokens", "skip_special_tokens", "spaces_between_special_tokens",
    "truncate_prompt_tokens", "prompt_logprobs", "allowed_token_ids", "bad_words", "echo",
    "add_generation_prompt", "continue_final_message", "add_special_tokens", "documents",
    "chat_template", "chat_template_kwargs", "mm_processor_kwargs", "guided_json",
    "guided_regex", "guided_choice", "guided_grammar", "structural_tag",
    "structured_outputs", "guided_decoding_backend", "guided_whitespace_pattern", "priority",
    "request_id", "logits_processors", "return_tokens_as_token_ids", "return_token_ids",
    "cache_salt", "kv_transfer_params", "vllm_xargs", "prompt_embeds", "store", "metadata",
    "service_tier", "prediction", "prompt_cache_key", "safety_identifier", "audio",
    "web_search_options", "functions", "function_call", "verbosity", "modalities",
};

static dsa_err note_ignored(const cJSON *root, dsa_api_request *r)
{
    dsa_jbuf names = {0};
    for (const cJSON *it = root->child; it; it = it->next) {
        size_t i = 0;
        while (i < sizeof known / sizeof known[0] && strcmp(known[i], it->string))
            i++;
        if (i < sizeof known / sizeof known[0])
            continue;
        if (names.len > 200) { /* enough to see the typo */
            dsa_jbuf_puts(&names, ", ...");
            break;
        }
        if (names.len)
            dsa_jbuf_puts(&names, ", ");
        dsa_jbuf_puts(&names, it->string);
    }
    if (names.oom) {
        dsa_jbuf_deinit(&names);
        return DSA_NOMEM;
    }
    r->ignored = names.data; /* NULL when none */
    return DSA_OK;
}

dsa_err dsa_api_parse_params(const cJSON *root, dsa_api_request *r, dsa_api_error *e)
{
    if (r->kind == DSA_API_GENERATE)
        return DSA_OK;
    dsa_err err;
    if ((err = apply_rules(root, r, e)) || (err = parse_given(root, r)) ||
        (err = parse_best_of(root, r, e)) || (err = parse_stream_options(root, r, e)) ||
        (err = dsa_api_parse_structured(root, r, e)) || (err = parse_truncate(root, r, e)) ||
        (err = parse_misc(root, r, e)))
        return err;
    if (r->kind == DSA_API_CHAT && (err = parse_chat_render(root, r, e)))
        return err;
    return note_ignored(root, r);
}
