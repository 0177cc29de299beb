/* mtp.h - DeepSeek-V3's multi-token-prediction (MTP) module as a draft
 * model for speculative decoding (docs/design.md "Speculative decoding").
 *
 * At position i the module takes the main model's final hidden state h_i
 * (after the final norm: what the training tool, tools/train/model.py, and
 * vLLM's DeepSeek MTP drafter feed it) and the token after i:
 *     x   = eh_proj([enorm(embed(t_{i+1})) ; hnorm(h_i)])
 *     x   = decoder_layer(x)     (its own paged latent cache, position i)
 *     out = head(head_norm(x))   (scores t_{i+2})
 * A chain of k drafts runs the one module k times: after the first pass
 * the module's own output x (before head_norm), not a main-model state,
 * stands for h_i, as vLLM and SGLang chain it.
 *
 * The decoder layer runs as a one-layer dsa_model (model.c) over a view of
 * the weights, so its cache uses the sequences' block tables (same block
 * ids, its own memory).  The module borrows the backend and the weights. */
#ifndef DSA_WORKER_MTP_H
#define DSA_WORKER_MTP_H

#include <stdint.h>

#include "worker/model.h"

typedef struct dsa_mtp dsa_mtp;

/* w must hold the module (w->has_mtp); p as for the main model (same
 * blocks, block size, communicator). */
dsa_err dsa_mtp_create(dsa_backend *be, const dsa_weights *w, const dsa_model_params *p,
                       dsa_mtp **out);
void dsa_mtp_destroy(dsa_mtp *t); /* NULL: no-op */

/* One pass over n_tokens positions.  Host arrays except h. */
typedef struct dsa_mtp_batch {
    int64_t n_tokens;
    const int32_t *tokens;       /* [n_tokens] t_{i+1}, the token after position i */
    const int32_t *pos;          /* [n_tokens] i */
    const int32_t *seq;          /* [n_tokens] row of block_tables */
    int64_t n_seqs;
    const int32_t *block_tables; /* [n_seqs, max_blocks_per_seq] */
    const void *h;               /* backend act rows: dsa_model_hidden(main) or
                                    dsa_mtp_hidden(this module) */
    int h_is_main;               /* 1: h is the main model's (the final norm is applied) */
    const int32_t *h_rows;       /* [n_tokens] row of h for each position */
    int64_t n_logits;
    const int32_t *logit_rows;   /* [n_logits] positions whose logits are returned */
    int logits_on_backend;       /* 1: logits is backend memory (dsa_batch's flag) */
} dsa_mtp_batch;

/* Writes the module's cache entry of every position and returns the F32
 * logits [n_logits, vocab] of the logit rows (TP slices gathered as the
 * main model does; this rank's slice without TP gathering). */
dsa_err dsa_mtp_forward(dsa_mtp *t, const dsa_mtp_batch *b, float *logits);

/* The module's output x (before head_norm) of the latest pass, row t =
 * position t of that batch: the h of the next link of a draft chain. */
const void *dsa_mtp_hidden(const dsa_mtp *t);

/* The row of dsa_mtp_hidden holding row r (a logit row) of the latest
 * batch: the rows whose logits were not asked for only write their cache
 * entries (their output is read by nobody), so the layer and the head run
 * on the logit rows alone and row r's output is that pass's row. */
int32_t dsa_mtp_hidden_row(const dsa_mtp *t, int32_t r);

#endif
