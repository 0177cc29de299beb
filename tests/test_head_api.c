/* test_head_api.c - the head's pure parts: request parsing and validation,
 * error objects, SSE framing and response shapes, auth, stop-string
 * scanning, tool calls (tools/tool_choice validation, the tool-call filter
 * and the responses built from it), the block allocator and FCFS
 * scheduler, and metrics text. */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "head/api.h"
#include "head/json_in.h"
#include "head/metrics.h"
#include "head/sched.h"
#include "head/textout.h"
#include "head/tools.h"
#include "tests/support.h"

static dsa_err parse(dsa_api_kind k, const char *body, dsa_api_request *r, dsa_api_error *e)
{
    return dsa_api_parse(k, body, strlen(body), r, e);
}

Test(api, chat_full)
{
    dsa_api_request r;
    dsa_api_error e;
    const char *body = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                       "\"max_completion_tokens\":7,\"temperature\":0.5,\"top_p\":0.9,"
                       "\"top_k\":5,\"min_p\":0.1,\"seed\":-3,\"stop\":[\"a\",\"bc\"],"
                       "\"stream\":true,\"stream_options\":{\"include_usage\":true},"
                       "\"presence_penalty\":1,\"frequency_penalty\":-1,"
                       "\"repetition_penalty\":1.2,\"logprobs\":true,\"top_logprobs\":3,"
                       "\"ignore_eos\":true,\"user\":\"u\",\"unknown\":{\"x\":1}}";
    cr_assert_eq(parse(DSA_API_CHAT, body, &r, &e), DSA_OK, "%s", e.message);
    cr_assert_str_eq(r.model, "m");
    cr_assert_eq(cJSON_GetArraySize(r.messages), 1);
    cr_assert_eq(r.max_tokens, 7);
    cr_assert_float_eq(r.temperature, 0.5, 1e-9);
    cr_assert_eq(r.top_k, 5);
    cr_assert(r.has_seed);
    cr_assert_eq((int64_t)r.seed, -3);
    cr_assert_eq(r.n_stop, 2);
    cr_assert_str_eq(r.stop[1], "bc");
    cr_assert(r.stream && r.include_usage && r.logprobs && r.ignore_eos);
    cr_assert_eq(r.top_logprobs, 3);
    cr_assert_float_eq(r.repetition_penalty, 1.2, 1e-9);
    dsa_api_request_free(&r);
}

Test(api, completion_prompt_forms)
{
    dsa_api_request r;
    dsa_api_error e;
    cr_assert_eq(parse(DSA_API_COMPLETION, "{\"prompt\":\"abc\"}", &r, &e), DSA_OK);
    cr_assert_eq(r.n_prompts, 1);
    cr_assert_str_eq(r.prompts[0].text, "abc");
    cr_assert_eq(r.max_tokens, 16); /* vLLM's CompletionRequest default */
    cr_assert_eq(r.n, 1);
    dsa_api_request_free(&r);
    cr_assert_eq(parse(DSA_API_COMPLETION, "{\"prompt\":[\"a\",\"b\"],\"stop\":\"x\"}", &r, &e),
                 DSA_OK);
    cr_assert_eq(r.n_prompts, 2);
    cr_assert_eq(r.n_stop, 1);
    dsa_api_request_free(&r);
    cr_assert_eq(parse(DSA_API_COMPLETION, "{\"prompt\":[1,2,3],\"logprobs\":2}", &r, &e),
                 DSA_OK);
    cr_assert_eq(r.n_prompts, 1);
    cr_assert_eq(r.prompts[0].n_ids, 3);
    cr_assert_eq(r.prompts[0].ids[2], 3);
    cr_assert(r.logprobs);
    cr_assert_eq(r.top_logprobs, 2);
    dsa_api_request_free(&r);
    cr_assert_eq(parse(DSA_API_COMPLETION, "{\"prompt\":[[1],[2,3]]}", &r, &e), DSA_OK);
    cr_assert_eq(r.n_prompts, 2);
    cr_assert_eq(r.prompts[1].n_ids, 2);
    dsa_api_request_free(&r);
}

