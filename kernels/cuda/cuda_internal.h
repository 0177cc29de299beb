/* cuda_internal.h - what the CUDA backend's files share: the backend
 * context, the error macros (STYLE.md rule 11), the device view of a weight,
 * scratch buffers, and the entry points of the ops in their .cu files.
 *
 * Included from C (gcc) and CUDA C++ (nvcc); everything here is C. */
#ifndef DSA_KERNELS_CUDA_INTERNAL_H
#define DSA_KERNELS_CUDA_INTERNAL_H

#include <cublasLt.h>
#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "common/error.h"
#include "common/log.h"
#include "kernels/backend.h"
#include "kernels/cuda/cuda_backend.h"

/* ---- Errors --------------------------------------------------------------
 * Each macro evaluates to a dsa_err: DSA_OK, or DSA_DEVICE after logging
 * "call failed at file:line: reason" and recording it (dsa_errmsg). */
dsa_err dsa_cuda_err(cudaError_t e, const char *call, const char *file, int line);
dsa_err dsa_cublas_err(cublasStatus_t s, const char *call, const char *file, int line);
#define DSA_CUDA_CHECK(call) dsa_cuda_err((call), #call, __FILE__, __LINE__)
#define DSA_CUBLAS_CHECK(call) dsa_cublas_err((call), #call, __FILE__, __LINE__)
/* After a kernel launch: the launch's own error (bad configuration). */
#define DSA_CUDA_LAUNCHED() dsa_cuda_err(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)

/* ---- Weights on the device ----------------------------------------------
 * A prepared weight's slice is compact on the device: rows x cols with row
 * stride ld (cols rounded up to 16 elements), and for FP8 its own scale
 * tensor [ceil((row0 + rows) / 128)][scale_ld] with row0, col0 < 128 (the
 * origin within the first block), scale_ld a multiple of 4 (cuBLASLt's
 * BLK128x128 layout: K-blocks contiguous, padded to 16 bytes). */
typedef struct dsa_cuda_w {
    const void *data;
    const float *scale;
    int64_t rows, cols, ld;
    int64_t scale_ld, row0, col0;
    int32_t block_rows, block_cols;
    int32_t dtype;      /* dsa_dtype */
} dsa_cuda_w;

static inline dsa_cuda_w dsa_cuda_w_of(const dsa_weight *w)
{
    dsa_cuda_w d;
    d.data = w->data;
    d.scale = w->scale;
    d.rows = w->rows;
    d.cols = w->cols;
    d.ld = w->ld;
    d.scale_ld = w->scale_ld;
    d.row0 = w->row0;
    d.col0 = w->col0;
    d.block_rows = (int32_t)(w->block_rows > 0 ? w->block_rows : 128);
    d.block_cols = (int32_t)(w->block_cols > 0 ? w->block_cols : 128);
    d.dtype = (int32_t)w->dtype;
    return d;
}

/* ---- The backend ---------------------------------------------------------- */

/* Scratch slots: device buffers grown on demand (never while capturing). */
enum {
    DSA_CUDA_SCR_QACT,      /* FP8 activations of a linear */
    DSA_CUDA_SCR_QSCALE,    /* their 1x128 scales */
    DSA_CUDA_SCR_ATTN,      /* split-KV partial results */
    DSA_CUDA_SCR_MOE,       /* MoE permutation and intermediates */
    DSA_CUDA_SCR_SAMPLE,    /* sampling rows and results */
    DSA_CUDA_SCR_LOGIT_CTL, /* logit control ids and values */
    DSA_CUDA_SCR_MASK,      /* structured-output bitmasks */
    DSA_CUDA_SCR_PENALTY,   /* penalty rows and count updates */
    DSA_CUDA_SCR_LOGPROBS,  /* logprob requests and results */
    DSA_CUDA_SCR_FI_PLAN,   /* FlashInfer work lists (fi_mla.cu, fi_prefill.cu) */
    DSA_CUDA_SCR_MHA,       /* prefill keys with k_pe per head (cuda_mha_prefill.cu) */
    DSA_CUDA_SCR_COUNT
};

typedef struct dsa_cuda_lt_plan dsa_cuda_lt_plan;   /* cuda_linear.c */
typedef struct dsa_cuda_ptr_cache dsa_cuda_ptr_cache; /* host -> device copies */

