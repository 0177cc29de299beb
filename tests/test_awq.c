/* test_awq.c - AWQ int4 weights on the CPU backend (kernels/cpu/cpu_awq.c)
 * and the paged GQA attention op (kernels/cpu/cpu_gqa.c), against
 * references written here from the definitions:
 *   - dsa_weight_get on AWQ equals a dequantisation that unpacks AutoAWQ's
 *     nibble order (0,2,4,6,1,3,5,7) independently;
 *   - the linear op equals the naive product for 1..9 tokens, on whole
 *     weights and on TP slices (output words, input groups), odd word
 *     counts included, with accumulate;
 *   - every path gives the bits of one spelt-out accumulation order for
 *     m = 1..17 (batch invariance);
 *   - gqa_attn equals a naive softmax attention for GQA ratios 1, 3, 4
 *     over a paged cache with scattered blocks. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/dtype.h"
#include "kernels/backend.h"
#include "tests/awq_mat.h"


Test(awq, weight_get_matches_unpacking)
{
    awq_mat a;
    awq_make(&a, 40, 64, 16);
    dsa_weight w = awq_view(&a, 0, 40, 0, 64);
    for (int64_t i = 0; i < 40; i++)
        for (int64_t j = 0; j < 64; j++)
            cr_assert_eq(dsa_weight_get(&w, i, j), a.ref[i * 64 + j], "(%lld, %lld)",
                         (long long)i, (long long)j);
    awq_free(&a);
}

static void check_linear(dsa_backend *be, const awq_mat *a, int64_t r0, int64_t nr, int64_t c0,
                         int64_t nc, int64_t m, int accumulate)
{
    dsa_weight w = awq_view(a, r0, nr, c0, nc);
    float *x = malloc((size_t)(m * nc) * 4), *y = malloc((size_t)(m * nr) * 4);
    float *want = malloc((size_t)(m * nr) * 4);
    for (int64_t i = 0; i < m * nc; i++)
        x[i] = awq_rndf();
    for (int64_t i = 0; i < m * nr; i++)
        y[i] = want[i] = accumulate ? awq_rndf() : 0.0f;
    for (int64_t t = 0; t < m; t++)
        for (int64_t i = 0; i < nr; i++) {
            double s = 0;
            for (int64_t j = 0; j < nc; j++)
                s += (double)x[t * nc + j] * a->ref[(r0 + i) * a->C + c0 + j];
            want[t * nr + i] = (float)(want[t * nr + i] + s);
        }
    dsa_linear_params p = {.out = y, .x = x, .w = &w, .m = m, .ld_x = nc, .ld_out = nr,
                           .accumulate = accumulate};
    cr_assert_eq(be->ops->linear(be, &p), DSA_OK);
    for (int64_t i = 0; i < m * nr; i++)
        cr_assert(fabsf(y[i] - want[i]) <= 1e-4f * (1.0f + fabsf(want[i])),
                  "m %lld slice r%lld+%lld c%lld+%lld acc %d: [%lld] %g vs %g", (long long)m,
                  (long long)r0, (long long)nr, (long long)c0, (long long)nc, accumulate,
                  (long long)i, y[i], want[i]);
    free(x);
    free(y);
    free(want);
}

Test(awq, linear_matches_naive_product)
{
    dsa_backend *be;
    cr_assert_eq(dsa_backend_cpu_create(2, &be), DSA_OK);
    awq_mat a;
    awq_make(&a, 200, 96, 32); /* 25 words: chunks of 8 and a ragged 1 */
    for (int64_t m = 1; m <= 9; m++) {
        check_linear(be, &a, 0, 200, 0, 96, m, 0);
        check_linear(be, &a, 104, 96, 0, 96, m, m & 1); /* column-parallel slice */
        check_linear(be, &a, 0, 200, 32, 64, m, 0);      /* row-parallel slice */
    }
    awq_free(&a);
    dsa_backend_destroy(be);
}

