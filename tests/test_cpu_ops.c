/* test_cpu_ops.c - the CPU backend's ops against plain scalar references
 * written here (double accumulation through dsa_weight_get), on random
 * inputs of several shapes, odd sizes, every weight dtype, FP8 slices with
 * ragged blocks, and 1 or 3 threads.
 *
 * Errors are measured against the size of the terms that were summed:
 * |got - ref| <= tol * sum |terms| (a dot product's natural error scale),
 * with one tolerance per weight dtype. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "tests/test_weights.h"

/* Weights are dequantised exactly (F16/BF16/e4m3 fit in F32), so every
 * dtype is held to F32 accumulation error. */
#define TOL_F32 1e-5
#define TOL_F16 1e-5
#define TOL_BF16 1e-5
#define TOL_F8 1e-5
#define TOL_ATTN 1e-5

/* ---- helpers ------------------------------------------------------------ */

static void fill(float *x, int64_t n, uint64_t *s)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = dsa_test_rng_f(s);
}

static double tol_of(dsa_dtype dt)
{
    switch (dt) {
    case DSA_DTYPE_F16: return TOL_F16;
    case DSA_DTYPE_BF16: return TOL_BF16;
    case DSA_DTYPE_F8_E4M3: return TOL_F8;
    default: return TOL_F32;
    }
}

static dsa_backend *be_new(int n_threads)
{
    dsa_backend *be = NULL;
    cr_assert_eq(dsa_backend_cpu_create(n_threads, &be), DSA_OK);
    cr_assert_not_null(be);
    cr_assert_eq(be->act_dtype, DSA_DTYPE_F32);
    return be;
}

/* |got - ref| <= tol * mag (+ a tiny absolute floor) for all n elements. */
static void check_close(const float *got, const double *ref, const double *mag, int64_t n,
                        double tol, const char *what)
{
    for (int64_t i = 0; i < n; i++) {
        double lim = tol * (mag ? mag[i] : 1.0) + 1e-30;
        double err = fabs((double)got[i] - ref[i]);
        if (!(err <= lim))
            cr_assert_fail("%s: element %lld got %.9g want %.9g (err %.3g > %.3g)", what,
                           (long long)i, got[i], ref[i], err, lim);
    }
}

/* ---- dsa_weight_get ------------------------------------------------------ */

Test(cpu_ops, weight_get_fp8_slice)
{
    uint64_t s = 1;
    dsa_test_tw t;
    dsa_test_tw_make(&t, DSA_DTYPE_F8_E4M3, 300, 270, &s);
    dsa_weight w = dsa_test_tw_slice(&t, 100, 120, 150, 140);
    for (int64_t i = 0; i < w.rows; i += 7)
        for (int64_t j = 0; j < w.cols; j += 3) {
            uint8_t q = ((const uint8_t *)t.data)[(100 + i) * 270 + 120 + j];
            float want = dsa_e4m3_to_f32(q) * t.scale[((100 + i) / 128) * 3 + (120 + j) / 128];
            cr_assert_eq(dsa_weight_get(&w, i, j), want);
        }
    dsa_test_tw_free(&t);
}

/* ---- linear --------------------------------------------------------------- */

static void check_linear(dsa_backend *be, const dsa_weight *w, int64_t m, int accumulate,
                         uint64_t *s, const char *what)
{
    int64_t ld_x = w->cols + 3, ld_out = w->rows + 5;
    float *x = malloc((size_t)(m * ld_x) * sizeof(float));
    float *out = malloc((size_t)(m * ld_out) * sizeof(float));
    double *ref = malloc((size_t)(m * w->rows) * sizeof(double));
    double *mag = malloc((size_t)(m * w->rows) * sizeof(double));
    float *got = malloc((size_t)(m * w->rows) * sizeof(float));
    fill(x, m * ld_x, s);
    fill(out, m * ld_out, s);
    for (int64_t t = 0; t < m; t++)
        for (int64_t n = 0; n < w->rows; n++) {
            double acc = accumulate ? out[t * ld_out + n] : 0.0, a = fabs(acc);
            for (int64_t k = 0; k < w->cols; k++) {
                double v = (double)x[t * ld_x + k] * dsa_weight_get(w, n, k);
                acc += v;
                a += fabs(v);
            }
            ref[t * w->rows + n] = acc;
            mag[t * w->rows + n] = a;
        }
    dsa_linear_params p = {.out = out, .x = x, .w = w, .m = m, .ld_x = ld_x, .ld_out = ld_out,
                           .accumulate = accumulate};
    cr_assert_eq(be->ops->linear(be, &p), DSA_OK);
    for (int64_t t = 0; t < m; t++)
        memcpy(got + t * w->rows, out + t * ld_out, (size_t)w->rows * sizeof(float));
    check_close(got, ref, mag, m * w->rows, tol_of(w->dtype), what);
    free(x);
    free(out);
    free(ref);
    free(mag);
    free(got);
}

Test(cpu_ops, linear_all_dtypes_shapes)
{
    static const int64_t shapes[][2] = {{1, 1}, {7, 7}, {129, 200}, {300, 129}, {200, 300}, {33, 256}};
    static const int64_t ms[] = {1, 2, 3, 4, 5, 8, 17, 33};
    static const dsa_dtype dts[] = {DSA_DTYPE_F32, DSA_DTYPE_F16, DSA_DTYPE_BF16, DSA_DTYPE_F8_E4M3};
    static const int threads[] = {1, 3};
    uint64_t s = 42;
    char what[128];
    for (size_t ti = 0; ti < 2; ti++) {
        dsa_backend *be = be_new(threads[ti]);
        for (size_t d = 0; d < 4; d++)
            for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
                dsa_test_tw t;
                dsa_test_tw_make(&t, dts[d], shapes[si][0], shapes[si][1], &s);
                dsa_weight w = dsa_test_tw_full(&t);
                for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++) {
                    snprintf(what, sizeof what, "linear %s %lldx%lld m=%lld thr=%d",
                             dsa_dtype_name(dts[d]), (long long)w.rows, (long long)w.cols,
                             (long long)ms[mi], threads[ti]);
                    check_linear(be, &w, ms[mi], (int)(mi & 1), &s, what);
                }
                dsa_test_tw_free(&t);
            }
        dsa_backend_destroy(be);
    }
}

