/* cuda_moe.cu - routed experts (backend.h dsa_moe_params): permutation by
 * expert, the expert GEMMs, weighted combine, all on the device (no host
 * round trip, so an MoE layer can sit inside a captured graph).
 *
 *   route   (one block) n[e] = #assignments to e; off[e] = sum_{e' < e} n[e'];
 *           the experts with rows; slot d of assignment a in its expert's
 *           run: tok[d], ex[d], inv[a]
 *   experts, by path (FP8 experts, 128-multiple dims; else the dequant path):
 *     gemv     T <= DSA_MOE_GEMV_TOKENS_MAX: fused FP8 GEMV over the selected
 *              experts, each expert's weights read once (cuda_moe_gemv.cu)
 *     cutlass  quantise x rows per 1x128 (gathered by tok), grouped FP8 GEMM
 *              gate|up (2 groups per expert) -> hgu [A, 2I]; SiLU*mul fused
 *              with the quantisation of h; grouped FP8 GEMM down -> y
 *              (cutlass_moe.cu)
 *     dequant  the CUDA-core tile GEMMs below (any dtype; the reference path)
 *   combine out[t] (+)= sum_k w[t,k] y[inv[t*k + k]] (k order: deterministic)
 * Expert ids outside [0, n_experts) contribute nothing (the CPU fails with
 * DSA_RANGE; the router never produces them).  Expert weight descriptors
 * live in a device table built once per experts array. */
#include "kernels/cuda/cuda_gemm_tile.cuh"
#include "kernels/cuda/cuda_moe.h"

typedef struct moe_ws {
    int32_t *off, *tok, *ex, *inv, *act, *n_act;
    float *hg;          /* dequant: [A, I] gate products */
    bf16 *h;            /* dequant, gemv: [A, I] silu(gate) * up */
    void *y;            /* [A, D] expert outputs: F32 (dequant) or BF16 */
    uint8_t *xq, *hq;   /* cutlass: e4m3 [A, D] x rows, [A, I] h rows */
    float *xs, *hs;     /* cutlass: their 1x128 scales (cuda_moe.h layout) */
    bf16 *hgu;          /* cutlass: [A, 2I] gate | up products */
    void *cutlass;      /* cutlass: groups and workspace */
} moe_ws;

/* The whole permutation in one block of 1024 threads (E <= 1024): counts
 * per expert in shared memory, their exclusive scan into off[0..E], the
 * experts with rows listed in id order into act[0..n_act), then the
 * scatter: slot d of each valid assignment a within its expert's run
 * (order inside a run is the atomics' order; nothing downstream depends on
 * it: the combine sums by k).  One launch where four were (memset, count,
 * scan, scatter): decode is latency-bound. */
static __global__ void __launch_bounds__(1024)
    moe_route_kernel(moe_ws ws, const int32_t *ids, int64_t A, int64_t E, int k)
{
    __shared__ int32_t cnt[1024], s[1024], f[1024];
    int i = threadIdx.x;
    cnt[i] = 0;
    __syncthreads();
    for (int64_t a = i; a < A; a += 1024) {
        int32_t e = ids[a];
        if (e >= 0 && e < E)
            atomicAdd(&cnt[e], 1);
    }
    __syncthreads();
    int32_t c = cnt[i];
    s[i] = c;
    f[i] = c > 0;
    __syncthreads();
    for (int o = 1; o < 1024; o <<= 1) {
        int32_t v = i >= o ? s[i - o] : 0, w = i >= o ? f[i - o] : 0;
        __syncthreads();
        s[i] += v;
        f[i] += w;
        __syncthreads();
    }
    int32_t ex = s[i] - c;
    if (i < E) {
        ws.off[i] = ex;
        if (c > 0)
            ws.act[f[i] - 1] = i;
    }
    if (i == E - 1) {
        ws.off[E] = s[i];
        ws.n_act[0] = f[i];
    }
    __syncthreads();
    cnt[i] = ex;    /* now the next free slot of expert i */
    __syncthreads();
    for (int64_t a = i; a < A; a += 1024) {
        int32_t e = ids[a];
        if (e < 0 || e >= E) {
            ws.inv[a] = -1;
            continue;
        }
        int32_t d = atomicAdd(&cnt[e], 1);
        ws.tok[d] = (int32_t)(a / k);
        ws.ex[d] = e;
        ws.inv[a] = d;
    }
}

