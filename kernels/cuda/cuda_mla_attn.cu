/* cuda_mla_attn.cu - absorbed MLA attention over the paged latent cache
 * (backend.h dsa_mla_attn_params, MODEL_SPEC.md §3): MQA with a
 * (kv_rank + rope)-wide key [c_kv | k_pe] and the kv_rank-wide value c_kv.
 *
 * Grid (token, group of MA_HB heads, split).  A block walks chunks of
 * MA_JC cache entries of its token's sequence (chunk c goes to split
 * c % n_splits, so splits balance whatever the lengths, which only the
 * device knows), staging each chunk in shared memory once for all its
 * heads.  Scores: a half-warp per head, a lane per entry, full dot product
 * from shared memory (rows padded to an odd word count: no bank
 * conflicts).  Online softmax per head (F32, expf); P x V with each thread
 * owning two value columns of every head.  With one split the block writes
 * the normalised output; otherwise each split writes (max, sum, unnormalised
 * accumulator) and a combine kernel merges them (flash-decoding).  The
 * cache must hold entries 0..pos of every token (causal prefill and decode
 * in one kernel).  Limits: kv_rank <= 512, kv_rank + rope <= 576, even. */
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/fi_mla.h"

#define MA_HB 16
#define MA_JC 16
#define MA_THREADS 256
#define MA_WMAX 576
#define MA_RMAX 512
#define MA_WORDS (MA_WMAX / 2 + 1)

typedef struct mla_args {
    bf16 *out;
    const bf16 *q_lat, *q_pe;
    int64_t ld_qpe_token, ld_qpe_head;
    const bf16 *cache;
    int64_t block_size, width;
    const int32_t *seq, *pos, *block_tables;
    int64_t ld_block_table;
    int64_t n_heads, R, P;
    float scale;
    int n_splits;
    float *part;        /* [T, H, S, R + 2]: acc[R], m, l */
} mla_args;

static __device__ __forceinline__ float2 bf2(uint32_t w)
{
    __nv_bfloat162 v = *reinterpret_cast<__nv_bfloat162 *>(&w);
    return __bfloat1622float2(v);
}

