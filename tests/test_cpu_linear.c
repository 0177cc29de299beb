/* test_cpu_linear.c - the CPU backend's linear op per SIMD path: on AVX2
 * machines (DSA_CPU_AVX2) every output must equal, bit for bit, a scalar
 * spelling of cpu_linear_avx2.c's accumulation order over the weights as
 * dsa_weight_get dequantises them; on every machine an output row must not
 * depend on the batch size (speculative decoding relies on it) and the
 * in-register conversions must reproduce dsa_weight_get exactly.
 * Ragged sizes throughout: K not a multiple of 8 or 16, m = 1..17, FP8
 * slices whose blocks start off a 16 boundary, 1 and 2 threads. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "tests/test_weights.h"
#include "kernels/cpu/cpu_internal.h"

/* cpu_linear_avx2.c's order in scalar C: chunks of 8 (zero-padded) into
 * accumulator c & 1 by FMA, then lanes l + (l+4), then (0+2) + (1+3). */
static float avx2_dot_ref(const dsa_weight *w, int64_t n, const float *x)
{
    float acc[2][8] = {{0}};
    for (int64_t c = 0; c * 8 < w->cols; c++)
        for (int l = 0; l < 8; l++) {
            int64_t k = c * 8 + l;
            float wv = k < w->cols ? dsa_weight_get(w, n, k) : 0.0f;
            float xv = k < w->cols ? x[k] : 0.0f;
            acc[c & 1][l] = fmaf(wv, xv, acc[c & 1][l]);
        }
    float v[8], h[4];
    for (int l = 0; l < 8; l++)
        v[l] = acc[0][l] + acc[1][l];
    for (int l = 0; l < 4; l++)
        h[l] = v[l] + v[l + 4];
    return (h[0] + h[2]) + (h[1] + h[3]);
}

/* out = x W^T through the backend, [m, w->rows] packed. */
static void run_linear(dsa_backend *be, const dsa_weight *w, const float *x, int64_t ld_x,
                       int64_t m, float *out)
{
    dsa_linear_params p = {.out = out, .x = x, .w = w, .m = m, .ld_x = ld_x,
                           .ld_out = w->rows};
    cr_assert_eq(be->ops->linear(be, &p), DSA_OK);
}

static int same_bits(float a, float b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

/* For one weight: every m in 1..17 gives, for each token, the bits the
 * m = 1 run gives for it; on AVX2 those equal avx2_dot_ref. */
static void check_weight(dsa_backend *be, const dsa_weight *w, uint64_t *s, const char *what)
{
    enum { M_MAX = 17 };
    int64_t ld_x = w->cols + 5;
    float *x = malloc((size_t)(M_MAX * ld_x) * sizeof(float));
    float *one = malloc((size_t)(M_MAX * w->rows) * sizeof(float));
    float *out = malloc((size_t)(M_MAX * w->rows) * sizeof(float));
    cr_assert(x && one && out);
    for (int64_t i = 0; i < M_MAX * ld_x; i++)
        x[i] = dsa_test_rng_f(s);
    for (int64_t t = 0; t < M_MAX; t++)
        run_linear(be, w, x + t * ld_x, ld_x, 1, one + t * w->rows);
    if (DSA_CPU_AVX2)
        for (int64_t t = 0; t < M_MAX; t++)
            for (int64_t n = 0; n < w->rows; n++) {
                float want = avx2_dot_ref(w, n, x + t * ld_x);
                float got = one[t * w->rows + n];
                if (!same_bits(got, want))
                    cr_assert_fail("%s: m=1 token %lld row %lld got %a want %a", what,
                                   (long long)t, (long long)n, got, want);
            }
    for (int64_t m = 2; m <= M_MAX; m++) {
        run_linear(be, w, x, ld_x, m, out);
        for (int64_t i = 0; i < m * w->rows; i++)
            if (!same_bits(out[i], one[i]))
                cr_assert_fail("%s: m=%lld token %lld row %lld got %a, alone %a", what,
                               (long long)m, (long long)(i / w->rows),
                               (long long)(i % w->rows), out[i], one[i]);
    }
    free(x);
    free(one);
    free(out);
}

Test(cpu_linear, batch_invariant_and_exact)
{
    /* 1031 and 2100: more than one K block of the panel (1,024 columns) */
    static const int64_t ks[] = {1, 7, 8, 9, 15, 16, 17, 31, 100, 129, 257, 1031, 2100};
    static const dsa_dtype dts[] = {DSA_DTYPE_F32, DSA_DTYPE_F16, DSA_DTYPE_BF16,
                                    DSA_DTYPE_F8_E4M3};
    uint64_t s = 7;
    for (int th = 1; th <= 2; th++) {
        dsa_backend *be = NULL;
        cr_assert_eq(dsa_backend_cpu_create(th, &be), DSA_OK);
        for (size_t d = 0; d < sizeof dts / sizeof dts[0]; d++)
            for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
                dsa_test_tw t;
                int64_t rows = 5 + (int64_t)ki * 7; /* odd and even row counts */
                dsa_test_tw_make(&t, dts[d], rows, ks[ki], &s);
                dsa_weight w = dsa_test_tw_slice(&t, 0, 0, rows, ks[ki]);
                char what[96];
                snprintf(what, sizeof what, "dtype %d K %lld threads %d", (int)dts[d],
                         (long long)ks[ki], th);
                check_weight(be, &w, &s, what);
                dsa_test_tw_free(&t);
            }
        dsa_backend_destroy(be);
    }
}

