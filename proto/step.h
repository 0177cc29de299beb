/* step.h - the head<->worker step messages (DESIGN.md "Head<->worker
 * protocol"): StepPlan (head -> workers) and StepResult (worker -> head),
 * their little-endian wire encoding, and the transport vtable that carries
 * one plan to the workers and brings its result back.
 *
 * A plan is one forward step: per sequence the new token ids (a prompt
 * chunk or the last sampled token), their start position, the sequence's
 * block table and its sampling parameters.  The head owns block tables;
 * workers own KV memory and per-sequence sampling state (token counts for
 * penalties), which they drop when a sequence id appears in `finished`.
 *
 * Frames: magic "DSAS", u16 version, u16 type, u32 body length, body.  All
 * integers little-endian, floats as their IEEE-754 bits.  Decoding checks
 * every length against the frame and fails with DSA_FORMAT on truncation or
 * garbage; it never reads past the buffer. */
#ifndef DSA_PROTO_STEP_H
#define DSA_PROTO_STEP_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

#define DSA_PROTO_MAGIC 0x53415344u /* "DSAS" little-endian */
/* 2: per-sequence logit controls (bias, allowed, min_tokens bans) and
 * prompt logprobs in plans and results.  3: grammar masks in plans.
 * 4: speculative decoding (draft tokens and wanted drafts in plans;
 * accepted tokens and new drafts in results).  5: one grammar mask per
 * verified position of a sequence with drafts.  6: masks_later: a plan
 * may leave its masks to a StepMasks frame that follows it (MPI). */
#define DSA_PROTO_VERSION 6
#define DSA_TOP_LOGPROBS_MAX 20
/* Most draft tokens per sequence and step (num_speculative_tokens). */
#define DSA_SPEC_TOKENS_MAX 8

typedef enum dsa_msg_type {
    DSA_MSG_STEP_PLAN = 1,
    DSA_MSG_STEP_RESULT = 2,
    DSA_MSG_STEP_MASKS = 8, /* the grammar masks of a plan with masks_later
                             * (3..7 are proto/control.h's) */
} dsa_msg_type;

/* Per-sequence sampling parameters (OpenAI/vLLM semantics).  Penalties:
 * presence and frequency act on generated tokens, repetition on prompt and
 * generated tokens (1 disables it).  n_logprobs < 0: no logprobs; 0: the
 * chosen token's only; k > 0: also the k most likely. */
typedef struct dsa_sampling {
    float temperature, top_p, min_p;
    int32_t top_k;
    uint64_t seed;
    float presence_penalty, frequency_penalty, repetition_penalty;
    int32_t n_logprobs;
} dsa_sampling;

typedef struct dsa_step_seq {
    uint64_t seq_id;
    int32_t pos;            /* position of tokens[0] */
    int32_t n_prompt;       /* prompt length: positions below it are prompt */
    int32_t n_tokens;
    int32_t *tokens;        /* [n_tokens] */
    int32_t n_blocks;
    int32_t *blocks;        /* [n_blocks] block table */
    int32_t sample;         /* 1: sample after tokens[n_tokens-1] */
    uint32_t step;          /* tokens generated so far (sampler draw index) */
    dsa_sampling sp;
    /* Logit controls, applied in vLLM's order to the sampled row only:
     * allowed_token_ids (every other id -> -inf), the min_tokens bans
     * (banned ids -> -inf while step < min_tokens: EOS and stop_token_ids),
     * then logit_bias (added); the penalties come after them.  Reported logprobs are of the raw logits, as
     * vLLM's default logprobs mode.  The head sends ids inside the vocabulary,
     * allowed and bias ids sorted and unique. */
    int32_t n_allowed;
    int32_t *allowed;       /* [n_allowed] */
    int32_t min_tokens;
    int32_t n_banned;
    int32_t *banned;        /* [n_banned] */
    int32_t n_bias;
    int32_t *bias_ids;      /* [n_bias] */
    float *bias_values;     /* [n_bias] */
    /* Prompt logprobs (prompt_lps = 1): for each token of this chunk whose
     * successor is a prompt token, that successor's logprob, rank and the
     * prompt_top (0..20) most likely ids.  next_token is the prompt token
     * after tokens[n_tokens-1] (the next chunk's first), read only when
     * that position is a prompt position. */
    int32_t prompt_lps;
    int32_t prompt_top;
    int32_t next_token;
    /* Structured output: n_mask words of an allowed-id bitmask (bit i%32
     * of word i/32 = id i), 0 = no mask.  Ids outside it get -inf logits
     * before penalties, sampling and logprobs, as vLLM applies a grammar
     * bitmask.  A sequence with n_draft drafts carries n_draft + 1 masks
     * back to back (dsa_step_seq_mask_words): mask j applies to verified
     * position j, the grammar state after the drafts before it.  Decoded
     * plans own it; the head's plans borrow it. */
    int32_t n_mask;
    uint32_t *mask;         /* [dsa_step_seq_mask_words] */
    /* Speculative decoding (docs/design.md "Speculative decoding").
     * n_draft > 0: the last n_draft tokens are drafts to verify (sample
     * must be 1; a mask per position, above): logits of the last
     * n_draft + 1 positions are sampled in order, each with this
     * sequence's controls and penalties as if the drafts before it were
     * accepted, draw index step + j; draft
     * j is accepted while the token sampled before it equals it, and the
     * result carries the accepted drafts plus one more token.  spec_k > 0:
     * the worker runs its MTP module over this chunk's accepted positions
     * (next_token must be the token after a chunk that does not sample)
     * and, when the sequence samples, returns up to spec_k new drafts. */
    int32_t n_draft;
    int32_t spec_k;
} dsa_step_seq;

