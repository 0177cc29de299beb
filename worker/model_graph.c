/* model_graph.c - decode steps through backend graphs (model.c's header
 * comment describes the buckets and the padding): one token per sequence,
 * or, verifying MTP drafts, the same q tokens per sequence with every row's
 * logits (buckets per q). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "worker/model_int.h"

/* ---- Decode graphs ---------------------------------------------------------- */

/* Decode buckets: every batch size up to 8, then multiples of 8 up to 64,
 * then multiples of 32 up to GRAPH_BUCKET_MAX (GRAPH_N_BUCKETS = 21), so a
 * batch is padded by at most 7 rows up to 64 sequences and 31 above (with
 * powers of two a batch of 129 ran 256 rows). */
static int64_t bucket_round(int64_t n)
{
    if (n <= 8)
        return n;
    if (n <= 64)
        return (n + 7) / 8 * 8;
    return (n + 31) / 32 * 32;
}

static int bucket_index(int64_t B)
{
    if (B <= 8)
        return (int)B - 1;                /* 1..8 -> 0..7 */
    if (B <= 64)
        return 8 + (int)(B / 8) - 2;      /* 16..64 -> 8..14 */
    return 15 + (int)(B / 32) - 3;        /* 96..256 -> 15..20 */
}

/* The sequence bucket of a decode batch of q tokens per sequence (q = 1:
 * sequence t brings token t; q > 1: a step verifying q - 1 drafts of every
 * sequence, sequence s bringing tokens s*q .. s*q + q - 1 at consecutive
 * positions), or 0 when the batch does not go through graphs. */
int64_t dsa_model_decode_bucket(const dsa_model *m, const dsa_batch *b)
{
    if (!m->graphs || b->h_in || b->n_seqs < 1 || b->n_tokens % b->n_seqs)
        return 0;
    int64_t q = b->n_tokens / b->n_seqs, B = bucket_round(b->n_seqs);
    if (q > GRAPH_Q_MAX || B * q > GRAPH_BUCKET_MAX)
        return 0;
    for (int64_t t = 0; t < b->n_tokens; t++)
        if (b->seq[t] != t / q || (t % q && b->pos[t] != b->pos[t - 1] + 1))
            return 0;
    /* q > 1: every row samples (a verification step; a short prefill
     * chunk, which wants one row per sequence, stays eager) */
    if (q > 1 && b->n_logits != b->n_tokens)
        return 0;
    for (int64_t i = 0; q > 1 && i < b->n_logits; i++)
        if (b->logit_rows[i] != i)
            return 0;
    return B;
}

/* A graph's key: the sequence bucket for q = 1 (as before speculative
 * buckets existed), one range of keys per q above. */
static int64_t graph_key(int64_t B, int64_t q)
{
    return (q - 1) * (GRAPH_BUCKET_MAX + 1) + B;
}

/* Host staging of a padded decode batch, GRAPH_BUCKET_MAX rows. */
static dsa_err graph_inputs_alloc(dsa_model *m)
{
    if (m->host_bt)
        return DSA_OK;
    size_t n = GRAPH_BUCKET_MAX;
    m->host_tokens = malloc(n * sizeof(int32_t));
    m->host_pos = malloc(n * sizeof(int32_t));
    m->host_seq = malloc(n * sizeof(int32_t));
    m->host_bt = malloc(n * (size_t)m->p.max_blocks_per_seq * sizeof(int32_t));
    if (!m->host_tokens || !m->host_pos || !m->host_seq || !m->host_bt) {
        free(m->host_bt);
        m->host_bt = NULL;
        return dsa_fail(DSA_NOMEM, "decode graph inputs");
    }
    return DSA_OK;
}

/* Records the graph `key` of T tokens unless it has a current one. */
static dsa_err graph_capture(dsa_model *m, graph_bucket *g, int64_t T, int64_t key)
{
    dsa_backend *be = m->be;
    dsa_err err;
    if (g->state == BUCKET_CAPTURED)
        return DSA_OK;
    if ((err = be->ops->graph_begin(be)))
        return err;
    err = dsa_model_forward_compute(m, T, T, NULL, NULL);
    if (err) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s", dsa_errmsg());
        (void)be->ops->graph_end(be, key); /* ends the capture; the graph is unused */
        return dsa_fail(err, "%s", msg);
    }
    if ((err = be->ops->graph_end(be, key)))
        return err;
    g->state = BUCKET_CAPTURED;
    g->gen = m->graph_gen;
    m->stats.n_captured++;
    return DSA_OK;
}

