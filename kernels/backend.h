/* backend.h - the compute backend interface: the ops the forward pass is
 * written against (DESIGN.md "kernels/").
 *
 * A backend is a vtable plus its own context.  Every op takes one params
 * struct of pointers and sizes (STYLE.md rule 13); pointers named as
 * "backend memory" come from the backend's alloc (on the CPU, plain host
 * memory).  Activations are in the backend's activation dtype (act_dtype:
 * F32 on the CPU, BF16 on the GPU); accumulation is always F32.  Integer
 * inputs (ids, positions, block tables) are int32 in backend memory.
 * Ops validate nothing the model layer already guarantees; they return an
 * error only for conditions the caller cannot see (allocation, device). */
#ifndef DSA_KERNELS_BACKEND_H
#define DSA_KERNELS_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "common/dtype.h"
#include "common/error.h"

/* A weight matrix W[rows, cols] (out x in, row-major as stored), possibly a
 * slice of a stored tensor.  I8 (--lm-head-dtype int8, CPU only) has F32
 * scales laid out as F8_E4M3's: W[i,j] = q[i,j] * S[...] (one per row).  For F8_E4M3 the stored tensor has F32 block
 * scales S[ceil(R/128), ceil(C/128)] (R x C the stored tensor's shape) and
 * W[i,j] = e4m3(q[i,j]) * S[(row0+i)/block_rows, (col0+j)/block_cols].
 * A vector (norm weight, bias) is a weight with rows == 1. */
typedef struct dsa_weight {
    dsa_dtype dtype;        /* F32, F16, BF16, F8_E4M3, or I32 for AWQ int4 */
    int64_t rows, cols;     /* this slice's shape */
    int64_t ld;             /* elements between consecutive rows (>= cols) */
    const void *data;       /* element (0,0) of the slice */
    const float *scale;     /* F8 only: S[0,0] of the stored tensor */
    int64_t scale_ld;       /* F8 only: floats between scale rows */
    int64_t row0, col0;     /* the slice's origin in the stored tensor */
    int64_t block_rows, block_cols; /* F8 only: 128 x 128 */
    /* AWQ int4 (dtype I32), AutoAWQ's GEMM layout for a stored linear of
     * R outputs and C inputs, group g: data is qweight int32 [C, R/8] (ld
     * = R/8 words), awq_zeros qzeros int32 [C/g, R/8], awq_scales F16
     * [C/g, R]; all three point at the stored tensors' element 0, and the
     * slice starts at (row0, col0).  With o = row0 + i, n = col0 + j and
     * k = the nibble holding column o % 8 (AutoAWQ packs columns
     * 0,2,4,6,1,3,5,7 into nibbles 0..7):
     *   W[i, j] = (nib_k(qweight[n][o/8]) - nib_k(qzeros[n/g][o/8]))
     *             * scales[n/g][o]. */
    const int32_t *awq_zeros;
    const uint16_t *awq_scales;
    int64_t awq_group;
    /* CPU backend with int8 activations on: the AWQ weight repacked by
     * weight_prepare (kernels/cpu/cpu_internal.h dsa_cpu_awq8), owned by
     * the backend until weight_release; NULL otherwise. */
    const void *awq8;
} dsa_weight;

/* The nibble of an AWQ word that holds column c (0..7) of its 8. */
static inline int dsa_awq_nibble(int64_t c)
{
    static const int inv[8] = {0, 4, 1, 5, 2, 6, 3, 7};
    return inv[c & 7];
}

/* Element (i, j) dequantised to F32 (slow path for tests and references). */
float dsa_weight_get(const dsa_weight *w, int64_t i, int64_t j);

typedef struct dsa_backend dsa_backend;

/* out[t, :] = table[ids[t] - row_begin, :] when row_begin <= ids[t] <
 * row_begin + table->rows, else 0 (vocab-parallel embedding: the ranks'
 * partial rows are summed by an all-reduce). */
typedef struct dsa_embed_params {
    void *out;                  /* [n_tokens, dim] act */
    const dsa_weight *table;    /* [rows, dim] */
    const int32_t *ids;         /* [n_tokens] */
    int64_t n_tokens;
    int64_t row_begin;
} dsa_embed_params;

