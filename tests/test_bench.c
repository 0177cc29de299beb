/* test_bench.c - dsa-bench's parts: the SSE parser, the metric formulas
 * against numpy's definitions, the random dataset's exact prompt lengths,
 * and the client against a scripted HTTP server on loopback.
 *
 * The scripted server (tests/bench/fake_sse.h) answers each connection from
 * a script chosen by a marker in the prompt and records, on the same
 * monotonic clock as the client, when it wrote each piece.  Rebuilt from
 * TTFT, ITL and E2EL, the client's receive time of every piece must lie
 * between the server's write time and LAG after it: half the 20 ms between
 * pieces, so a piece timed as its neighbour fails, while a client thread
 * descheduled for a few ms on a loaded machine does not.
 * Failure scripts (500, reset, malformed SSE, garbage, truncated body, an
 * error event, no tokens, silence past the timeout, a closed port) must be
 * counted as failed requests, with the loop closed cleanly afterwards.
 * TLS (dsa_bench_tls.h) alone: the ClientHello carries SNI for a name and
 * none for an IP literal, a server answering in plain HTTP fails the
 * handshake with a message, an unreadable CA file fails the context; the
 * whole https path runs end to end in tests/bench/run_bench_tls.sh. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/tokenizer.h"
#include "tests/bench/fake_sse.h"
#include "tests/support.h"
#include "tools/bench/dsa_bench_client.h"
#include "tools/bench/dsa_bench_data.h"
#include "tools/bench/dsa_bench_metrics.h"
#include "tools/bench/dsa_bench_sse.h"
#include "tools/bench/dsa_bench_tls.h"

/* ---- SSE parser -------------------------------------------------------- */

typedef struct events {
    char got[16][128];
    int n;
} events;

static int collect(void *user, const char *data, size_t len)
{
    events *e = user;
    cr_assert_lt(e->n, 16);
    cr_assert_eq(strlen(data), len);
    snprintf(e->got[e->n++], sizeof e->got[0], "%s", data);
    return 0;
}

Test(bench_sse, byte_at_a_time_and_line_endings)
{
    const char *in = ": ping\r\ndata: {\"a\":1}\r\n\r\nevent: x\ndata:two\ndata: lines\n\n"
                     "data: cr\r\rid: 7\n\ndata: [DONE]\n\ndata: tail";
    events e = {0};
    dsa_bench_sse s;
    dsa_bench_sse_init(&s);
    for (size_t i = 0; in[i]; i++)
        cr_assert_eq(dsa_bench_sse_feed(&s, in + i, 1, collect, &e), DSA_OK);
    cr_assert_eq(e.n, 4);
    cr_assert_eq(dsa_bench_sse_finish(&s, collect, &e), DSA_OK);
    dsa_bench_sse_deinit(&s);
    cr_assert_eq(e.n, 5);
    cr_assert_str_eq(e.got[0], "{\"a\":1}");
    cr_assert_str_eq(e.got[1], "two\nlines");
    cr_assert_str_eq(e.got[2], "cr");
    cr_assert_str_eq(e.got[3], "[DONE]");
    cr_assert_str_eq(e.got[4], "tail");
}

Test(bench_sse, limit_and_stop)
{
    events e = {0};
    dsa_bench_sse s;
    dsa_bench_sse_init(&s);
    s.max_bytes = 8;
    cr_assert_eq(dsa_bench_sse_feed(&s, "data: 0123456789\n\n", 18, collect, &e), DSA_RANGE);
    dsa_bench_sse_deinit(&s);
}

/* ---- metrics ----------------------------------------------------------- */

#define NEAR(a, b, tol) cr_assert(fabs((a) - (b)) <= (tol), "%s = %.9g, expected %.9g", #a, \
                                  (double)(a), (double)(b))

Test(bench_metrics, numpy_percentile_mean_std)
{
    /* numpy: np.percentile([1,2,3,4,10], 99) = 9.76, median 3, std 3.16227766 */
    double xs[] = {10, 3, 1, 4, 2}, p[] = {99, 25, 100, 50};
    dsa_bench_stat st;
    dsa_bench_stat_compute(xs, 5, p, 4, &st);
    NEAR(st.pct[0], 9760, 1e-9);
    NEAR(st.pct[1], 2000, 1e-9);
    NEAR(st.pct[2], 10000, 1e-9);
    NEAR(st.median, 3000, 1e-9);
    NEAR(st.mean, 4000, 1e-9);
    NEAR(st.std, 1000 * sqrt(10.0), 1e-9);
    double ys[] = {1, 2, 3, 4};
    NEAR(dsa_bench_percentile(ys, 4, 25), 1.75, 1e-12);
    NEAR(dsa_bench_percentile(ys, 4, 50), 2.5, 1e-12);
    NEAR(dsa_bench_percentile(ys, 1, 99), 1, 1e-12);
    NEAR(dsa_bench_percentile(ys, 0, 99), 0, 0);
    char w[32];
    dsa_bench_pct_word(99, w, sizeof w);
    cr_assert_str_eq(w, "99");
    dsa_bench_pct_word(99.9, w, sizeof w);
    cr_assert_str_eq(w, "99.9");
}

