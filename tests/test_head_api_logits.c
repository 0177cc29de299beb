/* test_head_api_logits.c - head/api_logits.c: vLLM's sampler-side request
 * parameters parsed and checked as vLLM does (logit_bias keys and clamping,
 * allowed_token_ids, stop_token_ids, min_tokens, prompt_logprobs, echo),
 * the vocabulary check, and the prompt_logprobs and stop_reason output. */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "head/api.h"

static dsa_err parse(dsa_api_kind k, const char *body, dsa_api_request *r, dsa_api_error *e)
{
    return dsa_api_parse(k, body, strlen(body), r, e);
}

/* Expects a 400 naming param. */
static void refused(dsa_api_kind k, const char *body, const char *param)
{
    dsa_api_request r;
    dsa_api_error e;
    cr_assert_eq(parse(k, body, &r, &e), DSA_INVAL, "accepted: %s", body);
    cr_assert_eq(e.status, 400);
    cr_assert_str_eq(e.param, param, "%s: param %s (%s)", body, e.param, e.message);
}

Test(api_logits, parsed_and_normalised)
{
    dsa_api_request r;
    dsa_api_error e;
    const char *body = "{\"prompt\":\"x\",\"max_tokens\":9,\"stop_token_ids\":[7,3],"
                       "\"min_tokens\":2,\"logit_bias\":{\"9\":1.5,\"2\":-300,\"9\":4,"
                       "\"40\":250},\"allowed_token_ids\":[5,1,5,3],\"prompt_logprobs\":4}";
    cr_assert_eq(parse(DSA_API_COMPLETION, body, &r, &e), DSA_OK, "%s", e.message);
    cr_assert_eq(r.n_stop_token_ids, 2);
    cr_assert_eq(r.stop_token_ids[0], 7);
    cr_assert_eq(r.min_tokens, 2);
    /* sorted by id, the repeated key keeps its last value, clamped */
    cr_assert_eq(r.n_bias, 3);
    cr_assert_eq(r.bias_ids[0], 2);
    cr_assert_float_eq(r.bias_values[0], -100.0f, 0);
    cr_assert_eq(r.bias_ids[1], 9);
    cr_assert_float_eq(r.bias_values[1], 4.0f, 0);
    cr_assert_eq(r.bias_ids[2], 40);
    cr_assert_float_eq(r.bias_values[2], 100.0f, 0);
    cr_assert_eq(r.n_allowed, 3);
    cr_assert_eq(r.allowed_ids[0], 1);
    cr_assert_eq(r.allowed_ids[2], 5);
    cr_assert_eq(r.prompt_logprobs, 4);
    cr_assert_eq(dsa_api_check_vocab(&r, 41, &e), DSA_OK);
    cr_assert_eq(dsa_api_check_vocab(&r, 40, &e), DSA_INVAL);
    cr_assert_str_eq(e.param, "logit_bias");
    dsa_api_request_free(&r);

    /* the allowed set beyond the vocabulary */
    cr_assert_eq(parse(DSA_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                       "\"allowed_token_ids\":[0,100]}", &r, &e), DSA_OK);
    cr_assert_eq(r.prompt_logprobs, -1);
    cr_assert_eq(dsa_api_check_vocab(&r, 100, &e), DSA_INVAL);
    cr_assert_str_eq(e.param, "allowed_token_ids");
    dsa_api_request_free(&r);

    /* echo with logprobs asks for the prompt's logprobs; max_tokens 0 */
    cr_assert_eq(parse(DSA_API_COMPLETION, "{\"prompt\":\"x\",\"echo\":true,\"logprobs\":3,"
                       "\"max_tokens\":0}", &r, &e), DSA_OK, "%s", e.message);
    cr_assert_eq(r.prompt_logprobs, 3);
    cr_assert_eq(r.max_tokens, 0);
    dsa_api_request_free(&r);
}

