/* cpu_awq_int8.c - AWQ int4 linears with int8 activations (the CPU
 * backend's opt-in --cpu-int8-activations path; cpu_awq.c is the default).
 *
 * At weight_prepare the AutoAWQ layout (8 outputs per int32 word along the
 * output dimension) is repacked along the input dimension: per output row,
 * chunks of 32 bytes for 64 inputs where byte k holds input k in its low
 * nibble and input 32 + k in its high one, so one AND and one shift-and-AND
 * give 32 unsigned bytes in input order (a 128-input group is two chunks);
 * each group's scale s (the F16 value as F32) and -z*s sit in two F32
 * arrays beside them.  A linear quantises each token's input row once
 * per thread and op (symmetric int8, one scale per AWQ group: d = max|x| /
 * 127 over the group's inputs) and runs integer dot products (vpmaddubsw
 * of the unsigned nibbles by the signed bytes, the group's outputs summed
 * in int16, then vpmaddwd by ones: eight exact int32 lanes).  Per (token,
 * output), in this order:
 *   for each group g:  acc[l] = fma(I_g[l], d_g * s_g, acc[l])
 *                      corr = fma(-z_g s_g, d_g * X_g, corr)
 *   y = ((acc0 + acc4) + (acc2 + acc6)) + ((acc1 + acc5) + (acc3 + acc7)) + corr
 * with I_g[l] the int32 lane l (inputs 32b + 4l .. 32b + 4l + 3 of every
 * block b of 32 in the group) and X_g the sum of the group's int8 values.
 * The order does not depend on how many tokens a call holds, so a token's
 * outputs are the same bits alone or batched; tests/test_awq_int8.c spells
 * it in scalar C.  (The first version kept one scale per 32 inputs, as
 * llama.cpp's Q8_0: 4 conversions and FMAs per group where this spends
 * one; docs/perf/cpu.md compares the two.)
 * Bits per weight of the repack: 4 + 64 / 128 = 4.5 (F32 s and -z*s). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_internal.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define Q8_AVX2 1
#else
#define Q8_AVX2 0
#endif

enum {
    Q8_BLOCK = 32,          /* activation inputs per int8 scale */
    Q8_TILE_M = 4,          /* int8 head: tokens sharing one weight block */
    AWQ8_TILE_R = 4,        /* AWQ rows at once for one token */
    AWQ8_TILE_T = 8,        /* AWQ tokens sharing one unpacked group */
    AWQ8_TILE_RM = 1,       /* AWQ rows at once for AWQ8_TILE_T tokens */
};

void dsa_cpu_awq8_destroy(dsa_cpu_awq8 *p)
{
    if (!p)
        return;
    free(p->q);
    free(p->s);
    free(p->zs);
    free(p);
}

dsa_err dsa_cpu_awq8_create(const dsa_weight *w, dsa_cpu_awq8 **out)
{
    *out = NULL;
    int64_t g = w->awq_group;
    /* the int8 blocks must tile the slice's groups from its first input */
    if (g % Q8_BLOCK || w->col0 % g || w->rows <= 0 || w->cols <= 0)
        return DSA_UNSUPPORTED;
    /* one int8 scale per group, int16 sums over a group: 32 to 256 */
    if (g != 32 && g != 64 && g != 128 && g != 256)
        return DSA_UNSUPPORTED;
    dsa_cpu_awq8 *p = calloc(1, sizeof *p);
    if (!p)
        return DSA_NOMEM;
    p->row0 = w->row0, p->rows = w->rows, p->col0 = w->col0, p->cols = w->cols;
    p->group = g, p->n_groups = (w->cols + g - 1) / g;
    p->row_bytes = (p->n_groups * g + 63) / 64 * 32;
    size_t nrg = (size_t)(p->rows * p->n_groups);
    p->q = calloc((size_t)(p->rows * p->row_bytes), 1);
    p->s = malloc(nrg * sizeof(float));
    p->zs = malloc(nrg * sizeof(float));
    if (!p->q || !p->s || !p->zs) {
        dsa_cpu_awq8_destroy(p);
        return DSA_NOMEM;
    }
    const int32_t *qw = (const int32_t *)w->data;
    int64_t ld = w->ld;
    for (int64_t i = 0; i < p->rows; i++) {
        int64_t o = w->row0 + i;
        int sh = 4 * dsa_awq_nibble(o);
        for (int64_t gi = 0; gi < p->n_groups; gi++) {
            int64_t sg = w->col0 / g + gi;
            float s = dsa_f16_to_f32(w->awq_scales[sg * ld * 8 + o]);
            float z = (float)(((uint32_t)w->awq_zeros[sg * ld + o / 8] >> sh) & 15u);
            p->s[i * p->n_groups + gi] = s;
            p->zs[i * p->n_groups + gi] = -(z * s);  /* exact: 4 x 11 bits */
            uint8_t *dst = p->q + i * p->row_bytes;
            for (int64_t k = gi * g; k < (gi + 1) * g && k < w->cols; k++) {
                uint8_t v = (uint8_t)(((uint32_t)qw[(w->col0 + k) * ld + o / 8] >> sh) & 15u);
                /* chunk of 64 inputs: [0, 32) low nibbles, [32, 64) high */
                int64_t c = k / 64, r = k % 64;
                dst[c * 32 + r % 32] |= (uint8_t)(r < 32 ? v : v << 4);
            }
        }
    }
    *out = p;
    return DSA_OK;
}

