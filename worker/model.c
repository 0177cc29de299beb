/* model.c - the forward pass of MODEL_SPEC.md §3-6 over the backend
 * interface.  Each step below is one backend op; the comments give the
 * formula it computes.  Activations and the cache live in backend memory.
 *
 * A step runs in three phases: inputs (host checks, then every per-step
 * input uploaded into fixed scratch buffers), compute (backend ops only,
 * nothing host-side), and logits (to host).  On a backend with graphs
 * (dsa_backend_has_graphs), on a single rank or with a communicator whose
 * collectives only queue work (graph_safe), decode steps (one token per
 * sequence, or q tokens per sequence verifying q - 1 drafts each with every
 * row's logits; at most GRAPH_BUCKET_MAX tokens) are padded up to a
 * bucket of sequences (every size to 8, multiples of 8 to 64, of 32 to 256) and their
 * compute phase is captured once per bucket and replayed afterwards: the first step of a bucket runs eagerly (it
 * warms the backend's scratch), the second captures, the rest replay.
 * Padded rows decode token 0 at position 0 into a KV block reserved for
 * them (one block past n_blocks) and their logits are dropped.  A graph op
 * that fails sends its bucket back to eager execution for good (logged
 * once); it never fails the step. */
#include "worker/model.h"
#include "worker/model_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

int64_t dsa_model_block_bytes(const dsa_config *cfg, int n_layers, int64_t block_size,
                              size_t act_size)
{
    if (dsa_config_is_dense(cfg))
        return dsa_dense_block_bytes(cfg, n_layers, block_size, act_size);
    return (int64_t)n_layers * block_size * (cfg->kv_lora_rank + cfg->qk_rope_head_dim) *
           (int64_t)act_size;
}

static void scratch_free(dsa_backend *be, scratch *s)
{
    void *bufs[] = {s->h, s->xn, s->y, s->qa, s->q, s->qkva, s->ckv, s->q_lat, s->obar, s->o,
                    s->g, s->xq, s->xs, s->rlogits, s->ids, s->rw, s->tokens, s->pos, s->seq,
                    s->slots, s->block_tables, s->hl, s->logits, s->logits_all,
                    s->logits_full};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i])
            be->ops->free(be, bufs[i]);
    memset(s, 0, sizeof *s);
}

static dsa_err alloc_into(dsa_backend *be, void **p, int64_t n, size_t esize)
{
    return be->ops->alloc(be, (size_t)(n > 0 ? n : 1) * esize, p);
}

/* Makes the scratch hold T tokens, n_seqs sequences and L logit rows. */
dsa_err dsa_model_scratch_reserve(dsa_model *m, int64_t T, int64_t n_seqs, int64_t L)
{
    scratch *s = &m->s;
    if (T <= s->n_tokens_cap && n_seqs <= s->n_seqs_cap && L <= s->n_logits_cap)
        return DSA_OK;
    if (T < s->n_tokens_cap)
        T = s->n_tokens_cap;
    if (n_seqs < s->n_seqs_cap)
        n_seqs = s->n_seqs_cap;
    if (L < s->n_logits_cap)
        L = s->n_logits_cap;
    scratch_free(m->be, s);
    free(m->host_slots);
    m->host_slots = NULL;
    m->graph_gen++;

    const dsa_config *c = &m->w->cfg;
    dsa_backend *be = m->be;
    size_t a = be->act_size;
    int64_t D = c->hidden_size, Hl = m->w->n_heads_local;
    int64_t qk = c->qk_nope_head_dim + c->qk_rope_head_dim;
    int64_t kvr = c->kv_lora_rank;
    int64_t E = c->n_routed_experts > 0 ? c->n_routed_experts : 1;
    int64_t k = c->n_experts_per_tok > 0 ? c->n_experts_per_tok : 1;
    int64_t ql = c->q_lora_rank > 0 ? c->q_lora_rank : 1;
    dsa_err err;
    if ((err = alloc_into(be, &s->h, T * D, a)) || (err = alloc_into(be, &s->xn, T * D, a)) ||
        (err = alloc_into(be, &s->y, T * D, a)) || (err = alloc_into(be, &s->qa, T * ql, a)) ||
        (err = alloc_into(be, &s->q, T * Hl * qk, a)) ||
        (err = alloc_into(be, &s->qkva, T * m->qkv_ld, a)) ||
        (err = alloc_into(be, &s->ckv, T * kvr, a)) ||
        (err = alloc_into(be, &s->q_lat, T * Hl * kvr, a)) ||
        (err = alloc_into(be, &s->obar, T * Hl * kvr, a)) ||
        (err = alloc_into(be, &s->o, T * Hl * c->v_head_dim, a)) ||
        (err = alloc_into(be, &s->g, T * m->gu_ld, a)) ||
        (err = alloc_into(be, (void **)&s->rlogits, T * E, sizeof(float))) ||
        (err = alloc_into(be, (void **)&s->ids, T * k, sizeof(int32_t))) ||
        (err = alloc_into(be, (void **)&s->rw, T * k, sizeof(float))) ||
        (err = alloc_into(be, (void **)&s->tokens, T, sizeof(int32_t))) ||
        (err = alloc_into(be, (void **)&s->pos, T, sizeof(int32_t))) ||
        (err = alloc_into(be, (void **)&s->seq, T, sizeof(int32_t))) ||
        (err = alloc_into(be, (void **)&s->slots, T, sizeof(int32_t))) ||
        (err = alloc_into(be, (void **)&s->block_tables, n_seqs * m->p.max_blocks_per_seq,
                          sizeof(int32_t))) ||
        (err = alloc_into(be, &s->hl, L * D, a)) ||
        (err = alloc_into(be, (void **)&s->logits, L * m->logit_ld, sizeof(float))))
        goto fail;
    int64_t kq = D > ql ? D : ql;
    if (be->norm_quant &&
        ((err = alloc_into(be, (void **)&s->xq, T * kq, 1)) ||
         (err = alloc_into(be, (void **)&s->xs, T * ((kq + 127) / 128), sizeof(float)))))
        goto fail;
    if (dsa_comm_tp(m->comm) && m->w->has_head &&
        ((err = alloc_into(be, (void **)&s->logits_all, m->comm->tp_size * L * m->logit_ld,
                           sizeof(float))) ||
         (err = alloc_into(be, (void **)&s->logits_full, L * c->vocab_size, sizeof(float)))))
        goto fail;
    if (m->dense && (err = dsa_dense_reserve(m->dense, T)))
        goto fail;
    m->host_slots = malloc((size_t)T * sizeof(int32_t));
    if (!m->host_slots) {
        err = dsa_fail(DSA_NOMEM, "model scratch for %lld tokens", (long long)T);
        goto fail;
    }
    s->n_tokens_cap = T;
    s->n_seqs_cap = n_seqs;
    s->n_logits_cap = L;
    return DSA_OK;
fail:
    scratch_free(be, s);
    return err;
}

