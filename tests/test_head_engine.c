/* test_head_engine.c - the worker side of a step (worker/step.h) and the
 * head's engine thread (head/engine.h) on the golden tiny-f32 checkpoint:
 * batching does not change what a sequence samples, bad plans fail as a
 * step status, penalties and logprobs behave, and the engine turns steps
 * into events, honours max tokens, aborts and fails requests (never
 * crashes) when a step fails. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "head/engine.h"
#include "tests/support.h"
#include "worker/step.h"

static dsa_worker_step *make_worker(void)
{
    char *dir = dsa_test_data_path("golden/tiny-f32");
    dsa_worker_step_params p = {.model_dir = dir, .n_threads = 1, .block_size = 16,
                                .max_model_len = 128, .n_blocks = 32};
    dsa_worker_step *ws = NULL;
    dsa_log_setup(DSA_LOG_WARN, 0);
    cr_assert_eq(dsa_worker_step_create(&p, &ws), DSA_OK, "%s", dsa_errmsg());
    free(dir);
    return ws;
}

/* Greedy-decodes n tokens of one sequence alone, blocks base.. */
static void decode_alone(dsa_worker_step *ws, uint64_t id, const int32_t *prompt, int np,
                         int n, int32_t base, int32_t *out)
{
    int32_t toks[64], blocks[8];
    memcpy(toks, prompt, (size_t)np * 4);
    for (int i = 0; i < 8; i++)
        blocks[i] = base + i;
    int pos = 0, len = np;
    for (int k = 0; k < n; k++) {
        dsa_step_seq s = {.seq_id = id, .pos = pos, .n_prompt = np, .n_tokens = len - pos,
                          .tokens = toks + pos, .n_blocks = 8, .blocks = blocks, .sample = 1,
                          .step = (uint32_t)k, .sp = {.temperature = 0, .n_logprobs = -1}};
        dsa_step_plan p = {.step_id = (uint64_t)k + 1, .n_seqs = 1, .seqs = &s};
        dsa_step_result r;
        cr_assert_eq(dsa_worker_step_run(ws, &p, &r), DSA_OK);
        cr_assert_eq(r.status, DSA_OK, "%s", r.message);
        out[k] = toks[len] = r.seqs[0].token;
        pos = len++;
        dsa_step_result_free(&r);
    }
}

