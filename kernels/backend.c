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
    case DSA_DTYPE_I8: {
        int64_t sr = (w->row0 + i) / w->block_rows;
        int64_t sc = (w->col0 + j) / w->block_cols;
        return (float)((const int8_t *)row)[j] * w->scale[sr * w->scale_ld + sc];
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

int32_t dsa_logprobs_row(const float *logits, int64_t V, int32_t id, int32_t k, float *lp,
                         int32_t *rank, int32_t *top_ids, float *top_lps)
{
    float mx = -INFINITY;
    for (int64_t v = 0; v < V; v++)
        mx = logits[v] > mx ? logits[v] : mx;
    double sum = 0;
    for (int64_t v = 0; v < V; v++)
        sum += exp((double)(logits[v] - mx));
    float lse = mx + (float)log(sum);
    *lp = logits[id] - lse;
    int32_t n_top = 0;
    for (int64_t v = 0; v < V && k > 0; v++) {
        float l = logits[v];
        if (n_top == k && l <= logits[top_ids[k - 1]])
            continue;
        int32_t j = n_top < k ? n_top++ : k - 1;
        while (j > 0 && logits[top_ids[j - 1]] < l) {
            top_ids[j] = top_ids[j - 1];
            j--;
        }
        top_ids[j] = (int32_t)v;
    }
    for (int32_t j = 0; j < n_top; j++)
        top_lps[j] = logits[top_ids[j]] - lse;
    if (rank) {
        int32_t r = 1;
        for (int64_t v = 0; v < V; v++)
            r += logits[v] > logits[id];
        *rank = r;
    }
    return n_top;
}

void dsa_penalty_row_apply(float *l, int64_t V, const dsa_penalty_row *r, const uint16_t *out,
                           const uint32_t *prompt)
{
    float rp = r->repetition > 0 ? r->repetition : 1;
    for (int64_t v = 0; v < V; v++) {
        uint32_t n = out[v];
        for (int32_t j = 0; j < r->n_extra; j++)
            n += r->extra[j] == v;
        if (!n && !(prompt[v >> 5] >> (v & 31) & 1u))
            continue;
        if (rp != 1)
            l[v] = l[v] > 0 ? l[v] / rp : l[v] * rp;
        if (n) {
            l[v] -= r->frequency * (float)n;
            l[v] -= r->presence;
        }
    }
}
