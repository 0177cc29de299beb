/* cpu_linear.c - y = x W^T for F32 / F16 / BF16 / FP8 (e4m3, 128x128 block
 * scales) weights, and the two MLA absorptions.
 *
 * Every machine with AVX2, FMA and F16C, AVX-512 ones included, runs
 * cpu_linear_avx2.c, whose accumulation order is batch-invariant: a token's
 * outputs are the same bits alone or in any batch. The AVX-512 GEMM that
 * was here (register tiles with the FP8 scale folded into x for small
 * batches, a dequantised panel for large ones) was not, and with it
 * speculative verification changed greedy outputs on an AVX-512 machine
 * (test_engine_mask, 2026-12-07), so it was removed. Elsewhere a scalar
 * fallback. The AVX-512 helpers left serve the vector helpers, the weight
 * row decoding, dsa_cpu_dot_tile and the MLA absorptions. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_internal.h"

#if defined(__AVX512F__) || defined(__F16C__) || DSA_CPU_AVX2
#include <immintrin.h>
#endif

/* Tokens at or above this use the dequantised-panel path (see bench_ops). */
#define LIN_PANEL_M_MIN 8
#define LIN_PANEL_ROWS 16

static inline const char *w_row_ptr(const dsa_weight *w, int64_t i)
{
    return (const char *)w->data + (size_t)(i * w->ld) * dsa_dtype_size(w->dtype);
}

/* ---- Vector helpers ---------------------------------------------------- */

float dsa_cpu_dot(const float *a, const float *b, int64_t n)
{
#ifdef __AVX512F__
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 32 <= n; k += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + k), _mm512_loadu_ps(b + k), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + k + 16), _mm512_loadu_ps(b + k + 16), s1);
    }
    for (; k < n; k += 16) {
        __mmask16 m = n - k >= 16 ? 0xffff : (__mmask16)((1u << (n - k)) - 1);
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + k), _mm512_maskz_loadu_ps(m, b + k), s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
#else
    /* 8-lane vectors (AVX2 with -march on such machines), 4 accumulators */
    typedef float v8f __attribute__((vector_size(32), aligned(4)));
    v8f s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
    int64_t k = 0;
    for (; k + 32 <= n; k += 32) {
        s0 += *(const v8f *)(a + k) * *(const v8f *)(b + k);
        s1 += *(const v8f *)(a + k + 8) * *(const v8f *)(b + k + 8);
        s2 += *(const v8f *)(a + k + 16) * *(const v8f *)(b + k + 16);
        s3 += *(const v8f *)(a + k + 24) * *(const v8f *)(b + k + 24);
    }
    v8f v = (s0 + s1) + (s2 + s3);
    float s = ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
    for (; k < n; k++)
        s += a[k] * b[k];
    return s;
#endif
}

void dsa_cpu_axpy(float *y, float a, const float *x, int64_t n)
{
#ifdef __AVX512F__
    __m512 av = _mm512_set1_ps(a);
    int64_t k = 0;
    for (; k + 16 <= n; k += 16)
        _mm512_storeu_ps(y + k, _mm512_fmadd_ps(av, _mm512_loadu_ps(x + k), _mm512_loadu_ps(y + k)));
    if (k < n) {
        __mmask16 m = (__mmask16)((1u << (n - k)) - 1);
        _mm512_mask_storeu_ps(y + k, m, _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(m, x + k),
                                                        _mm512_maskz_loadu_ps(m, y + k)));
    }
#else
    for (int64_t k = 0; k < n; k++)
        y[k] += a * x[k];
#endif
}

void dsa_cpu_scale(float *y, float a, int64_t n)
{
    int64_t k = 0;
#ifdef __AVX512F__
    __m512 av = _mm512_set1_ps(a);
    for (; k + 16 <= n; k += 16)
        _mm512_storeu_ps(y + k, _mm512_mul_ps(av, _mm512_loadu_ps(y + k)));
#endif
    for (; k < n; k++)
        y[k] *= a;
}