dsa_err dsa_model_create(dsa_backend *be, const dsa_weights *w, const dsa_model_params *p,
                         dsa_model **out)
{
    *out = NULL;
    if (p->n_blocks < 1 || p->block_size < 1 || p->max_blocks_per_seq < 1)
        return dsa_fail(DSA_INVAL, "KV cache needs at least one block of at least one token");
    dsa_model *m = calloc(1, sizeof *m);
    if (!m)
        return dsa_fail(DSA_NOMEM, "model");
    const dsa_config *c = &w->cfg;
    m->be = be;
    m->w = w;
    m->p = *p;
    m->n_layers = w->shard.layer_end - w->shard.layer_begin;
    m->scale = (float)dsa_config_softmax_scale(c);
    m->ffn_width = w->inter_local;
    m->comm = p->comm;
    m->logit_ld = w->vocab_rows;
    dsa_err err;
    if (dsa_comm_tp(p->comm)) {
        if (p->comm->tp_size != w->shard.tp_size || p->comm->tp_rank != w->shard.tp_rank) {
            err = dsa_fail(DSA_INVAL, "communicator is tp %d/%d, weights are tp %d/%d",
                           p->comm->tp_rank, p->comm->tp_size, w->shard.tp_rank,
                           w->shard.tp_size);
            goto fail;
        }
        /* lm_head slices padded to ceil(V / tp) columns for the all-gather */
        m->logit_ld = (c->vocab_size + w->shard.tp_size - 1) / w->shard.tp_size;
    }
    if ((!w->has_embed || !w->has_head) && !p->comm) {
        err = dsa_fail(DSA_INVAL, "a pipeline stage without the embedding or the head needs "
                       "a communicator");
        goto fail;
    }
    for (int l = 0; l < m->n_layers; l++) {
        const dsa_layer_weights *lw = &w->layers[l];
        if (lw->is_moe && w->moe_inter_local > m->ffn_width)
            m->ffn_width = w->moe_inter_local;
        if (lw->is_moe && lw->shared_inter > m->ffn_width)
            m->ffn_width = lw->shared_inter;
        int64_t qkv = c->q_lora_rank > 0 ? lw->qkv_a.width : c->kv_lora_rank + c->qk_rope_head_dim;
        int64_t gu = lw->is_moe ? lw->shared_gate_up.width : lw->gate_up.width;
        m->qkv_ld = qkv > m->qkv_ld ? qkv : m->qkv_ld;
        m->gu_ld = gu > m->gu_ld ? gu : m->gu_ld;
    }
    int64_t half = dsa_config_rope_dim(c) / 2;
    float *freqs = malloc((size_t)(half > 0 ? half : 1) * sizeof *freqs);
    if (!freqs) {
        err = dsa_fail(DSA_NOMEM, "rope table");
        goto fail;
    }
    dsa_config_rope_freqs(c, freqs);
    err = be->ops->alloc(be, (size_t)(half > 0 ? half : 1) * sizeof(float), (void **)&m->inv_freq);
    if (!err)
        err = be->ops->upload(be, m->inv_freq, freqs, (size_t)half * sizeof(float));
    free(freqs);
    if (err)
        goto fail;

    m->kv = calloc((size_t)m->n_layers, sizeof *m->kv);
    if (!m->kv) {
        err = dsa_fail(DSA_NOMEM, "KV cache table");
        goto fail;
    }
    /* Decode graphs need a communicator whose ops only queue work on the
     * backend's stream (graph_safe: NCCL; MPI's are host calls), and one
     * more block, past the caller's, for padded rows. */
    m->graphs = dsa_backend_has_graphs(be) && (!p->comm || p->comm->graph_safe);
    m->scratch_block = (int32_t)p->n_blocks;
    int64_t n_blocks = p->n_blocks + (m->graphs ? 1 : 0);
    int64_t width = c->kv_lora_rank + c->qk_rope_head_dim;
    if (dsa_config_is_dense(c) &&
        (err = dsa_dense_create(be, w, n_blocks, p->block_size, &m->dense)))
        goto fail;
    for (int l = 0; l < m->n_layers && !m->dense; l++) {
        dsa_kv_layer *kv = &m->kv[l];
        kv->n_blocks = n_blocks;
        kv->block_size = p->block_size;
        kv->width = width;
        if ((err = be->ops->alloc(be, (size_t)(n_blocks * p->block_size * width) * be->act_size,
                                  &kv->data)))
            goto fail;
    }
    *out = m;
    return DSA_OK;
fail:
    dsa_model_destroy(m);
    return err;
}

