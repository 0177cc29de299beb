/* cpu_awq.c - y = x W^T for AWQ int4 weights (backend.h dsa_weight, dtype
 * I32), dequantising inside the product.
 *
 * Small batches (decode): the work is a range of output words (8 outputs
 * each).  For one token, each input row n of a group adds x[n] * q[n, :]
 * over the whole range (one contiguous read of the row) into accumulators
 * kept per nibble position, and the group is folded into the outputs with
 * its scales and zeros as
 *   y[o] += s[g, o] * (sum_{n in g} x[n] q[n, o]  -  z[g, o] * sum_{n in g} x[n]),
 * so the int4 values are only shifted, masked and converted, never scaled
 * one by one.  Written with GCC vector types of 8 lanes: AVX2 (or the
 * lower half of AVX-512) by -march; the compiler emits plain code
 * elsewhere.
 * Larger batches dequantise whole rows (dsa_cpu_awq_row) and take the
 * dense path, where the dequantisation is shared by every token. */
#include <string.h>

#include "kernels/cpu/cpu_internal.h"

#ifdef __F16C__
#include <immintrin.h>
#endif

typedef int32_t v8i __attribute__((vector_size(32)));
typedef float v8f __attribute__((vector_size(32)));

/* AutoAWQ's packing: nibble k of a word holds column order[k]. */
static const int awq_order[8] = {0, 2, 4, 6, 1, 3, 5, 7};

/* Below this many tokens the word kernel runs (all of them sharing each
 * weight read); from it rows are dequantised. */
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

static inline v8f loadf(const float *p)
{
    v8f v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void storef(float *p, v8f v)
{
    memcpy(p, &v, sizeof v);
}

/* Outputs of words [wa, wb) for tokens [t0, t0 + mt), mt < AWQ_WORD_M_MAX.
 * Each input row's words are read as one contiguous run (rows are R/2
 * bytes apart), so the weights stream, and each word's nibbles are
 * converted once for all mt tokens; every token's sums are formed in the
 * same order as when it runs alone.  acc and out are [mt][8][nw] (nibble
 * position major), sf [nw * 8]. */
static void awq_words(const dsa_cpu_gemm *g, int64_t t0, int mt, int64_t wa, int64_t wb,
                      float *acc, float *out, float *sf)
{
    const dsa_weight *w = g->w;
    int64_t ld = w->ld, grp = w->awq_group, nw = wb - wa, nv = nw & ~(int64_t)7;
    int64_t tstride = 8 * nw;
    const int32_t *qw = (const int32_t *)w->data;
    float xs[AWQ_WORD_M_MAX];
    memset(out, 0, (size_t)(mt * tstride) * sizeof(float));
    for (int64_t j = 0; j < w->cols;) {
        int64_t n0 = w->col0 + j, gi = n0 / grp, end = (gi + 1) * grp - w->col0;
        if (end > w->cols)
            end = w->cols;
        memset(acc, 0, (size_t)(mt * tstride) * sizeof(float));
        for (int t = 0; t < mt; t++)
            xs[t] = 0.0f;
        for (; j < end; j++) {
            const int32_t *row = qw + (w->col0 + j) * ld + wa;
            v8f xv[AWQ_WORD_M_MAX];
            float xj[AWQ_WORD_M_MAX];
            for (int t = 0; t < mt; t++) {
                xj[t] = g->x[(t0 + t) * g->ld_x + j];
                xs[t] += xj[t];
                xv[t] = (v8f){xj[t], xj[t], xj[t], xj[t], xj[t], xj[t], xj[t], xj[t]};
            }
            for (int64_t c = 0; c < nv; c += 8) {
                v8i q = load8(row + c);
                for (int k = 0; k < 8; k++) {
                    v8f qf = __builtin_convertvector((q >> (4 * k)) & 15, v8f);
                    for (int t = 0; t < mt; t++) {
                        float *a = acc + t * tstride + k * nw + c;
                        storef(a, loadf(a) + xv[t] * qf);
                    }
                }
            }
            for (int64_t c = nv; c < nw; c++)
                for (int k = 0; k < 8; k++) {
                    float qf = (float)(((uint32_t)row[c] >> (4 * k)) & 15u);
                    for (int t = 0; t < mt; t++)
                        acc[t * tstride + k * nw + c] += xj[t] * qf;
                }
        }
        /* fold the group: out += s * (acc - z * xs) */
        const int32_t *zrow = w->awq_zeros + gi * ld + wa;
        const uint16_t *srow = w->awq_scales + gi * ld * 8 + wa * 8;
        int64_t i = 0;
#ifdef __F16C__
        for (; i + 8 <= nw * 8; i += 8)
            _mm256_storeu_ps(sf + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(srow + i))));
#endif
        for (; i < nw * 8; i++)
            sf[i] = dsa_f16_to_f32(srow[i]);
        for (int t = 0; t < mt; t++)
            for (int64_t c = 0; c < nw; c++) {
                uint32_t z = (uint32_t)zrow[c];
                for (int k = 0; k < 8; k++)
                    out[t * tstride + k * nw + c] +=
                        sf[c * 8 + awq_order[k]] *
                        (acc[t * tstride + k * nw + c] - (float)((z >> (4 * k)) & 15u) * xs[t]);
            }
    }
    /* output o = (wa + c) * 8 + order[k], row o - row0 of this slice */
    for (int t = 0; t < mt; t++) {
        int64_t tt = t0 + t;
        float alpha = g->alpha ? g->alpha[tt] : 1.0f;
        float *y = g->out + (g->out_rows ? g->out_rows[tt] : tt) * g->ld_out - w->row0;
        for (int64_t c = 0; c < nw; c++)
            for (int k = 0; k < 8; k++) {
                float *d = y + (wa + c) * 8 + awq_order[k];
                float v = out[t * tstride + k * nw + c] * alpha;
                *d = g->accumulate ? *d + v : v;
            }
    }
}

