/* mtp.c - the MTP module's forward pass (see mtp.h): the input projection
 * here, the decoder layer and the head through a one-layer dsa_model. */
#include "worker/mtp.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"

struct dsa_mtp {
    dsa_backend *be;
    const dsa_weights *w;
    dsa_weights view;       /* the decoder layer as the only layer, head = shared_head */
    dsa_comm *comm;         /* borrowed; NULL: one rank */
    dsa_model *layer;
    int64_t cap;            /* rows the buffers hold */
    void *hx;               /* [cap, D] act: gathered h, then the projected x */
    void *e;                /* [cap, D] act: embeddings */
    void *cat;              /* [cap, 2D] act: [enorm(e) ; hnorm(h)] */
    int32_t *ids;           /* [cap] backend token ids */
    int32_t *host;          /* [5 * cap] host: each batch row's row in the pruned pass
                               (-1: cache only), then the tokens, positions and
                               sequences of a pass over part of the rows, and the
                               pruned pass's logit rows */
    int pruned;             /* the latest pass ran its layer on the logit rows only */
};

dsa_err dsa_mtp_create(dsa_backend *be, const dsa_weights *w, const dsa_model_params *p,
                       dsa_mtp **out)
{
    *out = NULL;
    if (!w->has_mtp)
        return dsa_fail(DSA_INVAL, "the weights hold no MTP module");
    dsa_mtp *t = calloc(1, sizeof *t);
    if (!t)
        return dsa_fail(DSA_NOMEM, "MTP module");
    t->be = be;
    t->w = w;
    t->comm = p->comm;
    /* A shallow copy: descriptors point into the same mapping.  has_embed
     * is set so the one-layer model needs no pipeline peer; its batches
     * always bring their input (dsa_batch.h_in). */
    t->view = *w;
    t->view.shard.layer_begin = w->cfg.n_layers;
    t->view.shard.layer_end = w->cfg.n_layers + 1;
    t->view.layers = &t->view.mtp.layer;
    t->view.has_embed = 1;
    t->view.has_head = 1;
    t->view.embed = w->mtp.embed;
    t->view.final_norm = w->mtp.head_norm;
    t->view.lm_head = w->mtp.head;
    dsa_err err = dsa_model_create(be, &t->view, p, &t->layer);
    if (err) {
        dsa_mtp_destroy(t);
        return err;
    }
    *out = t;
    return DSA_OK;
}

static void bufs_free(dsa_mtp *t)
{
    void *b[] = {t->hx, t->e, t->cat, t->ids};
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++)
        if (b[i])
            t->be->ops->free(t->be, b[i]);
    t->hx = t->e = t->cat = NULL;
    t->ids = NULL;
    free(t->host);
    t->host = NULL;
    t->cap = 0;
}

void dsa_mtp_destroy(dsa_mtp *t)
{
    if (!t)
        return;
    bufs_free(t);
    dsa_model_destroy(t->layer);
    free(t);
}

static dsa_err reserve(dsa_mtp *t, int64_t n)
{
    if (n <= t->cap)
        return DSA_OK;
    bufs_free(t);
    dsa_backend *be = t->be;
    size_t a = be->act_size, D = (size_t)t->w->cfg.hidden_size;
    dsa_err err;
    if ((err = be->ops->alloc(be, (size_t)n * D * a, &t->hx)) ||
        (err = be->ops->alloc(be, (size_t)n * D * a, &t->e)) ||
        (err = be->ops->alloc(be, (size_t)n * 2 * D * a, &t->cat)) ||
        (err = be->ops->alloc(be, (size_t)n * sizeof(int32_t), (void **)&t->ids)) ||
        (err = (t->host = malloc((size_t)n * 5 * sizeof(int32_t))) ? DSA_OK
                                                                   : dsa_fail(DSA_NOMEM, "MTP"))) {
        bufs_free(t);
        return err;
    }
    t->cap = n;
    return DSA_OK;
}

static void *row(const dsa_mtp *t, const void *base, int64_t i)
{
    return (char *)base + (size_t)i * (size_t)t->w->cfg.hidden_size * t->be->act_size;
}

static dsa_err norm(dsa_mtp *t, void *out, int64_t ld_out, const void *x, const dsa_weight *w,
                    int64_t n)
{
    int64_t D = t->w->cfg.hidden_size;
    dsa_rmsnorm_params p = {.out = out, .x = x, .weight = w, .n_rows = n, .dim = D, .ld_x = D,
                            .ld_out = ld_out, .eps = (float)t->w->cfg.rms_norm_eps};
    return t->be->ops->rmsnorm(t->be, &p);
}

/* The rows of b whose logits are not wanted only need their cache entries
 * (the one-layer model's output there is read by nobody): stored here from
 * x = t->hx, and t->host[0..n) maps each batch row to its row of the
 * pruned pass (-1: cache only).  DSA_UNSUPPORTED: the layer cannot (then
 * every row takes the full pass). */