void dsa_model_destroy(dsa_model *m)
{
    if (!m)
        return;
    dsa_backend *be = m->be;
    if (m->kv) {
        for (int l = 0; l < m->n_layers; l++)
            if (m->kv[l].data)
                be->ops->free(be, m->kv[l].data);
        free(m->kv);
    }
    if (m->inv_freq)
        be->ops->free(be, m->inv_freq);
    scratch_free(be, &m->s);
    dsa_model_mha_free(m);
    dsa_dense_destroy(m->dense);
    free(m->host_slots);
    free(m->host_tokens);
    free(m->host_pos);
    free(m->host_seq);
    free(m->host_bt);
    free(m);
}

/* Pointer to element i of an activation buffer. */
static void *act_at(const dsa_model *m, void *base, int64_t i)
{
    return (char *)base + (size_t)i * m->be->act_size;
}

/* buf = sum over the stage's TP ranks of buf (no-op on one rank). */
static dsa_err tp_all_reduce(dsa_model *m, void *buf, int64_t n)
{
    if (!dsa_comm_tp(m->comm))
        return DSA_OK;
    return m->comm->ops->all_reduce_sum(m->comm, buf, n, m->be->act_dtype);
}

/* y = W x for the T rows of x (row stride ld_x), into out (stride ld_out);
 * with quant, x is the output of the norm just before, which left its FP8
 * form in s->xq / s->xs for the linear to take (be->norm_quant). */
static dsa_err linear_x(dsa_model *m, void *out, int64_t ld_out, const void *x, int64_t ld_x,
                        const dsa_weight *w, int64_t T, int accumulate, int quant)
{
    dsa_linear_params p = {.out = out, .x = x, .w = w, .m = T, .ld_x = ld_x, .ld_out = ld_out,
                           .accumulate = accumulate};
    if (quant && m->s.xq) {
        p.x_q = m->s.xq;
        p.x_scale = m->s.xs;
    }
    return m->be->ops->linear(m->be, &p);
}

static dsa_err linear(dsa_model *m, void *out, int64_t ld_out, const void *x, int64_t ld_x,
                      const dsa_weight *w, int64_t T, int accumulate)
{
    return linear_x(m, out, ld_out, x, ld_x, w, T, accumulate, 0);
}

/* [a x | b x] = pair x into out's pair layout (a at column 0, b at
 * p->off_b; row stride p->width): one linear when the pair is fused, else
 * the two parts into the same columns. */
static dsa_err linear_pair(dsa_model *m, void *out, const void *x, int64_t ld_x,
                           const dsa_weights_pair *p, const dsa_weight *a, const dsa_weight *b,
                           int64_t T, int quant)
{
    dsa_err err;
    if (p->w.data)
        return linear_x(m, out, p->width, x, ld_x, &p->w, T, 0, quant);
    if ((err = linear_x(m, out, p->width, x, ld_x, a, T, 0, quant)) ||
        (err = linear_x(m, act_at(m, out, p->off_b), p->width, x, ld_x, b, T, 0, quant)))
        return err;
    return DSA_OK;
}

/* The same into F32 logits (router, lm_head: MODEL_SPEC.md keeps them F32). */
static dsa_err linear_logits(dsa_model *m, float *out, int64_t ld_out, const void *x,
                             const dsa_weight *w, int64_t T)
{
    int64_t D = m->w->cfg.hidden_size;
    dsa_linear_params p = {.out = out, .x = x, .w = w, .m = T, .ld_x = D, .ld_out = ld_out,
                           .out_f32 = 1};
    return m->be->ops->linear(m->be, &p);
}

/* out = RMSNorm(x) (with residual: residual += x first).  With quant the
 * norm also leaves out's FP8 form in s->xq / s->xs for the FP8 linear that
 * reads out next (out contiguous: ld_out == dim; be->norm_quant only). */
static dsa_err rmsnorm_q(dsa_model *m, void *out, int64_t ld_out, const void *x, int64_t ld_x,
                         void *residual, const dsa_weight *w, int64_t T, int64_t dim,
                         double eps, int quant)
{
    dsa_rmsnorm_params p = {.out = out, .x = x, .residual = residual, .weight = w,
                            .n_rows = T, .dim = dim, .ld_x = ld_x, .ld_out = ld_out,
                            .eps = (float)eps};
    if (quant && m->s.xq && ld_out == dim) {
        p.out_q = m->s.xq;
        p.out_scale = m->s.xs;
    }
    return m->be->ops->rmsnorm(m->be, &p);
}

static dsa_err rmsnorm_eps(dsa_model *m, void *out, int64_t ld_out, const void *x,
                           int64_t ld_x, void *residual, const dsa_weight *w, int64_t T,
                           int64_t dim, double eps)
{
    return rmsnorm_q(m, out, ld_out, x, ld_x, residual, w, T, dim, eps, 0);
}

