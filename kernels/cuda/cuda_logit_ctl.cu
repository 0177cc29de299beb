/* cuda_logit_ctl.cu - per-row logit controls in place (backend.h
 * dsa_logit_ctl_params), the CPU reference being dsa_cpu_logit_ctl in
 * cpu_sample.c.  One block per row, in vLLM's order with a block barrier
 * between the phases: the allowed mask (each thread binary-searches the
 * sorted allowed list for the ids of its stride), the min_tokens bans,
 * then the bias.  The id lists go up in one copy:
 *   [n_rows][6] int32 headers (offset and count of allowed, banned, bias
 *   ids, in int32 units after the headers), the ids, then the bias values
 *   as floats at the same offsets as their ids. */
#include "kernels/cuda/cuda_common.cuh"

#define LC_THREADS 256
#define LC_HDR 6

static __device__ int lc_member(const int32_t *ids, int32_t n, int32_t x)
{
    int32_t lo = 0, hi = n;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        if (ids[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && ids[lo] == x;
}

static __global__ void __launch_bounds__(LC_THREADS)
logit_ctl_kernel(float *logits, const int32_t *hdr, const int32_t *ids, const float *vals,
                 int64_t vocab)
{
    const int32_t *h = hdr + (int64_t)blockIdx.x * LC_HDR;
    float *l = logits + (int64_t)blockIdx.x * vocab;
    int32_t n_allowed = h[1], n_banned = h[3], n_bias = h[5];
    if (n_allowed == 0 && n_banned == 0 && n_bias == 0)
        return; /* uniform over the block: no barrier is skipped by some */
    if (n_allowed > 0) {
        const int32_t *a = ids + h[0];
        for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x)
            if (!lc_member(a, n_allowed, (int32_t)i))
                l[i] = -INFINITY;
    }
    __syncthreads();
    for (int32_t j = threadIdx.x; j < n_banned; j += blockDim.x)
        l[ids[h[2] + j]] = -INFINITY;
    __syncthreads();
    /* bias ids are unique: no two threads add to one logit */
    for (int32_t j = threadIdx.x; j < n_bias; j += blockDim.x)
        l[ids[h[4] + j]] += vals[h[4] + j];
}

extern "C" dsa_err dsa_cuda_logit_ctl(dsa_backend *be_, const dsa_logit_ctl_params *p)
{
    dsa_cuda_backend *be = dsa_cuda_be(be_);
    if (p->n_rows <= 0)
        return DSA_OK;
    if (p->vocab <= 0 || p->vocab > 0x7ffffff0 || p->n_rows > 0x7fffffff)
        return dsa_fail(DSA_INVAL, "logit_ctl: %lld rows of %lld", (long long)p->n_rows,
                        (long long)p->vocab);
    int64_t n_ids = 0;
    for (int64_t r = 0; r < p->n_rows; r++) {
        const dsa_logit_ctl *c = &p->rows[r];
        n_ids += (int64_t)c->n_allowed + c->n_banned + c->n_bias;
    }
    if (n_ids == 0)
        return DSA_OK;
    if (n_ids > 0x7fffffff - LC_HDR * p->n_rows)
        return dsa_fail(DSA_RANGE, "logit_ctl: %lld ids", (long long)n_ids);
    size_t hb = (size_t)(p->n_rows * LC_HDR) * 4, ib = (size_t)n_ids * 4;
    size_t bytes = hb + 2 * ib;
    void *dev, *host;
    dsa_err err;
    /* the pinned staging buffer may still feed an earlier async copy */
    if ((err = dsa_cuda_scratch(be, DSA_CUDA_SCR_LOGIT_CTL, bytes, &dev)) ||
        (err = DSA_CUDA_CHECK(cudaStreamSynchronize(be->stream))) ||
        (err = dsa_cuda_pinned(be, bytes, &host)))
        return err;
    int32_t *hdr = (int32_t *)host, *ids = (int32_t *)((char *)host + hb);
    float *vals = (float *)((char *)host + hb + ib);
    int32_t off = 0;
    for (int64_t r = 0; r < p->n_rows; r++) {
        const dsa_logit_ctl *c = &p->rows[r];
        int32_t *h = hdr + r * LC_HDR;
        /* empty lists may be NULL: no memcpy from them */
        h[0] = off;
        h[1] = c->n_allowed;
        if (c->n_allowed)
            memcpy(ids + off, c->allowed, (size_t)c->n_allowed * 4);
        off += c->n_allowed;
        h[2] = off;
        h[3] = c->n_banned;
        if (c->n_banned)
            memcpy(ids + off, c->banned, (size_t)c->n_banned * 4);
        off += c->n_banned;
        h[4] = off;
        h[5] = c->n_bias;
        if (c->n_bias) {
            memcpy(ids + off, c->bias_ids, (size_t)c->n_bias * 4);
            memcpy(vals + off, c->bias_values, (size_t)c->n_bias * 4);
        }
        off += c->n_bias;
    }
    char *d = (char *)dev;
    if ((err = DSA_CUDA_CHECK(cudaMemcpyAsync(d, host, bytes, cudaMemcpyHostToDevice,
                                              be->stream))))
        return err;
    logit_ctl_kernel<<<(unsigned)p->n_rows, LC_THREADS, 0, be->stream>>>(
        p->logits, (const int32_t *)d, (const int32_t *)(d + hb), (const float *)(d + hb + ib),
        p->vocab);
    if ((err = DSA_CUDA_LAUNCHED()))
        return err;
    /* the next user of the pinned buffer syncs before writing it */
    return DSA_OK;
}