Test(api_logits, refusals)
{
    const char *c = "{\"prompt\":\"x\",";
    char b[256];
#define REF(tail, param)                                  \
    do {                                                  \
        snprintf(b, sizeof b, "%s%s}", c, tail);          \
        refused(DSA_API_COMPLETION, b, param);            \
    } while (0)
    REF("\"logit_bias\":{\"a1\":1}", "logit_bias");
    REF("\"logit_bias\":{\"\":1}", "logit_bias");
    REF("\"logit_bias\":{\"1\":\"x\"}", "logit_bias");
    REF("\"logit_bias\":[1]", "logit_bias");
    REF("\"allowed_token_ids\":[]", "allowed_token_ids");
    REF("\"allowed_token_ids\":[1.5]", "allowed_token_ids");
    REF("\"stop_token_ids\":\"1\"", "stop_token_ids");
    REF("\"min_tokens\":-1", "min_tokens");
    REF("\"max_tokens\":3,\"min_tokens\":4", "min_tokens");
    REF("\"prompt_logprobs\":21", "prompt_logprobs");
    REF("\"prompt_logprobs\":-1", "prompt_logprobs");
    REF("\"prompt_logprobs\":-2", "prompt_logprobs");
    REF("\"prompt_logprobs\":1,\"stream\":true", "prompt_logprobs");
    REF("\"max_tokens\":0", "max_tokens");
#undef REF
    refused(DSA_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
            "\"echo\":true,\"max_tokens\":0}", "max_tokens");
}

/* chat echo: the last message's content when its role is the reply's */
Test(api_logits, chat_echo_text)
{
    static const struct {
        const char *body, *want;
    } cases[] = {
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\","
         "\"content\":\"The answer\"}],\"echo\":true}", "The answer"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}],\"echo\":true}", ""},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
         "{\"type\":\"text\",\"text\":\"b\"}]}],\"echo\":true,"
         "\"add_generation_prompt\":false}", "a\nb"},
        {"{\"messages\":[{\"role\":\"assistant\",\"content\":\"x\"}]}", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dsa_api_request r;
        dsa_api_error e;
        cr_assert_eq(parse(DSA_API_CHAT, cases[i].body, &r, &e), DSA_OK, "%s", e.message);
        dsa_jbuf b = {0};
        cr_assert_eq(dsa_api_chat_echo(&r, &b), DSA_OK);
        cr_assert_eq(b.len, strlen(cases[i].want), "case %zu", i);
        cr_assert(!b.len || !strcmp(b.data, cases[i].want), "case %zu: %s", i, b.data);
        dsa_jbuf_deinit(&b);
        dsa_api_request_free(&r);
    }
}

/* vLLM's shape: [null, {"id": {"logprob", "rank", "decoded_token"}, ...}],
 * the prompt token first, each id once; stop_reason in choices. */
