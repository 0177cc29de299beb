/* test_head_params.c - vLLM's request parameters and defaults: the
 * parameter table of head/api_params.c (each refusal names its parameter),
 * defaults from generation_config.json (common/genconfig.h) and vLLM's own
 * (head/params.h), max_tokens and truncate_prompt_tokens, the
 * continue_final_message rules and rendering, and text_offset in
 * characters. */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/chat.h"
#include "common/genconfig.h"
#include "head/api.h"
#include "head/params.h"
#include "head/tools.h"

static dsa_err parse(dsa_api_kind k, const char *body, dsa_api_request *r, dsa_api_error *e)
{
    return dsa_api_parse(k, body, strlen(body), r, e);
}

#define CHAT_MSGS "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"

/* body is "{" CHAT_MSGS or "prompt" + extra "}" */
static void expect_400(dsa_api_kind k, const char *extra, const char *param)
{
    char body[1024];
    snprintf(body, sizeof body, "{%s,%s}",
             k == DSA_API_CHAT ? CHAT_MSGS : "\"prompt\":\"hi\"", extra);
    dsa_api_request r;
    dsa_api_error e;
    cr_assert_eq(parse(k, body, &r, &e), DSA_INVAL, "accepted: %s", body);
    cr_assert_eq(e.status, 400, "%s", body);
    cr_assert_str_eq(e.param, param, "%s: param '%s', message %s", body, e.param, e.message);
}

static void expect_ok(dsa_api_kind k, const char *extra, dsa_api_request *r)
{
    char body[1024];
    snprintf(body, sizeof body, "{%s,%s}",
             k == DSA_API_CHAT ? CHAT_MSGS : "\"prompt\":\"hi\"", extra);
    dsa_api_error e;
    cr_assert_eq(parse(k, body, r, &e), DSA_OK, "%s: %s (%s)", body, e.message, e.param);
}

static void ok_free(dsa_api_kind k, const char *extra)
{
    dsa_api_request r;
    expect_ok(k, extra, &r);
    dsa_api_request_free(&r);
}