Test(bench_metrics, summary_tpot_goodput_failed)
{
    double itl0[] = {0.010, 0.020, 0.030}, itl2[] = {0.5};
    dsa_bench_request rq[3] = {{"a", 10, 4}, {"b", 20, 4}, {"c", 30, 4}};
    dsa_bench_result rs[3] = {
        {.success = 1, .ttft = 0.100, .latency = 0.160, .itl = itl0, .n_itl = 3,
         .output_tokens = 4},
        {.success = 0},
        {.success = 1, .ttft = 0.300, .latency = 0.800, .itl = itl2, .n_itl = 1,
         .output_tokens = 1},
    };
    dsa_bench_slo slo = {0};
    cr_assert_eq(dsa_bench_slo_parse("ttft:200 tpot:50", &slo), DSA_OK);
    cr_assert_neq(dsa_bench_slo_parse("itl:5", &slo), DSA_OK);
    cr_assert_neq(dsa_bench_slo_parse("ttft=5", &slo), DSA_OK);
    double p[] = {50};
    dsa_bench_summary s;
    cr_assert_eq(dsa_bench_summary_compute(rq, rs, 3, 2.0, p, 1, &slo, NULL, NULL, &s), DSA_OK);
    cr_assert_eq(s.completed, 2);
    cr_assert_eq(s.failed, 1);
    cr_assert_eq(s.total_input, 40);
    cr_assert_eq(s.total_output, 5);
    NEAR(s.request_throughput, 1.0, 1e-12);
    NEAR(s.output_throughput, 2.5, 1e-12);
    NEAR(s.total_token_throughput, 22.5, 1e-12);
    /* TPOT only for output_len > 1: (0.160 - 0.100) / 3 = 20 ms */
    NEAR(s.stat[DSA_BENCH_TPOT].mean, 20, 1e-9);
    NEAR(s.stat[DSA_BENCH_TTFT].mean, 200, 1e-9);
    NEAR(s.stat[DSA_BENCH_ITL].mean, 140, 1e-9);
    NEAR(s.stat[DSA_BENCH_E2EL].median, 480, 1e-9);
    /* request 0 meets ttft 200 and tpot 50 ms; request 2 misses ttft */
    NEAR(s.request_goodput, 0.5, 1e-12);
    cr_assert_eq(s.output_lens[1], 0);
    dsa_bench_summary_deinit(&s);
}

Test(bench_metrics, arrivals)
{
    double *t;
    cr_assert_eq(dsa_bench_arrivals(50, 10, 1, 1, &t), DSA_OK);
    for (int i = 1; i < 50; i++)
        cr_assert_geq(t[i], t[i - 1]);
    NEAR(t[49], 5.0, 1e-9); /* scaled so the last is n / rate */
    free(t);
    cr_assert_eq(dsa_bench_arrivals(4, INFINITY, 1, 1, &t), DSA_OK);
    NEAR(t[3], 0, 0);
    free(t);
    dsa_bench_rng g;
    dsa_bench_rng_seed(&g, 3);
    double sum = 0;
    for (int i = 0; i < 20000; i++)
        sum += dsa_bench_rng_gamma(&g, 0.5, 4);
    NEAR(sum / 20000, 2.0, 0.1); /* mean k theta */
}

/* ---- random dataset: exact lengths ------------------------------------- */

