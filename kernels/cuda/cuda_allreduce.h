/* cuda_allreduce.h - a one-shot all-reduce for decode-sized buffers among
 * the GPUs of one node, over CUDA IPC-shared memory and NVLink
 * (cuda_allreduce.cu).  NCCL's ring takes 2 (n - 1) steps, each a launch-
 * and latency-bound hop for a few KiB; here every rank copies its buffer
 * into its own shared staging area, signals every peer, waits for theirs,
 * and reads all n staging areas, summing in rank order (so every rank gets
 * the same bits).  One kernel, no host involvement, graph-capturable: the
 * per-call epoch lives in device memory.
 *
 * Setup is collective over the TP group (comm_nccl.c does it): each rank
 * creates its area and exports a handle, the handles are exchanged out of
 * band, each rank opens its peers'.  The kernel's waits are bounded by
 * timeout_s (%globaltimer): a rank whose peer never signals traps, which
 * fails the step's stream with a device error rather than hanging. */
#ifndef DSA_KERNELS_CUDA_CUDA_ALLREDUCE_H
#define DSA_KERNELS_CUDA_CUDA_ALLREDUCE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "common/dtype.h"
#include "common/error.h"

#define DSA_CUDA_AR_MAX_RANKS 8
#define DSA_CUDA_AR_MAX_BLOCKS 64
#define DSA_CUDA_AR_BYTES_MAX (256 * 1024)  /* per call; NCCL above */
#define DSA_CUDA_AR_HANDLE_BYTES 64         /* sizeof(cudaIpcMemHandle_t) */

typedef struct dsa_cuda_ar dsa_cuda_ar;

/* This rank's shared area on the current device, zeroed; *handle (64
 * bytes) is what the peers open. */
dsa_err dsa_cuda_ar_create(int rank, int n_ranks, double timeout_s, dsa_cuda_ar **out,
                           unsigned char *handle);
/* Maps peer `rank`'s area from its handle (not for this rank). */
dsa_err dsa_cuda_ar_open(dsa_cuda_ar *ar, int rank, const unsigned char *handle);
void dsa_cuda_ar_destroy(dsa_cuda_ar *ar); /* NULL: no-op */

/* n_ranks "ranks" on the current device in this process, their areas
 * linked directly rather than through IPC (the single-GPU parity test of
 * the protocol: each rank's calls go on its own stream).  ars[n_ranks]. */
dsa_err dsa_cuda_ar_create_local(int n_ranks, double timeout_s, dsa_cuda_ar **ars);

/* buf[0..n) = sum over the ranks of their buf, in place, queued on stream.
 * n * element size <= DSA_CUDA_AR_BYTES_MAX and a multiple of 16; dt BF16
 * or F32; every rank calls it with the same n in the same order. */
dsa_err dsa_cuda_ar_sum(dsa_cuda_ar *ar, void *buf, int64_t n, dsa_dtype dt, void *stream);

#ifdef __cplusplus
}
#endif

#endif
