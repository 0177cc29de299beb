/* model_mha.c - prefill attention in the non-absorbed form (MODEL_SPEC.md
 * §3 before absorption) for steps made of long prompt chunks: each chunk's
 * whole context is read back from the latent cache, up-projected by
 * kv_b_proj into per-head k_nope and v (the same rows absorbed MLA uses as
 * W_UK and W_UV), and the backend's mha_prefill op attends over it with
 * k_pe shared by the heads.  From DSA_MHA_PREFILL_MIN queries per chunk
 * this costs fewer FLOPs than absorbed MLA (docs/design.md "Prefill
 * attention"); the result is the same up to rounding.
 *
 * The plan (which cache slots hold each chunk's context, the chunk table)
 * is made on the host when the step's inputs are uploaded, so the compute
 * phase stays backend ops only.  Steps with a short chunk (decode tokens
 * included) use absorbed MLA for all their tokens; such steps are the
 * ones graphs capture, and they never take this path. */
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "worker/model_int.h"

void dsa_model_mha_free(dsa_model *m)
{
    mha_plan *pl = &m->mha;
    dsa_backend *be = m->be;
    void *bufs[] = {pl->qo_indptr, pl->kv_indptr, pl->lat, pl->kvb};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i])
            be->ops->free(be, bufs[i]);
    free(pl->host_qo);
    free(pl->host_kv);
    free(pl->runs);
    int refused = pl->refused;
    memset(pl, 0, sizeof *pl);
    pl->refused = refused;
}

/* Makes the plan hold n_chunks chunks, n_kv context rows and n_runs runs. */
static dsa_err plan_reserve(dsa_model *m, int64_t n_chunks, int64_t n_kv, int64_t n_runs)
{
    mha_plan *pl = &m->mha;
    dsa_backend *be = m->be;
    const dsa_config *c = &m->w->cfg;
    dsa_err err;
    if (n_chunks > pl->chunks_cap) {
        if (pl->qo_indptr)
            be->ops->free(be, pl->qo_indptr);
        if (pl->kv_indptr)
            be->ops->free(be, pl->kv_indptr);
        pl->qo_indptr = pl->kv_indptr = NULL;
        pl->chunks_cap = 0;
        free(pl->host_qo);
        free(pl->host_kv);
        size_t bytes = (size_t)(n_chunks + 1) * sizeof(int32_t);
        pl->host_qo = malloc(bytes);
        pl->host_kv = malloc(bytes);
        if (!pl->host_qo || !pl->host_kv)
            return dsa_fail(DSA_NOMEM, "prefill plan of %lld chunks", (long long)n_chunks);
        if ((err = be->ops->alloc(be, bytes, (void **)&pl->qo_indptr)) ||
            (err = be->ops->alloc(be, bytes, (void **)&pl->kv_indptr)))
            return err;
        pl->chunks_cap = n_chunks;
    }
    if (n_kv > pl->kv_cap) {
        int64_t width = c->kv_lora_rank + c->qk_rope_head_dim;
        int64_t kvb = m->w->n_heads_local * (c->qk_nope_head_dim + c->v_head_dim);
        if (pl->lat)
            be->ops->free(be, pl->lat);
        if (pl->kvb)
            be->ops->free(be, pl->kvb);
        pl->lat = pl->kvb = NULL;
        pl->kv_cap = 0;
        if ((err = be->ops->alloc(be, (size_t)(n_kv * width) * be->act_size, &pl->lat)) ||
            (err = be->ops->alloc(be, (size_t)(n_kv * kvb) * be->act_size, &pl->kvb)))
            return err;
        pl->kv_cap = n_kv;
    }
    if (n_runs > pl->runs_cap) {
        free(pl->runs);
        pl->runs = malloc((size_t)(3 * n_runs) * sizeof *pl->runs);
        pl->runs_cap = pl->runs ? n_runs : 0;
        if (!pl->runs)
            return dsa_fail(DSA_NOMEM, "prefill plan of %lld runs", (long long)n_runs);
    }
    return DSA_OK;
}

/* The end (exclusive) of the chunk starting at token t: the run of tokens
 * of t's sequence at consecutive positions. */
static int64_t chunk_end(const dsa_batch *b, int64_t t)
{
    int64_t e = t + 1;
    while (e < b->n_tokens && b->seq[e] == b->seq[t] && b->pos[e] == b->pos[e - 1] + 1)
        e++;
    return e;
}

