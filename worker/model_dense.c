/* model_dense.c - GQA attention of Qwen2 / Llama layers over the backend
 * (transformers' Qwen2Attention / LlamaAttention, eager path):
 *   q = W_q x (+ b_q)   [T, Hl, hd]      k = W_k x (+ b_k), v = W_v x (+ b_v)  [T, KVl, hd]
 *   q, k = RoPE_rotate_half(q, k) at each token's position
 *   cache[slot] = [k | v]
 *   a_h = sum_{j<=p} softmax_j(q_h . k_j,g(h) / sqrt(hd)) v_j,g(h),  g(h) = h / (Hl / KVl)
 *   y = W_o concat_h(a_h)   (row-parallel: model.c all-reduces over TP) */
#include "worker/model_dense.h"

#include <stdlib.h>

struct dsa_dense {
    dsa_backend *be;
    const dsa_weights *w;
    int n_layers;
    dsa_kv_layer *kv;       /* [n_layers], width 2 * KVl * hd */
    int64_t cap;            /* tokens the buffers hold */
    void *q;                /* [cap, Hl * hd] */
    void *kvbuf;            /* [cap, 2 * KVl * hd]: k then v of each token */
    void *attn;             /* [cap, Hl * hd] */
};

int64_t dsa_dense_block_bytes(const dsa_config *cfg, int n_layers, int64_t block_size,
                              size_t act_size)
{
    return (int64_t)n_layers * block_size * 2 * cfg->n_kv_heads * cfg->head_dim *
           (int64_t)act_size;
}

static void buffers_free(dsa_dense *d)
{
    void *bufs[] = {d->q, d->kvbuf, d->attn};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i])
            d->be->ops->free(d->be, bufs[i]);
    d->q = d->kvbuf = d->attn = NULL;
    d->cap = 0;
}

dsa_err dsa_dense_reserve(dsa_dense *d, int64_t T)
{
    if (T <= d->cap)
        return DSA_OK;
    buffers_free(d);
    dsa_backend *be = d->be;
    int64_t hd = d->w->cfg.head_dim, Hl = d->w->n_heads_local, KVl = d->w->n_kv_heads_local;
    size_t a = be->act_size;
    dsa_err err;
    if ((err = be->ops->alloc(be, (size_t)(T * Hl * hd) * a, &d->q)) ||
        (err = be->ops->alloc(be, (size_t)(T * 2 * KVl * hd) * a, &d->kvbuf)) ||
        (err = be->ops->alloc(be, (size_t)(T * Hl * hd) * a, &d->attn))) {
        buffers_free(d);
        return err;
    }
    d->cap = T;
    return DSA_OK;
}

dsa_err dsa_dense_create(dsa_backend *be, const dsa_weights *w, int64_t n_blocks,
                         int64_t block_size, dsa_dense **out)
{
    *out = NULL;
    if (!be->ops->gqa_attn || !be->ops->bias_add)
        return dsa_fail(DSA_UNSUPPORTED, "backend %s has no GQA attention (needed by %s)",
                        be->ops->name, w->cfg.model_type);
    dsa_dense *d = calloc(1, sizeof *d);
    if (!d)
        return dsa_fail(DSA_NOMEM, "dense model");
    d->be = be;
    d->w = w;
    d->n_layers = w->shard.layer_end - w->shard.layer_begin;
    dsa_err err;
    d->kv = calloc((size_t)d->n_layers, sizeof *d->kv);
    if (!d->kv) {
        err = dsa_fail(DSA_NOMEM, "KV cache table");
        goto fail;
    }
    int64_t width = 2 * w->n_kv_heads_local * w->cfg.head_dim;
    for (int l = 0; l < d->n_layers; l++) {
        dsa_kv_layer *kv = &d->kv[l];
        kv->n_blocks = n_blocks;
        kv->block_size = block_size;
        kv->width = width;
        if ((err = be->ops->alloc(be, (size_t)(n_blocks * block_size * width) * be->act_size,
                                  &kv->data)))
            goto fail;
    }
    *out = d;
    return DSA_OK;
fail:
    dsa_dense_destroy(d);
    return err;
}