/* Each bad request names its parameter. */
Test(api, validation_names_param)
{
    static const struct {
        dsa_api_kind kind;
        const char *body, *param;
    } cases[] = {
        {DSA_API_COMPLETION, "{\"prompt\":\"x\",\"temperature\":\"hot\"}", "temperature"},
        {DSA_API_COMPLETION, "{\"prompt\":\"x\",\"temperature\":3}", "temperature"},
        {DSA_API_COMPLETION, "{\"prompt\":\"x\",\"top_p\":0}", "top_p"},
        {DSA_API_COMPLETION, "{\"prompt\":\"x\",\"max_tokens\":0}", "max_tokens"},
        {DSA_API_COMPLETION, "{\"prompt\":\"x\",\"max_tokens\":1.5}", "max_tokens"},
        {DSA_API_COMPLETION, "{\"prompt\":\"x\",\"n\":100}", "n"},
        {DSA_API_COMPLETION, "{\"prompt\":\"x\",\"stop\":5}", "stop"},
        {DSA_API_COMPLETION, "{\"prompt\":\"x\",\"stop\":[\"a\",1]}", "stop"},
        {DSA_API_COMPLETION, "{\"prompt\":\"x\",\"stream\":\"yes\"}", "stream"},
        {DSA_API_COMPLETION, "{\"prompt\":\"x\",\"seed\":\"1\"}", "seed"},
        {DSA_API_COMPLETION, "{\"prompt\":\"x\",\"presence_penalty\":3}", "presence_penalty"},
        {DSA_API_COMPLETION, "{\"prompt\":\"x\",\"repetition_penalty\":0}", "repetition_penalty"},
        {DSA_API_COMPLETION, "{\"prompt\":\"x\",\"logprobs\":true}", "logprobs"},
        {DSA_API_COMPLETION, "{\"prompt\":\"x\",\"stream_options\":1}", "stream_options"},
        {DSA_API_COMPLETION, "{\"prompt\":\"x\",\"model\":3}", "model"},
        {DSA_API_COMPLETION, "{\"prompt\":\"x\",\"user\":3}", "user"},
        {DSA_API_COMPLETION, "{\"prompt\":[]}", "prompt"},
        {DSA_API_COMPLETION, "{\"prompt\":[1,-2]}", "prompt"},
        {DSA_API_COMPLETION, "{\"prompt\":[[1],\"a\",{}]}", "prompt"},
        {DSA_API_COMPLETION, "{}", "prompt"},
        {DSA_API_GENERATE, "{\"prompt\":[1]}", "prompt"},
        {DSA_API_CHAT, "{\"messages\":[]}", "messages"},
        {DSA_API_CHAT, "{\"messages\":\"hi\"}", "messages"},
        {DSA_API_CHAT, "{\"messages\":[{\"content\":\"x\"}]}", "messages"},
        {DSA_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                       "\"top_logprobs\":2}", "top_logprobs"},
        {DSA_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                       "\"logprobs\":1}", "logprobs"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dsa_api_request r;
        dsa_api_error e;
        cr_assert_eq(parse(cases[i].kind, cases[i].body, &r, &e), DSA_INVAL, "%s",
                     cases[i].body);
        cr_assert_eq(e.status, 400);
        cr_assert_str_eq(e.param, cases[i].param, "%s: %s", cases[i].body, e.message);
    }
}

Test(api, not_json)
{
    dsa_api_request r;
    dsa_api_error e;
    cr_assert_eq(parse(DSA_API_COMPLETION, "{\"prompt\":", &r, &e), DSA_INVAL);
    cr_assert_eq(e.status, 400);
    cr_assert_eq(parse(DSA_API_COMPLETION, "[1]", &r, &e), DSA_INVAL);
    cr_assert_eq(dsa_api_parse(DSA_API_COMPLETION, "", 0, &r, &e), DSA_INVAL);
}

/* Bodies as json.loads reads them (head/json_in.c): NUL escapes kept as
 * data, control characters and trailing bytes refused. */
Test(api, json_entry)
{
    dsa_api_request r;
    dsa_api_error e;
    static const char nul[] = "{\"prompt\":\"a\\u0000b\\\\u0000c\",\"max_tokens\":1}";
    cr_assert_eq(parse(DSA_API_COMPLETION, nul, &r, &e), DSA_OK, "%s", e.message);
    cr_assert_eq(r.n_nul, 1);
    /* a, NUL, b, then the escaped backslash: \u0000c as text */
    cr_assert_eq(r.prompts[0].n_text, 10);
    cr_assert(!memcmp(r.prompts[0].text, "a\0b\\u0000c", 10));
    dsa_api_request_free(&r);
    static const char *bad[] = {
        "{\"prompt\":\"\\u0000\\U0000\"}", /* \U is no JSON escape */
        "{\"prompt\":\"a\x01\"}", "{\"prompt\":\"a\tb\"}", "{\"prompt\":\"a\"} x",
        "{\"prompt\":\"a\"}{}", "\x02{\"prompt\":\"a\"}", "{\"prompt\":\"a\xff\"}",
        "{\"prompt\":\"\xc0\xaf\"}", "{\"prompt\":\"\xe4\xb8\"}", "{\"model\":\"\xf4\x90\x80\x80\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_assert_eq(parse(DSA_API_COMPLETION, bad[i], &r, &e), DSA_INVAL, "case %zu", i);
        cr_assert_eq(e.status, 400, "case %zu", i);
    }
    cr_assert_eq(parse(DSA_API_COMPLETION, " \r\n{\"prompt\":\"a\"}\n\t ", &r, &e), DSA_OK,
                 "%s", e.message);
    dsa_api_request_free(&r);
    /* UTF-8 passes, encoded surrogates too (Python's 'surrogatepass') */
    cr_assert_eq(parse(DSA_API_COMPLETION, "{\"prompt\":\"\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80"
                       "\xed\xa0\x80\"}", &r, &e), DSA_OK, "%s", e.message);
    dsa_api_request_free(&r);
    char marked[] = {'x', DSA_JSON_NUL, 'y', DSA_JSON_NUL};
    cr_assert_eq(dsa_json_nul_restore(marked, 4), 2);
    cr_assert(!memcmp(marked, "x\0y\0", 4));
}

Test(api, error_object)
{
    dsa_api_error e;
    dsa_api_fail(&e, 400, "temperature", "bad \"value\"\n");
    dsa_jbuf b = {0};
    dsa_api_error_json(&b, &e);
    cJSON *j = cJSON_Parse(b.data);
    cr_assert_not_null(j);
    cJSON *err = cJSON_GetObjectItem(j, "error");
    cr_assert_str_eq(cJSON_GetObjectItem(err, "message")->valuestring, "bad \"value\"\n");
    cr_assert_str_eq(cJSON_GetObjectItem(err, "type")->valuestring, "invalid_request_error");
    cr_assert_str_eq(cJSON_GetObjectItem(err, "param")->valuestring, "temperature");
    cr_assert_eq(cJSON_GetObjectItem(err, "code")->valueint, 400);
    cJSON_Delete(j);
    dsa_jbuf_reset(&b);
    dsa_api_fail(&e, 401, NULL, "no");
    dsa_api_error_json(&b, &e);
    cr_assert_str_eq(b.data, "{\"error\":{\"message\":\"no\",\"type\":\"authentication_error\","
                             "\"param\":null,\"code\":401}}");
    dsa_jbuf_deinit(&b);
    cr_assert_str_eq(dsa_api_error_type(429), "rate_limit_error");
}

Test(api, json_string_escaping)
{
    dsa_jbuf b = {0};
    const char s[] = "a\"\\\n\t\x01\xc3\xa9\xff\xe4\xb8";
    dsa_jbuf_str(&b, s, sizeof s - 1);
    cr_assert_str_eq(b.data, "\"a\\\"\\\\\\n\\t\\u0001\xc3\xa9\xef\xbf\xbd\xef\xbf\xbd"
                             "\xef\xbf\xbd\"");
    cJSON *j = cJSON_Parse(b.data);
    cr_assert_not_null(j);
    cJSON_Delete(j);
    dsa_jbuf_deinit(&b);
}

/* SSE framing: every event is "data: <json>\n\n" and the JSON has OpenAI's
 * chunk shape. */
static cJSON *sse_json(const char *ev)
{
    cr_assert_eq(strncmp(ev, "data: ", 6), 0);
    size_t n = strlen(ev);
    cr_assert(n > 8 && ev[n - 1] == '\n' && ev[n - 2] == '\n');
    cr_assert_null(memchr(ev, '\n', n - 2), "one line per event");
    return cJSON_ParseWithLength(ev + 6, n - 8);
}

Test(api, sse_chat_chunks)
{
    dsa_api_resp_meta m = {.kind = DSA_API_CHAT, .id = "chatcmpl-1", .created = 5,
                           .model = "tiny"};
    dsa_jbuf b = {0};
    dsa_api_delta role = {.index = 0, .role = "assistant"};
    dsa_api_sse_chunk(&b, &m, &role, 1);
    cJSON *j = sse_json(b.data);
    cr_assert_str_eq(cJSON_GetObjectItem(j, "object")->valuestring, "chat.completion.chunk");
    cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
    cJSON *delta = cJSON_GetObjectItem(c0, "delta");
    cr_assert_str_eq(cJSON_GetObjectItem(delta, "role")->valuestring, "assistant");
    cr_assert_str_eq(cJSON_GetObjectItem(delta, "content")->valuestring, "");
    cr_assert(cJSON_IsNull(cJSON_GetObjectItem(c0, "finish_reason")));
    cr_assert(cJSON_IsNull(cJSON_GetObjectItem(j, "usage")));
    cJSON_Delete(j);

    dsa_jbuf_reset(&b);
    dsa_api_delta d = {.index = 1, .content = "hi\n", .n_content = 3, .reasoning = "r",
                       .n_reasoning = 1};
    dsa_api_sse_chunk(&b, &m, &d, 0);
    j = sse_json(b.data);
    c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
    delta = cJSON_GetObjectItem(c0, "delta");
    cr_assert_eq(cJSON_GetObjectItem(c0, "index")->valueint, 1);
    cr_assert_str_eq(cJSON_GetObjectItem(delta, "content")->valuestring, "hi\n");
    cr_assert_str_eq(cJSON_GetObjectItem(delta, "reasoning_content")->valuestring, "r");
    cr_assert_null(cJSON_GetObjectItem(j, "usage"));
    cJSON_Delete(j);

    dsa_jbuf_reset(&b);
    dsa_api_delta fin = {.index = 0, .finish_reason = "stop"};
    dsa_api_sse_chunk(&b, &m, &fin, 0);
    j = sse_json(b.data);
    c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
    cr_assert_str_eq(cJSON_GetObjectItem(c0, "finish_reason")->valuestring, "stop");
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(c0, "delta")), 0);
    cJSON_Delete(j);

    dsa_jbuf_reset(&b);
    dsa_api_usage u = {.prompt_tokens = 3, .completion_tokens = 4};
    dsa_api_sse_usage(&b, &m, &u);
    j = sse_json(b.data);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "choices")), 0);
    cr_assert_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "usage"), "total_tokens")->valueint,
                 7);
    cJSON_Delete(j);

    dsa_jbuf_reset(&b);
    dsa_api_sse_done(&b);
    cr_assert_str_eq(b.data, "data: [DONE]\n\n");
    dsa_jbuf_reset(&b);
    dsa_api_error e;
    dsa_api_fail(&e, 500, NULL, "boom");
    dsa_api_sse_error(&b, &e);
    j = sse_json(b.data);
    cr_assert_not_null(cJSON_GetObjectItem(j, "error"));
    cJSON_Delete(j);
    dsa_jbuf_deinit(&b);
}