/* The block norms use config.rms_norm_eps. */
static dsa_err rmsnorm(dsa_model *m, void *out, int64_t ld_out, const void *x, int64_t ld_x,
                       void *residual, const dsa_weight *w, int64_t T, int64_t dim)
{
    return rmsnorm_eps(m, out, ld_out, x, ld_x, residual, w, T, dim, m->w->cfg.rms_norm_eps);
}

/* q_a_layernorm and kv_a_layernorm use 1e-6 whatever the config says, as in
 * DeepSeek's inference/model.py (RMSNorm's default) and transformers. */
#define LATENT_NORM_EPS 1e-6

/* MLA (MODEL_SPEC.md §3) of layer l on xn; result in s->y. */
static dsa_err attention(dsa_model *m, int l, int64_t T)
{
    const dsa_config *c = &m->w->cfg;
    const dsa_layer_weights *lw = &m->w->layers[l];
    dsa_backend *be = m->be;
    scratch *s = &m->s;
    int64_t D = c->hidden_size, Hl = m->w->n_heads_local;
    int64_t nope = c->qk_nope_head_dim, rope = c->qk_rope_head_dim, vd = c->v_head_dim;
    int64_t qk = nope + rope, kvr = c->kv_lora_rank, ql = c->q_lora_rank;
    dsa_err err;
    if (m->dense) {
        dsa_dense_step ds = {.y = s->y, .xn = s->xn, .pos = s->pos, .seq = s->seq,
                             .slots = s->slots, .block_tables = s->block_tables,
                             .ld_block_table = m->p.max_blocks_per_seq,
                             .inv_freq = m->inv_freq, .scale = m->scale, .n_tokens = T,
                             .layer = l};
        return dsa_dense_attention(m->dense, &ds);
    }

    /* [q_a x | kv_a x] in one GEMM (the layer's qkv_a pair); a = the kv_a
     * part at column kvo: [T, kv_rank | rope] (row stride qld) */
    int64_t qld = ql > 0 ? lw->qkv_a.width : kvr + rope, kvo = ql > 0 ? lw->qkv_a.off_b : 0;
    void *kva = act_at(m, s->qkva, kvo);
    if (ql > 0) {
        /* q = W_qb RMSNorm_q(W_qa x): [T, Hl, nope|rope] */
        if ((err = linear_pair(m, s->qkva, s->xn, D, &lw->qkv_a, &lw->q_a, &lw->kv_a, T, 1)) ||
            (err = rmsnorm_q(m, s->qa, ql, s->qkva, qld, NULL, &lw->q_a_norm, T, ql,
                             LATENT_NORM_EPS, 1)) ||
            (err = linear_x(m, s->q, Hl * qk, s->qa, ql, &lw->q_b, T, 0, 1)))
            return err;
    } else if ((err = linear_x(m, s->q, Hl * qk, s->xn, D, &lw->q_proj, T, 0, 1)) ||
               (err = linear_x(m, kva, qld, s->xn, D, &lw->kv_a, T, 0, 1))) {
        /* q = W_q x without q compression; a = W_kva x */
        return err;
    }
    /* c_kv = RMSNorm_kv(a[:kv_rank]) */
    if ((err = rmsnorm_eps(m, s->ckv, kvr, kva, qld, NULL, &lw->kv_a_norm, T, kvr,
                           LATENT_NORM_EPS)))
        return err;
    /* q_pe = RoPE(q[:, :, nope:]), k_pe = RoPE(a[kv_rank:]) at each token's position */
    dsa_rope_params rq = {.x = act_at(m, s->q, nope), .positions = s->pos,
                          .inv_freq = m->inv_freq, .n_tokens = T, .n_heads = Hl,
                          .rot_dim = rope, .ld_token = Hl * qk, .ld_head = qk};
    dsa_rope_params rk = {.x = act_at(m, s->qkva, kvo + kvr), .positions = s->pos,
                          .inv_freq = m->inv_freq, .n_tokens = T, .n_heads = 1,
                          .rot_dim = rope, .ld_token = qld, .ld_head = rope};
    if ((err = be->ops->rope(be, &rq)) || (err = be->ops->rope(be, &rk)))
        return err;
    /* cache[slot] = [c_kv | k_pe] */
    dsa_kv_store_params st = {.cache = &m->kv[l], .c_kv = s->ckv,
                              .k_pe = act_at(m, s->qkva, kvo + kvr), .slots = s->slots,
                              .n_tokens = T, .kv_rank = kvr, .rope_dim = rope, .ld_c = kvr,
                              .ld_k = qld};
    if ((err = be->ops->kv_store(be, &st)))
        return err;
    /* A step of long prompt chunks: o_h by the non-absorbed form over each
     * chunk's context (model_mha.c); y = W_o concat_h(o_h) */
    if (m->mha.on) {
        err = dsa_model_mha_attention(m, l, s->o);
        if (!err)
            return linear(m, s->y, D, s->o, Hl * vd, &lw->o, T, 0);
        if (err != DSA_UNSUPPORTED)
            return err;
    }
    /* q~_h = W_UK,h^T q_nope,h (absorbed form) */
    dsa_mla_absorb_params aq = {.out = s->q_lat, .in = s->q, .ld_in_token = Hl * qk,
                                .ld_in_head = qk, .w_kvb = &lw->kv_b, .n_tokens = T,
                                .n_heads = Hl, .nope_dim = nope, .v_dim = vd, .kv_rank = kvr};
    if ((err = be->ops->mla_absorb_q(be, &aq)))
        return err;
    /* obar_h = sum_j softmax_j(tau (q~_h . c_kv(j) + q_pe,h . k_pe(j))) c_kv(j) */
    dsa_mla_attn_params at = {.out = s->obar, .q_lat = s->q_lat, .q_pe = act_at(m, s->q, nope),
                              .ld_qpe_token = Hl * qk, .ld_qpe_head = qk, .cache = &m->kv[l],
                              .seq = s->seq, .pos = s->pos, .block_tables = s->block_tables,
                              .ld_block_table = m->p.max_blocks_per_seq, .n_tokens = T,
                              .n_heads = Hl, .kv_rank = kvr, .rope_dim = rope,
                              .scale = m->scale};
    if ((err = be->ops->mla_attn(be, &at)))
        return err;
    /* o_h = W_UV,h obar_h; y = W_o concat_h(o_h) (all-reduce across TP ranks) */
    dsa_mla_absorb_params ao = {.out = s->o, .in = s->obar, .ld_in_token = Hl * kvr,
                                .ld_in_head = kvr, .w_kvb = &lw->kv_b, .n_tokens = T,
                                .n_heads = Hl, .nope_dim = nope, .v_dim = vd, .kv_rank = kvr};
    if ((err = be->ops->mla_absorb_o(be, &ao)) ||
        (err = linear(m, s->y, D, s->o, Hl * vd, &lw->o, T, 0)))
        return err;
    return DSA_OK;
}