/* Bucket B's compute phase through its graph: captured first when the
 * bucket has none that is current, then replayed.  Captured ops do not
 * run, so the replay is what computes this step.  A backend that moved a
 * buffer of its own (CUDA scratch) drops its graphs; the replay then finds
 * none (DSA_NOTFOUND) and the bucket is captured again, once. */
static dsa_err graph_run(dsa_model *m, graph_bucket *g, int64_t T, int64_t key)
{
    dsa_backend *be = m->be;
    dsa_err err;
    for (int again = 0;; again++) {
        if ((err = graph_capture(m, g, T, key)))
            return err;
        if (!(err = be->ops->graph_replay(be, key)))
            break;
        if (err != DSA_NOTFOUND || again)
            return err;
        g->state = BUCKET_WARM;
        m->stats.n_dropped++;
    }
    m->stats.n_replayed++;
    return DSA_OK;
}

/* A decode batch of n sequences of q tokens each, padded to B sequences
 * (T = B * q rows): padded sequences bring token 0 at positions 0..q-1 of
 * a table that names only the scratch block, and their logits are not
 * returned. */
dsa_err dsa_model_forward_decode(dsa_model *m, const dsa_batch *b, int64_t B, float *logits)
{
    int64_t n = b->n_seqs, q = b->n_tokens / b->n_seqs, T = B * q;
    int64_t bps = m->p.max_blocks_per_seq;
    dsa_err err;
    if ((err = dsa_model_scratch_reserve(m, GRAPH_BUCKET_MAX, GRAPH_BUCKET_MAX, GRAPH_BUCKET_MAX)) ||
        (err = graph_inputs_alloc(m)))
        return err;
    dsa_model_note_tokens(m, T);
    memcpy(m->host_tokens, b->tokens, (size_t)(n * q) * sizeof(int32_t));
    memcpy(m->host_pos, b->pos, (size_t)(n * q) * sizeof(int32_t));
    memcpy(m->host_bt, b->block_tables, (size_t)(n * bps) * sizeof(int32_t));
    for (int64_t t = 0; t < T; t++)
        m->host_seq[t] = (int32_t)(t / q);
    for (int64_t t = n * q; t < T; t++) {
        m->host_tokens[t] = 0;
        m->host_pos[t] = (int32_t)(t % q);
    }
    for (int64_t s = n; s < B; s++)
        for (int64_t j = 0; j < bps; j++)
            m->host_bt[s * bps + j] = m->scratch_block;
    if ((err = dsa_model_upload_inputs(m, T, m->host_tokens, m->host_pos, m->host_seq, B,
                                       m->host_bt)))
        return err;

    graph_bucket *g = &m->buckets[q - 1][bucket_index(B)];
    if (g->state == BUCKET_CAPTURED && g->gen != m->graph_gen)
        g->state = BUCKET_WARM; /* buffers may have moved: recapture */
    int ran = 0;
    if (g->state == BUCKET_WARM || g->state == BUCKET_CAPTURED) {
        if (!(err = graph_run(m, g, T, graph_key(B, q)))) {
            ran = 1;
        } else {
            DSA_WARN("decode graph for %lld sequences of %lld tokens failed (%s); running "
                     "them eagerly", (long long)B, (long long)q, dsa_errmsg());
            g->state = BUCKET_EAGER;
            m->stats.n_fallbacks++;
        }
    }
    if (!ran) {
        if ((err = dsa_model_forward_compute(m, T, T, NULL, NULL)))
            return err;
        m->stats.n_eager++;
        if (g->state == BUCKET_NEW)
            g->state = BUCKET_WARM;
    }
    return dsa_model_download_logits(m, b->n_logits, b->logit_rows, logits, b->logits_on_backend);
}
