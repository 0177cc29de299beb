/* cpu_awq.c - y = x W^T for AWQ int4 weights (backend.h dsa_weight, dtype
 * I32), dequantising inside the product.
 *
 * AutoAWQ packs eight output columns into one int32 word, words along the
 * output dimension, one row of words per input row.  So the natural vector
 * is 8 consecutive words of one input row: nibble position p of those
 * words gives 8 outputs, and one 32-byte load feeds 64 outputs ("a block").
 * The integer values are never scaled one by one: per group of input rows
 *   acc[o]  = sum_{n in group, in order} x[n] * q[n, o]     (FMA chain)
 *   xs      = sum_{n in group, in order} x[n]               (adds)
 *   y[o]    = fma(s[g, o], fma(-z[g, o], xs, acc[o]), y[o]) (groups in order)
 * and y is stored once at the end (times alpha, or added with one fmaf).
 *
 * That order is the same for every (token, output) on every path below,
 * whatever the batch size, so a token's outputs are the same bits alone
 * or batched (speculative decoding relies on it; tests/test_awq.c checks
 * every path against a scalar spelling of the order):
 *   - one token: each group's rows are read in order, each row's words
 *     unpacked in registers (mask, convert) into FMA chains kept in L1,
 *     8 vectors per block of 8 words;
 *   - several tokens (batched decode, prefill): a group of rows x 64
 *     outputs is unpacked once to F32 in per-thread scratch and a tile of
 *     3 tokens x 32 outputs runs over it, so the unpacking is shared by
 *     every token;
 *   - output slices that do not start on a word (never produced by the
 *     loader) and machines without AVX2 + FMA: scalar code, same order. */
#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu_internal.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define AWQ_AVX2 1
#else
#define AWQ_AVX2 0
#endif

/* AutoAWQ's packing: nibble k of a word holds column order[k]. */
static const int awq_order[8] = {0, 2, 4, 6, 1, 3, 5, 7};

enum {
    AWQ_BLOCK_WORDS = 8,        /* one 256-bit load of packed words */
    AWQ_BLOCK_OUT = 64,         /* outputs per block */
    AWQ_TILE_M = 3,             /* tokens per register tile (panel path) */
    AWQ_PREFETCH_ROWS = 48,     /* rows ahead (~200 ns at decode speed) */
    AWQ_SPAN_BLOCKS = 64,       /* one-token chains: 16 kB, within L1 */
};

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

/* The final store, spelt out so every path rounds alike (no contraction
 * left to the compiler). */
static inline void awq_store(const dsa_cpu_gemm *g, int64_t t, int64_t n, float v)
{
    int64_t r = g->out_rows ? g->out_rows[t] : t;
    float *dst = g->out + r * g->ld_out + n;
    float a = g->alpha ? g->alpha[t] : 1.0f;
    *dst = g->accumulate ? fmaf(v, a, *dst) : v * a;
}

/* Input group of column j of the slice: [j, *end). */
static inline int64_t awq_group_of(const dsa_weight *w, int64_t j, int64_t *end)
{
    int64_t gi = (w->col0 + j) / w->awq_group;
    *end = (gi + 1) * w->awq_group - w->col0;
    if (*end > w->cols)
        *end = w->cols;
    return gi;
}

/* xs of a group, in one fixed order on every path: lane l sums x[8i + l]
 * in order, the lanes are added as (0+4 + 2+6) + (1+5 + 3+7), then the
 * ragged tail in order.  (Eight lanes rather than one chain: the panel
 * path forms it per token and block, where a 128-add chain showed.) */