/* Row and column slices of a stored FP8 tensor: origins off the 128 grid,
 * ld > cols, ragged last blocks (as TP slicing produces). */
Test(cpu_ops, linear_fp8_slices)
{
    static const int64_t sl[][4] = {/* row0, col0, rows, cols */
                                    {0, 0, 300, 520}, {37, 70, 200, 300}, {128, 256, 172, 264},
                                    {299, 519, 1, 1}, {5, 130, 129, 7}, {250, 3, 50, 517}};
    static const int64_t ms[] = {1, 3, 4, 9, 20};
    uint64_t s = 7;
    dsa_test_tw t;
    dsa_test_tw_make(&t, DSA_DTYPE_F8_E4M3, 300, 520, &s);
    dsa_backend *be = be_new(2);
    char what[128];
    for (size_t i = 0; i < sizeof sl / sizeof sl[0]; i++) {
        dsa_weight w = dsa_test_tw_slice(&t, sl[i][0], sl[i][1], sl[i][2], sl[i][3]);
        for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++) {
            snprintf(what, sizeof what, "fp8 slice %zu m=%lld", i, (long long)ms[mi]);
            check_linear(be, &w, ms[mi], 0, &s, what);
        }
    }
    /* Same for BF16: slices just move the pointer. */
    dsa_test_tw b;
    dsa_test_tw_make(&b, DSA_DTYPE_BF16, 300, 520, &s);
    dsa_weight w = dsa_test_tw_slice(&b, 37, 70, 200, 300);
    check_linear(be, &w, 5, 1, &s, "bf16 slice");
    dsa_test_tw_free(&b);
    dsa_backend_destroy(be);
    dsa_test_tw_free(&t);
}

/* ---- embed, rmsnorm, rope, silu_mul, add, kv_store ------------------------- */

Test(cpu_ops, embed)
{
    uint64_t s = 3;
    dsa_backend *be = be_new(2);
    static const dsa_dtype dts[] = {DSA_DTYPE_F32, DSA_DTYPE_BF16, DSA_DTYPE_F8_E4M3};
    for (size_t d = 0; d < 3; d++) {
        dsa_test_tw t;
        dsa_test_tw_make(&t, dts[d], 50, 130, &s);
        dsa_weight w = dsa_test_tw_full(&t);
        int32_t ids[5] = {100, 149, 99, 150, 120};
        float out[5 * 130];
        dsa_embed_params p = {.out = out, .table = &w, .ids = ids, .n_tokens = 5, .row_begin = 100};
        cr_assert_eq(be->ops->embed(be, &p), DSA_OK);
        for (int i = 0; i < 5; i++)
            for (int j = 0; j < 130; j++) {
                int64_t r = ids[i] - 100;
                float want = r >= 0 && r < 50 ? dsa_weight_get(&w, r, j) : 0.0f;
                cr_assert_eq(out[i * 130 + j], want, "embed %s token %d col %d", dsa_dtype_name(dts[d]), i, j);
            }
        dsa_test_tw_free(&t);
    }
    dsa_backend_destroy(be);
}

Test(cpu_ops, rmsnorm)
{
    uint64_t s = 4;
    dsa_backend *be = be_new(3);
    static const int64_t dims[] = {1, 7, 129, 300, 2048};
    for (size_t di = 0; di < 5; di++)
        for (int with_res = 0; with_res < 2; with_res++) {
            int64_t d = dims[di], n = 5, ld = d + 2;
            dsa_test_tw t;
            dsa_test_tw_make(&t, DSA_DTYPE_BF16, 1, d, &s);
            dsa_weight w = dsa_test_tw_full(&t);
            float *x = malloc((size_t)(n * ld) * sizeof(float));
            float *res = malloc((size_t)(n * d) * sizeof(float));
            float *res0 = malloc((size_t)(n * d) * sizeof(float));
            double *ref = malloc((size_t)(n * d) * sizeof(double));
            double *mag = malloc((size_t)(n * d) * sizeof(double));
            float *got = malloc((size_t)(n * d) * sizeof(float));
            float *xo = malloc((size_t)(n * ld) * sizeof(float));
            fill(x, n * ld, &s);
            memcpy(xo, x, (size_t)(n * ld) * sizeof(float));
            fill(res, n * d, &s);
            memcpy(res0, res, (size_t)(n * d) * sizeof(float));
            for (int64_t r = 0; r < n; r++) {
                double ss = 0.0;
                for (int64_t i = 0; i < d; i++) {
                    double v = with_res ? (double)(res0[r * d + i] + x[r * ld + i]) : x[r * ld + i];
                    ss += v * v;
                }
                double inv = 1.0 / sqrt(ss / (double)d + 1e-6);
                for (int64_t i = 0; i < d; i++) {
                    double v = with_res ? (double)(res0[r * d + i] + x[r * ld + i]) : x[r * ld + i];
                    ref[r * d + i] = dsa_weight_get(&w, 0, i) * v * inv;
                    mag[r * d + i] = fabs(ref[r * d + i]) + 1e-3;
                }
            }
            /* In place: out aliases x. */
            dsa_rmsnorm_params p = {.out = x, .x = x, .residual = with_res ? res : NULL, .weight = &w,
                                    .n_rows = n, .dim = d, .ld_x = ld, .ld_out = ld, .eps = 1e-6f};
            cr_assert_eq(be->ops->rmsnorm(be, &p), DSA_OK);
            for (int64_t r = 0; r < n; r++)
                memcpy(got + r * d, x + r * ld, (size_t)d * sizeof(float));
            check_close(got, ref, mag, n * d, TOL_F32, "rmsnorm");
            if (with_res)
                for (int64_t r = 0; r < n; r++)
                    for (int64_t i = 0; i < d; i++)
                        cr_assert_eq(res[r * d + i], res0[r * d + i] + xo[r * ld + i], "residual += x");
            free(x);
            free(xo);
            free(res);
            free(res0);
            free(ref);
            free(mag);
            free(got);
            dsa_test_tw_free(&t);
        }
    dsa_backend_destroy(be);
}