/* The accumulation order of cpu_awq.c spelt in scalar C: per output and
 * group, acc = FMA chain over the group's inputs in order, xs = 8 lanes of
 * x summed in order then (0+4 + 2+6) + (1+5 + 3+7) then the tail, and
 * y = fma(s, fma(-z, xs, acc), y) group by group; the store is v * alpha
 * or fmaf(v, alpha, out). */
static float awq_order_ref(const awq_mat *a, int64_t o, int64_t c0, int64_t nc, const float *x)
{
    float y = 0.0f;
    for (int64_t j = 0; j < nc;) {
        int64_t gi = (c0 + j) / a->g, end = (gi + 1) * a->g - c0;
        if (end > nc)
            end = nc;
        int64_t w = o / 8, k = 0;
        while (awq_order[k] != o % 8)
            k++;
        float acc = 0.0f, l[8] = {0};
        for (int64_t n = j; n < end; n++) {
            uint32_t q = ((uint32_t)a->q[(c0 + n) * (a->R / 8) + w] >> (4 * k)) & 15u;
            acc = fmaf(x[n], (float)q, acc);
        }
        int64_t n = j;
        for (; n + 8 <= end; n += 8)
            for (int i = 0; i < 8; i++)
                l[i] = l[i] + x[n + i];
        float xs = ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
        for (; n < end; n++)
            xs = xs + x[n];
        float z = (float)(((uint32_t)a->z[gi * (a->R / 8) + w] >> (4 * k)) & 15u);
        float sc = dsa_f16_to_f32(a->s[gi * a->R + o]);
        y = fmaf(sc, fmaf(-z, xs, acc), y);
        j = end;
    }
    return y;
}

/* Every path (one token in registers, several through the panel, any
 * tile remainder) gives each (token, output) the bits of the order above,
 * so a token's outputs do not depend on its batch: m = 1..17, whole
 * weights and TP slices, groups cut by the slice start and ragged groups
 * (20 inputs: 8 + 8 + 4), a ragged last block of words, with and
 * without accumulate. */
Test(awq, every_path_same_bits_any_batch)
{
    dsa_backend *be;
    cr_assert_eq(dsa_backend_cpu_create(2, &be), DSA_OK);
    static const struct {
        int64_t R, C, g, r0, nr, c0, nc;
    } cases[] = {
        {200, 96, 32, 0, 200, 0, 96},   /* 25 words: 3 blocks and a ragged one */
        {200, 96, 32, 104, 96, 0, 96},  /* column-parallel slice */
        {200, 96, 32, 0, 200, 40, 56},  /* row-parallel slice cutting a group */
        {136, 100, 20, 0, 136, 0, 100}, /* ragged groups */
        {1024, 256, 128, 0, 1024, 0, 256},
        {16392, 64, 32, 0, 16392, 0, 64}, /* wide rows (2,049 words), a ragged word at the end */
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        awq_mat a;
        awq_make(&a, cases[ci].R, cases[ci].C, cases[ci].g);
        int64_t nr = cases[ci].nr, nc = cases[ci].nc, r0 = cases[ci].r0, c0 = cases[ci].c0;
        dsa_weight w = awq_view(&a, r0, nr, c0, nc);
        enum { M = 17 };
        float *x = malloc((size_t)(M * nc) * 4), *y = malloc((size_t)(M * nr) * 4);
        float *init = malloc((size_t)(M * nr) * 4);
        for (int64_t i = 0; i < M * nc; i++)
            x[i] = awq_rndf();
        for (int64_t i = 0; i < M * nr; i++)
            init[i] = awq_rndf();
        for (int mode = 0; mode < 2; mode++)
            for (int m = 1; m <= M; m++) {
                memcpy(y, init, (size_t)(M * nr) * 4);
                dsa_linear_params p = {.out = y, .x = x, .w = &w, .m = m, .ld_x = nc, .ld_out = nr};
                p.accumulate = mode;
                cr_assert_eq(be->ops->linear(be, &p), DSA_OK);
                for (int t = 0; t < m; t++)
                    for (int64_t i = 0; i < nr; i++) {
                        float v = awq_order_ref(&a, r0 + i, c0, nc, x + t * nc);
                        float want = mode ? fmaf(v, 1.0f, init[t * nr + i]) : v;
                        float got = y[t * nr + i];
                        cr_assert(memcmp(&got, &want, 4) == 0,
                                  "case %zu mode %d m %d token %d row %lld: %a want %a", ci, mode,
                                  m, t, (long long)i, got, want);
                    }
            }
        free(x);
        free(y);
        free(init);
        awq_free(&a);
    }
    dsa_backend_destroy(be);
}

