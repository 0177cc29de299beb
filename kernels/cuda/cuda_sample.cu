/* cuda_sample.cu - top-k / top-p / min-p sampling over F32 logits (backend.h
 * dsa_sample_params), one block of SP_THREADS per row, following
 * cpu_sample.c's definitions so both backends pick the same token from the
 * same logits and (seed, step) up to summation order:
 *   greedy (T <= 0): argmax, lowest index on ties;
 *   e_i = expf((l_i - l_max) / T);
 *   top-k: the k largest logits, ties to the lowest index; the candidates
 *     are sorted (logit desc, id asc) in shared memory (k <= SP_SORT_MAX),
 *     then top-p, min-p and the draw walk them in that order, as on the CPU;
 *   otherwise: top-p keeps the smallest prefix in (logit desc, id asc) order
 *     whose mass reaches top_p * Z, found by radix selection on the logit's
 *     bits with mass histograms, ties at the boundary resolved by index;
 *     min-p keeps e_i >= min_p; the draw walks the vocabulary in index order.
 * Sums are double per thread, combined by a block scan (deterministic); the
 * radix histograms use F32 atomics (only where a boundary lands can differ).
 * Deviation: top_k > SP_SORT_MAX is applied as a filter with the index-order
 * draw.  Each thread owns a contiguous segment of the row.
 *
 * That kernel is the fallback (DSA_CUDA_SAMPLER=own).  By default the
 * filters run on FlashInfer's kernels (fi_sample.cu: top-k mask, softmax
 * with temperature, top-p renormalisation) and draw_kernel below picks each
 * row from the filtered probabilities q: greedy rows take argmax of the raw
 * logits; the others drop q_i < min_p * max q (min-p, as cpu_sample.c
 * defines it, on the row after top-k and top-p) and walk the kept tokens in
 * index order to u * (their sum), u = uniform01(seed, step), the same
 * uniform as above and as the CPU's.  A row's draw therefore depends on its
 * own logits and (seed, step) only, whatever batch it is in.  Rows with
 * top-k are walked in index order too, where the CPU walks its sorted
 * candidates: the same distribution, not the same id for a given u. */
#include <stdlib.h>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/fi_sample.h"
#include "kernels/cuda/fi_sample_plan.h"

#define SP_THREADS 1024
#define SP_SORT_MAX 2048

static __device__ uint64_t splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static __device__ __forceinline__ uint32_t fkey(float f)
{
    uint32_t u = __float_as_uint(f);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/* Exclusive scan of v over the block; *total gets the sum.  sh: 32 doubles. */
static __device__ double block_excl_scan(double v, double *sh, double *total)
{
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    double x = v;
    for (int o = 1; o < 32; o <<= 1) {
        double y = __shfl_up_sync(0xffffffffu, x, o);
        if (lane >= o)
            x += y;
    }
    __syncthreads();
    if (lane == 31)
        sh[wid] = x;
    __syncthreads();
    if (wid == 0) {
        double w = sh[lane];
        for (int o = 1; o < 32; o <<= 1) {
            double y = __shfl_up_sync(0xffffffffu, w, o);
            if (lane >= o)
                w += y;
        }
        sh[lane] = w;
    }
    __syncthreads();
    double before = (wid ? sh[wid - 1] : 0.0) + x - v;
    *total = sh[31];
    __syncthreads();
    return before;
}

typedef struct sp_shared {
    float hist[256];
    double scan[32];
    float red[32];
    uint32_t key;
    double above, target;
    int32_t tie_id;
    int32_t result;
    uint64_t sort_key[SP_SORT_MAX];  /* (logit key, ~id) packed, sorted desc */
} sp_shared;

/* The largest key k* with weight(key > k*) < target <= weight(key >= k*),
 * weight = 1 (mass == 0) or e_i; sets s->key and s->above. */
static __device__ void radix_select(const float *l, int64_t V, int64_t b0, int64_t b1, float lmax,
                                    float invT, int mass, double target, sp_shared *s)
{
    uint32_t prefix = 0, pmask = 0;
    double above = 0.0;
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int i = threadIdx.x; i < 256; i += blockDim.x)
            s->hist[i] = 0.0f;
        __syncthreads();
        for (int64_t i = b0; i < b1; i++) {
            uint32_t k = fkey(l[i]);
            if ((k & pmask) == prefix)
                atomicAdd(&s->hist[(k >> shift) & 255u],
                          mass ? expf((l[i] - lmax) * invT) : 1.0f);
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            int b = 255;
            for (; b > 0; b--) {
                if (above + (double)s->hist[b] >= target)
                    break;
                above += (double)s->hist[b];
            }
            s->key = prefix | ((uint32_t)b << shift);
            s->above = above;
        }
        __syncthreads();
        prefix = s->key;
        above = s->above;
        pmask |= 255u << shift;
    }
}

