/* cuda_gqa_attn.cu - paged grouped-query attention (backend.h
 * dsa_gqa_attn_params) for the dense architectures.
 *
 * A plain kernel, compiled in every CUDA build and not yet run on a GPU:
 * one block per (token, query head), the block's threads spread over
 * head_dim (at most GQA_MAX_HD_PER_THREAD values each), one block-wide dot
 * product per cache entry and an online softmax kept identically in every
 * thread.  It is the correctness baseline; FlashInfer's paged decode and
 * prefill (which cover GQA) replace it in a later issue. */
#include "kernels/cuda/cuda_common.cuh"

#define GQA_THREADS 128
#define GQA_MAX_HD_PER_THREAD 4 /* head_dim <= 512 */

static __global__ void gqa_kernel(bf16 *out, const bf16 *q, int64_t ld_q, const bf16 *cache,
                                  int64_t block_size, int64_t width, const int32_t *seq,
                                  const int32_t *pos, const int32_t *block_tables,
                                  int64_t ld_bt, int64_t n_heads, int64_t n_kv_heads,
                                  int64_t hd, float scale)
{
    __shared__ float sh[32];
    int64_t t = blockIdx.x / n_heads, h = blockIdx.x % n_heads;
    int64_t g = h / (n_heads / n_kv_heads), kvw = n_kv_heads * hd;
    const bf16 *qh = q + t * ld_q + h * hd;
    const int32_t *bt = block_tables + (int64_t)seq[t] * ld_bt;
    int64_t n_ctx = (int64_t)pos[t] + 1;
    float qv[GQA_MAX_HD_PER_THREAD], acc[GQA_MAX_HD_PER_THREAD];
    for (int i = 0; i < GQA_MAX_HD_PER_THREAD; i++) {
        int64_t d = threadIdx.x + (int64_t)i * GQA_THREADS;
        qv[i] = d < hd ? __bfloat162float(qh[d]) : 0.0f;
        acc[i] = 0.0f;
    }
    float mx = -INFINITY, l = 0.0f;
    for (int64_t j = 0; j < n_ctx; j++) {
        int64_t slot = (int64_t)bt[j / block_size] * block_size + j % block_size;
        const bf16 *k = cache + slot * width + g * hd, *v = k + kvw;
        float part = 0.0f;
        for (int i = 0; i < GQA_MAX_HD_PER_THREAD; i++) {
            int64_t d = threadIdx.x + (int64_t)i * GQA_THREADS;
            if (d < hd)
                part += qv[i] * __bfloat162float(k[d]);
        }
        float s = scale * block_sum(part, sh);
        float m2 = fmaxf(mx, s), corr = expf(mx - m2), e = expf(s - m2);
        l = l * corr + e;
        for (int i = 0; i < GQA_MAX_HD_PER_THREAD; i++) {
            int64_t d = threadIdx.x + (int64_t)i * GQA_THREADS;
            if (d < hd)
                acc[i] = acc[i] * corr + e * __bfloat162float(v[d]);
        }
        mx = m2;
    }
    bf16 *o = out + (t * n_heads + h) * hd;
    for (int i = 0; i < GQA_MAX_HD_PER_THREAD; i++) {
        int64_t d = threadIdx.x + (int64_t)i * GQA_THREADS;
        if (d < hd)
            o[d] = __float2bfloat16(acc[i] / l);
    }
}

extern "C" dsa_err dsa_cuda_gqa_attn(dsa_backend *be_, const dsa_gqa_attn_params *p)
{
    dsa_cuda_backend *be = dsa_cuda_be(be_);
    if (p->n_tokens <= 0)
        return DSA_OK;
    if (p->head_dim > GQA_THREADS * GQA_MAX_HD_PER_THREAD)
        return dsa_fail(DSA_UNSUPPORTED, "cuda gqa_attn: head_dim %lld above %d",
                        (long long)p->head_dim, GQA_THREADS * GQA_MAX_HD_PER_THREAD);
    const dsa_kv_layer *c = p->cache;
    gqa_kernel<<<(unsigned)(p->n_tokens * p->n_heads), GQA_THREADS, 0, be->stream>>>(
        (bf16 *)p->out, (const bf16 *)p->q, p->ld_q, (const bf16 *)c->data, c->block_size,
        c->width, p->seq, p->pos, p->block_tables, p->ld_block_table, p->n_heads,
        p->n_kv_heads, p->head_dim, p->scale);
    return DSA_CUDA_LAUNCHED();
}