void dsa_cpu_softmax_chunk(float *sc, int64_t n, float *mx, float *l, float *acc, int64_t dim)
{
    float m_chunk = -INFINITY;
    for (int64_t j = 0; j < n; j++)
        m_chunk = sc[j] > m_chunk ? sc[j] : m_chunk;
    if (m_chunk > *mx) {
        float corr = expf(*mx - m_chunk); /* 0 on the first chunk */
        *l *= corr;
        dsa_cpu_scale(acc, corr, dim);
        *mx = m_chunk;
    }
    for (int64_t j = 0; j < n; j++) {
        sc[j] = expf(sc[j] - *mx);
        *l += sc[j];
    }
}

/* ---- Weight decoding ---------------------------------------------------- */

#ifdef __AVX512F__
#define DSA_INLINE static inline __attribute__((always_inline))

/* 16 weights from element k of a row.  FP8 comes out as value * 2^-8: the
 * sign-extended byte shifted left by 7 puts e4m3's exponent and mantissa
 * into an F16's, and the AND clears the sign copy left in bit 14. */
DSA_INLINE __m512 w_load(int dt, const void *row, int64_t k)
{
    switch (dt) {
    case DSA_DTYPE_F16:
        return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)row + k)));
    case DSA_DTYPE_BF16:
        return _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)((const uint16_t *)row + k))), 16));
    case DSA_DTYPE_F8_E4M3: {
        __m256i h = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)((const uint8_t *)row + k)));
        h = _mm256_and_si256(_mm256_slli_epi16(h, 7), _mm256_set1_epi16((short)0xBF80));
        return _mm512_cvtph_ps(h);
    }
    default:
        return _mm512_loadu_ps((const float *)row + k);
    }
}

DSA_INLINE __m512 w_load_mask(int dt, const void *row, int64_t k, __mmask16 m)
{
    switch (dt) {
    case DSA_DTYPE_F16:
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)row + k));
    case DSA_DTYPE_BF16:
        return _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, (const uint16_t *)row + k)), 16));
    case DSA_DTYPE_F8_E4M3: {
        __m256i h = _mm256_cvtepi8_epi16(_mm_maskz_loadu_epi8(m, (const uint8_t *)row + k));
        h = _mm256_and_si256(_mm256_slli_epi16(h, 7), _mm256_set1_epi16((short)0xBF80));
        return _mm512_cvtph_ps(h);
    }
    default:
        return _mm512_maskz_loadu_ps(m, (const float *)row + k);
    }
}
#endif

/* Columns [j, j_end) of row i share one FP8 scale: the end of j's block. */
static inline int64_t f8_seg_end(const dsa_weight *w, int64_t j)
{
    int64_t kb = (w->col0 + j) / w->block_cols;
    int64_t e = (kb + 1) * w->block_cols - w->col0;
    return e < w->cols ? e : w->cols;
}

static void f8_row_seg(const uint8_t *q, int64_t j0, int64_t j1, float s, float *dst)
{
#ifdef __AVX512F__
    __m512 sv = _mm512_set1_ps(s * 256.0f);
    int64_t j = j0;
    for (; j + 16 <= j1; j += 16)
        _mm512_storeu_ps(dst + j, _mm512_mul_ps(w_load(DSA_DTYPE_F8_E4M3, q, j), sv));
    if (j < j1) {
        __mmask16 m = (__mmask16)((1u << (j1 - j)) - 1);
        _mm512_mask_storeu_ps(dst + j, m,
                              _mm512_mul_ps(w_load_mask(DSA_DTYPE_F8_E4M3, q, j, m), sv));
    }
#else
    int64_t j = j0;
#if DSA_CPU_AVX2
    /* as cpu_linear_avx2.c decodes e4m3: an F16 worth value * 2^-8, times
     * 256 * s (exact), so each product is rounded once as below */
    __m256 sv = _mm256_set1_ps(s * 256.0f);
    for (; j + 8 <= j1; j += 8) {
        __m128i h = _mm_cvtepi8_epi16(_mm_loadl_epi64((const __m128i *)(q + j)));
        h = _mm_and_si128(_mm_slli_epi16(h, 7), _mm_set1_epi16((short)0xBF80));
        _mm256_storeu_ps(dst + j, _mm256_mul_ps(_mm256_cvtph_ps(h), sv));
    }
#endif
    for (; j < j1; j++)
        dst[j] = dsa_e4m3_to_f32(q[j]) * s;
#endif
}

