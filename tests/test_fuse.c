/* test_fuse.c - fewer launches, same results: weights fused at load
 * (worker/loader_fuse.c: q_a | kv_a and gate | up as one weight give every
 * output value bit for bit as the two parts apart, for each stored dtype,
 * for TP slices whose FP8 blocks start mid-block, and through the whole
 * forward pass), and the fused ops' CPU references (vocab_gather). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/rec_backend.h"
#include "tests/support.h"
#include "tests/test_weights.h"
#include "worker/loader_internal.h"
#include "worker/model.h"

/* x W^T of m rows on the CPU backend into out (row stride ld_out). */
static void cpu_linear(dsa_backend *be, float *out, int64_t ld_out, const float *x, int64_t m,
                       const dsa_weight *w)
{
    dsa_linear_params p = {.out = out, .x = x, .w = w, .m = m, .ld_x = w->cols,
                           .ld_out = ld_out};
    cr_assert_eq(be->ops->linear(be, &p), DSA_OK, "%s", dsa_errmsg());
}

/* Rows [ra, ra+na) of a stored [R, C] tensor and rows [rb, rb+nb) of another,
 * fused and apart. */
static void check_pair(dsa_dtype dt, int64_t R, int64_t C, int64_t ra, int64_t na, int64_t rb,
                       int64_t nb)
{
    uint64_t seed = 0x5eed + (uint64_t)(dt * 131 + ra * 7 + nb);
    dsa_test_tw ta, tb;
    dsa_test_tw_make(&ta, dt, R, C, &seed);
    dsa_test_tw_make(&tb, dt, R, C, &seed);
    dsa_weight a = dsa_test_tw_slice(&ta, ra, 0, na, C);
    dsa_weight b = dsa_test_tw_slice(&tb, rb, 0, nb, C);
    dsa_weights_pair p;
    cr_assert_eq(dsa_loader_pair_make(&a, &b, &p), DSA_OK, "%s", dsa_errmsg());
    cr_assert_not_null(p.w.data, "%s pair not fused", dsa_dtype_name(dt));
    cr_assert_geq(p.off_b, na);
    cr_assert_eq(p.w.rows, p.width);
    cr_assert_geq(p.width, p.off_b + nb);
    if (dt == DSA_DTYPE_F8_E4M3)
        cr_expect_eq((p.w.row0 + p.off_b) % 128, rb % 128, "b keeps its place in its block");
    else
        cr_expect_eq(p.off_b, na, "packed back to back");

    dsa_backend *be;
    cr_assert_eq(dsa_backend_cpu_create(2, &be), DSA_OK);
    int64_t M = 5, W = p.width;
    float *x = malloc((size_t)(M * C) * sizeof *x);
    float *fused = calloc((size_t)(M * W), sizeof *fused);
    float *apart = calloc((size_t)(M * W), sizeof *apart);
    cr_assert(x && fused && apart);
    for (int64_t i = 0; i < M * C; i++)
        x[i] = dsa_test_rng_f(&seed);
    cpu_linear(be, fused, W, x, M, &p.w);
    cpu_linear(be, apart, W, x, M, &a);
    cpu_linear(be, apart + p.off_b, W, x, M, &b);
    for (int64_t t = 0; t < M; t++) {
        cr_expect_eq(memcmp(fused + t * W, apart + t * W, (size_t)na * sizeof(float)), 0,
                     "%s: row %lld of a differs", dsa_dtype_name(dt), (long long)t);
        cr_expect_eq(memcmp(fused + t * W + p.off_b, apart + t * W + p.off_b,
                            (size_t)nb * sizeof(float)), 0,
                     "%s: row %lld of b differs", dsa_dtype_name(dt), (long long)t);
        for (int64_t j = na; j < p.off_b; j++)
            cr_expect_eq(fused[t * W + j], 0.0f, "padding column %lld", (long long)j);
    }
    free(x);
    free(fused);
    free(apart);
    dsa_backend_destroy(be);
    free(p.owned);
    free(p.scale_owned);
    dsa_test_tw_free(&ta);
    dsa_test_tw_free(&tb);
}

/* q_a (1536 rows: whole blocks) | kv_a (576), scaled down: 256 | 72 */
Test(fuse, whole_tensors_every_dtype)
{
    dsa_dtype dts[] = {DSA_DTYPE_F32, DSA_DTYPE_F16, DSA_DTYPE_BF16, DSA_DTYPE_F8_E4M3};
    for (size_t i = 0; i < sizeof dts / sizeof dts[0]; i++) {
        check_pair(dts[i], 256, 200, 0, 256, 0, 72);
        check_pair(dts[i], 256, 200, 0, 160, 0, 112); /* a ends mid-block */
    }
}

