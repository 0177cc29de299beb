/* test_model_graph.c - the model's decode graphs (model.c "Decode graphs")
 * without a GPU: a recording backend wraps the CPU backend the way CUDA
 * stream capture wraps a stream.  Between graph_begin and graph_end it
 * stores a copy of each op's params instead of running the op, and refuses
 * (as CUDA does) alloc, free, upload, download, host conversions, sample
 * and sync; graph_replay runs the stored ops again on the same buffers.
 * Logits through padded, captured and replayed decode steps must equal the
 * plain CPU backend's. */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support.h"
#include "worker/model.h"

#include "tests/rec_backend.h"

/* ---- Fixture: one model on the plain CPU, one on the recording backend --- */

/* A golden checkpoint directory of this dtype (tests/support.h). */
static char *find_golden(const char *dtype)
{
    char *dir = dsa_test_golden_dir(dtype);
    cr_assert_not_null(dir, "no golden config of dtype %s", dtype);
    return dir;
}

enum { N_BLOCKS = 160, BLOCK = 4, BPS = 16, MAX_SEQS = 10 };

typedef struct fixture {
    dsa_weights *w;             /* shared: CPU weights need no preparing */
    dsa_backend *cpu;
    rec_backend *rb;
    dsa_model *ref, *gm;        /* plain CPU; recording backend with graphs */
    int64_t V;
    float *lref, *lgot;         /* [MAX_SEQS, V] */
} fixture;

static void fixture_open(fixture *f, const char *dtype)
{
    char *src = find_golden(dtype);
    cr_assert_eq(dsa_weights_load(src, NULL, &f->w), DSA_OK, "%s", dsa_errmsg());
    free(src);
    cr_assert_eq(dsa_backend_cpu_create(2, &f->cpu), DSA_OK);
    f->rb = rec_create();
    cr_assert(!dsa_backend_has_graphs(f->cpu));
    cr_assert(dsa_backend_has_graphs(&f->rb->base));
    dsa_model_params mp = {.n_blocks = N_BLOCKS, .block_size = BLOCK, .max_blocks_per_seq = BPS};
    cr_assert_eq(dsa_model_create(f->cpu, f->w, &mp, &f->ref), DSA_OK, "%s", dsa_errmsg());
    cr_assert_eq(dsa_model_create(&f->rb->base, f->w, &mp, &f->gm), DSA_OK, "%s",
                 dsa_errmsg());
    f->V = f->w->cfg.vocab_size;
    f->lref = malloc((size_t)(MAX_SEQS * f->V) * sizeof(float));
    f->lgot = malloc((size_t)(MAX_SEQS * f->V) * sizeof(float));
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

/* Runs b through both models and checks the logits agree. */
static void step_both(fixture *f, const dsa_batch *b, const char *what)
{
    cr_assert_eq(dsa_model_forward(f->ref, b, f->lref), DSA_OK, "%s: %s", what, dsa_errmsg());
    cr_assert_eq(dsa_model_forward(f->gm, b, f->lgot), DSA_OK, "%s: %s", what, dsa_errmsg());
    double d = dsa_test_max_rel(f->lgot, f->lref, b->n_logits * f->V);
    cr_expect_lt(d, 1e-6, "%s: logits differ by %g", what, d);
}

/* Sequence i keeps its cache in blocks i * BPS ..; the tables of all
 * MAX_SEQS sequences, laid out for a batch of sequences `ids`. */
static void tables_for(const int *ids, int n, int32_t *bt)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < BPS; j++)
            bt[i * BPS + j] = (int32_t)(ids[i] * BPS + j);
}

/* Prefills sequence `id` with a prompt of `len` tokens (one eager step). */
static void prefill(fixture *f, int id, int len)
{
    int32_t tok[BPS * BLOCK], pos[BPS * BLOCK], seq[BPS * BLOCK] = {0}, bt[BPS];
    tables_for(&id, 1, bt);
    for (int i = 0; i < len; i++) {
        tok[i] = (int32_t)((i * 37 + 11 * id + 5) % f->V);
        pos[i] = i;
    }
    int32_t last = len - 1;
    dsa_batch b = {.n_tokens = len, .tokens = tok, .pos = pos, .seq = seq, .n_seqs = 1,
                   .block_tables = bt, .n_logits = 1, .logit_rows = &last};
    step_both(f, &b, "prefill");
}