static __global__ void __launch_bounds__(MA_THREADS) mla_kernel(mla_args a)
{
    __shared__ uint32_t qs[MA_HB][MA_WORDS];
    __shared__ uint32_t kvs[MA_JC][MA_WORDS];
    __shared__ float ps[MA_HB][MA_JC];
    __shared__ float corr_s[MA_HB], m_s[MA_HB], l_s[MA_HB];
    int64_t t = blockIdx.x;
    int64_t h0 = (int64_t)blockIdx.y * MA_HB;
    int split = blockIdx.z;
    int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    int64_t R = a.R, P = a.P, Wd = (R + P) / 2;
    int64_t n_ctx = (int64_t)a.pos[t] + 1;
    const int32_t *bt = a.block_tables + (int64_t)a.seq[t] * a.ld_block_table;

    /* q rows [q_lat | q_pe] of this group's heads as BF16 pairs. */
    for (int64_t e = tid; e < (int64_t)MA_HB * Wd; e += MA_THREADS) {
        int hh = (int)(e / Wd);
        int64_t wd = e % Wd, h = h0 + hh;
        uint32_t v = 0;
        if (h < a.n_heads) {
            int64_t c = 2 * wd;
            const bf16 *src = c < R ? a.q_lat + (t * a.n_heads + h) * R + c
                                    : a.q_pe + t * a.ld_qpe_token + h * a.ld_qpe_head + (c - R);
            __nv_bfloat162 pr;
            pr.x = src[0];
            pr.y = src[1];
            v = *reinterpret_cast<uint32_t *>(&pr);
        }
        qs[hh][wd] = v;
    }

    int sh = 2 * warp + (lane >> 4);    /* this lane's head (scores) */
    int sj = lane & 15;                 /* and entry within the chunk */
    float m_run = -INFINITY, l_run = 0.0f;
    float acc[MA_HB][2];
#pragma unroll
    for (int hh = 0; hh < MA_HB; hh++)
        acc[hh][0] = acc[hh][1] = 0.0f;
    int64_t c0 = tid, c1 = tid + MA_THREADS;

    int64_t n_chunks = (n_ctx + MA_JC - 1) / MA_JC;
    for (int64_t ci = split; ci < n_chunks; ci += a.n_splits) {
        __syncthreads();
        for (int64_t e = tid; e < (int64_t)MA_JC * Wd; e += MA_THREADS) {
            int j = (int)(e / Wd);
            int64_t wd = e % Wd, idx = ci * MA_JC + j;
            uint32_t v = 0;
            if (idx < n_ctx) {
                int64_t slot = (int64_t)bt[idx / a.block_size] * a.block_size +
                               idx % a.block_size;
                v = reinterpret_cast<const uint32_t *>(a.cache + slot * a.width)[wd];
            }
            kvs[j][wd] = v;
        }
        __syncthreads();
        /* score of (head sh, entry sj) */
        float s = 0.0f;
        for (int64_t wd = 0; wd < Wd; wd++) {
            float2 q = bf2(qs[sh][wd]), k = bf2(kvs[sj][wd]);
            s += q.x * k.x + q.y * k.y;
        }
        s = ci * MA_JC + sj < n_ctx ? s * a.scale : -INFINITY;
        float cm = s;
        for (int o = 8; o > 0; o >>= 1)
            cm = fmaxf(cm, __shfl_xor_sync(0xffffffffu, cm, o));
        float nm = fmaxf(m_run, cm);
        float corr = expf(m_run - nm);
        float pv = expf(s - nm);
        float psum = pv;
        for (int o = 8; o > 0; o >>= 1)
            psum += __shfl_xor_sync(0xffffffffu, psum, o);
        l_run = l_run * corr + psum;
        m_run = nm;
        ps[sh][sj] = pv;
        if (sj == 0)
            corr_s[sh] = corr;
        __syncthreads();
        const bf16 *kb;
#pragma unroll
        for (int hh = 0; hh < MA_HB; hh++) {
            float c = corr_s[hh];
            acc[hh][0] *= c;
            acc[hh][1] *= c;
        }
        for (int j = 0; j < MA_JC; j++) {
            kb = reinterpret_cast<const bf16 *>(kvs[j]);
            float v0 = c0 < R ? __bfloat162float(kb[c0]) : 0.0f;
            float v1 = c1 < R ? __bfloat162float(kb[c1]) : 0.0f;
#pragma unroll
            for (int hh = 0; hh < MA_HB; hh++) {
                float p = ps[hh][j];
                acc[hh][0] += p * v0;
                acc[hh][1] += p * v1;
            }
        }
    }
    __syncthreads();
    if (sj == 0) {
        m_s[sh] = m_run;
        l_s[sh] = l_run;
    }
    __syncthreads();
#pragma unroll
    for (int hh = 0; hh < MA_HB; hh++) {
        int64_t h = h0 + hh;
        if (h >= a.n_heads)
            continue;
        if (a.n_splits == 1) {
            float inv = 1.0f / l_s[hh];
            bf16 *o = a.out + (t * a.n_heads + h) * R;
            if (c0 < R)
                o[c0] = __float2bfloat16(acc[hh][0] * inv);
            if (c1 < R)
                o[c1] = __float2bfloat16(acc[hh][1] * inv);
        } else {
            float *pp = a.part + ((t * a.n_heads + h) * a.n_splits + split) * (R + 2);
            if (c0 < R)
                pp[c0] = acc[hh][0];
            if (c1 < R)
                pp[c1] = acc[hh][1];
            if (tid == 0) {
                pp[R] = m_s[hh];
                pp[R + 1] = l_s[hh];
            }
        }
    }
}