void dsa_cpu_weight_row(const dsa_weight *w, int64_t i, float *dst)
{
    const char *row = w_row_ptr(w, i);
    int64_t n = w->cols;
    switch (w->dtype) {
    case DSA_DTYPE_F32:
        memcpy(dst, row, (size_t)n * sizeof(float));
        break;
    case DSA_DTYPE_F16:
    case DSA_DTYPE_BF16: {
        const uint16_t *h = (const uint16_t *)row;
        int64_t j = 0;
#ifdef __AVX512F__
        if (w->dtype == DSA_DTYPE_F16)
            for (; j + 16 <= n; j += 16)
                _mm512_storeu_ps(dst + j, w_load(DSA_DTYPE_F16, h, j));
        else
            for (; j + 16 <= n; j += 16)
                _mm512_storeu_ps(dst + j, w_load(DSA_DTYPE_BF16, h, j));
#else
        if (w->dtype == DSA_DTYPE_BF16) { /* BF16 is the top half of an F32 */
#if DSA_CPU_AVX2
            for (; j + 8 <= n; j += 8)
                _mm256_storeu_si256((__m256i *)(dst + j),
                                    _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(
                                                          (const __m128i *)(h + j))), 16));
#endif
            for (; j < n; j++) {
                uint32_t u = (uint32_t)h[j] << 16;
                memcpy(dst + j, &u, sizeof u);
            }
        }
#ifdef __F16C__
        else
            for (; j + 8 <= n; j += 8)
                _mm256_storeu_ps(dst + j, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + j))));
#endif
#endif
        for (; j < n; j++)
            dst[j] = w->dtype == DSA_DTYPE_F16 ? dsa_f16_to_f32(h[j]) : dsa_bf16_to_f32(h[j]);
        break;
    }
    case DSA_DTYPE_F8_E4M3: {
        const float *srow = w->scale + ((w->row0 + i) / w->block_rows) * w->scale_ld;
        for (int64_t j = 0; j < n;) {
            int64_t j1 = f8_seg_end(w, j);
            f8_row_seg((const uint8_t *)row, j, j1, srow[(w->col0 + j) / w->block_cols], dst);
            j = j1;
        }
        break;
    }
    case DSA_DTYPE_I32:
        dsa_cpu_awq_row(w, i, dst);
        break;
    case DSA_DTYPE_I8:
        for (int64_t j = 0; j < n; j++)
            dst[j] = dsa_weight_get(w, i, j);
        break;
    default:
        memset(dst, 0, (size_t)n * sizeof(float));
    }
}

/* ---- Output store ------------------------------------------------------- */

static inline void out_store(const dsa_cpu_gemm *g, int64_t t, int64_t n, float v)
{
    int64_t r = g->out_rows ? g->out_rows[t] : t;
    float *dst = g->out + r * g->ld_out + n;
    if (g->alpha)
        v *= g->alpha[t];
    *dst = g->accumulate ? *dst + v : v;
}

#ifdef __AVX512F__
/* ---- Register tile ------------------------------------------------------ */

#define TILE_R_MAX 4
#define TILE_M_MAX 4

/* res[r][t] = sum_k W_r[k] * x[t][k], k in [0, K), for nr rows (pointers
 * wr) and mb tokens; dt, nr and mb are compile-time constants after
 * inlining into tile_run's cases. */
