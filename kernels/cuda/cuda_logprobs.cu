/* cuda_logprobs.cu - logprobs where the logits are (backend.h
 * dsa_logprobs_params); the CPU reference is dsa_logprobs_row (backend.c).
 * One block per row: the row max, the sum of exp(l - max) in double (as
 * the reference; only the summation order differs), the chosen id's rank,
 * then the top k by k block-wide arg-max passes, each over the ids after
 * the previous winner in (logit descending, id ascending) order (k <= 20,
 * so k passes over the row cost less than a sort).  Only
 * n_rows * (3 + 2 k_max) values come back to the host. */
#include <string.h>

#include "kernels/cuda/cuda_common.cuh"

#define LP_THREADS 256

/* (logit, id) ordered by logit descending, then id ascending: a before b. */
static __device__ __forceinline__ int lp_before(float la, int32_t ia, float lb, int32_t ib)
{
    return la > lb || (la == lb && ia < ib);
}

static __global__ void __launch_bounds__(LP_THREADS)
logprobs_kernel(const float *logits, int64_t vocab, const int32_t *ids, const int32_t *ks,
                int32_t k_max, float *res)
{
    __shared__ float shf[32];
    __shared__ double shd[32];
    __shared__ float wl[32];
    __shared__ int32_t wi[32];
    __shared__ int32_t shi[32];
    const float *l = logits + (int64_t)blockIdx.x * vocab;
    float *o = res + (int64_t)blockIdx.x * (3 + 2 * k_max);
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    float mx = -INFINITY;
    for (int64_t v = threadIdx.x; v < vocab; v += blockDim.x)
        mx = fmaxf(mx, l[v]);
    mx = block_max(mx, shf);
    int32_t id = ids[blockIdx.x];
    float lid = l[id];
    double sum = 0;
    int32_t above = 0;
    for (int64_t v = threadIdx.x; v < vocab; v += blockDim.x) {
        sum += exp((double)(l[v] - mx));
        above += l[v] > lid;
    }
    for (int off = 16; off > 0; off >>= 1) {
        sum += __shfl_xor_sync(0xffffffffu, sum, off);
        above += __shfl_xor_sync(0xffffffffu, above, off);
    }
    __syncthreads();
    if (lane == 0)
        shd[wid] = sum, shi[wid] = above;
    __syncthreads();
    if (threadIdx.x == 0) {
        double s = 0;
        int32_t a = 0;
        for (int w = 0; w < nw; w++)
            s += shd[w], a += shi[w];
        shd[0] = s;
        shi[0] = a;
    }
    __syncthreads();
    float lse = mx + (float)log(shd[0]);
    int32_t k = ks[blockIdx.x];
    k = k < vocab ? k : (int32_t)vocab;
    if (threadIdx.x == 0) {
        o[0] = lid - lse;
        o[1] = __int_as_float(1 + shi[0]);
        o[2] = __int_as_float(k);
    }
    float prev_l = INFINITY;
    int32_t prev_i = -1;
    for (int32_t j = 0; j < k; j++) {
        float bl = -INFINITY;
        int32_t bi = 0x7fffffff;
        for (int64_t v = threadIdx.x; v < vocab; v += blockDim.x) {
            float x = l[v];
            if (lp_before(prev_l, prev_i, x, (int32_t)v) && lp_before(x, (int32_t)v, bl, bi))
                bl = x, bi = (int32_t)v;
        }
        for (int off = 16; off > 0; off >>= 1) {
            float ol = __shfl_xor_sync(0xffffffffu, bl, off);
            int32_t oi = __shfl_xor_sync(0xffffffffu, bi, off);
            if (lp_before(ol, oi, bl, bi))
                bl = ol, bi = oi;
        }
        __syncthreads();
        if (lane == 0)
            wl[wid] = bl, wi[wid] = bi;
        __syncthreads();
        if (threadIdx.x == 0) {
            for (int w = 1; w < nw; w++)
                if (lp_before(wl[w], wi[w], wl[0], wi[0]))
                    wl[0] = wl[w], wi[0] = wi[w];
        }
        __syncthreads();
        prev_l = wl[0];
        prev_i = wi[0];
        if (threadIdx.x == 0) {
            o[3 + j] = __int_as_float(prev_i);
            o[3 + k_max + j] = prev_l - lse;
        }
    }
}

extern "C" dsa_err dsa_cuda_logprobs(dsa_backend *be_, const dsa_logprobs_params *p)
{
    dsa_cuda_backend *be = dsa_cuda_be(be_);
    if (p->n_rows <= 0)
        return DSA_OK;
    if (p->vocab <= 0 || p->vocab > 0x7ffffff0 || p->n_rows > 0x7fffffff || p->k_max < 0 ||
        p->k_max > 1024)
        return dsa_fail(DSA_INVAL, "logprobs: %lld rows of %lld, k_max %d", (long long)p->n_rows,
                        (long long)p->vocab, p->k_max);
    int64_t per = 3 + 2 * (int64_t)p->k_max;
    size_t in_bytes = (size_t)p->n_rows * 8, out_bytes = (size_t)(p->n_rows * per) * 4;
    void *dev, *host;
    dsa_err err;
    if ((err = dsa_cuda_scratch(be, DSA_CUDA_SCR_LOGPROBS, in_bytes + out_bytes, &dev)) ||
        (err = DSA_CUDA_CHECK(cudaStreamSynchronize(be->stream))) ||
        (err = dsa_cuda_pinned(be, in_bytes + out_bytes, &host)))
        return err;
    int32_t *hi = (int32_t *)host;
    for (int64_t r = 0; r < p->n_rows; r++) {
        if (p->ids[r] < 0 || p->ids[r] >= p->vocab || p->k[r] < 0 || p->k[r] > p->k_max)
            return dsa_fail(DSA_RANGE, "logprobs: row %lld id %d k %d", (long long)r, p->ids[r],
                            p->k[r]);
        hi[r] = p->ids[r];
        hi[p->n_rows + r] = p->k[r];
    }
    char *d = (char *)dev;
    if ((err = DSA_CUDA_CHECK(cudaMemcpyAsync(d, host, in_bytes, cudaMemcpyHostToDevice,
                                              be->stream))))
        return err;
    logprobs_kernel<<<(unsigned)p->n_rows, LP_THREADS, 0, be->stream>>>(
        p->logits, p->vocab, (const int32_t *)d, (const int32_t *)d + p->n_rows, p->k_max,
        (float *)(d + in_bytes));
    float *res = (float *)((char *)host + in_bytes);
    if ((err = DSA_CUDA_LAUNCHED()) ||
        (err = DSA_CUDA_CHECK(cudaMemcpyAsync(res, d + in_bytes, out_bytes,
                                              cudaMemcpyDeviceToHost, be->stream))) ||
        (err = DSA_CUDA_CHECK(cudaStreamSynchronize(be->stream))))
        return err;
    for (int64_t r = 0; r < p->n_rows; r++) {
        const float *o = res + r * per;
        int32_t rank, n_top;
        memcpy(&rank, &o[1], 4);
        memcpy(&n_top, &o[2], 4);
        p->out_logprob[r] = o[0];
        if (p->out_rank)
            p->out_rank[r] = rank;
        p->out_n_top[r] = n_top;
        for (int32_t j = 0; j < n_top; j++) {
            memcpy(&p->out_top_ids[r * p->k_max + j], &o[3 + j], 4);
            p->out_top_logprobs[r * p->k_max + j] = o[3 + p->k_max + j];
        }
    }
    return DSA_OK;
}