Test(cpu_ops, rope)
{
    uint64_t s = 5;
    dsa_backend *be = be_new(2);
    int64_t T = 4, H = 3, rot = 8, ld_head = 12, ld_token = 40;
    float x[160], x0[160], inv_freq[4];
    int32_t pos[4] = {0, 1, 77, 4095};
    fill(x, 160, &s);
    memcpy(x0, x, sizeof x);
    for (int i = 0; i < 4; i++)
        inv_freq[i] = powf(10000.0f, -2.0f * i / 8.0f);
    dsa_rope_params p = {.x = x + 4, .positions = pos, .inv_freq = inv_freq, .n_tokens = T,
                         .n_heads = H, .rot_dim = rot, .ld_token = ld_token, .ld_head = ld_head};
    cr_assert_eq(be->ops->rope(be, &p), DSA_OK);
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < H; h++)
            for (int i = 0; i < 4; i++) {
                int64_t o = 4 + t * ld_token + h * ld_head + 2 * i;
                double a = (double)(float)((float)pos[t] * inv_freq[i]);
                double r0 = x0[o] * cos(a) - x0[o + 1] * sin(a);
                double r1 = x0[o] * sin(a) + x0[o + 1] * cos(a);
                cr_assert(fabs(x[o] - r0) < 1e-5 && fabs(x[o + 1] - r1) < 1e-5, "rope t%lld h%lld i%d", (long long)t, (long long)h, i);
            }
    /* Untouched elements stay. */
    for (int64_t i = 0; i < 4; i++)
        cr_assert_eq(x[i], x0[i]);
    dsa_backend_destroy(be);
}

Test(cpu_ops, silu_mul_add)
{
    uint64_t s = 6;
    dsa_backend *be = be_new(2);
    float g[3 * 9], u[3 * 9], o[3 * 9];
    fill(g, 27, &s);
    fill(u, 27, &s);
    for (int i = 0; i < 27; i++)
        g[i] *= 8.0f;
    dsa_silu_mul_params p = {.out = o, .gate = g, .up = u, .n_rows = 3, .dim = 7, .ld = 9};
    memset(o, 0, sizeof o);
    cr_assert_eq(be->ops->silu_mul(be, &p), DSA_OK);
    for (int r = 0; r < 3; r++)
        for (int i = 0; i < 7; i++) {
            double gg = g[r * 9 + i];
            double want = gg / (1.0 + exp(-gg)) * u[r * 9 + i];
            cr_assert(fabs(o[r * 9 + i] - want) <= 1e-6 * (fabs(want) + 1e-3));
        }
    float a[37], b[37], c[37];
    fill(a, 37, &s);
    fill(b, 37, &s);
    dsa_add_params ap = {.out = c, .a = a, .b = b, .n = 37};
    cr_assert_eq(be->ops->add(be, &ap), DSA_OK);
    for (int i = 0; i < 37; i++)
        cr_assert_eq(c[i], a[i] + b[i]);
    dsa_backend_destroy(be);
}