/* FP8 slices: blocks of rows and columns straddled, column origins on and
 * off a 16 boundary (the in-register path and the panel path). */
Test(cpu_linear, fp8_slices)
{
    static const int64_t c0s[] = {0, 8, 16, 120, 136};
    uint64_t s = 11;
    dsa_test_tw t;
    dsa_test_tw_make(&t, DSA_DTYPE_F8_E4M3, 300, 420, &s);
    dsa_backend *be = NULL;
    cr_assert_eq(dsa_backend_cpu_create(2, &be), DSA_OK);
    for (size_t i = 0; i < sizeof c0s / sizeof c0s[0]; i++) {
        int64_t c0 = c0s[i], cols = 420 - c0 - (int64_t)i * 9;
        dsa_weight w = dsa_test_tw_slice(&t, 100 + (int64_t)i, c0, 61, cols);
        char what[64];
        snprintf(what, sizeof what, "fp8 slice col0 %lld cols %lld", (long long)c0,
                 (long long)cols);
        check_weight(be, &w, &s, what);
    }
    dsa_backend_destroy(be);
    dsa_test_tw_free(&t);
}

/* Each weight dtype's conversion in registers against dsa_weight_get: a
 * one-hot x makes y[n] = W[n, j] exactly (compared as values: a -0 weight
 * sums to +0).  The FP8 row holds all 254
 * non-NaN codes; m = 1 decodes in registers, m = 16 through the panel. */
Test(cpu_linear, conversions_exact)
{
    static const dsa_dtype dts[] = {DSA_DTYPE_F16, DSA_DTYPE_BF16, DSA_DTYPE_F8_E4M3};
    enum { K = 272, M = 16 };
    uint64_t s = 3;
    dsa_backend *be = NULL;
    cr_assert_eq(dsa_backend_cpu_create(1, &be), DSA_OK);
    float *x = calloc((size_t)(M * K), sizeof(float));
    float *out = malloc((size_t)M * 3 * sizeof(float));
    cr_assert(x && out);
    for (size_t d = 0; d < sizeof dts / sizeof dts[0]; d++) {
        dsa_test_tw t;
        dsa_test_tw_make(&t, dts[d], 3, K, &s);
        if (dts[d] == DSA_DTYPE_F8_E4M3)
            for (int64_t j = 0; j < 3 * K; j++) {
                int c = (int)(j % 254);
                ((uint8_t *)t.data)[j] = (uint8_t)(c < 127 ? c : c + 1); /* skip 0x7F, 0xFF */
            }
        if (dts[d] == DSA_DTYPE_F16) /* F16 subnormals and extremes */
            for (int64_t j = 0; j < 3 * K; j += 5)
                ((uint16_t *)t.data)[j] = (uint16_t)(dsa_test_rng_next(&s) & 0x7bff);
        dsa_weight w = dsa_test_tw_slice(&t, 0, 0, 3, K);
        for (int64_t j0 = 0; j0 < K; j0 += M) {
            for (int64_t t2 = 0; t2 < M; t2++) {
                memset(x + t2 * K, 0, K * sizeof(float));
                x[t2 * K + j0 + t2] = 1.0f;
            }
            run_linear(be, &w, x, K, M, out);
            for (int64_t t2 = 0; t2 < M; t2++)
                for (int64_t n = 0; n < 3; n++) {
                    float want = dsa_weight_get(&w, n, j0 + t2);
                    cr_assert(out[t2 * 3 + n] == want,
                              "dtype %d m=%d W[%lld,%lld] got %a want %a", (int)dts[d], M,
                              (long long)n, (long long)(j0 + t2), out[t2 * 3 + n], want);
                }
            for (int64_t t2 = 0; t2 < M; t2++) {
                run_linear(be, &w, x + t2 * K, K, 1, out);
                for (int64_t n = 0; n < 3; n++) {
                    float want = dsa_weight_get(&w, n, j0 + t2);
                    cr_assert(out[n] == want, "dtype %d m=1 W[%lld,%lld] got %a want %a",
                              (int)dts[d], (long long)n, (long long)(j0 + t2), out[n], want);
                }
            }
        }
        dsa_test_tw_free(&t);
    }
    free(x);
    free(out);
    dsa_backend_destroy(be);
}

