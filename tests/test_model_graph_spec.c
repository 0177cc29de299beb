/* test_model_graph_spec.c - steps that verify MTP drafts through the
 * model's graphs (worker/model_graph.c): q = 1 + k tokens for every
 * sequence, every row's logits, buckets per q, padded sequences bringing q
 * tokens too.  A recording backend (tests/rec_backend.h) stands for CUDA
 * stream capture; its logits must match the plain CPU backend's. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "tests/rec_backend.h"
#include "tests/support.h"
#include "worker/loader.h"
#include "worker/model.h"

enum { N_BLOCKS = 200, BLOCK = 4, BPS = 16, MAX_SEQS = 12, QMAX = 4 };

typedef struct fixture {
    dsa_weights *w;
    dsa_backend *cpu;
    rec_backend *rb;
    dsa_model *ref, *gm;
    int64_t V;
    float *lref, *lgot;         /* [MAX_SEQS * QMAX, V] */
} fixture;

static void fixture_open(fixture *f)
{
    char *src = dsa_test_golden_dir("fp8");
    cr_assert_not_null(src);
    cr_assert_eq(dsa_weights_load(src, NULL, &f->w), DSA_OK, "%s", dsa_errmsg());
    free(src);
    cr_assert_eq(dsa_backend_cpu_create(2, &f->cpu), DSA_OK);
    f->rb = rec_create();
    dsa_model_params mp = {.n_blocks = N_BLOCKS, .block_size = BLOCK, .max_blocks_per_seq = BPS};
    cr_assert_eq(dsa_model_create(f->cpu, f->w, &mp, &f->ref), DSA_OK, "%s", dsa_errmsg());
    cr_assert_eq(dsa_model_create(&f->rb->base, f->w, &mp, &f->gm), DSA_OK, "%s",
                 dsa_errmsg());
    f->V = f->w->cfg.vocab_size;
    f->lref = malloc((size_t)(MAX_SEQS * QMAX * f->V) * sizeof(float));
    f->lgot = malloc((size_t)(MAX_SEQS * QMAX * f->V) * sizeof(float));
    cr_assert(f->lref && f->lgot);
}

static void fixture_close(fixture *f)
{
    dsa_model_destroy(f->gm);
    dsa_model_destroy(f->ref);
    dsa_backend_destroy(&f->rb->base);
    dsa_backend_destroy(f->cpu);
    dsa_weights_free(f->w);
    free(f->lref);
    free(f->lgot);
}

static void step_both(fixture *f, const dsa_batch *b, const char *what)
{
    cr_assert_eq(dsa_model_forward(f->ref, b, f->lref), DSA_OK, "%s: %s", what, dsa_errmsg());
    cr_assert_eq(dsa_model_forward(f->gm, b, f->lgot), DSA_OK, "%s: %s", what, dsa_errmsg());
    int64_t n = b->n_logits * f->V;
    double worst = 0, scale = 0;
    for (int64_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(f->lref[i]));
    for (int64_t i = 0; i < n; i++)
        worst = fmax(worst, fabs((double)f->lgot[i] - f->lref[i]) / (scale > 0 ? scale : 1));
    cr_expect_lt(worst, 1e-6, "%s: logits differ by %g", what, worst);
}

/* Sequences 0..n-1, sequence s bringing q[s] tokens at positions len[s]..
 * (then advanced), every row's logits. */
static void verify_step(fixture *f, int n, const int *q, int *len, int step)
{
    int32_t tok[MAX_SEQS * QMAX], pos[MAX_SEQS * QMAX], seq[MAX_SEQS * QMAX];
    int32_t rows[MAX_SEQS * QMAX], bt[MAX_SEQS * BPS];
    int T = 0;
    for (int s = 0; s < n; s++) {
        for (int j = 0; j < BPS; j++)
            bt[s * BPS + j] = (int32_t)(s * BPS + j);
        for (int j = 0; j < q[s]; j++, T++) {
            tok[T] = (int32_t)((step * 13 + s * 7 + j * 3 + 1) % f->V);
            pos[T] = len[s]++;
            seq[T] = s;
            rows[T] = T;
        }
    }
    dsa_batch b = {.n_tokens = T, .tokens = tok, .pos = pos, .seq = seq, .n_seqs = n,
                   .block_tables = bt, .n_logits = T, .logit_rows = rows};
    char what[64];
    snprintf(what, sizeof what, "step %d: %d sequences, %d tokens", step, n, T);
    step_both(f, &b, what);
}

