/* comm.h - the collectives the forward pass needs across ranks (DESIGN.md
 * "Parallel layout"): an all-reduce sum and an all-gather inside a stage's
 * TP group, and point-to-point activations from one pipeline stage to the
 * same tp_rank of the next.
 *
 * A communicator is a vtable over one implementation: MPI on the CPU
 * (comm_mpi.c, host memory) and NCCL (comm_nccl.c, device memory on the
 * CUDA backend's stream) behind the same ops.  Buffers
 * are backend memory in the activation dtype; the MPI implementation needs
 * host-addressable memory (the CPU backend's).  Every op is bounded by the
 * communicator's deadline: a peer that does not answer within timeout_s is
 * an error (DSA_TIMEOUT, message naming the op and the peer), never a hang.
 *
 * A NULL communicator, or tp_size == 1 and n_stages == 1, means one rank;
 * the model then runs exactly as before. */
#ifndef DSA_WORKER_COMM_H
#define DSA_WORKER_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "common/dtype.h"
#include "common/error.h"

typedef struct dsa_comm dsa_comm;

typedef struct dsa_comm_ops {
    const char *name;
    /* buf[0..n) = sum over the TP group of every rank's buf (in place). */
    dsa_err (*all_reduce_sum)(dsa_comm *c, void *buf, int64_t n, dsa_dtype dt);
    /* out[r*n .. (r+1)*n) = rank r's in[0..n) for every rank r of the TP
     * group; out holds tp_size * n elements and does not alias in. */
    dsa_err (*all_gather)(dsa_comm *c, void *out, const void *in, int64_t n, dsa_dtype dt);
    /* Activations to stage + 1 / from stage - 1, same tp_rank. */
    dsa_err (*send_next)(dsa_comm *c, const void *buf, size_t bytes);
    dsa_err (*recv_prev)(dsa_comm *c, void *buf, size_t bytes);
    void (*destroy)(dsa_comm *c);
    /* Optional (graph_safe communicators): on != 0 arms a watchdog for one
     * step, bounded by timeout_s; on == 0 disarms it once the caller has
     * waited for the step's work.  A step that outlives the bound has its
     * communicators aborted by the watchdog (which ends NCCL kernels stuck
     * on a dead peer), and watch(0) then fails with DSA_TIMEOUT. */
    dsa_err (*watch)(dsa_comm *c, int on);
} dsa_comm_ops;

/* Seconds spent inside the ops, for the step breakdown (includes waiting
 * for slower peers). */
typedef struct dsa_comm_stats {
    double allreduce_s, allgather_s, p2p_s;
    uint64_t n_allreduce, n_allgather, n_p2p;
    uint64_t bytes;
} dsa_comm_stats;

struct dsa_comm {
    const dsa_comm_ops *ops;
    int tp_rank, tp_size;
    int stage, n_stages;
    double timeout_s;           /* bound on every op (graph_safe: on every step) */
    /* 1: the ops only queue work on the backend's stream, never wait on
     * the host for it, so a captured decode graph may hold them; the
     * bound is the watch op's.  0: every op completes before it returns
     * (MPI on host memory). */
    int graph_safe;
    dsa_comm_stats stats;
};

static inline void dsa_comm_destroy(dsa_comm *c)
{
    if (c)
        c->ops->destroy(c);
}

/* What a TP group's one-shot all-reduce (kernels/cuda/cuda_allreduce.h)
 * can do, agreed by every rank at setup: n_ranks all on one node (the same
 * host name), every pair of their devices peer-accessible, every peer's
 * shared area mapped; bytes_max 0 when any of it fails (or it is switched
 * off), and then NCCL takes every all-reduce. */
typedef struct dsa_comm_ar_caps {
    int n_ranks;
    int64_t bytes_max;          /* largest buffer it takes; 0: none */
} dsa_comm_ar_caps;

/* 1 when an all-reduce of n values of dt goes to the one-shot kernel, 0
 * when to NCCL: BF16 or F32, a whole number of 16-byte vectors, at most
 * bytes_max (decode sizes: 7168 BF16 values per token, so batches up to
 * 18 at 256 KiB; prefill and large batches are NCCL's, whose ring is
 * bandwidth-optimal there).  Every rank decides alike: same n, same caps. */
static inline int dsa_comm_ar_oneshot(const dsa_comm_ar_caps *c, int64_t n, dsa_dtype dt)
{
    int64_t es = dt == DSA_DTYPE_BF16 ? 2 : dt == DSA_DTYPE_F32 ? 4 : 0;
    int64_t bytes = n * es;
    return c && c->n_ranks > 1 && es > 0 && bytes > 0 && bytes % 16 == 0 &&
           bytes <= c->bytes_max;
}

/* 1 when the communicator spans more than this rank's TP slice. */
static inline int dsa_comm_tp(const dsa_comm *c)
{
    return c && c->tp_size > 1;
}

#ifdef DSA_HAVE_MPI
#include <mpi.h>
/* The MPI implementation over host memory.  tp_comm holds the ranks of
 * this stage (rank within it = tp_rank); pp_comm holds the workers with
 * rank stage * tp_size + tp_rank (the same tp_rank of the neighbouring
 * stages is pp rank +- tp_size).  Both are borrowed. */
dsa_err dsa_comm_mpi_create(MPI_Comm tp_comm, MPI_Comm workers, int stage, int n_stages,
                            double timeout_s, dsa_comm **out);
#endif

#if defined(DSA_HAVE_MPI) && defined(DSA_HAVE_CUDA)
/* The NCCL implementation over device memory (comm_nccl.c).  Collective
 * over `workers` (every worker calls it, after its CUDA backend exists: the
 * communicators live on the current device).  tp_comm and workers as for
 * dsa_comm_mpi_create, borrowed; stream is the backend's cudaStream_t
 * (dsa_cuda_stream), borrowed; every op is queued on it and completed
 * against timeout_s.  The id exchange and NCCL's initialisation are bounded
 * by timeout_s too. */
dsa_err dsa_comm_nccl_create(MPI_Comm tp_comm, MPI_Comm workers, int stage, int n_stages,
                             double timeout_s, void *stream, dsa_comm **out);
#endif

#endif
