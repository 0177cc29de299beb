/* test_mha_prefill.c - the non-absorbed prefill op (backend.h
 * dsa_mha_prefill_params) against direct attention in double, and the
 * forward pass with it turned on against absorbed MLA (worker/model_mha.c):
 * long prompt chunks with and without cached context, ragged batches of
 * chunks, and what greedy decoding continues with afterwards. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support.h"
#include "worker/model.h"

/* ---- The op alone ---- */

typedef struct op_case {
    int64_t n_seqs, H, N, P, V;
    int32_t qo[8], kv[8];       /* indptrs */
} op_case;

static float rnd(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(*s >> 40) / (double)(1ULL << 24) * 2.0 - 1.0);
}

/* Direct softmax(q k^T) v of query row r, head h, in double. */
static void reference_row(const op_case *c, const float *q, const float *kvb, const float *kpe,
                          int64_t r, int64_t h, double *out)
{
    int64_t s = 0;
    while (c->qo[s + 1] <= r)
        s++;
    int64_t qo_len = c->qo[s + 1] - c->qo[s], kv_len = c->kv[s + 1] - c->kv[s];
    int64_t n = r - c->qo[s] + kv_len - qo_len + 1, QK = c->N + c->P, W = c->N + c->V;
    double *sc = malloc((size_t)n * sizeof *sc), mx = -INFINITY, sum = 0;
    for (int64_t j = 0; j < n; j++) {
        const float *qr = q + (r * c->H + h) * QK;
        const float *k = kvb + ((c->kv[s] + j) * c->H + h) * W;
        const float *kp = kpe + (c->kv[s] + j) * c->P;
        double d = 0;
        for (int64_t i = 0; i < c->N; i++)
            d += (double)qr[i] * k[i];
        for (int64_t i = 0; i < c->P; i++)
            d += (double)qr[c->N + i] * kp[i];
        sc[j] = 0.3 * d;
        mx = fmax(mx, sc[j]);
    }
    for (int64_t i = 0; i < c->V; i++)
        out[i] = 0;
    for (int64_t j = 0; j < n; j++) {
        double p = exp(sc[j] - mx);
        sum += p;
        const float *v = kvb + ((c->kv[s] + j) * c->H + h) * W + c->N;
        for (int64_t i = 0; i < c->V; i++)
            out[i] += p * v[i];
    }
    for (int64_t i = 0; i < c->V; i++)
        out[i] /= sum;
    free(sc);
}

/* Runs the op on random inputs (k_nope and v interleaved per head as the
 * model's kv_b output holds them) and returns out [n_q, H, V]. */
static float *run_op(dsa_backend *be, const op_case *c, uint64_t seed, float **q_out,
                     float **kvb_out, float **kpe_out)
{
    int64_t nq = c->qo[c->n_seqs], nkv = c->kv[c->n_seqs], QK = c->N + c->P, W = c->N + c->V;
    float *q = malloc((size_t)(nq * c->H * QK) * sizeof *q);
    float *kvb = malloc((size_t)(nkv * c->H * W) * sizeof *kvb);
    float *kpe = malloc((size_t)(nkv * c->P) * sizeof *kpe);
    float *out = malloc((size_t)(nq * c->H * c->V) * sizeof *out);
    for (int64_t i = 0; i < nq * c->H * QK; i++)
        q[i] = rnd(&seed);
    for (int64_t i = 0; i < nkv * c->H * W; i++)
        kvb[i] = rnd(&seed);
    for (int64_t i = 0; i < nkv * c->P; i++)
        kpe[i] = rnd(&seed);
    dsa_mha_prefill_params p = {
        .out = out, .q = q, .k_nope = kvb, .k_pe = kpe, .v = kvb + c->N,
        .ld_q_token = c->H * QK, .ld_q_head = QK, .ld_k_token = c->H * W, .ld_k_head = W,
        .ld_kpe = c->P, .ld_v_token = c->H * W, .ld_v_head = W, .qo_indptr = c->qo,
        .kv_indptr = c->kv, .n_seqs = c->n_seqs, .n_heads = c->H, .nope_dim = c->N,
        .rope_dim = c->P, .v_dim = c->V, .n_q = nq, .n_kv = nkv, .scale = 0.3f};
    cr_assert_not_null(be->ops->mha_prefill, "the CPU backend has no mha_prefill");
    cr_assert_eq(be->ops->mha_prefill(be, &p), DSA_OK, "%s", dsa_errmsg());
    *q_out = q;
    *kvb_out = kvb;
    *kpe_out = kpe;
    return out;
}

