/* dist.h - a distributed worker (`dsa-worker`): one MPI rank holding one
 * stage's layers and one TP slice, executing the head's StepPlans in
 * lock-step with the other workers (DESIGN.md "Parallel layout").
 *
 * Start-up: layout from the world rank (stage = (r-1)/TP, tp_rank =
 * (r-1)%TP), layer ranges (contiguous, or --pp-layers), the backend and
 * the weights of this shard only, KV blocks (the minimum over the workers,
 * agreed once every rank knows what its memory holds), the communicator,
 * then Hello to the head and Config back.  Then a loop over frames from the head: a StepPlan
 * runs through dsa_worker_step_run with a communicator (collectives inside
 * the forward pass); the last stage's tp_rank 0 samples and sends the
 * StepResult.  Ping is echoed, Shutdown ends the loop, Abort ends the job.
 * A collective that times out, or a peer that fails, aborts the job with a
 * message naming this rank and host. */
#ifndef DSA_WORKER_DIST_H
#define DSA_WORKER_DIST_H

#include <stdint.h>

#include "proto/mpi_transport.h"

typedef struct dsa_dist_params {
    const char *model_dir;
    int tp;                     /* TP size; PP = workers / tp */
    const char *pp_layers;      /* "31,30": layers per stage, NULL: even split */
    int n_threads;
    /* "cpu" (NULL: the same) or "cuda": CUDA workers take the GPU of their
     * index among the workers on their node (cuda:L) and NCCL collectives
     * (comm_nccl.c); CPU workers MPI collectives (comm_mpi.c). */
    const char *device;
    double gpu_memory_utilization;  /* CUDA: memory share, 0: 0.9 */
    int64_t block_size, max_model_len, n_blocks, kv_cache_bytes, max_num_seqs;
    double timeout_s;           /* bound on every collective and reply */
    double load_timeout_s;      /* bound on waiting for Config after Hello */
    const char *dump_logits;    /* sampling rank appends F32 logits per step here */
    int spec_tokens;            /* num_speculative_tokens (worker/step.h) */
    int lm_head_quant;          /* --lm-head-dtype: a dsa_lm_head_dtype (worker/lm_head.h) */
    int cpu_int8_act;           /* --cpu-int8-activations (worker/step.h) */
} dsa_dist_params;

/* Layers per stage: counts[n_stages] summing to n_layers, from spec
 * ("31,30") or split evenly, earlier stages taking the remainder. */
dsa_err dsa_dist_layers(int n_layers, int n_stages, const char *spec, int *counts);

/* Runs the worker until Shutdown; returns the process exit code.  Fatal
 * errors abort the job (dsa_mpi_abort) and do not return. */
int dsa_dist_worker_main(const dsa_mpi_env *env, const dsa_dist_params *p);

#endif