int64_t dsa_cpu_awq8_bytes(const dsa_cpu_awq8 *p)
{
    return p->rows * p->row_bytes + p->rows * p->n_groups * 2 * (int64_t)sizeof(float);
}

#if Q8_AVX2
/* One full block of blk inputs (a multiple of 32) as the scalar loop below
 * quantises it, to the bit: the maximum keeps the running value when an
 * input is NaN (fmaxf's rule: _mm256_max_ps returns its second operand),
 * vcvtps2dq rounds to nearest even as lrintf does, a NaN or overflowed
 * product becomes INT_MIN in both and is clamped to -127.  Returns max|x|
 * and writes q and the block's sum. */
static float q8_blk_avx2(const float *x, int64_t blk, int8_t *q, int32_t *sum_out)
{
    const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 m = _mm256_setzero_ps();
    for (int64_t k = 0; k < blk; k += 8)
        m = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + k), absm), m);
    _Alignas(32) float ml[8];
    _mm256_store_ps(ml, m);
    float amax = 0.0f;
    for (int l = 0; l < 8; l++)
        amax = fmaxf(amax, ml[l]);
    const __m256 vi = _mm256_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
    const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    __m256i sum = _mm256_setzero_si256();
    for (int64_t k = 0; k < blk; k += 32) {
        __m256i v[4];
        for (int h = 0; h < 4; h++) {
            __m256i t = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + k + 8 * h), vi));
            v[h] = _mm256_min_epi32(_mm256_max_epi32(t, lo), hi);
            sum = _mm256_add_epi32(sum, v[h]);
        }
        /* packs interleave 128-bit lanes: dwords come out as a0-3 b0-3 c0-3
         * d0-3 a4-7 b4-7 c4-7 d4-7; the permutation restores input order */
        __m256i p8 = _mm256_packs_epi16(_mm256_packs_epi32(v[0], v[1]),
                                        _mm256_packs_epi32(v[2], v[3]));
        _mm256_storeu_si256((__m256i *)(q + k), _mm256_permutevar8x32_epi32(p8, order));
    }
    _Alignas(32) int32_t sl[8];
    _mm256_store_si256((__m256i *)sl, sum);
    *sum_out = sl[0] + sl[1] + sl[2] + sl[3] + sl[4] + sl[5] + sl[6] + sl[7];
    return amax;
}
#endif

/* x[0, n) as int8 blocks of blk inputs (d = max|x| / 127), zero-padded
 * to n_pad: q [n_pad], d and xsum [n_pad / blk]. */