Test(bench_data, random_prompts_have_exact_lengths)
{
    char *path = dsa_test_data_path("tokenizer/mini_gpt2.json");
    dsa_tok *tok;
    cr_assert_eq(dsa_tok_load_files(path, NULL, &tok), DSA_OK, "%s", dsa_errmsg());
    free(path);
    dsa_bench_random_params p = {.n = 12, .input_len = 40, .output_len = 7, .prefix_len = 5,
                                 .range_ratio = 0.5, .seed = 9};
    dsa_bench_dataset d;
    cr_assert_eq(dsa_bench_data_random(tok, &p, &d), DSA_OK, "%s", dsa_errmsg());
    cr_assert_eq(d.n, 12);
    cr_assert_eq(d.token_mismatch, 0);
    for (int i = 0; i < d.n; i++) {
        int32_t *ids;
        size_t n;
        cr_assert_eq(dsa_tok_encode(tok, d.reqs[i].prompt, strlen(d.reqs[i].prompt), 0, &ids,
                                    &n), DSA_OK);
        free(ids);
        cr_assert_eq((int)n, d.reqs[i].prompt_len, "prompt %d: %zu tokens, said %d", i, n,
                     d.reqs[i].prompt_len);
        cr_assert(d.reqs[i].prompt_len >= 5 + 20 && d.reqs[i].prompt_len <= 5 + 60);
        cr_assert(d.reqs[i].output_len >= 3 && d.reqs[i].output_len <= 11);
    }
    dsa_bench_dataset d2;
    cr_assert_eq(dsa_bench_data_random(tok, &p, &d2), DSA_OK);
    for (int i = 0; i < d.n; i++) /* the seed decides */
        cr_assert_str_eq(d.reqs[i].prompt, d2.reqs[i].prompt);
    dsa_bench_dataset_deinit(&d2);
    dsa_bench_dataset_deinit(&d);
    dsa_tok_destroy(tok);
}

/* ---- the client against the scripted server --------------------------- */

static dsa_bench_client_params params(const fake_sse *srv, dsa_bench_backend b)
{
    return (dsa_bench_client_params){
        .host = "127.0.0.1", .port = srv->port,
        .path = b == DSA_BENCH_OPENAI ? "/v1/completions" : "/v1/chat/completions",
        .backend = b, .model = "m", .temperature = -1, .timeout_s = 10};
}

/* Largest delay between the server writing a piece and the client
 * timestamping it that the checks accept (the pieces are 20 ms apart). */
#define LAG 0.010

/* How far the client's timestamp may read before the server's. Causally it
 * cannot, but the two are read on two threads, and on a VM whose clock is
 * each vCPU's TSC the vCPUs can disagree: once a piece was timestamped 31 us
 * before it was written. A wrong piece is 20 ms away. */
#define SKEW 1e-4

/* A piece written at `sent` and timestamped by the client at `got`. */
#define RECEIVED(got, sent) cr_assert((got) >= (sent) - SKEW && (got) <= (sent) + LAG, \
                                      "%s = %.6f, written at %.6f", #got, (got), (sent))

/* Checks one request's timings against what the server wrote when. */
static void check_timeline(const fake_sse *srv, int conn, const dsa_bench_result *r,
                           const int *token_steps, int n_tokens, int last_step)
{
    const fake_conn *c = &srv->conns[conn];
    cr_assert(r->success, "request failed: %s", r->error);
    cr_assert_eq(r->n_itl, n_tokens - 1);
    double got = r->start + r->ttft;
    RECEIVED(got, c->sent_at[token_steps[0]]);
    for (int k = 1; k < n_tokens; k++) {
        got += r->itl[k - 1];
        RECEIVED(got, c->sent_at[token_steps[k]]);
    }
    RECEIVED(r->start + r->latency, c->sent_at[last_step]);
    /* the server waits 30 ms after the request before the first token */
    cr_assert(r->ttft >= 0.030 - 1e-6, "ttft %.6f", r->ttft);
}

Test(bench_client, completions_timeline)
{
    fake_sse srv;
    cr_assert_eq(fake_sse_start(&srv, 2), 0);
    dsa_bench_client_params p = params(&srv, DSA_BENCH_OPENAI);
    dsa_bench_request rq[2] = {{"case:ok", 3, 5}, {"case:ok", 3, 5}};
    dsa_bench_result rs[2];
    double dur;
    p.max_concurrency = 1;
    cr_assert_eq(dsa_bench_client_run(&p, rq, 2, rs, &dur), DSA_OK, "%s", dsa_errmsg());
    fake_sse_stop(&srv);
    /* script "ok": headers, 5 text chunks at 30, 50, 70, 90, 110 ms, then a
     * finish chunk (choices, empty text) at 120 and the usage chunk at 140 */
    const int steps[] = {1, 2, 3, 4, 5, 6};
    for (int i = 0; i < 2; i++) {
        int conn = fake_sse_conn_of(&srv, i);
        check_timeline(&srv, conn, &rs[i], steps, 6, 6);
        cr_assert_eq(rs[i].output_tokens, 5);
        cr_assert_eq(rs[i].usage_prompt_tokens, 4);
        cr_assert_str_eq(rs[i].text, "t1t2t3t4t5");
    }
    double pc[] = {99};
    dsa_bench_summary s;
    cr_assert_eq(dsa_bench_summary_compute(rq, rs, 2, dur, pc, 1, NULL, NULL, NULL, &s),
                 DSA_OK);
    cr_assert_eq(s.completed, 2);
    cr_assert_eq(s.total_output, 10);
    for (int i = 0; i < 2; i++) {
        const fake_conn *c = &srv.conns[fake_sse_conn_of(&srv, i)];
        double tpot = (c->sent_at[6] - c->sent_at[1]) / 4;
        cr_assert(fabs((rs[i].latency - rs[i].ttft) / 4 - tpot) <= LAG / 4);
    }
    NEAR(s.stat[DSA_BENCH_TPOT].mean / 1000, (rs[0].latency - rs[0].ttft + rs[1].latency -
                                              rs[1].ttft) / 8, 1e-12);
    cr_assert_geq(dur, rs[0].latency + rs[1].latency - 1e-3); /* concurrency 1: serial */
    dsa_bench_summary_deinit(&s);
    for (int i = 0; i < 2; i++)
        dsa_bench_result_deinit(&rs[i]);
}