typedef struct dsa_cuda_graph {
    int64_t key;
    cudaGraphExec_t exec;
} dsa_cuda_graph;

typedef struct dsa_cuda_backend {
    dsa_backend base;
    int device;
    int n_sm;
    double mem_fraction;
    size_t mem_total;
    cudaStream_t stream;
    cublasLtHandle_t lt;
    void *lt_ws;                /* cuBLASLt workspace */
    size_t lt_ws_bytes;
    int lt_fp8;                 /* FP8 block-scaled path passed its self-test */
    int lt_act_scale_kmajor;    /* activation scale layout that passed */
    int lt_disabled;            /* DSA_CUDA_NO_LT set: dequant kernels only */
    int mla_portable;           /* DSA_CUDA_MLA=portable: our MLA kernel only */
    const char *last_path;
    const char *last_attn_path; /* "fi-mla-hopper" or "mla-portable" */
    int moe_force;              /* dsa_cuda_moe_path: 0 picks by token count */
    const char *last_moe_path;
    int linear_force;           /* dsa_cuda_linear_impl: 0 picks by the tuning table */
    struct dsa_cuda_tune *tune; /* cuda_linear_tune.c: fastest FP8 GEMM per shape */
    int capturing;
    void *scr[DSA_CUDA_SCR_COUNT];
    size_t scr_cap[DSA_CUDA_SCR_COUNT];
    unsigned scr_in_graph;      /* bit s: slot s was handed out during a capture */
    void *pinned;               /* host staging for small transfers */
    size_t pinned_cap;
    dsa_cuda_lt_plan *plans;    /* cuda_linear.c's plan cache */
    int n_plans, cap_plans;
    dsa_cuda_ptr_cache *ptrs;   /* cached device copies of host arrays */
    dsa_cuda_graph *graphs;
    int n_graphs, cap_graphs;
} dsa_cuda_backend;

static inline dsa_cuda_backend *dsa_cuda_be(dsa_backend *be)
{
    return (dsa_cuda_backend *)be;
}

/* Device scratch slot of at least `bytes`; fails while capturing a graph if
 * it would have to grow. */
dsa_err dsa_cuda_scratch(dsa_cuda_backend *be, int slot, size_t bytes, void **out);
/* Pinned host staging of at least `bytes`. */
dsa_err dsa_cuda_pinned(dsa_cuda_backend *be, size_t bytes, void **out);
/* A device copy of host memory [p, p + bytes) made once and kept while the
 * backend lives (keyed by address and contents): router biases, expert
 * tables.  Returns p itself when p is already device memory. */
dsa_err dsa_cuda_host_array(dsa_cuda_backend *be, const void *p, size_t bytes,
                            const void **out);
/* The same for an array built by the caller (at any address) that stands
 * for `key`: found again when key and contents match. */
dsa_err dsa_cuda_host_array_keyed(dsa_cuda_backend *be, const void *key, const void *p,
                                  size_t bytes, const void **out);
void dsa_cuda_ptr_cache_free(dsa_cuda_backend *be);
void dsa_cuda_plans_free(dsa_cuda_backend *be);
/* Runs the cuBLASLt FP8 self-test and sets be->lt_fp8 (cuda_linear.c). */
void dsa_cuda_lt_selftest(dsa_cuda_backend *be);