Test(api_logits, prompt_logprobs_and_stop_reason_json)
{
    dsa_api_prompt_lp lp[2] = {
        {.token = 7, .logprob = -2.5f, .rank = 3, .text = "a", .n_text = 1, .n_top = 2,
         .top_ids = {4, 5}, .top_logprob = {-0.5f, -1.0f}, .top_text = {"b", "c"},
         .top_n_text = {1, 1}},
        {.token = 4, .logprob = -0.25f, .rank = 1, .text = "b", .n_text = 1, .n_top = 2,
         .top_ids = {4, 9}, .top_logprob = {-0.25f, -3.0f}, .top_text = {"b", "\""},
         .top_n_text = {1, 1}}};
    dsa_jbuf b = {0};
    dsa_api_prompt_logprobs_json(&b, lp, 2);
    cJSON *j = cJSON_Parse(b.data);
    cr_assert_not_null(j, "%s", b.data);
    cr_assert_eq(cJSON_GetArraySize(j), 3);
    cr_assert(cJSON_IsNull(cJSON_GetArrayItem(j, 0)));
    cJSON *p1 = cJSON_GetArrayItem(j, 1), *p2 = cJSON_GetArrayItem(j, 2);
    cr_assert_eq(cJSON_GetArraySize(p1), 3);
    cr_assert_str_eq(p1->child->string, "7");
    cJSON *t7 = cJSON_GetObjectItem(p1, "7");
    cr_assert_float_eq(cJSON_GetObjectItem(t7, "logprob")->valuedouble, -2.5, 1e-6);
    cr_assert_eq(cJSON_GetObjectItem(t7, "rank")->valueint, 3);
    cr_assert_str_eq(cJSON_GetObjectItem(t7, "decoded_token")->valuestring, "a");
    cr_assert_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(p1, "5"), "rank")->valueint, 2);
    cr_assert_eq(cJSON_GetArraySize(p2), 2); /* 4 is both the token and the top id */
    cr_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(p2, "9"), "decoded_token")
                         ->valuestring, "\"");
    cJSON_Delete(j);

    dsa_jbuf_reset(&b);
    dsa_api_resp_meta m = {.kind = DSA_API_COMPLETION, .id = "cmpl-1", .model = "m"};
    dsa_api_choice c[3] = {
        {.text = "x", .n_text = 1, .finish_reason = "stop", .has_stop_token = 1,
         .stop_token = 42, .prompt_logprobs = "[null]"},
        {.text = "y", .n_text = 1, .finish_reason = "stop", .stop_str = "END"},
        {.text = "z", .n_text = 1, .finish_reason = "length"}};
    dsa_api_usage u = {1, 2};
    dsa_api_response(&b, &m, c, 3, &u);
    j = cJSON_Parse(b.data);
    cr_assert_not_null(j, "%s", b.data);
    cJSON *ch = cJSON_GetObjectItem(j, "choices");
    cr_assert_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(ch, 0), "stop_reason")->valueint, 42);
    cr_assert(cJSON_IsArray(cJSON_GetObjectItem(cJSON_GetArrayItem(ch, 0), "prompt_logprobs")));
    cr_assert_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(ch, 1), "stop_reason")->valuestring,
                     "END");
    cr_assert(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetArrayItem(ch, 2), "stop_reason")));
    cr_assert(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetArrayItem(ch, 1), "prompt_logprobs")));
    cJSON_Delete(j);

    /* chat: prompt_logprobs at the top level */
    dsa_jbuf_reset(&b);
    m.kind = DSA_API_CHAT;
    dsa_api_response(&b, &m, c, 1, &u);
    j = cJSON_Parse(b.data);
    cr_assert(cJSON_IsArray(cJSON_GetObjectItem(j, "prompt_logprobs")), "%s", b.data);
    cJSON_Delete(j);

    /* echo's null first entry in completion logprobs */
    dsa_jbuf_reset(&b);
    m.kind = DSA_API_COMPLETION;
    dsa_api_logprob l2[2] = {{.none = 1, .text = "<s>", .n_text = 3},
                             {.text = "a", .n_text = 1, .logprob = -1.0f, .n_top = 1,
                              .top_text = {"a"}, .top_n_text = {1}, .top_logprob = {-1.0f}}};
    dsa_api_choice ec = {.text = "<s>a", .n_text = 4, .finish_reason = "length",
                         .logprobs = l2, .n_logprobs = 2, .has_logprobs = 1};
    dsa_api_response(&b, &m, &ec, 1, &u);
    j = cJSON_Parse(b.data);
    cJSON *lpj = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0),
                                     "logprobs");
    cr_assert(cJSON_IsNull(cJSON_GetArrayItem(cJSON_GetObjectItem(lpj, "token_logprobs"), 0)),
              "%s", b.data);
    cr_assert(cJSON_IsNull(cJSON_GetArrayItem(cJSON_GetObjectItem(lpj, "top_logprobs"), 0)));
    cr_assert_float_eq(
        cJSON_GetArrayItem(cJSON_GetObjectItem(lpj, "token_logprobs"), 1)->valuedouble, -1.0,
        1e-6);
    cJSON_Delete(j);
    dsa_jbuf_deinit(&b);
}