/* TP slices of gate and up: rank 1 of 2 over 300 rows starts at row 150,
 * 22 rows into its second block; rank 2 of 3 over 390 at 260. */
Test(fuse, tp_slices_mid_block)
{
    check_pair(DSA_DTYPE_F8_E4M3, 300, 200, 150, 150, 150, 150);
    check_pair(DSA_DTYPE_F8_E4M3, 390, 130, 260, 130, 260, 130);
    check_pair(DSA_DTYPE_BF16, 300, 200, 150, 150, 150, 150);
}

Test(fuse, refuses_what_it_cannot_fuse)
{
    uint64_t seed = 7;
    dsa_test_tw ta, tb;
    dsa_test_tw_make(&ta, DSA_DTYPE_F32, 8, 16, &seed);
    dsa_test_tw_make(&tb, DSA_DTYPE_BF16, 8, 16, &seed);
    dsa_weight a = dsa_test_tw_full(&ta), b = dsa_test_tw_full(&tb);
    dsa_weights_pair p;
    cr_assert_eq(dsa_loader_pair_make(&a, &b, &p), DSA_OK);
    cr_expect_null(p.w.data, "mixed dtypes are run apart");
    cr_expect_eq(p.off_b, 8);
    cr_expect_eq(p.width, 16);
    dsa_weight c = dsa_test_tw_slice(&ta, 0, 4, 8, 12); /* a column slice */
    cr_assert_eq(dsa_loader_pair_make(&c, &c, &p), DSA_OK);
    cr_expect_null(p.w.data, "column slices are run apart");
    dsa_test_tw_free(&ta);
    dsa_test_tw_free(&tb);
}

/* The loaded pair holds, value for value, the parts' dequantised weights:
 * each TP rank fuses its own slices. */
static void expect_pair_holds(const dsa_weights_pair *p, const dsa_weight *a, const dsa_weight *b,
                              const char *what, int rank)
{
    cr_assert_not_null(p->w.data, "%s not fused on rank %d", what, rank);
    for (int64_t i = 0; i < a->rows; i++)
        for (int64_t j = 0; j < a->cols; j += 7)
            cr_assert_eq(dsa_weight_get(&p->w, i, j), dsa_weight_get(a, i, j),
                         "%s rank %d a(%lld, %lld)", what, rank, (long long)i, (long long)j);
    for (int64_t i = 0; i < b->rows; i++)
        for (int64_t j = 0; j < b->cols; j += 7)
            cr_assert_eq(dsa_weight_get(&p->w, p->off_b + i, j), dsa_weight_get(b, i, j),
                         "%s rank %d b(%lld, %lld)", what, rank, (long long)i, (long long)j);
}

Test(fuse, loader_fuses_each_rank_slices)
{
    char *src = dsa_test_golden_dir("fp8");
    cr_assert_not_null(src);
    for (int r = 0; r < 2; r++) {
        dsa_shard s = {.tp_rank = r, .tp_size = 2, .layer_begin = 0, .layer_end = 2};
        dsa_weights *w;
        cr_assert_eq(dsa_weights_load(src, &s, &w), DSA_OK, "%s", dsa_errmsg());
        const dsa_layer_weights *d = &w->layers[0], *e = &w->layers[1];
        cr_assert_eq(d->is_moe, 0);
        cr_assert_eq(e->is_moe, 1);
        expect_pair_holds(&d->qkv_a, &d->q_a, &d->kv_a, "q_a | kv_a", r);
        expect_pair_holds(&d->gate_up, &d->gate, &d->up, "gate | up", r);
        expect_pair_holds(&e->shared_gate_up, &e->shared.gate, &e->shared.up,
                          "shared gate | up", r);
        dsa_weights_free(w);
    }
    free(src);
}

/* Logits of a prefill and a decode step with the pairs fused and with them
 * run apart (the fallback), compared bit for bit. */
