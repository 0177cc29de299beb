/* cuda_mha_prefill.cu - non-absorbed causal prefill attention (backend.h
 * dsa_mha_prefill_params) on FlashInfer's FA3 ragged prefill (fi_prefill.cu).
 *
 * FA3 reads k as [n_kv, n_heads, 192] with one stride per token and head,
 * so k_pe, which the model keeps once per token, cannot be handed over as
 * a stride: a copy kernel writes k = [k_nope,h | k_pe] for every head into
 * scratch first (n_kv x n_heads x 384 bytes).  q, v and out go through as
 * they are.  Only DeepSeek-V3's head sizes have a kernel (nope 128, rope
 * 64, v 128); other sizes are refused with DSA_UNSUPPORTED. */
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/fi_prefill.h"

#include <string.h>

#define MHA_NOPE 128
#define MHA_ROPE 64

/* One thread per 8 BF16 values (16 bytes) of k: 24 per (token, head). */
static __global__ void mha_k_kernel(bf16 *k, const bf16 *k_nope, const bf16 *k_pe,
                                    int64_t ld_k_token, int64_t ld_k_head, int64_t ld_kpe,
                                    int64_t n_kv, int64_t n_heads)
{
    const int64_t per = DSA_FI_PREFILL_QK / 8;
    int64_t n = n_kv * n_heads * per;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t c = (i % per) * 8, th = i / per, t = th / n_heads, h = th % n_heads;
        const bf16 *src = c < MHA_NOPE ? k_nope + t * ld_k_token + h * ld_k_head + c
                                       : k_pe + t * ld_kpe + (c - MHA_NOPE);
        bf16 *dst = k + th * DSA_FI_PREFILL_QK + c;
        for (int e = 0; e < 8; e++)
            dst[e] = src[e];
    }
}

extern "C" dsa_err dsa_cuda_mha_prefill(dsa_backend *be_, const dsa_mha_prefill_params *p)
{
    dsa_cuda_backend *be = dsa_cuda_be(be_);
    if (p->nope_dim != MHA_NOPE || p->rope_dim != MHA_ROPE || p->v_dim != DSA_FI_PREFILL_VO)
        return dsa_fail(DSA_UNSUPPORTED, "mha prefill: heads of nope %lld, rope %lld, v %lld "
                        "(the FA3 kernel is built for 128, 64, 128)", (long long)p->nope_dim,
                        (long long)p->rope_dim, (long long)p->v_dim);
    if (p->n_seqs <= 0 || p->n_q <= 0)
        return DSA_OK;
    void *k;
    dsa_err err;
    size_t bytes = (size_t)(p->n_kv * p->n_heads * DSA_FI_PREFILL_QK) * sizeof(bf16);
    if ((err = dsa_cuda_scratch(be, DSA_CUDA_SCR_MHA, bytes, &k)))
        return err;
    unsigned g = dsa_cuda_blocks(p->n_kv * p->n_heads * (DSA_FI_PREFILL_QK / 8), 256);
    mha_k_kernel<<<g > 8192u ? 8192u : g, 256, 0, be->stream>>>(
        (bf16 *)k, (const bf16 *)p->k_nope, (const bf16 *)p->k_pe, p->ld_k_token, p->ld_k_head,
        p->ld_kpe, p->n_kv, p->n_heads);
    if ((err = DSA_CUDA_LAUNCHED()))
        return err;
    dsa_fi_prefill_params fp;
    memset(&fp, 0, sizeof fp);
    fp.out = p->out;
    fp.q = p->q;
    fp.k = k;
    fp.v = p->v;
    fp.ld_o_token = p->n_heads * p->v_dim;  /* out is contiguous (backend.h) */
    fp.ld_o_head = p->v_dim;
    fp.ld_q_token = p->ld_q_token;
    fp.ld_q_head = p->ld_q_head;
    fp.ld_k_token = p->n_heads * DSA_FI_PREFILL_QK;
    fp.ld_k_head = DSA_FI_PREFILL_QK;
    fp.ld_v_token = p->ld_v_token;
    fp.ld_v_head = p->ld_v_head;
    fp.qo_indptr = p->qo_indptr;
    fp.kv_indptr = p->kv_indptr;
    fp.n_seqs = p->n_seqs;
    fp.n_heads = p->n_heads;
    fp.n_q = p->n_q;
    fp.n_kv = p->n_kv;
    fp.scale = p->scale;
    return dsa_fi_prefill(be_, &fp);
}
