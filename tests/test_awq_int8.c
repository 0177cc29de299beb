/* test_awq_int8.c - AWQ int4 linears with int8 activations
 * (--cpu-int8-activations, kernels/cpu/cpu_awq_int8.c) against references
 * written here from AutoAWQ's packed tensors:
 *   - the repack holds every weight: q * s + (-z * s) == dsa_weight_get;
 *   - the linear op gives, for m = 1..17 tokens, the bits of one scalar
 *     spelling of the integer math (one int8 scale per AWQ group, exact
 *     int32 lane sums, the fixed combine order of the kernel's file
 *     comment), on whole weights, TP slices, ragged last groups and groups
 *     of 32, 64, 128 and 256; so a token's outputs are the same bits alone
 *     or batched;
 *   - its error against the F32 product is bounded (relative L2 reported);
 *   - the option off keeps the default path (the bits of the F32 kernel);
 *   - weight_release frees the repack (ASan). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/dtype.h"
#include "kernels/backend.h"
#include "tests/awq_mat.h"
#include "kernels/cpu/cpu_internal.h"



/* x[0, n) as the kernel must quantise it: one block per group from the
 * slice's first input, d = amax / 127, q = round-to-nearest-even(x * 127 /
 * amax), zero-padded to whole groups.  A finite product is within +-127;
 * a NaN one (NaN or infinite inputs) is lrintf's out-of-range value,
 * clamped to -127. */
static void q8_ref(const float *x, int64_t n, int64_t g, int8_t *q, float *d, int32_t *xs)
{
    for (int64_t b = 0; b * g < n; b++) {
        float amax = 0.0f;
        for (int64_t j = b * g; j < n && j < b * g + g; j++)
            amax = fmaxf(amax, fabsf(x[j]));
        float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
        xs[b] = 0;
        for (int64_t j = b * g; j < b * g + g; j++) {
            long v = j < n ? lrintf(x[j] * inv) : 0;
            cr_assert(j >= n || isnan(x[j] * inv) || (v >= -127 && v <= 127));
            v = v > 127 ? 127 : v < -127 ? -127 : v;
            q[j] = (int8_t)v;
            xs[b] += (int32_t)v;
        }
        d[b] = amax / 127.0f;
    }
}

/* Output o of slice [c0, c0 + nc) for one token, in the kernel's order,
 * reading the nibbles from AutoAWQ's words. */
static float int8_order_ref(const awq_mat *a, int64_t o, int64_t c0, int64_t nc, const float *x)
{
    int64_t ng = (nc + a->g - 1) / a->g, kp = ng * a->g, w = o / 8, k = 0;
    while (awq_order[k] != o % 8)
        k++;
    int8_t *q = calloc((size_t)kp, 1);
    float *d = calloc((size_t)ng, sizeof(float));
    int32_t *xs = calloc((size_t)ng, sizeof(int32_t));
    q8_ref(x, nc, a->g, q, d, xs);
    float acc[8] = {0}, corr = 0.0f;
    for (int64_t gi = 0; gi < ng; gi++) {
        int32_t I[8] = {0}; /* lane l: inputs 4l..4l+3 of each 32 in the group */
        for (int64_t j = gi * a->g; j < (gi + 1) * a->g; j++) {
            int32_t wq = j < nc ? (int32_t)(((uint32_t)a->q[(c0 + j) * (a->R / 8) + w] >>
                                             (4 * k)) & 15u) : 0;
            I[(j % 32) / 4] += wq * q[j];
        }
        int64_t sg = c0 / a->g + gi;
        float sc = dsa_f16_to_f32(a->s[sg * a->R + o]);
        float z = (float)(((uint32_t)a->z[sg * (a->R / 8) + w] >> (4 * k)) & 15u);
        for (int l = 0; l < 8; l++)
            acc[l] = fmaf((float)I[l], d[gi] * sc, acc[l]);
        corr = fmaf(-(z * sc), d[gi] * (float)xs[gi], corr);
    }
    free(q);
    free(d);
    free(xs);
    return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7])) + corr;
}

Test(awq_int8, repack_holds_every_weight)
{
    awq_mat a;
    awq_make(&a, 72, 384, 128);
    dsa_weight w = awq_view(&a, 8, 64, 128, 200); /* last group ragged (72 of 128) */
    dsa_cpu_awq8 *p;
    cr_assert_eq(dsa_cpu_awq8_create(&w, &p), DSA_OK);
    cr_assert_eq(p->n_groups, 2);
    for (int64_t i = 0; i < 64; i++)
        for (int64_t j = 0; j < 200; j++) {
            int64_t gi = j / 128, k = j % 128;
            uint8_t byte = p->q[i * p->row_bytes + (j / 64) * 32 + j % 32];
            int v = j % 64 < 32 ? byte & 15 : byte >> 4;
            (void)k;
            float got = (float)v * p->s[i * 2 + gi] + p->zs[i * 2 + gi];
            cr_assert_eq(got, dsa_weight_get(&w, i, j), "(%lld, %lld)", (long long)i, (long long)j);
        }
    /* a slice starting inside a group has no repack */
    dsa_weight cut = awq_view(&a, 0, 72, 64, 128);
    dsa_cpu_awq8 *none = NULL;
    cr_assert_eq(dsa_cpu_awq8_create(&cut, &none), DSA_UNSUPPORTED);
    cr_assert_null(none);
    dsa_cpu_awq8_destroy(p);
    awq_free(&a);
}