/* y = down(silu(gate x) * up x) for one expert-shaped MLP of `width`
 * intermediate values, gate and up as the pair gu; accumulate adds.  The
 * weights are the model's own: an op's params may be kept for a graph
 * replay, so nothing they point at may live on the stack. */
static dsa_err mlp(dsa_model *m, const dsa_weights_pair *gu, const dsa_weight *gate,
                   const dsa_weight *up, const dsa_weight *down, int64_t width, int64_t T,
                   int accumulate)
{
    scratch *s = &m->s;
    int64_t D = m->w->cfg.hidden_size;
    /* [gate x | up x] in one GEMM; g = silu(gate x) * up x in the gate columns */
    dsa_silu_mul_params sm = {.out = s->g, .gate = s->g, .up = act_at(m, s->g, gu->off_b),
                              .n_rows = T, .dim = width, .ld = gu->width};
    dsa_err err;
    if ((err = linear_pair(m, s->g, s->xn, D, gu, gate, up, T, 1)) ||
        (err = m->be->ops->silu_mul(m->be, &sm)) ||
        (err = linear(m, s->y, D, s->g, gu->width, down, T, accumulate)))
        return err;
    return DSA_OK;
}

/* FFN of layer l on xn (MODEL_SPEC.md §5): dense MLP, or routed experts
 * plus the shared expert; result in s->y. */
static dsa_err ffn(dsa_model *m, int l, int64_t T)
{
    const dsa_config *c = &m->w->cfg;
    const dsa_layer_weights *lw = &m->w->layers[l];
    scratch *s = &m->s;
    if (!lw->is_moe)
        return mlp(m, &lw->gate_up, &lw->gate, &lw->up, &lw->down, m->w->inter_local, T, 0);
    int64_t D = c->hidden_size, E = c->n_routed_experts;
    dsa_err err;
    /* router: sigma = sigmoid(W_g x); grouped top-k on sigma + bias; weights */
    if ((err = linear_logits(m, s->rlogits, E, s->xn, &lw->router, T)))
        return err;
    dsa_router_params rp = {.ids = s->ids, .weights = s->rw, .logits = s->rlogits,
                            .bias = lw->router_bias, .n_tokens = T, .n_experts = E,
                            .top_k = c->n_experts_per_tok, .n_group = c->n_group,
                            .topk_group = c->topk_group,
                            .sigmoid = c->scoring_func == DSA_SCORE_SIGMOID,
                            .grouped = c->topk_method != DSA_TOPK_GREEDY,
                            .norm_topk_prob = c->norm_topk_prob,
                            .routed_scaling_factor = (float)c->routed_scaling_factor,
                            .logits_f32 = 1};
    if ((err = m->be->ops->router(m->be, &rp)))
        return err;
    /* y = sum_k w_k E_k(x) */
    dsa_moe_params mp = {.out = s->y, .x = s->xn, .ids = s->ids, .weights = s->rw,
                         .experts = lw->experts, .n_tokens = T, .dim = D,
                         .inter = m->w->moe_inter_local, .n_experts = E,
                         .top_k = c->n_experts_per_tok, .accumulate = 0};
    if ((err = m->be->ops->moe(m->be, &mp)))
        return err;
    /* y += shared experts(x) (all-reduce across TP ranks) */
    if (lw->shared_inter > 0)
        return mlp(m, &lw->shared_gate_up, &lw->shared.gate, &lw->shared.up, &lw->shared.down,
                   lw->shared_inter, T, 1);
    return DSA_OK;
}