/* One decode step of sequences ids[0..n) at positions len[ids[i]] (then
 * advanced), returning the logits of rows `rows` (NULL: all). */
static void decode(fixture *f, const int *ids, int n, int *len, const int32_t *rows,
                   int n_rows, int step)
{
    int32_t tok[MAX_SEQS], pos[MAX_SEQS], seq[MAX_SEQS], bt[MAX_SEQS * BPS];
    int32_t all[MAX_SEQS];
    tables_for(ids, n, bt);
    for (int i = 0; i < n; i++) {
        tok[i] = (int32_t)((step * 7 + ids[i] * 3 + 1) % f->V);
        pos[i] = len[ids[i]]++;
        seq[i] = i;
        all[i] = i;
    }
    dsa_batch b = {.n_tokens = n, .tokens = tok, .pos = pos, .seq = seq, .n_seqs = n,
                   .block_tables = bt, .n_logits = rows ? n_rows : n,
                   .logit_rows = rows ? rows : all};
    char what[64];
    snprintf(what, sizeof what, "decode step %d of %d sequences", step, n);
    step_both(f, &b, what);
}

Test(model_graph, padded_decode_captures_and_replays_like_the_cpu)
{
    fixture f;
    fixture_open(&f, "f32");
    int len[MAX_SEQS] = {5, 11, 2, 3, 4, 6, 7, 8, 9};
    int ids9[9] = {0, 1, 2, 3, 4, 5, 6, 7, 8};
    for (int i = 0; i < 9; i++)
        prefill(&f, i, len[i]);

    /* 9 sequences -> bucket 16 (7 padded rows): eager (warm-up), capture +
     * replay, replays */
    for (int step = 0; step < 5; step++)
        decode(&f, ids9, 9, len, NULL, 0, step);
    dsa_model_graph_stats st;
    dsa_model_graph_stats_get(f.gm, &st);
    cr_expect_eq(st.n_eager, 1);
    cr_expect_eq(st.n_captured, 1);
    cr_expect_eq(st.n_replayed, 4);
    cr_expect_eq(st.n_fallbacks, 0);
    cr_expect_eq(f.rb->n_begin, 1);
    cr_expect_eq(f.rb->n_replay, 4);
    cr_expect_gt(f.rb->n_replayed_ops, 0);
    cr_expect_eq(f.rb->n_refused, 0, "host calls inside the captured compute phase");

    /* only some rows sample (rows 2 and 0, out of order) */
    int32_t rows[2] = {2, 0};
    decode(&f, ids9, 9, len, rows, 2, 5);
    int32_t tail[2] = {1, 8};
    decode(&f, ids9, 9, len, tail, 2, 6);

    /* other buckets: 3 sequences (bucket 3: no padding, where powers of
     * two padded to 4), 1 sequence */
    int ids3[3] = {2, 0, 5}, ids1[1] = {1};
    for (int step = 7; step < 10; step++)
        decode(&f, ids3, 3, len, NULL, 0, step);
    for (int step = 10; step < 13; step++)
        decode(&f, ids1, 1, len, NULL, 0, step);
    dsa_model_graph_stats_get(f.gm, &st);
    cr_expect_eq(st.n_captured, 3);
    cr_expect_eq(st.n_replayed, 6 + 2 + 2);
    cr_expect_eq(st.n_fallbacks, 0);
    cr_assert_eq(f.rb->n_graphs, 3);
    int64_t keys[3] = {16, 3, 1}; /* the buckets, in capture order */
    for (int i = 0; i < 3; i++)
        cr_expect_eq(f.rb->graphs[i].key, keys[i], "graph %d: bucket %lld", i,
                     (long long)f.rb->graphs[i].key);

    /* a longer step than any before may move buffers: bucket 16 recaptures
     * (without another eager warm-up) and still agrees; 10 sequences share
     * the bucket of 9 */
    prefill(&f, 9, 17);
    len[9] = 17;
    int ids10[10] = {9, 1, 0, 2, 3, 4, 5, 6, 7, 8};
    int64_t eager = st.n_eager;
    for (int step = 13; step < 16; step++)
        decode(&f, ids10, 10, len, NULL, 0, step);
    dsa_model_graph_stats_get(f.gm, &st);
    cr_expect_eq(st.n_captured, 4);
    cr_expect_eq(st.n_eager, eager);
    cr_expect_eq(st.n_replayed, 10 + 3);
    cr_expect_eq(f.rb->n_refused, 0);
    fixture_close(&f);
}