/* With residual == NULL: out = w * x / sqrt(mean(x^2) + eps).
 * With residual: residual += x first (in place), then out = norm(residual).
 * x and out may alias. */
typedef struct dsa_rmsnorm_params {
    void *out;                  /* [n_rows, dim], row stride ld_out */
    const void *x;              /* [n_rows, dim], row stride ld_x */
    void *residual;             /* NULL or [n_rows, dim], row stride dim */
    const dsa_weight *weight;   /* [1, dim] */
    int64_t n_rows, dim, ld_x, ld_out;
    float eps;
    /* Optional (NULL: not written): out as stored, quantised for the FP8
     * linear that reads it next (MODEL_SPEC.md §8, DeepSeek's act_quant):
     * per 1x128 block of a row, amax clamped to >= 1e-4, scale = amax /
     * 448, q = e4m3(out / scale) round-to-nearest with saturation.
     * out_q [n_rows, dim] bytes; out_scale [n_rows * ceil(dim / 128)] F32
     * in the layout the backend's linear reads as x_scale (CPU: row-major,
     * [row][block]). */
    uint8_t *out_q;
    float *out_scale;
} dsa_rmsnorm_params;

/* out[m, n] = sum_k x[m, k] * W[n, k]  (y = x W^T), F32 accumulation.
 * With accumulate != 0: out += x W^T.  With out_f32 != 0 out is F32
 * whatever the activation dtype (router and lm_head logits, which the
 * spec keeps in F32: a BF16 round would reorder near-tied experts and
 * tokens). */
typedef struct dsa_linear_params {
    void *out;                  /* [m, w->rows], row stride ld_out; act, or F32 with out_f32 */
    const void *x;              /* [m, w->cols], row stride ld_x */
    const dsa_weight *w;
    int64_t m, ld_x, ld_out;
    int accumulate;
    int out_f32;
    /* Optional: x as the rmsnorm that wrote it quantised it (out_q,
     * out_scale of dsa_rmsnorm_params; x is then [m, w->cols] contiguous).
     * Read only by a backend with norm_quant set, whose FP8 path would
     * otherwise quantise x itself into the same values. */
    const uint8_t *x_q;
    const float *x_scale;
} dsa_linear_params;

/* Rotates rot_dim values of each head in place as interleaved pairs
 * (x[2i], x[2i+1]) by angle pos * inv_freq[i] (MODEL_SPEC.md §4), or with
 * neox != 0 as the pairs (x[i], x[i + rot_dim/2]) (transformers'
 * rotate_half, used by Qwen2 and Llama). */
typedef struct dsa_rope_params {
    void *x;                    /* element 0 of the rotary part of token 0 head 0 */
    const int32_t *positions;   /* [n_tokens] */
    const float *inv_freq;      /* [rot_dim / 2] backend memory */
    int64_t n_tokens, n_heads, rot_dim;
    int64_t ld_token, ld_head;  /* element strides */
    int neox;
} dsa_rope_params;

/* A layer's paged latent cache: [n_blocks][block_size][width] with width =
 * kv_lora_rank + rope_dim; token slot s lives at block s / block_size,
 * offset s % block_size. */
typedef struct dsa_kv_layer {
    void *data;                 /* backend memory, cache dtype (= act dtype) */
    int64_t n_blocks, block_size, width;
} dsa_kv_layer;

/* cache[slots[t]] = [c_kv[t] (kv_rank) | k_pe[t] (rope_dim)]. */
typedef struct dsa_kv_store_params {
    const dsa_kv_layer *cache;
    const void *c_kv;           /* [n_tokens, kv_rank], row stride ld_c */
    const void *k_pe;           /* [n_tokens, rope_dim], row stride ld_k */
    const int32_t *slots;       /* [n_tokens] */
    int64_t n_tokens, kv_rank, rope_dim, ld_c, ld_k;
} dsa_kv_store_params;

/* Absorbed MLA attention over the paged latent cache (MODEL_SPEC.md §3).
 * For token t of sequence s = seq[t] at position p = pos[t], head h:
 *   score(j) = scale * (q_lat[t,h] . c_kv(j) + q_pe[t,h] . k_pe(j)), j <= p,
 *   where cache entry j of sequence s is slot
 *   block_tables[s * ld_block_table + j / block_size] * block_size + j % block_size;
 *   out[t,h] = sum_j softmax(score)(j) * c_kv(j)   (kv_rank values).
 * The cache must already hold entries 0..p of every sequence (kv_store of
 * this step's tokens comes first), which gives causal prefill and decode
 * in one op for any mix of sequences. */