Test(worker_step, batch_equals_alone_and_failures)
{
    dsa_worker_step *ws = make_worker();
    int32_t pa[] = {1, 5, 9, 13}, pb[] = {2, 7};
    int32_t ea[4], eb[4];
    decode_alone(ws, 100, pa, 4, 4, 0, ea);
    decode_alone(ws, 101, pb, 2, 4, 8, eb);
    /* both together, fresh ids and blocks */
    int32_t ta[16], tb[16], ba[8], bb[8];
    memcpy(ta, pa, sizeof pa);
    memcpy(tb, pb, sizeof pb);
    for (int i = 0; i < 8; i++) {
        ba[i] = 16 + i;
        bb[i] = 24 + i;
    }
    int la = 4, lb = 2, posa = 0, posb = 0;
    for (int k = 0; k < 4; k++) {
        dsa_step_seq s[2] = {
            {.seq_id = 1, .pos = posa, .n_prompt = 4, .n_tokens = la - posa, .tokens = ta + posa,
             .n_blocks = 8, .blocks = ba, .sample = 1, .step = (uint32_t)k,
             .sp = {.n_logprobs = 2}},
            {.seq_id = 2, .pos = posb, .n_prompt = 2, .n_tokens = lb - posb, .tokens = tb + posb,
             .n_blocks = 8, .blocks = bb, .sample = 1, .step = (uint32_t)k,
             .sp = {.n_logprobs = -1}}};
        dsa_step_plan p = {.step_id = 10 + (uint64_t)k, .n_seqs = 2, .seqs = s};
        dsa_step_result r;
        cr_assert_eq(dsa_worker_step_run(ws, &p, &r), DSA_OK);
        cr_assert_eq(r.status, DSA_OK, "%s", r.message);
        cr_assert_eq(r.seqs[0].token, ea[k], "step %d", k);
        cr_assert_eq(r.seqs[1].token, eb[k], "step %d", k);
        /* greedy: the chosen token is the most likely one */
        cr_assert_eq(r.seqs[0].n_top, 2);
        cr_assert_eq(r.seqs[0].top_ids[0], ea[k]);
        cr_assert_float_eq(r.seqs[0].logprob, r.seqs[0].top_logprobs[0], 1e-6);
        cr_assert(r.seqs[0].top_logprobs[1] <= r.seqs[0].top_logprobs[0]);
        cr_assert(r.seqs[0].logprob <= 0);
        ta[la] = r.seqs[0].token;
        posa = la++;
        tb[lb] = r.seqs[1].token;
        posb = lb++;
        dsa_step_result_free(&r);
    }
    /* a block id outside the cache fails the step, not the process */
    int32_t bad_blocks[1] = {999};
    dsa_step_seq s = {.seq_id = 3, .pos = 0, .n_prompt = 1, .n_tokens = 1, .tokens = pa,
                      .n_blocks = 1, .blocks = bad_blocks, .sample = 1};
    uint64_t fin[] = {1, 2, 100, 101};
    dsa_step_plan p = {.step_id = 99, .n_seqs = 1, .seqs = &s, .n_finished = 4,
                       .finished = fin};
    dsa_step_result r;
    cr_assert_eq(dsa_worker_step_run(ws, &p, &r), DSA_OK);
    cr_assert_eq(r.status, DSA_RANGE);
    cr_assert_eq(r.n_seqs, 0);
    dsa_step_result_free(&r);
    dsa_worker_step_destroy(ws);
}

Test(worker_step, penalties_change_greedy_choice)
{
    dsa_worker_step *ws = make_worker();
    int32_t prompt[] = {3, 3, 3, 3};
    int32_t plain[6];
    decode_alone(ws, 1, prompt, 4, 6, 0, plain);
    /* a huge frequency penalty forbids repeating a generated token */
    int32_t toks[16], blocks[8];
    memcpy(toks, prompt, sizeof prompt);
    for (int i = 0; i < 8; i++)
        blocks[i] = 8 + i;
    int pos = 0, len = 4;
    int32_t seen[6];
    for (int k = 0; k < 6; k++) {
        dsa_step_seq s = {.seq_id = 2, .pos = pos, .n_prompt = 4, .n_tokens = len - pos,
                          .tokens = toks + pos, .n_blocks = 8, .blocks = blocks, .sample = 1,
                          .step = (uint32_t)k,
                          .sp = {.frequency_penalty = 1e6f, .repetition_penalty = 1,
                                 .n_logprobs = -1}};
        dsa_step_plan p = {.step_id = (uint64_t)k + 1, .n_seqs = 1, .seqs = &s};
        dsa_step_result r;
        cr_assert_eq(dsa_worker_step_run(ws, &p, &r), DSA_OK);
        cr_assert_eq(r.status, DSA_OK, "%s", r.message);
        seen[k] = toks[len] = r.seqs[0].token;
        for (int j = 0; j < k; j++)
            cr_assert_neq(seen[j], seen[k], "token %d repeated", seen[k]);
        pos = len++;
        dsa_step_result_free(&r);
    }
    dsa_worker_step_destroy(ws);
}

/* Log-softmax of row[id] (double accumulation). */
static double ref_logprob(const float *row, int64_t V, int32_t id)
{
    double mx = row[0], z = 0;
    for (int64_t v = 1; v < V; v++)
        mx = row[v] > mx ? row[v] : mx;
    for (int64_t v = 0; v < V; v++)
        z += exp((double)row[v] - mx);
    return (double)row[id] - mx - log(z);
}