/* Merges the splits of (token, head): out = sum_s e^(m_s - M) acc_s / L. */
static __global__ void mla_combine_kernel(bf16 *out, const float *part, int64_t n_heads,
                                          int64_t R, int n_splits)
{
    int64_t th = blockIdx.x;
    const float *pp = part + th * n_splits * (R + 2);
    float M = -INFINITY;
    for (int s = 0; s < n_splits; s++)
        M = fmaxf(M, pp[s * (R + 2) + R]);
    float L = 0.0f;
    for (int s = 0; s < n_splits; s++) {
        float ms = pp[s * (R + 2) + R];
        if (ms > -INFINITY)
            L += pp[s * (R + 2) + R + 1] * expf(ms - M);
    }
    for (int64_t c = threadIdx.x; c < R; c += blockDim.x) {
        float o = 0.0f;
        for (int s = 0; s < n_splits; s++) {
            float ms = pp[s * (R + 2) + R];
            if (ms > -INFINITY)
                o += pp[s * (R + 2) + c] * expf(ms - M);
        }
        out[th * R + c] = __float2bfloat16(o / L);
    }
}

extern "C" dsa_err dsa_cuda_mla_attn(dsa_backend *be_, const dsa_mla_attn_params *p)
{
    dsa_cuda_backend *be = dsa_cuda_be(be_);
    if (p->n_tokens <= 0 || p->n_heads <= 0)
        return DSA_OK;
    /* V3/R1's shape goes to FlashInfer's Hopper kernel; this file's kernel
     * takes the rest (smaller latent ranks: the test models) and
     * DSA_CUDA_MLA=portable forces it (A/B runs). */
    if (!be->mla_portable && dsa_fi_mla_applies(p)) {
        be->last_attn_path = "fi-mla-hopper";
        return dsa_fi_mla_attn(be_, p);
    }
    be->last_attn_path = "mla-portable";
    int64_t W = p->kv_rank + p->rope_dim;
    if (p->kv_rank > MA_RMAX || W > MA_WMAX || W % 2 || p->cache->width % 2 ||
        p->cache->width < W)
        return dsa_fail(DSA_UNSUPPORTED, "cuda mla_attn: kv_rank %lld + rope %lld (max %d + %d, even)",
                        (long long)p->kv_rank, (long long)p->rope_dim, MA_RMAX,
                        MA_WMAX - MA_RMAX);
    int64_t groups = (p->n_heads + MA_HB - 1) / MA_HB;
    int64_t blocks = p->n_tokens * groups;
    int64_t S = (2 * (int64_t)be->n_sm + blocks - 1) / blocks;
    S = S < 1 ? 1 : S > 32 ? 32 : S;
    mla_args a = {(bf16 *)p->out, (const bf16 *)p->q_lat, (const bf16 *)p->q_pe,
                  p->ld_qpe_token, p->ld_qpe_head, (const bf16 *)p->cache->data,
                  p->cache->block_size, p->cache->width, p->seq, p->pos, p->block_tables,
                  p->ld_block_table, p->n_heads, p->kv_rank, p->rope_dim, p->scale, (int)S,
                  NULL};
    dsa_err err;
    if (S > 1) {
        /* Sized by a bound that only grows with the token count (blocks * S
         * <= 2 n_sm + blocks - 1, and n_heads <= groups * MA_HB), not by the
         * exact need, which shrinks as tokens are added (S falls): so the
         * slot reallocates only when a step has more tokens than any
         * before, which the model already treats as moving its buffers. */
        void *part;
        size_t bytes = (size_t)((2 * (int64_t)be->n_sm + blocks) * MA_HB * (p->kv_rank + 2)) *
                       sizeof(float);
        if ((err = dsa_cuda_scratch(be, DSA_CUDA_SCR_ATTN, bytes, &part)))
            return err;
        a.part = (float *)part;
    }
    dim3 grid((unsigned)p->n_tokens, (unsigned)groups, (unsigned)S);
    mla_kernel<<<grid, MA_THREADS, 0, be->stream>>>(a);
    if ((err = DSA_CUDA_LAUNCHED()) || S == 1)
        return err;
    mla_combine_kernel<<<(unsigned)(p->n_tokens * p->n_heads), 128, 0, be->stream>>>(
        (bf16 *)p->out, a.part, p->n_heads, p->kv_rank, (int)S);
    return DSA_CUDA_LAUNCHED();
}