Test(api, completion_response_with_logprobs)
{
    dsa_api_resp_meta m = {.kind = DSA_API_COMPLETION, .id = "cmpl-1", .created = 5,
                           .model = "tiny"};
    dsa_api_logprob lp[2] = {{.text = "a", .n_text = 1, .logprob = -0.5f, .n_top = 1,
                              .top_text = {"a"}, .top_n_text = {1}, .top_logprob = {-0.5f}},
                             {.text = "bc", .n_text = 2, .logprob = -1.0f}};
    dsa_api_choice c = {.text = "abc", .n_text = 3, .finish_reason = "length",
                        .logprobs = lp, .n_logprobs = 2, .has_logprobs = 1};
    dsa_api_usage u = {.prompt_tokens = 2, .completion_tokens = 2};
    dsa_jbuf b = {0};
    dsa_api_response(&b, &m, &c, 1, &u);
    cJSON *j = cJSON_Parse(b.data);
    cr_assert_not_null(j, "%s", b.data);
    cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
    cr_assert_str_eq(cJSON_GetObjectItem(c0, "text")->valuestring, "abc");
    cJSON *l = cJSON_GetObjectItem(c0, "logprobs");
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(l, "tokens")), 2);
    cr_assert_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(l, "text_offset"), 1)->valueint, 1);
    cJSON_Delete(j);
    dsa_jbuf_reset(&b);
    m.kind = DSA_API_CHAT;
    c.reasoning = "why";
    c.n_reasoning = 3;
    dsa_api_response(&b, &m, &c, 1, &u);
    j = cJSON_Parse(b.data);
    cr_assert_not_null(j, "%s", b.data);
    c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
    cJSON *msg = cJSON_GetObjectItem(c0, "message");
    cr_assert_str_eq(cJSON_GetObjectItem(msg, "reasoning_content")->valuestring, "why");
    cr_assert_str_eq(cJSON_GetObjectItem(msg, "content")->valuestring, "abc");
    cJSON_Delete(j);
    dsa_jbuf_deinit(&b);
}