/* Prompt logprobs, asked in two chunks (the first chunk's last row scores
 * next_token), equal the log-softmax of the forward pass's logits at each
 * prefix, with vLLM's rank and the top ids in logit order. */
Test(worker_step, prompt_logprobs_match_forward)
{
    dsa_worker_step *ws = make_worker(), *ref = make_worker();
    dsa_worker_info info;
    dsa_worker_step_info(ws, &info);
    int64_t V = info.vocab_size;
    int32_t prompt[] = {1, 17, 4, 99, 23, 5, 61, 2, 40};
    int np = 9, split = 4;
    int32_t blocks[8];
    for (int i = 0; i < 8; i++)
        blocks[i] = i;
    dsa_prompt_lp got[9];
    int n_got = 0;
    for (int c = 0; c < 2; c++) {
        int pos = c ? split : 0, n = c ? np - split : split;
        dsa_step_seq s = {.seq_id = 5, .pos = pos, .n_prompt = np, .n_tokens = n,
                          .tokens = prompt + pos, .n_blocks = 8, .blocks = blocks,
                          .sample = c == 1, .sp = {.temperature = 0, .n_logprobs = -1},
                          .prompt_lps = 1, .prompt_top = 3,
                          .next_token = c ? -1 : prompt[split]};
        dsa_step_plan p = {.step_id = (uint64_t)c + 1, .n_seqs = 1, .seqs = &s};
        dsa_step_result r;
        cr_assert_eq(dsa_worker_step_run(ws, &p, &r), DSA_OK);
        cr_assert_eq(r.status, DSA_OK, "%s", r.message);
        /* chunk 0 scores positions 1..4, chunk 1 positions 5..8 */
        cr_assert_eq(r.seqs[0].n_prompt_lps, c ? np - split - 1 : split);
        memcpy(got + n_got, r.seqs[0].prompt_lps, (size_t)r.seqs[0].n_prompt_lps * sizeof *got);
        n_got += r.seqs[0].n_prompt_lps;
        dsa_step_result_free(&r);
    }
    cr_assert_eq(n_got, np - 1);
    for (int k = 1; k < np; k++) {
        /* the reference: prefix 0..k-1 as its own sequence, sampled */
        int32_t rb[8];
        for (int i = 0; i < 8; i++)
            rb[i] = 8 + i;
        dsa_step_seq s = {.seq_id = 1000 + (uint64_t)k, .pos = 0, .n_prompt = k, .n_tokens = k,
                          .tokens = prompt, .n_blocks = 8, .blocks = rb, .sample = 1,
                          .sp = {.temperature = 0, .n_logprobs = -1}};
        uint64_t fin = s.seq_id;
        dsa_step_plan p = {.step_id = (uint64_t)k, .n_seqs = 1, .seqs = &s};
        dsa_step_result r;
        cr_assert_eq(dsa_worker_step_run(ref, &p, &r), DSA_OK);
        cr_assert_eq(r.status, DSA_OK, "%s", r.message);
        dsa_step_result_free(&r);
        int64_t rows;
        const float *lg = dsa_worker_step_logits(ref, &rows);
        cr_assert_eq(rows, 1);
        const dsa_prompt_lp *e = &got[k - 1];
        cr_assert_eq(e->pos, k);
        cr_assert_eq(e->token, prompt[k]);
        double want = ref_logprob(lg, V, prompt[k]);
        cr_assert(fabs(e->logprob - want) < 1e-4, "pos %d: %g vs %g", k, e->logprob, want);
        int rank = 1;
        for (int64_t v = 0; v < V; v++)
            rank += lg[v] > lg[prompt[k]];
        cr_assert_eq(e->rank, rank);
        cr_assert_eq(e->n_top, 3);
        for (int j = 0; j < 3; j++) {
            cr_assert(fabs(e->top_logprobs[j] - ref_logprob(lg, V, e->top_ids[j])) < 1e-4);
            if (j)
                cr_assert(e->top_logprobs[j] <= e->top_logprobs[j - 1]);
        }
        cr_assert_eq(e->top_ids[0] == prompt[k], rank == 1);
        dsa_step_plan drop = {.step_id = 100 + (uint64_t)k, .n_finished = 1, .finished = &fin};
        cr_assert_eq(dsa_worker_step_run(ref, &drop, &r), DSA_OK);
        dsa_step_result_free(&r);
    }
    dsa_worker_step_destroy(ws);
    dsa_worker_step_destroy(ref);
}