void dsa_dense_destroy(dsa_dense *d)
{
    if (!d)
        return;
    if (d->kv) {
        for (int l = 0; l < d->n_layers; l++)
            if (d->kv[l].data)
                d->be->ops->free(d->be, d->kv[l].data);
        free(d->kv);
    }
    buffers_free(d);
    free(d);
}

static void *at(const dsa_dense *d, void *base, int64_t i)
{
    return (char *)base + (size_t)i * d->be->act_size;
}

static dsa_err linear(dsa_dense *d, void *out, int64_t ld_out, const void *x, int64_t ld_x,
                      const dsa_weight *w, int64_t T)
{
    dsa_linear_params p = {.out = out, .x = x, .w = w, .m = T, .ld_x = ld_x, .ld_out = ld_out};
    return d->be->ops->linear(d->be, &p);
}

static dsa_err bias(dsa_dense *d, void *x, int64_t ld, const dsa_weight *b, int64_t T)
{
    if (!b->data)
        return DSA_OK;
    dsa_bias_add_params p = {.x = x, .bias = b, .n_rows = T, .dim = b->cols, .ld = ld};
    return d->be->ops->bias_add(d->be, &p);
}

dsa_err dsa_dense_attention(dsa_dense *d, const dsa_dense_step *st)
{
    const dsa_layer_weights *lw = &d->w->layers[st->layer];
    dsa_backend *be = d->be;
    int64_t T = st->n_tokens, D = d->w->cfg.hidden_size, hd = d->w->cfg.head_dim;
    int64_t Hl = d->w->n_heads_local, KVl = d->w->n_kv_heads_local;
    int64_t qw = Hl * hd, kw = KVl * hd, kvw = 2 * kw;
    void *k = d->kvbuf, *v = at(d, d->kvbuf, kw);
    dsa_err err;
    /* q, k, v projections (+ Qwen2's biases) */
    if ((err = linear(d, d->q, qw, st->xn, D, &lw->q_proj, T)) ||
        (err = linear(d, k, kvw, st->xn, D, &lw->k_proj, T)) ||
        (err = linear(d, v, kvw, st->xn, D, &lw->v_proj, T)) ||
        (err = bias(d, d->q, qw, &lw->q_bias, T)) || (err = bias(d, k, kvw, &lw->k_bias, T)) ||
        (err = bias(d, v, kvw, &lw->v_bias, T)))
        return err;
    /* rotate_half RoPE on every q and k head */
    dsa_rope_params rq = {.x = d->q, .positions = st->pos, .inv_freq = st->inv_freq,
                          .n_tokens = T, .n_heads = Hl, .rot_dim = hd, .ld_token = qw,
                          .ld_head = hd, .neox = 1};
    dsa_rope_params rk = {.x = k, .positions = st->pos, .inv_freq = st->inv_freq,
                          .n_tokens = T, .n_heads = KVl, .rot_dim = hd, .ld_token = kvw,
                          .ld_head = hd, .neox = 1};
    if ((err = be->ops->rope(be, &rq)) || (err = be->ops->rope(be, &rk)))
        return err;
    /* cache[slot] = [k | v] */
    dsa_kv_store_params ks = {.cache = &d->kv[st->layer], .c_kv = k, .k_pe = v,
                              .slots = st->slots, .n_tokens = T, .kv_rank = kw, .rope_dim = kw,
                              .ld_c = kvw, .ld_k = kvw};
    if ((err = be->ops->kv_store(be, &ks)))
        return err;
    dsa_gqa_attn_params ap = {.out = d->attn, .q = d->q, .ld_q = qw, .cache = &d->kv[st->layer],
                              .seq = st->seq, .pos = st->pos, .block_tables = st->block_tables,
                              .ld_block_table = st->ld_block_table, .n_tokens = T,
                              .n_heads = Hl, .n_kv_heads = KVl, .head_dim = hd,
                              .scale = st->scale};
    if ((err = be->ops->gqa_attn(be, &ap)))
        return err;
    return linear(d, st->y, D, d->attn, qw, &lw->o, T);
}
