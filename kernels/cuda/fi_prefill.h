/* fi_prefill.h - non-absorbed causal MHA for long prompts on FlashInfer's
 * Hopper FA3 ragged prefill (fi_prefill.cu): q/k heads of 192 (128 nope +
 * 64 rope), v and output heads of 128, BF16, a ragged batch of sequences
 * whose query rows are the last qo_len of their kv_len keys (a prompt
 * chunk after its cached context).
 *
 * Reached through the backend's mha_prefill op (cuda_mha_prefill.cu),
 * which the forward pass calls for steps of long prompt chunks after
 * materialising each chunk's context K and V with kv_b_proj
 * (worker/model_mha.c); the parity group "prefill" (tests/gpu) also runs
 * it directly. */
#ifndef DSA_KERNELS_CUDA_FI_PREFILL_H
#define DSA_KERNELS_CUDA_FI_PREFILL_H

#include <stdint.h>

#include "kernels/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DSA_FI_PREFILL_QK 192
#define DSA_FI_PREFILL_VO 128

/* For sequence s, query rows qo_indptr[s] .. qo_indptr[s + 1] - 1 and keys
 * kv_indptr[s] .. kv_indptr[s + 1] - 1 (kv_len >= qo_len), query row i of
 * the sequence attends keys j <= i + kv_len - qo_len:
 *   out[r, h] = sum_j softmax_j(scale * q[r, h] . k[j, h]) v[j, h].
 * Strides in elements; every row and head start 16-byte aligned. */
typedef struct dsa_fi_prefill_params {
    void *out;                  /* [n_q, n_heads, 128] */
    const void *q;              /* [n_q, n_heads, 192] */
    const void *k;              /* [n_kv, n_heads, 192] */
    const void *v;              /* [n_kv, n_heads, 128] */
    int64_t ld_o_token, ld_o_head, ld_q_token, ld_q_head;
    int64_t ld_k_token, ld_k_head, ld_v_token, ld_v_head;
    const int32_t *qo_indptr;   /* [n_seqs + 1] device */
    const int32_t *kv_indptr;   /* [n_seqs + 1] device */
    int64_t n_seqs, n_heads;
    int64_t n_q, n_kv;          /* totals (the last indptr entries) */
    float scale;
} dsa_fi_prefill_params;

dsa_err dsa_fi_prefill(dsa_backend *be, const dsa_fi_prefill_params *p);

#ifdef __cplusplus
}
#endif

#endif