/* Row d of x gathered by token, and row d of silu(gate) * up from hgu. */
struct moe_src_x {
    const bf16 *x;
    const int32_t *tok;
    int64_t ld;
    __device__ float operator()(int64_t d, int64_t j) const
    {
        return __bfloat162float(x[(int64_t)tok[d] * ld + j]);
    }
};

struct moe_src_silu {
    const bf16 *hgu;
    int64_t inter;
    __device__ float operator()(int64_t d, int64_t j) const
    {
        float g = __bfloat162float(hgu[d * 2 * inter + j]);
        float u = __bfloat162float(hgu[d * 2 * inter + inter + j]);
        return g / (1.0f + expf(-g)) * u;
    }
};

/* Quantises the permuted rows d < off[E] (k a multiple of 128) to e4m3 per
 * 1x128 block as cuda_quant.cu does (amax >= 1e-4, scale = amax / 448),
 * rows of q contiguous, scales in the per-expert M-major layout the grouped
 * GEMM reads: s[n_kb * off[e] + kb * n_e + r] for row d = off[e] + r.  One
 * warp per (row, block). */
template <class Src>
static __global__ void moe_quant_kernel(uint8_t *q, float *s, Src src, const int32_t *off,
                                        const int32_t *ex, int64_t A, int64_t E, int64_t k)
{
    int64_t n_kb = k / 128;
    int64_t item = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (item >= A * n_kb)
        return;
    int64_t d = item / n_kb, kb = item % n_kb;
    if (d >= off[E])
        return;
    int lane = threadIdx.x & 31;
    float v[4], amax = 0.0f;
    for (int i = 0; i < 4; i++) {
        v[i] = src(d, kb * 128 + lane * 4 + i);
        amax = fmaxf(amax, fabsf(v[i]));
    }
    amax = fmaxf(warp_max(amax), 1e-4f);
    float sc = amax / 448.0f;
    uint32_t packed = 0;
    for (int i = 0; i < 4; i++) {
        __nv_fp8_e4m3 f(v[i] / sc);
        packed |= (uint32_t)f.__x << (8 * i);
    }
    *(uint32_t *)(q + d * k + kb * 128 + lane * 4) = packed;
    if (lane == 0) {
        int32_t e = ex[d], o = off[e], n_e = off[e + 1] - o;
        s[n_kb * o + kb * n_e + (d - o)] = sc;
    }
}

struct moe_xrow {
    const bf16 *x;
    const int32_t *tok;
    int64_t ld;
    __device__ const bf16 *operator()(int64_t m) const { return x + (int64_t)tok[m] * ld; }
};

struct moe_hrow {
    const bf16 *h;
    int64_t ld;
    __device__ const bf16 *operator()(int64_t m) const { return h + m * ld; }
};

struct moe_store_f32 {
    float *out;
    int64_t ld;
    __device__ void operator()(int64_t m, int64_t n, float v) const { out[m * ld + n] = v; }
};

struct moe_silu_up {
    const float *hg;
    bf16 *h;
    int64_t ld;
    __device__ void operator()(int64_t m, int64_t n, float u) const
    {
        float g = hg[m * ld + n];
        h[m * ld + n] = __float2bfloat16(g / (1.0f + expf(-g)) * u);
    }
};

