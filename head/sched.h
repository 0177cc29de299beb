/* sched.h - the head's continuous-batching scheduler over the paged MLA
 * cache (DESIGN.md "KV cache and scheduling"), on the block manager of
 * head/blocks.h.
 *
 * Each step (one plan) takes, within max_num_batched_tokens tokens and
 * max_num_seqs sequences:
 *   1. the decodes of running sequences (oldest first),
 *   2. the next prompt chunks of running sequences still prefilling,
 *   3. waiting sequences, strictly in order (FCFS, no overtaking, so none
 *      starves), while the blocks for their first chunk are available.
 * Blocks are allocated as a sequence grows.  When a running sequence needs
 * a block and none is available, the newest running sequence not in this
 * plan is preempted: its blocks are released and it goes back to the front
 * of the waiting queue, to be recomputed later from its prompt and the
 * tokens it generated (it keeps them; sampling resumes at step index
 * n_generated, so seeded sampling is unchanged).  If no other sequence can
 * give way, the sequence itself is preempted.
 *
 * Prefix caching: every full block a step computes is published under its
 * chained hash; a sequence entering the running set reuses the longest run
 * of cached blocks matching its tokens (never the block holding its last
 * token: at least one token is computed, to get logits) and its plan
 * starts after them.  Sequences with a repetition penalty skip the lookup
 * on their first admission, because the workers learn prompt tokens from
 * the plans.  The workers keep a preempted sequence's sampler state (it is
 * not reported finished), so penalties stay right across recomputation.
 *
 * Micro-batches: a plan is built into a dsa_sched_batch; sequences in a
 * batch not yet committed are "in flight" and skipped (and never
 * preempted) by the next schedule, so two batches with disjoint sequences
 * can be in flight at once (pipeline parallelism).  dsa_sched_remove must
 * not be called on an in-flight sequence.
 *
 * Not thread-safe: the engine thread alone calls it. */
#ifndef DSA_HEAD_SCHED_H
#define DSA_HEAD_SCHED_H

#include <stdint.h>

#include "common/error.h"
#include "head/blocks.h"
#include "proto/step.h"

typedef struct dsa_sched_seq {
    uint64_t id;
    int32_t *tokens;        /* [n_tokens] prompt then generated, owned */
    int32_t n_tokens, cap_tokens;
    int32_t n_prompt;
    int32_t n_max;          /* prompt + max new tokens */
    int32_t n_computed;     /* tokens whose KV is in the cache */
    int32_t n_generated;
    int32_t *blocks;        /* [n_blocks] block table, owned */
    uint64_t *hashes;       /* [n_hashed] chained keys of the first full blocks */
    int32_t n_blocks, cap_blocks;
    int32_t n_hashed;       /* full blocks whose key is known (published or hit) */
    int32_t n_scheduled;    /* tokens in the batch in flight */
    int32_t in_flight;
    int32_t n_preempted;
    dsa_sampling sp;
    /* NULL or the logit controls and prompt logprob wish (proto/step.h
     * fields n_allowed .. prompt_top; borrowed) copied into every plan of
     * this sequence.  A sequence asking prompt logprobs never takes
     * prefix-cache hits (its prompt must be computed) and prefills in
     * chunks of at most DSA_SCHED_PLP_CHUNK tokens (a logit row each). */
    const dsa_step_seq *ctl;
    /* Speculative decoding: spec_k > 0 (set by the caller after
     * dsa_sched_seq_init) asks the workers for that many drafts; drafts[]
     * are the latest proposals, verified by the next decode step. */
    int32_t spec_k;
    int32_t n_draft;
    int32_t drafts[DSA_SPEC_TOKENS_MAX];
    int state;              /* DSA_SEQ_* */
    void *user;             /* the engine's request, borrowed */
    struct dsa_sched_seq *next, *prev;
} dsa_sched_seq;

#define DSA_SCHED_PLP_CHUNK 256

enum { DSA_SEQ_NEW, DSA_SEQ_WAITING, DSA_SEQ_RUNNING, DSA_SEQ_DONE };

typedef struct dsa_sched_queue {
    dsa_sched_seq *head, *tail;
    int n;
} dsa_sched_queue;

