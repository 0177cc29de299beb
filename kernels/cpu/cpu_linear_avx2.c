/* cpu_linear_avx2.c - y = x W^T with AVX2 + FMA + F16C, for every machine
 * with those, AVX-512 ones included (cpu_linear.c holds the scalar path
 * for machines without them).
 *
 * One accumulation order for every (row, token), whatever the batch size
 * and whichever path runs, so a row's output never depends on how many
 * tokens share the step (speculative decoding verifies k+1 tokens and must
 * reproduce plain decoding bit for bit):
 *   w[k] = dsa_weight_get(W, n, k) (exact: F16/BF16/e4m3 fit in F32, and
 *          the FP8 block scale is applied with one rounding, as there);
 *   chunk c = elements [8c, 8c+8) (the last one zero-padded) is added by
 *          FMA into accumulator A when c is even, B when c is odd;
 *   y = hsum(A + B): lanes l and l+4 added, then (0+2) + (1+3).
 * dsa_cpu_avx2_dot_ref in the tests spells the same order in scalar C.
 *
 * Paths: decode and small batches (m < LIN_PANEL_M_MIN) decode weights in
 * registers (BF16 by a shift, F16 by F16C, e4m3 by a shift-and-mask into
 * an F16 worth value * 2^-8 then times 256 * scale: exact, see below) in a
 * tile of 4 rows (2 for e4m3) x 1 token, or 1 row x 2-4 tokens, with a
 * software prefetch along the rows; larger batches dequantise a panel of
 * 16 rows to F32 once and run a 4 x 3 register tile over the tokens (the
 * A and B chains one after the other, see panel_tile), so the decoding is
 * shared by every token. */
#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu_internal.h"

#if DSA_CPU_AVX2
#include <immintrin.h>

#define AVX2_INLINE static inline __attribute__((always_inline))

/* Tokens at or above this dequantise panels (same as cpu_linear.c). */
#define AVX2_PANEL_M_MIN 8
#define AVX2_PANEL_ROWS 16
#define AVX2_NR_MAX 4
#define AVX2_MB_MAX 4
#ifndef AVX2_PF_DIST
#define AVX2_PF_DIST 4096
#endif
/* Rows a one-token tile walks: 4 (8 FMA chains) for 16-bit weights; e4m3
 * keeps a scale vector per row and its decode's temporaries, so 4 rows
 * would spill. */
#ifndef AVX2_M1_ROWS
#define AVX2_M1_ROWS 4
#endif
#ifndef AVX2_M1_ROWS_F8
#define AVX2_M1_ROWS_F8 2
#endif

static inline int64_t pad16(int64_t n)
{
    return (n + 15) & ~(int64_t)15;
}

/* 8 weights from element k of a row.  e4m3 comes out as value * 2^-8: the
 * sign-extended byte shifted left by 7 puts e4m3's exponent and mantissa
 * into an F16's, and the AND clears the sign copy left in bit 14 (exact,
 * subnormals included); the caller multiplies by 256 * scale, which is
 * exact too, so the product is value * scale rounded once. */
AVX2_INLINE __m256 w_load8(int dt, const void *row, int64_t k)
{
    switch (dt) {
    case DSA_DTYPE_F16:
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + k)));
    case DSA_DTYPE_BF16:
        return _mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + k))),
            16));
    case DSA_DTYPE_F8_E4M3: {
        __m128i h = _mm_cvtepi8_epi16(_mm_loadl_epi64((const __m128i *)((const uint8_t *)row + k)));
        h = _mm_and_si128(_mm_slli_epi16(h, 7), _mm_set1_epi16((short)0xBF80));
        return _mm256_cvtph_ps(h);
    }
    default:
        return _mm256_loadu_ps((const float *)row + k);
    }
}

/* The n < 8 elements from k, zero-padded (the ragged end of a row). */
AVX2_INLINE __m256 w_load8_part(int dt, const void *row, int64_t k, int64_t n)
{
    _Alignas(32) unsigned char tmp[32] = {0};
    size_t es = dsa_dtype_size((dsa_dtype)dt);
    memcpy(tmp, (const char *)row + (size_t)k * es, (size_t)n * es);
    return w_load8(dt, tmp, 0);
}

AVX2_INLINE __m256 x_load8_part(const float *x, int64_t n)
{
    _Alignas(32) float tmp[8] = {0};
    memcpy(tmp, x, (size_t)n * sizeof(float));
    return _mm256_load_ps(tmp);
}

/* The fixed horizontal sum of the file comment. */
AVX2_INLINE float hsum_ab(__m256 a, __m256 b)
{
    __m256 v = _mm256_add_ps(a, b);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
}

