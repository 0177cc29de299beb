/* cpu_awq.c - y = x W^T for AWQ int4 weights (backend.h dsa_weight, dtype
 * I32), dequantising inside the product.
 *
 * Small batches (decode): the work is a range of output words (8 outputs
 * each).  For 8 consecutive words at a time and one token, each input row
 * n of the group adds x[n] * q[n, :] to 8 vector accumulators, one per
 * nibble position (lane = word), and the group is folded into the outputs
 * with its scales and zeros as
 *   y[o] += s[g, o] * (sum_{n in g} x[n] q[n, o]  -  z[g, o] * sum_{n in g} x[n]),
 * so the int4 values are only shifted, masked and converted, never scaled
 * one by one.  Written with GCC vector types of 8 lanes: AVX2 (or the
 * lower half of AVX-512) by -march; the compiler emits plain code
 * elsewhere.
 * Larger batches dequantise whole rows (dsa_cpu_awq_row) and take the
 * dense path, where the dequantisation is shared by every token. */
#include <string.h>

#include "kernels/cpu/cpu_internal.h"

typedef int32_t v8i __attribute__((vector_size(32)));
typedef float v8f __attribute__((vector_size(32)));

/* AutoAWQ's packing: nibble k of a word holds column order[k]. */
static const int awq_order[8] = {0, 2, 4, 6, 1, 3, 5, 7};

/* Below this many tokens the word kernel runs; from it rows are dequantised. */
#define AWQ_WORD_M_MAX 4

void dsa_cpu_awq_row(const dsa_weight *w, int64_t i, float *dst)
{
    int64_t o = w->row0 + i, g = w->awq_group, ld = w->ld;
    int sh = 4 * dsa_awq_nibble(o);
    const int32_t *q = (const int32_t *)w->data + o / 8;
    const int32_t *z = w->awq_zeros + o / 8;
    const uint16_t *sc = w->awq_scales + o;
    for (int64_t j = 0; j < w->cols;) {
        int64_t n = w->col0 + j, gi = n / g, end = (gi + 1) * g - w->col0;
        if (end > w->cols)
            end = w->cols;
        float s = dsa_f16_to_f32(sc[gi * ld * 8]);
        float zf = (float)(((uint32_t)z[gi * ld] >> sh) & 15u);
        for (; j < end; j++)
            dst[j] = ((float)(((uint32_t)q[(w->col0 + j) * ld] >> sh) & 15u) - zf) * s;
    }
}

static inline v8i load8(const int32_t *p)
{
    v8i v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Outputs of words [w0, w0 + nw) (nw <= 8) for token t. */
static void awq_words(const dsa_cpu_gemm *g, int64_t t, int64_t w0, int nw)
{
    const dsa_weight *w = g->w;
    int64_t ld = w->ld, grp = w->awq_group;
    const float *x = g->x + t * g->ld_x;
    const int32_t *qw = (const int32_t *)w->data;
    v8f out[8];
    memset(out, 0, sizeof out);
    int32_t wbuf[8] = {0};
    for (int64_t j = 0; j < w->cols;) {
        int64_t n0 = w->col0 + j, gi = n0 / grp, end = (gi + 1) * grp - w->col0;
        if (end > w->cols)
            end = w->cols;
        v8f acc[8];
        memset(acc, 0, sizeof acc);
        float xs = 0.0f;
        for (; j < end; j++) {
            const int32_t *row = qw + (w->col0 + j) * ld + w0;
            v8i q;
            if (nw == 8) {
                q = load8(row);
            } else {
                memcpy(wbuf, row, (size_t)nw * sizeof(int32_t));
                q = load8(wbuf);
            }
            float xj = x[j];
            xs += xj;
            v8f xv = {xj, xj, xj, xj, xj, xj, xj, xj};
            for (int k = 0; k < 8; k++)
                acc[k] += xv * __builtin_convertvector((q >> (4 * k)) & 15, v8f);
        }
        /* fold the group: s * (acc - z * xs), per nibble position */
        const int32_t *zrow = w->awq_zeros + gi * ld + w0;
        const uint16_t *srow = w->awq_scales + gi * ld * 8 + w0 * 8;
        for (int k = 0; k < 8; k++) {
            v8f s, z;
            for (int l = 0; l < 8; l++) {
                s[l] = l < nw ? dsa_f16_to_f32(srow[l * 8 + awq_order[k]]) : 0.0f;
                z[l] = l < nw ? (float)(((uint32_t)zrow[l] >> (4 * k)) & 15u) : 0.0f;
            }
            out[k] += s * (acc[k] - z * xs);
        }
    }
    /* output o = (w0 + l) * 8 + order[k], row o - row0 of this slice */
    for (int l = 0; l < nw; l++)
        for (int k = 0; k < 8; k++) {
            int64_t r = (w0 + l) * 8 + awq_order[k] - w->row0;
            float *y = g->out + (g->out_rows ? g->out_rows[t] : t) * g->ld_out + r;
            float v = out[k][l] * (g->alpha ? g->alpha[t] : 1.0f);
            *y = g->accumulate ? *y + v : v;
        }
}

dsa_err dsa_cpu_awq_gemm_rows(const dsa_cpu_gemm *g, int64_t r0, int64_t r1, dsa_cpu_scratch *s)
{
    const dsa_weight *w = g->w;
    if (g->m < AWQ_WORD_M_MAX && (w->row0 + r0) % 8 == 0 && (r1 == w->rows || r1 % 8 == 0) &&
        w->row0 % 8 == 0 && w->rows % 8 == 0) {
        int64_t wa = (w->row0 + r0) / 8, wb = (w->row0 + r1 + 7) / 8;
        for (int64_t w0 = wa; w0 < wb; w0 += 8) {
            int nw = wb - w0 < 8 ? (int)(wb - w0) : 8;
            for (int64_t t = 0; t < g->m; t++)
                awq_words(g, t, w0, nw);
        }
        return DSA_OK;
    }
    /* rows dequantised once, then every token */
    float *row = dsa_cpu_scratch_get(s, DSA_CPU_SCR_PANEL, (size_t)w->cols);
    if (!row)
        return DSA_NOMEM;
    for (int64_t i = r0; i < r1; i++) {
        dsa_cpu_awq_row(w, i, row);
        for (int64_t t = 0; t < g->m; t++) {
            float v = dsa_cpu_dot(g->x + t * g->ld_x, row, w->cols);
            float *y = g->out + (g->out_rows ? g->out_rows[t] : t) * g->ld_out + i;
            v *= g->alpha ? g->alpha[t] : 1.0f;
            *y = g->accumulate ? *y + v : v;
        }
    }
    return DSA_OK;
}
