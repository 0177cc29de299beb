/* model.h - the DeepSeek-V3/R1 forward pass over a compute backend, and the
 * paged latent KV cache it reads and writes.
 *
 * A batch is any mix of sequences, each contributing a run of consecutive
 * positions (a prompt chunk or one decode token); every sequence brings its
 * own block table, so prefill and decode share one step (DESIGN.md "KV cache
 * and scheduling").  The model borrows its weights and backend. */
#ifndef DSA_WORKER_MODEL_H
#define DSA_WORKER_MODEL_H

#include <stdint.h>

#include "kernels/backend.h"
#include "worker/comm.h"
#include "worker/loader.h"

typedef struct dsa_model_params {
    int64_t n_blocks;           /* KV cache blocks per layer */
    int64_t block_size;         /* tokens per block (default 64) */
    int64_t max_blocks_per_seq; /* columns of a block table */
    dsa_comm *comm;             /* borrowed; NULL: one rank holds everything */
} dsa_model_params;

/* One forward step.  All arrays are host memory. */
typedef struct dsa_batch {
    int64_t n_tokens;
    const int32_t *tokens;       /* [n_tokens] token ids */
    const int32_t *pos;          /* [n_tokens] position within its sequence */
    const int32_t *seq;          /* [n_tokens] row of block_tables */
    int64_t n_seqs;
    const int32_t *block_tables; /* [n_seqs, max_blocks_per_seq] block ids */
    int64_t n_logits;
    const int32_t *logit_rows;   /* [n_logits] tokens whose logits are returned */
    /* NULL, or the residual stream the layers start from ([n_tokens, D]
     * act, backend memory, borrowed) instead of the embedding: the MTP
     * module's input (worker/mtp.c).  Such a batch never uses a graph. */
    const void *h_in;
    /* 1: the logits argument of dsa_model_forward is backend memory ([n_logits,
     * vocab] F32) and the logits stay there (device-to-device copies; with
     * TP the gathered slices go straight into it): the worker's sampling on
     * the backend.  0: host memory, downloaded. */
    int logits_on_backend;
} dsa_batch;

typedef struct dsa_model dsa_model;

dsa_err dsa_model_create(dsa_backend *be, const dsa_weights *w, const dsa_model_params *p,
                         dsa_model **out);
void dsa_model_destroy(dsa_model *m); /* NULL: no-op */

/* Runs the batch through this shard's layers, writing every token's latent
 * cache entry, and returns the logits of the logit_rows tokens as host F32
 * [n_logits, vocab_rows] (this rank's vocab slice).  With a communicator
 * every rank of a step calls this with the same batch: a stage without the
 * embedding receives the residual stream from the previous stage, a stage
 * without the head sends it on and returns no logits, and with tp_size > 1
 * the last stage gathers the vocab slices so that every TP rank returns the
 * full [n_logits, vocab_size] logits.  Validates the batch
 * (ids within the vocabulary, positions within max_blocks_per_seq *
 * block_size, block ids within n_blocks) and fails with DSA_RANGE.
 *
 * On a backend with graphs (dsa_backend_has_graphs), without a
 * communicator or with a graph_safe one, a decode batch (seq[t] == t / q
 * for q tokens per sequence at consecutive positions: q = 1, or q - 1
 * drafts verified with every row's logits; at most 256 tokens) is padded
 * to a bucket of sequences (every size to 8, multiples of 8 to 64, of 32
 * to 256) and its compute is captured as graph (q - 1) * 257 + bucket on
 * the bucket's second step and replayed from the third on (model.c); the
 * model then holds one KV block more than n_blocks for the padded rows.
 * The logits are the same either way. */
dsa_err dsa_model_forward(dsa_model *m, const dsa_batch *b, float *logits);

/* The residual stream after the last layer of the latest forward (before
 * the final norm): backend memory, [n_tokens, D] act, row t = the batch's
 * token t (a padded decode batch: its first n_tokens rows).  Valid until
 * the next forward; on a stage without the head, what was sent on. */
const void *dsa_model_hidden(const dsa_model *m);

/* For a one-layer model fed by b->h_in with no logits (b->n_logits 0):
 * writes only the layer's latent cache entries of b's tokens (input norm,
 * kv_a, its norm, RoPE), the same values a full forward stores there.
 * DSA_UNSUPPORTED for other models (then run dsa_model_forward). */
dsa_err dsa_model_forward_kv(dsa_model *m, const dsa_batch *b);

/* What the decode graphs did so far (all zero without graphs). */
typedef struct dsa_model_graph_stats {
    int64_t n_eager;        /* decode steps of a bucket run eagerly (warm-up, fallback) */
    int64_t n_captured;     /* graphs captured (recaptures included) */
    int64_t n_replayed;     /* decode steps run by replaying a graph */
    int64_t n_fallbacks;    /* buckets sent back to eager by a failed graph op */
    int64_t n_dropped;      /* replays that found the backend had dropped the graph */
} dsa_model_graph_stats;

void dsa_model_graph_stats_get(const dsa_model *m, dsa_model_graph_stats *out);

/* Bytes of KV cache one block takes over this shard's layers. */
int64_t dsa_model_block_bytes(const dsa_config *cfg, int n_layers, int64_t block_size,
                              size_t act_size);

#endif