typedef struct dsa_mla_attn_params {
    void *out;                  /* [n_tokens, n_heads, kv_rank] */
    const void *q_lat;          /* [n_tokens, n_heads, kv_rank] */
    const void *q_pe;           /* [n_tokens, n_heads, rope_dim], strides below */
    int64_t ld_qpe_token, ld_qpe_head;
    const dsa_kv_layer *cache;
    const int32_t *seq;         /* [n_tokens] sequence index */
    const int32_t *pos;         /* [n_tokens] position in its sequence */
    const int32_t *block_tables;/* [n_seqs, ld_block_table] block ids */
    int64_t ld_block_table;
    int64_t n_tokens, n_heads, kv_rank, rope_dim;
    float scale;
} dsa_mla_attn_params;

/* Paged grouped-query attention (Qwen2, Llama).  The layer's cache entry
 * (width = 2 * n_kv_heads * head_dim) is [k | v], each [n_kv_heads,
 * head_dim], stored by kv_store with kv_rank = rope_dim = n_kv_heads *
 * head_dim.  For token t of sequence seq[t] at position p = pos[t] and
 * query head h, with kv head g = h / (n_heads / n_kv_heads):
 *   out[t,h] = sum_{j<=p} softmax_j(scale * q[t,h] . k_j[g]) v_j[g],
 * entry j found through the block table as in dsa_mla_attn_params. */
typedef struct dsa_gqa_attn_params {
    void *out;                  /* [n_tokens, n_heads, head_dim] */
    const void *q;              /* [n_tokens, n_heads, head_dim], token stride ld_q */
    int64_t ld_q;
    const dsa_kv_layer *cache;
    const int32_t *seq;         /* [n_tokens] */
    const int32_t *pos;         /* [n_tokens] */
    const int32_t *block_tables;/* [n_seqs, ld_block_table] */
    int64_t ld_block_table;
    int64_t n_tokens, n_heads, n_kv_heads, head_dim;
    float scale;
} dsa_gqa_attn_params;

/* Non-absorbed causal attention over a ragged batch of prompt chunks (the
 * MLA form before absorption, MODEL_SPEC.md §3): chunk s has query rows
 * qo_indptr[s] .. qo_indptr[s + 1] - 1, the last qo_len of its kv_len keys
 * kv_indptr[s] .. kv_indptr[s + 1] - 1 (its cached context, then itself).
 * With k[j, h] = [k_nope[j, h] | k_pe[j]] (k_pe shared by the heads), query
 * row i of the chunk attends keys j <= i + kv_len - qo_len:
 *   out[r, h] = sum_j softmax_j(scale * q[r, h] . k[j, h]) v[j, h].
 * q is [nope | rope] per head, as the model's q buffer holds it.  Strides
 * in elements. */
typedef struct dsa_mha_prefill_params {
    void *out;                  /* [n_q, n_heads, v_dim] contiguous */
    const void *q;              /* [n_q, n_heads, nope + rope] */
    const void *k_nope;         /* [n_kv, n_heads, nope] */
    const void *k_pe;           /* [n_kv, rope] */
    const void *v;              /* [n_kv, n_heads, v_dim] */
    int64_t ld_q_token, ld_q_head, ld_k_token, ld_k_head, ld_kpe, ld_v_token, ld_v_head;
    const int32_t *qo_indptr;   /* [n_seqs + 1] backend memory */
    const int32_t *kv_indptr;   /* [n_seqs + 1] backend memory */
    int64_t n_seqs, n_heads, nope_dim, rope_dim, v_dim;
    int64_t n_q, n_kv;          /* the last indptr entries */
    float scale;
} dsa_mha_prefill_params;

/* x[t, i] += bias[i] for n_rows rows of dim values (row stride ld). */
typedef struct dsa_bias_add_params {
    void *x;
    const dsa_weight *bias;     /* [1, dim] */
    int64_t n_rows, dim, ld;
} dsa_bias_add_params;