Test(params, refused_name_their_param)
{
    static const struct {
        dsa_api_kind k;
        const char *extra, *param;
    } cases[] = {
        {DSA_API_COMPLETION, "\"suffix\":\"x\"", "suffix"},
        {DSA_API_COMPLETION, "\"best_of\":2", "best_of"},
        {DSA_API_COMPLETION, "\"n\":2,\"best_of\":1", "best_of"},
        {DSA_API_CHAT, "\"best_of\":3", "best_of"},
        {DSA_API_CHAT, "\"stream_options\":{\"include_usage\":true}", "stream_options"},
        {DSA_API_COMPLETION, "\"stream\":false,\"stream_options\":{\"include_usage\":false}",
         "stream_options"},
        {DSA_API_CHAT, "\"stream\":true,\"stream_options\":{\"continuous_usage_stats\":true}",
         "stream_options.continuous_usage_stats"},
        {DSA_API_CHAT, "\"response_format\":{\"type\":\"yaml\"}", "response_format"},
        {DSA_API_CHAT, "\"response_format\":{\"type\":\"json_schema\"}",
         "response_format.json_schema"},
        {DSA_API_CHAT, "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":"
         "{\"name\":\"a\"}}", "response_format.json_schema.schema"},
        {DSA_API_CHAT, "\"response_format\":{\"type\":\"structural_tag\"}", "response_format"},
        {DSA_API_CHAT, "\"guided_grammar\":5", "guided_grammar"},
        {DSA_API_CHAT, "\"structured_outputs\":{\"structural_tag\":\"{}\"}",
         "structured_outputs.structural_tag"},
        {DSA_API_CHAT, "\"structured_outputs\":[1]", "structured_outputs"},
        {DSA_API_COMPLETION, "\"guided_choice\":\"a\"", "guided_choice"},
        {DSA_API_COMPLETION, "\"guided_choice\":[\"a\",1]", "guided_choice"},
        {DSA_API_COMPLETION, "\"guided_choice\":[]", "guided_choice"},
        {DSA_API_COMPLETION, "\"guided_regex\":[\"a\"]", "guided_regex"},
        {DSA_API_COMPLETION, "\"guided_json\":5", "guided_json"},
        /* one constraint per request, as vLLM */
        {DSA_API_COMPLETION, "\"guided_regex\":\"a\",\"guided_choice\":[\"a\"]",
         "guided_choice"},
        {DSA_API_CHAT, "\"response_format\":{\"type\":\"json_object\"},"
         "\"structured_outputs\":{\"regex\":\"a\"}", "structured_outputs.regex"},
        {DSA_API_CHAT, "\"structural_tag\":\"{}\"", "structural_tag"},
        {DSA_API_CHAT, "\"chat_template\":\"{{ messages }}\"", "chat_template"},
        {DSA_API_CHAT, "\"logits_processors\":[\"a.b\"]", "logits_processors"},
        {DSA_API_COMPLETION, "\"bad_words\":[\"x\"]", "bad_words"},
        {DSA_API_CHAT, "\"use_beam_search\":true", "use_beam_search"},
        {DSA_API_COMPLETION, "\"cache_salt\":\"s\"", "cache_salt"},
        {DSA_API_CHAT, "\"kv_transfer_params\":{\"do_remote_prefill\":true}",
         "kv_transfer_params"},
        {DSA_API_COMPLETION, "\"return_token_ids\":true", "return_token_ids"},
        {DSA_API_COMPLETION, "\"prompt_embeds\":\"AAAA\"", "prompt_embeds"},
        {DSA_API_CHAT, "\"priority\":1", "priority"},
        {DSA_API_CHAT, "\"audio\":{\"voice\":\"alloy\",\"format\":\"wav\"}", "audio"},
        {DSA_API_CHAT, "\"modalities\":[\"text\",\"audio\"]", "modalities"},
        {DSA_API_CHAT, "\"web_search_options\":{}", "web_search_options"},
        {DSA_API_CHAT, "\"functions\":[{\"name\":\"f\"}]", "functions"},
        {DSA_API_CHAT, "\"reasoning_effort\":\"extreme\"", "reasoning_effort"},
        {DSA_API_CHAT, "\"include_reasoning\":false", "include_reasoning"},
        {DSA_API_CHAT, "\"truncate_prompt_tokens\":-2", "truncate_prompt_tokens"},
        {DSA_API_COMPLETION, "\"truncate_prompt_tokens\":1.5", "truncate_prompt_tokens"},
        {DSA_API_CHAT, "\"add_generation_prompt\":true,\"continue_final_message\":true",
         "continue_final_message"},
        /* add_generation_prompt defaults to true: continuing needs it off */
        {DSA_API_CHAT, "\"continue_final_message\":true", "continue_final_message"},
        {DSA_API_CHAT, "\"chat_template_kwargs\":[]", "chat_template_kwargs"},
        {DSA_API_CHAT, "\"include_stop_str_in_output\":1", "include_stop_str_in_output"},
        {DSA_API_COMPLETION, "\"add_special_tokens\":\"no\"", "add_special_tokens"},
        {DSA_API_CHAT, "\"request_id\":5", "request_id"},
        {DSA_API_CHAT, "\"user\":5", "user"},
        {DSA_API_CHAT, "\"documents\":{}", "documents"},
        {DSA_API_COMPLETION, "\"spaces_between_special_tokens\":\"yes\"",
         "spaces_between_special_tokens"},
        {DSA_API_CHAT, "\"vllm_xargs\":[1]", "vllm_xargs"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_400(cases[i].k, cases[i].extra, cases[i].param);
}

Test(params, accepted_as_vllm_does)
{
    static const struct {
        dsa_api_kind k;
        const char *extra;
    } cases[] = {
        {DSA_API_COMPLETION, "\"best_of\":1"},
        {DSA_API_COMPLETION, "\"best_of\":null,\"n\":2"},
        {DSA_API_COMPLETION, "\"suffix\":null"},
        {DSA_API_CHAT, "\"stream_options\":{}"},   /* vLLM: an empty object passes */
        {DSA_API_CHAT, "\"stream_options\":null"},
        {DSA_API_CHAT, "\"response_format\":{\"type\":\"text\"}"},
        {DSA_API_CHAT, "\"logits_processors\":[]"},
        {DSA_API_CHAT, "\"bad_words\":[]"},
        {DSA_API_CHAT, "\"use_beam_search\":false,\"length_penalty\":2.0"},
        {DSA_API_CHAT, "\"priority\":0"},
        {DSA_API_CHAT, "\"user\":\"u1\",\"store\":false,\"metadata\":{\"a\":\"b\"},"
         "\"service_tier\":\"auto\""},
        {DSA_API_CHAT, "\"documents\":[{\"title\":\"t\",\"text\":\"x\"}]"},
        {DSA_API_CHAT, "\"chat_template_kwargs\":{\"enable_thinking\":false}"},
        {DSA_API_CHAT, "\"mm_processor_kwargs\":{},\"vllm_xargs\":{\"a\":1}"},
        {DSA_API_CHAT, "\"reasoning_effort\":\"low\",\"modalities\":[\"text\"]"},
        {DSA_API_CHAT, "\"spaces_between_special_tokens\":false"},
        {DSA_API_CHAT, "\"guided_decoding_backend\":\"xgrammar\""},
        {DSA_API_CHAT, "\"response_format\":{\"type\":\"json_object\"}"},
        {DSA_API_COMPLETION, "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":"
         "{\"name\":\"a\",\"schema\":{},\"strict\":true}}"},
        {DSA_API_CHAT, "\"guided_json\":{\"type\":\"object\"}"},
        {DSA_API_CHAT, "\"guided_json\":\"{}\""},
        {DSA_API_COMPLETION, "\"guided_regex\":\"a+\""},
        {DSA_API_COMPLETION, "\"guided_choice\":[\"a\",\"b\"]"},
        {DSA_API_CHAT, "\"structured_outputs\":{\"regex\":\"a\",\"backend\":\"xgrammar\"}"},
        {DSA_API_CHAT, "\"guided_grammar\":\"root ::= \\\"a\\\"\""},
        {DSA_API_CHAT, "\"structured_outputs\":{\"grammar\":\"root ::= [a-z]+\"}"},
        {DSA_API_CHAT, "\"structured_outputs\":{\"json_object\":true,"
         "\"disable_any_whitespace\":true}"},
        {DSA_API_CHAT, "\"add_generation_prompt\":false,\"continue_final_message\":true"},
        {DSA_API_CHAT, "\"continue_final_message\":true,"
         "\"chat_template_kwargs\":{\"add_generation_prompt\":false}"},
        {DSA_API_COMPLETION, "\"truncate_prompt_tokens\":-1"},
        {DSA_API_COMPLETION, "\"truncate_prompt_tokens\":0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        ok_free(cases[i].k, cases[i].extra);
}

Test(params, parsed_values)
{
    dsa_api_request r;
    expect_ok(DSA_API_COMPLETION, "\"top_k\":3,\"include_stop_str_in_output\":true,"
              "\"add_special_tokens\":false,\"return_tokens_as_token_ids\":true,"
              "\"request_id\":\"abc\",\"truncate_prompt_tokens\":7", &r);
    cr_assert(r.has_top_k && !r.has_min_p && !r.has_repetition_penalty);
    cr_assert(r.include_stop_str_in_output && !r.add_special_tokens);
    cr_assert(r.return_tokens_as_token_ids);
    cr_assert_str_eq(r.request_id, "abc");
    cr_assert(r.has_truncate);
    cr_assert_eq(r.truncate_prompt_tokens, 7);
    cr_assert_eq(r.max_tokens, 16);
    dsa_api_request_free(&r);
    /* explicit null: no 16-token default (vLLM: to the end of the context) */
    expect_ok(DSA_API_COMPLETION, "\"max_tokens\":null", &r);
    cr_assert_eq(r.max_tokens, -1);
    cr_assert(r.add_special_tokens);
    dsa_api_request_free(&r);
    expect_ok(DSA_API_CHAT, "\"min_p\":0.1", &r);
    cr_assert_eq(r.max_tokens, -1);
    cr_assert(!r.add_special_tokens && r.has_min_p);
    dsa_api_request_free(&r);
    expect_ok(DSA_API_CHAT, "\"stream\":true,\"stream_options\":{}", &r);
    cr_assert(r.include_usage); /* vLLM's StreamOptions.include_usage defaults to true */
    dsa_api_request_free(&r);
    expect_ok(DSA_API_CHAT, "\"stream\":true,\"stream_options\":{\"include_usage\":false}", &r);
    cr_assert(!r.include_usage);
    dsa_api_request_free(&r);
    expect_ok(DSA_API_CHAT, "\"add_generation_prompt\":false,\"continue_final_message\":true",
              &r);
    cr_assert(r.continue_final_message && !r.add_generation_prompt);
    dsa_api_request_free(&r);
}

static dsa_api_request req_defaults(void)
{
    dsa_api_request r;
    dsa_api_error e;
    cr_assert_eq(parse(DSA_API_CHAT, "{" CHAT_MSGS "}", &r, &e), DSA_OK);
    return r;
}

Test(params, sampling_defaults)
{
    dsa_api_request r = req_defaults();
    dsa_sampling sp;
    dsa_params_sampling(&r, NULL, 9, &sp);
    cr_assert_float_eq(sp.temperature, 1.0f, 1e-6);
    cr_assert_float_eq(sp.top_p, 1.0f, 1e-6);
    cr_assert_eq(sp.top_k, -1);
    cr_assert_float_eq(sp.min_p, 0.0f, 1e-6);
    cr_assert_float_eq(sp.repetition_penalty, 1.0f, 1e-6);
    cr_assert_eq(sp.seed, 9);
    dsa_genconfig gc;
    cr_assert_eq(dsa_genconfig_parse("{\"temperature\":0.6,\"top_p\":0.95,\"top_k\":20,"
                                     "\"min_p\":0.05,\"repetition_penalty\":1.1,"
                                     "\"do_sample\":true}", "g", &gc), DSA_OK);
    dsa_params_sampling(&r, &gc, 0, &sp);
    cr_assert_float_eq(sp.temperature, 0.6f, 1e-6);
    cr_assert_float_eq(sp.top_p, 0.95f, 1e-6);
    cr_assert_eq(sp.top_k, 20);
    cr_assert_float_eq(sp.min_p, 0.05f, 1e-6);
    cr_assert_float_eq(sp.repetition_penalty, 1.1f, 1e-6);
    dsa_api_request_free(&r);
    /* the request's values win, top_k -1 included */
    dsa_api_error e;
    const char *body = "{" CHAT_MSGS ",\"temperature\":0,\"top_p\":0.5,\"top_k\":-1,"
                       "\"min_p\":0,\"repetition_penalty\":1.0}";
    cr_assert_eq(parse(DSA_API_CHAT, body, &r, &e), DSA_OK);
    dsa_params_sampling(&r, &gc, 0, &sp);
    cr_assert_float_eq(sp.temperature, 0.0f, 1e-6);
    cr_assert_float_eq(sp.top_p, 0.5f, 1e-6);
    cr_assert_eq(sp.top_k, -1);
    cr_assert_float_eq(sp.min_p, 0.0f, 1e-6);
    cr_assert_float_eq(sp.repetition_penalty, 1.0f, 1e-6);
    dsa_api_request_free(&r);
    /* vLLM's floor for a positive temperature */
    cr_assert_eq(parse(DSA_API_CHAT, "{" CHAT_MSGS ",\"temperature\":0.001}", &r, &e), DSA_OK);
    dsa_params_sampling(&r, NULL, 0, &sp);
    cr_assert_float_eq(sp.temperature, 0.01f, 1e-7);
    dsa_api_request_free(&r);
}

Test(params, genconfig_as_vllm_reads_it)
{
    dsa_genconfig gc;
    /* transformers' defaults are dropped (to_diff_dict): top_k 50 and
     * temperature 1.0 set nothing; nulls are skipped */
    cr_assert_eq(dsa_genconfig_parse("{\"top_k\":50,\"temperature\":1.0,\"top_p\":null,"
                                     "\"max_new_tokens\":7}", "g", &gc), DSA_OK);
    cr_assert(!gc.has_top_k && !gc.has_temperature && !gc.has_top_p);
    cr_assert(gc.has_max_tokens);
    cr_assert_eq(gc.max_tokens, 7);
    cr_assert_eq(dsa_genconfig_parse("{\"temperature\":\"hot\"}", "g", &gc), DSA_FORMAT);
    cr_assert_eq(dsa_genconfig_parse("{\"top_p\":0}", "g", &gc), DSA_RANGE);
    cr_assert_eq(dsa_genconfig_parse("[]", "g", &gc), DSA_FORMAT);

    char dir[] = "/tmp/dsa-genconfig-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    int found = 1;
    cr_assert_eq(dsa_genconfig_load("auto", dir, &gc, &found), DSA_OK);
    cr_assert(!found && !gc.has_temperature); /* no file: vLLM's defaults */
    char path[256];
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("{\"temperature\":0.3}", f);
    fclose(f);
    cr_assert_eq(dsa_genconfig_load("auto", dir, &gc, &found), DSA_OK);
    cr_assert(found && gc.has_temperature);
    cr_assert_float_eq(gc.temperature, 0.3, 1e-9);
    cr_assert_eq(dsa_genconfig_load("vllm", dir, &gc, &found), DSA_OK);
    cr_assert(!found && !gc.has_temperature);
    cr_assert_eq(dsa_genconfig_load(dir, "/nonexistent", &gc, &found), DSA_OK);
    cr_assert(found && gc.has_temperature);
    unlink(path);
    rmdir(dir);
}

Test(params, max_new_as_get_max_tokens)
{
    dsa_api_request r = req_defaults();
    cr_assert_eq(dsa_params_max_new(&r, NULL, 100, 30), 70); /* chat: the context left */
    r.max_tokens = 16;
    cr_assert_eq(dsa_params_max_new(&r, NULL, 100, 30), 16);
    cr_assert_eq(dsa_params_max_new(&r, NULL, 40, 30), 10);
    dsa_genconfig gc = {.has_max_tokens = 1, .max_tokens = 5};
    cr_assert_eq(dsa_params_max_new(&r, &gc, 100, 30), 5); /* max_new_tokens caps */
    dsa_api_request_free(&r);
}

Test(params, truncate_keeps_last_k)
{
    dsa_api_request r = req_defaults();
    int32_t ids[6] = {1, 2, 3, 4, 5, 6};
    int32_t n = 6;
    dsa_api_error e;
    cr_assert_eq(dsa_params_truncate(&r, 100, ids, &n, &e), DSA_OK);
    cr_assert_eq(n, 6);
    r.has_truncate = 1;
    r.truncate_prompt_tokens = 4;
    cr_assert_eq(dsa_params_truncate(&r, 100, ids, &n, &e), DSA_OK);
    cr_assert_eq(n, 4);
    cr_assert_arr_eq(ids, ((int32_t[]){3, 4, 5, 6}), 4 * sizeof(int32_t));
    r.truncate_prompt_tokens = -1; /* max_model_len */
    cr_assert_eq(dsa_params_truncate(&r, 3, ids, &n, &e), DSA_OK);
    cr_assert_eq(n, 3);
    cr_assert_eq(ids[0], 4);
    r.truncate_prompt_tokens = 101;
    cr_assert_eq(dsa_params_truncate(&r, 100, ids, &n, &e), DSA_INVAL);
    cr_assert_eq(e.status, 400);
    cr_assert_str_eq(e.param, "truncate_prompt_tokens");
    r.truncate_prompt_tokens = 0;
    cr_assert_eq(dsa_params_truncate(&r, 100, ids, &n, &e), DSA_OK);
    cr_assert_eq(n, 0);
    dsa_api_request_free(&r);
}

Test(params, continue_final_message_renders_open)
{
    cJSON *m = cJSON_Parse("[{\"role\":\"user\",\"content\":\"Say hi\"},"
                           "{\"role\":\"assistant\",\"content\":\"Hello the  \"}]");
    cr_assert_not_null(m);
    char *text = NULL;
    cr_assert_eq(dsa_chat_render(DSA_CHAT_V3, m, false, "<B>", &text), DSA_OK);
    /* the closed turn ends with the end-of-sentence token */
    cr_assert_not_null(strstr(text, "Hello the  <"), "%s", text);
    cr_assert_eq(dsa_chat_continue_final(m, text), DSA_OK);
    size_t n = strlen(text);
    cr_assert(n >= 9 && !strcmp(text + n - 9, "Hello the"), "%s", text);
    cr_assert_not_null(strstr(text, "Say hi"));
    free(text);
    cJSON_Delete(m);
    /* a content list: the last part with text is continued */
    m = cJSON_Parse("[{\"role\":\"user\",\"content\":\"Q\"},{\"role\":\"assistant\","
                    "\"content\":[{\"type\":\"text\",\"text\":\"Part one\"},"
                    "{\"type\":\"text\",\"text\":\"part two\"}]}]");
    cr_assert_eq(dsa_chat_render(DSA_CHAT_V3, m, false, "", &text), DSA_OK);
    cr_assert_eq(dsa_chat_continue_final(m, text), DSA_OK);
    n = strlen(text);
    cr_assert(n >= 8 && !strcmp(text + n - 8, "part two"), "%s", text);
    free(text);
    cJSON_Delete(m);
    /* no text to continue */
    m = cJSON_Parse("[{\"role\":\"user\",\"content\":\"Q\"},{\"role\":\"assistant\","
                    "\"content\":null,\"tool_calls\":[{\"type\":\"function\",\"id\":\"c\","
                    "\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}]");
    cr_assert_eq(dsa_chat_render(DSA_CHAT_V3, m, false, "", &text), DSA_OK);
    cr_assert_eq(dsa_chat_continue_final(m, text), DSA_INVAL);
    free(text);
    cJSON_Delete(m);
}

Test(params, text_offset_counts_characters)
{
    cr_assert_eq(dsa_api_text_chars("abc", 3), 3);
    cr_assert_eq(dsa_api_text_chars("\xc3\xa9\xe6\xbc\xa2", 5), 2);    /* é漢 */
    cr_assert_eq(dsa_api_text_chars("\xf0\x9f\x98\x80x", 5), 2);       /* 😀x */
    cr_assert_eq(dsa_api_text_chars("\xe6\xbc", 2), 2); /* a cut character: 2 x U+FFFD */
    dsa_api_resp_meta m = {.kind = DSA_API_COMPLETION, .id = "cmpl-1", .created = 5,
                           .model = "tiny"};
    dsa_api_logprob lp[3] = {{.text = "\xc3\xa9t", .n_text = 3, .logprob = -0.5f},
                             {.text = "\xe6\xbc\xa2", .n_text = 3, .logprob = -1.0f},
                             {.text = "!", .n_text = 1, .logprob = -1.0f}};
    dsa_api_choice c = {.text = "\xc3\xa9t\xe6\xbc\xa2!", .n_text = 7, .finish_reason = "length",
                        .logprobs = lp, .n_logprobs = 3, .has_logprobs = 1};
    dsa_api_usage u = {.prompt_tokens = 2, .completion_tokens = 3};
    dsa_jbuf b = {0};
    dsa_api_response(&b, &m, &c, 1, &u);
    cJSON *j = cJSON_Parse(b.data);
    cr_assert_not_null(j, "%s", b.data);
    cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
    cJSON *off = cJSON_GetObjectItem(cJSON_GetObjectItem(c0, "logprobs"), "text_offset");
    cr_assert_eq(cJSON_GetArrayItem(off, 0)->valueint, 0);
    cr_assert_eq(cJSON_GetArrayItem(off, 1)->valueint, 2);
    cr_assert_eq(cJSON_GetArrayItem(off, 2)->valueint, 3);
    cJSON_Delete(j);
    dsa_jbuf_deinit(&b);
}

/* text_offset of the first logprobs token in an SSE chunk "data: {...}\n\n" */
static int chunk_offset(const char *ev)
{
    cJSON *j = cJSON_Parse(ev + 6);
    cr_assert_not_null(j, "%s", ev);
    cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
    cJSON *off = cJSON_GetObjectItem(cJSON_GetObjectItem(c0, "logprobs"), "text_offset");
    int v = cJSON_GetArrayItem(off, 0)->valueint;
    cJSON_Delete(j);
    return v;
}

Test(params, streamed_text_offset_follows_the_tokens)
{
    /* a character split over two tokens: the first token's content is held
     * back by the detokenizer, yet the offsets are those of the whole
     * response (0, then the first token's 2 characters) */
    dsa_api_resp_meta m = {.kind = DSA_API_COMPLETION, .id = "cmpl-1", .created = 5,
                           .model = "tiny"};
    dsa_api_logprob a = {.text = "\xe6\xbc", .n_text = 2, .logprob = -1.0f};
    dsa_api_logprob b = {.text = "\xa2", .n_text = 1, .logprob = -1.0f};
    size_t offset = 0;
    dsa_tools_delta d1 = {.content = "", .n_content = 0};
    dsa_tools_delta d2 = {.content = "\xe6\xbc\xa2", .n_content = 3};
    dsa_jbuf b1 = {0}, b2 = {0};
    dsa_tools_sse(&b1, &(dsa_tools_sse_event){.meta = &m, .td = &d1, .logprobs = &a,
                                              .n_logprobs = 1, .text_offset = &offset});
    dsa_tools_sse(&b2, &(dsa_tools_sse_event){.meta = &m, .td = &d2, .logprobs = &b,
                                              .n_logprobs = 1, .text_offset = &offset});
    cr_assert_eq(chunk_offset(b1.data), 0);
    cr_assert_eq(chunk_offset(b2.data), 2);
    cr_assert_eq(offset, 3);
    dsa_jbuf_deinit(&b1);
    dsa_jbuf_deinit(&b2);
}

Test(params, unknown_fields_are_reported)
{
    dsa_api_request r;
    expect_ok(DSA_API_COMPLETION, "\"temprature\":0.5,\"top_k\":2,\"stop_token_ids\":[1],"
              "\"foo\":{}", &r);
    cr_assert_str_eq(r.ignored, "temprature, foo");
    dsa_api_request_free(&r);
    expect_ok(DSA_API_CHAT, "\"max_completion_tokens\":3,\"store\":true", &r);
    cr_assert_null(r.ignored);
    dsa_api_request_free(&r);
}