/* table: [E][3] = gate, up, down */
static __global__ void __launch_bounds__(GT_THREADS)
    moe_up_kernel(moe_ws ws, const dsa_cuda_w *table, const bf16 *x, int64_t dim, int64_t inter)
{
    int64_t e = blockIdx.y, n0 = (int64_t)blockIdx.x * GT_BN;
    int64_t a0 = ws.off[e], cnt = ws.off[e + 1] - a0;
    dsa_cuda_w wg = table[3 * e], wu = table[3 * e + 1];
    moe_xrow xr = {x, ws.tok + a0, dim};
    moe_store_f32 sg = {ws.hg + a0 * inter, inter};
    moe_silu_up su = {ws.hg + a0 * inter, ws.h + a0 * inter, inter};
    for (int64_t m0 = 0; m0 < cnt; m0 += GT_BM) {
        gemm_tile(wg, n0, m0, cnt, xr, sg);
        gemm_tile(wu, n0, m0, cnt, xr, su);
    }
}

static __global__ void __launch_bounds__(GT_THREADS)
    moe_down_kernel(moe_ws ws, const dsa_cuda_w *table, int64_t dim, int64_t inter)
{
    int64_t e = blockIdx.y, n0 = (int64_t)blockIdx.x * GT_BN;
    int64_t a0 = ws.off[e], cnt = ws.off[e + 1] - a0;
    dsa_cuda_w wd = table[3 * e + 2];
    moe_hrow hr = {ws.h + a0 * inter, inter};
    moe_store_f32 sy = {(float *)ws.y + a0 * dim, dim};
    for (int64_t m0 = 0; m0 < cnt; m0 += GT_BM)
        gemm_tile(wd, n0, m0, cnt, hr, sy);
}

template <class Y>
static __device__ __forceinline__ float moe_y(const Y *y, int64_t i);
template <>
__device__ __forceinline__ float moe_y<float>(const float *y, int64_t i)
{
    return y[i];
}
template <>
__device__ __forceinline__ float moe_y<bf16>(const bf16 *y, int64_t i)
{
    return __bfloat162float(y[i]);
}

template <class Y>
static __global__ void moe_combine_kernel(bf16 *out, const Y *y, const int32_t *inv,
                                          const float *w, int64_t dim, int k, int accumulate)
{
    int64_t t = blockIdx.x;
    for (int64_t n = threadIdx.x; n < dim; n += blockDim.x) {
        float v = accumulate ? __bfloat162float(out[t * dim + n]) : 0.0f;
        for (int j = 0; j < k; j++) {
            int32_t d = inv[t * k + j];
            if (d >= 0)
                v += w[t * k + j] * moe_y(y, (int64_t)d * dim + n);
        }
        out[t * dim + n] = __float2bfloat16(v);
    }
}

static size_t align256(size_t n)
{
    return (n + 255) & ~(size_t)255;
}

static int aligned16(const void *p)
{
    return ((uintptr_t)p & 15u) == 0;
}

/* Whether every expert can take the FP8 paths (cuda_moe.h). */
static int moe_fp8_ok(const dsa_moe_params *p)
{
    if (p->dim % 128 || p->inter % 128 || !aligned16(p->x))
        return 0;
    for (int64_t e = 0; e < p->n_experts; e++) {
        const dsa_weight *w[3] = {&p->experts[e].gate, &p->experts[e].up, &p->experts[e].down};
        for (int i = 0; i < 3; i++)
            if (w[i]->dtype != DSA_DTYPE_F8_E4M3 || w[i]->block_rows != 128 ||
                w[i]->block_cols != 128 || w[i]->row0 || w[i]->col0 || w[i]->ld % 16 ||
                !aligned16(w[i]->data) || !w[i]->scale)
                return 0;
    }
    return 1;
}

enum { PATH_DEQUANT, PATH_GEMV, PATH_CUTLASS };

extern "C" void dsa_cuda_moe_force(dsa_backend *be, dsa_cuda_moe_path path)
{
    dsa_cuda_be(be)->moe_force = (int)path;
}

extern "C" const char *dsa_cuda_last_moe_path(dsa_backend *be)
{
    const char *n = dsa_cuda_be(be)->last_moe_path;
    return n ? n : "none";
}

