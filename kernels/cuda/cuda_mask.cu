/* cuda_mask.cu - structured-output bitmasks on device logits in place
 * (backend.h dsa_logit_mask_params), the CPU reference being dsa_cpu_mask
 * in cpu_sample.c.  The host packs every masked row into one pinned
 * buffer and sends it up in one copy:
 *   [n_rows][2] int32 headers (offset in words after the headers, n_words),
 *   then the words of the rows that have a mask, back to back.
 * A 2-D grid: blockIdx.y is the row, each thread one vocabulary id; a row
 * with n_words == 0 leaves its logits alone. */
#include "kernels/cuda/cuda_common.cuh"

#define MASK_THREADS 256
#define MASK_HDR 2

static __global__ void __launch_bounds__(MASK_THREADS)
mask_kernel(float *logits, const int32_t *hdr, const uint32_t *words, int64_t vocab)
{
    const int32_t *h = hdr + (int64_t)blockIdx.y * MASK_HDR;
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int32_t n_words = h[1];
    if (n_words == 0 || i >= vocab)
        return;
    const uint32_t *w = words + h[0];
    if (i >= (int64_t)n_words * 32 || !(w[i >> 5] >> (i & 31) & 1u))
        logits[(int64_t)blockIdx.y * vocab + i] = -INFINITY;
}

extern "C" dsa_err dsa_cuda_mask(dsa_backend *be_, const dsa_logit_mask_params *p)
{
    dsa_cuda_backend *be = dsa_cuda_be(be_);
    if (p->n_rows <= 0)
        return DSA_OK;
    /* gridDim.y is at most 65535 */
    if (p->vocab <= 0 || p->vocab > 0x7ffffff0 || p->n_rows > 65535)
        return dsa_fail(DSA_INVAL, "mask: %lld rows of %lld", (long long)p->n_rows,
                        (long long)p->vocab);
    int64_t n_words = 0;
    for (int64_t r = 0; r < p->n_rows; r++) {
        if (p->rows[r].n_words < 0)
            return dsa_fail(DSA_INVAL, "mask: row %lld has %d words", (long long)r,
                            p->rows[r].n_words);
        n_words += p->rows[r].n_words;
    }
    if (n_words == 0)
        return DSA_OK;
    if (n_words > 0x7fffffff)
        return dsa_fail(DSA_RANGE, "mask: %lld words", (long long)n_words);
    size_t hb = (size_t)(p->n_rows * MASK_HDR) * 4, bytes = hb + (size_t)n_words * 4;
    void *dev, *host;
    dsa_err err;
    /* the pinned staging buffer may still feed an earlier async copy */
    if ((err = dsa_cuda_scratch(be, DSA_CUDA_SCR_MASK, bytes, &dev)) ||
        (err = DSA_CUDA_CHECK(cudaStreamSynchronize(be->stream))) ||
        (err = dsa_cuda_pinned(be, bytes, &host)))
        return err;
    int32_t *hdr = (int32_t *)host;
    uint32_t *words = (uint32_t *)((char *)host + hb);
    int32_t off = 0;
    for (int64_t r = 0; r < p->n_rows; r++) {
        const dsa_logit_mask *m = &p->rows[r];
        hdr[r * MASK_HDR] = off;
        hdr[r * MASK_HDR + 1] = m->n_words;
        if (m->n_words)
            memcpy(words + off, m->bits, (size_t)m->n_words * 4);
        off += m->n_words;
    }
    char *d = (char *)dev;
    if ((err = DSA_CUDA_CHECK(cudaMemcpyAsync(d, host, bytes, cudaMemcpyHostToDevice,
                                              be->stream))))
        return err;
    dim3 grid((unsigned)((p->vocab + MASK_THREADS - 1) / MASK_THREADS), (unsigned)p->n_rows);
    mask_kernel<<<grid, MASK_THREADS, 0, be->stream>>>(p->logits, (const int32_t *)d,
                                                       (const uint32_t *)(d + hb), p->vocab);
    if ((err = DSA_CUDA_LAUNCHED()))
        return err;
    /* the next user of the pinned buffer syncs before writing it */
    return DSA_OK;
}