static dsa_err check_batch(const dsa_model *m, const dsa_batch *b)
{
    const dsa_config *c = &m->w->cfg;
    if (b->n_tokens < 1 || b->n_seqs < 1)
        return dsa_fail(DSA_INVAL, "empty batch");
    int64_t max_pos = m->p.max_blocks_per_seq * m->p.block_size;
    for (int64_t t = 0; t < b->n_tokens; t++) {
        if (b->tokens[t] < 0 || b->tokens[t] >= c->vocab_size)
            return dsa_fail(DSA_RANGE, "token %lld: id %d outside vocabulary of %lld",
                            (long long)t, b->tokens[t], (long long)c->vocab_size);
        if (b->pos[t] < 0 || b->pos[t] >= max_pos)
            return dsa_fail(DSA_RANGE, "token %lld: position %d outside the cache (%lld)",
                            (long long)t, b->pos[t], (long long)max_pos);
        if (b->seq[t] < 0 || b->seq[t] >= b->n_seqs)
            return dsa_fail(DSA_RANGE, "token %lld: sequence %d of %lld", (long long)t,
                            b->seq[t], (long long)b->n_seqs);
        /* every block up to this position must be valid */
        const int32_t *bt = b->block_tables + (int64_t)b->seq[t] * m->p.max_blocks_per_seq;
        for (int64_t j = 0; j <= b->pos[t] / m->p.block_size; j++)
            if (bt[j] < 0 || bt[j] >= m->p.n_blocks)
                return dsa_fail(DSA_RANGE, "sequence %d: block %lld is %d, cache has %lld",
                                b->seq[t], (long long)j, bt[j], (long long)m->p.n_blocks);
    }
    for (int64_t i = 0; i < b->n_logits; i++)
        if (b->logit_rows[i] < 0 || b->logit_rows[i] >= b->n_tokens)
            return dsa_fail(DSA_RANGE, "logit row %d outside the batch", b->logit_rows[i]);
    return DSA_OK;
}


/* ---- Phase (a): inputs ------------------------------------------------------
 * Everything a step reads from the host goes into the fixed scratch inputs
 * here, so the compute phase names the same buffers every step. */

/* Uploads T tokens' ids, positions, sequence rows and cache slots, and the
 * block tables of n_seqs sequences (the scratch holds them). */
dsa_err dsa_model_upload_inputs(dsa_model *m, int64_t T, const int32_t *tokens, const int32_t *pos,
                             const int32_t *seq, int64_t n_seqs, const int32_t *block_tables)
{
    dsa_backend *be = m->be;
    scratch *s = &m->s;
    int64_t bs = m->p.block_size, bps = m->p.max_blocks_per_seq;
    for (int64_t t = 0; t < T; t++) {
        const int32_t *bt = block_tables + (int64_t)seq[t] * bps;
        m->host_slots[t] = (int32_t)(bt[pos[t] / bs] * bs + pos[t] % bs);
    }
    size_t ti = (size_t)T * sizeof(int32_t);
    dsa_err err;
    if ((err = be->ops->upload(be, s->tokens, tokens, ti)) ||
        (err = be->ops->upload(be, s->pos, pos, ti)) ||
        (err = be->ops->upload(be, s->seq, seq, ti)) ||
        (err = be->ops->upload(be, s->slots, m->host_slots, ti)) ||
        (err = be->ops->upload(be, s->block_tables, block_tables,
                               (size_t)(n_seqs * bps) * sizeof(int32_t))))
        return err;
    return DSA_OK;
}

/* A step of T tokens may grow the backend's own scratch: graphs recorded
 * before it may name freed memory, so they are recaptured. */
void dsa_model_note_tokens(dsa_model *m, int64_t T)
{
    if (T > m->n_tokens_hwm) {
        m->n_tokens_hwm = T;
        m->graph_gen++;
    }
}

/* ---- Phase (b): compute -----------------------------------------------------
 * Backend ops only (plus the pipeline transfers of a stage without the
 * embedding or the head, which never runs under a graph). */

/* s->logits = lm_head(hl) for the L rows of hl (this rank's vocab slice). */
static dsa_err logits_of_hl(dsa_model *m, int64_t L)
{
    if (m->w->vocab_rows == 0)
        return DSA_OK;
    return linear_logits(m, m->s.logits, m->logit_ld, m->s.hl, &m->w->lm_head, L);
}

/* Runs the T uploaded tokens through this shard's layers and, on the last
 * stage, the head: for the L tokens logit_rows names (gathered into hl), or
 * with logit_rows NULL for all of them (L == T), into s->logits. */