static inline float awq_xsum(const float *x, int64_t n)
{
    float l[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            l[k] = l[k] + x[i + k];
    float s = ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
    for (; i < n; i++)
        s = s + x[i];
    return s;
}

/* Rows [r0, r1) one output at a time: the order of the file comment in
 * scalar C, for slices off word boundaries and machines without AVX2. */
static void awq_scalar(const dsa_cpu_gemm *g, int64_t r0, int64_t r1)
{
    const dsa_weight *w = g->w;
    int64_t ld = w->ld;
    const int32_t *qw = (const int32_t *)w->data;
    for (int64_t i = r0; i < r1; i++) {
        int64_t o = w->row0 + i;
        int sh = 4 * dsa_awq_nibble(o);
        for (int64_t t = 0; t < g->m; t++) {
            const float *x = g->x + t * g->ld_x;
            float y = 0.0f;
            for (int64_t j = 0, end; j < w->cols; j = end) {
                int64_t gi = awq_group_of(w, j, &end);
                float acc = 0.0f, xs = awq_xsum(x + j, end - j);
                for (int64_t n = j; n < end; n++) {
                    float q = (float)(((uint32_t)qw[(w->col0 + n) * ld + o / 8] >> sh) & 15u);
                    acc = fmaf(x[n], q, acc);
                }
                float s = dsa_f16_to_f32(w->awq_scales[gi * ld * 8 + o]);
                float z = (float)(((uint32_t)w->awq_zeros[gi * ld + o / 8] >> sh) & 15u);
                y = fmaf(s, fmaf(-z, xs, acc), y);
            }
            awq_store(g, t, i, y);
        }
    }
}

#if AWQ_AVX2

#define AWQ_INLINE static inline __attribute__((always_inline))

/* The block's nw <= 8 words of one row (the rest zero; maskload reads
 * nothing past them). */
AWQ_INLINE __m256i awq_load_words(const int32_t *p, __m256i mask, int full)
{
    return full ? _mm256_loadu_si256((const __m256i *)p) : _mm256_maskload_epi32(p, mask);
}

AWQ_INLINE __m256 awq_nibble(__m256i q, int p)
{
    return _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(q, 4 * p), _mm256_set1_epi32(15)));
}

/* A block reads 32 bytes from each of `cols` rows ld words apart: a new
 * page every row or two, which the hardware prefetchers do not follow.
 * So each row fetches the one AWQ_PREFETCH_ROWS below it, and the last
 * rows of a block the first ones of the next block (prefetches never
 * fault, so past the end of the tensor is harmless). */
AWQ_INLINE void awq_prefetch(const dsa_weight *w, const int32_t *qw, int64_t n)
{
    int64_t a = n + AWQ_PREFETCH_ROWS;
    const int32_t *p = a < w->cols ? qw + (w->col0 + a) * w->ld
                                   : qw + AWQ_BLOCK_WORDS + (w->col0 + a - w->cols) * w->ld;
    _mm_prefetch((const char *)p, _MM_HINT_T0);
}

/* One block (words [wa, wa + nw) of the packed rows) of one group: scales
 * sv[p][c] = s[gi, (wa + c) * 8 + order[p]] and zeros zv[p][c], lanes past
 * nw zero. */
typedef struct awq_gblk {
    _Alignas(32) float sv[8][8];
    __m256 zv[8];
} awq_gblk;

static void awq_gblk_load(const dsa_weight *w, int64_t gi, int64_t wa, int nw, __m256i mask,
                          awq_gblk *b)
{
    int64_t ld = w->ld;
    /* r[c] = the 8 scales of word c in output order; transposed to
     * t[k][c], then sv[p] = t[order[p]] */
    __m256 r[8], t[8];
    const uint16_t *sp = w->awq_scales + gi * ld * 8 + wa * 8;
    for (int c = 0; c < 8; c++)
        r[c] = c < nw ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(sp + c * 8)))
                      : _mm256_setzero_ps();
    for (int c = 0; c < 8; c += 2) {            /* 2x2 blocks of pairs */
        t[c] = _mm256_unpacklo_ps(r[c], r[c + 1]);
        t[c + 1] = _mm256_unpackhi_ps(r[c], r[c + 1]);
    }
    for (int c = 0; c < 8; c += 4)
        for (int h = 0; h < 2; h++) {
            __m256 a = t[c + h], bb = t[c + 2 + h];
            r[c + h] = _mm256_shuffle_ps(a, bb, 0x44);
            r[c + 2 + h] = _mm256_shuffle_ps(a, bb, 0xEE);
        }
    /* now r[h], h < 4, holds order k_of[h] of words 0-3 in its low half
     * and k_of[h] + 4 in its high half, r[h + 4] the same of words 4-7:
     * the 128-bit swaps below join them */
    for (int h = 0; h < 4; h++) {
        t[h] = _mm256_permute2f128_ps(r[h], r[h + 4], 0x20);
        t[h + 4] = _mm256_permute2f128_ps(r[h], r[h + 4], 0x31);
    }
    /* t[i] now holds output order k_of[i] of words 0..7 */
    static const int k_of[8] = {0, 2, 1, 3, 4, 6, 5, 7};
    for (int i = 0; i < 8; i++)
        for (int p = 0; p < 8; p++)
            if (awq_order[p] == k_of[i])
                _mm256_store_ps(b->sv[p], t[i]);
    __m256i z = awq_load_words(w->awq_zeros + gi * ld + wa, mask, nw == 8);
    for (int p = 0; p < 8; p++)
        b->zv[p] = awq_nibble(z, p);
}

