/* cpu_internal.h - private declarations shared by the CPU backend's files.
 *
 * The CPU backend keeps activations in F32 host memory.  Work is split over
 * a thread pool by dsa_cpu_parallel_for (dynamic chunks, so a core slowed by
 * another process does not hold the others up).  Each pool thread owns a
 * dsa_cpu_scratch (grown on demand, never shared) for dequantised weight
 * panels and pre-scaled activations; no op ever holds a full F32 copy of a
 * weight. */
#ifndef DSA_KERNELS_CPU_INTERNAL_H
#define DSA_KERNELS_CPU_INTERNAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"
#include "kernels/cpu/threadpool.h"

enum {
    DSA_CPU_SCR_PANEL,  /* dequantised weight rows */
    DSA_CPU_SCR_TMP,    /* op-local temporaries */
    DSA_CPU_SCR_Q8,     /* int8-quantised activations (cpu_awq_int8.c) */
    DSA_CPU_SCR_COUNT
};

typedef struct dsa_cpu_scratch {
    float *buf[DSA_CPU_SCR_COUNT];
    size_t cap[DSA_CPU_SCR_COUNT];      /* floats */
    /* What buf[DSA_CPU_SCR_Q8] holds: the rows of q8_x quantised to int8. */
    const float *q8_x;
    int64_t q8_m, q8_ld_x, q8_cols, q8_group;
    uint64_t q8_epoch;
} dsa_cpu_scratch;

typedef struct dsa_cpu_backend {
    dsa_backend base;
    dsa_threadpool *pool;
    int n_threads;
    dsa_cpu_scratch *scratch;           /* [n_threads], indexed by tid */
    uint64_t epoch;                     /* bumped per op: invalidates caches */
    int awq_int8;                       /* 1: AWQ weights are repacked for int8
                                           activations (cpu_awq_int8.c) */
} dsa_cpu_backend;

static inline dsa_cpu_backend *dsa_cpu_be(dsa_backend *be)
{
    return (dsa_cpu_backend *)be;
}

/* An F32 buffer of at least n floats in scratch slot `slot` (64-byte
 * aligned, contents undefined); NULL when out of memory. */
float *dsa_cpu_scratch_get(dsa_cpu_scratch *s, int slot, size_t n);

/* fn(ctx, begin, end, tid) over [0, n) in chunks of `grain` items, handed
 * out dynamically to the pool's threads. */
typedef void (*dsa_cpu_range_fn)(void *ctx, int64_t begin, int64_t end, int tid);
void dsa_cpu_parallel_for(dsa_cpu_backend *be, int64_t n, int64_t grain,
                          dsa_cpu_range_fn fn, void *ctx);

/* Records the first error of a parallel op. */
static inline void dsa_cpu_err_set(_Atomic int *slot, dsa_err err)
{
    int expected = DSA_OK;
    if (err != DSA_OK)
        atomic_compare_exchange_strong(slot, &expected, (int)err);
}

/* One product over a range of W's rows, run on one thread:
 *   out[orow(t), n] (+)= alpha[t] * sum_k x[t, k] W[n, k],  n in [r0, r1),
 * orow(t) = out_rows ? out_rows[t] : t; alpha NULL means 1. */
typedef struct dsa_cpu_gemm {
    float *out;                 /* row stride ld_out */
    const float *x;             /* [m, w->cols], row stride ld_x */
    const dsa_weight *w;
    int64_t m, ld_x, ld_out;
    const int32_t *out_rows;    /* [m] or NULL */
    const float *alpha;         /* [m] or NULL */
    int accumulate;
    uint64_t epoch;             /* the op's dsa_cpu_backend.epoch */
} dsa_cpu_gemm;

dsa_err dsa_cpu_gemm_rows(const dsa_cpu_gemm *g, int64_t r0, int64_t r1,
                          dsa_cpu_scratch *s);
/* Rows per parallel chunk for g over n_rows rows. */
int64_t dsa_cpu_gemm_grain(const dsa_cpu_gemm *g, int64_t n_rows, int n_threads);

/* The AVX2 + FMA + F16C product (cpu_linear_avx2.c), compiled and used on
 * every machine that has those, AVX-512 ones included (its order is
 * batch-invariant, the AVX-512 GEMM's is not: cpu_linear.c); same contract
 * as dsa_cpu_gemm_rows for the dense dtypes. */
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define DSA_CPU_AVX2 1
dsa_err dsa_cpu_gemm_rows_avx2(const dsa_cpu_gemm *g, int64_t r0, int64_t r1,
                               dsa_cpu_scratch *s);
#else
#define DSA_CPU_AVX2 0
#endif

/* AWQ int4 weights (cpu_awq.c): the product over rows [r0, r1), and one
 * dequantised row. */
dsa_err dsa_cpu_awq_gemm_rows(const dsa_cpu_gemm *g, int64_t r0, int64_t r1,
                              dsa_cpu_scratch *s);
void dsa_cpu_awq_row(const dsa_weight *w, int64_t i, float *dst);

/* An AWQ weight repacked for int8 activations (cpu_awq_int8.c), made by
 * weight_prepare when the backend's awq_int8 is on and owned through
 * dsa_weight.awq8.  Covers stored output rows [row0, row0 + rows) and the
 * slice's inputs [col0, col0 + cols), col0 on a group boundary. */
typedef struct dsa_cpu_awq8 {
    int64_t row0, rows, col0, cols;
    int64_t group, n_groups;    /* inputs per group (a multiple of 32) */
    int64_t row_bytes;          /* ceil(n_groups * group / 64) * 32 */
    uint8_t *q;                 /* [rows][row_bytes] nibble pairs, chunks of 64 inputs */
    float *s, *zs;              /* [rows][n_groups] scale and -zero * scale */
} dsa_cpu_awq8;