static dsa_err cache_only_rows(dsa_mtp *t, const dsa_mtp_batch *b)
{
    dsa_backend *be = t->be;
    int64_t n = b->n_tokens, c = 0, D = t->w->cfg.hidden_size;
    int32_t *hid = t->host, *tok = t->host + n, *pos = tok + n, *seq = pos + n;
    for (int64_t r = 0; r < n; r++)
        hid[r] = -1;
    for (int64_t q = 0; q < b->n_logits; q++)
        hid[b->logit_rows[q]] = (int32_t)q;
    dsa_err err;
    for (int64_t r = 0; r < n; r++) {
        if (hid[r] >= 0)
            continue;
        tok[c] = b->tokens[r];
        pos[c] = b->pos[r];
        seq[c] = b->seq[r];
        if ((err = be->ops->copy(be, row(t, t->e, c), row(t, t->hx, r),
                                 (size_t)D * be->act_size)))
            return err;
        c++;
    }
    dsa_batch kb = {.n_tokens = c, .tokens = tok, .pos = pos, .seq = seq, .n_seqs = b->n_seqs,
                    .block_tables = b->block_tables, .h_in = t->e};
    return dsa_model_forward_kv(t->layer, &kb);
}

dsa_err dsa_mtp_forward(dsa_mtp *t, const dsa_mtp_batch *b, float *logits)
{
    dsa_backend *be = t->be;
    const dsa_weights *w = t->w;
    int64_t n = b->n_tokens, D = w->cfg.hidden_size;
    size_t a = be->act_size;
    dsa_err err;
    if (n < 1)
        return dsa_fail(DSA_INVAL, "empty MTP batch");
    for (int64_t i = 0; i < n; i++)
        if (b->tokens[i] < 0 || b->tokens[i] >= w->cfg.vocab_size)
            return dsa_fail(DSA_RANGE, "MTP token %lld: id %d outside the vocabulary",
                            (long long)i, b->tokens[i]);
    if ((err = reserve(t, n)))
        return err;
    /* hx = h[h_rows] (the source may be the layer model's own output,
     * which its next forward overwrites: gathered first) */
    for (int64_t i = 0; i < n; i++)
        if ((err = be->ops->copy(be, row(t, t->hx, i), row(t, b->h, b->h_rows[i]),
                                 (size_t)D * a)))
            return err;
    /* h_i = RMSNorm_final(h) for the main model's rows: its output state */
    if (b->h_is_main && (err = norm(t, t->hx, D, t->hx, &w->final_norm, n)))
        return err;
    /* e = sum_r embed_r(t_{i+1}) (vocab-parallel rows: all-reduce over TP) */
    dsa_embed_params ep = {.out = t->e, .table = &w->mtp.embed, .ids = t->ids, .n_tokens = n,
                           .row_begin = w->vocab_begin};
    if ((err = be->ops->upload(be, t->ids, b->tokens, (size_t)n * sizeof(int32_t))) ||
        (err = be->ops->embed(be, &ep)))
        return err;
    if (dsa_comm_tp(t->comm) &&
        (err = t->comm->ops->all_reduce_sum(t->comm, t->e, n * D, be->act_dtype)))
        return err;
    /* cat = [enorm(e) ; hnorm(h)] */
    if ((err = norm(t, t->cat, 2 * D, t->e, &w->mtp.enorm, n)) ||
        (err = norm(t, (char *)t->cat + (size_t)D * a, 2 * D, t->hx, &w->mtp.hnorm, n)))
        return err;
    /* x = W_eh cat (replicated on every TP rank) */
    dsa_linear_params lp = {.out = t->hx, .x = t->cat, .w = &w->mtp.eh_proj, .m = n,
                            .ld_x = 2 * D, .ld_out = D};
    if ((err = be->ops->linear(be, &lp)))
        return err;
    t->pruned = 0;
    if (b->n_logits < n && (err = cache_only_rows(t, b)) != DSA_UNSUPPORTED) {
        if (err)
            return err;
        if (b->n_logits == 0)
            return DSA_OK;
        /* the full layer and the head on the logit rows alone, after the
         * entries they attend to are stored */
        int32_t *tok = t->host + n, *pos = tok + n, *seq = pos + n;
        for (int64_t q = 0; q < b->n_logits; q++) {
            int32_t r = b->logit_rows[q];
            tok[q] = b->tokens[r];
            pos[q] = b->pos[r];
            seq[q] = b->seq[r];
            t->host[q + 4 * n] = (int32_t)q;
            if ((err = be->ops->copy(be, row(t, t->e, q), row(t, t->hx, r), (size_t)D * a)))
                return err;
        }
        t->pruned = 1;
        dsa_batch pb = {.n_tokens = b->n_logits, .tokens = tok, .pos = pos, .seq = seq,
                        .n_seqs = b->n_seqs, .block_tables = b->block_tables,
                        .n_logits = b->n_logits, .logit_rows = t->host + 4 * n, .h_in = t->e,
                        .logits_on_backend = b->logits_on_backend};
        return dsa_model_forward(t->layer, &pb, logits);
    }
    /* the decoder layer at positions i, then head(head_norm(x)) */
    dsa_batch lb = {.n_tokens = n, .tokens = b->tokens, .pos = b->pos, .seq = b->seq,
                    .n_seqs = b->n_seqs, .block_tables = b->block_tables,
                    .n_logits = b->n_logits, .logit_rows = b->logit_rows, .h_in = t->hx,
                    .logits_on_backend = b->logits_on_backend};
    return dsa_model_forward(t->layer, &lb, logits);
}

const void *dsa_mtp_hidden(const dsa_mtp *t)
{
    return dsa_model_hidden(t->layer);
}

int32_t dsa_mtp_hidden_row(const dsa_mtp *t, int32_t r)
{
    return t->pruned ? t->host[r] : r;
}