/* Among entries with key == s->key, in index order, the id at which the
 * running weight (after s->above) first reaches target; sets s->tie_id. */
static __device__ void tie_cut(const float *l, int64_t b0, int64_t b1, float lmax, float invT,
                               int mass, double target, sp_shared *s)
{
    double mine = 0.0;
    for (int64_t i = b0; i < b1; i++)
        if (fkey(l[i]) == s->key)
            mine += mass ? (double)expf((l[i] - lmax) * invT) : 1.0;
    double tot;
    double before = block_excl_scan(mine, s->scan, &tot) + s->above;
    if (threadIdx.x == 0)
        s->tie_id = 0x7fffffff;
    __syncthreads();
    if (before < target && before + mine >= target) {
        double c = before;
        for (int64_t i = b0; i < b1; i++)
            if (fkey(l[i]) == s->key) {
                c += mass ? (double)expf((l[i] - lmax) * invT) : 1.0;
                if (c >= target) {
                    s->tie_id = (int32_t)i;
                    break;
                }
            }
    }
    __syncthreads();
    if (s->tie_id == 0x7fffffff && threadIdx.x == 0) {
        /* rounding left the target unreached: keep every tie */
        s->tie_id = 0x7ffffffe;
    }
    __syncthreads();
}

static __device__ double uniform01(uint64_t seed, uint64_t step)
{
    uint64_t z = splitmix64(splitmix64(seed) ^ step);
    return (double)(z >> 11) * 0x1.0p-53;
}

/* This thread's contiguous share [b0, b1) of a row of V entries. */
static __device__ __forceinline__ void thread_span(int64_t V, int64_t *b0, int64_t *b1)
{
    int64_t seg = (V + SP_THREADS - 1) / SP_THREADS;
    int64_t a = threadIdx.x * seg;
    *b0 = a < V ? a : V;
    *b1 = a + seg < V ? a + seg : V;
}

