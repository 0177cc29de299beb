/* cuda_router.cu - MoE routing (backend.h dsa_router_params, MODEL_SPEC.md
 * §5, noaux_tc): one warp per token, scores and selection scores in shared
 * memory, every choice made as on the CPU (cpu_moe.c route_token): group
 * score = sum of the top two selection scores (sigmoid) or the maximum
 * (softmax), the best topk_group groups kept, the rest -inf, then top-k;
 * all ties to the lowest index.  Weights are the unbiased scores, optionally
 * normalised (sum + 1e-20), times routed_scaling_factor.  The bias may be
 * host memory (as the loader holds it): a device copy is kept. */
#include "kernels/cuda/cuda_common.cuh"

#define RT_WARPS 4
#define RT_MAX_E 1024
#define RT_MAX_G 64

/* Index of the largest v[i] (i < n, !taken[i]), lowest index on ties; -1 if
 * every entry is taken.  Every lane gets the answer. */
static __device__ int warp_argmax(const float *v, const uint8_t *taken, int n)
{
    int lane = threadIdx.x & 31;
    float bv = 0.0f;
    int bi = -1;
    for (int i = lane; i < n; i += 32)
        if (!taken[i] && (bi < 0 || v[i] > bv)) {
            bv = v[i];
            bi = i;
        }
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (oi >= 0 && (bi < 0 || ov > bv || (ov == bv && oi < bi))) {
            bv = ov;
            bi = oi;
        }
    }
    return bi;
}

static __global__ void router_kernel(dsa_router_params p, const float *bias)
{
    extern __shared__ float smem[];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int64_t t = (int64_t)blockIdx.x * RT_WARPS + warp;
    int E = (int)p.n_experts;
    float *score = smem + warp * (2 * E + RT_MAX_G);
    float *sel = score + E, *gscore = sel + E;
    uint8_t *taken = (uint8_t *)(smem + RT_WARPS * (2 * E + RT_MAX_G)) + warp * E;
    if (t >= p.n_tokens)
        return;
    /* F32 logits (the model's) or BF16 ones (an act-dtype caller) */
    const float *lf = p.logits_f32 ? (const float *)p.logits + t * E : NULL;
    const bf16 *lb = (const bf16 *)p.logits + t * E;
#define RT_LOGIT(e) (lf ? lf[e] : __bfloat162float(lb[e]))
    if (p.sigmoid) {
        for (int e = lane; e < E; e += 32)
            score[e] = 1.0f / (1.0f + expf(-RT_LOGIT(e)));
    } else {
        float mx = -INFINITY;
        for (int e = lane; e < E; e += 32)
            mx = fmaxf(mx, RT_LOGIT(e));
        mx = warp_max(mx);
        float sum = 0.0f;
        for (int e = lane; e < E; e += 32)
            sum += score[e] = expf(RT_LOGIT(e) - mx);
#undef RT_LOGIT
        sum = warp_sum(sum);
        for (int e = lane; e < E; e += 32)
            score[e] /= sum;
    }
    for (int e = lane; e < E; e += 32) {
        sel[e] = score[e] + (bias ? bias[e] : 0.0f);
        taken[e] = 0;
    }
    __syncwarp();
    if (p.grouped && p.n_group > 1) {
        int G = p.n_group, gs = E / G;
        if (lane < G) {
            const float *v = sel + lane * gs;
            if (p.sigmoid) {
                int a = -1, b = -1;
                for (int i = 0; i < gs; i++)
                    if (a < 0 || v[i] > v[a])
                        a = i;
                for (int i = 0; i < gs; i++)
                    if (i != a && (b < 0 || v[i] > v[b]))
                        b = i;
                gscore[lane] = a < 0 ? -INFINITY : v[a] + (b >= 0 ? v[b] : 0.0f);
            } else {
                float m = v[0];
                for (int i = 1; i < gs; i++)
                    m = fmaxf(m, v[i]);
                gscore[lane] = m;
            }
        }
        __syncwarp();
        if (lane == 0) {
            uint8_t keep[RT_MAX_G];
            for (int g = 0; g < G; g++)
                keep[g] = 0;
            for (int k = 0; k < p.topk_group && k < G; k++) {
                int best = -1;
                for (int g = 0; g < G; g++)
                    if (!keep[g] && (best < 0 || gscore[g] > gscore[best]))
                        best = g;
                if (best >= 0)
                    keep[best] = 1;
            }
            for (int g = 0; g < G; g++)
                gscore[g] = keep[g] ? 1.0f : 0.0f;
        }
        __syncwarp();
        for (int e = lane; e < E; e += 32)
            if (gscore[e / gs] == 0.0f)
                sel[e] = -INFINITY;
        __syncwarp();
    }
    float sum = 0.0f, w[16];
    int ids[16];
    for (int k = 0; k < p.top_k; k++) {
        int e = warp_argmax(sel, taken, E);
        if (e < 0)
            e = 0;
        __syncwarp();
        if (lane == 0)
            taken[e] = 1;
        __syncwarp();
        ids[k] = e;
        w[k] = score[e];
        sum += w[k];
    }
    if (lane == 0)
        for (int k = 0; k < p.top_k; k++) {
            p.ids[t * p.top_k + k] = ids[k];
            p.weights[t * p.top_k + k] = p.norm_topk_prob
                                             ? w[k] / (sum + 1e-20f) * p.routed_scaling_factor
                                             : w[k] * p.routed_scaling_factor;
        }
}

extern "C" dsa_err dsa_cuda_router(dsa_backend *be_, const dsa_router_params *p)
{
    dsa_cuda_backend *be = dsa_cuda_be(be_);
    if (p->n_tokens <= 0)
        return DSA_OK;
    if (p->n_experts > RT_MAX_E || p->top_k > 16 || p->top_k < 1 ||
        (p->grouped && p->n_group > RT_MAX_G) || (p->grouped && p->n_group > 32))
        return dsa_fail(DSA_UNSUPPORTED, "cuda router: %lld experts, top %d, %d groups",
                        (long long)p->n_experts, p->top_k, p->n_group);
    const void *bias = NULL;
    dsa_err err = dsa_cuda_host_array(be, p->bias, (size_t)p->n_experts * sizeof(float), &bias);
    if (err)
        return err;
    size_t sm = (size_t)RT_WARPS * ((2 * p->n_experts + RT_MAX_G) * sizeof(float) +
                                    (size_t)p->n_experts);
    router_kernel<<<dsa_cuda_blocks(p->n_tokens, RT_WARPS), RT_WARPS * 32, sm, be->stream>>>(
        *p, (const float *)bias);
    return DSA_CUDA_LAUNCHED();
}