Test(api, auth)
{
    const char *keys[] = {"sk-one", "sk-two-longer"};
    cr_assert(dsa_api_auth_check("Bearer sk-one", 13, keys, 2));
    cr_assert(dsa_api_auth_check("bearer sk-two-longer", 20, keys, 2));
    cr_assert_not(dsa_api_auth_check("Bearer sk-on", 12, keys, 2));
    cr_assert_not(dsa_api_auth_check("Bearer sk-one1", 14, keys, 2));
    cr_assert_not(dsa_api_auth_check("Bearer ", 7, keys, 2));
    cr_assert_not(dsa_api_auth_check("sk-one", 6, keys, 2));
    cr_assert_not(dsa_api_auth_check(NULL, 0, keys, 2));
    cr_assert(dsa_api_auth_check(NULL, 0, keys, 0), "no keys: open");
    /* a NUL inside the presented key does not end the comparison early */
    cr_assert_not(dsa_api_auth_check("Bearer sk-one\0x", 15, keys, 2));
}

Test(textout, stop_scan)
{
    char *stop[] = {"END", "\n\n"};
    int match;
    cr_assert_eq(dsa_textout_scan("hello", 5, stop, 2, &match), 5);
    cr_assert_not(match);
    cr_assert_eq(dsa_textout_scan("helloE", 6, stop, 2, &match), 5);
    cr_assert_eq(dsa_textout_scan("helloEN", 7, stop, 2, &match), 5);
    cr_assert_eq(dsa_textout_scan("hello\n", 6, stop, 2, &match), 5);
    cr_assert_eq(dsa_textout_scan("helloENDx", 9, stop, 2, &match), 5);
    cr_assert(match);
    cr_assert_eq(dsa_textout_scan("a\n\nbEND", 7, stop, 2, &match), 1);
    cr_assert(match);
    cr_assert_eq(dsa_textout_scan("", 0, stop, 2, &match), 0);
    cr_assert_eq(dsa_textout_scan("abc", 3, NULL, 0, &match), 3);
}