/* One greedy step of a fresh sequence with the given controls; returns
 * the token and the reported logprob. */
static int32_t step_ctl(dsa_worker_step *ws, uint64_t id, dsa_step_seq ctl, float *lp)
{
    static int32_t prompt[] = {1, 17, 4, 99};
    int32_t blocks[8];
    for (int i = 0; i < 8; i++)
        blocks[i] = i;
    ctl.seq_id = id;
    ctl.n_prompt = ctl.n_tokens = 4;
    ctl.tokens = prompt;
    ctl.n_blocks = 8;
    ctl.blocks = blocks;
    ctl.sample = 1;
    ctl.sp = (dsa_sampling){.temperature = 0, .n_logprobs = 0};
    dsa_step_plan p = {.step_id = id, .n_seqs = 1, .seqs = &ctl};
    dsa_step_result r;
    cr_assert_eq(dsa_worker_step_run(ws, &p, &r), DSA_OK);
    cr_assert_eq(r.status, DSA_OK, "%s", r.message);
    int32_t tok = r.seqs[0].token;
    *lp = r.seqs[0].logprob;
    dsa_step_result_free(&r);
    uint64_t fin = id;
    dsa_step_plan drop = {.step_id = id + 1000, .n_finished = 1, .finished = &fin};
    cr_assert_eq(dsa_worker_step_run(ws, &drop, &r), DSA_OK);
    dsa_step_result_free(&r);
    return tok;
}

/* The plan's logit controls reach the sampler: allowed ids restrict the
 * choice, a ban (step < min_tokens) removes the greedy token and expires
 * at min_tokens, +100 bias forces a token; logprobs stay the raw ones. */
Test(worker_step, logit_controls)
{
    dsa_worker_step *ws = make_worker();
    dsa_worker_info info;
    dsa_worker_step_info(ws, &info);
    float lp0, lp;
    int32_t greedy = step_ctl(ws, 1, (dsa_step_seq){0}, &lp0);
    int32_t forced = (greedy + 7) % (int32_t)info.vocab_size;
    float big = 100.0f;
    int32_t t = step_ctl(ws, 2, (dsa_step_seq){.n_bias = 1, .bias_ids = &forced,
                                                .bias_values = &big}, &lp);
    cr_assert_eq(t, forced);
    cr_assert(lp < lp0, "raw logprob of a non-greedy token: %g vs greedy %g", lp, lp0);
    int32_t allowed[] = {forced < 3 ? forced : 3, forced < 3 ? 3 + forced : forced};
    t = step_ctl(ws, 3, (dsa_step_seq){.n_allowed = 2, .allowed = allowed}, &lp);
    cr_assert(t == allowed[0] || t == allowed[1], "token %d outside the allowed set", t);
    t = step_ctl(ws, 4, (dsa_step_seq){.min_tokens = 1, .n_banned = 1, .banned = &greedy}, &lp);
    cr_assert_neq(t, greedy);
    /* step 0 >= min_tokens 0: the ban no longer applies */
    t = step_ctl(ws, 5, (dsa_step_seq){.min_tokens = 0, .n_banned = 1, .banned = &greedy}, &lp);
    cr_assert_eq(t, greedy);
    /* an id outside the vocabulary fails the step, not the worker */
    int32_t bad = (int32_t)info.vocab_size;
    int32_t prompt[] = {1, 2}, blocks[1] = {0};
    dsa_step_seq s = {.seq_id = 9, .n_prompt = 2, .n_tokens = 2, .tokens = prompt,
                      .n_blocks = 1, .blocks = blocks, .sample = 1, .n_bias = 1,
                      .bias_ids = &bad, .bias_values = &big, .sp = {.n_logprobs = -1}};
    dsa_step_plan p = {.step_id = 77, .n_seqs = 1, .seqs = &s};
    dsa_step_result r;
    cr_assert_eq(dsa_worker_step_run(ws, &p, &r), DSA_OK);
    cr_assert_eq(r.status, DSA_RANGE);
    dsa_step_result_free(&r);
    dsa_worker_step_destroy(ws);
}