static void q8_row_blk(const float *x, int64_t n, int64_t n_pad, int64_t blk, int8_t *q, float *d,
                       int32_t *xsum)
{
    for (int64_t b = 0; b * blk < n_pad; b++) {
        int64_t j0 = b * blk, j1 = j0 + blk < n ? j0 + blk : n;
#if Q8_AVX2
        if (j1 - j0 == blk && blk % 32 == 0) {
            float amax = q8_blk_avx2(x + j0, blk, q + j0, &xsum[b]);
            d[b] = amax / 127.0f;
            continue;
        }
#endif
        float amax = 0.0f;
        for (int64_t j = j0; j < j1; j++)
            amax = fmaxf(amax, fabsf(x[j]));
        float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
        int32_t sum = 0;
        for (int64_t k = 0; k < blk; k++) {
            int64_t j = j0 + k;
            long v = j < j1 ? lrintf(x[j] * inv) : 0;
            v = v > 127 ? 127 : v < -127 ? -127 : v;
            q[j] = (int8_t)v;
            sum += (int32_t)v;
        }
        d[b] = amax / 127.0f;
        xsum[b] = sum;
    }
}

void dsa_cpu_q8_row(const float *x, int64_t n, int64_t n_pad, int8_t *q, float *d, int32_t *xsum)
{
    q8_row_blk(x, n, n_pad, Q8_BLOCK, q, d, xsum);
}

/* One token's quantised row as the kernels read it: xq [n_groups * group]
 * int8, one scale per group d [n_groups] and zx [n_groups] (d_g X_g). */
typedef struct q8_tok {
    const int8_t *xq;
    const float *d, *zx;
} q8_tok;

static size_t q8_tok_floats(const dsa_cpu_awq8 *p)
{
    return (size_t)(p->n_groups * p->group / 4 + 3 * p->n_groups);
}

/* The quantised rows of g's m tokens, made once per thread and op (cached
 * in the scratch like the FP8 path's pre-scaled rows). */
static dsa_err q8_tokens(const dsa_cpu_gemm *g, const dsa_cpu_awq8 *p, dsa_cpu_scratch *s,
                         float **base)
{
    size_t per = q8_tok_floats(p);
    int hit = g->epoch && s->q8_epoch == g->epoch && s->q8_x == g->x && s->q8_m == g->m &&
              s->q8_ld_x == g->ld_x && s->q8_cols == p->cols && s->q8_group == p->group;
    float *buf = dsa_cpu_scratch_get(s, DSA_CPU_SCR_Q8, per * (size_t)g->m);
    if (!buf)
        return DSA_NOMEM;
    *base = buf;
    if (hit)
        return DSA_OK;
    int64_t ng = p->n_groups, kp = ng * p->group;
    for (int64_t t = 0; t < g->m; t++) {
        float *r = buf + (size_t)t * per;
        float *d = r + kp / 4, *zx = d + ng;
        int32_t *xs = (int32_t *)(zx + ng);
        q8_row_blk(g->x + t * g->ld_x, p->cols, kp, p->group, (int8_t *)r, d, xs);
        for (int64_t gi = 0; gi < ng; gi++)
            zx[gi] = d[gi] * (float)xs[gi];
    }
    s->q8_epoch = g->epoch, s->q8_x = g->x, s->q8_m = g->m, s->q8_ld_x = g->ld_x;
    s->q8_cols = p->cols, s->q8_group = p->group;
    return DSA_OK;
}

static q8_tok q8_tok_at(const dsa_cpu_awq8 *p, const float *base, int64_t t)
{
    int64_t ng = p->n_groups;
    const float *r = base + (size_t)t * q8_tok_floats(p);
    const float *d = r + ng * p->group / 4;
    return (q8_tok){.xq = (const int8_t *)r, .d = d, .zx = d + ng};
}

/* The final store, as cpu_awq.c's (alpha, accumulate, out_rows). */
static inline void q8_store(const dsa_cpu_gemm *g, int64_t t, int64_t n, float v)
{
    int64_t r = g->out_rows ? g->out_rows[t] : t;
    float *dst = g->out + r * g->ld_out + n;
    float a = g->alpha ? g->alpha[t] : 1.0f;
    *dst = g->accumulate ? fmaf(v, a, *dst) : v * a;
}

