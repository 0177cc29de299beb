/* awq_mat.c - random AutoAWQ matrices for the AWQ kernel tests (awq_mat.h). */
#include "tests/awq_mat.h"

#include <stdlib.h>

#include "common/dtype.h"

static uint32_t rng_state = 12345;
uint32_t awq_rnd(void)
{
    rng_state = rng_state * 1664525u + 1013904223u;
    return rng_state >> 8;
}
float awq_rndf(void)
{
    return (float)(awq_rnd() % 20001) / 10000.0f - 1.0f;
}

const int awq_order[8] = {0, 2, 4, 6, 1, 3, 5, 7};

void awq_make(awq_mat *a, int64_t R, int64_t C, int64_t g)
{
    a->R = R, a->C = C, a->g = g;
    a->q = calloc((size_t)(C * R / 8), 4);
    a->z = calloc((size_t)(C / g * R / 8), 4);
    a->s = malloc((size_t)(C / g * R) * 2);
    a->ref = malloc((size_t)(R * C) * 4);
    int *qv = malloc((size_t)(R * C) * sizeof(int)), *zv = malloc((size_t)(R * C / g) * sizeof(int));
    for (int64_t n = 0; n < C; n++)
        for (int64_t o = 0; o < R; o++)
            qv[n * R + o] = (int)(awq_rnd() % 16);
    for (int64_t gi = 0; gi < C / g; gi++)
        for (int64_t o = 0; o < R; o++) {
            zv[gi * R + o] = (int)(awq_rnd() % 16);
            a->s[gi * R + o] = dsa_f32_to_f16(0.01f + 0.05f * (float)(awq_rnd() % 100) / 100.0f);
        }
    /* pack: nibble k of word w holds column w*8 + awq_order[k] */
    for (int64_t w = 0; w < R / 8; w++)
        for (int k = 0; k < 8; k++) {
            int64_t o = w * 8 + awq_order[k];
            for (int64_t n = 0; n < C; n++)
                a->q[n * (R / 8) + w] |= (int32_t)((uint32_t)qv[n * R + o] << (4 * k));
            for (int64_t gi = 0; gi < C / g; gi++)
                a->z[gi * (R / 8) + w] |= (int32_t)((uint32_t)zv[gi * R + o] << (4 * k));
        }
    for (int64_t o = 0; o < R; o++)
        for (int64_t n = 0; n < C; n++)
            a->ref[o * C + n] = (float)(qv[n * R + o] - zv[(n / g) * R + o]) *
                                dsa_f16_to_f32(a->s[(n / g) * R + o]);
    free(qv);
    free(zv);
}

void awq_free(awq_mat *a)
{
    free(a->q);
    free(a->z);
    free(a->s);
    free(a->ref);
}

dsa_weight awq_view(const awq_mat *a, int64_t r0, int64_t nr, int64_t c0, int64_t nc)
{
    dsa_weight w = {.dtype = DSA_DTYPE_I32, .rows = nr, .cols = nc, .ld = a->R / 8,
                    .data = a->q, .row0 = r0, .col0 = c0, .awq_zeros = a->z,
                    .awq_scales = a->s, .awq_group = a->g};
    return w;
}