Test(cpu_ops, alloc_copy)
{
    dsa_backend *be = be_new(1);
    void *p = NULL;
    cr_assert_eq(be->ops->alloc(be, 1000, &p), DSA_OK);
    cr_assert_eq((uintptr_t)p % 64, 0);
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(((unsigned char *)p)[i], 0);
    float src[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, dst[10];
    cr_assert_eq(be->ops->act_from_f32(be, p, src, 10), DSA_OK);
    cr_assert_eq(be->ops->act_to_f32(be, dst, p, 10), DSA_OK);
    cr_assert_eq(memcmp(src, dst, sizeof src), 0);
    be->ops->free(be, p);
    cr_assert_eq(be->ops->sync(be), DSA_OK);
    dsa_backend_destroy(be);
    dsa_backend_destroy(NULL);
}

/* ---- MLA: absorbed (paged) vs naive --------------------------------------- */

static void mla_case(dsa_dtype dt, int n_threads, uint64_t seed)
{
    enum { H = 3, NOPE = 24, V = 20, R = 160, P = 8, NSEQ = 3, BS = 5, NT = 11 };
    static const int len[NSEQ] = {1, 13, 37};
    /* Batch: seq 0 prefill (pos 0), seq 1 a prefill chunk (pos 4..12),
     * seq 2 one decode token (pos 36). */
    static const int32_t tseq[NT] = {1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 2};
    static const int32_t tpos[NT] = {4, 5, 0, 6, 7, 8, 9, 10, 11, 12, 36};
    uint64_t s = seed;
    dsa_backend *be = be_new(n_threads);
    dsa_test_tw kvb;
    dsa_test_tw_make(&kvb, dt, H * (NOPE + V), R, &s);
    dsa_weight w = dsa_test_tw_full(&kvb);

    /* Paged cache with a random, non-contiguous block table. */
    int max_blocks = 8, n_blocks = NSEQ * max_blocks + 5;
    dsa_kv_layer cache = {.n_blocks = n_blocks, .block_size = BS, .width = R + P};
    cr_assert_eq(be->ops->alloc(be, (size_t)(n_blocks * BS * (R + P)) * sizeof(float), &cache.data), DSA_OK);
    int32_t perm[64], bt[NSEQ * 8];
    for (int i = 0; i < n_blocks; i++)
        perm[i] = i;
    for (int i = n_blocks - 1; i > 0; i--) {
        int j = (int)(dsa_test_rng_next(&s) % (uint64_t)(i + 1));
        int32_t tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
    }
    for (int i = 0; i < NSEQ * max_blocks; i++)
        bt[i] = perm[i];

    /* Latents of every cached position, stored with kv_store (two calls). */
    int total = len[0] + len[1] + len[2];
    float *ckv = malloc((size_t)total * R * sizeof(float)), *kpe = malloc((size_t)total * P * sizeof(float));
    int32_t *slots = malloc((size_t)total * sizeof(int32_t));
    int base[NSEQ];
    fill(ckv, (int64_t)total * R, &s);
    fill(kpe, (int64_t)total * P, &s);
    for (int q = 0, o = 0; q < NSEQ; q++) {
        base[q] = o;
        for (int j = 0; j < len[q]; j++, o++)
            slots[o] = bt[q * max_blocks + j / BS] * BS + j % BS;
    }
    int split = total / 2;
    dsa_kv_store_params ks = {.cache = &cache, .c_kv = ckv, .k_pe = kpe, .slots = slots,
                              .n_tokens = split, .kv_rank = R, .rope_dim = P, .ld_c = R, .ld_k = P};
    cr_assert_eq(be->ops->kv_store(be, &ks), DSA_OK);
    ks.c_kv = ckv + (size_t)split * R;
    ks.k_pe = kpe + (size_t)split * P;
    ks.slots = slots + split;
    ks.n_tokens = total - split;
    cr_assert_eq(be->ops->kv_store(be, &ks), DSA_OK);

    /* Queries laid out as the model's q: [NT, H, NOPE + P]. */
    int64_t ldq = NOPE + P;
    float *q = malloc((size_t)NT * H * ldq * sizeof(float));
    fill(q, (int64_t)NT * H * ldq, &s);
    float tau = 0.1352338f;

    /* Naive reference in double. */
    double *ref = malloc((size_t)NT * H * V * sizeof(double));
    double *mag = malloc((size_t)NT * H * V * sizeof(double));
    double *knope = malloc((size_t)37 * NOPE * sizeof(double)), *vv = malloc((size_t)37 * V * sizeof(double));
    double sc[37];
    for (int t = 0; t < NT; t++) {
        int sq = tseq[t], p = tpos[t];
        for (int h = 0; h < H; h++) {
            for (int j = 0; j <= p; j++) {
                const float *c = ckv + (size_t)(base[sq] + j) * R;
                for (int i = 0; i < NOPE + V; i++) {
                    double a = 0.0;
                    for (int k = 0; k < R; k++)
                        a += dsa_weight_get(&w, h * (NOPE + V) + i, k) * (double)c[k];
                    if (i < NOPE)
                        knope[j * NOPE + i] = a;
                    else
                        vv[j * V + i - NOPE] = a;
                }
                const float *qq = q + ((size_t)t * H + h) * ldq;
                double d = 0.0;
                for (int i = 0; i < NOPE; i++)
                    d += qq[i] * knope[j * NOPE + i];
                for (int i = 0; i < P; i++)
                    d += qq[NOPE + i] * (double)kpe[(size_t)(base[sq] + j) * P + i];
                sc[j] = tau * d;
            }
            double mx = -INFINITY, z = 0.0;
            for (int j = 0; j <= p; j++)
                mx = sc[j] > mx ? sc[j] : mx;
            for (int j = 0; j <= p; j++)
                z += sc[j] = exp(sc[j] - mx);
            double amax = 0.0;
            for (int i = 0; i < V; i++) {
                double o = 0.0;
                for (int j = 0; j <= p; j++)
                    o += sc[j] / z * vv[j * V + i];
                ref[((size_t)t * H + h) * V + i] = o;
                amax = fabs(o) > amax ? fabs(o) : amax;
            }
            for (int i = 0; i < V; i++)
                mag[((size_t)t * H + h) * V + i] = amax;
        }
    }

    /* Absorbed: absorb_q -> mla_attn over the paged cache -> absorb_o. */
    float *qlat = malloc((size_t)NT * H * R * sizeof(float));
    float *obar = malloc((size_t)NT * H * R * sizeof(float));
    float *o = malloc((size_t)NT * H * V * sizeof(float));
    dsa_mla_absorb_params aq = {.out = qlat, .in = q, .ld_in_token = H * ldq, .ld_in_head = ldq,
                                .w_kvb = &w, .n_tokens = NT, .n_heads = H, .nope_dim = NOPE,
                                .v_dim = V, .kv_rank = R};
    cr_assert_eq(be->ops->mla_absorb_q(be, &aq), DSA_OK);
    dsa_mla_attn_params ap = {.out = obar, .q_lat = qlat, .q_pe = q + NOPE, .ld_qpe_token = H * ldq,
                              .ld_qpe_head = ldq, .cache = &cache, .seq = tseq, .pos = tpos,
                              .block_tables = bt, .ld_block_table = max_blocks, .n_tokens = NT,
                              .n_heads = H, .kv_rank = R, .rope_dim = P, .scale = tau};
    cr_assert_eq(be->ops->mla_attn(be, &ap), DSA_OK);
    dsa_mla_absorb_params ao = {.out = o, .in = obar, .w_kvb = &w, .n_tokens = NT, .n_heads = H,
                                .nope_dim = NOPE, .v_dim = V, .kv_rank = R};
    cr_assert_eq(be->ops->mla_absorb_o(be, &ao), DSA_OK);
    check_close(o, ref, mag, (int64_t)NT * H * V, TOL_ATTN, dt == DSA_DTYPE_F32 ? "mla f32" : "mla fp8");

    free(q);
    free(qlat);
    free(obar);
    free(o);
    free(ref);
    free(mag);
    free(knope);
    free(vv);
    free(ckv);
    free(kpe);
    free(slots);
    be->ops->free(be, cache.data);
    dsa_test_tw_free(&kvb);
    dsa_backend_destroy(be);
}

Test(cpu_ops, mla_absorbed_vs_naive_f32)
{
    mla_case(DSA_DTYPE_F32, 2, 11);
    mla_case(DSA_DTYPE_F32, 1, 12);
}

Test(cpu_ops, mla_absorbed_vs_naive_fp8)
{
    mla_case(DSA_DTYPE_F8_E4M3, 2, 13);
    mla_case(DSA_DTYPE_F8_E4M3, 3, 14);
    mla_case(DSA_DTYPE_BF16, 2, 15);
}

/* ---- router ---------------------------------------------------------------- */

static float logit_of(float sigma)
{
    return logf(sigma / (1.0f - sigma));
}

static void route(dsa_backend *be, dsa_router_params *p, const float *logits, int32_t *ids, float *w)
{
    p->logits = logits;
    p->ids = ids;
    p->weights = w;
    cr_assert_eq(be->ops->router(be, p), DSA_OK);
}

Test(cpu_ops, router_group_masking)
{
    dsa_backend *be = be_new(1);
    /* 8 experts, 4 groups of 2, keep 2 groups, top-2.  Expert 0 has the
     * single best score but its group (0, 1) sums lowest, so it is dropped. */
    float sig[8] = {0.95f, 0.01f, 0.6f, 0.6f, 0.7f, 0.5f, 0.3f, 0.3f};
    float lg[8];
    for (int i = 0; i < 8; i++)
        lg[i] = logit_of(sig[i]);
    int32_t ids[2];
    float w[2];
    dsa_router_params p = {.n_tokens = 1, .n_experts = 8, .top_k = 2, .n_group = 4, .topk_group = 2,
                           .sigmoid = 1, .grouped = 1, .norm_topk_prob = 1, .routed_scaling_factor = 2.5f};
    route(be, &p, lg, ids, w);
    /* Group sums: 0.96, 1.2, 1.2, 0.6 -> groups 1 and 2 (tie to lowest). */
    cr_assert_eq(ids[0], 4);
    cr_assert(ids[1] == 2, "tie between experts 2 and 3 goes to 2, got %d", ids[1]);
    float s4 = 1.0f / (1.0f + expf(-lg[4])), s2 = 1.0f / (1.0f + expf(-lg[2]));
    cr_assert(fabsf(w[0] - s4 / (s4 + s2) * 2.5f) < 1e-6f);
    cr_assert(fabsf(w[1] - s2 / (s4 + s2) * 2.5f) < 1e-6f);

    /* Ungrouped: plain top-k picks expert 0. */
    p.grouped = 0;
    route(be, &p, lg, ids, w);
    cr_assert_eq(ids[0], 0);
    cr_assert_eq(ids[1], 4);

    /* Bias changes selection only: weights stay the unbiased sigmoids. */
    float bias[8] = {0, 0, 0, 0, 0, 0, 0.5f, 0};
    p.bias = bias;
    route(be, &p, lg, ids, w);
    cr_assert_eq(ids[0], 0);
    cr_assert_eq(ids[1], 6); /* 0.3 + 0.5 beats 0.7 */
    float s0 = 1.0f / (1.0f + expf(-lg[0])), s6 = 1.0f / (1.0f + expf(-lg[6]));
    cr_assert(fabsf(w[1] - s6 / (s0 + s6) * 2.5f) < 1e-6f);

    /* No normalisation: weights are sigma * scale. */
    p.bias = NULL;
    p.norm_topk_prob = 0;
    p.routed_scaling_factor = 1.0f;
    route(be, &p, lg, ids, w);
    cr_assert(fabsf(w[0] - s0) < 1e-7f);
    dsa_backend_destroy(be);
}

Test(cpu_ops, router_neg_inf_masking_and_ties)
{
    dsa_backend *be = be_new(1);
    /* A large negative bias makes every kept score negative: HF's 0.0 mask
     * would then prefer the dropped groups; -inf never does. */
    float lg[8] = {0, 0, 0, 0, 0, 0, 0, 0}; /* all ties */
    float bias[8] = {-3, -3, -2, -2, -1, -1, -4, -4};
    int32_t ids[4];
    float w[4];
    dsa_router_params p = {.n_tokens = 1, .n_experts = 8, .top_k = 4, .n_group = 4, .topk_group = 2,
                           .sigmoid = 1, .grouped = 1, .norm_topk_prob = 1,
                           .routed_scaling_factor = 1.0f, .bias = bias};
    route(be, &p, lg, ids, w);
    cr_assert_eq(ids[0], 4);
    cr_assert_eq(ids[1], 5);
    cr_assert_eq(ids[2], 2);
    cr_assert_eq(ids[3], 3);
    for (int k = 0; k < 4; k++)
        cr_assert(fabsf(w[k] - 0.25f) < 1e-6f);
    /* Pure ties, no groups: lowest indices first. */
    p.bias = NULL;
    p.grouped = 0;
    route(be, &p, lg, ids, w);
    for (int k = 0; k < 4; k++)
        cr_assert_eq(ids[k], k);
    dsa_backend_destroy(be);
}

Test(cpu_ops, router_softmax_v2)
{
    dsa_backend *be = be_new(1);
    float lg[2 * 6] = {1, 2, 3, 0, -1, 2.5f, /* token 1 */ 0, 0, 5, 5, 1, 1};
    int32_t ids[4];
    float w[4];
    dsa_router_params p = {.n_tokens = 2, .n_experts = 6, .top_k = 2, .n_group = 3, .topk_group = 1,
                           .sigmoid = 0, .grouped = 1, .norm_topk_prob = 0,
                           .routed_scaling_factor = 16.0f};
    route(be, &p, lg, ids, w);
    /* Token 0: group maxima 2, 3, 2.5 -> group 1 -> experts 2, 3. */
    cr_assert_eq(ids[0], 2);
    cr_assert_eq(ids[1], 3);
    double z = 0;
    for (int i = 0; i < 6; i++)
        z += exp(lg[i]);
    cr_assert(fabs(w[0] - exp(3.0) / z * 16.0) < 1e-5);
    cr_assert(fabs(w[1] - exp(0.0) / z * 16.0) < 1e-5);
    /* Token 1: group 1 (5, 5): tie -> 2 then 3. */
    cr_assert_eq(ids[2], 2);
    cr_assert_eq(ids[3], 3);
    dsa_backend_destroy(be);
}

/* ---- MoE ------------------------------------------------------------------- */

static void moe_case(dsa_dtype dt, int64_t T, int64_t D, int64_t I, int64_t E, int topk,
                     int accumulate, int n_threads, uint64_t seed)
{
    uint64_t s = seed;
    dsa_backend *be = be_new(n_threads);
    dsa_test_tw *g = malloc((size_t)E * sizeof *g), *u = malloc((size_t)E * sizeof *u), *d = malloc((size_t)E * sizeof *d);
    dsa_expert *ex = malloc((size_t)E * sizeof *ex);
    for (int64_t e = 0; e < E; e++) {
        dsa_test_tw_make(&g[e], dt, I, D, &s);
        dsa_test_tw_make(&u[e], dt, I, D, &s);
        dsa_test_tw_make(&d[e], dt, D, I, &s);
        ex[e].gate = dsa_test_tw_full(&g[e]);
        ex[e].up = dsa_test_tw_full(&u[e]);
        ex[e].down = dsa_test_tw_full(&d[e]);
    }
    float *x = malloc((size_t)(T * D) * sizeof(float)), *out = malloc((size_t)(T * D) * sizeof(float));
    int32_t *ids = malloc((size_t)(T * topk) * sizeof(int32_t));
    float *wt = malloc((size_t)(T * topk) * sizeof(float));
    fill(x, T * D, &s);
    fill(out, T * D, &s);
    for (int64_t t = 0; t < T; t++)
        for (int k = 0; k < topk; k++) {
            int32_t e;
            int dup;
            do {
                e = (int32_t)(dsa_test_rng_next(&s) % (uint64_t)E);
                dup = 0;
                for (int kk = 0; kk < k; kk++)
                    dup |= ids[t * topk + kk] == e;
            } while (dup);
            ids[t * topk + k] = e;
            wt[t * topk + k] = 0.5f + dsa_test_rng_f(&s);
        }
    double *ref = calloc((size_t)(T * D), sizeof(double)), *mag = calloc((size_t)(T * D), sizeof(double));
    double *h = malloc((size_t)I * sizeof(double)), *hm = malloc((size_t)I * sizeof(double));
    for (int64_t t = 0; t < T; t++) {
        for (int64_t i = 0; i < D; i++) {
            ref[t * D + i] = accumulate ? out[t * D + i] : 0.0;
            mag[t * D + i] = fabs(ref[t * D + i]);
        }
        for (int k = 0; k < topk; k++) {
            dsa_expert *xp = &ex[ids[t * topk + k]];
            for (int64_t r = 0; r < I; r++) {
                double a = 0, b = 0, am = 0, bm = 0;
                for (int64_t c = 0; c < D; c++) {
                    a += x[t * D + c] * (double)dsa_weight_get(&xp->gate, r, c);
                    b += x[t * D + c] * (double)dsa_weight_get(&xp->up, r, c);
                    am += fabs(x[t * D + c] * (double)dsa_weight_get(&xp->gate, r, c));
                    bm += fabs(x[t * D + c] * (double)dsa_weight_get(&xp->up, r, c));
                }
                h[r] = a / (1.0 + exp(-a)) * b;
                hm[r] = (am + 1.0) * (bm + 1.0);
            }
            for (int64_t c = 0; c < D; c++) {
                double o = 0, om = 0;
                for (int64_t r = 0; r < I; r++) {
                    o += dsa_weight_get(&xp->down, c, r) * h[r];
                    om += fabs(dsa_weight_get(&xp->down, c, r)) * hm[r];
                }
                ref[t * D + c] += wt[t * topk + k] * o;
                mag[t * D + c] += fabs(wt[t * topk + k]) * om;
            }
        }
    }
    dsa_moe_params p = {.out = out, .x = x, .ids = ids, .weights = wt, .experts = ex, .n_tokens = T,
                        .dim = D, .inter = I, .n_experts = E, .top_k = topk, .accumulate = accumulate};
    cr_assert_eq(be->ops->moe(be, &p), DSA_OK);
    check_close(out, ref, mag, T * D, tol_of(dt), "moe");
    for (int64_t e = 0; e < E; e++) {
        dsa_test_tw_free(&g[e]);
        dsa_test_tw_free(&u[e]);
        dsa_test_tw_free(&d[e]);
    }
    free(g);
    free(u);
    free(d);
    free(ex);
    free(x);
    free(out);
    free(ids);
    free(wt);
    free(ref);
    free(mag);
    free(h);
    free(hm);
    dsa_backend_destroy(be);
}

Test(cpu_ops, moe_fp8)
{
    moe_case(DSA_DTYPE_F8_E4M3, 1, 130, 200, 8, 3, 0, 2, 21);
    moe_case(DSA_DTYPE_F8_E4M3, 5, 257, 72, 6, 2, 1, 3, 22);
    moe_case(DSA_DTYPE_F8_E4M3, 19, 64, 136, 5, 4, 0, 2, 23);
}

Test(cpu_ops, moe_bf16_f32)
{
    moe_case(DSA_DTYPE_BF16, 3, 96, 50, 4, 2, 0, 2, 24);
    moe_case(DSA_DTYPE_F32, 12, 33, 129, 7, 3, 1, 1, 25);
}

/* ---- sampling -------------------------------------------------------------- */

static int32_t sample1(dsa_backend *be, const float *logits, int64_t V, dsa_sample_row r, float *lp)
{
    int32_t id = -1;
    dsa_sample_params p = {.out_ids = &id, .out_logprobs = lp, .logits = logits, .rows = &r,
                           .n_rows = 1, .vocab = V};
    cr_assert_eq(be->ops->sample(be, &p), DSA_OK);
    return id;
}

Test(cpu_ops, sample_greedy_and_logprob)
{
    dsa_backend *be = be_new(2);
    float l[7] = {0.5f, 3.0f, -1.0f, 3.0f, 2.0f, 0.0f, 1.0f};
    dsa_sample_row r = {.temperature = 0.0f, .top_p = 1.0f};
    float lp;
    cr_assert_eq(sample1(be, l, 7, r, &lp), 1); /* tie 1 vs 3: lowest */
    double z = 0;
    for (int i = 0; i < 7; i++)
        z += exp(l[i]);
    cr_assert(fabs(lp - (3.0 - log(z))) < 1e-6);
    /* top_k = 1 and a tiny top_p are greedy at any temperature. */
    for (uint64_t seed = 0; seed < 50; seed++) {
        dsa_sample_row k1 = {.temperature = 1.5f, .top_p = 1.0f, .top_k = 1, .seed = seed, .step = 3};
        cr_assert_eq(sample1(be, l, 7, k1, NULL), 1);
        dsa_sample_row p0 = {.temperature = 1.5f, .top_p = 1e-6f, .seed = seed, .step = 3};
        cr_assert_eq(sample1(be, l, 7, p0, NULL), 1);
    }
    dsa_backend_destroy(be);
}

Test(cpu_ops, sample_reproducible_and_batch_independent)
{
    uint64_t s = 31;
    enum { V = 129280, N = 4 };
    dsa_backend *be = be_new(3);
    float *l = malloc((size_t)N * V * sizeof(float));
    for (int64_t i = 0; i < (int64_t)N * V; i++)
        l[i] = 4.0f * dsa_test_rng_f(&s);
    dsa_sample_row rows[N] = {
        {.temperature = 0.8f, .top_p = 0.9f, .top_k = 0, .seed = 1, .step = 0},
        {.temperature = 1.0f, .top_p = 1.0f, .top_k = 50, .seed = 2, .step = 7},
        {.temperature = 0.6f, .top_p = 0.95f, .top_k = 40, .min_p = 0.05f, .seed = 3, .step = 1},
        {.temperature = 1.2f, .top_p = 1.0f, .top_k = 0, .seed = 4, .step = 2},
    };
    int32_t ids[N], ids2[N];
    float lps[N];
    dsa_sample_params p = {.out_ids = ids, .out_logprobs = lps, .logits = l, .rows = rows, .n_rows = N, .vocab = V};
    cr_assert_eq(be->ops->sample(be, &p), DSA_OK);
    p.out_ids = ids2;
    cr_assert_eq(be->ops->sample(be, &p), DSA_OK);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(ids[i], ids2[i]);
        cr_assert(ids[i] >= 0 && ids[i] < V);
        /* Alone, or in reverse batch order: same token. */
        cr_assert_eq(sample1(be, l + (size_t)i * V, V, rows[i], NULL), ids[i]);
    }
    /* Top-k: the chosen logit is among the 50 largest. */
    int above = 0;
    for (int64_t i = 0; i < V; i++)
        above += l[V + i] > l[V + ids[1]];
    cr_assert(above < 50);
    /* Different steps give different draws (with overwhelming probability). */
    int diff = 0;
    for (uint64_t st = 0; st < 20; st++) {
        dsa_sample_row r = rows[3];
        r.step = st;
        diff |= sample1(be, l + 3 * (size_t)V, V, r, NULL) != ids[3];
    }
    cr_assert(diff);
    free(l);
    dsa_backend_destroy(be);
}