static __global__ void __launch_bounds__(SP_THREADS)
    sample_kernel(int32_t *out_ids, float *out_lp, const float *logits,
                  const dsa_sample_row *rows, int64_t V)
{
    __shared__ sp_shared s;
    int64_t r = blockIdx.x;
    const float *l = logits + r * V;
    dsa_sample_row row = rows[r];
    int64_t b0, b1;
    thread_span(V, &b0, &b1);
    float lm = -INFINITY;
    for (int64_t i = b0; i < b1; i++)
        lm = fmaxf(lm, l[i]);
    float lmax = block_max(lm, s.red);
    int tid = threadIdx.x;
    if (tid == 0)
        s.result = 0x7fffffff;
    __syncthreads();

    if (row.temperature <= 0.0f || V == 1) {
        /* the first index holding the maximum */
        int32_t first = 0x7fffffff;
        for (int64_t i = b0; i < b1; i++)
            if (l[i] == lmax) {
                first = (int32_t)i;
                break;
            }
        atomicMin(&s.result, first);
        __syncthreads();
        if (tid == 0 && s.result == 0x7fffffff)
            s.result = 0; /* all NaN */
    } else {
        float invT = 1.0f / row.temperature;
        int use_k = row.top_k > 0 && row.top_k < V;
        int use_p = row.top_p < 1.0f;
        int use_min = row.min_p > 0.0f;
        double u = uniform01(row.seed, row.step);
        if (tid == 0)
            s.result = 0x7fffffff;
        __syncthreads();
        uint32_t kkey = 0;
        int32_t ktie = 0x7fffffff;
        if (use_k) {
            radix_select(l, V, b0, b1, lmax, invT, 0, (double)row.top_k, &s);
            tie_cut(l, b0, b1, lmax, invT, 0, (double)row.top_k, &s);
            kkey = s.key;
            ktie = s.tie_id;
        }
#define IN_K(i) (!use_k || fkey(l[i]) > kkey || (fkey(l[i]) == kkey && (int32_t)(i) <= ktie))
        if (use_k && row.top_k <= SP_SORT_MAX) {
            /* gather the k candidates, sort (logit desc, id asc), walk as the CPU */
            __shared__ int n_c;
            if (tid == 0)
                n_c = 0;
            __syncthreads();
            for (int64_t i = b0; i < b1; i++)
                if (IN_K(i)) {
                    int at = atomicAdd(&n_c, 1);
                    if (at < SP_SORT_MAX)
                        s.sort_key[at] = ((uint64_t)fkey(l[i]) << 32) | (uint32_t)(~(uint32_t)i);
                }
            __syncthreads();
            int n = n_c < SP_SORT_MAX ? n_c : SP_SORT_MAX;
            for (int i = n + tid; i < SP_SORT_MAX; i += SP_THREADS)
                s.sort_key[i] = 0;
            __syncthreads();
            for (int kk = 2; kk <= SP_SORT_MAX; kk <<= 1)
                for (int j = kk >> 1; j > 0; j >>= 1) {
                    for (int i = tid; i < SP_SORT_MAX; i += SP_THREADS) {
                        int ij = i ^ j;
                        if (ij > i) {
                            uint64_t a = s.sort_key[i], b = s.sort_key[ij];
                            int desc = (i & kk) == 0;
                            if (desc ? a < b : a > b) {
                                s.sort_key[i] = b;
                                s.sort_key[ij] = a;
                            }
                        }
                    }
                    __syncthreads();
                }
            if (tid == 0) {
                double z = 0.0;
                for (int i = 0; i < n; i++) {
                    int32_t id = (int32_t)~(uint32_t)(s.sort_key[i] & 0xffffffffu);
                    z += expf((l[id] - lmax) * invT);
                }
                int keep = n;
                if (use_p) {
                    double target = (double)row.top_p * z, cum = 0.0;
                    for (int i = 0; i < n; i++) {
                        int32_t id = (int32_t)~(uint32_t)(s.sort_key[i] & 0xffffffffu);
                        cum += expf((l[id] - lmax) * invT);
                        if (cum >= target) {
                            keep = i + 1;
                            break;
                        }
                    }
                }
                if (use_min) {
                    int32_t id0 = (int32_t)~(uint32_t)(s.sort_key[0] & 0xffffffffu);
                    double lim = (double)row.min_p * expf((l[id0] - lmax) * invT);
                    int i = 1;
                    while (i < keep &&
                           expf((l[(int32_t)~(uint32_t)(s.sort_key[i] & 0xffffffffu)] - lmax) *
                                invT) >= lim)
                        i++;
                    keep = i;
                }
                if (keep < 1)
                    keep = 1;
                double sum = 0.0;
                for (int i = 0; i < keep; i++)
                    sum += expf((l[(int32_t)~(uint32_t)(s.sort_key[i] & 0xffffffffu)] - lmax) *
                                invT);
                double target = u * sum, cum = 0.0;
                int32_t pick = (int32_t)~(uint32_t)(s.sort_key[keep - 1] & 0xffffffffu);
                for (int i = 0; i < keep; i++) {
                    int32_t id = (int32_t)~(uint32_t)(s.sort_key[i] & 0xffffffffu);
                    cum += expf((l[id] - lmax) * invT);
                    if (target < cum) {
                        pick = id;
                        break;
                    }
                }
                s.result = pick;
            }
            __syncthreads();
        } else {
            uint32_t pkey = 0;
            int32_t ptie = 0x7fffffff;
            if (use_p) {
                double zl = 0.0;
                for (int64_t i = b0; i < b1; i++)
                    if (IN_K(i))
                        zl += expf((l[i] - lmax) * invT);
                double z;
                (void)block_excl_scan(zl, s.scan, &z);
                radix_select(l, V, b0, b1, lmax, invT, 1, (double)row.top_p * z, &s);
                tie_cut(l, b0, b1, lmax, invT, 1, (double)row.top_p * z, &s);
                pkey = s.key;
                ptie = s.tie_id;
            }
            float lim = use_min ? row.min_p : 0.0f;
#define KEPT(i)                                                                             \
    (IN_K(i) && (!use_p || fkey(l[i]) > pkey || (fkey(l[i]) == pkey && (int32_t)(i) <= ptie)) && \
     expf((l[i] - lmax) * invT) >= lim)
            double mine = 0.0;
            int32_t last = -1;
            for (int64_t i = b0; i < b1; i++)
                if (KEPT(i)) {
                    mine += expf((l[i] - lmax) * invT);
                    last = (int32_t)i;
                }
            double sum;
            double before = block_excl_scan(mine, s.scan, &sum);
            double target = u * sum;
            if (mine > 0.0 && before <= target && target < before + mine) {
                double c = before;
                for (int64_t i = b0; i < b1; i++)
                    if (KEPT(i)) {
                        c += expf((l[i] - lmax) * invT);
                        if (target < c) {
                            s.result = (int32_t)i;
                            break;
                        }
                    }
            }
            __syncthreads();
            if (s.result == 0x7fffffff) {
                /* rounding: the last kept token, or argmax when none is kept */
                __shared__ int32_t lastk;
                if (tid == 0)
                    lastk = -1;
                __syncthreads();
                atomicMax(&lastk, last);
                __syncthreads();
                if (tid == 0)
                    s.result = lastk;
            }
            __syncthreads();
#undef KEPT
        }
#undef IN_K
        if (s.result < 0) {
            int32_t first = 0x7fffffff;
            for (int64_t i = b0; i < b1; i++)
                if (l[i] == lmax) {
                    first = (int32_t)i;
                    break;
                }
            __syncthreads();
            if (tid == 0)
                s.result = 0x7fffffff;
            __syncthreads();
            atomicMin(&s.result, first);
            __syncthreads();
        }
    }
    __syncthreads();
    int32_t id = s.result;
    if (out_lp) {
        double zl = 0.0;
        for (int64_t i = b0; i < b1; i++)
            zl += expf(l[i] - lmax);
        double z;
        (void)block_excl_scan(zl, s.scan, &z);
        if (tid == 0)
            out_lp[r] = (float)((double)l[id] - (double)lmax - log(z));
    }
    if (tid == 0)
        out_ids[r] = id;
}