DSA_INLINE void tile_kernel(int dt, int nr, int mb, const void *const *wr, const float *x,
                            int64_t ld_x, int64_t K, float res[TILE_R_MAX][TILE_M_MAX])
{
    __m512 acc[TILE_R_MAX][TILE_M_MAX];
#pragma GCC unroll 4
    for (int r = 0; r < nr; r++)
#pragma GCC unroll 4
        for (int t = 0; t < mb; t++)
            acc[r][t] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
        __m512 wv[TILE_R_MAX];
#pragma GCC unroll 4
        for (int r = 0; r < nr; r++)
            wv[r] = w_load(dt, wr[r], k);
#pragma GCC unroll 4
        for (int t = 0; t < mb; t++) {
            __m512 xv = _mm512_loadu_ps(x + t * ld_x + k);
#pragma GCC unroll 4
            for (int r = 0; r < nr; r++)
                acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
        }
    }
    if (k < K) {
        __mmask16 m = (__mmask16)((1u << (K - k)) - 1);
        __m512 wv[TILE_R_MAX];
#pragma GCC unroll 4
        for (int r = 0; r < nr; r++)
            wv[r] = w_load_mask(dt, wr[r], k, m);
#pragma GCC unroll 4
        for (int t = 0; t < mb; t++) {
            __m512 xv = _mm512_maskz_loadu_ps(m, x + t * ld_x + k);
#pragma GCC unroll 4
            for (int r = 0; r < nr; r++)
                acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < nr; r++)
#pragma GCC unroll 4
        for (int t = 0; t < mb; t++)
            res[r][t] = _mm512_reduce_add_ps(acc[r][t]);
}

/* The switch cases instantiating tile_kernel for NR rows x 1..4 tokens. */
#define TILE_CASES(DT, NR)                                                                \
    case DT * 8 + 1: tile_kernel(DT, NR, 1, wr, x, ld_x, K, res); break;                  \
    case DT * 8 + 2: tile_kernel(DT, NR, 2, wr, x, ld_x, K, res); break;                  \
    case DT * 8 + 3: tile_kernel(DT, NR, 3, wr, x, ld_x, K, res); break;                  \
    case DT * 8 + 4: tile_kernel(DT, NR, 4, wr, x, ld_x, K, res); break;

/* Tile shape: 4 F32 rows x mb tokens, mb in [1, 4] (dsa_cpu_dot_tile's
 * only caller; the linears run cpu_linear_avx2.c). */
static void tile_run(int dt, int shape, const void *const *wr, const float *x, int64_t ld_x,
                     int64_t K, float res[TILE_R_MAX][TILE_M_MAX])
{
    switch (dt * 8 + shape) {
        TILE_CASES(DSA_DTYPE_F32, 4)
    default:
        break;
    }
}

#endif /* __AVX512F__ */

void dsa_cpu_dot_tile(const float *const *rows, int nr, const float *x, int64_t ld_x, int mb,
                      int64_t K, float res[4][4])
{
#ifdef __AVX512F__
    const void *wr[TILE_R_MAX];
    float r8[TILE_R_MAX][TILE_M_MAX];
    for (int r = 0; r < 4; r++)
        wr[r] = rows[r < nr ? r : 0];
    tile_run(DSA_DTYPE_F32, mb, wr, x, ld_x, K, r8);
    for (int r = 0; r < nr; r++)
        for (int t = 0; t < mb; t++)
            res[r][t] = r8[r][t];
#else
    for (int r = 0; r < nr; r++)
        for (int t = 0; t < mb; t++)
            res[r][t] = dsa_cpu_dot(rows[r], x + t * ld_x, K);
#endif
}

/* Scalar fallback: one dequantised row at a time. */
#if !DSA_CPU_AVX2
static dsa_err gemm_scalar(const dsa_cpu_gemm *g, int64_t r0, int64_t r1, dsa_cpu_scratch *s)
{
    const dsa_weight *w = g->w;
    float *row = dsa_cpu_scratch_get(s, DSA_CPU_SCR_PANEL, (size_t)w->cols);
    if (!row)
        return DSA_NOMEM;
    for (int64_t i = r0; i < r1; i++) {
        dsa_cpu_weight_row(w, i, row);
        for (int64_t t = 0; t < g->m; t++)
            out_store(g, t, i, dsa_cpu_dot(g->x + t * g->ld_x, row, w->cols));
    }
    return DSA_OK;
}
#endif