Test(sched, fcfs_blocks_and_budget)
{
    dsa_sched s;
    dsa_sched_params p = {.n_blocks = 6, .block_size = 4, .max_num_seqs = 2,
                          .max_num_batched_tokens = 8, .disable_prefix_caching = 1};
    cr_assert_eq(dsa_sched_init(&s, &p), DSA_OK);
    int32_t prompt[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    dsa_sampling sp = {.temperature = 0};
    dsa_sched_seq a, b, c, huge;
    cr_assert_eq(dsa_sched_seq_init(&a, 1, prompt, 10, 2, &sp), DSA_OK); /* 3 blocks */
    cr_assert_eq(dsa_sched_seq_init(&b, 2, prompt, 3, 1, &sp), DSA_OK);  /* 1 block */
    cr_assert_eq(dsa_sched_seq_init(&c, 3, prompt, 5, 4, &sp), DSA_OK);  /* 3 blocks */
    cr_assert_eq(dsa_sched_seq_init(&huge, 4, prompt, 10, 100, &sp), DSA_OK);
    cr_assert_eq(dsa_sched_add(&s, &huge), DSA_RANGE);
    dsa_sched_seq_deinit(&huge);
    cr_assert_eq(dsa_sched_add(&s, &a), DSA_OK);
    cr_assert_eq(dsa_sched_add(&s, &b), DSA_OK);
    cr_assert_eq(dsa_sched_add(&s, &c), DSA_OK);
    /* step 1: a's prompt is chunked to the budget (8); b waits for budget */
    cr_assert_eq(dsa_sched_schedule(&s), 1);
    cr_assert_eq(s.plan.seqs[0].n_tokens, 8);
    cr_assert_eq(s.plan.seqs[0].sample, 0);
    dsa_step_out o1[1] = {{.seq_id = 1, .token = -1}};
    dsa_step_result r = {.n_seqs = 1, .seqs = o1};
    dsa_sched_commit(&s, &r);
    /* step 2: a's last 2 prompt tokens (samples), b's prompt; c must wait
     * (max_num_seqs 2) */
    cr_assert_eq(dsa_sched_schedule(&s), 2);
    cr_assert_eq(s.plan.seqs[0].seq_id, 1);
    cr_assert_eq(s.plan.seqs[0].n_tokens, 2);
    cr_assert_eq(s.plan.seqs[0].pos, 8);
    cr_assert(s.plan.seqs[0].sample);
    cr_assert_eq(s.plan.seqs[0].n_blocks, 3);
    cr_assert_eq(s.plan.seqs[1].seq_id, 2);
    dsa_step_out o2[2] = {{.seq_id = 1, .token = 50}, {.seq_id = 2, .token = 60}};
    r = (dsa_step_result){.n_seqs = 2, .seqs = o2};
    dsa_sched_commit(&s, &r);
    cr_assert_eq(a.n_tokens, 11);
    cr_assert_eq(a.tokens[10], 50);
    cr_assert_eq(b.n_generated, 1);
    cr_assert_eq(s.waiting.n, 1);
    /* b finishes: its block comes back and c is admitted */
    dsa_sched_remove(&s, &b);
    cr_assert_eq(dsa_sched_schedule(&s), 2);
    cr_assert_eq(s.plan.seqs[0].seq_id, 1);
    cr_assert_eq(s.plan.seqs[0].n_tokens, 1);
    cr_assert_eq(s.plan.seqs[1].seq_id, 3);
    cr_assert_eq(s.plan.n_finished, 1);
    cr_assert_eq(s.plan.finished[0], 2);
    dsa_sched_commit(&s, NULL); /* a failed step: nothing computed */
    cr_assert_eq(a.n_computed, 10);
    cr_assert_eq(s.n_finished, 0);
    dsa_sched_remove(&s, &a);
    dsa_sched_remove(&s, &c);
    cr_assert_eq(dsa_blocks_available(&s.bm), 6);
    cr_assert_eq(dsa_blocks_check(&s.bm), 0);
    cr_assert_float_eq(dsa_sched_kv_usage(&s), 0, 1e-12);
    dsa_sched_seq_deinit(&a);
    dsa_sched_seq_deinit(&b);
    dsa_sched_seq_deinit(&c);
    dsa_sched_deinit(&s);
}

Test(metrics, render)
{
    dsa_metrics m;
    dsa_metrics_init(&m, "tiny");
    dsa_metrics_set_max_model_len(&m, 2048);
    dsa_metrics_lock(&m);
    m.running = 2;
    m.generation_tokens = 9;
    m.success[DSA_FINISH_LENGTH] = 3;
    dsa_hist_observe(&m.ttft, 0.003);
    dsa_hist_observe(&m.ttft, 100);
    dsa_hist_observe(&m.n_prompt, 7);
    dsa_metrics_unlock(&m);
    dsa_metrics_observe_params(&m, 2, 0);
    dsa_jbuf b = {0};
    dsa_metrics_render(&m, &b);
#define L(extra) "{engine=\"0\"," extra "model_name=\"tiny\"} "
    static const char *const want[] = {
        "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running" L("") "2.0\n",
        "# TYPE vllm:generation_tokens_total counter\nvllm:generation_tokens_total" L("")
        "9.0\n# HELP vllm:generation_tokens_created Number of generation tokens processed.\n"
        "# TYPE vllm:generation_tokens_created gauge\nvllm:generation_tokens_created" L(""),
        "vllm:request_success_total" L("finished_reason=\"length\",") "3.0\n",
        "vllm:request_success_created" L("finished_reason=\"error\","),
        "vllm:time_to_first_token_seconds_bucket" L("le=\"0.005\",") "1.0\n",
        "vllm:time_to_first_token_seconds_bucket" L("le=\"2560.0\",") "2.0\n",
        "vllm:time_to_first_token_seconds_bucket" L("le=\"+Inf\",") "2.0\n"
        "vllm:time_to_first_token_seconds_count" L("") "2.0\n"
        "vllm:time_to_first_token_seconds_sum" L("") "100.003\n",
        /* 1-2-5 buckets up to max_model_len: 1000 and 2000, no 5000 */
        "vllm:request_prompt_tokens_bucket" L("le=\"2000.0\",") "1.0\n",
        "vllm:request_params_n_bucket" L("le=\"1.0\",") "0.0\n",
        "vllm:request_params_n_bucket" L("le=\"2.0\",") "1.0\n",
        /* no max_tokens sent: not observed */
        "vllm:request_params_max_tokens_count" L("") "0.0\n",
    };
#undef L
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        cr_assert_not_null(strstr(b.data, want[i]), "%s", want[i]);
    cr_assert_null(strstr(b.data, "le=\"5000.0\""));
    cr_assert_not_null(strstr(b.data, "# TYPE vllm:e2e_request_latency_seconds histogram\n"));
    cr_assert_null(strstr(b.data, "dsa:num_requests"));
    dsa_jbuf_deinit(&b);
    dsa_metrics_deinit(&m);
}

/* Label values are escaped as the exposition format requires. */
Test(metrics, escapes_model_name)
{
    dsa_metrics m;
    dsa_metrics_init(&m, "a\"b\\c");
    dsa_jbuf b = {0};
    dsa_metrics_render(&m, &b);
    cr_assert_not_null(strstr(b.data, "vllm:num_requests_waiting{engine=\"0\",model_name="
                                      "\"a\\\"b\\\\c\"} 0.0\n"));
    dsa_jbuf_deinit(&b);
    dsa_metrics_deinit(&m);
}

/* ---- tool calls ----------------------------------------------------------- */

#define CALLS_BEGIN "<｜tool▁calls▁begin｜>"
#define CALLS_END "<｜tool▁calls▁end｜>"
#define CALL_BEGIN "<｜tool▁call▁begin｜>"
#define CALL_END "<｜tool▁call▁end｜>"
#define SEP "<｜tool▁sep｜>"
#define CALL(name, args) CALL_BEGIN "function" SEP name "\n```json\n" args "\n```" CALL_END

/* What DeepSeek-V3 writes for two parallel calls after a short text. */
static const char tool_output[] =
    "Let me check." CALLS_BEGIN CALL("get_weather", "{\"city\": \"Paris\"}") "\n"
    CALL("get_time", "{\"tz\": \"CET\"}") CALLS_END;

#define TOOLS "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"," \
              "\"description\":\"d\",\"parameters\":{\"type\":\"object\"}}}," \
              "{\"type\":\"function\",\"function\":{\"name\":\"get_time\"}}]"
#define MSGS "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"

Test(tools, parse_choices)
{
    static const struct {
        const char *body;
        dsa_api_tool_choice choice;
        int n_tools, parallel;
    } cases[] = {
        {"{" MSGS "}", DSA_API_TOOL_NONE, 0, 1},
        {"{" MSGS "," TOOLS "}", DSA_API_TOOL_AUTO, 2, 1},
        {"{" MSGS "," TOOLS ",\"tool_choice\":\"none\"}", DSA_API_TOOL_NONE, 2, 1},
        {"{" MSGS "," TOOLS ",\"tool_choice\":\"auto\"}", DSA_API_TOOL_AUTO, 2, 1},
        {"{" MSGS "," TOOLS ",\"tool_choice\":\"required\",\"parallel_tool_calls\":false}",
         DSA_API_TOOL_REQUIRED, 2, 0},
        {"{" MSGS "," TOOLS ",\"tool_choice\":{\"type\":\"function\",\"function\":"
         "{\"name\":\"get_time\"}}}", DSA_API_TOOL_NAMED, 2, 1},
        {"{" MSGS ",\"tools\":[],\"tool_choice\":\"required\"}", DSA_API_TOOL_NONE, 0, 1},
        {"{" MSGS ",\"tools\":null,\"tool_choice\":null}", DSA_API_TOOL_NONE, 0, 1},
        {"{" MSGS ",\"tool_choice\":\"none\"}", DSA_API_TOOL_NONE, 0, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dsa_api_request r;
        dsa_api_error e;
        cr_assert_eq(parse(DSA_API_CHAT, cases[i].body, &r, &e), DSA_OK, "%zu: %s", i,
                     e.message);
        cr_assert_eq(r.tool_choice, cases[i].choice, "case %zu", i);
        cr_assert_eq(r.n_tools, cases[i].n_tools, "case %zu", i);
        cr_assert_eq(r.parallel_tool_calls, cases[i].parallel, "case %zu", i);
        cr_assert_eq(dsa_tools_active(&r), cases[i].choice != DSA_API_TOOL_NONE);
        dsa_api_request_free(&r);
    }
}

Test(tools, validation_names_param)
{
    static const struct {
        const char *body, *param;
    } cases[] = {
        {"{" MSGS ",\"tools\":{}}", "tools"},
        {"{" MSGS ",\"tools\":[1]}", "tools"},
        {"{" MSGS ",\"tools\":[{\"type\":\"retrieval\",\"function\":{\"name\":\"f\"}}]}",
         "tools"},
        {"{" MSGS ",\"tools\":[{\"type\":\"function\"}]}", "tools"},
        {"{" MSGS ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":3}}]}", "tools"},
        {"{" MSGS ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\","
         "\"parameters\":\"x\"}}]}", "tools"},
        {"{" MSGS ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\","
         "\"description\":1}}]}", "tools"},
        {"{" MSGS "," TOOLS ",\"tool_choice\":\"sometimes\"}", "tool_choice"},
        {"{" MSGS "," TOOLS ",\"tool_choice\":1}", "tool_choice"},
        {"{" MSGS "," TOOLS ",\"tool_choice\":{\"type\":\"function\"}}", "tool_choice"},
        {"{" MSGS "," TOOLS ",\"tool_choice\":{\"type\":\"function\",\"function\":"
         "{\"name\":\"nope\"}}}", "tool_choice"},
        {"{" MSGS ",\"tool_choice\":\"auto\"}", "tool_choice"},
        {"{" MSGS "," TOOLS ",\"parallel_tool_calls\":\"yes\"}", "parallel_tool_calls"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dsa_api_request r;
        dsa_api_error e;
        cr_assert_eq(parse(DSA_API_CHAT, cases[i].body, &r, &e), DSA_INVAL, "case %zu", i);
        cr_assert_eq(e.status, 400);
        cr_assert_str_eq(e.param, cases[i].param, "case %zu: %s", i, e.message);
    }
}

/* A non-streaming chat response for one choice whose raw output is text. */
static cJSON *response_for(const char *text, int active, int single, const char *finish)
{
    dsa_tools_out o;
    dsa_jbuf content = {0}, b = {0};
    cr_assert_eq(dsa_tools_out_init(&o, active, single, "call_x_"), DSA_OK);
    cr_assert_eq(dsa_tools_out_parse_all(&o, text, strlen(text), &content), DSA_OK);
    dsa_api_resp_meta m = {.kind = DSA_API_CHAT, .id = "chatcmpl-1", .created = 5,
                           .model = "tiny"};
    dsa_api_choice c = {.text = content.data ? content.data : "", .n_text = content.len,
                        .finish_reason = dsa_tools_out_finish_reason(&o, finish),
                        .tool_calls = o.p.calls, .n_tool_calls = o.n_calls};
    dsa_api_usage u = {1, 2};
    dsa_api_response(&b, &m, &c, 1, &u);
    cJSON *j = cJSON_Parse(b.data);
    cr_assert_not_null(j, "%s", b.data);
    dsa_tools_out_deinit(&o);
    dsa_jbuf_deinit(&content);
    dsa_jbuf_deinit(&b);
    return j;
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    cr_assert(cJSON_IsString(v), "%s is not a string", k);
    return v->valuestring;
}

static void check_call(const cJSON *tc, const char *id, const char *name, const char *args)
{
    cr_assert_str_eq(jstr(tc, "id"), id);
    cr_assert_str_eq(jstr(tc, "type"), "function");
    const cJSON *fn = cJSON_GetObjectItem(tc, "function");
    cr_assert_str_eq(jstr(fn, "name"), name);
    cr_assert_str_eq(jstr(fn, "arguments"), args);
}

Test(tools, response_with_calls)
{
    cJSON *j = response_for(tool_output, 1, 0, "stop");
    cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
    cJSON *msg = cJSON_GetObjectItem(c0, "message");
    cr_assert_str_eq(jstr(c0, "finish_reason"), "tool_calls");
    cr_assert_str_eq(jstr(msg, "content"), "Let me check.");
    cJSON *tcs = cJSON_GetObjectItem(msg, "tool_calls");
    cr_assert_eq(cJSON_GetArraySize(tcs), 2);
    check_call(cJSON_GetArrayItem(tcs, 0), "call_x_0", "get_weather", "{\"city\": \"Paris\"}");
    check_call(cJSON_GetArrayItem(tcs, 1), "call_x_1", "get_time", "{\"tz\": \"CET\"}");
    cr_assert_null(cJSON_GetObjectItem(cJSON_GetArrayItem(tcs, 0), "index"));
    cJSON_Delete(j);

    /* only calls: content null; parallel_tool_calls false: the first call */
    j = response_for(CALLS_BEGIN CALL("f", "{}") CALL("g", "{}") CALLS_END, 1, 1, "stop");
    c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
    msg = cJSON_GetObjectItem(c0, "message");
    cr_assert(cJSON_IsNull(cJSON_GetObjectItem(msg, "content")));
    tcs = cJSON_GetObjectItem(msg, "tool_calls");
    cr_assert_eq(cJSON_GetArraySize(tcs), 1);
    check_call(cJSON_GetArrayItem(tcs, 0), "call_x_0", "f", "{}");
    cr_assert_str_eq(jstr(c0, "finish_reason"), "tool_calls");
    cJSON_Delete(j);
}

Test(tools, response_without_calls)
{
    /* tools off (tool_choice none or no tools): the tokens are content */
    cJSON *j = response_for(tool_output, 0, 0, "stop");
    cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
    cJSON *msg = cJSON_GetObjectItem(c0, "message");
    cr_assert_str_eq(jstr(msg, "content"), tool_output);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(msg, "tool_calls")), 0);
    cr_assert_str_eq(jstr(c0, "finish_reason"), "stop");
    cJSON_Delete(j);
    /* tools on, a call cut off by max_tokens after its name line: a call
     * with the arguments written so far, as they were streamed */
    static const char cut[] = "ok " CALLS_BEGIN CALL_BEGIN "function" SEP "f\n```json\n{";
    j = response_for(cut, 1, 0, "length");
    c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
    msg = cJSON_GetObjectItem(c0, "message");
    cr_assert_str_eq(jstr(msg, "content"), "ok ");
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(msg, "tool_calls")), 1);
    check_call(cJSON_GetArrayItem(cJSON_GetObjectItem(msg, "tool_calls"), 0), "call_x_0", "f",
               "{");
    cr_assert_str_eq(jstr(c0, "finish_reason"), "tool_calls");
    cJSON_Delete(j);
    /* ... before it: plain content */
    static const char cut2[] = "ok " CALLS_BEGIN CALL_BEGIN "function" SEP "f";
    j = response_for(cut2, 1, 0, "length");
    c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
    msg = cJSON_GetObjectItem(c0, "message");
    cr_assert_str_eq(jstr(msg, "content"), cut2);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(msg, "tool_calls")), 0);
    cr_assert_str_eq(jstr(c0, "finish_reason"), "length");
    cJSON_Delete(j);
    j = response_for("", 1, 0, "stop");
    msg = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0),
                              "message");
    cr_assert_str_eq(jstr(msg, "content"), "");
    cJSON_Delete(j);
}