Test(awq, gqa_attention_matches_naive)
{
    dsa_backend *be;
    cr_assert_eq(dsa_backend_cpu_create(2, &be), DSA_OK);
    const int64_t bs = 4, nb = 16, hd = 12;
    int64_t ratios[][2] = {{3, 3}, {6, 2}, {4, 1}};
    for (int c = 0; c < 3; c++) {
        int64_t H = ratios[c][0], KV = ratios[c][1], width = 2 * KV * hd;
        float *cache = malloc((size_t)(nb * bs * width) * 4);
        for (int64_t i = 0; i < nb * bs * width; i++)
            cache[i] = awq_rndf();
        dsa_kv_layer kv = {.data = cache, .n_blocks = nb, .block_size = bs, .width = width};
        /* two sequences, blocks in scattered order */
        int32_t bt[2][8] = {{5, 2, 9, 0, 7, 1, 3, 4}, {15, 14, 8, 6, 12, 10, 11, 13}};
        int32_t seq[3] = {0, 1, 1}, pos[3] = {13, 0, 22};
        float q[3 * 6 * 12], out[3 * 6 * 12];
        for (int64_t i = 0; i < 3 * H * hd; i++)
            q[i] = awq_rndf();
        dsa_gqa_attn_params p = {.out = out, .q = q, .ld_q = H * hd, .cache = &kv, .seq = seq,
                                 .pos = pos, .block_tables = &bt[0][0], .ld_block_table = 8,
                                 .n_tokens = 3, .n_heads = H, .n_kv_heads = KV, .head_dim = hd,
                                 .scale = 0.3f};
        cr_assert_eq(be->ops->gqa_attn(be, &p), DSA_OK);
        for (int64_t t = 0; t < 3; t++)
            for (int64_t h = 0; h < H; h++) {
                int64_t g = h / (H / KV), n = pos[t] + 1;
                double sc[32], mx = -1e30, sum = 0;
                for (int64_t j = 0; j < n; j++) {
                    const float *k = cache + ((int64_t)bt[seq[t]][j / bs] * bs + j % bs) * width +
                                     g * hd;
                    double d = 0;
                    for (int64_t i = 0; i < hd; i++)
                        d += (double)q[(t * H + h) * hd + i] * k[i];
                    sc[j] = 0.3 * d;
                    mx = sc[j] > mx ? sc[j] : mx;
                }
                for (int64_t j = 0; j < n; j++)
                    sum += (sc[j] = exp(sc[j] - mx));
                for (int64_t i = 0; i < hd; i++) {
                    double o = 0;
                    for (int64_t j = 0; j < n; j++)
                        o += sc[j] / sum *
                             cache[((int64_t)bt[seq[t]][j / bs] * bs + j % bs) * width +
                                   KV * hd + g * hd + i];
                    cr_assert(fabs(out[(t * H + h) * hd + i] - o) < 1e-5,
                              "H %lld KV %lld token %lld head %lld", (long long)H, (long long)KV,
                              (long long)t, (long long)h);
                }
            }
        free(cache);
    }
    dsa_backend_destroy(be);
}