/* The two absorptions with kv_b_proj viewed as [n_heads, nope + v, kv_rank]:
 * q_lat[t,h,:] = W_UK,h^T q_nope[t,h,:]   (W_UK,h = rows 0..nope-1 of head h)
 * o[t,h,:]     = W_UV,h obar[t,h,:]       (W_UV,h = rows nope..nope+v-1). */
typedef struct dsa_mla_absorb_params {
    void *out;                  /* q: [n_tokens, n_heads, kv_rank]; o: [n_tokens, n_heads, v_dim] */
    const void *in;             /* q: q_nope with strides ld_in_token, ld_in_head; o: obar [n_tokens, n_heads, kv_rank] */
    int64_t ld_in_token, ld_in_head;
    const dsa_weight *w_kvb;    /* [n_heads * (nope + v), kv_rank] (this rank's heads) */
    int64_t n_tokens, n_heads, nope_dim, v_dim, kv_rank;
} dsa_mla_absorb_params;

/* out[t, i] = silu(gate[t, i]) * up[t, i]. */
typedef struct dsa_silu_mul_params {
    void *out;
    const void *gate, *up;
    int64_t n_rows, dim, ld;    /* ld: row stride of all three */
} dsa_silu_mul_params;

/* out[i] = a[i] + b[i]. */
typedef struct dsa_add_params {
    void *out;
    const void *a, *b;
    int64_t n;
} dsa_add_params;

/* The TP ranks' lm_head slices in vocabulary order, one op instead of a
 * copy per (row, rank): in holds the all-gathered padded slices, rank r's
 * [n_rows, ld] block at r * n_rows * ld, and
 *   out[i, v] = in[(v / ld) * n_rows * ld + i * ld + v % ld],  v < vocab. */
typedef struct dsa_vocab_gather_params {
    float *out;                 /* [n_rows, vocab] F32 backend memory */
    const float *in;            /* [n_parts, n_rows, ld] F32 backend memory */
    int64_t n_rows, ld, n_parts, vocab; /* vocab <= n_parts * ld */
} dsa_vocab_gather_params;

/* MoE routing (MODEL_SPEC.md §5) from the gate's logits. */
typedef struct dsa_router_params {
    int32_t *ids;               /* [n_tokens, top_k] chosen experts */
    float *weights;             /* [n_tokens, top_k] their weights (scaled) */
    const void *logits;         /* [n_tokens, n_experts] act, or F32 with logits_f32 */
    const float *bias;          /* [n_experts] e_score_correction_bias or NULL */
    int64_t n_tokens, n_experts;
    int top_k, n_group, topk_group;
    int sigmoid;                /* 1: sigmoid scores, 0: softmax */
    int grouped;                /* 1: group-limited selection */
    int norm_topk_prob;
    float routed_scaling_factor;
    int logits_f32;
} dsa_router_params;

typedef struct dsa_expert {
    dsa_weight gate, up, down;  /* [I, D], [I, D], [D, I] (I this rank's slice) */
} dsa_expert;

/* Routed experts: out[t] = sum_k weights[t,k] * E_{ids[t,k]}(x[t]) with
 * E(x) = down(silu(gate x) * up x).  With accumulate: out += that. */
typedef struct dsa_moe_params {
    void *out;                  /* [n_tokens, dim] */
    const void *x;              /* [n_tokens, dim] */
    const int32_t *ids;         /* [n_tokens, top_k] */
    const float *weights;       /* [n_tokens, top_k] */
    const dsa_expert *experts;  /* [n_experts] host array of weights */
    int64_t n_tokens, dim, inter, n_experts;
    int top_k;
    int accumulate;
} dsa_moe_params;

/* Per-row sampling parameters.  temperature <= 0 means greedy (argmax,
 * lowest index on ties).  top_k <= 0, top_p >= 1 and min_p <= 0 disable
 * those filters.  The random draw is a function of (seed, step) alone, so a
 * sequence samples the same tokens whatever it is batched with. */
typedef struct dsa_sample_row {
    float temperature, top_p, min_p;
    int32_t top_k;
    uint64_t seed;
    uint64_t step;
} dsa_sample_row;