Test(cpu_ops, sample_min_p)
{
    dsa_backend *be = be_new(1);
    /* p proportional to exp(l): tokens 2, 5 are within 0.2 of the max. */
    float l[8] = {0.0f, -1.0f, 3.0f, 0.5f, -2.0f, 2.0f, 1.0f, 0.0f};
    for (uint64_t seed = 0; seed < 300; seed++) {
        dsa_sample_row r = {.temperature = 1.0f, .top_p = 1.0f, .min_p = 0.2f, .seed = seed};
        int32_t id = sample1(be, l, 8, r, NULL);
        cr_assert(id == 2 || id == 5, "min_p kept token %d", id);
    }
    dsa_backend_destroy(be);
}

/* Empirical frequencies over many seeds against the filtered softmax. */
static void sample_dist(dsa_backend *be, dsa_sample_row r, const double *want, int n_draws)
{
    float l[6] = {1.0f, 0.2f, -0.5f, 1.3f, 0.0f, 0.7f};
    int cnt[6] = {0};
    for (int i = 0; i < n_draws; i++) {
        r.seed = 1000 + (uint64_t)i;
        r.step = (uint64_t)i * 7;
        cnt[sample1(be, l, 6, r, NULL)]++;
    }
    for (int i = 0; i < 6; i++) {
        double f = (double)cnt[i] / n_draws;
        double sd = sqrt(want[i] * (1 - want[i]) / n_draws);
        cr_assert(fabs(f - want[i]) <= 5 * sd + 1e-12, "token %d: freq %.4f want %.4f", i, f, want[i]);
    }
}