/* The first index holding the row's maximum (0 when all are NaN). */
static __device__ int32_t block_argmax(const float *l, int64_t b0, int64_t b1, float *red,
                                       int32_t *res)
{
    float lm = -INFINITY;
    for (int64_t i = b0; i < b1; i++)
        lm = fmaxf(lm, l[i]);
    float lmax = block_max(lm, red);
    if (threadIdx.x == 0)
        *res = 0x7fffffff;
    __syncthreads();
    int32_t first = 0x7fffffff;
    for (int64_t i = b0; i < b1; i++)
        if (l[i] == lmax) {
            first = (int32_t)i;
            break;
        }
    atomicMin(res, first);
    __syncthreads();
    int32_t id = *res == 0x7fffffff ? 0 : *res;
    __syncthreads();
    return id;
}

/* One row per block over FlashInfer's filtered probabilities (see the top
 * of the file).  probs may be NULL when every row is greedy. */
static __global__ void __launch_bounds__(SP_THREADS)
    draw_kernel(int32_t *out_ids, float *out_lp, const float *logits, const float *probs,
                const dsa_sample_row *rows, int64_t V)
{
    __shared__ double scan[32];
    __shared__ float red[32];
    __shared__ int32_t res;
    int64_t r = blockIdx.x;
    const float *l = logits + r * V;
    dsa_sample_row row = rows[r];
    int64_t b0, b1;
    thread_span(V, &b0, &b1);
    int32_t id;
    if (!probs || !(row.temperature > 0.0f) || V == 1) {
        id = block_argmax(l, b0, b1, red, &res);
    } else {
        const float *q = probs + r * V;
        float qm = 0.0f;
        for (int64_t i = b0; i < b1; i++)
            qm = fmaxf(qm, q[i]);
        float qmax = block_max(qm, red);
        float lim = row.min_p > 0.0f ? row.min_p * qmax : 0.0f;
#define KEPT(i) (q[i] > 0.0f && q[i] >= lim)
        double mine = 0.0;
        int32_t last = -1;
        for (int64_t i = b0; i < b1; i++)
            if (KEPT(i)) {
                mine += (double)q[i];
                last = (int32_t)i;
            }
        double sum;
        double before = block_excl_scan(mine, scan, &sum);
        double target = uniform01(row.seed, row.step) * sum;
        if (threadIdx.x == 0)
            res = -1;
        __syncthreads();
        if (mine > 0.0 && before <= target && target < before + mine) {
            double c = before;
            for (int64_t i = b0; i < b1; i++)
                if (KEPT(i)) {
                    c += (double)q[i];
                    if (target < c) {
                        res = (int32_t)i;
                        break;
                    }
                }
        }
#undef KEPT
        __syncthreads();
        int found = res >= 0;
        __syncthreads();
        if (!found)     /* rounding left target unreached: the last kept token */
            atomicMax(&res, last);
        __syncthreads();
        id = res;
        __syncthreads();
        if (id < 0)     /* nothing kept (a row of NaN or -inf) */
            id = block_argmax(l, b0, b1, red, &res);
    }
    if (out_lp) {
        float lm = -INFINITY;
        for (int64_t i = b0; i < b1; i++)
            lm = fmaxf(lm, l[i]);
        float lmax = block_max(lm, red);
        double zl = 0.0;
        for (int64_t i = b0; i < b1; i++)
            zl += expf(l[i] - lmax);
        double z;
        (void)block_excl_scan(zl, scan, &z);
        if (threadIdx.x == 0)
            out_lp[r] = (float)((double)l[id] - (double)lmax - log(z));
    }
    if (threadIdx.x == 0)
        out_ids[r] = id;
}