static void check_against_reference(const op_case *c)
{
    dsa_backend *be;
    cr_assert_eq(dsa_backend_cpu_create(2, &be), DSA_OK);
    float *q, *kvb, *kpe;
    float *out = run_op(be, c, 7, &q, &kvb, &kpe);
    double *ref = malloc((size_t)c->V * sizeof *ref), worst = 0;
    for (int64_t r = 0; r < c->qo[c->n_seqs]; r++)
        for (int64_t h = 0; h < c->H; h++) {
            reference_row(c, q, kvb, kpe, r, h, ref);
            for (int64_t i = 0; i < c->V; i++) {
                double o = out[(r * c->H + h) * c->V + i];
                worst = fmax(worst, fabs(o - ref[i]) / fmax(1.0, fabs(ref[i])));
            }
        }
    cr_expect_lt(worst, 1e-5, "worst error %g", worst);
    free(ref);
    free(out);
    free(q);
    free(kvb);
    free(kpe);
    dsa_backend_destroy(be);
}

Test(mha_op, one_chunk_without_context)
{
    op_case c = {.n_seqs = 1, .H = 3, .N = 16, .P = 8, .V = 12, .qo = {0, 37}, .kv = {0, 37}};
    check_against_reference(&c);
}

Test(mha_op, ragged_chunks_with_context)
{
    /* chunks of 5 (no context), 3 after 7 cached keys, 1 after 3, 20 after 45 */
    op_case c = {.n_seqs = 4, .H = 2, .N = 16, .P = 8, .V = 16,
                 .qo = {0, 5, 8, 9, 29}, .kv = {0, 5, 15, 19, 84}};
    check_against_reference(&c);
}

Test(mha_op, chunk_result_does_not_depend_on_its_batch)
{
    dsa_backend *be;
    cr_assert_eq(dsa_backend_cpu_create(2, &be), DSA_OK);
    op_case all = {.n_seqs = 2, .H = 2, .N = 8, .P = 4, .V = 8, .qo = {0, 6, 10},
                   .kv = {0, 6, 19}};
    float *q, *kvb, *kpe;
    float *out = run_op(be, &all, 3, &q, &kvb, &kpe);
    /* chunk 1 alone, on the same inputs */
    int64_t QK = 12, W = 16;
    dsa_mha_prefill_params p = {
        .out = malloc(4 * 2 * 8 * sizeof(float)), .q = q + 6 * 2 * QK, .k_nope = kvb + 6 * 2 * W,
        .k_pe = kpe + 6 * 4, .v = kvb + 6 * 2 * W + 8, .ld_q_token = 2 * QK, .ld_q_head = QK,
        .ld_k_token = 2 * W, .ld_k_head = W, .ld_kpe = 4, .ld_v_token = 2 * W, .ld_v_head = W,
        .qo_indptr = (const int32_t[]){0, 4}, .kv_indptr = (const int32_t[]){0, 13},
        .n_seqs = 1, .n_heads = 2, .nope_dim = 8, .rope_dim = 4, .v_dim = 8, .n_q = 4,
        .n_kv = 13, .scale = 0.3f};
    cr_assert_eq(be->ops->mha_prefill(be, &p), DSA_OK);
    cr_expect_eq(memcmp(p.out, out + 6 * 2 * 8, 4 * 2 * 8 * sizeof(float)), 0);
    free(p.out);
    free(out);
    free(q);
    free(kvb);
    free(kpe);
    dsa_backend_destroy(be);
}

/* ---- The forward pass with the op ---- */

/* Counts the backend's mha_prefill calls (a copy of the CPU vtable whose
 * mha_prefill counts, then calls the CPU's). */
typedef struct counting {
    dsa_backend_ops ops;        /* first: be->ops points here */
    const dsa_backend_ops *cpu;
    int64_t n_calls;
    int refuse;                 /* answer DSA_UNSUPPORTED, as CUDA does for other head sizes */
} counting;

static dsa_err counting_mha(dsa_backend *be, const dsa_mha_prefill_params *p)
{
    counting *c = (counting *)be->ops; /* the fixture's, not const */
    c->n_calls++;
    if (c->refuse)
        return dsa_fail(DSA_UNSUPPORTED, "test: no kernel for these heads");
    return c->cpu->mha_prefill(be, p);
}

typedef struct fixture {
    dsa_backend *be;
    dsa_weights *w;
    dsa_model *m;
    int64_t V;
    counting cnt;
} fixture;

enum { BLOCK = 8, N_BLOCKS = 256, BPS = 96 };