static void forward_logits(dsa_weights *w, float *out)
{
    dsa_backend *be;
    dsa_model *m;
    cr_assert_eq(dsa_backend_cpu_create(2, &be), DSA_OK);
    dsa_model_params mp = {.n_blocks = 8, .block_size = 16, .max_blocks_per_seq = 4};
    cr_assert_eq(dsa_model_create(be, w, &mp, &m), DSA_OK, "%s", dsa_errmsg());
    int64_t V = w->cfg.vocab_size;
    int32_t tokens[6] = {3, 17, 5, 42, 9, 11}, pos[6] = {0, 1, 2, 3, 4, 5}, seq[6] = {0};
    int32_t bt[4] = {0, 1, 2, 3}, rows[2] = {3, 4};
    dsa_batch b = {.n_tokens = 5, .tokens = tokens, .pos = pos, .seq = seq, .n_seqs = 1,
                   .block_tables = bt, .n_logits = 2, .logit_rows = rows};
    cr_assert_eq(dsa_model_forward(m, &b, out), DSA_OK, "%s", dsa_errmsg());
    dsa_batch d = {.n_tokens = 1, .tokens = tokens + 5, .pos = pos + 5, .seq = seq,
                   .n_seqs = 1, .block_tables = bt, .n_logits = 1, .logit_rows = seq};
    cr_assert_eq(dsa_model_forward(m, &d, out + 2 * V), DSA_OK, "%s", dsa_errmsg());
    dsa_model_destroy(m);
    dsa_backend_destroy(be);
}

static void check_forward(const char *dtype)
{
    char *src = dsa_test_golden_dir(dtype);
    cr_assert_not_null(src);
    dsa_weights *w;
    cr_assert_eq(dsa_weights_load(src, NULL, &w), DSA_OK, "%s", dsa_errmsg());
    int64_t V = w->cfg.vocab_size;
    float *fused = malloc((size_t)(3 * V) * sizeof(float));
    float *apart = malloc((size_t)(3 * V) * sizeof(float));
    cr_assert(fused && apart);
    forward_logits(w, fused);
    int n_fused = 0;
    const void **saved = calloc((size_t)(3 * w->cfg.n_layers), sizeof *saved);
    cr_assert_not_null(saved);
    for (int l = 0; l < w->cfg.n_layers; l++) {
        dsa_weights_pair *ps[3] = {&w->layers[l].qkv_a, &w->layers[l].gate_up,
                                  &w->layers[l].shared_gate_up};
        for (int k = 0; k < 3; k++) {
            saved[3 * l + k] = ps[k]->w.data;
            n_fused += ps[k]->w.data != NULL;
            ps[k]->w.data = NULL;
        }
    }
    cr_expect_eq(n_fused, 4, "%s: q_a|kv_a on both layers, dense and shared gate|up", dtype);
    forward_logits(w, apart);
    cr_expect_eq(memcmp(fused, apart, (size_t)(3 * V) * sizeof(float)), 0,
                 "%s: fused and apart logits differ", dtype);
    for (int l = 0; l < w->cfg.n_layers; l++) {
        w->layers[l].qkv_a.w.data = saved[3 * l];
        w->layers[l].gate_up.w.data = saved[3 * l + 1];
        w->layers[l].shared_gate_up.w.data = saved[3 * l + 2];
    }
    free(saved);
    free(fused);
    free(apart);
    dsa_weights_free(w);
    free(src);
}

Test(fuse, forward_bit_identical_f32) { check_forward("f32"); }
Test(fuse, forward_bit_identical_fp8) { check_forward("fp8"); }

/* The gathered slices of 3 ranks, ld 7, vocabularies that end inside the
 * last slice, on its edge, and before it (an empty last rank). */
Test(fuse, vocab_gather_orders_the_slices)
{
    dsa_backend *be;
    cr_assert_eq(dsa_backend_cpu_create(1, &be), DSA_OK);
    cr_assert_not_null(be->ops->vocab_gather);
    enum { P = 3, LD = 7, N = 4 };
    float in[P * N * LD];
    for (int i = 0; i < P * N * LD; i++)
        in[i] = (float)i;
    int64_t vocabs[] = {19, 21, 14, 13};
    for (size_t k = 0; k < sizeof vocabs / sizeof vocabs[0]; k++) {
        int64_t V = vocabs[k];
        float out[N * P * LD + 1];
        for (int i = 0; i < N * P * LD + 1; i++)
            out[i] = -1.0f;
        dsa_vocab_gather_params p = {.out = out, .in = in, .n_rows = N, .ld = LD, .n_parts = P,
                                     .vocab = V};
        cr_assert_eq(be->ops->vocab_gather(be, &p), DSA_OK);
        for (int64_t i = 0; i < N; i++)
            for (int64_t v = 0; v < V; v++)
                cr_assert_eq(out[i * V + v], (float)((v / LD) * N * LD + i * LD + v % LD),
                             "vocab %lld: out[%lld, %lld]", (long long)V, (long long)i,
                             (long long)v);
        cr_expect_eq(out[N * V], -1.0f, "vocab %lld: wrote past the rows", (long long)V);
    }
    dsa_backend_destroy(be);
}