/* DSA_UNSUPPORTED (no error message) when w's shape has no repack. */
dsa_err dsa_cpu_awq8_create(const dsa_weight *w, dsa_cpu_awq8 **out);
void dsa_cpu_awq8_destroy(dsa_cpu_awq8 *p); /* NULL: no-op */
int64_t dsa_cpu_awq8_bytes(const dsa_cpu_awq8 *p);
/* 1 when w->awq8 holds every row and input of w (a view keeps it). */
int dsa_cpu_awq8_covers(const dsa_weight *w);
/* The product over rows [r0, r1) with int8 activations; the _scalar form
 * runs the same order in plain C (tests, machines without AVX2). */
dsa_err dsa_cpu_awq8_gemm_rows(const dsa_cpu_gemm *g, int64_t r0, int64_t r1,
                               dsa_cpu_scratch *s);
dsa_err dsa_cpu_awq8_gemm_rows_scalar(const dsa_cpu_gemm *g, int64_t r0, int64_t r1,
                                      dsa_cpu_scratch *s);
/* x[0, n) as int8 blocks of 32 (d = max|x| / 127, q = round(x / d)),
 * zero-padded to n_pad (a multiple of 32): q [n_pad], d and xsum (the
 * sum of each block's q) [n_pad / 32]. */
void dsa_cpu_q8_row(const float *x, int64_t n, int64_t n_pad, int8_t *q, float *d, int32_t *xsum);
/* I8 weights (one F32 scale per row, rows padded with zeros to ld, a
 * multiple of 32): the product with x quantised as dsa_cpu_q8_row, per
 * (token, output) G[l] = fma(I_b[l], d_b, G[l]) over the blocks in order,
 * y = hsum8(G) * scale; _scalar: the same in plain C. */
dsa_err dsa_cpu_i8_gemm_rows(const dsa_cpu_gemm *g, int64_t r0, int64_t r1, dsa_cpu_scratch *s);
dsa_err dsa_cpu_i8_gemm_rows_scalar(const dsa_cpu_gemm *g, int64_t r0, int64_t r1,
                                    dsa_cpu_scratch *s);

/* dst[j] = W[i, j] for j in [0, w->cols), exactly as dsa_weight_get. */
void dsa_cpu_weight_row(const dsa_weight *w, int64_t i, float *dst);

/* res[r][t] = rows[r] . (x + t * ld_x) over K elements, nr <= 4 rows and
 * mb in [1, 4] vectors: a register-tiled block of dot products. */
void dsa_cpu_dot_tile(const float *const *rows, int nr, const float *x, int64_t ld_x, int mb,
                      int64_t K, float res[4][4]);

/* Vector helpers (AVX-512 with scalar fallback). */
float dsa_cpu_dot(const float *a, const float *b, int64_t n);
/* y += a * x */
void dsa_cpu_axpy(float *y, float a, const float *x, int64_t n);
/* y *= a */
void dsa_cpu_scale(float *y, float a, int64_t n);
/* One chunk of an online softmax for one head: raises the running max *mx
 * to the chunk's (rescaling the running sum *l and the accumulator acc[dim]
 * when it grows), replaces sc[0..n) by exp(sc - *mx) and adds them to *l.
 * The caller then accumulates sum_j sc[j] * v[j] into acc. */
void dsa_cpu_softmax_chunk(float *sc, int64_t n, float *mx, float *l, float *acc, int64_t dim);

dsa_err dsa_cpu_linear(dsa_backend *be, const dsa_linear_params *p);
dsa_err dsa_cpu_mla_absorb_q(dsa_backend *be, const dsa_mla_absorb_params *p);
dsa_err dsa_cpu_mla_absorb_o(dsa_backend *be, const dsa_mla_absorb_params *p);
dsa_err dsa_cpu_mla_attn(dsa_backend *be, const dsa_mla_attn_params *p);
dsa_err dsa_cpu_mha_prefill(dsa_backend *be, const dsa_mha_prefill_params *p);
dsa_err dsa_cpu_gqa_attn(dsa_backend *be, const dsa_gqa_attn_params *p);
dsa_err dsa_cpu_bias_add(dsa_backend *be, const dsa_bias_add_params *p);
dsa_err dsa_cpu_router(dsa_backend *be, const dsa_router_params *p);
dsa_err dsa_cpu_moe(dsa_backend *be, const dsa_moe_params *p);
dsa_err dsa_cpu_sample(dsa_backend *be, const dsa_sample_params *p);
dsa_err dsa_cpu_logit_ctl(dsa_backend *be, const dsa_logit_ctl_params *p);
dsa_err dsa_cpu_mask(dsa_backend *be, const dsa_logit_mask_params *p);
dsa_err dsa_cpu_count_add(dsa_backend *be, const dsa_count_add_params *p);
dsa_err dsa_cpu_penalties(dsa_backend *be, const dsa_penalty_params *p);
dsa_err dsa_cpu_logprobs(dsa_backend *be, const dsa_logprobs_params *p);
/* cpu_fused.c: the vocabulary gather; and one row of n values quantised
 * per 1x128 block as dsa_rmsnorm_params.out_q describes (q: n bytes,
 * scale: ceil(n / 128) floats). */
dsa_err dsa_cpu_vocab_gather(dsa_backend *be, const dsa_vocab_gather_params *p);
void dsa_cpu_quant_row(uint8_t *q, float *scale, const float *x, int64_t n);

#endif