/* The scratch of one call, carved from `base` (NULL: sizes only). */
static size_t moe_carve(char *base, int path, int64_t E, int64_t A, int64_t D, int64_t I,
                        size_t cutlass_bytes, moe_ws *ws)
{
    size_t o = 0;
    auto take = [&](size_t bytes) {
        char *q = base ? base + o : nullptr;
        o = align256(o + bytes);
        return (void *)q;
    };
    moe_ws w = {};
    w.off = (int32_t *)take((size_t)(E + 1) * 4);
    w.act = (int32_t *)take((size_t)E * 4);
    w.n_act = (int32_t *)take(4);
    w.tok = (int32_t *)take((size_t)A * 4);
    w.ex = (int32_t *)take((size_t)A * 4);
    w.inv = (int32_t *)take((size_t)A * 4);
    if (path == PATH_DEQUANT) {
        w.hg = (float *)take((size_t)(A * I) * 4);
        w.h = (bf16 *)take((size_t)(A * I) * 2);
        w.y = take((size_t)(A * D) * 4);
    } else if (path == PATH_GEMV) {
        w.h = (bf16 *)take((size_t)(A * I) * 2);
        w.y = take((size_t)(A * D) * 2);
    } else {
        w.xq = (uint8_t *)take((size_t)(A * D));
        w.xs = (float *)take((size_t)(A * (D / 128)) * 4);
        w.hgu = (bf16 *)take((size_t)(A * 2 * I) * 2);
        w.hq = (uint8_t *)take((size_t)(A * I));
        w.hs = (float *)take((size_t)(A * (I / 128)) * 4);
        w.y = take((size_t)(A * D) * 2);
        w.cutlass = take(cutlass_bytes);
    }
    if (ws)
        *ws = w;
    return o;
}

static dsa_err moe_cutlass(dsa_cuda_backend *be, const moe_ws &ws, const dsa_moe_perm &perm,
                           const dsa_cuda_w *table, const void *x, int64_t A, int64_t D,
                           int64_t I)
{
    int64_t E = perm.n_experts;
    unsigned gx = dsa_cuda_blocks(A * (D / 128), 8), gh = dsa_cuda_blocks(A * (I / 128), 8);
    moe_src_x sx = {(const bf16 *)x, ws.tok, D};
    moe_quant_kernel<<<gx, 256, 0, be->stream>>>(ws.xq, ws.xs, sx, ws.off, ws.ex, A, E, D);
    dsa_err err = DSA_CUDA_LAUNCHED();
    if (err)
        return err;
    dsa_cutlass_moe_params up = {ws.hgu, ws.xq, ws.xs, &perm, table, I, D, 2 * I,
                                 DSA_CUTLASS_MOE_GATE_UP, ws.cutlass};
    if ((err = dsa_cutlass_moe_run(be, &up)))
        return err;
    moe_src_silu ss = {ws.hgu, I};
    moe_quant_kernel<<<gh, 256, 0, be->stream>>>(ws.hq, ws.hs, ss, ws.off, ws.ex, A, E, I);
    if ((err = DSA_CUDA_LAUNCHED()))
        return err;
    dsa_cutlass_moe_params down = {ws.y, ws.hq, ws.hs, &perm, table, D, I, D,
                                   DSA_CUTLASS_MOE_DOWN, ws.cutlass};
    return dsa_cutlass_moe_run(be, &down);
}

