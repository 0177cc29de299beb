/* cuda_moe_gemv.cu - the routed experts at small batch (cuda_moe.h
 * dsa_cuda_moe_gemv): a fused FP8 GEMV over the selected experts.
 *
 * Decode at a few tokens gives each selected expert one row or two, so the
 * work is reading the selected experts' FP8 weights once at full bandwidth.
 * One block per (active expert, group of weight rows); in up each warp
 * owns one row of gate and of up and streams them in 16-byte loads (16
 * e4m3 values per lane, 512 per warp step), converts them with the hardware's fp8x2
 * conversion, applies the 128x128 block scale per 16 values (a 16-value
 * chunk never straddles a 128 block), and multiplies them into every row
 * the expert has (x and h rows are small and stay in L1/L2).
 *   up:   h[d, n] = silu(x[tok[d]] . Wg[n]) * (x[tok[d]] . Wu[n])   gate and up rows
 *         n read together by one warp, SiLU*mul fused, BF16 out
 *   down: y[d, n] = h[d] . Wd[n]                                     BF16 out
 * Activations stay BF16 (no FP8 rounding of x or h). */
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_moe.h"

#define GV_WARPS 8
#define GV_ROWS 16      /* rows of an expert handled per pass over its weights */

/* 16 e4m3 values (one uint4) to F32. */
static __device__ __forceinline__ void fp8x16_to_f32(uint4 q, float *f)
{
    const uint32_t w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
#pragma unroll
        for (int h = 0; h < 2; h++) {
            __half2_raw r = __nv_cvt_fp8x2_to_halfraw2(
                (__nv_fp8x2_storage_t)(w[i] >> (16 * h)), __NV_E4M3);
            float2 v = __half22float2(__half2(r));
            f[4 * i + 2 * h] = v.x;
            f[4 * i + 2 * h + 1] = v.y;
        }
    }
}

/* 16 BF16 values at p (16-byte aligned) to F32. */
static __device__ __forceinline__ void bf16x16_to_f32(const bf16 *p, float *f)
{
    const uint4 *q = (const uint4 *)p;
#pragma unroll
    for (int i = 0; i < 2; i++) {
        uint4 v = q[i];
        const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int j = 0; j < 4; j++) {
            f[8 * i + 2 * j] = __uint_as_float(w[j] << 16);
            f[8 * i + 2 * j + 1] = __uint_as_float(w[j] & 0xffff0000u);
        }
    }
}

static __device__ __forceinline__ float dot16(const float *a, const float *b)
{
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < 16; i++)
        s = fmaf(a[i], b[i], s);
    return s;
}

/* Row n of an FP8 weight (origin (0, 0)): its 16 values at k, scaled. */
static __device__ __forceinline__ void w_chunk(const dsa_cuda_w &w, int64_t n, int64_t k, float *f)
{
    uint4 q = __ldg((const uint4 *)((const uint8_t *)w.data + n * w.ld + k));
    fp8x16_to_f32(q, f);
    float s = w.scale[(n / 128) * w.scale_ld + k / 128];
#pragma unroll
    for (int i = 0; i < 16; i++)
        f[i] *= s;
}

static __global__ void __launch_bounds__(GV_WARPS * 32)
    gemv_up_kernel(bf16 *h, dsa_moe_perm perm, const dsa_cuda_w *table, const bf16 *x,
                   int64_t dim, int64_t inter)
{
    if ((int32_t)blockIdx.y >= perm.n_act[0])
        return;
    int lane = threadIdx.x & 31;
    int64_t n = (int64_t)blockIdx.x * GV_WARPS + threadIdx.x / 32;
    int32_t e = perm.act[blockIdx.y];
    if (n >= inter)
        return;
    const dsa_cuda_w &wg = table[3 * e], &wu = table[3 * e + 1];
    int32_t r0 = perm.off[e], cnt = perm.off[e + 1] - r0;
    for (int32_t rb = 0; rb < cnt; rb += GV_ROWS) {
        float ag[GV_ROWS], au[GV_ROWS];
#pragma unroll
        for (int r = 0; r < GV_ROWS; r++)
            ag[r] = au[r] = 0.0f;
#pragma unroll 2
        for (int64_t k = lane * 16; k < dim; k += 32 * 16) {
            float g[16], u[16], xv[16];
            w_chunk(wg, n, k, g);
            w_chunk(wu, n, k, u);
#pragma unroll
            for (int r = 0; r < GV_ROWS; r++)
                if (rb + r < cnt) {
                    bf16x16_to_f32(x + (int64_t)perm.tok[r0 + rb + r] * dim + k, xv);
                    ag[r] += dot16(g, xv);
                    au[r] += dot16(u, xv);
                }
        }
#pragma unroll
        for (int r = 0; r < GV_ROWS; r++) {
            if (rb + r >= cnt)
                break;
            float gs = warp_sum(ag[r]), us = warp_sum(au[r]);
            if (lane == 0)
                h[(int64_t)(r0 + rb + r) * inter + n] =
                    __float2bfloat16(gs / (1.0f + expf(-gs)) * us);
        }
    }
}

