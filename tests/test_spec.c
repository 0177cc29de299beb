/* test_spec.c - speculative decoding with the MTP module (docs/design.md
 * "Speculative decoding"), through the engine thread and the in-process
 * worker, on the trained models/dsa-tiny-r1 and on the random
 * tests/data/golden/tiny-mtp checkpoint.
 *
 * The outputs are compared with the same requests run without drafts, not
 * with recorded texts (the trained checkpoint may be retrained):
 *   - greedy: the same token ids for k = 1, 2, 3 (two requests with
 *     frequency and repetition penalties), with several requests
 *     batched together, prompts chunked (a small token budget), a shared
 *     prompt prefix (prefix caching), stop token ids and max_tokens that
 *     fall inside an accepted run, and again with preemption forced (a KV
 *     share too small for the requests together);
 *   - seeded sampling (temperature, top-p, top-k, min-p and penalties):
 *     drafts are verified by sampling each position with its own draw
 *     index, so a seeded request gives the same tokens with drafts as
 *     without;
 *   - the spec-decode counters add up (drafts, draft tokens, accepted,
 *     per position) and on the trained model the MTP's drafts are
 *     accepted at least sometimes. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "head/engine.h"
#include "tests/support.h"
#include "worker/step.h"

#define N_REQ 6
#define MAX_NEW 40

typedef struct run_cfg {
    const char *model;      /* under tests/data, or a path from the source root */
    int spec_k;
    int64_t n_blocks;       /* worker KV blocks */
    double kv_fraction;     /* the engine's share of them (0: all) */
    int64_t max_num_batched_tokens;
    int seeded;             /* temperature 1 sampling with penalties, seeded */
} run_cfg;

typedef struct run_out {
    int32_t ids[N_REQ][MAX_NEW];
    int n[N_REQ];
    const char *finish[N_REQ];
    uint64_t drafts, draft_tokens, accepted, per_pos[DSA_SPEC_TOKENS_MAX];
    uint64_t preemptions;
} run_out;

static void notify(void *user)
{
    (void)user;
}

static char *model_path(const char *model)
{
    if (!strncmp(model, "models/", 7)) {
        char *golden = dsa_test_data_path("golden");
        char *p = malloc(strlen(golden) + strlen(model) + 16);
        sprintf(p, "%s/../../../%s", golden, model);
        free(golden);
        return p;
    }
    return dsa_test_data_path(model);
}

/* The prompts: different lengths (one longer than the token budget of
 * the chunked runs), two sharing a 20-token prefix, one a single token
 * repeated. */
static int prompt_of(int i, int32_t *p, int64_t vocab)
{
    int n = 6 + 7 * i;
    if (i >= 4 && i % 2) { /* one token repeated: the model repeats it, penalties push back */
        for (int j = 0; j < n; j++)
            p[j] = (int32_t)(40 % vocab);
        return n;
    }
    for (int j = 0; j < n; j++)
        p[j] = (int32_t)(3 + (j < 20 && i >= 4 ? j * 11 : (i + 1) * 37 + j * (5 + i)) %
                                 (vocab - 3));
    return n;
}