extern "C" dsa_err dsa_cuda_moe(dsa_backend *be_, const dsa_moe_params *p)
{
    dsa_cuda_backend *be = dsa_cuda_be(be_);
    int64_t T = p->n_tokens, K = p->top_k, E = p->n_experts, A = T * K;
    int64_t D = p->dim, I = p->inter;
    if (T <= 0)
        return DSA_OK;
    if (E < 1 || E > 1024)
        return dsa_fail(DSA_UNSUPPORTED, "cuda moe: %lld experts (1..1024)", (long long)E);
    int fp8 = moe_fp8_ok(p);
    int path = !fp8 ? PATH_DEQUANT : T <= DSA_MOE_GEMV_TOKENS_MAX ? PATH_GEMV : PATH_CUTLASS;
    if (be->moe_force == DSA_CUDA_MOE_DEQUANT || (fp8 && be->moe_force == DSA_CUDA_MOE_GEMV))
        path = be->moe_force == DSA_CUDA_MOE_DEQUANT ? PATH_DEQUANT : PATH_GEMV;
    else if (fp8 && be->moe_force == DSA_CUDA_MOE_CUTLASS)
        path = PATH_CUTLASS;
    /* The experts' device descriptors, built once per experts array. */
    size_t tb = (size_t)(3 * E) * sizeof(dsa_cuda_w);
    dsa_cuda_w *ht = (dsa_cuda_w *)malloc(tb);
    if (!ht)
        return dsa_fail(DSA_NOMEM, "cuda moe: expert table");
    for (int64_t e = 0; e < E; e++) {
        ht[3 * e] = dsa_cuda_w_of(&p->experts[e].gate);
        ht[3 * e + 1] = dsa_cuda_w_of(&p->experts[e].up);
        ht[3 * e + 2] = dsa_cuda_w_of(&p->experts[e].down);
    }
    const void *table_;
    dsa_err err = dsa_cuda_host_array_keyed(be, p->experts, ht, tb, &table_);
    free(ht);
    if (err)
        return err;
    const dsa_cuda_w *table = (const dsa_cuda_w *)table_;

    size_t cb = path == PATH_CUTLASS ? dsa_cutlass_moe_scratch_bytes(E, D, I, be->n_sm) : 0;
    void *base;
    if ((err = dsa_cuda_scratch(be, DSA_CUDA_SCR_MOE, moe_carve(NULL, path, E, A, D, I, cb, NULL),
                                &base)))
        return err;
    moe_ws ws;
    moe_carve((char *)base, path, E, A, D, I, cb, &ws);
    moe_route_kernel<<<1, 1024, 0, be->stream>>>(ws, p->ids, A, E, (int)K);
    if ((err = DSA_CUDA_LAUNCHED()))
        return err;
    dsa_moe_perm perm = {ws.off, ws.tok, ws.ex, ws.act, ws.n_act, E, A};
    if (path == PATH_GEMV) {
        be->last_moe_path = "moe-gemv";
        err = dsa_cuda_moe_gemv(be, &perm, table, p->x, ws.h, ws.y, D, I, A < E ? A : E);
    } else if (path == PATH_CUTLASS) {
        be->last_moe_path = "moe-cutlass";
        err = moe_cutlass(be, ws, perm, table, p->x, A, D, I);
    } else {
        be->last_moe_path = "moe-dequant";
        moe_up_kernel<<<dim3(dsa_cuda_blocks(I, GT_BN), (unsigned)E), GT_THREADS, 0,
                        be->stream>>>(ws, table, (const bf16 *)p->x, D, I);
        if (!(err = DSA_CUDA_LAUNCHED())) {
            moe_down_kernel<<<dim3(dsa_cuda_blocks(D, GT_BN), (unsigned)E), GT_THREADS, 0,
                              be->stream>>>(ws, table, D, I);
            err = DSA_CUDA_LAUNCHED();
        }
    }
    if (err)
        return err;
    if (path == PATH_DEQUANT)
        moe_combine_kernel<<<(unsigned)T, 256, 0, be->stream>>>(
            (bf16 *)p->out, (const float *)ws.y, ws.inv, p->weights, D, (int)K, p->accumulate);
    else
        moe_combine_kernel<<<(unsigned)T, 256, 0, be->stream>>>(
            (bf16 *)p->out, (const bf16 *)ws.y, ws.inv, p->weights, D, (int)K, p->accumulate);
    return DSA_CUDA_LAUNCHED();
}