dsa_err dsa_model_mha_plan(dsa_model *m, const dsa_batch *b)
{
    mha_plan *pl = &m->mha;
    dsa_backend *be = m->be;
    pl->on = 0;
    if (!be->mha_prefill_on || !be->ops->mha_prefill || pl->refused || m->dense ||
        b->h_in || b->n_tokens < DSA_MHA_PREFILL_MIN)
        return DSA_OK;
    int64_t bs = m->p.block_size, n_chunks = 0, n_kv = 0, n_runs = 0;
    for (int64_t t = 0; t < b->n_tokens;) {
        int64_t e = chunk_end(b, t), kv_len = (int64_t)b->pos[e - 1] + 1;
        if (e - t < DSA_MHA_PREFILL_MIN)
            return DSA_OK; /* a short chunk: absorbed MLA for the step */
        n_chunks++;
        n_kv += kv_len;
        n_runs += (kv_len + bs - 1) / bs + 1;
        t = e;
    }
    dsa_err err;
    if ((err = plan_reserve(m, n_chunks, n_kv, n_runs)))
        return err;
    /* chunk table; runs of consecutive cache slots of each chunk's context */
    int64_t c = 0, r = 0;
    pl->host_qo[0] = pl->host_kv[0] = 0;
    for (int64_t t = 0; t < b->n_tokens; c++) {
        int64_t e = chunk_end(b, t), kv_len = (int64_t)b->pos[e - 1] + 1;
        const int32_t *bt = b->block_tables + (int64_t)b->seq[t] * m->p.max_blocks_per_seq;
        int64_t row = pl->host_kv[c];
        for (int64_t j = 0; j < kv_len;) {
            int64_t off = j % bs, n = bs - off < kv_len - j ? bs - off : kv_len - j;
            int64_t slot = (int64_t)bt[j / bs] * bs + off;
            int64_t *last = r > 0 ? pl->runs + 3 * (r - 1) : NULL;
            if (last && last[0] + last[2] == slot && last[1] + last[2] == row + j) {
                last[2] += n;
            } else {
                pl->runs[3 * r] = slot;
                pl->runs[3 * r + 1] = row + j;
                pl->runs[3 * r + 2] = n;
                r++;
            }
            j += n;
        }
        pl->host_qo[c + 1] = (int32_t)e;
        pl->host_kv[c + 1] = (int32_t)(row + kv_len);
        t = e;
    }
    size_t bytes = (size_t)(n_chunks + 1) * sizeof(int32_t);
    if ((err = be->ops->upload(be, pl->qo_indptr, pl->host_qo, bytes)) ||
        (err = be->ops->upload(be, pl->kv_indptr, pl->host_kv, bytes)))
        return err;
    pl->n_chunks = n_chunks;
    pl->n_q = b->n_tokens;
    pl->n_kv = n_kv;
    pl->n_runs = r;
    pl->on = 1;
    return DSA_OK;
}

dsa_err dsa_model_mha_attention(dsa_model *m, int l, void *out)
{
    const dsa_config *c = &m->w->cfg;
    const dsa_layer_weights *lw = &m->w->layers[l];
    dsa_backend *be = m->be;
    mha_plan *pl = &m->mha;
    const dsa_kv_layer *kv = &m->kv[l];
    int64_t Hl = m->w->n_heads_local, nope = c->qk_nope_head_dim, vd = c->v_head_dim;
    int64_t kvr = c->kv_lora_rank, rope = c->qk_rope_head_dim, width = kv->width;
    int64_t kvb_ld = Hl * (nope + vd);
    size_t a = be->act_size, row_bytes = (size_t)width * a;
    dsa_err err;
    /* lat = [c_kv | k_pe] of every context entry, chunk by chunk */
    for (int64_t r = 0; r < pl->n_runs; r++) {
        const int64_t *run = pl->runs + 3 * r;
        if ((err = be->ops->copy(be, (char *)pl->lat + (size_t)run[1] * row_bytes,
                                 (const char *)kv->data + (size_t)run[0] * row_bytes,
                                 (size_t)run[2] * row_bytes)))
            return err;
    }
    /* [k_nope,h | v_h] = W_kvb,h c_kv for every head h: [n_kv, Hl, nope + v] */
    dsa_linear_params lp = {.out = pl->kvb, .x = pl->lat, .w = &lw->kv_b, .m = pl->n_kv,
                            .ld_x = width, .ld_out = kvb_ld};
    if ((err = be->ops->linear(be, &lp)))
        return err;
    /* o_h = sum_j softmax_j(tau q_h . [k_nope,h(j) | k_pe(j)]) v_h(j), causal */
    int64_t qk = nope + rope;
    dsa_mha_prefill_params mp = {
        .out = out, .q = m->s.q, .k_nope = pl->kvb, .k_pe = (char *)pl->lat + (size_t)kvr * a,
        .v = (char *)pl->kvb + (size_t)nope * a, .ld_q_token = Hl * qk, .ld_q_head = qk,
        .ld_k_token = kvb_ld, .ld_k_head = nope + vd, .ld_kpe = width, .ld_v_token = kvb_ld,
        .ld_v_head = nope + vd, .qo_indptr = pl->qo_indptr, .kv_indptr = pl->kv_indptr,
        .n_seqs = pl->n_chunks, .n_heads = Hl, .nope_dim = nope, .rope_dim = rope, .v_dim = vd,
        .n_q = pl->n_q, .n_kv = pl->n_kv, .scale = m->scale};
    err = be->ops->mha_prefill(be, &mp);
    if (err == DSA_UNSUPPORTED) {
        DSA_WARN("%s: non-absorbed prefill unavailable at these head sizes (%s); absorbed "
                 "MLA from now on", be->ops->name, dsa_errmsg());
        pl->refused = 1;
        pl->on = 0;
    }
    return err;
}