/* A row with a repetition penalty and a bias takes the bias first, as
 * vLLM: logit' = (logit + bias) / penalty for a positive sum. */
Test(worker_step, bias_before_repetition_penalty)
{
    dsa_worker_step *ws = make_worker();
    dsa_worker_info info;
    dsa_worker_step_info(ws, &info);
    int64_t V = info.vocab_size;
    int32_t prompt[] = {1, 17, 4, 99}, blocks[8];
    for (int i = 0; i < 8; i++)
        blocks[i] = i;
    float raw17 = 0, got17 = 0;
    for (int pass = 0; pass < 2; pass++) {
        int32_t id = 17;
        float bias = 50.0f;
        dsa_step_seq s = {.seq_id = 50 + (uint64_t)pass, .n_prompt = 4, .n_tokens = 4,
                          .tokens = prompt, .n_blocks = 8, .blocks = blocks, .sample = 1,
                          .sp = {.temperature = 0, .n_logprobs = -1,
                                 .repetition_penalty = pass ? 2.0f : 1.0f}};
        if (pass) {
            s.n_bias = 1;
            s.bias_ids = &id;
            s.bias_values = &bias;
        }
        dsa_step_plan p = {.step_id = 60 + (uint64_t)pass, .n_seqs = 1, .seqs = &s};
        dsa_step_result r;
        cr_assert_eq(dsa_worker_step_run(ws, &p, &r), DSA_OK);
        cr_assert_eq(r.status, DSA_OK, "%s", r.message);
        if (pass)
            cr_assert_eq(r.seqs[0].token, 17);
        dsa_step_result_free(&r);
        int64_t rows;
        const float *lg = dsa_worker_step_logits(ws, &rows);
        cr_assert_eq(rows, 1);
        cr_assert(V > 17);
        *(pass ? &got17 : &raw17) = lg[17];
    }
    cr_assert(fabsf(got17 - (raw17 + 50.0f) / 2.0f) < 1e-4f, "%g vs (%g + 50) / 2", got17,
              raw17);
    dsa_worker_step_destroy(ws);
}

/* ---- the engine ---------------------------------------------------------- */

typedef struct ev_sink {
    int notified;
} ev_sink;

static void notify(void *user)
{
    __atomic_add_fetch(&((ev_sink *)user)->notified, 1, __ATOMIC_SEQ_CST);
}

/* Polls events until req finishes (or 10 s pass); returns the finish
 * event's reason and the token count. */
static const char *run_until_done(dsa_engine *e, dsa_engine_req *want, int *n_tokens,
                                  int *status)
{
    static char reason[32];
    *n_tokens = 0;
    *status = 0;
    double t0 = dsa_time_now();
    while (dsa_time_now() - t0 < 10) {
        dsa_engine_event *ev = dsa_engine_poll(e);
        if (!ev) {
            usleep(1000);
            continue;
        }
        const char *done = NULL;
        while (ev) {
            dsa_engine_event *next = ev->next;
            if (ev->req == want) {
                *n_tokens += ev->n_tokens;
                if (ev->status)
                    *status = ev->status;
                if (ev->finish) {
                    snprintf(reason, sizeof reason, "%s", ev->finish);
                    done = reason;
                }
            }
            dsa_engine_event_free(ev);
            ev = next;
        }
        if (done)
            return done;
    }
    return "timeout";
}