/* The streamed form: pieces of `text` go through the filter and
 * dsa_tools_sse as the server feeds engine events; the chunks are read back
 * the way the openai client accumulates them. */
typedef struct streamed {
    dsa_jbuf content;
    cJSON *calls;           /* [{index,id,type,function}] as received */
    char finish[32];
    int n_chunks_after_finish;
    int n_arg_deltas;       /* tool-call deltas with a non-empty arguments fragment */
} streamed;

static void stream_text(const char *text, size_t step, int active, const char *finish,
                        streamed *out)
{
    memset(out, 0, sizeof *out);
    out->calls = cJSON_CreateArray();
    dsa_tools_out o;
    cr_assert_eq(dsa_tools_out_init(&o, active, 0, "call_s_"), DSA_OK);
    dsa_api_resp_meta m = {.kind = DSA_API_CHAT, .id = "chatcmpl-1", .created = 5,
                           .model = "tiny"};
    size_t n = strlen(text), at = 0, offset = 0;
    dsa_jbuf b = {0};
    do {
        size_t k = n - at < step ? n - at : step;
        int last = at + k == n;
        dsa_tools_delta td;
        cr_assert_eq(dsa_tools_out_feed(&o, text + at, k, last, &td), DSA_OK);
        at += k;
        dsa_tools_sse_event ev = {
            .meta = &m, .index = 0, .td = &td, .text_offset = &offset,
            .finish_reason = last ? dsa_tools_out_finish_reason(&o, finish) : NULL};
        dsa_jbuf_reset(&b);
        dsa_tools_sse(&b, &ev);
        /* split into events */
        char *p = b.data;
        while (p && *p) {
            char *end = strstr(p, "\n\n");
            cr_assert_not_null(end);
            char save = end[2];
            end[2] = 0;
            cJSON *j = sse_json(p);
            end[2] = save;
            p = end + 2;
            cr_assert_not_null(j);
            cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
            cJSON *delta = cJSON_GetObjectItem(c0, "delta");
            cJSON *fr = cJSON_GetObjectItem(c0, "finish_reason");
            if (out->finish[0])
                out->n_chunks_after_finish++;
            if (cJSON_IsString(fr))
                snprintf(out->finish, sizeof out->finish, "%s", fr->valuestring);
            cJSON *ct = cJSON_GetObjectItem(delta, "content");
            if (cJSON_IsString(ct))
                dsa_jbuf_puts(&out->content, ct->valuestring);
            cJSON *tcs = cJSON_GetObjectItem(delta, "tool_calls");
            cJSON *tc;
            cJSON_ArrayForEach(tc, tcs) {
                /* as the openai client accumulates: a new index starts a
                 * call, the same index appends to its arguments */
                int idx = cJSON_GetObjectItem(tc, "index")->valueint;
                int have = cJSON_GetArraySize(out->calls);
                const char *frag = jstr(cJSON_GetObjectItem(tc, "function"), "arguments");
                if (idx == have) {
                    cr_assert_not_null(cJSON_GetObjectItem(tc, "id"), "a call's first delta");
                    cJSON_AddItemToArray(out->calls, cJSON_Duplicate(tc, 1));
                } else {
                    cr_assert_eq(idx, have - 1, "calls arrive in order");
                    cr_assert_null(cJSON_GetObjectItem(tc, "id"));
                    cJSON *fn = cJSON_GetObjectItem(cJSON_GetArrayItem(out->calls, idx),
                                                    "function");
                    dsa_jbuf acc = {0};
                    dsa_jbuf_puts(&acc, jstr(fn, "arguments"));
                    dsa_jbuf_puts(&acc, frag);
                    cJSON_ReplaceItemInObject(fn, "arguments", cJSON_CreateString(acc.data));
                    dsa_jbuf_deinit(&acc);
                }
                if (frag[0])
                    out->n_arg_deltas++;
            }
            cJSON_Delete(j);
        }
    } while (at < n);
    dsa_jbuf_deinit(&b);
    dsa_tools_out_deinit(&o);
}

