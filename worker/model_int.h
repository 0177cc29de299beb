/* model_int.h - the model's state shared by model.c (the forward pass)
 * and model_graph.c (decode steps through backend graphs). */
#ifndef DSA_WORKER_MODEL_INT_H
#define DSA_WORKER_MODEL_INT_H

#include "worker/model.h"
#include "worker/model_dense.h"

/* Decode batches are padded to 1..8, 16..64 by 8, 96..GRAPH_BUCKET_MAX by
 * 32 sequences (model_graph.c). */
#define GRAPH_BUCKET_MAX 256
#define GRAPH_N_BUCKETS 21
/* Steps of q tokens per sequence (a decode step verifying q - 1 drafts, the
 * same number for every sequence) have buckets of their own, q up to
 * GRAPH_Q_MAX (1 + DSA_SPEC_TOKENS_MAX), with at most GRAPH_BUCKET_MAX
 * tokens in all. */
#define GRAPH_Q_MAX 9

typedef enum bucket_state {
    BUCKET_NEW,         /* never run: the next step runs eagerly */
    BUCKET_WARM,        /* ran eagerly once: the next step captures */
    BUCKET_CAPTURED,    /* graph recorded at generation `gen`: replay */
    BUCKET_EAGER,       /* a graph op failed: always eager */
} bucket_state;

typedef struct graph_bucket {
    bucket_state state;
    uint64_t gen;       /* m->graph_gen when captured */
} graph_bucket;

/* Per-step activation buffers, sized for n_tokens_cap tokens and grown on
 * demand (backend memory, act dtype unless noted). */
typedef struct scratch {
    int64_t n_tokens_cap, n_seqs_cap, n_logits_cap;
    void *h;        /* [T, D] residual stream */
    void *xn;       /* [T, D] normalised input of a sub-block */
    void *y;        /* [T, D] sub-block output (attention or FFN) */
    void *qa;       /* [T, q_lora] normalised q latent */
    void *q;        /* [T, Hl, nope + rope] */
    void *qkva;     /* [T, qkv_ld]: q_a | kv_a outputs (the layer's qkv_a pair
                       layout: q_a at 0, kv_a's kv_rank | rope at off_b) */
    void *ckv;      /* [T, kv_rank] normalised latent */
    void *q_lat;    /* [T, Hl, kv_rank] absorbed queries */
    void *obar;     /* [T, Hl, kv_rank] attention over latents */
    void *o;        /* [T, Hl, v] per-head outputs */
    void *g;        /* [T, gu_ld]: gate | up outputs (pair layout); silu_mul
                       leaves its product in the gate columns */
    uint8_t *xq;    /* [T, max(D, q_lora)] the last norm's output as FP8 and */
    float *xs;      /* its 1x128 scales (be->norm_quant only, else NULL) */
    float *rlogits; /* [T, E] router logits, F32 */
    int32_t *ids;   /* [T, k] routed experts */
    float *rw;      /* [T, k] routing weights */
    int32_t *tokens, *pos, *seq, *slots; /* [T] */
    int32_t *block_tables; /* [n_seqs, max_blocks_per_seq] */
    void *hl;       /* [n_logits, D] rows that produce logits */
    float *logits;  /* [n_logits, logit_ld] F32, this rank's vocab slice */
    float *logits_all;  /* [tp_size, n_logits, logit_ld] F32, gathered slices */
    float *logits_full; /* [n_logits, vocab_size] F32, slices in vocab order */
} scratch;

/* Non-absorbed prefill (model_mha.c) of the current step: its chunks (runs
 * of consecutive positions of one sequence), each over its whole context,
 * and where that context's latent entries lie in the cache. */
typedef struct mha_plan {
    int on;                 /* this step's attention runs non-absorbed */
    int refused;            /* the backend refused the op's shapes: never again */
    int64_t n_chunks, n_q, n_kv, n_runs;
    int64_t chunks_cap, kv_cap, runs_cap;
    int32_t *host_qo, *host_kv; /* [n_chunks + 1] host */
    int64_t *runs;          /* [n_runs, 3] host: cache slot, row in lat, entries */
    int32_t *qo_indptr, *kv_indptr; /* [n_chunks + 1] backend memory */
    void *lat;              /* [n_kv, kv_rank + rope] context latents, act */
    void *kvb;              /* [n_kv, Hl * (nope + v)] their kv_b_proj, act */
} mha_plan;

