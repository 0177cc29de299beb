/* cuda_vocab_gather.cu - the TP ranks' all-gathered lm_head slices in
 * vocabulary order (backend.h dsa_vocab_gather_params): one launch where
 * the model made a device-to-device copy per (row, rank), ~2,048 of them
 * at batch 256 and TP 8.  One thread per output logit, grid-stride. */
#include "kernels/cuda/cuda_common.cuh"

static __global__ void vocab_gather_kernel(float *out, const float *in, int64_t n_rows,
                                           int64_t ld, int64_t vocab)
{
    int64_t n = n_rows * vocab;
    for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < n;
         k += (int64_t)gridDim.x * blockDim.x) {
        int64_t i = k / vocab, v = k % vocab, r = v / ld;
        out[k] = in[(r * n_rows + i) * ld + (v - r * ld)];
    }
}

extern "C" dsa_err dsa_cuda_vocab_gather(dsa_backend *be_, const dsa_vocab_gather_params *p)
{
    dsa_cuda_backend *be = dsa_cuda_be(be_);
    if (p->n_rows <= 0 || p->vocab <= 0)
        return DSA_OK;
    unsigned g = dsa_cuda_blocks(p->n_rows * p->vocab, 256);
    vocab_gather_kernel<<<g > 16384u ? 16384u : g, 256, 0, be->stream>>>(
        p->out, p->in, p->n_rows, p->ld, p->vocab);
    return DSA_CUDA_LAUNCHED();
}
