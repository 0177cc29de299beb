/* test_lm_head.c - the FP8 copy of lm_head (worker/lm_head.c,
 * --lm-head-dtype fp8) on the tiny golden checkpoints (a BF16 head and a
 * tied F16 one):
 *   - the option's values: auto / fp8, anything else refused naming it;
 *   - the copy is e4m3 with one scale per 128 x 128 block equal to the
 *     block's largest |w| / 448, every element within e4m3's rounding of
 *     the original (half a unit in the last place: 2^-4 relative, or half
 *     the subnormal step), and the weight bytes drop by what was saved;
 *   - the descriptor is self-contained (slice origin 0, ld = cols);
 *   - --lm-head-dtype int8: one scale per row (largest |w| / 127), every
 *     element within half a step of the original, rows padded with zeros
 *     to 32; the CPU linear on it gives the bits of a scalar spelling of
 *     the int8 x int8 dot for m = 1..9 (batch invariance), and its logits
 *     stay within a measured relative L2 of the stored head's. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_internal.h"
#include "worker/lm_head.h"

Test(lm_head, dtype_values)
{
    dsa_lm_head_dtype d = DSA_LM_HEAD_FP8;
    cr_assert_eq(dsa_lm_head_dtype_parse(NULL, &d), DSA_OK);
    cr_assert_eq(d, DSA_LM_HEAD_AUTO);
    cr_assert_eq(dsa_lm_head_dtype_parse("auto", &d), DSA_OK);
    cr_assert_eq(d, DSA_LM_HEAD_AUTO);
    cr_assert_eq(dsa_lm_head_dtype_parse("fp8", &d), DSA_OK);
    cr_assert_eq(d, DSA_LM_HEAD_FP8);
    cr_assert_eq(dsa_lm_head_dtype_parse("int8", &d), DSA_OK);
    cr_assert_eq(d, DSA_LM_HEAD_INT8);
    const char *bad[] = {"INT8", "FP8", "bf16", ""};
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(dsa_lm_head_dtype_parse(bad[i], &d), DSA_INVAL, "%s", bad[i]);
        cr_assert(strstr(dsa_errmsg(), "--lm-head-dtype") != NULL, "%s", dsa_errmsg());
    }
}

static void check_copy(const char *name)
{
    char dir[4096];
    const char *data = getenv("DSA_TEST_DATA");
    cr_assert(data, "DSA_TEST_DATA unset");
    snprintf(dir, sizeof dir, "%s/golden/%s", data, name);
    dsa_weights *w = NULL;
    cr_assert_eq(dsa_weights_load(dir, NULL, &w), DSA_OK, "%s: %s", dir, dsa_errmsg());
    dsa_weight orig = w->lm_head;
    cr_assert_neq(orig.dtype, DSA_DTYPE_F8_E4M3);
    int64_t V = orig.rows, D = orig.cols;
    float *ref = malloc((size_t)(V * D) * sizeof(float));
    for (int64_t i = 0; i < V; i++)
        for (int64_t j = 0; j < D; j++)
            ref[i * D + j] = dsa_weight_get(&orig, i, j);
    uint64_t bytes = w->bytes;
    cr_assert_eq(dsa_weights_lm_head_fp8(w), DSA_OK, "%s", dsa_errmsg());
    const dsa_weight *q = &w->lm_head;
    cr_assert_eq(q->dtype, DSA_DTYPE_F8_E4M3);
    cr_assert_eq(q->rows, V);
    cr_assert_eq(q->cols, D);
    cr_assert_eq(q->ld, D);
    cr_assert_eq(q->row0, 0);
    cr_assert_eq(q->col0, 0);
    cr_assert_eq(bytes - w->bytes, (uint64_t)(V * D) * (dsa_dtype_size(orig.dtype) - 1));
    for (int64_t bi = 0; bi < V; bi += 128)
        for (int64_t bj = 0; bj < D; bj += 128) {
            float amax = 0.0f;
            for (int64_t i = bi; i < V && i < bi + 128; i++)
                for (int64_t j = bj; j < D && j < bj + 128; j++)
                    amax = fmaxf(amax, fabsf(ref[i * D + j]));
            float s = q->scale[(bi / 128) * q->scale_ld + bj / 128];
            cr_assert_eq(s, amax > 0 ? amax / 448.0f : 1.0f, "%s block (%lld, %lld)", name,
                         (long long)bi, (long long)bj);
            for (int64_t i = bi; i < V && i < bi + 128; i++)
                for (int64_t j = bj; j < D && j < bj + 128; j++) {
                    float want = ref[i * D + j], got = dsa_weight_get(q, i, j);
                    float tol = fmaxf(fabsf(want) * 0.0625f, s * 0x1p-10f);
                    cr_assert(fabsf(got - want) <= tol, "%s (%lld, %lld): %g vs %g", name,
                              (long long)i, (long long)j, got, want);
                }
        }
    free(ref);
    dsa_weights_free(w);
}

Test(lm_head, fp8_copy_bf16_head)
{
    check_copy("tiny-bf16");
}

Test(lm_head, fp8_copy_tied_f16_head)
{
    check_copy("qwen2-f16-tied");
}

static dsa_weights *load(const char *name)
{
    char dir[4096];
    const char *data = getenv("DSA_TEST_DATA");
    cr_assert(data, "DSA_TEST_DATA unset");
    snprintf(dir, sizeof dir, "%s/golden/%s", data, name);
    dsa_weights *w = NULL;
    cr_assert_eq(dsa_weights_load(dir, NULL, &w), DSA_OK, "%s: %s", dir, dsa_errmsg());
    return w;
}

static void check_int8(const char *name)
{
    dsa_weights *w = load(name);
    dsa_weight orig = w->lm_head;
    int64_t V = orig.rows, D = orig.cols, m = 9;
    float *ref = malloc((size_t)(V * D) * sizeof(float));
    for (int64_t i = 0; i < V; i++)
        for (int64_t j = 0; j < D; j++)
            ref[i * D + j] = dsa_weight_get(&orig, i, j);
    cr_assert_eq(dsa_weights_lm_head_int8(w), DSA_OK, "%s", dsa_errmsg());
    const dsa_weight *q = &w->lm_head;
    cr_assert_eq(q->dtype, DSA_DTYPE_I8);
    cr_assert_eq(q->rows, V);
    cr_assert_eq(q->cols, D);
    cr_assert_eq(q->ld % 32, 0);
    for (int64_t i = 0; i < V; i++) {
        float amax = 0.0f;
        for (int64_t j = 0; j < D; j++)
            amax = fmaxf(amax, fabsf(ref[i * D + j]));
        float s = q->scale[i];
        cr_assert_eq(s, amax > 0 ? amax / 127.0f : 1.0f, "%s row %lld", name, (long long)i);
        for (int64_t j = 0; j < q->ld; j++) {
            if (j >= D) {
                cr_assert_eq(((const int8_t *)q->data)[i * q->ld + j], 0);
                continue;
            }
            float got = dsa_weight_get(q, i, j), want = ref[i * D + j];
            cr_assert(fabsf(got - want) <= 0.5f * s * 1.0001f, "%s (%lld, %lld): %g vs %g", name,
                      (long long)i, (long long)j, got, want);
        }
    }
    /* the linear: bits of the scalar spelling for every m, error vs stored */
    dsa_backend *be;
    cr_assert_eq(dsa_backend_cpu_create(2, &be), DSA_OK);
    dsa_weight qw = *q;
    cr_assert_eq(be->ops->weight_prepare(be, &qw), DSA_OK, "%s", dsa_errmsg());
    float *x = malloc((size_t)(m * D) * 4), *y = malloc((size_t)(m * V) * 4);
    float *want = malloc((size_t)(m * V) * 4);
    uint32_t st = 7;
    for (int64_t i = 0; i < m * D; i++) {
        st = st * 1664525u + 1013904223u;
        x[i] = (float)(st >> 8) / 8388608.0f - 1.0f;
    }
    dsa_cpu_scratch sc = {0};
    dsa_cpu_gemm g = {.out = want, .x = x, .w = &qw, .m = m, .ld_x = D, .ld_out = V};
    cr_assert_eq(dsa_cpu_i8_gemm_rows_scalar(&g, 0, V, &sc), DSA_OK);
    for (int k = 0; k < DSA_CPU_SCR_COUNT; k++)
        free(sc.buf[k]);
    for (int64_t mm = 1; mm <= m; mm++) {
        dsa_linear_params p = {.out = y, .x = x, .w = &qw, .m = mm, .ld_x = D, .ld_out = V,
                               .out_f32 = 1};
        cr_assert_eq(be->ops->linear(be, &p), DSA_OK);
        cr_assert_eq(memcmp(y, want, (size_t)(mm * V) * 4), 0, "%s m %lld", name, (long long)mm);
    }
    double num = 0, den = 0;
    for (int64_t t = 0; t < m; t++)
        for (int64_t i = 0; i < V; i++) {
            double r = 0;
            for (int64_t j = 0; j < D; j++)
                r += (double)x[t * D + j] * ref[i * D + j];
            num += (want[t * V + i] - r) * (want[t * V + i] - r);
            den += r * r;
        }
    double rel = sqrt(num / den);
    fprintf(stderr, "%s: int8 head (int8 activations) logits relative L2 %.3g\n", name, rel);
    cr_assert(rel < 0.02, "%s: rel L2 %g", name, rel);
    cr_assert(rel > 0, "%s: no quantisation error at all?", name);
    free(x);
    free(y);
    free(want);
    free(ref);
    dsa_backend_destroy(be);
    dsa_weights_free(w);
}

Test(lm_head, int8_copy_bf16_head)
{
    check_int8("tiny-bf16");
}

Test(lm_head, int8_copy_tied_f16_head)
{
    check_int8("qwen2-f16-tied");
}

Test(lm_head, int8_refuses_an_awq_head)
{
    dsa_weights *w = load("llama-awq");
    if (w->lm_head.dtype == DSA_DTYPE_I32) {
        cr_assert_eq(dsa_weights_lm_head_int8(w), DSA_UNSUPPORTED);
        cr_assert(strstr(dsa_errmsg(), "--lm-head-dtype int8") != NULL, "%s", dsa_errmsg());
    } else {
        cr_assert_eq(dsa_weights_lm_head_int8(w), DSA_OK, "%s", dsa_errmsg());
        cr_assert_eq(w->lm_head.dtype, DSA_DTYPE_I8);
    }
    dsa_weights_free(w);
}