/* The last sub-block's residual add fused into the final norm (a decode
 * step on a backend with graphs asks for every row's logits) against the
 * add and the norm apart (the CPU backend, rows named): the same bits. */
Test(fuse, final_add_norm_bit_identical)
{
    char *src = dsa_test_golden_dir("fp8");
    cr_assert_not_null(src);
    dsa_weights *w;
    cr_assert_eq(dsa_weights_load(src, NULL, &w), DSA_OK, "%s", dsa_errmsg());
    int64_t V = w->cfg.vocab_size;
    enum { S = 3 };
    float *out[2];
    for (int k = 0; k < 2; k++) {
        rec_backend *rb = k ? rec_create() : NULL;
        dsa_backend *be = NULL;
        if (!rb)
            cr_assert_eq(dsa_backend_cpu_create(2, &be), DSA_OK);
        dsa_model *m;
        dsa_model_params mp = {.n_blocks = 4, .block_size = 16, .max_blocks_per_seq = 1};
        cr_assert_eq(dsa_model_create(rb ? &rb->base : be, w, &mp, &m), DSA_OK, "%s",
                     dsa_errmsg());
        /* three sequences, one token each: a pure decode batch */
        int32_t tokens[S] = {7, 1, 30}, pos[S] = {0, 0, 0}, seq[S] = {0, 1, 2};
        int32_t bt[S] = {0, 1, 2}, rows[S] = {0, 1, 2};
        out[k] = malloc((size_t)(S * V) * sizeof(float));
        cr_assert_not_null(out[k]);
        dsa_batch b = {.n_tokens = S, .tokens = tokens, .pos = pos, .seq = seq, .n_seqs = S,
                       .block_tables = bt, .n_logits = S, .logit_rows = rows};
        cr_assert_eq(dsa_model_forward(m, &b, out[k]), DSA_OK, "%s", dsa_errmsg());
        dsa_model_graph_stats st;
        dsa_model_graph_stats_get(m, &st);
        cr_expect_eq(st.n_eager, k, "the graph backend ran the decode path");
        dsa_model_destroy(m);
        if (rb)
            dsa_backend_destroy(&rb->base);
        else
            dsa_backend_destroy(be);
    }
    cr_expect_eq(memcmp(out[0], out[1], (size_t)(S * V) * sizeof(float)), 0);
    free(out[0]);
    free(out[1]);
    dsa_weights_free(w);
    free(src);
}

/* ---- Activation quantisation inside the norm ---------------------------- */

/* The 1x128 quantisation of one F32 row, written out from MODEL_SPEC.md §8
 * (act_quant) for the comparison: q and scale of n values. */
static void quant_ref(const float *x, int64_t n, uint8_t *q, float *scale)
{
    for (int64_t b = 0; b * 128 < n; b++) {
        float amax = 0.0f;
        for (int64_t j = b * 128; j < n && j < b * 128 + 128; j++)
            amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
        scale[b] = (amax > 1e-4f ? amax : 1e-4f) / 448.0f;
        for (int64_t j = b * 128; j < n && j < b * 128 + 128; j++)
            q[j] = dsa_f32_to_e4m3(x[j] / scale[b]);
    }
}

Test(fuse, rmsnorm_quantises_its_output)
{
    dsa_backend *be;
    cr_assert_eq(dsa_backend_cpu_create(2, &be), DSA_OK);
    uint64_t seed = 11;
    int64_t dims[] = {300, 128, 7};
    for (size_t k = 0; k < sizeof dims / sizeof dims[0]; k++) {
        int64_t R = 3, d = dims[k], nkb = (d + 127) / 128;
        float *x = malloc((size_t)(R * d) * sizeof *x), *res = malloc((size_t)(R * d) * sizeof *res);
        float *out = malloc((size_t)(R * d) * sizeof *out), *w = malloc((size_t)d * sizeof *w);
        uint8_t *q = malloc((size_t)(R * d)), *qr = malloc((size_t)d);
        float *sc = malloc((size_t)(R * nkb) * sizeof *sc), *scr = malloc((size_t)nkb * sizeof *scr);
        cr_assert(x && res && out && w && q && qr && sc && scr);
        for (int64_t i = 0; i < R * d; i++) {
            x[i] = 3.0f * dsa_test_rng_f(&seed);
            res[i] = dsa_test_rng_f(&seed);
        }
        for (int64_t i = 0; i < d; i++)
            w[i] = 0.5f + dsa_test_rng_f(&seed);
        dsa_weight wt = {.dtype = DSA_DTYPE_F32, .rows = 1, .cols = d, .ld = d, .data = w};
        dsa_rmsnorm_params p = {.out = out, .x = x, .residual = res, .weight = &wt, .n_rows = R,
                                .dim = d, .ld_x = d, .ld_out = d, .eps = 1e-6f, .out_q = q,
                                .out_scale = sc};
        cr_assert_eq(be->ops->rmsnorm(be, &p), DSA_OK);
        for (int64_t r = 0; r < R; r++) {
            quant_ref(out + r * d, d, qr, scr);
            cr_expect_eq(memcmp(q + r * d, qr, (size_t)d), 0, "dim %lld row %lld: codes",
                         (long long)d, (long long)r);
            cr_expect_eq(memcmp(sc + r * nkb, scr, (size_t)nkb * sizeof(float)), 0,
                         "dim %lld row %lld: scales", (long long)d, (long long)r);
            for (int64_t j = 0; j < d; j++) {
                float back = dsa_e4m3_to_f32(q[r * d + j]) * sc[r * nkb + j / 128];
                cr_assert_leq(fabsf(back - out[r * d + j]),
                              fabsf(out[r * d + j]) / 16.0f + sc[r * nkb + j / 128],
                              "dim %lld (%lld, %lld): %g for %g", (long long)d, (long long)r,
                              (long long)j, back, out[r * d + j]);
            }
        }
        free(x), free(res), free(out), free(w), free(q), free(qr), free(sc), free(scr);
    }
    dsa_backend_destroy(be);
}