Test(cpu_ops, sample_distribution)
{
    dsa_backend *be = be_new(1);
    float l[6] = {1.0f, 0.2f, -0.5f, 1.3f, 0.0f, 0.7f};
    double p[6], z = 0;
    float T = 0.7f;
    for (int i = 0; i < 6; i++)
        z += p[i] = exp(l[i] / (double)T);
    for (int i = 0; i < 6; i++)
        p[i] /= z;
    dsa_sample_row r = {.temperature = T, .top_p = 1.0f};
    sample_dist(be, r, p, 20000);
    /* top_k = 3 keeps tokens 3, 0, 5 renormalised. */
    double pk[6] = {0}, zk = p[3] + p[0] + p[5];
    pk[3] = p[3] / zk;
    pk[0] = p[0] / zk;
    pk[5] = p[5] / zk;
    r.top_k = 3;
    sample_dist(be, r, pk, 20000);
    /* top_p = 0.6: smallest prefix of (3, 0, 5, ...) with mass >= 0.6. */
    r.top_k = 0;
    r.top_p = 0.6f;
    double pp[6] = {0};
    if (p[3] >= 0.6) {
        pp[3] = 1;
    } else if (p[3] + p[0] >= 0.6) {
        pp[3] = p[3] / (p[3] + p[0]);
        pp[0] = p[0] / (p[3] + p[0]);
    } else {
        pp[3] = pk[3];
        pp[0] = pk[0];
        pp[5] = pk[5];
    }
    sample_dist(be, r, pp, 20000);
    dsa_backend_destroy(be);
}