/* y[p] = fma(s, fma(-z, xs, acc[p]), y[p]) for the 8 nibble vectors. */
AWQ_INLINE void awq_fold(const awq_gblk *b, const __m256 *acc, float xs, float *y, int p0, int np)
{
    __m256 xv = _mm256_set1_ps(xs);
    for (int p = p0; p < p0 + np; p++) {
        __m256 d = _mm256_fnmadd_ps(b->zv[p], xv, acc[p - p0]);
        _mm256_store_ps(y + p * 8, _mm256_fmadd_ps(_mm256_load_ps(b->sv[p]), d,
                                                   _mm256_load_ps(y + p * 8)));
    }
}

/* y[p * 8 + c] -> output (wa + c) * 8 + order[p] of token t. */
static void awq_block_store(const dsa_cpu_gemm *g, int64_t t, int64_t wa, int nw, const float *y)
{
    int64_t base = wa * 8 - g->w->row0;
    for (int c = 0; c < nw; c++)
        for (int p = 0; p < 8; p++)
            awq_store(g, t, base + c * 8 + awq_order[p], y[p * 8 + c]);
}

static inline __m256i awq_mask(int nw)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(nw), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* Nibble p of each word, in place: value * 16^p as F32 (one AND and one
 * convert; nibble 7 is shifted down instead, its top bit being the sign). */
AWQ_INLINE __m256 awq_nibble_inplace(__m256i q, int p)
{
    if (p == 7)
        return _mm256_cvtepi32_ps(_mm256_srli_epi32(q, 28));
    return _mm256_cvtepi32_ps(_mm256_and_si256(q, _mm256_set1_epi32(15 << (4 * p))));
}

/* One token, blocks [0, nb) of words from w0, one group [j, end): row by
 * row, each row's nb * 32 bytes read in order (the hardware prefetchers
 * follow that; reading one block down all the group's rows, 2.4 kB apart,
 * they did not), the chains of every block kept in acc (nb * 64 floats,
 * L1-resident), then folded into y.  Nibbles 1-6 are not shifted down:
 * chain p sums x * (q * 16^p), which is 16^p times the chain of q alone,
 * bit for bit (scaling by a power of two commutes with every rounding as
 * long as nothing leaves F32's normal range: |x| above 2^-100 or zero
 * and |acc| below 2^100, true of any activation a model produces), and
 * the fold scales it back exactly. */
static void awq_group_m1(const dsa_cpu_gemm *g, int64_t w0, int64_t wb, int64_t j, int64_t end,
                         float *acc, float *y)
{
    const dsa_weight *w = g->w;
    int64_t ld = w->ld, gi = (w->col0 + j) / w->awq_group;
    int64_t nb = (wb - w0 + AWQ_BLOCK_WORDS - 1) / AWQ_BLOCK_WORDS, nfull = (wb - w0) / AWQ_BLOCK_WORDS;
    int nw_last = (int)(wb - w0 - nfull * AWQ_BLOCK_WORDS);
    __m256i mask_last = awq_mask(nw_last);
    memset(acc, 0, (size_t)(nb * AWQ_BLOCK_OUT) * sizeof(float));
    for (int64_t n = j; n < end; n++) {
        __m256 xv = _mm256_set1_ps(g->x[n]);
        const int32_t *row = (const int32_t *)w->data + (w->col0 + n) * ld + w0;
        for (int64_t b = 0; b < nb; b++) {
            __m256i q = awq_load_words(row + b * AWQ_BLOCK_WORDS, mask_last, b < nfull);
            float *ab = acc + b * AWQ_BLOCK_OUT;
#pragma GCC unroll 8
            for (int p = 0; p < 8; p++)
                _mm256_store_ps(ab + p * 8, _mm256_fmadd_ps(xv, awq_nibble_inplace(q, p),
                                                            _mm256_load_ps(ab + p * 8)));
        }
    }
    float xs = awq_xsum(g->x + j, end - j);
    for (int64_t b = 0; b < nb; b++) {
        int nw = b < nfull ? AWQ_BLOCK_WORDS : nw_last;
        awq_gblk blk;
        __m256 av[8];
        awq_gblk_load(w, gi, w0 + b * AWQ_BLOCK_WORDS, nw, awq_mask(nw), &blk);
        for (int p = 0; p < 8; p++) {
            av[p] = _mm256_load_ps(acc + b * AWQ_BLOCK_OUT + p * 8);
            if (p >= 1 && p <= 6)
                av[p] = _mm256_mul_ps(av[p], _mm256_set1_ps(1.0f / (float)(1 << (4 * p))));
        }
        awq_fold(&blk, av, xs, y + b * AWQ_BLOCK_OUT, 0, 8);
    }
}