static void run(const run_cfg *c, run_out *out)
{
    memset(out, 0, sizeof *out);
    char *dir = model_path(c->model);
    dsa_log_setup(DSA_LOG_WARN, 0);
    dsa_worker_step_params wp = {.model_dir = dir, .n_threads = 1, .block_size = 8,
                                 .max_model_len = 256, .n_blocks = c->n_blocks,
                                 .spec_tokens = c->spec_k};
    dsa_worker_step *ws = NULL;
    cr_assert_eq(dsa_worker_step_create(&wp, &ws), DSA_OK, "%s", dsa_errmsg());
    free(dir);
    dsa_transport *t;
    cr_assert_eq(dsa_worker_step_transport(ws, &t), DSA_OK);
    dsa_metrics m;
    dsa_metrics_init(&m, "spec");
    dsa_engine_params p = {.transport = t, .metrics = &m, .max_num_seqs = N_REQ,
                           .max_num_batched_tokens = c->max_num_batched_tokens,
                           .kv_fraction = c->kv_fraction, .eos_token_id = -1,
                           .notify = notify, .spec_k = c->spec_k};
    dsa_engine *e;
    cr_assert_eq(dsa_engine_create(&p, &e), DSA_OK, "%s", dsa_errmsg());
    int64_t V = t->info.vocab_size;
    dsa_engine_req *rs[N_REQ];
    static const int32_t stop_ids[] = {7};
    for (int i = 0; i < N_REQ; i++) {
        int32_t prompt[64];
        int n = prompt_of(i, prompt, V);
        cr_assert_eq(dsa_engine_req_create(prompt, n, &rs[i]), DSA_OK);
        dsa_engine_req *r = rs[i];
        /* max_tokens that k + 1 does not divide, so a cut can fall inside a run */
        r->max_new = MAX_NEW - 3 - 2 * i;
        r->sp = (dsa_sampling){.temperature = 0, .n_logprobs = 0, .repetition_penalty = 1};
        /* penalties on two greedy requests: a verified position must see
         * the drafts before it as generated */
        if (i == 4)
            r->sp.frequency_penalty = 0.7f;
        if (i == 5)
            r->sp.frequency_penalty = 0.3f;
        if (c->seeded)
            r->sp = (dsa_sampling){.temperature = 1, .top_p = i % 2 ? 0.9f : 1,
                                   .top_k = i == 2 ? 20 : 0, .min_p = i == 3 ? 0.01f : 0,
                                   .seed = 1000 + (uint64_t)i, .n_logprobs = 0,
                                   .repetition_penalty = i % 3 == 1 ? 1.8f : 1,
                                   .presence_penalty = i == 4 ? 1.5f : 0,
                                   .frequency_penalty = i == 5 ? 1.0f : 0};
        r->want_logprobs = 1;
        r->ignore_eos = 1;
        if (i == 1) { /* a stop token id, wherever it comes */
            r->stop_ids = stop_ids;
            r->n_stop_ids = 1;
        }
        r->t_arrival = dsa_time_now();
        dsa_engine_submit(e, r);
    }
    int done = 0;
    double t0 = dsa_time_now();
    while (done < N_REQ && dsa_time_now() - t0 < 120) {
        dsa_engine_event *ev = dsa_engine_poll(e);
        if (!ev)
            usleep(500);
        while (ev) {
            dsa_engine_event *next = ev->next;
            for (int i = 0; i < N_REQ; i++) {
                if (ev->req != rs[i])
                    continue;
                cr_assert_eq(ev->status, 0, "%s", ev->message);
                for (int j = 0; j < ev->n_lps; j++) {
                    cr_assert(out->n[i] < MAX_NEW);
                    out->ids[i][out->n[i]++] = ev->lps[j].id;
                }
                if (ev->finish) {
                    out->finish[i] = ev->finish;
                    done++;
                }
            }
            dsa_engine_event_free(ev);
            ev = next;
        }
    }
    cr_assert_eq(done, N_REQ, "requests still running");
    for (int i = 0; i < N_REQ; i++)
        dsa_engine_req_release(rs[i]);
    dsa_engine_destroy(e);
    /* the per-request token counts (vllm:request_generation_tokens) are
     * the tokens output, also when a request stops inside an accepted run */
    double n_out = 0;
    for (int i = 0; i < N_REQ; i++)
        n_out += out->n[i];
    cr_assert_eq((long long)m.n_generation.sum, (long long)n_out, "generation tokens %g, %g out",
                 m.n_generation.sum, n_out);
    out->drafts = m.spec_drafts;
    out->draft_tokens = m.spec_draft_tokens;
    out->accepted = m.spec_accepted_tokens;
    memcpy(out->per_pos, m.spec_accepted_per_pos, sizeof out->per_pos);
    out->preemptions = m.preemptions;
    dsa_metrics_deinit(&m);
    dsa_transport_destroy(t);
}