/* Top-p / min-p over a large vocabulary (the quickselect path): every draw
 * lies in the kept set computed by a full sort here, and the draws cover
 * more than one token. */
static int cmp_desc(const void *a_, const void *b_)
{
    const double *a = a_, *b = b_; /* {logit, id} */
    if (a[0] != b[0])
        return a[0] > b[0] ? -1 : 1;
    return (a[1] > b[1]) - (a[1] < b[1]);
}

Test(cpu_ops, sample_top_p_large_vocab)
{
    enum { V = 20000 };
    uint64_t s = 77;
    dsa_backend *be = be_new(2);
    float *l = malloc(V * sizeof(float));
    double *srt = malloc(2 * V * sizeof(double));
    char *kept = calloc(V, 1);
    for (int i = 0; i < V; i++)
        l[i] = 6.0f * dsa_test_rng_f(&s);
    static const float tops[] = {0.5f, 0.9f};
    static const float mins[] = {0.0f, 0.3f};
    for (int c = 0; c < 2; c++) {
        float T = 0.8f;
        double lmax = -INFINITY, z = 0;
        for (int i = 0; i < V; i++)
            lmax = l[i] > lmax ? l[i] : lmax;
        for (int i = 0; i < V; i++) {
            srt[2 * i] = l[i];
            srt[2 * i + 1] = i;
            z += exp((l[i] - lmax) / T);
        }
        qsort(srt, V, 2 * sizeof(double), cmp_desc);
        memset(kept, 0, V);
        double cum = 0;
        int n_kept = 0;
        for (int i = 0; i < V; i++) {
            double e = exp((srt[2 * i] - lmax) / T);
            if (mins[c] > 0 && e < mins[c])
                break;
            kept[(int)srt[2 * i + 1]] = 1;
            n_kept++;
            cum += e;
            if (cum >= tops[c] * z)
                break;
        }
        int n_seen = 0;
        char *seen = calloc(V, 1);
        for (uint64_t seed = 0; seed < 300; seed++) {
            dsa_sample_row r = {.temperature = T, .top_p = tops[c], .min_p = mins[c], .seed = seed, .step = 5};
            int32_t id = sample1(be, l, V, r, NULL);
            cr_assert(id >= 0 && id < V);
            /* Allow the single boundary token to differ by rounding. */
            if (!kept[id]) {
                double e = exp((l[id] - lmax) / T);
                cr_assert(fabs(e - exp((srt[2 * (n_kept)] - lmax) / T)) < 1e-6,
                          "case %d: token %d outside the kept set (%d tokens)", c, id, n_kept);
            }
            n_seen += !seen[id]++;
        }
        cr_assert(n_seen > 1 || n_kept == 1);
        free(seen);
    }
    free(l);
    free(srt);
    free(kept);
    dsa_backend_destroy(be);
}

