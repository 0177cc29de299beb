/* loader.h - a rank's share of a DeepSeek-V3/R1 checkpoint as dsa_weight
 * descriptors (MODEL_SPEC.md §2, DESIGN.md "Parallel layout").
 *
 * The checkpoint stays mmapped: every descriptor points into the mapping, so
 * FP8 stays FP8 and BF16 stays BF16 and resident memory is the pages this
 * rank touches.  TP slices (head ranges, intermediate ranges, vocab rows) are
 * row slices or column slices (ld > cols) of the stored tensors; FP8 slices
 * keep their origin so their 128x128 block scales are found.  Every tensor
 * is checked against the config (presence, dtype, shape, FP8 scale) before
 * use; a failure names the checkpoint file and tensor. */
#ifndef DSA_WORKER_LOADER_H
#define DSA_WORKER_LOADER_H

#include <stdint.h>

#include "common/config.h"
#include "common/safetensors.h"
#include "kernels/backend.h"

/* Which part of the model this rank holds. */
typedef struct dsa_shard {
    int tp_rank, tp_size;
    int layer_begin, layer_end; /* [begin, end) of the main layers */
    int with_mtp;               /* 1: the last stage also loads the MTP module */
} dsa_shard;

/* Two weights that read the same input, made one weight at load
 * (loader_fuse.c) so one linear computes both: the output columns
 * [0, a.rows) are a's, [off_b, off_b + b.rows) are b's, `width` in all
 * (the result's row stride).  The stored tensor behind w is a copy owned
 * here: FP8 parts keep their row offset inside a 128-row scale block (a
 * part starts at its slice's row0 % 128; b's block starts on a block
 * boundary), the rows between are zero.  Each output value is the same
 * dot product as with a and b apart.  w.data == NULL: not fused (AWQ or
 * mixed dtypes), and the model runs a and b into the same layout. */
typedef struct dsa_weights_pair {
    dsa_weight w;               /* [rows, cols] the pair as one weight */
    int64_t off_b, width;       /* b's first output column; output width */
    void *owned;                /* the copy's rows (w.data points inside) */
    float *scale_owned;         /* FP8: the copy's block scales */
} dsa_weights_pair;

typedef struct dsa_layer_weights {
    int is_moe;
    dsa_weight attn_norm, ffn_norm; /* [1, D] */
    /* MLA; Hl = n_heads / tp_size heads of this rank */
    dsa_weight q_proj;      /* q_lora_rank == 0: [Hl*(nope+rope), D] */
    dsa_weight q_a;         /* [q_lora, D] replicated */
    dsa_weight q_a_norm;    /* [1, q_lora] */
    dsa_weight q_b;         /* [Hl*(nope+rope), q_lora] */
    dsa_weight kv_a;        /* [kv_rank + rope, D] replicated */
    dsa_weight kv_a_norm;   /* [1, kv_rank] */
    dsa_weight kv_b;        /* [Hl*(nope+v), kv_rank] */
    dsa_weights_pair qkv_a;  /* q_a | kv_a as one weight (q_lora_rank > 0) */
    dsa_weight o;           /* [D, Hl*v] column slice (row-parallel); dense: [D, Hl*hd] */
    /* dense GQA attention (Qwen2, Llama): q_proj [Hl*hd, D] above, and */
    dsa_weight k_proj, v_proj;          /* [KVl*hd, D] this rank's kv heads */
    dsa_weight q_bias, k_bias, v_bias;  /* [1, Hl*hd], [1, KVl*hd] (Qwen2) */
    /* dense FFN (layer < first_k_dense_replace) */
    dsa_weight gate, up;    /* [I/tp, D] */
    dsa_weight down;        /* [D, I/tp] column slice */
    dsa_weights_pair gate_up; /* this rank's gate | up slices as one weight */
    /* MoE FFN */
    dsa_weight router;      /* [E, D] replicated */
    const float *router_bias; /* [E] F32 or NULL */
    float *router_bias_owned; /* the bias converted to F32 when not stored so */
    dsa_expert *experts;    /* [E], each [I_moe/tp, D] / [D, I_moe/tp] */
    dsa_expert shared;      /* [n_shared*I_moe/tp, D] / [D, n_shared*I_moe/tp] */
    int64_t shared_inter;   /* rows of shared.gate (0: none) */
    dsa_weights_pair shared_gate_up; /* shared.gate | shared.up as one weight */
} dsa_layer_weights;

/* DeepSeek-V3's multi-token-prediction module, stored as layer
 * num_hidden_layers (MODEL_SPEC.md; docs/design.md "Speculative decoding"):
 * x = eh_proj([enorm(embed(t_{i+1})) ; hnorm(h_i)]), then a decoder layer,
 * then head(head_norm(x)).  TP-sliced like the main model: embed and head
 * vocab-parallel, the decoder layer as a main layer, eh_proj replicated. */
typedef struct dsa_mtp_weights {
    dsa_weight embed;           /* [vocab_rows, D] its copy of the embedding */
    dsa_weight enorm, hnorm;    /* [1, D] */
    dsa_weight eh_proj;         /* [D, 2D] replicated */
    dsa_layer_weights layer;    /* the decoder layer (MoE or dense as its index says) */
    dsa_weight head_norm;       /* [1, D] shared_head.norm */
    dsa_weight head;            /* [vocab_rows, D] shared_head.head */
} dsa_mtp_weights;

typedef struct dsa_weights {
    dsa_config cfg;
    dsa_shard shard;
    char *dir;
    dsa_st_model *st;
    int has_embed, has_head;    /* first stage / last stage */
    int64_t n_heads_local, head_begin;
    int64_t n_kv_heads_local, kv_head_begin; /* dense GQA: kv heads of this rank
                                                (replicated when tp > n_kv_heads) */
    int64_t vocab_begin, vocab_rows; /* this rank's vocab slice */
    int64_t inter_local, moe_inter_local;
    dsa_weight embed;           /* [vocab_rows, D] */
    dsa_weight final_norm;      /* [1, D] */
    dsa_weight lm_head;         /* [vocab_rows, D] */
    dsa_layer_weights *layers;  /* [layer_end - layer_begin] */
    int has_mtp;                /* shard.with_mtp on the last stage */
    dsa_mtp_weights mtp;
    uint64_t bytes;             /* weight bytes this rank reads */
    /* lm_head's FP8 copy (lm_head.h), owned; NULL when lm_head is the mapping */
    void *lm_head_q;
    float *lm_head_scale;
} dsa_weights;

/* Opens dir (config.json + safetensors), builds this shard's descriptors and
 * (shard->with_mtp on the last stage; DSA_NOTFOUND when the checkpoint has
 * no num_nextn_predict_layers) the MTP module's, and
 * reads its pages in, reporting progress (a progress line on a terminal, log
 * lines otherwise).  shard == NULL means the whole model on one rank. */
dsa_err dsa_weights_load(const char *dir, const dsa_shard *shard, dsa_weights **out);
void dsa_weights_free(dsa_weights *w); /* NULL: no-op */

/* Hands every weight of the shard to be->ops->weight_prepare (a GPU backend
 * copies it to the device and rewrites the descriptor; the CPU backend uses
 * the mapping as it is).  Release with dsa_weights_release(w, be) before
 * dsa_weights_free. */
dsa_err dsa_weights_prepare(dsa_weights *w, dsa_backend *be);
void dsa_weights_release(dsa_weights *w, dsa_backend *be);

#endif