dsa_err dsa_model_forward_compute(dsa_model *m, int64_t T, int64_t L, const int32_t *logit_rows,
                               const void *h_in)
{
    dsa_backend *be = m->be;
    scratch *s = &m->s;
    int64_t D = m->w->cfg.hidden_size;
    dsa_err err;

    if (h_in) {
        /* h = the caller's residual stream (the MTP module's input) */
        if ((err = be->ops->copy(be, s->h, h_in, (size_t)(T * D) * be->act_size)))
            return err;
    } else if (m->w->has_embed) {
        /* h = sum_r embed_r(tokens) (vocab-parallel rows: all-reduce over TP) */
        dsa_embed_params ep = {.out = s->h, .table = &m->w->embed, .ids = s->tokens,
                               .n_tokens = T, .row_begin = m->w->vocab_begin};
        if ((err = be->ops->embed(be, &ep)) || (err = tp_all_reduce(m, s->h, T * D)))
            return err;
    } else if ((err = m->comm->ops->recv_prev(m->comm, s->h, (size_t)(T * D) * be->act_size))) {
        /* h = the previous stage's residual stream (same tp_rank) */
        return err;
    }

    for (int l = 0; l < m->n_layers; l++) {
        const dsa_layer_weights *lw = &m->w->layers[l];
        /* h += y (previous sub-block); xn = RMSNorm_attn(h) */
        double eps = m->w->cfg.rms_norm_eps;
        if (l == 0)
            err = rmsnorm_q(m, s->xn, D, s->h, D, NULL, &lw->attn_norm, T, D, eps, 1);
        else
            err = rmsnorm_q(m, s->xn, D, s->y, D, s->h, &lw->attn_norm, T, D, eps, 1);
        /* y = sum_r W_o,r o_r (row-parallel o_proj: all-reduce over TP) */
        if (err || (err = attention(m, l, T)) || (err = tp_all_reduce(m, s->y, T * D)))
            return err;
        /* h += attention; xn = RMSNorm_ffn(h) */
        if ((err = rmsnorm_q(m, s->xn, D, s->y, D, s->h, &lw->ffn_norm, T, D, eps, 1)) ||
            (err = ffn(m, l, T)))
            return err;
        /* y = sum_r (routed_r + shared_r) or sum_r down_r (all-reduce over TP) */
        if ((err = tp_all_reduce(m, s->y, T * D)))
            return err;
    }
    if (m->w->has_head && L > 0 && !logit_rows) {
        /* h += last FFN output; hl = RMSNorm_final(h): one op; then
         * logits = lm_head(hl) */
        if ((err = rmsnorm(m, s->hl, D, s->y, D, s->h, &m->w->final_norm, T, D)))
            return err;
        return logits_of_hl(m, L);
    }
    /* h += last FFN output */
    dsa_add_params ap = {.out = s->h, .a = s->h, .b = s->y, .n = T * D};
    if ((err = be->ops->add(be, &ap)))
        return err;
    if (!m->w->has_head) {
        /* h -> the next stage (same tp_rank); no logits here.  A host
         * communicator reads h from the host: the backend must be done. */
        if ((!m->comm->graph_safe && (err = be->ops->sync(be))) ||
            (err = m->comm->ops->send_next(m->comm, s->h, (size_t)(T * D) * be->act_size)))
            return err;
        return DSA_OK;
    }
    if (L == 0)
        return DSA_OK;

    /* logits = lm_head(RMSNorm_final(h)) for the requested rows */
    if (logit_rows) {
        for (int64_t i = 0; i < L; i++)
            if ((err = be->ops->copy(be, act_at(m, s->hl, i * D),
                                     act_at(m, s->h, (int64_t)logit_rows[i] * D),
                                     (size_t)D * be->act_size)))
                return err;
        err = rmsnorm(m, s->hl, D, s->hl, D, NULL, &m->w->final_norm, L, D);
    } else {
        err = rmsnorm(m, s->hl, D, s->h, D, NULL, &m->w->final_norm, L, D);
    }
    return err ? err : logits_of_hl(m, L);
}

/* ---- Phase (c): logits ------------------------------------------------------ */

/* F32 logits [L, vocab] of rows `rows` of s->logits (NULL: rows 0..L-1)
 * into host memory, or with on_be into backend memory; with TP the vocab
 * slices are gathered first (rows NULL). */
dsa_err dsa_model_download_logits(dsa_model *m, int64_t L, const int32_t *rows, float *logits,
                               int on_be)
{
    dsa_backend *be = m->be;
    scratch *s = &m->s;
    dsa_err err;
    if (!m->w->has_head)
        return DSA_OK; /* compute phase synced and sent h on */
    if (L == 0)
        return be->ops->sync(be);
    int64_t Vr = m->w->vocab_rows, ld = m->logit_ld;
    if (!dsa_comm_tp(m->comm)) {
        /* one transfer per run of consecutive rows (ld == Vr without TP) */
        for (int64_t i = 0; i < L;) {
            int64_t r = rows ? rows[i] : i, n = 1;
            while (i + n < L && (rows ? rows[i + n] : i + n) == r + n)
                n++;
            size_t bytes = (size_t)(n * Vr) * sizeof(float);
            if ((err = on_be ? be->ops->copy(be, logits + i * Vr, s->logits + r * ld, bytes)
                             : be->ops->download(be, logits + i * Vr, s->logits + r * ld, bytes)))
                return err;
            i += n;
        }
        return on_be ? DSA_OK : be->ops->sync(be); /* on the backend: ordered on its stream */
    }
    /* logits[i, r*ld + j] = rank r's logits[i, j] (vocab-parallel lm_head:
     * all-gather of the padded slices, then reordered into vocab order by
     * one op, or a copy per row and rank where the backend has none).  A
     * graph_safe communicator queues the gather on the backend's stream; a
     * host one reads the slices from the host, so the backend finishes
     * first. */
    int64_t V = m->w->cfg.vocab_size, tp = m->comm->tp_size;
    if ((!m->comm->graph_safe && (err = be->ops->sync(be))) ||
        (err = m->comm->ops->all_gather(m->comm, s->logits_all, s->logits, L * ld,
                                        DSA_DTYPE_F32)))
        return err;
    float *full = on_be ? logits : s->logits_full;
    dsa_vocab_gather_params vg = {.out = full, .in = s->logits_all, .n_rows = L, .ld = ld,
                                  .n_parts = tp, .vocab = V};
    if (be->ops->vocab_gather) {
        if ((err = be->ops->vocab_gather(be, &vg)))
            return err;
    } else {
        for (int64_t r = 0; r < tp; r++) {
            int64_t begin = r * ld, n = begin + ld <= V ? ld : V - begin;
            for (int64_t i = 0; i < L && n > 0; i++)
                if ((err = be->ops->copy(be, full + i * V + begin,
                                         s->logits_all + (r * L + i) * ld,
                                         (size_t)n * sizeof(float))))
                    return err;
        }
    }
    if (!on_be &&
        (err = be->ops->download(be, logits, s->logits_full, (size_t)(L * V) * sizeof(float))))
        return err;
    return on_be ? DSA_OK : be->ops->sync(be);
}