/* down has a short K (one TP rank's slice of the intermediate: 256 at
 * TP=8), so a whole warp on one row would idle half its lanes and keep one
 * 16-byte load in flight per lane.  Instead half a warp owns a row, and a
 * warp owns GV_DOWN_RPW rows whose loads it issues together before using
 * them. */
#define GV_DOWN_RPW 8
static __global__ void __launch_bounds__(GV_WARPS * 32)
    gemv_down_kernel(bf16 *y, dsa_moe_perm perm, const dsa_cuda_w *table, const bf16 *h,
                     int64_t dim, int64_t inter)
{
    if ((int32_t)blockIdx.y >= perm.n_act[0])
        return;
    int lane = threadIdx.x & 31, half = lane >> 4, sl = lane & 15;
    int64_t n0 = ((int64_t)blockIdx.x * GV_WARPS + threadIdx.x / 32) * GV_DOWN_RPW;
    int32_t e = perm.act[blockIdx.y];
    if (n0 >= dim)
        return;
    const dsa_cuda_w &wd = table[3 * e + 2];
    int32_t r0 = perm.off[e], cnt = perm.off[e + 1] - r0;
    for (int32_t rb = 0; rb < cnt; rb += GV_ROWS) {
        float acc[GV_DOWN_RPW / 2][GV_ROWS];
#pragma unroll
        for (int j = 0; j < GV_DOWN_RPW / 2; j++)
#pragma unroll
            for (int r = 0; r < GV_ROWS; r++)
                acc[j][r] = 0.0f;
        for (int64_t k = sl * 16; k < inter; k += 16 * 16) {
            uint4 q[GV_DOWN_RPW / 2];
            float sc[GV_DOWN_RPW / 2];
#pragma unroll
            for (int j = 0; j < GV_DOWN_RPW / 2; j++) {
                int64_t n = n0 + 2 * j + half;
                q[j] = n < dim ? __ldg((const uint4 *)((const uint8_t *)wd.data + n * wd.ld + k))
                               : make_uint4(0, 0, 0, 0);
                sc[j] = n < dim ? wd.scale[(n / 128) * wd.scale_ld + k / 128] : 0.0f;
            }
#pragma unroll
            for (int j = 0; j < GV_DOWN_RPW / 2; j++) {
                float w[16], hv[16];
                fp8x16_to_f32(q[j], w);
#pragma unroll
                for (int i = 0; i < 16; i++)
                    w[i] *= sc[j];
#pragma unroll
                for (int r = 0; r < GV_ROWS; r++)
                    if (rb + r < cnt) {
                        bf16x16_to_f32(h + (int64_t)(r0 + rb + r) * inter + k, hv);
                        acc[j][r] += dot16(w, hv);
                    }
            }
        }
#pragma unroll
        for (int j = 0; j < GV_DOWN_RPW / 2; j++) {
            int64_t n = n0 + 2 * j + half;
#pragma unroll
            for (int r = 0; r < GV_ROWS; r++) {
                if (rb + r >= cnt)
                    break;
                float v = acc[j][r];
                for (int o = 8; o > 0; o >>= 1)     /* within the half warp */
                    v += __shfl_xor_sync(0xffffffffu, v, o);
                if (sl == 0 && n < dim)
                    y[(int64_t)(r0 + rb + r) * dim + n] = __float2bfloat16(v);
            }
        }
    }
}

extern "C" dsa_err dsa_cuda_moe_gemv(dsa_cuda_backend *be, const dsa_moe_perm *perm,
                                     const dsa_cuda_w *table, const void *x, void *h, void *y,
                                     int64_t dim, int64_t inter, int64_t n_act_max)
{
    if (n_act_max <= 0)
        return DSA_OK;
    dim3 gu(dsa_cuda_blocks(inter, GV_WARPS), (unsigned)n_act_max);
    gemv_up_kernel<<<gu, GV_WARPS * 32, 0, be->stream>>>((bf16 *)h, *perm, table,
                                                        (const bf16 *)x, dim, inter);
    dsa_err err = DSA_CUDA_LAUNCHED();
    if (err)
        return err;
    dim3 gd(dsa_cuda_blocks(dim, GV_WARPS * GV_DOWN_RPW), (unsigned)n_act_max);
    gemv_down_kernel<<<gd, GV_WARPS * 32, 0, be->stream>>>((bf16 *)y, *perm, table,
                                                          (const bf16 *)h, dim, inter);
    return DSA_CUDA_LAUNCHED();
}