/* The default sampler: FlashInfer's filters, then draw_kernel. */
static dsa_err sample_fi(dsa_cuda_backend *be, const dsa_sample_params *p)
{
    int64_t n = p->n_rows, V = p->vocab;
    dsa_fi_sample_stages st = dsa_fi_sample_stages_of(p->rows, n, V);
    dsa_fi_sample_layout L =
        dsa_fi_sample_layout_of(n, V, &st, be->n_sm, dsa_fi_sample_row_state_bytes());
    size_t hb = L.probs; /* the host stages everything before the planes */
    void *dev, *host;
    dsa_err err;
    if ((err = dsa_cuda_scratch(be, DSA_CUDA_SCR_SAMPLE, L.total, &dev)) ||
        (err = DSA_CUDA_CHECK(cudaStreamSynchronize(be->stream))) ||
        (err = dsa_cuda_pinned(be, hb, &host)))
        return err;
    char *d = (char *)dev, *h = (char *)host;
    memcpy(h + L.rows, p->rows, (size_t)n * sizeof(dsa_sample_row));
    for (int64_t i = 0; i < n; i++)
        dsa_fi_sample_row_args(&p->rows[i], V, (float *)(h + L.temperature) + i,
                               (int32_t *)(h + L.top_k) + i, (float *)(h + L.top_p) + i);
    if ((err = DSA_CUDA_CHECK(
             cudaMemcpyAsync(d, h, L.ids, cudaMemcpyHostToDevice, be->stream))))
        return err;
    float *probs = NULL;
    if (st.n_sampled) {
        probs = (float *)(d + L.probs);
        dsa_fi_sample_filter_params fp = {
            .probs = probs, .masked = (float *)(d + L.masked), .row_states = d + L.row_states,
            .logits = p->logits, .temperature = (float *)(d + L.temperature),
            .top_k = (int32_t *)(d + L.top_k), .top_p = (float *)(d + L.top_p),
            .n_rows = n, .vocab = V, .n_row_states = be->n_sm, .use_top_k = st.top_k,
            .use_top_p = st.top_p, .stream = be->stream};
        if ((err = dsa_fi_sample_filter(&fp)))
            return err;
    }
    draw_kernel<<<(unsigned)n, SP_THREADS, 0, be->stream>>>(
        (int32_t *)(d + L.ids), p->out_logprobs ? (float *)(d + L.logprobs) : NULL, p->logits,
        probs, (const dsa_sample_row *)(d + L.rows), V);
    size_t ib = (size_t)n * sizeof(int32_t), lb = (size_t)n * sizeof(float);
    if ((err = DSA_CUDA_LAUNCHED()) ||
        (err = DSA_CUDA_CHECK(cudaMemcpyAsync(h + L.ids, d + L.ids, ib, cudaMemcpyDeviceToHost,
                                              be->stream))) ||
        (p->out_logprobs &&
         (err = DSA_CUDA_CHECK(cudaMemcpyAsync(h + L.logprobs, d + L.logprobs, lb,
                                               cudaMemcpyDeviceToHost, be->stream)))) ||
        (err = DSA_CUDA_CHECK(cudaStreamSynchronize(be->stream))))
        return err;
    memcpy(p->out_ids, h + L.ids, ib);
    if (p->out_logprobs)
        memcpy(p->out_logprobs, h + L.logprobs, lb);
    return DSA_OK;
}