dsa_err dsa_cpu_gemm_rows(const dsa_cpu_gemm *g, int64_t r0, int64_t r1, dsa_cpu_scratch *s)
{
    if (r0 >= r1 || g->m <= 0)
        return DSA_OK;
    if (g->w->dtype == DSA_DTYPE_I32)
        return dsa_cpu_awq_gemm_rows(g, r0, r1, s);
    if (g->w->dtype == DSA_DTYPE_I8)
        return dsa_cpu_i8_gemm_rows(g, r0, r1, s);
#if DSA_CPU_AVX2
    return dsa_cpu_gemm_rows_avx2(g, r0, r1, s);
#else
    return gemm_scalar(g, r0, r1, s);
#endif
}

int64_t dsa_cpu_gemm_grain(const dsa_cpu_gemm *g, int64_t n_rows, int n_threads)
{
    if (g->w->dtype == DSA_DTYPE_I32)
        /* AWQ (cpu_awq.c): blocks of 8 packed words (64 outputs).  One
         * token takes 8 (four cache lines of each row): with 2 (one line)
         * two threads split every aligned pair of lines the adjacent-line
         * prefetcher fetches together, and two threads decoded at half
         * the speed of one (docs/perf/cpu.md, quiet-machine rerun) */
        return g->m == 1 ? 512 : 64;
    if (g->m >= LIN_PANEL_M_MIN)
        return LIN_PANEL_ROWS;
    /* About 8 chunks per thread, at least 32 KiB of work each. */
    int64_t bytes_row = g->w->cols * (int64_t)dsa_dtype_size(g->w->dtype) * (g->m < 4 ? 1 : g->m / 4);
    int64_t grain = n_rows / ((int64_t)n_threads * 8);
    int64_t min_rows = bytes_row > 0 ? (32768 + bytes_row - 1) / bytes_row : 64;
    if (grain < min_rows)
        grain = min_rows;
    grain = (grain + 7) & ~(int64_t)7;
    return grain;
}

/* ---- linear op ---------------------------------------------------------- */

typedef struct linear_job {
    dsa_cpu_backend *be;
    dsa_cpu_gemm g;
    _Atomic int err;
} linear_job;

static void linear_range(void *ctx, int64_t b, int64_t e, int tid)
{
    linear_job *j = ctx;
    dsa_cpu_err_set(&j->err, dsa_cpu_gemm_rows(&j->g, b, e, &j->be->scratch[tid]));
}

dsa_err dsa_cpu_linear(dsa_backend *be_, const dsa_linear_params *p)
{
    dsa_cpu_backend *be = dsa_cpu_be(be_);
    linear_job j = {.be = be,
                    .g = {.out = p->out, .x = p->x, .w = p->w, .m = p->m, .ld_x = p->ld_x,
                          .ld_out = p->ld_out, .accumulate = p->accumulate,
                          .epoch = ++be->epoch}};
    atomic_init(&j.err, DSA_OK);
    int64_t n = p->w->rows;
    dsa_cpu_parallel_for(be, n, dsa_cpu_gemm_grain(&j.g, n, be->n_threads), linear_range, &j);
    return (dsa_err)atomic_load(&j.err);
}

/* ---- MLA absorptions ---------------------------------------------------- */

/* q_lat[t,h,:] = sum_i q_nope[t,h,i] W[h*(nope+v) + i, :].  One item is a
 * head: its W_UK (nope x kv_rank) is dequantised once into scratch, then
 * every token is a sum of its rows. */
typedef struct absorb_job {
    dsa_cpu_backend *be;
    const dsa_mla_absorb_params *p;
    uint64_t epoch;
    _Atomic int err;
} absorb_job;

