/* test_lm_head.c - the FP8 copy of lm_head (worker/lm_head.c,
 * --lm-head-dtype fp8) on the tiny golden checkpoints (a BF16 head and a
 * tied F16 one):
 *   - the option's values: auto / fp8, anything else refused naming it;
 *   - the copy is e4m3 with one scale per 128 x 128 block equal to the
 *     block's largest |w| / 448, every element within e4m3's rounding of
 *     the original (half a unit in the last place: 2^-4 relative, or half
 *     the subnormal step), and the weight bytes drop by what was saved;
 *   - the descriptor is self-contained (slice origin 0, ld = cols). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    const char *bad[] = {"int8", "FP8", "bf16", ""};
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