typedef struct dsa_sample_params {
    int32_t *out_ids;           /* [n_rows] host memory */
    float *out_logprobs;        /* [n_rows] or NULL: log-softmax of the chosen id (T=1) */
    const float *logits;        /* [n_rows, vocab] F32, backend memory */
    const dsa_sample_row *rows; /* [n_rows] host */
    int64_t n_rows, vocab;
} dsa_sample_params;

/* Per-row logit controls (vLLM's order): with n_allowed > 0 every id not
 * in allowed becomes -inf; then banned ids become -inf; then bias_values
 * are added at bias_ids.  Ids are inside [0, vocab); allowed and bias_ids
 * are sorted ascending and unique (the head normalises them).  Arrays are
 * host memory. */
typedef struct dsa_logit_ctl {
    const int32_t *allowed;     /* [n_allowed] */
    const int32_t *banned;      /* [n_banned] */
    const int32_t *bias_ids;    /* [n_bias] */
    const float *bias_values;   /* [n_bias] */
    int32_t n_allowed, n_banned, n_bias;
} dsa_logit_ctl;

/* The controls of one host F32 row in place (the reference every backend's
 * logit_ctl matches; the worker also uses it on host rows). */
void dsa_logit_ctl_row(float *logits, int64_t vocab, const dsa_logit_ctl *c);

typedef struct dsa_logit_ctl_params {
    float *logits;              /* [n_rows, vocab] F32 backend memory, in place */
    const dsa_logit_ctl *rows;  /* [n_rows] host; a row with no ids is unchanged */
    int64_t n_rows, vocab;
} dsa_logit_ctl_params;

/* Structured-output bitmask of one row: bit (v & 31) of bits[v >> 5] set
 * allows id v; a cleared bit, and every id at or past n_words * 32, makes
 * the logit -inf.  A row with n_words == 0 is unchanged.  bits is host
 * memory (the head's packed grammar mask, vLLM's token bitmask layout). */
typedef struct dsa_logit_mask {
    const uint32_t *bits;       /* [n_words] */
    int32_t n_words;
} dsa_logit_mask;

/* The mask of one host F32 row in place (the reference every backend's
 * mask op matches; the worker also uses it on host rows). */
void dsa_logit_mask_row(float *logits, int64_t vocab, const dsa_logit_mask *m);

typedef struct dsa_logit_mask_params {
    float *logits;              /* [n_rows, vocab] F32 backend memory, in place */
    const dsa_logit_mask *rows; /* [n_rows] host */
    int64_t n_rows, vocab;
} dsa_logit_mask_params;

/* ---- Sampling state on the backend (logits never leave it) -------------
 * Per-sequence token counts for the penalties live in backend memory as a
 * table of n_slots rows (a row per running sequence, reused when it ends):
 * out[slot, v] = times v was generated (saturating at 65535), prompt bit v
 * of slot set when v is in the prompt. */
typedef struct dsa_token_counts {
    uint16_t *out;              /* [n_slots, vocab] backend memory */
    uint32_t *prompt;           /* [n_slots, prompt_ld] backend memory, bit v & 31 of word v >> 5 */
    int64_t n_slots, vocab, prompt_ld;
} dsa_token_counts;

/* Adds n ids to the counts: out[slots[i], ids[i]] += 1, or with prompt != 0
 * sets their prompt bits.  With reset != 0 the slots named are cleared
 * first (a new sequence in a reused slot; then ids may be empty).  Arrays
 * are host memory; ids are inside [0, vocab). */
typedef struct dsa_count_add_params {
    const dsa_token_counts *counts;
    const int32_t *slots;       /* [n] */
    const int32_t *ids;         /* [n] */
    int64_t n;
    int prompt, reset;
} dsa_count_add_params;

/* vLLM's penalties on one row of logits with the counts of its slot plus,
 * for a row verifying drafts, the drafts before it counted as generated
 * (extra): with n = out[slot, v] + occurrences of v in extra and seen = n
 * > 0 or v in the prompt, l = l / rep (l > 0) or l * rep (l <= 0) when
 * seen, then l -= frequency * n and l -= presence when n > 0. */
typedef struct dsa_penalty_row {
    int32_t slot;               /* -1: no penalties on this row */
    float repetition, presence, frequency;
    const int32_t *extra;       /* [n_extra] host */
    int32_t n_extra;
} dsa_penalty_row;