/* ---- The step --------------------------------------------------------------- */

static dsa_err forward_step(dsa_model *m, const dsa_batch *b, float *logits);

/* With a graph_safe communicator the collectives only queue work: the
 * step is bounded by the communicator's watchdog, armed here and disarmed
 * after the one host wait of the step (a dead peer aborts the
 * communicators, which ends the wait with DSA_TIMEOUT). */
dsa_err dsa_model_forward(dsa_model *m, const dsa_batch *b, float *logits)
{
    dsa_comm *c = m->comm;
    if (!c || !c->graph_safe || !c->ops->watch)
        return forward_step(m, b, logits);
    dsa_err err = c->ops->watch(c, 1);
    if (!err)
        err = forward_step(m, b, logits);
    if (!err)
        err = m->be->ops->sync(m->be);
    dsa_err werr = c->ops->watch(c, 0);
    return werr ? werr : err;
}

static dsa_err forward_step(dsa_model *m, const dsa_batch *b, float *logits)
{
    dsa_err err;
    m->mha.on = 0;
    if ((err = check_batch(m, b)))
        return err;
    int64_t B = dsa_model_decode_bucket(m, b);
    if (B > 0)
        return dsa_model_forward_decode(m, b, B, logits);
    int64_t T = b->n_tokens, L = b->n_logits;
    if ((err = dsa_model_scratch_reserve(m, T, b->n_seqs, L)))
        return err;
    dsa_model_note_tokens(m, T);
    if ((err = dsa_model_upload_inputs(m, T, b->tokens, b->pos, b->seq, b->n_seqs, b->block_tables)) ||
        (err = dsa_model_mha_plan(m, b)) ||
        (err = dsa_model_forward_compute(m, T, L, b->logit_rows, b->h_in)) ||
        (err = dsa_model_download_logits(m, L, NULL, logits, b->logits_on_backend)))
        return err;
    return DSA_OK;
}

/* Only the latent cache entries of a one-layer model's batch (the MTP
 * module's positions whose output nobody reads): the layer's input norm,
 * kv_a, its norm and RoPE, stored; no query, attention, FFN or head. */
dsa_err dsa_model_forward_kv(dsa_model *m, const dsa_batch *b)
{
    const dsa_config *c = &m->w->cfg;
    if (m->dense || m->n_layers != 1 || !b->h_in || b->n_logits)
        return DSA_UNSUPPORTED;
    dsa_err err;
    if ((err = check_batch(m, b)))
        return err;
    const dsa_layer_weights *lw = &m->w->layers[0];
    scratch *s = &m->s;
    int64_t T = b->n_tokens, D = c->hidden_size, kvr = c->kv_lora_rank;
    int64_t rope = c->qk_rope_head_dim, ql = c->q_lora_rank;
    int64_t qld = ql > 0 ? lw->qkv_a.width : kvr + rope, kvo = ql > 0 ? lw->qkv_a.off_b : 0;
    if ((err = dsa_model_scratch_reserve(m, T, b->n_seqs, 1)))
        return err;
    void *kva = act_at(m, s->qkva, kvo);
    dsa_model_note_tokens(m, T);
    /* a = W_kva RMSNorm_attn(x) by the GEMM attention() runs (the fused
     * [q_a | kv_a] pair: the same weights and sums as a full forward) */
    if ((err = dsa_model_upload_inputs(m, T, b->tokens, b->pos, b->seq, b->n_seqs,
                                       b->block_tables)) ||
        (err = rmsnorm_q(m, s->xn, D, b->h_in, D, NULL, &lw->attn_norm, T, D,
                         c->rms_norm_eps, 1)) ||
        (err = ql > 0 ? linear_pair(m, s->qkva, s->xn, D, &lw->qkv_a, &lw->q_a, &lw->kv_a, T, 1)
                      : linear_x(m, kva, qld, s->xn, D, &lw->kv_a, T, 0, 1)) ||
        (err = rmsnorm_eps(m, s->ckv, kvr, kva, qld, NULL, &lw->kv_a_norm, T, kvr,
                           LATENT_NORM_EPS)))
        return err;
    /* cache[slot] = [c_kv | RoPE(k_pe)] */
    dsa_rope_params rk = {.x = act_at(m, s->qkva, kvo + kvr), .positions = s->pos,
                          .inv_freq = m->inv_freq, .n_tokens = T, .n_heads = 1,
                          .rot_dim = rope, .ld_token = qld, .ld_head = rope};
    dsa_kv_store_params st = {.cache = &m->kv[0], .c_kv = s->ckv,
                              .k_pe = act_at(m, s->qkva, kvo + kvr), .slots = s->slots,
                              .n_tokens = T, .kv_rank = kvr, .rope_dim = rope, .ld_c = kvr,
                              .ld_k = qld};
    if ((err = m->be->ops->rope(m->be, &rk)) || (err = m->be->ops->kv_store(m->be, &st)))
        return err;
    return DSA_OK;
}

const void *dsa_model_hidden(const dsa_model *m)
{
    return m->s.h;
}

void dsa_model_graph_stats_get(const dsa_model *m, dsa_model_graph_stats *out)
{
    *out = m->stats;
}