static inline float q8_hsum8(const float *a)
{
    return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

/* Output row i (packed-relative) for tokens [0, mt), scalar C in the order
 * of the file comment. */
static void q8_row_scalar(const dsa_cpu_awq8 *p, int64_t i, const q8_tok *tk, int mt, float *y)
{
    int64_t bpg = p->group / Q8_BLOCK;
    const uint8_t *wq = p->q + i * p->row_bytes;
    for (int t = 0; t < mt; t++) {
        float acc[8] = {0}, corr = 0.0f;
        for (int64_t gi = 0; gi < p->n_groups; gi++) {
            int32_t I[8] = {0};
            for (int64_t bb = gi * bpg; bb < (gi + 1) * bpg; bb++) {
                const int8_t *xq = tk[t].xq + bb * Q8_BLOCK;
                const uint8_t *wb = wq + (bb / 2) * 32;
                int hi = (int)(bb & 1);
                for (int l = 0; l < 8; l++)
                    for (int k = 4 * l; k < 4 * l + 4; k++)
                        I[l] += (int32_t)(hi ? wb[k] >> 4 : wb[k] & 15) * xq[k];
            }
            float ds = tk[t].d[gi] * p->s[i * p->n_groups + gi];
            for (int l = 0; l < 8; l++)
                acc[l] = fmaf((float)I[l], ds, acc[l]);
            corr = fmaf(p->zs[i * p->n_groups + gi], tk[t].zx[gi], corr);
        }
        y[t] = q8_hsum8(acc) + corr;
    }
}

#if Q8_AVX2
#define Q8_INLINE static inline __attribute__((always_inline))

/* The same as q8_row_scalar for NR rows [i, i + NR) and MT tokens (both
 * constants after inlining), groups of BPG blocks of 32.  Per group each
 * row's nibbles are unpacked once into BPG registers and used by every
 * token; per (row, token) the BPG vpmaddubsw outputs are summed in int16
 * (at most 2 * 15 * 127 * BPG <= 30480 for BPG <= 8: exact), widened by
 * one vpmaddwd and folded by one convert and one FMA with d_g s_g.  Each
 * (row, token) sees the same operations in the same order whatever NR and
 * MT, so the bits do not depend on the tiling.  y is [NR][MT]. */
Q8_INLINE void q8_tile_avx2(const dsa_cpu_awq8 *p, int64_t i, const int NR, const q8_tok *tk,
                            const int MT, const int BPG, float *y)
{
    int64_t ng = p->n_groups;
    const __m256i lo4 = _mm256_set1_epi8(15);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[AWQ8_TILE_R * AWQ8_TILE_T];
    _Pragma("GCC unroll 8")
    for (int c = 0; c < NR * MT; c++)
        acc[c] = _mm256_setzero_ps();
    for (int64_t gi = 0; gi < ng; gi++) {
        int64_t b0 = gi * BPG;
        __m256i wv[AWQ8_TILE_R][8];
        _Pragma("GCC unroll 8")
        for (int r = 0; r < NR; r++) {
            const uint8_t *wr = p->q + (i + r) * p->row_bytes;
            /* one token (NR rows): the same place in the next tile's row.
             * A row is short (448 bytes at K = 896), and NR interleaved
             * streams that end after a few lines leave the hardware
             * prefetcher behind; with 2048 bytes ahead, as a tile of
             * tokens (NR = 1) still uses, decode ran 6-8% slower
             * (docs/perf/cpu.md) */
            _mm_prefetch((const char *)(wr + b0 * 16 + (NR > 1 ? NR * p->row_bytes : 2048)),
                         _MM_HINT_T0);
            _Pragma("GCC unroll 8")
            for (int h = 0; h < BPG; h++) {
                int64_t bb = b0 + h;
                __m256i raw = _mm256_loadu_si256((const __m256i *)(wr + (bb / 2) * 32));
                wv[r][h] = (bb & 1) ? _mm256_and_si256(_mm256_srli_epi16(raw, 4), lo4)
                                    : _mm256_and_si256(raw, lo4);
            }
        }
        _Pragma("GCC unroll 8")
        for (int t = 0; t < MT; t++) {
            const int8_t *xg = tk[t].xq + b0 * Q8_BLOCK;
            __m256 dv = _mm256_broadcast_ss(tk[t].d + gi);
            _Pragma("GCC unroll 8")
            for (int r = 0; r < NR; r++) {
                __m256i s16 = _mm256_maddubs_epi16(wv[r][0], _mm256_loadu_si256((const __m256i *)xg));
                _Pragma("GCC unroll 8")
                for (int h = 1; h < BPG; h++)
                    s16 = _mm256_add_epi16(
                        s16, _mm256_maddubs_epi16(
                                 wv[r][h], _mm256_loadu_si256((const __m256i *)(xg + h * 32))));
                __m256 f = _mm256_cvtepi32_ps(_mm256_madd_epi16(s16, ones));
                __m256 ds = _mm256_mul_ps(dv, _mm256_broadcast_ss(p->s + (i + r) * ng + gi));
                int c = r * MT + t;
                acc[c] = _mm256_fmadd_ps(f, ds, acc[c]);
            }
        }
    }
    _Pragma("GCC unroll 8")
    for (int c = 0; c < NR * MT; c++) {
        /* the zero-point term over the groups, in group order (a chain of
         * its own: the same bits as interleaved with the groups) */
        const float *zs = p->zs + (i + c / MT) * ng, *zx = tk[c % MT].zx;
        float corr = 0.0f;
        for (int64_t gi = 0; gi < ng; gi++)
            corr = fmaf(zs[gi], zx[gi], corr);
        _Alignas(32) float a[8];
        _mm256_store_ps(a, acc[c]);
        y[c] = q8_hsum8(a) + corr;
    }
}

#define Q8_TILE_BPG(BPG)                                                                          \
    static void q8_tile_bpg##BPG(const dsa_cpu_awq8 *p, int64_t i, int nr, const q8_tok *tk,      \
                                 int mt, float *y)                                                \
    {                                                                                             \
        if (nr == AWQ8_TILE_R && mt == 1)                                                         \
            q8_tile_avx2(p, i, AWQ8_TILE_R, tk, 1, BPG, y);                                       \
        else if (nr == AWQ8_TILE_RM && mt == AWQ8_TILE_T)                                         \
            q8_tile_avx2(p, i, AWQ8_TILE_RM, tk, AWQ8_TILE_T, BPG, y);                            \
        else                                                                                      \
            switch (mt) {                                                                         \
            case 1: q8_tile_avx2(p, i, 1, tk, 1, BPG, y); break;                                  \
            case 2: q8_tile_avx2(p, i, 1, tk, 2, BPG, y); break;                                  \
            case 3: q8_tile_avx2(p, i, 1, tk, 3, BPG, y); break;                                  \
            case 4: q8_tile_avx2(p, i, 1, tk, 4, BPG, y); break;                                  \
            case 5: q8_tile_avx2(p, i, 1, tk, 5, BPG, y); break;                                  \
            case 6: q8_tile_avx2(p, i, 1, tk, 6, BPG, y); break;                                  \
            case 7: q8_tile_avx2(p, i, 1, tk, 7, BPG, y); break;                                  \
            default: q8_tile_avx2(p, i, 1, tk, 8, BPG, y); break;                                 \
            }                                                                                     \
    }