Test(model_graph_spec, verification_steps_capture_and_replay_per_q)
{
    fixture f;
    fixture_open(&f);
    int len[MAX_SEQS] = {0}, q3[MAX_SEQS], q2[MAX_SEQS];
    for (int s = 0; s < MAX_SEQS; s++)
        q3[s] = 3, q2[s] = 2;
    /* 3 sequences of 3 tokens (a token and 2 drafts): bucket 3, q 3;
     * eager warm-up, capture + replay, replay */
    for (int step = 0; step < 3; step++)
        verify_step(&f, 3, q3, len, step);
    dsa_model_graph_stats st;
    dsa_model_graph_stats_get(f.gm, &st);
    cr_expect_eq(st.n_eager, 1);
    cr_expect_eq(st.n_captured, 1);
    cr_expect_eq(st.n_replayed, 2);
    /* 9 sequences of 2 tokens: bucket 16 padded by 7 sequences of 2 */
    for (int step = 3; step < 6; step++)
        verify_step(&f, 9, q2, len, step);
    /* one token each (plain decode): its own bucket, unchanged key */
    int q1[MAX_SEQS];
    for (int s = 0; s < MAX_SEQS; s++)
        q1[s] = 1;
    for (int step = 6; step < 9; step++)
        verify_step(&f, 3, q1, len, step);
    dsa_model_graph_stats_get(f.gm, &st);
    cr_expect_eq(st.n_eager, 3, "one warm-up per bucket");
    cr_expect_eq(st.n_captured, 3);
    cr_expect_eq(st.n_replayed, 6);
    cr_expect_eq(st.n_fallbacks, 0);
    cr_expect_eq(f.rb->n_refused, 0, "host calls inside a capture");
    cr_assert_eq(f.rb->n_graphs, 3);
    int64_t keys[3] = {2 * 257 + 3, 1 * 257 + 16, 3}; /* (q - 1) * 257 + bucket */
    for (int i = 0; i < 3; i++)
        cr_expect_eq(f.rb->graphs[i].key, keys[i], "graph %d: key %lld", i,
                     (long long)f.rb->graphs[i].key);
    fixture_close(&f);
}

Test(model_graph_spec, uneven_drafts_and_prefill_chunks_stay_eager)
{
    fixture f;
    fixture_open(&f);
    int len[MAX_SEQS] = {0}, uneven[2] = {3, 2};
    verify_step(&f, 2, uneven, len, 0);
    verify_step(&f, 2, uneven, len, 1);
    /* a 4-token prompt chunk wanting only its last row's logits */
    int32_t tok[4] = {5, 6, 7, 8}, pos[4] = {0, 1, 2, 3}, seq[4] = {0}, bt[BPS], last = 3;
    for (int j = 0; j < BPS; j++)
        bt[j] = (int32_t)(5 * BPS + j);
    dsa_batch b = {.n_tokens = 4, .tokens = tok, .pos = pos, .seq = seq, .n_seqs = 1,
                   .block_tables = bt, .n_logits = 1, .logit_rows = &last};
    step_both(&f, &b, "prompt chunk");
    step_both(&f, &b, "prompt chunk again");
    dsa_model_graph_stats st;
    dsa_model_graph_stats_get(f.gm, &st);
    cr_expect_eq(st.n_eager + st.n_captured + st.n_replayed, 0);
    fixture_close(&f);
}
