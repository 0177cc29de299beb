/* model_graph.c - pure decode steps through backend graphs (model.c's
 * header comment describes the buckets and the padding). */
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

/* The bucket of a pure decode batch (sequence t brings token t, nothing
 * else), or 0 when the batch does not go through graphs. */
int64_t dsa_model_decode_bucket(const dsa_model *m, const dsa_batch *b)
{
    if (!m->graphs || b->h_in || b->n_tokens != b->n_seqs || b->n_seqs > GRAPH_BUCKET_MAX)
        return 0;
    for (int64_t t = 0; t < b->n_tokens; t++)
        if (b->seq[t] != t)
            return 0;
    return bucket_round(b->n_seqs);
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

/* Records bucket B's graph unless it has a current one. */
static dsa_err graph_capture(dsa_model *m, graph_bucket *g, int64_t B)
{
    dsa_backend *be = m->be;
    dsa_err err;
    if (g->state == BUCKET_CAPTURED)
        return DSA_OK;
    if ((err = be->ops->graph_begin(be)))
        return err;
    err = dsa_model_forward_compute(m, B, B, NULL, NULL);
    if (err) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s", dsa_errmsg());
        (void)be->ops->graph_end(be, B); /* ends the capture; the graph is unused */
        return dsa_fail(err, "%s", msg);
    }
    if ((err = be->ops->graph_end(be, B)))
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
static dsa_err graph_run(dsa_model *m, graph_bucket *g, int64_t B)
{
    dsa_backend *be = m->be;
    dsa_err err;
    for (int again = 0;; again++) {
        if ((err = graph_capture(m, g, B)))
            return err;
        if (!(err = be->ops->graph_replay(be, B)))
            break;
        if (err != DSA_NOTFOUND || again)
            return err;
        g->state = BUCKET_WARM;
        m->stats.n_dropped++;
    }
    m->stats.n_replayed++;
    return DSA_OK;
}

/* A pure decode batch of n sequences padded to B rows: rows n..B-1 decode
 * token 0 at position 0 of a sequence whose table names only the scratch
 * block, and their logits are not returned. */
dsa_err dsa_model_forward_decode(dsa_model *m, const dsa_batch *b, int64_t B, float *logits)
{
    int64_t n = b->n_seqs, bps = m->p.max_blocks_per_seq;
    dsa_err err;
    if ((err = dsa_model_scratch_reserve(m, GRAPH_BUCKET_MAX, GRAPH_BUCKET_MAX, GRAPH_BUCKET_MAX)) ||
        (err = graph_inputs_alloc(m)))
        return err;
    dsa_model_note_tokens(m, B);
    memcpy(m->host_tokens, b->tokens, (size_t)n * sizeof(int32_t));
    memcpy(m->host_pos, b->pos, (size_t)n * sizeof(int32_t));
    memcpy(m->host_bt, b->block_tables, (size_t)(n * bps) * sizeof(int32_t));
    for (int64_t t = 0; t < B; t++)
        m->host_seq[t] = (int32_t)t;
    for (int64_t t = n; t < B; t++) {
        m->host_tokens[t] = 0;
        m->host_pos[t] = 0;
        for (int64_t j = 0; j < bps; j++)
            m->host_bt[t * bps + j] = m->scratch_block;
    }
    if ((err = dsa_model_upload_inputs(m, B, m->host_tokens, m->host_pos, m->host_seq, B, m->host_bt)))
        return err;

    graph_bucket *g = &m->buckets[bucket_index(B)];
    if (g->state == BUCKET_CAPTURED && g->gen != m->graph_gen)
        g->state = BUCKET_WARM; /* buffers may have moved: recapture */
    int ran = 0;
    if (g->state == BUCKET_WARM || g->state == BUCKET_CAPTURED) {
        if (!(err = graph_run(m, g, B))) {
            ran = 1;
        } else {
            DSA_WARN("decode graph for %lld sequences failed (%s); running them eagerly",
                     (long long)B, dsa_errmsg());
            g->state = BUCKET_EAGER;
            m->stats.n_fallbacks++;
        }
    }
    if (!ran) {
        if ((err = dsa_model_forward_compute(m, B, B, NULL, NULL)))
            return err;
        m->stats.n_eager++;
        if (g->state == BUCKET_NEW)
            g->state = BUCKET_WARM;
    }
    return dsa_model_download_logits(m, b->n_logits, b->logit_rows, logits, b->logits_on_backend);
}