static void fixture_open(fixture *f, const char *dtype, int mha)
{
    char *src = dsa_test_golden_dir(dtype);
    cr_assert_not_null(src, "no golden config of dtype %s", dtype);
    cr_assert_eq(dsa_backend_cpu_create(2, &f->be), DSA_OK);
    cr_assert_eq(f->be->mha_prefill_on, 0, "the CPU backend defaults to absorbed MLA");
    f->cnt.n_calls = 0;
    f->cnt.refuse = 0;
    f->cnt.cpu = f->be->ops;
    f->cnt.ops = *f->be->ops;
    f->cnt.ops.mha_prefill = counting_mha;
    f->be->ops = &f->cnt.ops;
    f->be->mha_prefill_on = mha;
    cr_assert_eq(dsa_weights_load(src, NULL, &f->w), DSA_OK, "%s", dsa_errmsg());
    free(src);
    dsa_model_params mp = {.n_blocks = N_BLOCKS, .block_size = BLOCK,
                           .max_blocks_per_seq = BPS};
    cr_assert_eq(dsa_model_create(f->be, f->w, &mp, &f->m), DSA_OK, "%s", dsa_errmsg());
    f->V = f->w->cfg.vocab_size;
}

static void fixture_close(fixture *f)
{
    dsa_model_destroy(f->m);
    dsa_weights_free(f->w);
    f->be->ops = f->cnt.cpu;
    dsa_backend_destroy(f->be);
}

static int32_t argmax(const float *x, int64_t n)
{
    int32_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best])
            best = (int32_t)i;
    return best;
}

#define MAX_SEQS 2
#define N_DECODE 6

/* A scenario: per sequence a prompt of n_prompt tokens prefilled in steps;
 * step k holds chunk[k][s] tokens of sequence s (0: none), all sequences
 * of a step in one batch; then N_DECODE greedy decode steps of every
 * sequence together.  logits: [steps + N_DECODE][MAX_SEQS][V] of each
 * chunk's last token and each decode token; tokens: the decoded ids. */
typedef struct scenario {
    int n_seqs, n_steps;
    int chunk[4][MAX_SEQS];
} scenario;

static int32_t prompt_token(int s, int i, int64_t V)
{
    return (int32_t)((i * 37 + 11 * s + 5) % V);
}

static void run_scenario(fixture *f, const scenario *sc, float *logits, int32_t *decoded)
{
    int64_t V = f->V;
    int32_t *bt = malloc((size_t)(MAX_SEQS * BPS) * sizeof *bt);
    for (int s = 0; s < MAX_SEQS; s++)
        for (int i = 0; i < BPS; i++)
            bt[s * BPS + i] = (int32_t)((s * BPS + (i * 7) % BPS) % N_BLOCKS); /* scattered blocks */
    int32_t *tok = malloc(1024 * sizeof *tok), *pos = malloc(1024 * sizeof *pos);
    int32_t *seq = malloc(1024 * sizeof *seq), rows[MAX_SEQS], done[MAX_SEQS] = {0};
    float *out = malloc((size_t)(MAX_SEQS * V) * sizeof *out);
    int out_i = 0;
    for (int k = 0; k < sc->n_steps; k++) {
        int n = 0, nl = 0;
        for (int s = 0; s < sc->n_seqs; s++) {
            for (int i = 0; i < sc->chunk[k][s]; i++, n++) {
                tok[n] = prompt_token(s, done[s] + i, V);
                pos[n] = done[s] + i;
                seq[n] = s;
            }
            done[s] += sc->chunk[k][s];
            if (sc->chunk[k][s] > 0)
                rows[nl++] = n - 1;
        }
        dsa_batch b = {.n_tokens = n, .tokens = tok, .pos = pos, .seq = seq,
                       .n_seqs = sc->n_seqs, .block_tables = bt, .n_logits = nl,
                       .logit_rows = rows};
        cr_assert_eq(dsa_model_forward(f->m, &b, out), DSA_OK, "%s", dsa_errmsg());
        memcpy(logits + (size_t)out_i * MAX_SEQS * V, out, (size_t)(nl * V) * sizeof *out);
        out_i++;
    }
    int32_t next[MAX_SEQS];
    for (int s = 0; s < sc->n_seqs; s++)
        next[s] = argmax(logits + (size_t)(out_i - 1) * MAX_SEQS * V + s * V, V);
    for (int d = 0; d < N_DECODE; d++) {
        for (int s = 0; s < sc->n_seqs; s++) {
            tok[s] = next[s];
            pos[s] = done[s]++;
            seq[s] = s;
            rows[s] = s;
            decoded[d * MAX_SEQS + s] = next[s];
        }
        dsa_batch b = {.n_tokens = sc->n_seqs, .tokens = tok, .pos = pos, .seq = seq,
                       .n_seqs = sc->n_seqs, .block_tables = bt, .n_logits = sc->n_seqs,
                       .logit_rows = rows};
        cr_assert_eq(dsa_model_forward(f->m, &b, out), DSA_OK, "%s", dsa_errmsg());
        memcpy(logits + (size_t)out_i * MAX_SEQS * V, out, (size_t)(sc->n_seqs * V) * sizeof *out);
        for (int s = 0; s < sc->n_seqs; s++)
            next[s] = argmax(out + s * V, V);
        out_i++;
    }
    free(out);
    free(tok);
    free(pos);
    free(seq);
    free(bt);
}