static dsa_backend *int8_backend(int on)
{
    dsa_backend *be;
    cr_assert_eq(dsa_backend_cpu_create(2, &be), DSA_OK);
    dsa_backend_cpu_set_int8_activations(be, on);
    return be;
}

Test(awq_int8, every_path_same_bits_any_batch)
{
    dsa_backend *be = int8_backend(1);
    static const struct {
        int64_t R, C, g, r0, nr, c0, nc;
    } cases[] = {
        {200, 256, 128, 0, 200, 0, 256},    /* 25 words, two groups */
        {200, 384, 128, 104, 96, 0, 384},   /* column-parallel slice */
        {200, 384, 128, 0, 200, 128, 256},  /* row-parallel slice */
        {136, 384, 128, 0, 136, 128, 200},  /* ragged last group: 72 inputs */
        {64, 448, 64, 0, 64, 0, 448},       /* group 64: 7 groups */
        {40, 768, 256, 0, 40, 0, 700},      /* group 256: 3 groups, the last ragged */
        {48, 160, 32, 0, 48, 32, 96},       /* group 32: 3 groups, a half chunk at the end */
        {904, 896, 128, 0, 904, 0, 896},    /* Qwen2-0.5B's width, ragged chunks */
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        awq_mat a;
        awq_make(&a, cases[ci].R, cases[ci].C, cases[ci].g);
        int64_t nr = cases[ci].nr, nc = cases[ci].nc, r0 = cases[ci].r0, c0 = cases[ci].c0;
        dsa_weight w = awq_view(&a, r0, nr, c0, nc);
        cr_assert_eq(be->ops->weight_prepare(be, &w), DSA_OK);
        cr_assert_not_null(w.awq8, "case %zu: no repack", ci);
        enum { M = 17 };
        float *x = malloc((size_t)(M * nc) * 4), *y = malloc((size_t)(M * nr) * 4);
        float *init = malloc((size_t)(M * nr) * 4), *want = malloc((size_t)(M * nr) * 4);
        for (int64_t i = 0; i < M * nc; i++)
            x[i] = awq_rndf() * (i % 7 == 0 ? 8.0f : 1.0f); /* outliers set block scales */
        for (int64_t i = 0; i < M * nr; i++)
            init[i] = awq_rndf();
        for (int t = 0; t < M; t++)
            for (int64_t i = 0; i < nr; i++)
                want[t * nr + i] = int8_order_ref(&a, r0 + i, c0, nc, x + t * nc);
        for (int mode = 0; mode < 2; mode++)
            for (int m = 1; m <= M; m++) {
                memcpy(y, init, (size_t)(M * nr) * 4);
                dsa_linear_params p = {.out = y, .x = x, .w = &w, .m = m, .ld_x = nc,
                                       .ld_out = nr, .accumulate = mode};
                cr_assert_eq(be->ops->linear(be, &p), DSA_OK);
                for (int t = 0; t < m; t++)
                    for (int64_t i = 0; i < nr; i++) {
                        float v = want[t * nr + i];
                        float e = mode ? fmaf(v, 1.0f, init[t * nr + i]) : v;
                        float got = y[t * nr + i];
                        cr_assert(memcmp(&got, &e, 4) == 0,
                                  "case %zu mode %d m %d token %d row %lld: %a want %a", ci,
                                  mode, m, t, (long long)i, got, e);
                    }
            }
        /* the kernel's own scalar spelling agrees too (machines without AVX2) */
        dsa_cpu_scratch s = {0};
        dsa_cpu_gemm g = {.out = y, .x = x, .w = &w, .m = 5, .ld_x = nc, .ld_out = nr};
        cr_assert_eq(dsa_cpu_awq8_gemm_rows_scalar(&g, 0, nr, &s), DSA_OK);
        for (int64_t i = 0; i < 5 * nr; i++)
            cr_assert(memcmp(&y[i], &want[i], 4) == 0, "scalar case %zu [%lld]", ci, (long long)i);
        for (int k = 0; k < DSA_CPU_SCR_COUNT; k++)
            free(s.buf[k]);
        be->ops->weight_release(be, &w);
        cr_assert_null(w.awq8);
        free(x);
        free(y);
        free(init);
        free(want);
        awq_free(&a);
    }
    dsa_backend_destroy(be);
}

/* The int8 activations' error against the F32 path (the reference
 * numerics), as relative L2 over all outputs, on Qwen2-0.5B-like widths
 * with activations of RMSNorm scale and a few outliers. */