Q8_TILE_BPG(1)
Q8_TILE_BPG(2)
Q8_TILE_BPG(4)
Q8_TILE_BPG(8)

/* Rows [i, i + nr) for mt tokens, y [nr][mt]. */
static void q8_tile(const dsa_cpu_awq8 *p, int64_t i, int nr, const q8_tok *tk, int mt, float *y)
{
    switch (p->group / Q8_BLOCK) {
    case 1: q8_tile_bpg1(p, i, nr, tk, mt, y); break;
    case 2: q8_tile_bpg2(p, i, nr, tk, mt, y); break;
    case 4: q8_tile_bpg4(p, i, nr, tk, mt, y); break;
    default: q8_tile_bpg8(p, i, nr, tk, mt, y); break;
    }
}
#endif

int dsa_cpu_awq8_covers(const dsa_weight *w)
{
    const dsa_cpu_awq8 *p = w->awq8;
    return p && w->col0 == p->col0 && w->cols == p->cols && w->row0 >= p->row0 &&
           w->row0 + w->rows <= p->row0 + p->rows;
}

static dsa_err awq8_rows(const dsa_cpu_gemm *g, int64_t r0, int64_t r1, dsa_cpu_scratch *s,
                         int scalar)
{
    const dsa_cpu_awq8 *p = g->w->awq8;
    (void)scalar;   /* without AVX2 every path is the scalar one */
    float *base;
    dsa_err err = q8_tokens(g, p, s, &base);
    if (err)
        return err;
    int64_t off = g->w->row0 - p->row0;
    for (int64_t t0 = 0; t0 < g->m; t0 += AWQ8_TILE_T) {
        int mt = g->m - t0 < AWQ8_TILE_T ? (int)(g->m - t0) : AWQ8_TILE_T;
        q8_tok tk[AWQ8_TILE_T];
        for (int t = 0; t < mt; t++)
            tk[t] = q8_tok_at(p, base, t0 + t);
        /* rows per tile: AWQ8_TILE_R for one token, AWQ8_TILE_RM for a
         * full tile of tokens, else one */
        int nr = mt == 1 ? AWQ8_TILE_R : mt == AWQ8_TILE_T ? AWQ8_TILE_RM : 1;
        for (int64_t i = r0; i < r1;) {
            float y[AWQ8_TILE_R * AWQ8_TILE_T];
            int n = r1 - i < nr ? 1 : nr;
#if Q8_AVX2
            if (!scalar)
                q8_tile(p, off + i, n, tk, mt, y);
            else
#endif
                for (int r = 0; r < n; r++)
                    q8_row_scalar(p, off + i + r, tk, mt, y + r * mt);
            for (int r = 0; r < n; r++)
                for (int t = 0; t < mt; t++)
                    q8_store(g, t0 + t, i + r, y[r * mt + t]);
            i += n;
        }
    }
    return DSA_OK;
}

