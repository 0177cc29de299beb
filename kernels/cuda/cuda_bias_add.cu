/* cuda_bias_add.cu - x[t, i] += bias[i] over BF16 activations (backend.h
 * dsa_bias_add_params); the bias in any stored dtype.  Compiled, not yet
 * run on a GPU. */
#include "kernels/cuda/cuda_common.cuh"

static __global__ void bias_add_kernel(bf16 *x, dsa_cuda_w b, int64_t n_rows, int64_t dim,
                                       int64_t ld)
{
    for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < n_rows * dim;
         k += (int64_t)gridDim.x * blockDim.x) {
        int64_t t = k / dim, i = k % dim;
        x[t * ld + i] = __float2bfloat16(__bfloat162float(x[t * ld + i]) + w_get(b, 0, i));
    }
}

extern "C" dsa_err dsa_cuda_bias_add(dsa_backend *be_, const dsa_bias_add_params *p)
{
    dsa_cuda_backend *be = dsa_cuda_be(be_);
    if (p->n_rows <= 0 || p->dim <= 0)
        return DSA_OK;
    unsigned g = dsa_cuda_blocks(p->n_rows * p->dim, 256);
    bias_add_kernel<<<g > 8192u ? 8192u : g, 256, 0, be->stream>>>(
        (bf16 *)p->x, dsa_cuda_w_of(p->bias), p->n_rows, p->dim, p->ld);
    return DSA_CUDA_LAUNCHED();
}