/* acc[t][v] over the nr rows of a panel (row r at panel + r * 64, nibble
 * vector p0 + v) for tokens x + t * ld_x, t < MT: one FMA chain per
 * (token, output) in row order. */
AWQ_INLINE void awq_tile(int mt, const float *panel, int64_t nr, int p0, const float *x,
                         int64_t ld_x, __m256 acc[AWQ_TILE_M][4])
{
    /* local accumulators, copied out once: written through acc in the
     * loop, GCC stored all twelve to the stack every row */
    __m256 c[AWQ_TILE_M][4];
#pragma GCC unroll 3
    for (int t = 0; t < mt; t++)
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++)
            c[t][v] = _mm256_setzero_ps();
    for (int64_t r = 0; r < nr; r++) {
        const float *pr = panel + r * AWQ_BLOCK_OUT + p0 * 8;
        __m256 w0 = _mm256_load_ps(pr), w1 = _mm256_load_ps(pr + 8);
        __m256 w2 = _mm256_load_ps(pr + 16), w3 = _mm256_load_ps(pr + 24);
#pragma GCC unroll 3
        for (int t = 0; t < mt; t++) {
            __m256 xv = _mm256_broadcast_ss(x + t * ld_x + r);
            c[t][0] = _mm256_fmadd_ps(xv, w0, c[t][0]);
            c[t][1] = _mm256_fmadd_ps(xv, w1, c[t][1]);
            c[t][2] = _mm256_fmadd_ps(xv, w2, c[t][2]);
            c[t][3] = _mm256_fmadd_ps(xv, w3, c[t][3]);
        }
    }
#pragma GCC unroll 3
    for (int t = 0; t < mt; t++)
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++)
            acc[t][v] = c[t][v];
}

static void awq_tile_run(int mt, const float *panel, int64_t nr, int p0, const float *x,
                         int64_t ld_x, __m256 acc[AWQ_TILE_M][4])
{
    switch (mt) {
    case 1: awq_tile(1, panel, nr, p0, x, ld_x, acc); break;
    case 2: awq_tile(2, panel, nr, p0, x, ld_x, acc); break;
    default: awq_tile(3, panel, nr, p0, x, ld_x, acc); break;
    }
}

/* Several tokens, one block: per group the rows are unpacked to F32 once
 * (panel [rows][8 nibbles][8 words]) and shared by all tokens.  y is
 * [m][64], xs [m]. */
static void awq_block_panel(const dsa_cpu_gemm *g, int64_t wa, int nw, __m256i mask,
                            float *panel, float *y, float *xs)
{
    const dsa_weight *w = g->w;
    const int32_t *qw = (const int32_t *)w->data + wa;
    int64_t ld = w->ld, m = g->m;
    int full = nw == 8;
    awq_gblk b;
    memset(y, 0, (size_t)(m * AWQ_BLOCK_OUT) * sizeof(float));
    for (int64_t j = 0, end; j < w->cols; j = end) {
        int64_t gi = awq_group_of(w, j, &end), nr = end - j;
        for (int64_t r = 0; r < nr; r++) {
            awq_prefetch(w, qw, j + r);
            __m256i q = awq_load_words(qw + (w->col0 + j + r) * ld, mask, full);
#pragma GCC unroll 8
            for (int p = 0; p < 8; p++)
                _mm256_store_ps(panel + r * AWQ_BLOCK_OUT + p * 8, awq_nibble(q, p));
        }
        for (int64_t t = 0; t < m; t++)
            xs[t] = awq_xsum(g->x + t * g->ld_x + j, nr);
        awq_gblk_load(w, gi, wa, nw, mask, &b);
        for (int64_t t0 = 0; t0 < m; t0 += AWQ_TILE_M) {
            int mt = m - t0 < AWQ_TILE_M ? (int)(m - t0) : AWQ_TILE_M;
            for (int p0 = 0; p0 < 8; p0 += 4) {
                __m256 acc[AWQ_TILE_M][4];
                awq_tile_run(mt, panel, nr, p0, g->x + t0 * g->ld_x + j, g->ld_x, acc);
                for (int t = 0; t < mt; t++)
                    awq_fold(&b, acc[t], xs[t0 + t], y + (t0 + t) * AWQ_BLOCK_OUT, p0, 4);
            }
        }
    }
}

