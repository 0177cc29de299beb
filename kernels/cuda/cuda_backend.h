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

/* Name of the path the last linear took ("lt-fp8", "lt-bf16", "dequant"),
 * for tests and benchmarks. */
const char *dsa_cuda_last_linear_path(dsa_backend *be);
/* Which kernel the last mla_attn ran: "fi-mla-hopper" (FlashInfer) or
 * "mla-portable" (ours); "none" before the first.  For the parity suite. */
const char *dsa_cuda_last_attn_path(dsa_backend *be);

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
