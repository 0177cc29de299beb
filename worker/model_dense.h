/* model_dense.h - the attention block of the dense GQA architectures
 * (Qwen2ForCausalLM, LlamaForCausalLM) and its paged K/V cache.
 *
 * model.c runs the rest of the forward pass unchanged for them (embedding,
 * RMSNorms, the SwiGLU MLP, the head, TP all-reduces, PP hand-offs, decode
 * graphs) and calls dsa_dense_attention where a DeepSeek layer runs MLA.
 * The object owns its per-step buffers and the cache; it borrows the
 * backend and the weights. */
#ifndef DSA_WORKER_MODEL_DENSE_H
#define DSA_WORKER_MODEL_DENSE_H

#include <stdint.h>

#include "kernels/backend.h"
#include "worker/loader.h"

typedef struct dsa_dense dsa_dense;

/* n_blocks cache blocks of block_size tokens per layer of the shard. */
dsa_err dsa_dense_create(dsa_backend *be, const dsa_weights *w, int64_t n_blocks,
                         int64_t block_size, dsa_dense **out);
void dsa_dense_destroy(dsa_dense *d); /* NULL: no-op */

/* Makes the per-step buffers hold T tokens (they may move). */
dsa_err dsa_dense_reserve(dsa_dense *d, int64_t T);

/* One layer's attention for the T tokens of a step; every pointer is
 * backend memory the caller keeps alive (a graph may replay the ops). */
typedef struct dsa_dense_step {
    void *y;                    /* [T, D] out: o_proj(attention) of this rank's heads */
    const void *xn;             /* [T, D] normalised input */
    const int32_t *pos, *seq, *slots; /* [T] */
    const int32_t *block_tables;/* [n_seqs, ld_block_table] */
    int64_t ld_block_table;
    const float *inv_freq;      /* [head_dim / 2] */
    float scale;                /* head_dim^-0.5 */
    int64_t n_tokens;
    int layer;                  /* index within the shard */
} dsa_dense_step;

dsa_err dsa_dense_attention(dsa_dense *d, const dsa_dense_step *st);

/* Bytes of K/V cache per block over n_layers layers holding n_kv_heads kv
 * heads (all of the config's when the caller does not know its share). */
int64_t dsa_dense_block_bytes(const dsa_config *cfg, int n_layers, int64_t block_size,
                              size_t act_size);

#endif