typedef struct dsa_sched_params {
    int64_t n_blocks, block_size;
    int64_t max_num_seqs;
    int64_t max_num_batched_tokens;
    int disable_prefix_caching;
    uint64_t hash_seed;     /* dsa_blocks_seed(model name) */
} dsa_sched_params;

/* One plan and the sequences in it (plan order). */
typedef struct dsa_sched_batch {
    dsa_step_plan plan;     /* arrays owned here; tokens and tables borrowed */
    dsa_sched_seq **planned;/* [plan.n_seqs] */
    int32_t cap;
    uint64_t *finished;     /* the finished ids this plan carries */
    int32_t cap_finished;
    int32_t limit;          /* > 0: at most this many sequences (set by the
                             * caller; pipelining splits the work in two) */
} dsa_sched_batch;

/* Cumulative counters (for /metrics and tests). */
typedef struct dsa_sched_stats {
    uint64_t prefix_queries;    /* tokens of sequences looked up */
    uint64_t prefix_hits;       /* of them found cached */
    uint64_t preemptions;
    uint64_t prompt_computed;   /* prompt tokens put in plans */
    uint64_t tokens_computed;   /* all tokens put in plans */
} dsa_sched_stats;

typedef struct dsa_sched {
    dsa_sched_params p;
    dsa_blocks bm;
    dsa_sched_queue waiting, running;
    uint64_t step_id;
    dsa_sched_batch batch;  /* the batch of dsa_sched_schedule/commit */
    dsa_step_plan plan;     /* == batch.plan after dsa_sched_schedule */
    dsa_sched_seq **planned;/* == batch.planned */
    uint64_t *finished;     /* ids to report in the next plan */
    int32_t n_finished, cap_finished;
    dsa_sched_stats st;
} dsa_sched;

dsa_err dsa_sched_init(dsa_sched *s, const dsa_sched_params *p);
void dsa_sched_deinit(dsa_sched *s);

/* Sets up a sequence on caller storage with its prompt (copied). */
dsa_err dsa_sched_seq_init(dsa_sched_seq *q, uint64_t id, const int32_t *prompt,
                           int32_t n_prompt, int32_t max_new, const dsa_sampling *sp);
void dsa_sched_seq_deinit(dsa_sched_seq *q);

/* Blocks a sequence of n tokens needs. */
int64_t dsa_sched_blocks_for(const dsa_sched *s, int64_t n_tokens);

/* Queues a sequence (FCFS).  DSA_RANGE when it could never fit the cache
 * alone; DSA_NOMEM. */
dsa_err dsa_sched_add(dsa_sched *s, dsa_sched_seq *q);
/* Takes a sequence out (finished or aborted): its blocks are released at
 * once and its id is reported to the workers with the next plan.  The
 * sequence stays the caller's. */
void dsa_sched_remove(dsa_sched *s, dsa_sched_seq *q);

/* Builds the next plan into b from the sequences not in flight.  The plan
 * borrows the sequences' token and block arrays until its commit.  Returns
 * the number of sequences planned; a plan with none may still carry
 * finished ids (n_finished > 0). */
int dsa_sched_schedule_batch(dsa_sched *s, dsa_sched_batch *b);
/* After b's step: scheduled tokens count as computed, each sampled token
 * (result order = plan order; -1: none) is appended and newly full blocks
 * are published to the prefix cache.  A speculative row: the drafts it
 * accepted count as computed and are appended with the token after them;
 * rejected ones are not computed (their cache slots are written again by
 * the next step) and never reach a published block; the row's new drafts
 * are kept for the next decode.  r == NULL: the step failed; nothing
 * is computed (the caller fails the planned sequences). */
dsa_err dsa_sched_commit_batch(dsa_sched *s, dsa_sched_batch *b, const dsa_step_result *r);

/* The single-batch form: s->batch, mirrored in s->plan / s->planned. */
int dsa_sched_schedule(dsa_sched *s);
dsa_err dsa_sched_commit(dsa_sched *s, const dsa_step_result *r);

/* KV usage in [0, 1]: blocks held by sequences over all blocks. */
double dsa_sched_kv_usage(const dsa_sched *s);

#endif