static void absorb_q_range(void *ctx, int64_t b, int64_t e, int tid)
{
    absorb_job *j = ctx;
    const dsa_mla_absorb_params *p = j->p;
    int64_t R = p->kv_rank, nope = p->nope_dim;
    float *panel = dsa_cpu_scratch_get(&j->be->scratch[tid], DSA_CPU_SCR_PANEL, (size_t)(nope * R));
    if (!panel) {
        dsa_cpu_err_set(&j->err, DSA_NOMEM);
        return;
    }
    for (int64_t h = b; h < e; h++) {
        for (int64_t i = 0; i < nope; i++)
            dsa_cpu_weight_row(p->w_kvb, h * (nope + p->v_dim) + i, panel + i * R);
        for (int64_t t = 0; t < p->n_tokens; t++) {
            const float *q = (const float *)p->in + t * p->ld_in_token + h * p->ld_in_head;
            float *o = (float *)p->out + (t * p->n_heads + h) * R;
            int64_t c = 0;
#ifdef __AVX512F__
            /* 64 columns x all rows in registers. */
            for (; c + 64 <= R; c += 64) {
                __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
                for (int64_t i = 0; i < nope; i++) {
                    __m512 qv = _mm512_set1_ps(q[i]);
                    const float *wrow = panel + i * R + c;
                    a0 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(wrow), a0);
                    a1 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(wrow + 16), a1);
                    a2 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(wrow + 32), a2);
                    a3 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(wrow + 48), a3);
                }
                _mm512_storeu_ps(o + c, a0);
                _mm512_storeu_ps(o + c + 16, a1);
                _mm512_storeu_ps(o + c + 32, a2);
                _mm512_storeu_ps(o + c + 48, a3);
            }
#endif
            if (c < R) {
                memset(o + c, 0, (size_t)(R - c) * sizeof(float));
                for (int64_t i = 0; i < nope; i++)
                    for (int64_t cc = c; cc < R; cc++)
                        o[cc] += q[i] * panel[i * R + cc];
            }
        }
    }
}

dsa_err dsa_cpu_mla_absorb_q(dsa_backend *be_, const dsa_mla_absorb_params *p)
{
    dsa_cpu_backend *be = dsa_cpu_be(be_);
    absorb_job j = {.be = be, .p = p, .epoch = ++be->epoch};
    atomic_init(&j.err, DSA_OK);
    dsa_cpu_parallel_for(be, p->n_heads, 1, absorb_q_range, &j);
    return (dsa_err)atomic_load(&j.err);
}

/* o[t,h,:] = W_UV,h obar[t,h,:]: per head a linear over a row slice of
 * W_kvb; items are (head, chunk of v rows). */
static void absorb_o_range(void *ctx, int64_t b, int64_t e, int tid)
{
    absorb_job *j = ctx;
    const dsa_mla_absorb_params *p = j->p;
    int64_t per_head = (p->v_dim + 31) / 32;
    for (int64_t it = b; it < e; it++) {
        int64_t h = it / per_head, c = it % per_head;
        int64_t r0 = c * 32, r1 = r0 + 32 < p->v_dim ? r0 + 32 : p->v_dim;
        const dsa_weight *w = p->w_kvb;
        int64_t row = h * (p->nope_dim + p->v_dim) + p->nope_dim;
        dsa_weight s = *w;
        s.rows = p->v_dim;
        if (w->dtype != DSA_DTYPE_I32) /* AWQ views keep the stored base */
            s.data = w_row_ptr(w, row);
        s.row0 = w->row0 + row;
        dsa_cpu_gemm g = {.out = (float *)p->out + h * p->v_dim,
                          .x = (const float *)p->in + h * p->kv_rank,
                          .w = &s, .m = p->n_tokens,
                          .ld_x = p->n_heads * p->kv_rank,
                          .ld_out = p->n_heads * p->v_dim,
                          .epoch = j->epoch};
        dsa_cpu_err_set(&j->err, dsa_cpu_gemm_rows(&g, r0, r1, &j->be->scratch[tid]));
    }
}

dsa_err dsa_cpu_mla_absorb_o(dsa_backend *be_, const dsa_mla_absorb_params *p)
{
    dsa_cpu_backend *be = dsa_cpu_be(be_);
    absorb_job j = {.be = be, .p = p, .epoch = ++be->epoch};
    atomic_init(&j.err, DSA_OK);
    int64_t per_head = (p->v_dim + 31) / 32;
    dsa_cpu_parallel_for(be, p->n_heads * per_head, per_head, absorb_o_range, &j);
    return (dsa_err)atomic_load(&j.err);
}