static dsa_engine_req *make_req(const int32_t *prompt, int n, int max_new)
{
    dsa_engine_req *r;
    cr_assert_eq(dsa_engine_req_create(prompt, n, &r), DSA_OK);
    r->max_new = max_new;
    r->sp = (dsa_sampling){.temperature = 0, .n_logprobs = -1, .repetition_penalty = 1};
    r->ignore_eos = 1;
    r->t_arrival = dsa_time_now();
    return r;
}

Test(engine, generate_abort_and_many)
{
    dsa_transport *t;
    cr_assert_eq(dsa_worker_step_transport(make_worker(), &t), DSA_OK);
    dsa_metrics m;
    dsa_metrics_init(&m, "tiny");
    ev_sink sink = {0};
    dsa_engine_params p = {.transport = t, .metrics = &m, .max_num_seqs = 4,
                           .max_num_batched_tokens = 8, .eos_token_id = 1,
                           .notify = notify, .notify_user = &sink};
    dsa_engine *e;
    cr_assert_eq(dsa_engine_create(&p, &e), DSA_OK);
    int32_t prompt[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    /* one request: max_new tokens then "length" (prompt chunked: 11 > 8) */
    dsa_engine_req *r = make_req(prompt, 11, 5);
    dsa_engine_submit(e, r);
    int n, status;
    cr_assert_str_eq(run_until_done(e, r, &n, &status), "length");
    cr_assert_eq(n, 5);
    cr_assert_eq(status, 0);
    dsa_engine_req_release(r);
    /* a request too long for the KV cache fails with 400 */
    r = make_req(prompt, 11, 1000);
    dsa_engine_submit(e, r);
    cr_assert_str_eq(run_until_done(e, r, &n, &status), "error");
    cr_assert_eq(status, 400);
    dsa_engine_req_release(r);
    /* more requests than max_num_seqs at once all finish */
    dsa_engine_req *rs[10];
    for (int i = 0; i < 10; i++) {
        rs[i] = make_req(prompt + i % 5, 3, 4);
        dsa_engine_submit(e, rs[i]);
    }
    /* abort one at once: it never finishes, its slot comes back */
    dsa_engine_abort(e, rs[9]);
    int finished = 0;
    double t0 = dsa_time_now();
    while (finished < 9 && dsa_time_now() - t0 < 10) {
        dsa_engine_event *ev = dsa_engine_poll(e);
        while (ev) {
            dsa_engine_event *next = ev->next;
            cr_assert_neq(ev->req, rs[9]);
            finished += ev->finish != NULL;
            dsa_engine_event_free(ev);
            ev = next;
        }
        usleep(1000);
    }
    cr_assert_eq(finished, 9);
    for (int i = 0; i < 9; i++)
        dsa_engine_req_release(rs[i]);
    usleep(20000);
    cr_assert_eq(dsa_engine_n_active(e), 0);
    cr_assert_eq(dsa_engine_n_waiting(e), 0);
    dsa_engine_destroy(e);
    cr_assert_eq(m.success[DSA_FINISH_LENGTH], 10);
    cr_assert_eq(m.success[DSA_FINISH_ABORT], 1);
    cr_assert_eq(m.success[DSA_FINISH_ERROR], 1);
    cr_assert(sink.notified > 0);
    dsa_metrics_deinit(&m);
    dsa_transport_destroy(t);
}

/* A transport whose steps fail: requests fail with 500, the engine lives. */
static dsa_err failing_step(dsa_transport *t, const dsa_step_plan *plan, dsa_step_result *r)
{
    memset(r, 0, sizeof *r);
    r->step_id = plan->step_id;
    r->status = DSA_DEVICE;
    snprintf(r->message, sizeof r->message, "device on fire");
    return DSA_OK;
}

static void failing_destroy(dsa_transport *t)
{
}

static const dsa_transport_ops failing_ops = {.name = "failing", .step = failing_step,
                                              .destroy = failing_destroy};

Test(engine, failed_step_fails_requests)
{
    dsa_transport t = {.ops = &failing_ops,
                       .info = {.n_blocks = 16, .block_size = 16, .max_blocks_per_seq = 8,
                                .vocab_size = 256, .max_position_embeddings = 128}};
    dsa_metrics m;
    dsa_metrics_init(&m, "tiny");
    ev_sink sink = {0};
    dsa_engine_params p = {.transport = &t, .metrics = &m, .max_num_seqs = 4,
                           .max_num_batched_tokens = 64, .eos_token_id = 1,
                           .notify = notify, .notify_user = &sink};
    dsa_engine *e;
    cr_assert_eq(dsa_engine_create(&p, &e), DSA_OK);
    int32_t prompt[] = {1, 2, 3};
    for (int k = 0; k < 2; k++) {
        dsa_engine_req *r = make_req(prompt, 3, 4);
        dsa_engine_submit(e, r);
        int n, status;
        cr_assert_str_eq(run_until_done(e, r, &n, &status), "error");
        cr_assert_eq(status, 500);
        dsa_engine_req_release(r);
    }
    dsa_engine_destroy(e);
    cr_assert_eq(m.success[DSA_FINISH_ERROR], 2);
    dsa_metrics_deinit(&m);
}

/* Runs reqs[0..n) to the end on an engine; collects each one's prompt
 * logprobs (from its first token's event) and stop details. */
typedef struct plp_out {
    dsa_prompt_lp lps[32];
    int n_lps, n_tokens, has_stop_token;
    int32_t stop_token;
    const char *finish;
} plp_out;

static void run_all(dsa_engine *e, dsa_engine_req **reqs, int n, plp_out *out)
{
    int done = 0;
    double t0 = dsa_time_now();
    while (done < n && dsa_time_now() - t0 < 20) {
        dsa_engine_event *ev = dsa_engine_poll(e);
        if (!ev)
            usleep(1000);
        while (ev) {
            dsa_engine_event *next = ev->next;
            for (int i = 0; i < n; i++) {
                if (ev->req != reqs[i])
                    continue;
                cr_assert_eq(ev->status, 0, "%s", ev->message);
                out[i].n_tokens += ev->n_tokens;
                if (ev->n_plps) {
                    cr_assert_eq(out[i].n_lps, 0, "prompt logprobs delivered twice");
                    cr_assert(ev->n_plps <= 32);
                    memcpy(out[i].lps, ev->plps, (size_t)ev->n_plps * sizeof *ev->plps);
                    out[i].n_lps = ev->n_plps;
                }
                if (ev->finish) {
                    out[i].finish = ev->finish;
                    out[i].has_stop_token = ev->has_stop_token;
                    out[i].stop_token = ev->stop_token;
                    done++;
                }
            }
            dsa_engine_event_free(ev);
            ev = next;
        }
    }
    cr_assert_eq(done, n, "requests still running");
}

/* Prompt logprobs through the engine: chunked prefill and preemption by
 * recompute (a KV share of 3 blocks for three sequences of 2 blocks) give
 * each request its positions once, equal to the request run alone. */
Test(engine, prompt_logprobs_chunked_and_preempted)
{
    int32_t prompts[3][11] = {{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11},
                              {7, 5, 3, 1, 2, 4, 6, 8, 10, 12, 14},
                              {20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30}};
    plp_out alone[3] = {0}, together[3] = {0};
    dsa_metrics m;
    dsa_metrics_init(&m, "tiny");
    for (int pass = 0; pass < 2; pass++) {
        dsa_transport *t;
        cr_assert_eq(dsa_worker_step_transport(make_worker(), &t), DSA_OK);
        ev_sink sink = {0};
        dsa_engine_params p = {.transport = t, .metrics = &m, .max_num_seqs = 4,
                               .max_num_batched_tokens = 8, .eos_token_id = 1,
                               .kv_fraction = pass ? 3.0 / 32 : 0, .notify = notify,
                               .notify_user = &sink};
        dsa_engine *e;
        cr_assert_eq(dsa_engine_create(&p, &e), DSA_OK);
        dsa_engine_req *rs[3];
        for (int i = 0; i < 3; i++) {
            rs[i] = make_req(prompts[i], 11, 18);
            rs[i]->ctl.prompt_lps = 1;
            rs[i]->ctl.prompt_top = 2;
        }
        if (pass == 0) {
            for (int i = 0; i < 3; i++) {
                dsa_engine_submit(e, rs[i]);
                run_all(e, &rs[i], 1, &alone[i]);
            }
        } else {
            for (int i = 0; i < 3; i++)
                dsa_engine_submit(e, rs[i]);
            run_all(e, rs, 3, together);
        }
        for (int i = 0; i < 3; i++)
            dsa_engine_req_release(rs[i]);
        dsa_engine_destroy(e);
        dsa_transport_destroy(t);
    }
    cr_assert(m.preemptions > 0, "no preemption happened");
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(alone[i].n_lps, 10);
        cr_assert_eq(together[i].n_lps, 10);
        cr_assert_eq(together[i].n_tokens, 18);
        for (int k = 0; k < 10; k++) {
            const dsa_prompt_lp *a = &alone[i].lps[k], *b = &together[i].lps[k];
            cr_assert_eq(a->pos, k + 1);
            cr_assert_eq(b->pos, k + 1);
            cr_assert_eq(a->token, prompts[i][k + 1]);
            cr_assert_eq(a->token, b->token);
            cr_assert_eq(a->rank, b->rank);
            cr_assert(fabsf(a->logprob - b->logprob) < 1e-4f);
            cr_assert_eq(a->top_ids[0], b->top_ids[0]);
        }
    }
    dsa_metrics_deinit(&m);
}