/* The routed experts through the moe op: a token's output must be the bits
 * it gets alone, whether its expert has 1 token (register path) or 12 (the
 * panel path), for each weight dtype, with and without accumulate.  This
 * failed when the weighted accumulating store was contracted into an FMA in
 * one path and not the other. */
Test(cpu_linear, moe_token_alone_equals_batched)
{
    enum { D = 64, I = 48, E = 3, T = 12, TOPK = 2 };
    static const dsa_dtype dts[] = {DSA_DTYPE_F32, DSA_DTYPE_BF16, DSA_DTYPE_F8_E4M3};
    uint64_t s = 5;
    dsa_backend *be = NULL;
    cr_assert_eq(dsa_backend_cpu_create(2, &be), DSA_OK);
    for (size_t d = 0; d < sizeof dts / sizeof dts[0]; d++) {
        dsa_test_tw tg[E], tu[E], td[E];
        dsa_expert ex[E];
        for (int e = 0; e < E; e++) {
            dsa_test_tw_make(&tg[e], dts[d], I, D, &s);
            dsa_test_tw_make(&tu[e], dts[d], I, D, &s);
            dsa_test_tw_make(&td[e], dts[d], D, I, &s);
            ex[e] = (dsa_expert){.gate = dsa_test_tw_slice(&tg[e], 0, 0, I, D),
                                 .up = dsa_test_tw_slice(&tu[e], 0, 0, I, D),
                                 .down = dsa_test_tw_slice(&td[e], 0, 0, D, I)};
        }
        float x[T * D], base[T * D], alone[T * D], all[T * D], wts[T * TOPK];
        int32_t ids[T * TOPK];
        for (int i = 0; i < T * D; i++) {
            x[i] = dsa_test_rng_f(&s);
            base[i] = dsa_test_rng_f(&s);
        }
        for (int t = 0; t < T; t++) { /* every token uses expert 0, and 1 or 2 */
            ids[t * TOPK] = 0;
            ids[t * TOPK + 1] = 1 + t % 2;
            wts[t * TOPK] = 0.5f + 0.3f * dsa_test_rng_f(&s);
            wts[t * TOPK + 1] = 0.7f + 0.2f * dsa_test_rng_f(&s);
        }
        for (int acc = 0; acc <= 1; acc++) {
            memcpy(alone, base, sizeof alone);
            memcpy(all, base, sizeof all);
            for (int t = 0; t < T; t++) {
                dsa_moe_params p = {.out = alone + t * D, .x = x + t * D, .ids = ids + t * TOPK,
                                    .weights = wts + t * TOPK, .experts = ex, .n_tokens = 1,
                                    .dim = D, .inter = I, .n_experts = E, .top_k = TOPK,
                                    .accumulate = acc};
                cr_assert_eq(be->ops->moe(be, &p), DSA_OK);
            }
            dsa_moe_params p = {.out = all, .x = x, .ids = ids, .weights = wts, .experts = ex,
                                .n_tokens = T, .dim = D, .inter = I, .n_experts = E,
                                .top_k = TOPK, .accumulate = acc};
            cr_assert_eq(be->ops->moe(be, &p), DSA_OK);
            for (int i = 0; i < T * D; i++)
                cr_assert(same_bits(all[i], alone[i]),
                          "dtype %d accumulate %d token %d col %d: %a alone %a", (int)dts[d], acc,
                          i / D, i % D, all[i], alone[i]);
        }
        for (int e = 0; e < E; e++) {
            dsa_test_tw_free(&tg[e]);
            dsa_test_tw_free(&tu[e]);
            dsa_test_tw_free(&td[e]);
        }
    }
    dsa_backend_destroy(be);
}
