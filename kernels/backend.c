/* backend.c - backend-independent helpers of the kernel interface. */
#include "kernels/backend.h"

#include <math.h>

float dsa_weight_get(const dsa_weight *w, int64_t i, int64_t j)
{
    if (w->dtype == DSA_DTYPE_I32) {
        int64_t o = w->row0 + i, n = w->col0 + j, gi = n / w->awq_group;
        int sh = 4 * dsa_awq_nibble(o);
        uint32_t q = (uint32_t)((const int32_t *)w->data)[n * w->ld + o / 8];
        uint32_t z = (uint32_t)w->awq_zeros[gi * w->ld + o / 8];
        float s = dsa_f16_to_f32(w->awq_scales[gi * w->ld * 8 + o]);
        return (float)((int)((q >> sh) & 15u) - (int)((z >> sh) & 15u)) * s;
    }
    const char *row = (const char *)w->data + (size_t)(i * w->ld) * dsa_dtype_size(w->dtype);
    switch (w->dtype) {
    case DSA_DTYPE_F32:
        return ((const float *)row)[j];
    case DSA_DTYPE_F16:
        return dsa_f16_to_f32(((const uint16_t *)row)[j]);
    case DSA_DTYPE_BF16:
        return dsa_bf16_to_f32(((const uint16_t *)row)[j]);
    case DSA_DTYPE_F8_E4M3: {
        int64_t sr = (w->row0 + i) / w->block_rows;
        int64_t sc = (w->col0 + j) / w->block_cols;
        return dsa_e4m3_to_f32(((const uint8_t *)row)[j]) * w->scale[sr * w->scale_ld + sc];
    }
    default:
        return 0.0f;
    }
}

void dsa_logit_ctl_row(float *l, int64_t vocab, const dsa_logit_ctl *c)
{
    if (c->n_allowed > 0) {
        /* walk the row against the sorted allowed list */
        int32_t k = 0;
        for (int64_t i = 0; i < vocab; i++) {
            if (k < c->n_allowed && c->allowed[k] == i)
                k++;
            else
                l[i] = -INFINITY;
        }
    }
    for (int32_t j = 0; j < c->n_banned; j++)
        l[c->banned[j]] = -INFINITY;
    for (int32_t j = 0; j < c->n_bias; j++)
        l[c->bias_ids[j]] += c->bias_values[j];
}

void dsa_logit_mask_row(float *l, int64_t vocab, const dsa_logit_mask *m)
{
    if (m->n_words <= 0)
        return;
    int64_t n_bits = (int64_t)m->n_words * 32;
    for (int64_t i = 0; i < vocab; i++)
        if (i >= n_bits || !(m->bits[i >> 5] >> (i & 31) & 1u))
            l[i] = -INFINITY;
}