/* What a tile needs besides its rows: FP8 block scales per row. */
typedef struct avx2_f8 {
    const float *srow[AVX2_NR_MAX];     /* scale row of each tile row */
    int64_t col0, block_cols;
} avx2_f8;

/* The scale vector (256 * S) of each row for the block holding column k;
 * *seg_end becomes the end of that block. */
AVX2_INLINE void f8_scales(int nr, const avx2_f8 *f8, int64_t k, int64_t *seg_end,
                           __m256 sv[AVX2_NR_MAX])
{
    int64_t kb = (f8->col0 + k) / f8->block_cols;
    *seg_end = (kb + 1) * f8->block_cols - f8->col0;
    for (int r = 0; r < nr; r++)
        sv[r] = _mm256_set1_ps(f8->srow[r][kb] * 256.0f);
}

/* res[r][t] = sum_k W_r[k] x_t[k] in the file's order, for nr rows and mb
 * tokens (compile-time constants after inlining into the switch below).
 * FP8 needs f8->col0 and block_cols to be multiples of 16, so a 16-wide
 * step never straddles two scale blocks. */
AVX2_INLINE void tile_kernel(int dt, int nr, int mb, const void *const *wr, const avx2_f8 *f8,
                             const char *pf, const float *x, int64_t ld_x, int64_t K,
                             float res[AVX2_NR_MAX][AVX2_MB_MAX])
{
    /* pf: where this tile's rows continue in memory, AVX2_PF_DIST bytes on
     * (NULL: no prefetch); the tile reads nr * 16 * es bytes a step. */
    const int64_t step_bytes = (int64_t)nr * 16 * (int64_t)dsa_dtype_size((dsa_dtype)dt);
    __m256 a[AVX2_NR_MAX][AVX2_MB_MAX], b[AVX2_NR_MAX][AVX2_MB_MAX], sv[AVX2_NR_MAX];
    int64_t seg_end = K;
#pragma GCC unroll 4
    for (int r = 0; r < nr; r++)
#pragma GCC unroll 4
        for (int t = 0; t < mb; t++)
            a[r][t] = b[r][t] = _mm256_setzero_ps();
    if (dt == DSA_DTYPE_F8_E4M3)
        f8_scales(nr, f8, 0, &seg_end, sv);
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
        if (dt == DSA_DTYPE_F8_E4M3 && k >= seg_end)
            f8_scales(nr, f8, k, &seg_end, sv);
        if (pf) {
            /* each line once, from the step that reaches its start */
            int64_t off = (k / 16) * step_bytes;
            for (int64_t j = (64 - (off & 63)) & 63; j < step_bytes; j += 64)
                _mm_prefetch(pf + off + j, _MM_HINT_T0);
        }
        __m256 w0[AVX2_NR_MAX], w1[AVX2_NR_MAX];
#pragma GCC unroll 4
        for (int r = 0; r < nr; r++) {
            w0[r] = w_load8(dt, wr[r], k);
            w1[r] = w_load8(dt, wr[r], k + 8);
            if (dt == DSA_DTYPE_F8_E4M3) {
                w0[r] = _mm256_mul_ps(w0[r], sv[r]);
                w1[r] = _mm256_mul_ps(w1[r], sv[r]);
            }
        }
#pragma GCC unroll 4
        for (int t = 0; t < mb; t++) {
            __m256 x0 = _mm256_loadu_ps(x + t * ld_x + k);
            __m256 x1 = _mm256_loadu_ps(x + t * ld_x + k + 8);
#pragma GCC unroll 4
            for (int r = 0; r < nr; r++) {
                a[r][t] = _mm256_fmadd_ps(w0[r], x0, a[r][t]);
                b[r][t] = _mm256_fmadd_ps(w1[r], x1, b[r][t]);
            }
        }
    }
    /* the ragged end: one full or partial chunk into A, a partial one into B */
    for (int half = 0; k < K; half++, k += 8) {
        int64_t n = K - k < 8 ? K - k : 8;
        if (dt == DSA_DTYPE_F8_E4M3 && k >= seg_end)
            f8_scales(nr, f8, k, &seg_end, sv);
        __m256 wv[AVX2_NR_MAX];
#pragma GCC unroll 4
        for (int r = 0; r < nr; r++) {
            wv[r] = n == 8 ? w_load8(dt, wr[r], k) : w_load8_part(dt, wr[r], k, n);
            if (dt == DSA_DTYPE_F8_E4M3)
                wv[r] = _mm256_mul_ps(wv[r], sv[r]);
        }
#pragma GCC unroll 4
        for (int t = 0; t < mb; t++) {
            __m256 xv = n == 8 ? _mm256_loadu_ps(x + t * ld_x + k)
                               : x_load8_part(x + t * ld_x + k, n);
#pragma GCC unroll 4
            for (int r = 0; r < nr; r++) {
                if (half == 0)
                    a[r][t] = _mm256_fmadd_ps(wv[r], xv, a[r][t]);
                else
                    b[r][t] = _mm256_fmadd_ps(wv[r], xv, b[r][t]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < nr; r++)
#pragma GCC unroll 4
        for (int t = 0; t < mb; t++)
            res[r][t] = hsum_ab(a[r][t], b[r][t]);
}

/* Instantiations: 1 row x 1..4 tokens (small batches: one weight stream),
 * 2 rows x 1..3 tokens (5-7 tokens, and e4m3 decode) and 3-4 rows x 1
 * token (decode and its remainders). */
#define AVX2_CASE(DT, NR, MB)                                                              \
    case ((DT) * 8 + (NR)) * 8 + (MB):                                                      \
        tile_kernel(DT, NR, MB, wr, f8, pf, x, ld_x, K, res);                               \
        break;
#define AVX2_CASES(DT)                                                                     \
    AVX2_CASE(DT, 1, 1) AVX2_CASE(DT, 1, 2) AVX2_CASE(DT, 1, 3) AVX2_CASE(DT, 1, 4)        \
    AVX2_CASE(DT, 2, 1) AVX2_CASE(DT, 2, 2) AVX2_CASE(DT, 2, 3) AVX2_CASE(DT, 3, 1)        \
    AVX2_CASE(DT, 4, 1)

static void tile_run(int dt, int nr, int mb, const void *const *wr, const avx2_f8 *f8,
                     const char *pf, const float *x, int64_t ld_x, int64_t K,
                     float res[AVX2_NR_MAX][AVX2_MB_MAX])
{
    switch ((dt * 8 + nr) * 8 + mb) {
        AVX2_CASES(DSA_DTYPE_F32)
        AVX2_CASES(DSA_DTYPE_F16)
        AVX2_CASES(DSA_DTYPE_BF16)
        AVX2_CASES(DSA_DTYPE_F8_E4M3)
    default:
        break;
    }
}

/* The store spelt out so that every path rounds the same way: left to
 * itself the compiler contracts *dst + v * alpha into an FMA in some
 * inlined copies and not in others, and an MoE token's output then
 * depended on how many tokens its expert had (panel or not). */
static inline void out_store(const dsa_cpu_gemm *g, int64_t t, int64_t n, float v)
{
    int64_t r = g->out_rows ? g->out_rows[t] : t;
    float *dst = g->out + r * g->ld_out + n;
    float a = g->alpha ? g->alpha[t] : 1.0f;
    *dst = g->accumulate ? fmaf(v, a, *dst) : v * a;
}

/* Rows [i0, i0 + n_rows) of a row set (row i at base + i * row_bytes, its
 * FP8 scale row from scale_of) times all tokens; row i is output column
 * n0 + i.  Token blocks of mb_max, row blocks of nr_max. */
typedef struct avx2_rows {
    int dt;
    const char *base;
    size_t row_bytes;
    int64_t n_rows, n0, K;
    const dsa_weight *w8;       /* FP8 weight for the scales, else NULL */
    int64_t pf_dist;            /* software prefetch distance in bytes, 0: none */
} avx2_rows;

/* Rows outer: each weight row is read from memory once for all tokens. */
static void rows_run(const dsa_cpu_gemm *g, const avx2_rows *rs, int nr_max, int mb_max)
{
    float res[AVX2_NR_MAX][AVX2_MB_MAX];
    const void *wr[AVX2_NR_MAX];
    avx2_f8 f8 = {0};
    if (rs->w8) {
        f8.col0 = rs->w8->col0;
        f8.block_cols = rs->w8->block_cols;
    }
    for (int64_t i = 0; i < rs->n_rows; i += nr_max) {
        int nr = rs->n_rows - i < nr_max ? (int)(rs->n_rows - i) : nr_max;
        for (int r = 0; r < nr; r++) {
            wr[r] = rs->base + (size_t)(i + r) * rs->row_bytes;
            if (rs->w8) {
                const dsa_weight *w = rs->w8;
                int64_t o = w->row0 + rs->n0 + i + r;
                f8.srow[r] = w->scale + (o / w->block_rows) * w->scale_ld;
            }
        }
        for (int64_t t0 = 0; t0 < g->m; t0 += mb_max) {
            int mb = g->m - t0 < mb_max ? (int)(g->m - t0) : mb_max;
            const char *pf = rs->pf_dist && t0 == 0 ? (const char *)wr[0] + rs->pf_dist : NULL;
            tile_run(rs->dt, nr, mb, wr, &f8, pf, g->x + t0 * g->ld_x, g->ld_x, rs->K, res);
            for (int r = 0; r < nr; r++)
                for (int t = 0; t < mb; t++)
                    out_store(g, t0 + t, rs->n0 + i + r, res[r][t]);
        }
    }
}

/* The panel's register tile: nr <= 4 rows x mb <= 3 tokens of F32 panel
 * rows (zero-padded to a multiple of 16), over chunks [c0, c1) (c0 even).
 * The even chunks' accumulator A and the odd chunks' B of the file's
 * order are independent FMA chains, so they are run one after the other,
 * A over the even chunks, then B over the odd ones: each chain sees the
 * same operands in the same order as in tile_kernel (same bits), and one
 * pass needs 12 accumulators, not 24, leaving room for 4 rows x 3 tokens
 * (7 loads per 12 FMAs instead of the 2 x 3 tile's 10 per 12).  acc
 * carries both chains from one block of chunks to the next. */
typedef struct panel_acc {
    __m256 c[2][4][3];          /* [A or B][row][token] */
} panel_acc;

AVX2_INLINE void panel_tile(int nr, int mb, const float *w, int64_t kp, const float *x,
                            int64_t ld_x, int64_t K, int64_t c0, int64_t c1, panel_acc *acc)
{
    int64_t full = K / 8;
    for (int p = 0; p < 2; p++) {
        __m256 c[4][3];
#pragma GCC unroll 4
        for (int r = 0; r < nr; r++)
#pragma GCC unroll 3
            for (int t = 0; t < mb; t++)
                c[r][t] = acc->c[p][r][t];
        for (int64_t ci = c0 + p; ci < c1; ci += 2) {
            int64_t k = ci * 8;
            __m256 xv[3];
#pragma GCC unroll 3
            for (int t = 0; t < mb; t++) {
                xv[t] = ci < full ? _mm256_loadu_ps(x + t * ld_x + k)
                                  : x_load8_part(x + t * ld_x + k, K - k);
                /* keep the tokens in registers: left alone, GCC keeps the
                 * 4 weight vectors instead and reads x as FMA memory
                 * operands, 16 loads per 12 FMAs rather than 7 (Zen 3
                 * issues two 256-bit loads a cycle: loads bound the tile) */
                __asm__("" : "+x"(xv[t]));
            }
#pragma GCC unroll 4
            for (int r = 0; r < nr; r++) {
                __m256 wv = _mm256_load_ps(w + r * kp + k);
                __asm__("" : "+x"(wv)); /* one load, not one per token */
#pragma GCC unroll 3
                for (int t = 0; t < mb; t++)
                    c[r][t] = _mm256_fmadd_ps(wv, xv[t], c[r][t]);
            }
        }
#pragma GCC unroll 4
        for (int r = 0; r < nr; r++)
#pragma GCC unroll 3
            for (int t = 0; t < mb; t++)
                acc->c[p][r][t] = c[r][t];
    }
}

#define PANEL_CASE(NR, MB)                                                                 \
    case (NR) * 4 + (MB):                                                                   \
        panel_tile(NR, MB, w, kp, x, ld_x, K, c0, c1, acc);                                 \
        break;

static void panel_run(int nr, int mb, const float *w, int64_t kp, const float *x, int64_t ld_x,
                      int64_t K, int64_t c0, int64_t c1, panel_acc *acc)
{
    switch (nr * 4 + mb) {
        PANEL_CASE(1, 1) PANEL_CASE(1, 2) PANEL_CASE(1, 3)
        PANEL_CASE(2, 1) PANEL_CASE(2, 2) PANEL_CASE(2, 3)
        PANEL_CASE(3, 1) PANEL_CASE(3, 2) PANEL_CASE(3, 3)
        PANEL_CASE(4, 1) PANEL_CASE(4, 2) PANEL_CASE(4, 3)
    default:
        break;
    }
}

/* Chunks of 8 columns per K block of the panel (even, so a block keeps
 * the chunks' parity): a token triple's block of x (3 x 4 KiB at 128
 * chunks = 1,024 columns) stays in L1 while the panel's rows stream past
 * it from L2. */
#ifndef AVX2_PANEL_KB_CHUNKS
#define AVX2_PANEL_KB_CHUNKS 128
#endif
_Static_assert(AVX2_PANEL_KB_CHUNKS % 2 == 0, "a K block must keep the chunks' parity");

static dsa_err gemm_panel(const dsa_cpu_gemm *g, int64_t r0, int64_t r1, dsa_cpu_scratch *s)
{
    const dsa_weight *w = g->w;
    int64_t K = w->cols, kp = pad16(K), n_chunks = (K + 7) / 8;
    float *panel = dsa_cpu_scratch_get(s, DSA_CPU_SCR_PANEL, (size_t)(AVX2_PANEL_ROWS * kp));
    if (!panel)
        return DSA_NOMEM;
    for (int64_t i = r0; i < r1; i += AVX2_PANEL_ROWS) {
        int64_t n = r1 - i < AVX2_PANEL_ROWS ? r1 - i : AVX2_PANEL_ROWS;
        for (int64_t r = 0; r < n; r++) {
            dsa_cpu_weight_row(w, i + r, panel + r * kp);
            memset(panel + r * kp + K, 0, (size_t)(kp - K) * sizeof(float));
        }
        /* tokens outer: the panel stays in L2; K blocks inside, so that
         * the token triple's x block is in L1 for all the panel's rows
         * (a whole 4864-column triple, 58 kB, is not) */
        panel_acc acc[AVX2_PANEL_ROWS / 4];
        for (int64_t t0 = 0; t0 < g->m; t0 += 3) {
            int mb = g->m - t0 < 3 ? (int)(g->m - t0) : 3;
            const float *xt = g->x + t0 * g->ld_x;
            memset(acc, 0, sizeof acc);
            for (int64_t c0 = 0; c0 < n_chunks; c0 += AVX2_PANEL_KB_CHUNKS) {
                int64_t c1 = n_chunks - c0 < AVX2_PANEL_KB_CHUNKS ? n_chunks
                                                                  : c0 + AVX2_PANEL_KB_CHUNKS;
                for (int64_t r = 0; r < n; r += 4) {
                    int nr = n - r < 4 ? (int)(n - r) : 4;
                    panel_run(nr, mb, panel + r * kp, kp, xt, g->ld_x, K, c0, c1, &acc[r / 4]);
                }
            }
            for (int64_t r = 0; r < n; r += 4) {
                int nr = n - r < 4 ? (int)(n - r) : 4;
                for (int rr = 0; rr < nr; rr++)
                    for (int t = 0; t < mb; t++)
                        out_store(g, t0 + t, i + r + rr,
                                  hsum_ab(acc[r / 4].c[0][rr][t], acc[r / 4].c[1][rr][t]));
            }
        }
    }
    return DSA_OK;
}

dsa_err dsa_cpu_gemm_rows_avx2(const dsa_cpu_gemm *g, int64_t r0, int64_t r1, dsa_cpu_scratch *s)
{
    const dsa_weight *w = g->w;
    int dt = w->dtype;
    /* e4m3 in registers needs 16-aligned scale blocks; other FP8 slices
     * (never seen in checkpoints) take the panel, which gives the same sums */
    int f8_ok = dt != DSA_DTYPE_F8_E4M3 || (w->col0 % 16 == 0 && w->block_cols % 16 == 0);
    if (dt == DSA_DTYPE_F32 || (g->m < AVX2_PANEL_M_MIN && f8_ok)) {
        size_t row_bytes = (size_t)w->ld * dsa_dtype_size(w->dtype);
        avx2_rows rs = {.dt = dt,
                        .base = (const char *)w->data + (size_t)r0 * row_bytes,
                        .row_bytes = row_bytes, .n_rows = r1 - r0, .n0 = r0, .K = w->cols,
                        .w8 = dt == DSA_DTYPE_F8_E4M3 ? w : NULL};
        /* rows back to back: the tile's rows are one run of memory, read
         * from its start to its end, so prefetch along it */
        if (w->ld == w->cols && dt != DSA_DTYPE_F32)
            rs.pf_dist = AVX2_PF_DIST;
        if (g->m == 1)
            rows_run(g, &rs, dt == DSA_DTYPE_F8_E4M3 ? AVX2_M1_ROWS_F8 : AVX2_M1_ROWS, 1);
        else if (g->m <= AVX2_MB_MAX)
            rows_run(g, &rs, 1, (int)g->m); /* one stream shared by all tokens */
        else
            rows_run(g, &rs, 2, 3);
        return DSA_OK;
    }
    return gemm_panel(g, r0, r1, s);
}

#endif /* DSA_CPU_AVX2 */