/* stop_token_ids end a request with stop_reason the id (text without
 * it); min_tokens holds it (and EOS) off for that many tokens. */
Test(engine, stop_token_ids_and_min_tokens)
{
    dsa_transport *t;
    cr_assert_eq(dsa_worker_step_transport(make_worker(), &t), DSA_OK);
    dsa_metrics m;
    dsa_metrics_init(&m, "tiny");
    ev_sink sink = {0};
    dsa_engine_params p = {.transport = t, .metrics = &m, .max_num_seqs = 4,
                           .max_num_batched_tokens = 64, .eos_token_id = 1,
                           .notify = notify, .notify_user = &sink};
    dsa_engine *e;
    cr_assert_eq(dsa_engine_create(&p, &e), DSA_OK);
    int32_t prompt[] = {3, 9, 27, 81};
    int32_t stop_id = 42;
    float big = 100.0f;
    for (int min_tokens = 0; min_tokens <= 3; min_tokens += 3) {
        dsa_engine_req *r = make_req(prompt, 4, 10);
        r->stop_ids = &stop_id;
        r->n_stop_ids = 1;
        r->min_tokens = min_tokens;
        r->ctl.n_bias = 1;
        r->ctl.bias_ids = &stop_id;
        r->ctl.bias_values = &big;
        dsa_engine_submit(e, r);
        plp_out o = {0};
        run_all(e, &r, 1, &o);
        cr_assert_str_eq(o.finish, "stop");
        cr_assert(o.has_stop_token);
        cr_assert_eq(o.stop_token, stop_id);
        cr_assert_eq(o.n_tokens, min_tokens + 1);
        dsa_engine_req_release(r);
    }
    dsa_engine_destroy(e);
    dsa_metrics_deinit(&m);
    dsa_transport_destroy(t);
}