/* Words of s->mask: n_mask per sampled position (1 + n_draft of them). */
static inline int64_t dsa_step_seq_mask_words(const dsa_step_seq *s)
{
    return (int64_t)s->n_mask * (1 + (s->n_draft > 0 ? s->n_draft : 0));
}

typedef struct dsa_step_plan {
    uint64_t step_id;
    int32_t n_seqs;
    dsa_step_seq *seqs;     /* [n_seqs] */
    int32_t n_finished;
    uint64_t *finished;     /* [n_finished] sequence ids to forget */
    /* 1: the plan frame carries each sequence's n_mask but no mask words;
     * they follow in a StepMasks frame (dsa_step_masks_encode) sent to the
     * ranks of the last stage only, so the head fills them while the
     * workers run the forward pass.  A decoded plan has mask NULL until
     * dsa_step_masks_decode. */
    int32_t masks_later;
    /* Never encoded: when set, the seqs' masks may not be there yet (being
     * written by the head's helper thread in process, or still on the wire
     * with masks_later), and the step calls mask_wait(mask_user) before it
     * reads any of them; an error (the masks never came) fails the step. */
    dsa_err (*mask_wait)(void *user);
    void *mask_user;
} dsa_step_plan;

/* One prompt token's logprob (vLLM's prompt_logprobs entry): the token at
 * position pos scored by the logits of position pos - 1.  rank: 1 + the
 * ids with a strictly larger logit. */
typedef struct dsa_prompt_lp {
    int32_t pos;
    int32_t token;
    float logprob;
    int32_t rank;
    int32_t n_top;
    int32_t top_ids[DSA_TOP_LOGPROBS_MAX];
    float top_logprobs[DSA_TOP_LOGPROBS_MAX];
} dsa_prompt_lp;

/* One more generated token of a speculative step (as dsa_step_out's own). */
typedef struct dsa_step_tok {
    int32_t token;
    float logprob;
    int32_t n_top;
    int32_t top_ids[DSA_TOP_LOGPROBS_MAX];
    float top_logprobs[DSA_TOP_LOGPROBS_MAX];
} dsa_step_tok;

typedef struct dsa_step_out {
    uint64_t seq_id;
    int32_t token;          /* -1 when the sequence did not sample */
    float logprob;
    int32_t n_top;
    int32_t top_ids[DSA_TOP_LOGPROBS_MAX];
    float top_logprobs[DSA_TOP_LOGPROBS_MAX];
    int32_t n_prompt_lps;
    dsa_prompt_lp *prompt_lps; /* [n_prompt_lps] in position order, owned by the result */
    /* Speculative decoding: n_extra = drafts accepted; the generated
     * tokens are `token` then extra[0..n_extra-1] (owned by the result).
     * drafts: the MTP's proposals for the next step. */
    int32_t n_extra;
    dsa_step_tok *extra;
    int32_t n_drafts;
    int32_t drafts[DSA_SPEC_TOKENS_MAX];
} dsa_step_out;