static void expect_same(const run_out *a, const run_out *b, const char *what)
{
    for (int i = 0; i < N_REQ; i++) {
        cr_assert_eq(a->n[i], b->n[i], "%s: request %d: %d tokens, %d without drafts", what, i,
                     b->n[i], a->n[i]);
        cr_assert_str_eq(a->finish[i], b->finish[i], "%s: request %d", what, i);
        for (int j = 0; j < a->n[i]; j++)
            cr_assert_eq(a->ids[i][j], b->ids[i][j], "%s: request %d token %d: %d, %d without "
                         "drafts", what, i, j, b->ids[i][j], a->ids[i][j]);
    }
}

static void expect_counts(const run_out *o, int k, const char *what)
{
    cr_assert(o->drafts > 0, "%s: no drafts verified", what);
    cr_assert(o->draft_tokens <= o->drafts * (uint64_t)k, "%s", what);
    uint64_t sum = 0;
    for (int j = 0; j < k; j++) {
        sum += o->per_pos[j];
        if (j > 0)
            cr_assert(o->per_pos[j] <= o->per_pos[j - 1], "%s: position %d", what, j);
    }
    cr_assert_eq(sum, o->accepted, "%s", what);
    cr_assert(o->accepted <= o->draft_tokens, "%s", what);
}

static void greedy_all_k(const char *model, int64_t budget)
{
    run_cfg c = {.model = model, .n_blocks = 64, .max_num_batched_tokens = budget};
    run_out base, spec;
    run(&c, &base);
    for (int k = 1; k <= 3; k++) {
        char what[128];
        snprintf(what, sizeof what, "%s k=%d", model, k);
        c.spec_k = k;
        run(&c, &spec);
        expect_same(&base, &spec, what);
        expect_counts(&spec, k, what);
        cr_log_info("%s: %llu drafts, %llu draft tokens, %llu accepted (%.2f per draft)", what,
                    (unsigned long long)spec.drafts, (unsigned long long)spec.draft_tokens,
                    (unsigned long long)spec.accepted,
                    spec.drafts ? (double)spec.accepted / (double)spec.drafts : 0);
        if (!strncmp(model, "models/", 7))
            cr_assert(spec.accepted > 0, "%s: the trained MTP never guessed right", what);
    }
}

Test(spec, greedy_identical_trained, .timeout = 600)
{
    greedy_all_k("models/dsa-tiny-r1", 16);
}

Test(spec, greedy_identical_random, .timeout = 600)
{
    greedy_all_k("golden/tiny-mtp", 2048);
}

/* 6 requests of up to 5 + 40 tokens in 8-token blocks need ~36 blocks
 * together; 14 force preemption by recompute. */
Test(spec, greedy_identical_under_preemption, .timeout = 600)
{
    run_cfg c = {.model = "models/dsa-tiny-r1", .n_blocks = 64, .kv_fraction = 14.0 / 64,
                 .max_num_batched_tokens = 32};
    run_out base, spec;
    run(&c, &base);
    for (int k = 1; k <= 3; k += 2) {
        c.spec_k = k;
        run(&c, &spec);
        cr_assert(spec.preemptions > 0, "k=%d: no preemption happened", k);
        expect_same(&base, &spec, k == 1 ? "preempted k=1" : "preempted k=3");
    }
}

Test(spec, seeded_sampling_identical, .timeout = 600)
{
    run_cfg c = {.model = "models/dsa-tiny-r1", .n_blocks = 64, .max_num_batched_tokens = 64,
                 .seeded = 1};
    run_out base, spec;
    run(&c, &base);
    for (int k = 1; k <= 3; k++) {
        c.spec_k = k;
        run(&c, &spec);
        expect_same(&base, &spec, "seeded");
        expect_counts(&spec, k, "seeded");
    }
}


/* Verification at the worker: a plan whose drafts are token X, with a
 * +100 bias on X and a frequency penalty of 150.  Row 0 picks X (accepting
 * the first draft); at row 1 that X counts as generated, so X is out and
 * the second draft is rejected; the token there is what a plain step
 * after X picks.  The MTP then drafts from the accepted positions. */
static dsa_worker_step *spec_worker(int k)
{
    char *dir = dsa_test_data_path("golden/tiny-mtp");
    dsa_worker_step_params p = {.model_dir = dir, .n_threads = 1, .block_size = 4,
                                .max_model_len = 64, .n_blocks = 64, .spec_tokens = k};
    dsa_worker_step *ws = NULL;
    dsa_log_setup(DSA_LOG_WARN, 0);
    cr_assert_eq(dsa_worker_step_create(&p, &ws), DSA_OK, "%s", dsa_errmsg());
    free(dir);
    return ws;
}

