/* cuda_backend.h - the Hopper (sm_90a) CUDA backend and its extras beyond
 * the backend interface: KV-cache sizing from free memory and decode-step
 * graph capture for bucketed batch sizes.
 *
 * Activations are BF16 in device memory, accumulation F32.  Weights stay as
 * stored (FP8 e4m3 with 128x128 F32 block scales, BF16, F16, F32):
 * weight_prepare copies a host descriptor's slice to the device and rewrites
 * the descriptor in place; weight_release frees it.  Every op is queued on
 * the backend's one stream; a failed CUDA, cuBLASLt or NCCL call fails the op
 * with DSA_DEVICE and a logged "call at file:line: reason", never aborts.
 * A backend is used from one thread at a time. */
#ifndef DSA_KERNELS_CUDA_BACKEND_H
#define DSA_KERNELS_CUDA_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Number of CUDA devices, 0 when there is none or no driver (never fails). */
int dsa_cuda_device_count(void);

/* Creates the backend on `device`.  mem_fraction (0, 1] caps the share of
 * the device's memory this process may hold (weights + cache + scratch);
 * dsa_cuda_kv_bytes tells what is left of it for the KV cache. */
dsa_err dsa_backend_cuda_create(int device, double mem_fraction, dsa_backend **out);

/* Bytes the KV cache may take now: mem_fraction * total - used, minus a
 * reserve for scratch (reserve_bytes), never negative.  Call after the
 * weights are prepared. */
size_t dsa_cuda_kv_bytes(dsa_backend *be, size_t reserve_bytes);

/* Name of the path the last linear took ("lt-fp8", "cutlass-fp8", "lt-bf16",
 * "dequant"),
 * for tests and benchmarks. */
const char *dsa_cuda_last_linear_path(dsa_backend *be);
/* Which kernel the last mla_attn ran: "fi-mla-hopper" (FlashInfer) or
 * "mla-portable" (ours); "none" before the first.  For the parity suite. */
const char *dsa_cuda_last_attn_path(dsa_backend *be);

/* The routed experts' paths (cuda_moe.cu): AUTO picks the fused FP8 GEMV
 * up to DSA_MOE_GEMV_TOKENS_MAX tokens and CUTLASS's grouped FP8 GEMM above;
 * tests and benchmarks force one (FP8 paths only where the experts are
 * FP8 with 128x128 blocks; otherwise the dequantising path runs). */
typedef enum dsa_cuda_moe_path {
    DSA_CUDA_MOE_AUTO = 0,
    DSA_CUDA_MOE_GEMV,
    DSA_CUDA_MOE_CUTLASS,
    DSA_CUDA_MOE_DEQUANT,
} dsa_cuda_moe_path;
void dsa_cuda_moe_force(dsa_backend *be, dsa_cuda_moe_path path);
/* "moe-gemv", "moe-cutlass", "moe-dequant" or "none". */
const char *dsa_cuda_last_moe_path(dsa_backend *be);

/* The FP8 linears' implementations (cuda_linear.c): AUTO times cuBLASLt's
 * and CUTLASS's block-scaled GEMMs once per (M bucket, N, K) on first use
 * outside graph capture and keeps the faster (cuBLASLt wherever the two
 * disagree); tests and benchmarks force one (DEQUANT: the CUDA-core
 * fallback).  A forced implementation that declines a shape falls back to
 * the dequantising kernel. */
typedef enum dsa_cuda_linear_impl {
    DSA_CUDA_LINEAR_AUTO = 0,
    DSA_CUDA_LINEAR_LT,
    DSA_CUDA_LINEAR_CUTLASS,
    DSA_CUDA_LINEAR_DEQUANT,
} dsa_cuda_linear_impl;
void dsa_cuda_linear_force(dsa_backend *be, dsa_cuda_linear_impl impl);
/* The tuning decision for an FP8 linear of m rows (its bucket), n x k:
 * DSA_CUDA_LINEAR_LT or _CUTLASS with both mean times in ms[] (-1: that
 * one declined), or 0 when the shape is not tuned yet. */
int dsa_cuda_linear_tuned(dsa_backend *be, int64_t m, int64_t n, int64_t k, float ms[2]);

/* 1 when the cuBLASLt FP8 block-scaled path passed its self-test at
 * creation (else FP8 linears use the dequantising kernel). */
int dsa_cuda_lt_fp8_enabled(dsa_backend *be);

/* The backend's stream (a cudaStream_t) for callers that queue their own
 * work, such as NCCL collectives, in order with the ops. */
void *dsa_cuda_stream(dsa_backend *be);

/* Fills n elements of device memory with random data generated on the
 * device (benchmarks): FP8 e4m3 codes without NaN, F32 block scales near
 * 2^-8, or BF16 in [-1, 1). */
dsa_err dsa_cuda_fill_random(dsa_backend *be, void *p, int64_t n, dsa_dtype dtype, uint64_t seed);

#ifdef __cplusplus
}
#endif

#endif
