/* loader_internal.h - what loader.c shares with the per-architecture
 * loaders (loader_dense.c). */
#ifndef DSA_WORKER_LOADER_INTERNAL_H
#define DSA_WORKER_LOADER_INTERNAL_H

#include "worker/loader.h"

typedef struct dsa_load_ctx {
    dsa_weights *w;
    const dsa_config *cfg;
} dsa_load_ctx;

/* Rows [r0, r0+nr) x columns [c0, c0+nc) of the stored matrix `name`,
 * which must be [rows, cols] (rows == 0: a vector of cols values), checked
 * against the checkpoint; counts its bytes into the shard's total. */
dsa_err dsa_loader_slice(dsa_load_ctx *c, const char *name, int64_t rows, int64_t cols,
                         int64_t r0, int64_t nr, int64_t c0, int64_t nc, dsa_weight *w);

/* AWQ (loader_awq.c): 1 when `name` (a linear's ".weight") is stored as
 * AWQ int4 under cfg; its slice, as dsa_loader_slice; and the pages of one
 * AWQ weight read in (returns the bytes). */
int dsa_loader_awq_wanted(const dsa_config *cfg, const char *name);
dsa_err dsa_loader_awq_slice(dsa_load_ctx *c, const char *name, int64_t rows, int64_t cols,
                             int64_t r0, int64_t nr, int64_t c0, int64_t nc, dsa_weight *w);
uint64_t dsa_loader_awq_touch(const dsa_weight *w);
/* Populates the mapping of [p, p + span) in one call when used >= span / 2;
 * 0 when done, -1 when the caller must touch the pages itself. */
int dsa_loader_prefault(const void *p, size_t span, size_t used);

/* Layer l of a dense GQA checkpoint (Qwen2, Llama). */
dsa_err dsa_loader_dense_layer(dsa_load_ctx *c, int l, dsa_layer_weights *lw);

/* The kv heads a TP rank holds, as vLLM's QKVParallelLinear splits them:
 * n_kv / tp each when tp divides n_kv, else one, replicated on tp / n_kv
 * consecutive ranks. */
void dsa_loader_dense_kv_heads(const dsa_config *cfg, const dsa_shard *s, int64_t *n_local,
                               int64_t *begin);

/* loader_fuse.c: the layer's weight pairs (q_a | kv_a, gate | up, the
 * shared expert's gate | up) made one weight each where the two parts
 * allow it, and freed. */
dsa_err dsa_loader_fuse_layer(dsa_layer_weights *lw);
void dsa_loader_fuse_free(dsa_layer_weights *lw);

/* The pair a | b (tests and loader_fuse.c): fills p, fusing when a and b
 * have the same dtype (not AWQ), columns and block shape. */
dsa_err dsa_loader_pair_make(const dsa_weight *a, const dsa_weight *b, dsa_weights_pair *p);

#endif