/* dst[r][j] = W[i + r, j] for the 8 * nwb rows of the nwb words from the
 * one holding row i ((row0 + i) % 8 == 0): each input row's nwb words are
 * one contiguous read. */
static void awq_rows(const dsa_weight *w, int64_t i, int nwb, float *dst)
{
    int64_t o = w->row0 + i, g = w->awq_group, ld = w->ld, C = w->cols;
    const int32_t *q = (const int32_t *)w->data + o / 8;
    float s[64], zf[64];
    for (int64_t j = 0; j < C;) {
        int64_t gi = (w->col0 + j) / g, end = (gi + 1) * g - w->col0;
        if (end > C)
            end = C;
        for (int c = 0; c < nwb; c++) {
            uint32_t z = (uint32_t)w->awq_zeros[gi * ld + o / 8 + c];
            for (int k = 0; k < 8; k++) {
                int r = c * 8 + awq_order[k];
                s[r] = dsa_f16_to_f32(w->awq_scales[gi * ld * 8 + o + r]);
                zf[r] = (float)((z >> (4 * k)) & 15u);
            }
        }
        for (; j < end; j++) {
            const int32_t *qr = q + (w->col0 + j) * ld;
            for (int c = 0; c < nwb; c++) {
                uint32_t v = (uint32_t)qr[c];
                for (int k = 0; k < 8; k++) {
                    int r = c * 8 + awq_order[k];
                    dst[r * C + j] = ((float)((v >> (4 * k)) & 15u) - zf[r]) * s[r];
                }
            }
        }
    }
}

dsa_err dsa_cpu_awq_gemm_rows(const dsa_cpu_gemm *g, int64_t r0, int64_t r1, dsa_cpu_scratch *s)
{
    const dsa_weight *w = g->w;
    if (g->m < AWQ_WORD_M_MAX && (w->row0 + r0) % 8 == 0 && (r1 == w->rows || r1 % 8 == 0) &&
        w->row0 % 8 == 0 && w->rows % 8 == 0) {
        int64_t wa = (w->row0 + r0) / 8, wb = (w->row0 + r1 + 7) / 8, nw = wb - wa;
        int mt = (int)g->m;
        float *buf = dsa_cpu_scratch_get(s, DSA_CPU_SCR_PANEL, (size_t)((16 * mt + 8) * nw));
        if (!buf)
            return DSA_NOMEM;
        awq_words(g, 0, mt, wa, wb, buf, buf + 8 * mt * nw, buf + 16 * mt * nw);
        return DSA_OK;
    }
    /* rows dequantised once, then every token: up to 8 words (64 rows) at
     * a time (one read of each qweight word gives its 8 rows), single rows
     * at ragged edges */
    float *row = dsa_cpu_scratch_get(s, DSA_CPU_SCR_PANEL, (size_t)(64 * w->cols));
    if (!row)
        return DSA_NOMEM;
    int64_t i = r0;
    if ((w->row0 + i) % 8 == 0)
        while (i + 8 <= r1) {
            int nwb = (int)((r1 - i) / 8 < 8 ? (r1 - i) / 8 : 8);
            awq_rows(w, i, nwb, row);
            for (int r = 0; r < 8 * nwb; r++)
                for (int64_t t = 0; t < g->m; t++) {
                    float v = dsa_cpu_dot(g->x + t * g->ld_x, row + r * w->cols, w->cols);
                    float *y = g->out + (g->out_rows ? g->out_rows[t] : t) * g->ld_out + i + r;
                    v *= g->alpha ? g->alpha[t] : 1.0f;
                    *y = g->accumulate ? *y + v : v;
                }
            i += 8 * nwb;
        }
    for (; i < r1; i++) {
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
