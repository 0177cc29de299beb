/* cuda_rope.cu - rotary embedding in place (backend.h dsa_rope_params,
 * MODEL_SPEC.md §4), interleaved pairs or, with neox, the pairs (i, i+half)
 * of transformers' rotate_half: the angle is the F32 product
 * pos * inv_freq[i] as on the CPU, cos/sin in F32 (sincosf, not the fast
 * intrinsics: positions reach 163840). */
#include "kernels/cuda/cuda_common.cuh"

static __global__ void rope_kernel(bf16 *x, const int32_t *pos, const float *inv_freq,
                                   int64_t n_heads, int64_t half, int64_t ld_token,
                                   int64_t ld_head, int neox)
{
    int64_t t = blockIdx.x;
    float p = (float)pos[t];
    for (int64_t k = threadIdx.x; k < n_heads * half; k += blockDim.x) {
        int64_t h = k / half, i = k % half;
        float s, c;
        sincosf(p * inv_freq[i], &s, &c);
        int64_t second = neox ? half : 1;
        bf16 *v = x + t * ld_token + h * ld_head + (neox ? i : 2 * i);
        float x0 = __bfloat162float(v[0]), x1 = __bfloat162float(v[second]);
        v[0] = __float2bfloat16(x0 * c - x1 * s);
        v[second] = __float2bfloat16(x0 * s + x1 * c);
    }
}

extern "C" dsa_err dsa_cuda_rope(dsa_backend *be_, const dsa_rope_params *p)
{
    dsa_cuda_backend *be = dsa_cuda_be(be_);
    if (p->n_tokens <= 0 || p->rot_dim < 2)
        return DSA_OK;
    rope_kernel<<<(unsigned)p->n_tokens, 256, 0, be->stream>>>(
        (bf16 *)p->x, p->positions, p->inv_freq, p->n_heads, p->rot_dim / 2, p->ld_token,
        p->ld_head, p->neox);
    return DSA_CUDA_LAUNCHED();
}