Test(spec, verification_sees_drafts_as_generated)
{
    const int32_t X = 300;
    int32_t bias_ids[] = {X};
    float bias_values[] = {100};
    int32_t blocks[16];
    for (int i = 0; i < 16; i++)
        blocks[i] = 15 - i;
    dsa_sampling sp = {.temperature = 0, .n_logprobs = 0, .repetition_penalty = 1,
                       .frequency_penalty = 150};
    int32_t toks[16] = {5, 9, 11, 13, 17, 19, X, X, X};
    /* plain: prefill then one decode */
    dsa_worker_step *ws = spec_worker(0);
    dsa_step_seq s = {.seq_id = 1, .pos = 0, .n_prompt = 6, .n_tokens = 6, .tokens = toks,
                      .n_blocks = 16, .blocks = blocks, .sample = 1, .sp = sp,
                      .n_bias = 1, .bias_ids = bias_ids, .bias_values = bias_values,
                      .next_token = -1};
    dsa_step_plan p = {.step_id = 1, .n_seqs = 1, .seqs = &s};
    dsa_step_result r;
    cr_assert_eq(dsa_worker_step_run(ws, &p, &r), DSA_OK);
    cr_assert_eq(r.status, DSA_OK, "%s", r.message);
    cr_assert_eq(r.seqs[0].token, X);
    dsa_step_result_free(&r);
    s.pos = 6;
    s.n_tokens = 1;
    s.tokens = toks + 6;
    s.step = 1;
    p.step_id = 2;
    cr_assert_eq(dsa_worker_step_run(ws, &p, &r), DSA_OK);
    cr_assert_eq(r.status, DSA_OK, "%s", r.message);
    int32_t want = r.seqs[0].token;
    float want_lp = r.seqs[0].logprob;
    cr_assert_neq(want, X, "the penalty should keep X out");
    dsa_step_result_free(&r);
    dsa_worker_step_destroy(ws);

    /* speculative: the prompt plus drafts X, X in one step */
    ws = spec_worker(2);
    s = (dsa_step_seq){.seq_id = 1, .pos = 0, .n_prompt = 6, .n_tokens = 8, .tokens = toks,
                       .n_blocks = 16, .blocks = blocks, .sample = 1, .sp = sp,
                       .n_bias = 1, .bias_ids = bias_ids, .bias_values = bias_values,
                       .next_token = -1, .n_draft = 2, .spec_k = 2};
    p = (dsa_step_plan){.step_id = 1, .n_seqs = 1, .seqs = &s};
    cr_assert_eq(dsa_worker_step_run(ws, &p, &r), DSA_OK);
    cr_assert_eq(r.status, DSA_OK, "%s", r.message);
    cr_assert_eq(r.seqs[0].token, X);
    cr_assert_eq(r.seqs[0].n_extra, 1, "accepted %d drafts, want 1", r.seqs[0].n_extra);
    cr_assert_eq(r.seqs[0].extra[0].token, want);
    cr_assert_float_eq(r.seqs[0].extra[0].logprob, want_lp, 1e-5);
    cr_assert_eq(r.seqs[0].n_drafts, 2, "the MTP drafted %d", r.seqs[0].n_drafts);
    for (int j = 0; j < 2; j++)
        cr_assert(r.seqs[0].drafts[j] >= 0 && r.seqs[0].drafts[j] < 512);
    dsa_step_result_free(&r);
    /* a plan asking for drafts from a worker without the MTP fails the step */
    dsa_worker_step *plain = spec_worker(0);
    cr_assert_eq(dsa_worker_step_run(plain, &p, &r), DSA_OK);
    cr_assert_neq(r.status, DSA_OK);
    cr_assert(strstr(r.message, "no MTP module"), "%s", r.message);
    dsa_step_result_free(&r);
    dsa_worker_step_destroy(plain);
    dsa_worker_step_destroy(ws);
}