extern "C" dsa_err dsa_cuda_sample(dsa_backend *be_, const dsa_sample_params *p)
{
    dsa_cuda_backend *be = dsa_cuda_be(be_);
    if (p->n_rows <= 0)
        return DSA_OK;
    if (p->vocab <= 0 || p->vocab > 0x7ffffff0)
        return dsa_fail(DSA_INVAL, "sample: vocab %lld", (long long)p->vocab);
    if (!dsa_fi_sampler_own(getenv("DSA_CUDA_SAMPLER")))
        return sample_fi(be, p);
    size_t rb = (size_t)p->n_rows * sizeof(dsa_sample_row);
    size_t ib = (size_t)p->n_rows * sizeof(int32_t), lb = (size_t)p->n_rows * sizeof(float);
    size_t o_ids = (rb + 255) & ~(size_t)255, o_lp = o_ids + ((ib + 255) & ~(size_t)255);
    void *dev, *host;
    dsa_err err;
    if ((err = dsa_cuda_scratch(be, DSA_CUDA_SCR_SAMPLE, o_lp + lb, &dev)) ||
        (err = DSA_CUDA_CHECK(cudaStreamSynchronize(be->stream))) ||
        (err = dsa_cuda_pinned(be, o_lp + lb, &host)))
        return err;
    memcpy(host, p->rows, rb);
    char *d = (char *)dev, *h = (char *)host;
    if ((err = DSA_CUDA_CHECK(cudaMemcpyAsync(d, h, rb, cudaMemcpyHostToDevice, be->stream))))
        return err;
    sample_kernel<<<(unsigned)p->n_rows, SP_THREADS, 0, be->stream>>>(
        (int32_t *)(d + o_ids), p->out_logprobs ? (float *)(d + o_lp) : NULL, p->logits,
        (const dsa_sample_row *)d, p->vocab);
    if ((err = DSA_CUDA_LAUNCHED()) ||
        (err = DSA_CUDA_CHECK(cudaMemcpyAsync(h + o_ids, d + o_ids, ib, cudaMemcpyDeviceToHost,
                                              be->stream))) ||
        (p->out_logprobs &&
         (err = DSA_CUDA_CHECK(cudaMemcpyAsync(h + o_lp, d + o_lp, lb, cudaMemcpyDeviceToHost,
                                               be->stream)))) ||
        (err = DSA_CUDA_CHECK(cudaStreamSynchronize(be->stream))))
        return err;
    memcpy(p->out_ids, h + o_ids, ib);
    if (p->out_logprobs)
        memcpy(p->out_logprobs, h + o_lp, lb);
    return DSA_OK;
}
