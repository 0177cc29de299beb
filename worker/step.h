/* step.h - the worker side of a step: owns the backend, the weights and the
 * model (KV cache) and executes StepPlans (proto/step.h): one
 * dsa_model_forward over every sequence's new tokens (and, for sequences
 * asking prompt logprobs, logits at their prompt positions), then per
 * sampling sequence the logprobs of the raw logits, the penalties, the
 * logit controls (backend logit_ctl) and the backend's sampler.
 *
 * Per-sequence state (token counts for presence/frequency/repetition
 * penalties) is created when a sequence id first appears and dropped when
 * it is listed in a plan's `finished`.
 *
 * dsa_worker_step_transport() wraps a worker in an in-process transport
 * (direct call on the caller's thread), so `dsa-head --model DIR` serves
 * without MPI.  This header exposes no kernels/ type, so the head may use
 * it. */
#ifndef DSA_WORKER_STEP_H
#define DSA_WORKER_STEP_H

#include <stdint.h>

#include "common/error.h"
#include "proto/step.h"

typedef struct dsa_worker_step_params {
    const char *model_dir;
    /* "cpu" (NULL: the same) or "cuda" / "cuda:N" (device N, default 0).
     * In a build without CUDA, "cuda" fails with DSA_UNSUPPORTED. */
    const char *device;
    /* CUDA: share (0, 1] of the device's memory this process may hold
     * (weights, KV cache, scratch); 0: 0.9.  Ignored on the CPU. */
    double gpu_memory_utilization;
    int n_threads;              /* CPU threads, 0: one per core */
    int64_t block_size;         /* tokens per KV block */
    int64_t max_model_len;      /* longest sequence (prompt + output) */
    int64_t n_blocks;           /* > 0: exactly this many KV blocks */
    /* n_blocks == 0: blocks that fit in this.  On CUDA the budget is what
     * the memory share leaves after the weights and a scratch reserve
     * (dsa_cuda_kv_bytes); kv_cache_bytes > 0 lowers it, 0 takes it all. */
    int64_t kv_cache_bytes;
    int64_t max_num_seqs;       /* caps the blocks at what this many need */
    /* num_speculative_tokens of deepseek_mtp: > 0 loads the checkpoint's MTP
     * module on the last stage (its own KV layer, counted in the blocks'
     * size) so plans may ask for drafts (proto/step.h spec_k). */
    int spec_tokens;
    /* --lm-head-dtype as a dsa_lm_head_dtype (worker/lm_head.h): lm_head
     * runs as an FP8 or int8 copy made at load; 0 (auto): as stored */
    int lm_head_quant;
    /* 1: the CPU backend runs AWQ linears with int8 activations
     * (--cpu-int8-activations, kernels/cpu/cpu_awq_int8.c) */
    int cpu_int8_act;
    /* A distributed worker (worker/dist.c): this rank's shard and its
     * communicator (comm.h, borrowed).  NULL: the whole model here.  Only
     * the last stage's tp_rank 0 samples; other ranks return token -1. */
    const struct dsa_shard *shard;
    struct dsa_comm *comm;
    /* Optional distributed start-up (worker/dist.c), called once the
     * backend exists and the weights are on it, before the KV cache is
     * allocated: *n_blocks holds this rank's capacity and is set to the
     * count every rank can hold; stream is the CUDA backend's cudaStream_t
     * (NULL on the CPU) for a communicator queued on it.  A communicator
     * it returns in *comm (non-NULL) replaces p->comm and stays owned by
     * the caller, who destroys it after the worker. */
    dsa_err (*prepare)(void *user, void *stream, int64_t *n_blocks, struct dsa_comm **comm);
    void *prepare_user;
    /* Where penalties, controls, sampling and logprobs run (step_sample.c):
     * DSA_SAMPLING_AUTO on the backend when it is a GPU, on host copies of
     * the logits on the CPU (the two give the same results; the host path
     * keeps dsa_worker_step_logits working). */
    int sampling;
} dsa_worker_step_params;

enum { DSA_SAMPLING_AUTO, DSA_SAMPLING_HOST, DSA_SAMPLING_BACKEND };

typedef struct dsa_worker_step dsa_worker_step;

dsa_err dsa_worker_step_create(const dsa_worker_step_params *p, dsa_worker_step **out);
void dsa_worker_step_destroy(dsa_worker_step *ws); /* NULL: no-op */

void dsa_worker_step_info(const dsa_worker_step *ws, dsa_worker_info *info);

/* Executes one plan.  Failures of the step itself (bad block ids, backend
 * errors) are reported in res->status/message; the return value is
 * DSA_NOMEM or DSA_OK. */
dsa_err dsa_worker_step_run(dsa_worker_step *ws, const dsa_step_plan *plan,
                            dsa_step_result *res);

/* The F32 logits [*n_rows, vocab_size] of the last run's sampling rows
 * (penalties applied, after the logit controls on rows with penalties; the
 * other rows' controls run on the backend's copy), or NULL on a rank that
 * does not sample; no rows when sampling runs on the backend (the logits
 * never came to the host).  Valid until the next run.  For multi-rank
 * parity tests and debugging. */
const float *dsa_worker_step_logits(const dsa_worker_step *ws, int64_t *n_rows);
/* Bytes of weights this rank holds (its shard's share). */
uint64_t dsa_worker_step_weight_bytes(const dsa_worker_step *ws);

/* The in-process transport.  It takes ownership of ws (destroying the
 * transport destroys the worker). */
dsa_err dsa_worker_step_transport(dsa_worker_step *ws, dsa_transport **out);

#endif
