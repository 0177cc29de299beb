/* cuda_rmsnorm.cu - RMSNorm fused with the residual add (backend.h
 * dsa_rmsnorm_params): one block per row; the row is read once into
 * registers/shared memory as F32, residual += x is written back in BF16
 * (the stream the next layer reads), and the norm is taken over the BF16
 * residual as stored, so every op sees the same h.
 *
 * With out_q the same kernel also quantises the BF16 output as stored for
 * the FP8 linear after it, exactly as cuda_quant.cu would in a launch of
 * its own: 256 threads cover two 1x128 blocks per pass (threads 0-127 the
 * first, 128-255 the second), each block's amax reduced over its four
 * warps; scales in the layout the backend's FP8 linear reads
 * (lt_act_scale_kmajor).  Rows too wide for registers take the two-pass
 * kernel and then cuda_quant.cu. */
#include "kernels/cuda/cuda_common.cuh"

#define RMS_THREADS 256
#define RMS_MAX_PER_THREAD 32   /* dim <= 8192 kept in registers */

/* Where the FP8 copy of the output goes (q == NULL: nowhere). */
typedef struct rms_quant {
    uint8_t *q;                 /* [n_rows, dim] */
    float *s;                   /* kmajor: [n_rows][n_kb]; else [n_kb][n_rows] */
    int64_t n_rows;
    int kmajor;
} rms_quant;

static __global__ void rmsnorm_kernel(bf16 *out, const bf16 *x, bf16 *res, dsa_cuda_w w,
                                      int64_t dim, int64_t ld_x, int64_t ld_out, float eps,
                                      rms_quant qt)
{
    __shared__ float sh[32];
    int64_t r = blockIdx.x;
    const bf16 *xr = x + r * ld_x;
    bf16 *rr = res ? res + r * dim : NULL;
    float v[RMS_MAX_PER_THREAD];
    float ss = 0.0f;
    int n = 0;
    for (int64_t j = threadIdx.x; j < dim; j += RMS_THREADS, n++) {
        float a = __bfloat162float(xr[j]);
        if (rr) {
            bf16 s = __float2bfloat16(__bfloat162float(rr[j]) + a);
            rr[j] = s;
            a = __bfloat162float(s);
        }
        v[n] = a;
        ss += a * a;
    }
    ss = block_sum(ss, sh);
    float inv = rsqrtf(ss / (float)dim + eps);
    bf16 *o = out + r * ld_out;
    n = 0;
    for (int64_t j = threadIdx.x; j < dim; j += RMS_THREADS, n++) {
        bf16 y = __float2bfloat16(w_get(w, 0, j) * (v[n] * inv));
        o[j] = y;
        v[n] = __bfloat162float(y); /* the value as stored, for the quantisation */
    }
    if (!qt.q)
        return;
    /* pass n: 1x128 block 2n + half of the row, half = threadIdx.x / 128 */
    __shared__ float wmax[RMS_THREADS / 32];
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, half = threadIdx.x >> 7;
    int64_t n_kb = (dim + 127) / 128;
    for (int64_t p = 0; p * RMS_THREADS < dim; p++) {
        int64_t j = p * RMS_THREADS + threadIdx.x, kb = 2 * p + half;
        float a = j < dim ? fabsf(v[p]) : 0.0f;
        a = warp_max(a);
        if (lane == 0)
            wmax[wid] = a;
        __syncthreads();
        float amax = fmaxf(fmaxf(wmax[4 * half], wmax[4 * half + 1]),
                           fmaxf(wmax[4 * half + 2], wmax[4 * half + 3]));
        float sc = fmaxf(amax, 1e-4f) / 448.0f;
        if (j < dim) {
            __nv_fp8_e4m3 f(v[p] / sc);
            qt.q[r * dim + j] = f.__x;
        }
        if ((threadIdx.x & 127) == 0 && kb < n_kb)
            qt.s[qt.kmajor ? r * n_kb + kb : kb * qt.n_rows + r] = sc;
        __syncthreads(); /* wmax is reused by the next pass */
    }
}

/* Rows wider than RMS_THREADS * RMS_MAX_PER_THREAD: two passes over memory. */
static __global__ void rmsnorm_wide_kernel(bf16 *out, const bf16 *x, bf16 *res, dsa_cuda_w w,
                                           int64_t dim, int64_t ld_x, int64_t ld_out, float eps)
{
    __shared__ float sh[32];
    int64_t r = blockIdx.x;
    const bf16 *xr = x + r * ld_x;
    bf16 *rr = res ? res + r * dim : NULL;
    float ss = 0.0f;
    for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) {
        float a = __bfloat162float(xr[j]);
        if (rr) {
            bf16 s = __float2bfloat16(__bfloat162float(rr[j]) + a);
            rr[j] = s;
            a = __bfloat162float(s);
        }
        ss += a * a;
    }
    ss = block_sum(ss, sh);
    float inv = rsqrtf(ss / (float)dim + eps);
    const bf16 *src = rr ? rr : xr;
    bf16 *o = out + r * ld_out;
    for (int64_t j = threadIdx.x; j < dim; j += blockDim.x)
        o[j] = __float2bfloat16(w_get(w, 0, j) * (__bfloat162float(src[j]) * inv));
}

extern "C" dsa_err dsa_cuda_rmsnorm(dsa_backend *be_, const dsa_rmsnorm_params *p)
{
    dsa_cuda_backend *be = dsa_cuda_be(be_);
    if (p->n_rows <= 0)
        return DSA_OK;
    dsa_cuda_w w = dsa_cuda_w_of(p->weight);
    int kmajor = be->lt_act_scale_kmajor;
    if (p->dim <= (int64_t)RMS_THREADS * RMS_MAX_PER_THREAD) {
        rms_quant qt = {p->out_q, p->out_scale, p->n_rows, kmajor};
        rmsnorm_kernel<<<(unsigned)p->n_rows, RMS_THREADS, 0, be->stream>>>(
            (bf16 *)p->out, (const bf16 *)p->x, (bf16 *)p->residual, w, p->dim, p->ld_x,
            p->ld_out, p->eps, qt);
        return DSA_CUDA_LAUNCHED();
    }
    rmsnorm_wide_kernel<<<(unsigned)p->n_rows, 1024, 0, be->stream>>>(
        (bf16 *)p->out, (const bf16 *)p->x, (bf16 *)p->residual, w, p->dim, p->ld_x,
        p->ld_out, p->eps);
    dsa_err err = DSA_CUDA_LAUNCHED();
    if (!err && p->out_q)
        err = dsa_cuda_quant_fp8(be, p->out_q, p->dim, p->out_scale, p->out, p->ld_out,
                                 p->n_rows, p->dim, kmajor);
    return err;
}