/* A backend that takes quantised activations from the norms: every linear
 * handed x_q must get exactly its x quantised. */
static int g_quant_checked;

static dsa_err checking_linear(dsa_backend *be, const dsa_linear_params *p)
{
    if (p->x_q) {
        int64_t K = p->w->cols, nkb = (K + 127) / 128;
        uint8_t *qr = malloc((size_t)K);
        float *scr = malloc((size_t)nkb * sizeof *scr);
        cr_assert(qr && scr);
        for (int64_t t = 0; t < p->m; t++) {
            quant_ref((const float *)p->x + t * p->ld_x, K, qr, scr);
            cr_assert_eq(memcmp(p->x_q + t * K, qr, (size_t)K), 0, "row %lld codes",
                         (long long)t);
            cr_assert_eq(memcmp(p->x_scale + t * nkb, scr, (size_t)nkb * sizeof(float)), 0,
                         "row %lld scales", (long long)t);
        }
        free(qr);
        free(scr);
        g_quant_checked++;
    }
    return rec_linear(be, p);
}

Test(fuse, norms_hand_the_linears_their_quantised_input)
{
    char *src = dsa_test_golden_dir("fp8");
    cr_assert_not_null(src);
    dsa_weights *w;
    cr_assert_eq(dsa_weights_load(src, NULL, &w), DSA_OK, "%s", dsa_errmsg());
    int64_t V = w->cfg.vocab_size;
    float *out[2];
    int n_checked = 0;
    for (int k = 0; k < 2; k++) {
        rec_backend *rb = rec_create();
        if (k) {
            rb->ops.linear = checking_linear;
            rb->base.norm_quant = 1;
        }
        dsa_model *m;
        dsa_model_params mp = {.n_blocks = 4, .block_size = 16, .max_blocks_per_seq = 2};
        cr_assert_eq(dsa_model_create(&rb->base, w, &mp, &m), DSA_OK, "%s", dsa_errmsg());
        int32_t tokens[4] = {7, 1, 30, 2}, pos[4] = {0, 1, 2, 3}, seq[4] = {0}, bt[2] = {0, 1};
        int32_t rows[2] = {2, 3};
        out[k] = malloc((size_t)(2 * V) * sizeof(float));
        cr_assert_not_null(out[k]);
        dsa_batch b = {.n_tokens = 4, .tokens = tokens, .pos = pos, .seq = seq, .n_seqs = 1,
                       .block_tables = bt, .n_logits = 2, .logit_rows = rows};
        g_quant_checked = 0;
        cr_assert_eq(dsa_model_forward(m, &b, out[k]), DSA_OK, "%s", dsa_errmsg());
        n_checked += g_quant_checked;
        dsa_model_destroy(m);
        dsa_backend_destroy(&rb->base);
    }
    /* per layer: q_a | kv_a after attn_norm, q_b after q_a_norm, gate | up
     * (dense, or the shared expert's) after ffn_norm */
    cr_expect_eq(n_checked, 3 * w->cfg.n_layers);
    cr_expect_eq(memcmp(out[0], out[1], (size_t)(2 * V) * sizeof(float)), 0,
                 "the CPU linear computes from x either way");
    free(out[0]);
    free(out[1]);
    dsa_weights_free(w);
    free(src);
}