/* logit_ctl: allowed mask, bans, then bias, in that order, per row; a row
 * without ids is untouched; then the sampler follows the controls. */
Test(cpu_ops, logit_ctl_mask_ban_bias)
{
    dsa_backend *be = be_new(1);
    enum { V = 9 };
    float l[2 * V], ref[2 * V];
    for (int i = 0; i < 2 * V; i++)
        l[i] = ref[i] = (float)((i * 7) % 5) - 1.5f;
    int32_t allowed[] = {1, 4, 8}, banned[] = {4}, bias_ids[] = {4, 8};
    float bias[] = {50.0f, -0.25f};
    dsa_logit_ctl rows[2] = {{.allowed = allowed, .n_allowed = 3, .banned = banned,
                              .n_banned = 1, .bias_ids = bias_ids, .bias_values = bias,
                              .n_bias = 2},
                             {0}};
    dsa_logit_ctl_params p = {.logits = l, .rows = rows, .n_rows = 2, .vocab = V};
    cr_assert_eq(be->ops->logit_ctl(be, &p), DSA_OK);
    for (int i = 0; i < V; i++) {
        if (i == 1)
            cr_assert_float_eq(l[i], ref[i], 0);
        else if (i == 8)
            cr_assert_float_eq(l[i], ref[i] - 0.25f, 1e-6);
        else /* outside allowed, or banned (the bias cannot revive a ban) */
            cr_assert(isinf(l[i]) && l[i] < 0, "id %d: %g", i, l[i]);
    }
    cr_assert_eq(memcmp(l + V, ref + V, V * sizeof(float)), 0);
    /* the sampler draws only the ids the controls leave finite */
    for (uint64_t seed = 0; seed < 40; seed++) {
        dsa_sample_row r = {.temperature = 1.0f, .top_p = 1.0f, .seed = seed, .step = 1};
        int32_t id = sample1(be, l, V, r, NULL);
        cr_assert(id == 1 || id == 8, "sampled %d", id);
    }
    /* +100 bias on one id forces it under greedy */
    memcpy(l, ref, sizeof l);
    int32_t one[] = {6};
    float big[] = {100.0f};
    dsa_logit_ctl b1 = {.bias_ids = one, .bias_values = big, .n_bias = 1};
    dsa_logit_ctl_params p1 = {.logits = l, .rows = &b1, .n_rows = 1, .vocab = V};
    cr_assert_eq(be->ops->logit_ctl(be, &p1), DSA_OK);
    dsa_sample_row g = {.temperature = 0.0f, .top_p = 1.0f};
    cr_assert_eq(sample1(be, l, V, g, NULL), 6);
    dsa_backend_destroy(be);
}

/* ---- structured-output mask ----------------------------------------------- */

/* Three rows of an odd vocabulary: a random full-length mask, no mask
 * (unchanged), and a mask shorter than the vocabulary (every id past its
 * words banned); each checked id by id against a byte-per-id reference,
 * then greedy sampling must pick the best allowed id. */
Test(cpu_ops, mask_bitmask_rows)
{
    uint64_t s = 77;
    enum { V = 1001, W = (V + 31) / 32, W_SHORT = 9 };
    dsa_backend *be = be_new(1);
    float *l = malloc(3 * V * sizeof(float)), *ref = malloc(3 * V * sizeof(float));
    uint32_t bits[W] = {0}, bits_short[W_SHORT] = {0};
    unsigned char allow[2][V] = {{0}};
    for (int i = 0; i < 3 * V; i++)
        ref[i] = l[i] = 4.0f * dsa_test_rng_f(&s);
    for (int i = 0; i < V; i++) {
        allow[0][i] = dsa_test_rng_next(&s) % 5 == 0;
        allow[1][i] = i < W_SHORT * 32 && dsa_test_rng_next(&s) % 3 == 0;
        bits[i / 32] |= (uint32_t)allow[0][i] << (i % 32);
        if (i < W_SHORT * 32)
            bits_short[i / 32] |= (uint32_t)allow[1][i] << (i % 32);
    }
    dsa_logit_mask rows[3] = {{.bits = bits, .n_words = W}, {0},
                              {.bits = bits_short, .n_words = W_SHORT}};
    dsa_logit_mask_params p = {.logits = l, .rows = rows, .n_rows = 3, .vocab = V};
    cr_assert_eq(be->ops->mask(be, &p), DSA_OK);
    for (int i = 0; i < V; i++) {
        cr_assert(allow[0][i] ? l[i] == ref[i] : isinf(l[i]) && l[i] < 0, "row 0 id %d", i);
        cr_assert_eq(l[V + i], ref[V + i], "row 1 id %d", i);
        cr_assert(allow[1][i] ? l[2 * V + i] == ref[2 * V + i]
                              : isinf(l[2 * V + i]) && l[2 * V + i] < 0, "row 2 id %d", i);
    }
    for (int r = 0; r < 3; r += 2) {
        int best = -1;
        for (int i = 0; i < V; i++)
            if (allow[r / 2][i] && (best < 0 || ref[r * V + i] > ref[r * V + best]))
                best = i;
        dsa_sample_row g = {.temperature = 0.0f, .top_p = 1.0f};
        cr_assert_eq(sample1(be, l + r * V, V, g, NULL), best, "row %d", r);
    }
    free(l);
    free(ref);
    dsa_backend_destroy(be);
}