Test(bench_client, chat_reasoning_counts_role_chunk_does_not)
{
    fake_sse srv;
    cr_assert_eq(fake_sse_start(&srv, 1), 0);
    dsa_bench_client_params p = params(&srv, DSA_BENCH_OPENAI_CHAT);
    dsa_bench_request rq = {"case:chat", 3, 4};
    dsa_bench_result r;
    double dur;
    cr_assert_eq(dsa_bench_client_run(&p, &rq, 1, &r, &dur), DSA_OK);
    fake_sse_stop(&srv);
    /* script "chat": role chunk at 0 ms (not a token), reasoning at 30,
     * reasoning at 50, content at 70 and 90, finish chunk, usage at 100 */
    const int steps[] = {2, 3, 4, 5};
    const fake_conn *c = &srv.conns[0];
    cr_assert(r.success, "%s", r.error);
    cr_assert_eq(r.n_itl, 3);
    double got = r.start + r.ttft;
    RECEIVED(got, c->sent_at[steps[0]]);
    for (int k = 1; k < 4; k++) {
        got += r.itl[k - 1];
        RECEIVED(got, c->sent_at[steps[k]]);
    }
    /* chat latency runs to the last data event (usage), as vLLM's */
    RECEIVED(r.start + r.latency, c->sent_at[7]);
    cr_assert_eq(r.output_tokens, 4);
    cr_assert_str_eq(r.text, "thinkmoreAB");
    dsa_bench_result_deinit(&r);
}

Test(bench_client, failures_are_counted)
{
    static const char *const cases[] = {
        "case:ok", "case:500", "case:reset", "case:malformed", "case:garbage",
        "case:truncated", "case:error_event", "case:no_tokens", "case:silent", "case:ok"};
    enum { N = sizeof cases / sizeof cases[0] };
    fake_sse srv;
    cr_assert_eq(fake_sse_start(&srv, N), 0);
    dsa_bench_client_params p = params(&srv, DSA_BENCH_OPENAI);
    p.timeout_s = 0.5;
    p.max_concurrency = 4;
    dsa_bench_request rq[N];
    for (int i = 0; i < N; i++)
        rq[i] = (dsa_bench_request){cases[i], 3, 5};
    dsa_bench_result rs[N];
    double dur;
    cr_assert_eq(dsa_bench_client_run(&p, rq, N, rs, &dur), DSA_OK, "%s", dsa_errmsg());
    fake_sse_stop(&srv);
    static const char *const want[] = {
        "", "HTTP 500", "", "malformed SSE data", "malformed HTTP response",
        "ended", "error event: overloaded", "Never received", "timed out", ""};
    for (int i = 0; i < N; i++) {
        cr_assert_eq(rs[i].success, i == 0 || i == N - 1, "%s: success %d (%s)", cases[i],
                     rs[i].success, rs[i].error);
        cr_assert(strstr(rs[i].error, want[i]), "%s: error '%s'", cases[i], rs[i].error);
        if (!rs[i].success)
            cr_assert_neq(rs[i].error[0], 0, "%s: no error text", cases[i]);
    }
    double pc[] = {99};
    dsa_bench_summary s;
    cr_assert_eq(dsa_bench_summary_compute(rq, rs, N, dur, pc, 1, NULL, NULL, NULL, &s), DSA_OK);
    cr_assert_eq(s.completed, 2);
    cr_assert_eq(s.failed, N - 2);
    dsa_bench_summary_deinit(&s);
    for (int i = 0; i < N; i++)
        dsa_bench_result_deinit(&rs[i]);
}

