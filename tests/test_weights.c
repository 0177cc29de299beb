/* test_weights.c - see test_weights.h. */
#include "tests/test_weights.h"

#include <criterion/criterion.h>
#include <stdlib.h>

uint64_t dsa_test_rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

float dsa_test_rng_f(uint64_t *s)
{
    return (float)((double)(dsa_test_rng_next(s) >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

void dsa_test_tw_make(dsa_test_tw *t, dsa_dtype dt, int64_t R, int64_t C, uint64_t *s)
{
    *t = (dsa_test_tw){.dt = dt, .R = R, .C = C};
    size_t n = (size_t)(R * C);
    t->data = malloc(n * dsa_dtype_size(dt) + 1);
    cr_assert_not_null(t->data);
    for (size_t i = 0; i < n; i++) {
        float v = dsa_test_rng_f(s);
        switch (dt) {
        case DSA_DTYPE_F32: ((float *)t->data)[i] = v; break;
        case DSA_DTYPE_F16: ((uint16_t *)t->data)[i] = dsa_f32_to_f16(v); break;
        case DSA_DTYPE_BF16: ((uint16_t *)t->data)[i] = dsa_f32_to_bf16(v); break;
        default: {
            uint8_t b = (uint8_t)dsa_test_rng_next(s);
            if ((b & 0x7f) == 0x7f) /* NaN codes never occur in checkpoints */
                b ^= 1;
            ((uint8_t *)t->data)[i] = b;
        }
        }
    }
    if (dt == DSA_DTYPE_F8_E4M3) {
        int64_t sr = (R + 127) / 128, sc = (C + 127) / 128;
        t->scale = malloc((size_t)(sr * sc) * sizeof(float));
        cr_assert_not_null(t->scale);
        for (int64_t i = 0; i < sr * sc; i++)
            t->scale[i] = (1.5f + dsa_test_rng_f(s)) / 256.0f;
    }
}

void dsa_test_tw_free(dsa_test_tw *t)
{
    free(t->data);
    free(t->scale);
}

dsa_weight dsa_test_tw_slice(const dsa_test_tw *t, int64_t r0, int64_t c0, int64_t rows,
                             int64_t cols)
{
    return (dsa_weight){
        .dtype = t->dt, .rows = rows, .cols = cols, .ld = t->C,
        .data = (const char *)t->data + (size_t)(r0 * t->C + c0) * dsa_dtype_size(t->dt),
        .scale = t->scale, .scale_ld = (t->C + 127) / 128,
        .row0 = r0, .col0 = c0, .block_rows = 128, .block_cols = 128,
    };
}

dsa_weight dsa_test_tw_full(const dsa_test_tw *t)
{
    return dsa_test_tw_slice(t, 0, 0, t->R, t->C);
}