/* ---- Ops (one .cu each) --------------------------------------------------- */
dsa_err dsa_cuda_act_from_f32(dsa_backend *be, void *dst, const float *src, size_t n);
dsa_err dsa_cuda_act_to_f32(dsa_backend *be, float *dst, const void *src, size_t n);
dsa_err dsa_cuda_f32_to_bf16_dev(dsa_cuda_backend *be, void *dst, const float *src, size_t n);
dsa_err dsa_cuda_bf16_to_f32_dev(dsa_cuda_backend *be, float *dst, const void *src, size_t n);
dsa_err dsa_cuda_embed(dsa_backend *be, const dsa_embed_params *p);
dsa_err dsa_cuda_rmsnorm(dsa_backend *be, const dsa_rmsnorm_params *p);
dsa_err dsa_cuda_linear(dsa_backend *be, const dsa_linear_params *p);
dsa_err dsa_cuda_rope(dsa_backend *be, const dsa_rope_params *p);
dsa_err dsa_cuda_gqa_attn(dsa_backend *be, const dsa_gqa_attn_params *p);
dsa_err dsa_cuda_bias_add(dsa_backend *be, const dsa_bias_add_params *p);
dsa_err dsa_cuda_kv_store(dsa_backend *be, const dsa_kv_store_params *p);
dsa_err dsa_cuda_mla_attn(dsa_backend *be, const dsa_mla_attn_params *p);
dsa_err dsa_cuda_mha_prefill(dsa_backend *be, const dsa_mha_prefill_params *p);
dsa_err dsa_cuda_mla_absorb_q(dsa_backend *be, const dsa_mla_absorb_params *p);
dsa_err dsa_cuda_mla_absorb_o(dsa_backend *be, const dsa_mla_absorb_params *p);
dsa_err dsa_cuda_silu_mul(dsa_backend *be, const dsa_silu_mul_params *p);
dsa_err dsa_cuda_add(dsa_backend *be, const dsa_add_params *p);
dsa_err dsa_cuda_vocab_gather(dsa_backend *be, const dsa_vocab_gather_params *p);
dsa_err dsa_cuda_router(dsa_backend *be, const dsa_router_params *p);
dsa_err dsa_cuda_moe(dsa_backend *be, const dsa_moe_params *p);
dsa_err dsa_cuda_sample(dsa_backend *be, const dsa_sample_params *p);
dsa_err dsa_cuda_logit_ctl(dsa_backend *be, const dsa_logit_ctl_params *p);
dsa_err dsa_cuda_mask(dsa_backend *be, const dsa_logit_mask_params *p);
dsa_err dsa_cuda_count_add(dsa_backend *be, const dsa_count_add_params *p);
dsa_err dsa_cuda_penalties(dsa_backend *be, const dsa_penalty_params *p);
dsa_err dsa_cuda_logprobs(dsa_backend *be, const dsa_logprobs_params *p);

/* Quantises x [m, k] (BF16, row stride ld_x) to e4m3 q [m, ld_q] with one
 * F32 scale per 1x128 block: amax clamped >= 1e-4, scale = amax / 448
 * (MODEL_SPEC.md §8).  Scales go to s[kb * m + i] (kmajor == 0, the
 * M-contiguous layout of cuBLASLt's VEC128) or s[i * n_kb + kb]. */
dsa_err dsa_cuda_quant_fp8(dsa_cuda_backend *be, uint8_t *q, int64_t ld_q, float *s,
                           const void *x, int64_t ld_x, int64_t m, int64_t k, int kmajor);

/* The dequantising GEMM (any weight dtype, any slice, any shape):
 * out[r(t), n] (=|+=) alpha(t) * sum_k x[t, k] W[n, k] for t < m, with
 * r(t) = out_rows ? out_rows[t] : t and alpha(t) = alpha ? alpha[t] : 1.
 * x and out are BF16 (out_f32: out is F32). */
typedef struct dsa_cuda_gemm {
    void *out;
    const void *x;
    dsa_cuda_w w;
    int64_t m, ld_x, ld_out;
    int accumulate;
    int out_f32;
} dsa_cuda_gemm;
dsa_err dsa_cuda_gemm_run(dsa_cuda_backend *be, const dsa_cuda_gemm *g);

/* Dense FP8 linear through CUTLASS (cutlass_gemm.cu): out[m, w.rows]
 * (=|+=) (xq * xs) (W * sw)^T, BF16 out of row stride ld_out; xq e4m3
 * [m, w.cols] compact, xs its 1x128 scales K-major (xs[i * cols/128 + kb]);
 * W FP8 128x128 blocks at origin (0, 0).  *done = 0 when CUTLASS declines
 * the shape (the caller takes another path). */
typedef struct dsa_cutlass_gemm {
    void *out;
    const uint8_t *xq;
    const float *xs;
    dsa_cuda_w w;
    int64_t m, ld_out;
    int accumulate;
} dsa_cutlass_gemm;
dsa_err dsa_cutlass_gemm_run(dsa_cuda_backend *be, const dsa_cutlass_gemm *g, int *done);

#ifdef __cplusplus
}
#endif

#endif
