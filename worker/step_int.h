/* step_int.h - the worker step's state, shared by step.c (plans, sampling)
 * and step_spec.c (speculative decoding: MTP drafts).  Internal to
 * worker/. */
#ifndef DSA_WORKER_STEP_INT_H
#define DSA_WORKER_STEP_INT_H

#include "worker/loader.h"
#include "worker/model.h"
#include "worker/mtp.h"
#include "worker/step.h"

/* Token counts of one sequence, for penalties: an open-addressing map from
 * token id to (generated count, seen in prompt). */
typedef struct tok_count {
    int32_t id;        /* -1: empty slot */
    uint32_t n_out;
    uint8_t in_prompt;
} tok_count;

typedef struct seq_state {
    uint64_t seq_id;
    tok_count *map;    /* [cap], NULL until a penalty needs it */
    uint32_t cap, used;
    int32_t slot1;     /* sampling on the backend: its count slot + 1; 0: none yet */
} seq_state;

struct dsa_worker_step {
    dsa_backend *be;
    dsa_weights *w;
    int prepared;      /* the weights went through dsa_weights_prepare */
    int on_cuda;
    dsa_model *m;
    dsa_worker_info info;
    seq_state *seqs;
    int n_seqs, cap_seqs;
    /* per-step scratch, grown as needed */
    int32_t *tokens, *pos, *seq, *bt, *logit_rows;
    int64_t cap_tokens, cap_bt, cap_rows;
    float *logits, *work, *dev_logits;  /* [L, V] raw; [L_s, V] penalised; backend copy */
    int64_t cap_logits, cap_work;
    int32_t *plp_target;               /* [prompt rows] the token each row scores */
    int64_t cap_plp;
    dsa_logit_ctl *ctl;                /* [L_s] */
    dsa_logit_mask *masks;             /* [L_s] grammar bitmasks (borrowed from the plan) */
    dsa_sample_row *rows;
    int32_t *ids;
    int samples;       /* 1: this rank samples (single rank, or last stage tp 0) */
    int64_t n_last;    /* sampling rows of the last run */
    /* Speculative decoding (step_spec.c) */
    dsa_mtp *mtp;      /* NULL: no drafts */
    int32_t *row_seq, *row_j; /* [L] plan sequence and verified position of each sampling row */
    int32_t *m_tokens, *m_pos, *m_seq, *m_hrows, *m_lrows, *m_owner; /* MTP batch, [T] */
    int32_t *m_first;  /* [n_seqs] first batch row of each plan sequence */
    float *m_logits;   /* [n_seqs, V] MTP logits (host path) */
    float *m_dev_logits; /* [n_seqs, V] MTP logits in backend memory (dev_sampling) */
    dsa_sample_row *m_rows; /* [n_seqs] greedy rows for the drafts' argmax there */
    int32_t *m_ids;    /* [n_seqs] the drafts of one pass */
    int64_t cap_spec, cap_mseqs;
    /* Sampling on the backend (step_sample.c) */
    int dev_sampling;
    float *dev_raw;    /* [cap_raw, V] backend memory: the step's raw logit rows */
    int64_t cap_raw, cap_ids;
    dsa_token_counts counts; /* backend memory, a slot per penalised sequence */
    uint8_t *slot_used;      /* [counts.n_slots] */
    int32_t *d_slots, *d_ids; /* [cap_ids] count updates */
    int32_t *d_k, *d_rank, *d_ntop, *d_top_ids; /* [cap_raw] (top_ids: x DSA_TOP_LOGPROBS_MAX) */
    float *d_lp, *d_top_lps;
    dsa_penalty_row *d_pen;  /* [cap_raw] */
};

/* The sampler state of sequence id (created on first use; NULL: no memory). */
seq_state *dsa_worker_state_get(dsa_worker_step *ws, uint64_t id);

/* After the verification rows are sampled: for every sequence with spec_k
 * > 0 runs the MTP over the chunk's accepted positions and chains it into
 * res->seqs[i].drafts.  accepted[i]: drafts sequence i accepted; last[i]:
 * its final sampled token (-1: it did not sample).  Call on the rank that
 * samples. */
dsa_err dsa_worker_spec_draft(dsa_worker_step *ws, const dsa_step_plan *plan,
                              const int32_t *accepted, const int32_t *last,
                              dsa_step_result *res);
/* dsa_worker_spec_draft with accepted/last read from res (sample_rows's
 * output). */
dsa_err dsa_worker_spec_finish(dsa_worker_step *ws, const dsa_step_plan *plan,
                               dsa_step_result *res);

/* How many of s's drafts the ids sampled at its verified rows accept
 * (o->extra allocated for them). */
dsa_err dsa_worker_accept_drafts(const dsa_step_seq *s, const int32_t *ids, dsa_step_out *o,
                                 int32_t *a_out);

/* How many of s's positions score a prompt logprob this step, with
 * o->prompt_lps allocated for them. */
dsa_err dsa_worker_prompt_lps_alloc(const dsa_step_seq *s, dsa_step_out *o, int32_t *n_out);

/* Sampling on the backend (step_sample.c). */
int dsa_worker_dev_usable(const dsa_backend *be);
void dsa_worker_dev_free(dsa_worker_step *ws);
/* Raw rows for n logits and host arrays for n_ids count updates. */
dsa_err dsa_worker_dev_reserve(dsa_worker_step *ws, int64_t n, int64_t n_ids);
void dsa_worker_dev_slot_release(dsa_worker_step *ws, seq_state *s);
/* The prompt tokens of the plan's chunks into their sequences' counts. */
dsa_err dsa_worker_dev_prompt_counts(dsa_worker_step *ws, const dsa_step_plan *plan);
/* Prompt logprobs, then the L sampling rows of ws->dev_raw (rows L..L+LP-1
 * the prompt rows), as step.c's host path. */
dsa_err dsa_worker_dev_sample(dsa_worker_step *ws, const dsa_step_plan *plan, int64_t L,
                              int64_t LP, dsa_step_result *res);

#endif