dsa_err dsa_cpu_awq8_gemm_rows(const dsa_cpu_gemm *g, int64_t r0, int64_t r1, dsa_cpu_scratch *s)
{
    return awq8_rows(g, r0, r1, s, 0);
}

dsa_err dsa_cpu_awq8_gemm_rows_scalar(const dsa_cpu_gemm *g, int64_t r0, int64_t r1,
                                      dsa_cpu_scratch *s)
{
    return awq8_rows(g, r0, r1, s, 1);
}

/* ---- int8 x int8: the --lm-head-dtype int8 head ------------------------ */

#if Q8_AVX2
/* Rows [i, i + nr) x tokens [0, mt), nr * mt <= Q8_TILE_M, into y [nr][mt]:
 * independent chains, each (row, token) in the order of the scalar form. */
Q8_INLINE void i8_tile_avx2(const dsa_weight *w, int64_t i, int nr, int mt, const int8_t *xq,
                            const float *d, float *y)
{
    int64_t ld = w->ld, nb = ld / Q8_BLOCK;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 G[Q8_TILE_M];
    for (int c = 0; c < nr * mt; c++)
        G[c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m256i wv[Q8_TILE_M], aw[Q8_TILE_M];
        for (int r = 0; r < nr; r++) {
            const int8_t *wr = (const int8_t *)w->data + (i + r) * ld + b * Q8_BLOCK;
            /* the same place two tiles on, once per 64-byte line: see
             * q8_tile_avx2 on short rows */
            if (!(b & 1))
                _mm_prefetch((const char *)(wr + 2 * nr * ld), _MM_HINT_T0);
            wv[r] = _mm256_loadu_si256((const __m256i *)wr);
            aw[r] = _mm256_sign_epi8(wv[r], wv[r]);
        }
        for (int t = 0; t < mt; t++) {
            __m256i x = _mm256_loadu_si256((const __m256i *)(xq + t * ld + b * Q8_BLOCK));
            __m256 dv = _mm256_set1_ps(d[t * nb + b]);
            for (int r = 0; r < nr; r++) {
                __m256i iv = _mm256_madd_epi16(
                    _mm256_maddubs_epi16(aw[r], _mm256_sign_epi8(x, wv[r])), ones);
                G[r * mt + t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(iv), dv, G[r * mt + t]);
            }
        }
    }
    for (int r = 0; r < nr; r++) {
        float sc = w->scale[(w->row0 + i + r) * w->scale_ld];
        for (int t = 0; t < mt; t++) {
            _Alignas(32) float a[8];
            _mm256_store_ps(a, G[r * mt + t]);
            y[r * mt + t] = q8_hsum8(a) * sc;
        }
    }
}
#endif