static void streamed_free(streamed *s)
{
    dsa_jbuf_deinit(&s->content);
    cJSON_Delete(s->calls);
}

Test(tools, stream_any_split)
{
    /* 1 byte at a time up to whole: the same content, calls and finish */
    size_t n = strlen(tool_output);
    for (size_t step = 1; step <= n; step += step < 8 ? 1 : 7) {
        streamed s;
        stream_text(tool_output, step, 1, "stop", &s);
        cr_assert_str_eq(s.content.data ? s.content.data : "", "Let me check.", "step %zu",
                         step);
        cr_assert_eq(cJSON_GetArraySize(s.calls), 2, "step %zu", step);
        check_call(cJSON_GetArrayItem(s.calls, 0), "call_s_0", "get_weather",
                   "{\"city\": \"Paris\"}");
        check_call(cJSON_GetArrayItem(s.calls, 1), "call_s_1", "get_time", "{\"tz\": \"CET\"}");
        cr_assert_str_eq(s.finish, "tool_calls");
        cr_assert_eq(s.n_chunks_after_finish, 0);
        /* fed a few bytes at a time, the arguments come in fragments */
        if (step <= 4)
            cr_assert_gt(s.n_arg_deltas, 2, "step %zu: %d", step, s.n_arg_deltas);
        streamed_free(&s);
    }
    /* tools off: the markers stream as content, finish unchanged (fed
     * whole: the detokenizer never splits a character, a byte step would) */
    streamed s;
    stream_text(tool_output, n, 0, "stop", &s);
    cr_assert_str_eq(s.content.data, tool_output);
    cr_assert_eq(cJSON_GetArraySize(s.calls), 0);
    cr_assert_str_eq(s.finish, "stop");
    streamed_free(&s);
}