/* The penalties of one host F32 row with its slot's counts (out: [vocab],
 * prompt: its bit words): the reference every backend's penalties op
 * matches. */
void dsa_penalty_row_apply(float *logits, int64_t vocab, const dsa_penalty_row *r,
                           const uint16_t *out, const uint32_t *prompt);

typedef struct dsa_penalty_params {
    float *logits;              /* [n_rows, vocab] F32 backend memory, in place */
    const dsa_penalty_row *rows; /* [n_rows] host */
    const dsa_token_counts *counts;
    int64_t n_rows, vocab;
} dsa_penalty_params;

/* Log-softmax logprobs of chosen ids and the k most likely ids per row
 * (logit descending, lowest id first on ties), computed where the logits
 * are: only these values come back.  rank (optional) = 1 + ids with a
 * strictly larger logit than the chosen one. */
typedef struct dsa_logprobs_params {
    float *out_logprob;         /* [n_rows] host */
    int32_t *out_rank;          /* [n_rows] host or NULL */
    int32_t *out_n_top;         /* [n_rows] host: min(k[i], vocab) */
    int32_t *out_top_ids;       /* [n_rows, k_max] host */
    float *out_top_logprobs;    /* [n_rows, k_max] host */
    const float *logits;        /* [n_rows, vocab] F32 backend memory */
    const int32_t *ids;         /* [n_rows] host: the chosen ids */
    const int32_t *k;           /* [n_rows] host: 0 <= k[i] <= k_max */
    int64_t n_rows, vocab;
    int32_t k_max;
} dsa_logprobs_params;

/* Logprobs of one host F32 row (the reference of the logprobs op, also the
 * worker's host path): writes *lp, *rank (when not NULL) and the top
 * min(k, vocab) ids and logprobs; returns how many. */
int32_t dsa_logprobs_row(const float *logits, int64_t vocab, int32_t id, int32_t k, float *lp,
                         int32_t *rank, int32_t *top_ids, float *top_lps);

typedef struct dsa_backend_ops {
    const char *name;
    void (*destroy)(dsa_backend *be);
    /* Memory.  alloc returns zeroed memory aligned to 64 bytes. */
    dsa_err (*alloc)(dsa_backend *be, size_t bytes, void **out);
    void (*free)(dsa_backend *be, void *p);
    dsa_err (*upload)(dsa_backend *be, void *dst, const void *src, size_t bytes);
    dsa_err (*download)(dsa_backend *be, void *dst, const void *src, size_t bytes);
    /* Backend memory to backend memory. */
    dsa_err (*copy)(dsa_backend *be, void *dst, const void *src, size_t bytes);
    /* Activations <-> host F32 (n elements). */
    dsa_err (*act_from_f32)(dsa_backend *be, void *dst, const float *src, size_t n);
    dsa_err (*act_to_f32)(dsa_backend *be, float *dst, const void *src, size_t n);
    /* Makes a host weight usable by the ops (GPU: copies to the device; CPU:
     * no-op).  *w is rewritten in place. */
    dsa_err (*weight_prepare)(dsa_backend *be, dsa_weight *w);
    void (*weight_release)(dsa_backend *be, dsa_weight *w);

    dsa_err (*embed)(dsa_backend *be, const dsa_embed_params *p);
    dsa_err (*rmsnorm)(dsa_backend *be, const dsa_rmsnorm_params *p);
    dsa_err (*linear)(dsa_backend *be, const dsa_linear_params *p);
    dsa_err (*rope)(dsa_backend *be, const dsa_rope_params *p);
    dsa_err (*kv_store)(dsa_backend *be, const dsa_kv_store_params *p);
    dsa_err (*mla_attn)(dsa_backend *be, const dsa_mla_attn_params *p);
    dsa_err (*mla_absorb_q)(dsa_backend *be, const dsa_mla_absorb_params *p);
    dsa_err (*mla_absorb_o)(dsa_backend *be, const dsa_mla_absorb_params *p);
    dsa_err (*silu_mul)(dsa_backend *be, const dsa_silu_mul_params *p);
    dsa_err (*add)(dsa_backend *be, const dsa_add_params *p);
    dsa_err (*router)(dsa_backend *be, const dsa_router_params *p);
    dsa_err (*moe)(dsa_backend *be, const dsa_moe_params *p);
    dsa_err (*sample)(dsa_backend *be, const dsa_sample_params *p);
    dsa_err (*logit_ctl)(dsa_backend *be, const dsa_logit_ctl_params *p);
    dsa_err (*mask)(dsa_backend *be, const dsa_logit_mask_params *p);
    /* Sampling state on the backend (NULL where absent: the worker then
     * applies penalties and logprobs on host copies of the logits). */
    dsa_err (*count_add)(dsa_backend *be, const dsa_count_add_params *p);
    dsa_err (*penalties)(dsa_backend *be, const dsa_penalty_params *p);
    dsa_err (*logprobs)(dsa_backend *be, const dsa_logprobs_params *p);
    /* Dense GQA architectures (NULL on a backend without them). */
    dsa_err (*gqa_attn)(dsa_backend *be, const dsa_gqa_attn_params *p);
    dsa_err (*bias_add)(dsa_backend *be, const dsa_bias_add_params *p);
    /* Optional (NULL: absorbed MLA for every chunk).  Returns
     * DSA_UNSUPPORTED for head sizes it has no kernel for (the model then
     * stays on absorbed MLA). */
    dsa_err (*mha_prefill)(dsa_backend *be, const dsa_mha_prefill_params *p);
    /* Optional (NULL: the model copies the slices row by row). */
    dsa_err (*vocab_gather)(dsa_backend *be, const dsa_vocab_gather_params *p);
    /* Waits for queued work (GPU stream); CPU: no-op. */
    dsa_err (*sync)(dsa_backend *be);

    /* Optional, NULL where the backend has no graphs (CPU): the ops queued
     * between graph_begin and graph_end are recorded, not run, as graph
     * `key` (a batch-size bucket, say; an older graph of that key is
     * replaced), and graph_replay runs it again.  Between begin and end only
     * ops may be called (alloc, free, upload, download, copy-to-host and
     * sync fail); a replay reads and writes the very buffers the recorded
     * ops named, so a caller refreshes their contents before replaying. */
    dsa_err (*graph_begin)(dsa_backend *be);
    dsa_err (*graph_end)(dsa_backend *be, int64_t key);
    dsa_err (*graph_replay)(dsa_backend *be, int64_t key);
} dsa_backend_ops;