/* Runs sc on absorbed MLA and with the op on; expects the logits within
 * 1e-4 relative, the same greedy continuation, and n_mha steps of
 * non-absorbed attention (one call per layer each). */
static void compare(const char *dtype, const scenario *sc, int n_mha)
{
    int n_out = sc->n_steps + N_DECODE;
    fixture a, b;
    fixture_open(&a, dtype, 0);
    int64_t V = a.V;
    float *la = calloc((size_t)(n_out * MAX_SEQS * V), sizeof *la);
    float *lb = calloc((size_t)(n_out * MAX_SEQS * V), sizeof *lb);
    int32_t da[N_DECODE * MAX_SEQS] = {0}, db[N_DECODE * MAX_SEQS] = {0};
    run_scenario(&a, sc, la, da);
    cr_expect_eq(a.cnt.n_calls, 0, "the op ran on the absorbed backend");
    int n_layers = a.w->cfg.n_layers;
    fixture_close(&a);

    fixture_open(&b, dtype, 1);
    run_scenario(&b, sc, lb, db);
    cr_expect_eq(b.cnt.n_calls, (int64_t)n_mha * n_layers, "%lld calls, want %d steps x %d layers",
                 (long long)b.cnt.n_calls, n_mha, n_layers);
    fixture_close(&b);

    for (int o = 0; o < n_out; o++)
        for (int s = 0; s < sc->n_seqs; s++) {
            const float *x = lb + ((size_t)o * MAX_SEQS + s) * V;
            const float *y = la + ((size_t)o * MAX_SEQS + s) * V;
            cr_expect_lt(dsa_test_max_rel(x, y, V), 1e-4, "%s: output %d seq %d: %g", dtype, o, s,
                         dsa_test_max_rel(x, y, V));
        }
    cr_expect_eq(memcmp(da, db, sizeof da), 0,
                 "greedy continuations differ");
    free(la);
    free(lb);
}

Test(mha_model, long_chunk_after_short_context_f32)
{
    /* 40 tokens (absorbed: shorter than the threshold), then 290 after them */
    scenario sc = {.n_seqs = 1, .n_steps = 2, .chunk = {{40}, {290}}};
    compare("f32", &sc, 1);
}

Test(mha_model, two_long_chunks_fp8)
{
    /* 260 tokens without context, then 270 after them */
    scenario sc = {.n_seqs = 1, .n_steps = 2, .chunk = {{260}, {270}}};
    compare("fp8", &sc, 2);
}

Test(mha_model, ragged_batch_of_chunks)
{
    /* sequence 1 caches 30 tokens first; then one step holds 260 tokens of
     * sequence 0 (no context) and 280 of sequence 1 (after its 30) */
    scenario sc = {.n_seqs = 2, .n_steps = 2, .chunk = {{0, 30}, {260, 280}}};
    compare("f32", &sc, 1);
}

Test(mha_model, short_chunk_keeps_the_step_absorbed)
{
    /* 255 tokens: one under the threshold; then 256 next to a 20-token
     * chunk of another sequence (the step has a short chunk) */
    scenario sc = {.n_seqs = 2, .n_steps = 2, .chunk = {{255, 0}, {20, 256}}};
    compare("f32", &sc, 0);
}

Test(mha_model, refused_shapes_fall_back_to_absorbed)
{
    /* the backend refuses the first call: that layer and every later step
     * run absorbed MLA, bit for bit as a backend without the op */
    scenario sc = {.n_seqs = 1, .n_steps = 2, .chunk = {{260}, {270}}};
    int n_out = sc.n_steps + N_DECODE;
    fixture a, b;
    fixture_open(&a, "f32", 0);
    int64_t V = a.V;
    float *la = calloc((size_t)(n_out * MAX_SEQS * V), sizeof *la);
    float *lb = calloc((size_t)(n_out * MAX_SEQS * V), sizeof *lb);
    int32_t da[N_DECODE * MAX_SEQS] = {0}, db[N_DECODE * MAX_SEQS] = {0};
    run_scenario(&a, &sc, la, da);
    fixture_close(&a);
    fixture_open(&b, "f32", 1);
    b.cnt.refuse = 1;
    run_scenario(&b, &sc, lb, db);
    cr_expect_eq(b.cnt.n_calls, 1, "%lld calls after a refusal", (long long)b.cnt.n_calls);
    fixture_close(&b);
    cr_expect_eq(memcmp(la, lb, (size_t)(n_out * MAX_SEQS * V) * sizeof *la), 0);
    cr_expect_eq(memcmp(da, db, sizeof da), 0);
    free(la);
    free(lb);
}