/* The markers are added tokens that are not special: with
 * skip_special_tokens (the default) the detokenised output still holds
 * them, so the filter sees them. */
Test(tools, markers_survive_skip_special)
{
    char *dir = dsa_test_data_path("deepseek-v3-tokenizer");
    dsa_tok *tok = NULL;
    cr_assert_eq(dsa_tok_load(dir, &tok), DSA_OK, "%s: %s", dir, dsa_errmsg());
    free(dir);
    int32_t *ids = NULL;
    size_t n_ids = 0;
    cr_assert_eq(dsa_tok_encode(tok, tool_output, strlen(tool_output), 0, &ids, &n_ids),
                 DSA_OK);
    dsa_textout t;
    dsa_textout_init(&t, tok, 1, NULL, 0, -1);
    dsa_jbuf content = {0}, reasoning = {0};
    for (size_t i = 0; i < n_ids; i++)
        cr_assert_eq(dsa_textout_feed(&t, ids[i], &content, &reasoning), DSA_OK);
    cr_assert_eq(dsa_textout_finish(&t, &content, &reasoning), DSA_OK);
    cr_assert_str_eq(content.data, tool_output);
    cJSON *j = response_for(content.data, 1, 0, "stop");
    cJSON *msg = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0),
                                     "message");
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(msg, "tool_calls")), 2);
    cJSON_Delete(j);
    dsa_textout_deinit(&t);
    dsa_jbuf_deinit(&content);
    dsa_jbuf_deinit(&reasoning);
    free(ids);
    dsa_tok_destroy(tok);
}