/* Rows [r0, r1) for tokens [t0, t0 + mt): x quantised in xq [mt][ld], d
 * [mt][ld / 32].  AVX2 has no signed x signed byte multiply-add, so the
 * weight's sign moves onto the activation (vpsignb) and its magnitude
 * goes in as the unsigned operand: |w| * (x sign(w)) = w x, pair sums at
 * most 2 * 127 * 127, no saturation.  One token runs 4 rows at once. */
static void i8_rows(const dsa_cpu_gemm *g, int64_t r0, int64_t r1, int64_t t0, int mt,
                    const int8_t *xq, const float *d, int scalar)
{
    const dsa_weight *w = g->w;
    int64_t ld = w->ld, nb = ld / Q8_BLOCK;
    int nr = mt == 1 ? 4 : 1;
    (void)scalar;
    for (int64_t i = r0; i < r1;) {
        int n = r1 - i < nr ? 1 : nr;
        float y[Q8_TILE_M];
#if Q8_AVX2
        if (!scalar) {
            if (n == 4)
                i8_tile_avx2(w, i, 4, 1, xq, d, y);
            else if (mt == 1)
                i8_tile_avx2(w, i, 1, 1, xq, d, y);
            else if (mt == 2)
                i8_tile_avx2(w, i, 1, 2, xq, d, y);
            else if (mt == 3)
                i8_tile_avx2(w, i, 1, 3, xq, d, y);
            else
                i8_tile_avx2(w, i, 1, 4, xq, d, y);
        } else
#endif
        {
            for (int r = 0; r < n; r++) {
                const int8_t *wr = (const int8_t *)w->data + (i + r) * ld;
                float sc = w->scale[(w->row0 + i + r) * w->scale_ld];
                for (int t = 0; t < mt; t++) {
                    float G[8] = {0};
                    for (int64_t b = 0; b < nb; b++)
                        for (int l = 0; l < 8; l++) {
                            int32_t I = 0;
                            for (int64_t k = b * Q8_BLOCK + 4 * l; k < b * Q8_BLOCK + 4 * l + 4;
                                 k++)
                                I += (int32_t)wr[k] * xq[t * ld + k];
                            G[l] = fmaf((float)I, d[t * nb + b], G[l]);
                        }
                    y[r * mt + t] = q8_hsum8(G) * sc;
                }
            }
        }
        for (int r = 0; r < n; r++)
            for (int t = 0; t < mt; t++)
                q8_store(g, t0 + t, i + r, y[r * mt + t]);
        i += n;
    }
}

static dsa_err i8_gemm(const dsa_cpu_gemm *g, int64_t r0, int64_t r1, dsa_cpu_scratch *s,
                       int scalar)
{
    int64_t ld = g->w->ld, nb = ld / Q8_BLOCK;
    /* per chunk: [Q8_TILE_M][ld] int8, then d and block sums */
    float *buf = dsa_cpu_scratch_get(s, DSA_CPU_SCR_TMP, (size_t)(Q8_TILE_M * (ld / 4 + 2 * nb)));
    if (!buf)
        return DSA_NOMEM;
    int8_t *xq = (int8_t *)buf;
    float *d = buf + Q8_TILE_M * ld / 4;
    int32_t *xs = (int32_t *)(d + Q8_TILE_M * nb);
    for (int64_t t0 = 0; t0 < g->m; t0 += Q8_TILE_M) {
        int mt = g->m - t0 < Q8_TILE_M ? (int)(g->m - t0) : Q8_TILE_M;
        for (int t = 0; t < mt; t++)
            dsa_cpu_q8_row(g->x + (t0 + t) * g->ld_x, g->w->cols, ld, xq + t * ld, d + t * nb,
                           xs + t * nb);
        i8_rows(g, r0, r1, t0, mt, xq, d, scalar);
    }
    return DSA_OK;
}

dsa_err dsa_cpu_i8_gemm_rows(const dsa_cpu_gemm *g, int64_t r0, int64_t r1, dsa_cpu_scratch *s)
{
    return i8_gemm(g, r0, r1, s, 0);
}

dsa_err dsa_cpu_i8_gemm_rows_scalar(const dsa_cpu_gemm *g, int64_t r0, int64_t r1,
                                    dsa_cpu_scratch *s)
{
    return i8_gemm(g, r0, r1, s, 1);
}