struct dsa_backend {
    const dsa_backend_ops *ops;
    dsa_dtype act_dtype;        /* F32 (CPU) or BF16 (GPU) */
    size_t act_size;            /* bytes per activation element */
    /* 1: the FP8 linears read dsa_linear_params.x_q and the rmsnorm writes
     * out_q, so the model has its norms quantise the activations the next
     * FP8 linear takes (one launch fewer per such linear); 0: the linears
     * quantise their inputs themselves (the CPU computes in F32). */
    int norm_quant;
    /* 1: the model runs prompt chunks of at least DSA_MHA_PREFILL_MIN
     * query tokens through mha_prefill (set where the op is the faster
     * form: CUDA); 0: absorbed MLA only (CPU by default, whose golden
     * outputs are the absorbed form's; a test sets it to compare). */
    int mha_prefill_on;
};

/* The chunk length from which non-absorbed prefill takes fewer FLOPs than
 * absorbed MLA at DeepSeek-V3's shapes (docs/design.md "Prefill attention"). */
#define DSA_MHA_PREFILL_MIN 256

/* Creates the CPU backend with n_threads workers (0: one per core). */
dsa_err dsa_backend_cpu_create(int n_threads, dsa_backend **out);

/* --cpu-int8-activations: with on = 1, weight_prepare repacks AWQ int4
 * weights so their linears quantise activations to int8 (blocks of 32)
 * and run integer dot products (kernels/cpu/cpu_awq_int8.c); call before
 * preparing weights.  Off (the default) keeps the F32 reference path. */
void dsa_backend_cpu_set_int8_activations(dsa_backend *be, int on);

/* 1 when the backend records and replays graphs (graph_begin etc. set). */
static inline int dsa_backend_has_graphs(const dsa_backend *be)
{
    return be->ops->graph_begin && be->ops->graph_end && be->ops->graph_replay;
}

static inline void dsa_backend_destroy(dsa_backend *be)
{
    if (be)
        be->ops->destroy(be);
}

#endif