typedef struct dsa_step_result {
    uint64_t step_id;
    int32_t status;         /* dsa_err; on failure no outputs */
    char message[256];      /* detail when status != 0 */
    int32_t n_seqs;
    dsa_step_out *seqs;     /* [n_seqs], in plan order */
} dsa_step_result;

/* Encoding: *buf is malloc'd (caller frees). */
dsa_err dsa_step_plan_encode(const dsa_step_plan *p, uint8_t **buf, size_t *len);
dsa_err dsa_step_result_encode(const dsa_step_result *r, uint8_t **buf, size_t *len);
/* Decoding into caller storage; the arrays are malloc'd, released with
 * the matching _free (which leaves the struct zeroed).  A plan's arrays
 * are the caller's when it built the plan itself: dsa_step_plan_free only
 * on decoded plans.  dsa_step_result_free also frees each prompt_lps. */
dsa_err dsa_step_plan_decode(const uint8_t *buf, size_t len, dsa_step_plan *p);
dsa_err dsa_step_result_decode(const uint8_t *buf, size_t len, dsa_step_result *r);
void dsa_step_plan_free(dsa_step_plan *p);
/* StepMasks: step_id, then per sequence of the plan its mask words
 * (dsa_step_seq_mask_words each, 0 for a sequence without a mask).
 * decode fills the masks of a plan decoded with masks_later; the step id,
 * sequence count and every word count must match it (DSA_FORMAT). */
dsa_err dsa_step_masks_encode(const dsa_step_plan *p, uint8_t **buf, size_t *len);
dsa_err dsa_step_masks_decode(const uint8_t *buf, size_t len, dsa_step_plan *p);
void dsa_step_result_free(dsa_step_result *r);

/* What the workers report at start (Hello). */
typedef struct dsa_worker_info {
    int64_t n_blocks;       /* KV blocks the workers hold */
    int64_t block_size;
    int64_t max_blocks_per_seq;
    int64_t vocab_size;
    int64_t max_position_embeddings;
    int32_t eos_token_id, bos_token_id;
} dsa_worker_info;

/* A transport carries a plan to every worker and returns the result.  step
 * is synchronous and called from one thread (the head's engine thread);
 * result arrays are owned by the caller and released with
 * dsa_step_result_free.  A transport failure returns an error; a failed
 * step on the workers returns DSA_OK with result->status set.
 *
 * submit/collect (optional, NULL when the transport has no pipeline, as
 * the in-process worker): submit sends a plan without waiting (the plan is
 * copied, the caller may reuse it at once); collect returns the result of
 * the oldest plan submitted and not yet collected (results come back in
 * submission order).  step == submit + collect. */
typedef struct dsa_transport dsa_transport;
typedef struct dsa_transport_ops {
    const char *name;
    dsa_err (*step)(dsa_transport *t, const dsa_step_plan *plan, dsa_step_result *result);
    void (*destroy)(dsa_transport *t);
    dsa_err (*submit)(dsa_transport *t, const dsa_step_plan *plan);
    dsa_err (*collect)(dsa_transport *t, dsa_step_result *result);
    /* Optional (NULL in-process): every worker answers a Ping, nothing in
     * flight; an error is a transport error. */
    dsa_err (*ping)(dsa_transport *t);
    /* 1 when step reads the plan in place on the calling thread (the
     * in-process worker) and honours dsa_step_plan.mask_wait. */
    int shares_plan;
    /* Optional (NULL in-process): after submit of a plan with masks_later,
     * sends its masks (the plan's current mask words) to the ranks that
     * sample; the buffers are copied.  An error is a transport error. */
    dsa_err (*send_masks)(dsa_transport *t, const dsa_step_plan *plan);
} dsa_transport_ops;

struct dsa_transport {
    const dsa_transport_ops *ops;
    dsa_worker_info info;
};

static inline void dsa_transport_destroy(dsa_transport *t)
{
    if (t)
        t->ops->destroy(t);
}

#endif
