/* loader_dense.c - a rank's share of one layer of a dense GQA checkpoint
 * (Qwen2ForCausalLM, LlamaForCausalLM), with transformers' tensor names:
 *   model.layers.L.input_layernorm.weight            [D]
 *   model.layers.L.self_attn.q_proj.weight (.bias)   [H*hd, D] ([H*hd], Qwen2)
 *   model.layers.L.self_attn.k_proj / v_proj         [KV*hd, D] ([KV*hd])
 *   model.layers.L.self_attn.o_proj.weight           [D, H*hd]
 *   model.layers.L.post_attention_layernorm.weight   [D]
 *   model.layers.L.mlp.gate_proj / up_proj           [I, D]
 *   model.layers.L.mlp.down_proj                     [D, I]
 * TP as vLLM: q heads and the MLP width split evenly, kv heads split or
 * replicated (loader_internal.h), o_proj and down_proj row-parallel. */
#include <stdio.h>

#include "worker/loader_internal.h"

void dsa_loader_dense_kv_heads(const dsa_config *cfg, const dsa_shard *s, int64_t *n_local,
                               int64_t *begin)
{
    int64_t kv = cfg->n_kv_heads, tp = s->tp_size;
    if (tp <= kv) {
        *n_local = kv / tp;
        *begin = *n_local * s->tp_rank;
    } else {
        *n_local = 1;
        *begin = s->tp_rank / (tp / kv);
    }
}

dsa_err dsa_loader_dense_layer(dsa_load_ctx *c, int l, dsa_layer_weights *lw)
{
    const dsa_config *cfg = c->cfg;
    const dsa_weights *w = c->w;
    int64_t D = cfg->hidden_size, hd = cfg->head_dim, I = cfg->intermediate_size;
    int64_t H = cfg->n_heads, KV = cfg->n_kv_heads;
    int64_t Hl = w->n_heads_local, h0 = w->head_begin;
    int64_t KVl = w->n_kv_heads_local, g0 = w->kv_head_begin;
    int64_t Il = w->inter_local, i0 = Il * w->shard.tp_rank;
    char name[512];
    dsa_err err;
#define NAME(suffix) (snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix), name)
    if ((err = dsa_loader_slice(c, NAME("input_layernorm.weight"), 0, D, 0, 1, 0, D,
                                &lw->attn_norm)) ||
        (err = dsa_loader_slice(c, NAME("post_attention_layernorm.weight"), 0, D, 0, 1, 0, D,
                                &lw->ffn_norm)) ||
        (err = dsa_loader_slice(c, NAME("self_attn.q_proj.weight"), H * hd, D, h0 * hd,
                                Hl * hd, 0, D, &lw->q_proj)) ||
        (err = dsa_loader_slice(c, NAME("self_attn.k_proj.weight"), KV * hd, D, g0 * hd,
                                KVl * hd, 0, D, &lw->k_proj)) ||
        (err = dsa_loader_slice(c, NAME("self_attn.v_proj.weight"), KV * hd, D, g0 * hd,
                                KVl * hd, 0, D, &lw->v_proj)) ||
        (err = dsa_loader_slice(c, NAME("self_attn.o_proj.weight"), D, H * hd, 0, D, h0 * hd,
                                Hl * hd, &lw->o)))
        return err;
    if (cfg->qkv_bias &&
        ((err = dsa_loader_slice(c, NAME("self_attn.q_proj.bias"), 0, H * hd, 0, 1, h0 * hd,
                                 Hl * hd, &lw->q_bias)) ||
         (err = dsa_loader_slice(c, NAME("self_attn.k_proj.bias"), 0, KV * hd, 0, 1, g0 * hd,
                                 KVl * hd, &lw->k_bias)) ||
         (err = dsa_loader_slice(c, NAME("self_attn.v_proj.bias"), 0, KV * hd, 0, 1, g0 * hd,
                                 KVl * hd, &lw->v_bias))))
        return err;
    lw->is_moe = 0;
    if ((err = dsa_loader_slice(c, NAME("mlp.gate_proj.weight"), I, D, i0, Il, 0, D,
                                &lw->gate)) ||
        (err = dsa_loader_slice(c, NAME("mlp.up_proj.weight"), I, D, i0, Il, 0, D, &lw->up)) ||
        (err = dsa_loader_slice(c, NAME("mlp.down_proj.weight"), D, I, 0, D, i0, Il,
                                &lw->down)))
        return err;
#undef NAME
    return DSA_OK;
}