Test(awq_int8, error_against_f32_path_bounded)
{
    dsa_backend *on = int8_backend(1), *off = int8_backend(0);
    /* {rows, cols, outlier factor every 97th input, bound}: the bound is
     * about twice what was measured (0.4% without outliers, 1.1% with) */
    static const struct {
        int64_t R, C;
        float outlier;
        double bound;
    } shapes[] = {{896, 896, 1.0f, 1e-2}, {512, 4864, 1.0f, 1e-2},
                  {896, 896, 20.0f, 2.5e-2}, {512, 4864, 20.0f, 2.5e-2}};
    for (int si = 0; si < 4; si++) {
        int64_t R = shapes[si].R, C = shapes[si].C, m = 4;
        awq_mat a;
        awq_make(&a, R, C, 128);
        dsa_weight w8 = awq_view(&a, 0, R, 0, C), wf = w8;
        cr_assert_eq(on->ops->weight_prepare(on, &w8), DSA_OK);
        cr_assert_eq(off->ops->weight_prepare(off, &wf), DSA_OK);
        cr_assert_null(wf.awq8, "the option off must not repack");
        float *x = malloc((size_t)(m * C) * 4), *y8 = malloc((size_t)(m * R) * 4);
        float *yf = malloc((size_t)(m * R) * 4), *yd = malloc((size_t)(m * R) * 4);
        for (int64_t i = 0; i < m * C; i++)
            x[i] = awq_rndf() * (i % 97 == 0 ? shapes[si].outlier : 1.0f);
        dsa_linear_params p8 = {.out = y8, .x = x, .w = &w8, .m = m, .ld_x = C, .ld_out = R};
        dsa_linear_params pf = p8;
        pf.out = yf, pf.w = &wf;
        cr_assert_eq(on->ops->linear(on, &p8), DSA_OK);
        cr_assert_eq(off->ops->linear(off, &pf), DSA_OK);
        /* the default path is untouched: the F32 kernel's bits */
        dsa_weight plain = awq_view(&a, 0, R, 0, C);
        dsa_linear_params pd = pf;
        pd.out = yd, pd.w = &plain;
        cr_assert_eq(off->ops->linear(off, &pd), DSA_OK);
        cr_assert_eq(memcmp(yd, yf, (size_t)(m * R) * 4), 0);
        double num = 0, den = 0;
        for (int64_t i = 0; i < m * R; i++) {
            num += ((double)y8[i] - yf[i]) * ((double)y8[i] - yf[i]);
            den += (double)yf[i] * yf[i];
        }
        double rel = sqrt(num / den);
        fprintf(stderr, "awq_int8: %lld x %lld (outliers x%g) relative L2 error against F32: %.3g\n",
                (long long)R, (long long)C, (double)shapes[si].outlier, rel);
        cr_assert(rel < shapes[si].bound, "relative L2 %g", rel);
        cr_assert(rel > 0.0, "int8 path gave the F32 bits: did it run?");
        on->ops->weight_release(on, &w8);
        free(x);
        free(y8);
        free(yf);
        free(yd);
        awq_free(&a);
    }
    dsa_backend_destroy(on);
    dsa_backend_destroy(off);
}

/* The activation quantiser (dsa_cpu_q8_row, blocks of 32; vectorised for
 * whole blocks) against the scalar rule, to the bit: random magnitudes, an
 * all-zero block, -0, a partial last block, and NaN / infinity inputs
 * (clamped to -127 as lrintf's out-of-range result is). */
Test(awq_int8, activation_quantiser_same_bits_as_scalar)
{
    enum { N = 32 * 7 + 13, NP = 32 * 8 };
    float x[N];
    uint32_t st = 12345;
    for (int case_ = 0; case_ < 6; case_++) {
        for (int j = 0; j < N; j++) {
            st = st * 1664525u + 1013904223u;
            float u = (float)(st >> 8) / 16777216.0f - 0.5f;
            x[j] = u * ldexpf(1.0f, (j / 32) * 3 - 8 + case_);
        }
        for (int j = 32; j < 64; j++)
            x[j] = 0.0f;
        x[64] = -0.0f;
        if (case_ == 4) {
            x[70] = NAN;
            x[100] = INFINITY;
            x[140] = -INFINITY;
        }
        int8_t q[NP], qr[NP];
        float d[NP / 32], dr[NP / 32];
        int32_t xs[NP / 32], xr[NP / 32];
        dsa_cpu_q8_row(x, N, NP, q, d, xs);
        q8_ref(x, N, 32, qr, dr, xr);
        for (int j = 0; j < NP; j++)
            cr_assert_eq(q[j], qr[j], "case %d input %d: %d, want %d", case_, j, q[j], qr[j]);
        for (int b = 0; b < NP / 32; b++) {
            cr_assert_eq(xs[b], xr[b], "case %d block %d", case_, b);
            cr_assert(memcmp(&d[b], &dr[b], sizeof(float)) == 0, "case %d block %d: d %a, want %a",
                      case_, b, (double)d[b], (double)dr[b]);
        }
    }
}