/* One token: spans of up to AWQ_SPAN_BLOCKS blocks (their chains fit
 * L1), groups in order inside each span. */
static dsa_err awq_blocks_m1(const dsa_cpu_gemm *g, int64_t w0, int64_t wb, dsa_cpu_scratch *s)
{
    const dsa_weight *w = g->w;
    int64_t nb = (wb - w0 + AWQ_BLOCK_WORDS - 1) / AWQ_BLOCK_WORDS;
    int64_t span = nb < AWQ_SPAN_BLOCKS ? nb : AWQ_SPAN_BLOCKS;
    float *y = dsa_cpu_scratch_get(s, DSA_CPU_SCR_TMP, (size_t)(nb * AWQ_BLOCK_OUT));
    float *acc = dsa_cpu_scratch_get(s, DSA_CPU_SCR_PANEL, (size_t)(span * AWQ_BLOCK_OUT));
    if (!y || !acc)
        return DSA_NOMEM;
    memset(y, 0, (size_t)(nb * AWQ_BLOCK_OUT) * sizeof(float));
    for (int64_t sa = w0; sa < wb; sa += span * AWQ_BLOCK_WORDS) {
        int64_t sb = wb - sa < span * AWQ_BLOCK_WORDS ? wb : sa + span * AWQ_BLOCK_WORDS;
        float *ys = y + (sa - w0) / AWQ_BLOCK_WORDS * AWQ_BLOCK_OUT;
        for (int64_t j = 0, end; j < w->cols; j = end) {
            awq_group_of(w, j, &end);
            awq_group_m1(g, sa, sb, j, end, acc, ys);
        }
    }
    for (int64_t b = 0; b < nb; b++) {
        int64_t a = w0 + b * AWQ_BLOCK_WORDS;
        int nw = wb - a < AWQ_BLOCK_WORDS ? (int)(wb - a) : AWQ_BLOCK_WORDS;
        awq_block_store(g, 0, a, nw, y + b * AWQ_BLOCK_OUT);
    }
    return DSA_OK;
}

/* Several tokens: blocks outer, each group's panel shared by all tokens. */
static dsa_err awq_blocks(const dsa_cpu_gemm *g, int64_t r0, int64_t r1, dsa_cpu_scratch *s)
{
    const dsa_weight *w = g->w;
    int64_t m = g->m, grp = w->awq_group < w->cols ? w->awq_group : w->cols;
    int64_t wa = (w->row0 + r0) / 8, wb = (w->row0 + r1 + 7) / 8;
    if (m == 1)
        return awq_blocks_m1(g, wa, wb, s);
    /* a group cut by the slice start still has at most grp rows */
    float *panel = dsa_cpu_scratch_get(s, DSA_CPU_SCR_PANEL, (size_t)(grp * AWQ_BLOCK_OUT));
    float *y = dsa_cpu_scratch_get(s, DSA_CPU_SCR_TMP, (size_t)(m * AWQ_BLOCK_OUT + m));
    if (!panel || !y)
        return DSA_NOMEM;
    float *xs = y + m * AWQ_BLOCK_OUT;
    for (; wa < wb; wa += AWQ_BLOCK_WORDS) {
        int nw = wb - wa < AWQ_BLOCK_WORDS ? (int)(wb - wa) : AWQ_BLOCK_WORDS;
        awq_block_panel(g, wa, nw, awq_mask(nw), panel, y, xs);
        for (int64_t t = 0; t < m; t++)
            awq_block_store(g, t, wa, nw, y + t * AWQ_BLOCK_OUT);
    }
    return DSA_OK;
}
#endif /* AWQ_AVX2 */

dsa_err dsa_cpu_awq_gemm_rows(const dsa_cpu_gemm *g, int64_t r0, int64_t r1, dsa_cpu_scratch *s)
{
    const dsa_weight *w = g->w;
    if (w->awq8 && dsa_cpu_awq8_covers(w)) /* --cpu-int8-activations */
        return dsa_cpu_awq8_gemm_rows(g, r0, r1, s);
#if AWQ_AVX2
    /* word-aligned ranges (the loader's slices and dsa_cpu_gemm_grain's
     * chunks are) run in blocks; a ragged end of a word still belongs to
     * it only when the slice ends there */
    if ((w->row0 + r0) % 8 == 0 && ((w->row0 + r1) % 8 == 0 || r1 == w->rows) &&
        (w->row0 + w->rows) % 8 == 0)
        return awq_blocks(g, r0, r1, s);
#else
    (void)s;
#endif
    (void)w;
    awq_scalar(g, r0, r1);
    return DSA_OK;
}