struct dsa_model {
    dsa_backend *be;
    const dsa_weights *w;
    dsa_model_params p;
    int n_layers;
    dsa_kv_layer *kv;       /* [n_layers] */
    float *inv_freq;        /* [rope / 2] backend memory */
    float scale;            /* softmax scale tau */
    int64_t ffn_width;      /* widest FFN intermediate on this rank */
    int64_t qkv_ld, gu_ld;  /* widest q_a | kv_a and gate | up pair outputs */
    dsa_comm *comm;         /* borrowed; NULL: single rank */
    int64_t logit_ld;       /* columns of s.logits: vocab_rows, or the
                               padded ceil(V / tp) slice when gathering */
    scratch s;
    int32_t *host_slots;    /* [n_tokens_cap] */
    /* Decode graphs (graphs != 0 only on a graph backend and one rank). */
    int graphs;
    int32_t scratch_block;  /* KV block of padded rows (= p.n_blocks) */
    graph_bucket buckets[GRAPH_Q_MAX][GRAPH_N_BUCKETS]; /* [q - 1][sequence bucket] */
    /* Bumped whenever a buffer a graph names may have moved: the model's
     * scratch was reallocated, or a step ran more tokens than any before
     * (the backend's own scratch grows with the token count). */
    uint64_t graph_gen;
    int64_t n_tokens_hwm;
    int32_t *host_tokens, *host_pos, *host_seq, *host_bt; /* padded decode inputs */
    dsa_model_graph_stats stats;
    dsa_dense *dense;       /* Qwen2 / Llama attention and K/V cache, else NULL */
    mha_plan mha;
};

/* model.c: grows the scratch for T tokens, n_seqs sequences, L logit rows */
dsa_err dsa_model_scratch_reserve(dsa_model *m, int64_t T, int64_t n_seqs, int64_t L);
/* model.c: phase (a), the step's host inputs into the fixed scratch inputs */
dsa_err dsa_model_upload_inputs(dsa_model *m, int64_t T, const int32_t *tokens,
                                const int32_t *pos, const int32_t *seq, int64_t n_seqs,
                                const int32_t *block_tables);
/* model.c: a step of T tokens may move the backend's scratch (graph_gen) */
void dsa_model_note_tokens(dsa_model *m, int64_t T);
/* model.c: phase (b), backend ops only */
dsa_err dsa_model_forward_compute(dsa_model *m, int64_t T, int64_t L, const int32_t *logit_rows,
                                  const void *h_in);
/* model.c: phase (c), the logits to the host (or backend memory with on_be) */
dsa_err dsa_model_download_logits(dsa_model *m, int64_t L, const int32_t *rows, float *logits,
                                  int on_be);

/* model_mha.c: decides whether batch b's attention runs non-absorbed
 * (every chunk >= DSA_MHA_PREFILL_MIN tokens, the backend has the op and
 * asks for it) and, if so, uploads its chunk table (sets m->mha.on) */
dsa_err dsa_model_mha_plan(dsa_model *m, const dsa_batch *b);
/* model_mha.c: out [T, Hl, v] of layer l by non-absorbed attention, the
 * step's latents already in the cache; DSA_UNSUPPORTED: the backend has no
 * kernel for these shapes (nothing written, m->mha.refused set) */
dsa_err dsa_model_mha_attention(dsa_model *m, int l, void *out);
/* model_mha.c: frees the plan's buffers */
void dsa_model_mha_free(dsa_model *m);

/* model_graph.c: the sequence bucket of a decode batch of q tokens per
 * sequence (q = n_tokens / n_seqs), or 0 (no graph) */
int64_t dsa_model_decode_bucket(const dsa_model *m, const dsa_batch *b);
/* model_graph.c: a decode batch padded to B sequences, through its graph */
dsa_err dsa_model_forward_decode(dsa_model *m, const dsa_batch *b, int64_t B, float *logits);

#endif