Test(bench_client, connection_refused)
{
    int port = fake_sse_free_port();
    cr_assert_gt(port, 0);
    dsa_bench_client_params p = {.host = "127.0.0.1", .port = port, .path = "/v1/completions",
                                 .temperature = -1, .timeout_s = 5};
    dsa_bench_request rq[3] = {{"x", 1, 1}, {"y", 1, 1}, {"z", 1, 1}};
    dsa_bench_result rs[3];
    double dur;
    cr_assert_eq(dsa_bench_client_run(&p, rq, 3, rs, &dur), DSA_OK);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(rs[i].success, 0);
        cr_assert(strstr(rs[i].error, "connect"), "%s", rs[i].error);
        dsa_bench_result_deinit(&rs[i]);
    }
}

Test(bench_client, request_body)
{
    dsa_bench_client_params p = {.backend = DSA_BENCH_OPENAI_CHAT, .model = "m",
                                 .ignore_eos = 1, .temperature = 0};
    dsa_bench_request r = {"hi \"there\"", 2, 9};
    char *b = dsa_bench_client_body(&p, &r);
    cr_assert_str_eq(b, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
                        "\"hi \\\"there\\\"\"}],\"max_completion_tokens\":9,\"temperature\":0,"
                        "\"stream\":true,\"stream_options\":{\"include_usage\":true},"
                        "\"ignore_eos\":true}");
    free(b);
}

/* ---- TLS ---------------------------------------------------------------- */

/* The first flight of a client for server name `name`, malloc'd. */
static char *client_hello(const char *name, size_t *n)
{
    dsa_bench_tls_params tp = {.server_name = name, .insecure = 1};
    dsa_bench_tls_ctx *ctx = NULL;
    cr_assert_eq(dsa_bench_tls_ctx_new(&tp, &ctx), DSA_OK, "%s", dsa_errmsg());
    dsa_bench_tls *t = NULL;
    cr_assert_eq(dsa_bench_tls_new(ctx, &t), DSA_OK, "%s", dsa_errmsg());
    char msg[256];
    cr_assert_eq(dsa_bench_tls_handshake(t, msg, sizeof msg), 0, "no input yet: wants more");
    char *out = NULL;
    cr_assert_eq(dsa_bench_tls_take_output(t, &out, n), 0);
    cr_assert(out && *n > 5);
    cr_assert_eq((unsigned char)out[0], 0x16, "a TLS handshake record");
    dsa_bench_tls_free(t);
    dsa_bench_tls_ctx_free(ctx);
    return out;
}

static int contains(const char *buf, size_t n, const char *s)
{
    size_t k = strlen(s);
    for (size_t i = 0; i + k <= n; i++)
        if (!memcmp(buf + i, s, k))
            return 1;
    return 0;
}

Test(bench_tls, sni_for_names_not_for_addresses)
{
    size_t n;
    char *hello = client_hello("api.example.com", &n);
    cr_assert(contains(hello, n, "api.example.com"), "SNI missing from the ClientHello");
    free(hello);
    hello = client_hello("127.0.0.1", &n);
    cr_assert(!contains(hello, n, "127.0.0.1"), "an IP literal must not be sent as SNI");
    free(hello);
}

Test(bench_tls, plain_http_answer_fails_the_handshake)
{
    dsa_bench_tls_params tp = {.server_name = "localhost"};
    dsa_bench_tls_ctx *ctx = NULL;
    cr_assert_eq(dsa_bench_tls_ctx_new(&tp, &ctx), DSA_OK, "%s", dsa_errmsg());
    dsa_bench_tls *t = NULL;
    cr_assert_eq(dsa_bench_tls_new(ctx, &t), DSA_OK);
    char msg[256];
    cr_assert_eq(dsa_bench_tls_handshake(t, msg, sizeof msg), 0);
    static const char reply[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
    cr_assert_eq(dsa_bench_tls_feed(t, reply, sizeof reply - 1), DSA_OK);
    cr_assert_eq(dsa_bench_tls_handshake(t, msg, sizeof msg), -1);
    cr_assert(strstr(msg, "TLS handshake with localhost"), "%s", msg);
    dsa_bench_tls_free(t);
    dsa_bench_tls_ctx_free(ctx);
}

Test(bench_tls, unreadable_ca_file)
{
    dsa_bench_tls_params tp = {.server_name = "localhost", .ca_file = "/nonexistent/ca.pem"};
    dsa_bench_tls_ctx *ctx = NULL;
    cr_assert_eq(dsa_bench_tls_ctx_new(&tp, &ctx), DSA_IO);
    cr_assert_null(ctx);
    cr_assert(strstr(dsa_errmsg(), "/nonexistent/ca.pem"), "%s", dsa_errmsg());
}