Test(model_graph, graphs_dropped_by_the_backend_are_captured_again)
{
    fixture f;
    fixture_open(&f, "f32");
    int len[MAX_SEQS] = {4, 7, 0, 0};
    int ids[2] = {0, 1};
    for (int i = 0; i < 2; i++)
        prefill(&f, i, len[i]);
    for (int step = 0; step < 3; step++) /* eager, capture + replay, replay */
        decode(&f, ids, 2, len, NULL, 0, step);
    dsa_model_graph_stats st;
    dsa_model_graph_stats_get(f.gm, &st);
    cr_expect_eq(st.n_captured, 1);
    cr_expect_eq(st.n_replayed, 2);
    /* the backend reallocated its own scratch: the next replay finds no
     * graph, the bucket is recaptured at once (no eager step, no fallback)
     * and the replay still equals the plain CPU (step_both checks) */
    rec_drop_graphs(f.rb);
    for (int step = 3; step < 6; step++)
        decode(&f, ids, 2, len, NULL, 0, step);
    dsa_model_graph_stats_get(f.gm, &st);
    cr_expect_eq(st.n_dropped, 1);
    cr_expect_eq(st.n_captured, 2);
    cr_expect_eq(st.n_replayed, 5);
    cr_expect_eq(st.n_eager, 1);
    cr_expect_eq(st.n_fallbacks, 0);
    cr_expect_eq(f.rb->n_refused, 0);
    fixture_close(&f);
}

Test(model_graph, failing_graph_falls_back_to_eager)
{
    fixture f;
    fixture_open(&f, "fp8");
    f.rb->fail_begin = 1;
    int len[MAX_SEQS] = {3, 6, 9, 0};
    int ids[3] = {0, 1, 2};
    for (int i = 0; i < 3; i++)
        prefill(&f, i, len[i]);
    for (int step = 0; step < 4; step++)
        decode(&f, ids, 3, len, NULL, 0, step);
    dsa_model_graph_stats st;
    dsa_model_graph_stats_get(f.gm, &st);
    cr_expect_eq(st.n_replayed, 0);
    cr_expect_eq(st.n_fallbacks, 1, "one fallback per bucket, then eager for good");
    cr_expect_eq(st.n_eager, 4);
    fixture_close(&f);
}

Test(model_graph, mixed_and_large_batches_stay_eager)
{
    fixture f;
    fixture_open(&f, "f32");
    int len[MAX_SEQS] = {4, 0, 0, 0};
    prefill(&f, 0, len[0]);
    /* a decode token next to a prompt chunk is not a pure decode batch */
    int32_t tok[4] = {9, 1, 2, 3}, pos[4] = {4, 0, 1, 2}, seq[4] = {0, 1, 1, 1};
    int32_t bt[2 * BPS], rows[2] = {0, 3};
    int ids[2] = {0, 1};
    tables_for(ids, 2, bt);
    dsa_batch b = {.n_tokens = 4, .tokens = tok, .pos = pos, .seq = seq, .n_seqs = 2,
                   .block_tables = bt, .n_logits = 2, .logit_rows = rows};
    step_both(&f, &b, "mixed");
    step_both(&f, &b, "mixed again"); /* rewrites the same cache entries */
    dsa_model_graph_stats st;
    dsa_model_graph_stats_get(f.gm, &st);
    cr_expect_eq(st.n_eager + st.n_captured + st.n_replayed, 0);
    /* the scratch block is the model's, not the caller's */
    bt[0] = N_BLOCKS;
    cr_expect_eq(dsa_model_forward(f.gm, &b, f.lgot), DSA_RANGE);
    fixture_close(&f);
}
