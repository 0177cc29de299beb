/* cuda_linear.c - y = x W^T on the GPU (backend.h dsa_linear_params): picks
 * the path per call and keeps cuBLASLt plans.
 *
 * - FP8 weights, block-aligned: activations are quantised per 1x128 block
 *   (cuda_quant.cu; or taken as the RMSNorm before wrote them, x_q and
 *   x_scale, when their scale layout is the one the GEMM reads: act_fp8)
 *   and cuBLASLt multiplies e4m3 x e4m3 with the weight's 128x128 scales
 *   (CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F on A) and
 *   the activations' 1x128 scales (..._VEC128_32F on B), F32 accumulation,
 *   BF16 out (F32 with out_f32: router and lm_head logits), beta = 1 for
 *   accumulate: MODEL_SPEC.md §8's FP8 path.
 * - The same FP8 linears (BF16 out) have a second implementation, CUTLASS's
 *   blockwise-scaled GEMM (cutlass_gemm.cu); which one runs is decided per
 *   (M bucket, N, K) by timing both once on the device, outside graph
 *   capture, and cached (the tuning table below).
 * - BF16 weights: cuBLASLt BF16 x BF16, F32 compute.
 * - Anything else (F32/F16 weights, K not a multiple of 128, a slice whose
 *   origin is not block-aligned, misaligned pointers or strides, or a shape
 *   cuBLASLt declines): the dequantising kernel (cuda_gemm.cu).
 * Row-major out[m, n] is column-major out^T [n, m], so cuBLASLt computes
 * D (N x M) = op(A) op(B) with A = W as K x N (op T) and B = x as K x M.
 *
 * The VEC128 scale layout is checked at creation by a self-test against
 * the dequantising kernel (both candidate layouts tried on inputs that
 * tell them apart, then M = 1 and 8 probed); if neither matches, the FP8
 * path stays off and the fallback serves every FP8 linear.  DSA_CUDA_NO_LT=1 turns both cuBLASLt paths off. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_internal.h"

enum { PLAN_FP8 = 1, PLAN_BF16 = 2 };

struct dsa_cuda_lt_plan {
    int kind, accumulate, kmajor, out_f32;
    int64_t n, k, m, ld_w, ld_x, ld_out;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, c;
    cublasLtMatmulAlgo_t algo;
    int ok;             /* 0: cuBLASLt found no algorithm (use the fallback) */
};

static void plan_destroy(dsa_cuda_lt_plan *p)
{
    if (p->c)
        cublasLtMatrixLayoutDestroy(p->c);
    if (p->b)
        cublasLtMatrixLayoutDestroy(p->b);
    if (p->a)
        cublasLtMatrixLayoutDestroy(p->a);
    if (p->desc)
        cublasLtMatmulDescDestroy(p->desc);
    memset(p, 0, sizeof *p);
}

static void tune_free(dsa_cuda_backend *be);

void dsa_cuda_plans_free(dsa_cuda_backend *be)
{
    tune_free(be);
    for (int i = 0; i < be->cap_plans; i++)
        if (be->plans[i].kind)
            plan_destroy(&be->plans[i]);
    free(be->plans);
    be->plans = NULL;
    be->n_plans = be->cap_plans = 0;
}

/* The plan cache: an open-addressing table of PLAN_SLOTS entries keyed by
 * the whole shape (kind, accumulate, scale layout, n, k, m, the three
 * leading dimensions).  m is exact because cuBLASLt's heuristic answer is
 * per shape; decode sees a few dozen m values, prefill up to
 * max_num_batched_tokens, so the table is bounded: once PLAN_FILL entries
 * are in it, all are dropped and rebuilt on use (a plan costs one heuristic
 * query, a few microseconds of host time).  A plan's descriptors are
 * host-side: a captured graph keeps its launches, not the plan. */
enum { PLAN_SLOTS = 1024, PLAN_FILL = 768 };

static uint64_t plan_hash(const dsa_cuda_lt_plan *k)
{
    const int64_t f[] = {k->kind, k->accumulate, k->kmajor, k->out_f32, k->n, k->k, k->m,
                         k->ld_w, k->ld_x, k->ld_out};
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        h ^= (uint64_t)f[i];
        h *= 1099511628211ull;
        h ^= h >> 29;
    }
    return h;
}

static int plan_same(const dsa_cuda_lt_plan *p, const dsa_cuda_lt_plan *k)
{
    return p->kind == k->kind && p->accumulate == k->accumulate && p->kmajor == k->kmajor &&
           p->out_f32 == k->out_f32 && p->n == k->n && p->k == k->k && p->m == k->m &&
           p->ld_w == k->ld_w && p->ld_x == k->ld_x && p->ld_out == k->ld_out;
}

static dsa_err plan_build(dsa_cuda_backend *be, dsa_cuda_lt_plan *p)
{
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    cudaDataType_t ab = p->kind == PLAN_FP8 ? CUDA_R_8F_E4M3 : CUDA_R_16BF;
    dsa_err err;
    if ((err = DSA_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F,
                                                         CUDA_R_32F))) ||
        (err = DSA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
             p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta))) ||
        (err = DSA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
             p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb))))
        return err;
    if (p->kind == PLAN_FP8) {
        int32_t am = CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F;
        int32_t bm = CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F;
        if ((err = DSA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
                 p->desc, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &am, sizeof am))) ||
            (err = DSA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
                 p->desc, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &bm, sizeof bm))))
            return err;
    }
    if ((err = DSA_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->a, ab, (uint64_t)p->k,
                                                           (uint64_t)p->n, p->ld_w))) ||
        (err = DSA_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->b, ab, (uint64_t)p->k,
                                                           (uint64_t)p->m, p->ld_x))) ||
        (err = DSA_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->c, p->out_f32 ? CUDA_R_32F
                                                                          : CUDA_R_16BF,
                                                           (uint64_t)p->n,
                                                           (uint64_t)p->m, p->ld_out))))
        return err;
    cublasLtMatmulPreference_t pref = NULL;
    if ((err = DSA_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref))))
        return err;
    size_t ws = be->lt_ws_bytes;
    err = DSA_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    cublasLtMatmulHeuristicResult_t h;
    int found = 0;
    memset(&h, 0, sizeof h);
    if (!err) {
        /* A heuristic query that finds nothing is an answer, not an error. */
        cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic(be->lt, p->desc, p->a, p->b, p->c,
                                                          p->c, pref, 1, &h, &found);
        if (s != CUBLAS_STATUS_SUCCESS)
            found = 0;
    }
    cublasLtMatmulPreferenceDestroy(pref);
    if (err)
        return err;
    p->ok = found > 0 && h.state == CUBLAS_STATUS_SUCCESS;
    if (p->ok)
        p->algo = h.algo;
    return DSA_OK;
}

/* The cached plan for this shape, built on first use (also while
 * capturing: building a plan is host-side only). */
static dsa_err plan_get(dsa_cuda_backend *be, const dsa_cuda_lt_plan *key, dsa_cuda_lt_plan **out)
{
    if (!be->plans) {
        if (!(be->plans = calloc(PLAN_SLOTS, sizeof *be->plans)))
            return dsa_fail(DSA_NOMEM, "cuda backend: plan cache");
        be->cap_plans = PLAN_SLOTS;
    }
    uint64_t h = plan_hash(key);
    for (int i = 0; i < PLAN_SLOTS; i++) {
        dsa_cuda_lt_plan *p = &be->plans[(h + (uint64_t)i) % PLAN_SLOTS];
        if (!p->kind)
            break;
        if (plan_same(p, key)) {
            *out = p;
            return DSA_OK;
        }
    }
    if (be->n_plans >= PLAN_FILL) {
        DSA_DEBUG("cuda backend: %d cuBLASLt plans cached; dropping them", be->n_plans);
        for (int i = 0; i < PLAN_SLOTS; i++)
            if (be->plans[i].kind)
                plan_destroy(&be->plans[i]);
        be->n_plans = 0;
    }
    dsa_cuda_lt_plan *p = NULL;
    for (int i = 0; !p; i++) /* a free slot exists: n_plans < PLAN_FILL < PLAN_SLOTS */
        if (!be->plans[(h + (uint64_t)i) % PLAN_SLOTS].kind)
            p = &be->plans[(h + (uint64_t)i) % PLAN_SLOTS];
    *p = *key;
    p->desc = NULL;
    p->a = p->b = p->c = NULL;
    p->ok = 0;
    dsa_err err = plan_build(be, p);
    if (err) {
        plan_destroy(p); /* clears kind: the slot is free again */
        return err;
    }
    be->n_plans++;
    *out = p;
    return DSA_OK;
}

static int aligned16(const void *p)
{
    return ((uintptr_t)p & 15u) == 0;
}

/* The e4m3 operand of an FP8 GEMM and its 1x128 scales in the layout
 * kmajor names (1: [m][K/128], 0: [K/128][m]); the codes are [m, K] with
 * row stride K either way.  Both GEMMs read exactly this, so when the norm
 * before the linear already wrote it (p->x_q, p->x_scale: cuda_rmsnorm.cu
 * quantises in be->lt_act_scale_kmajor's layout, for the m rows of this
 * call, K = the norm's dim) it is used as it is and the quantisation
 * launch is skipped (*norm = 1).  Otherwise, and when the layout this GEMM
 * needs is not the one the norm wrote (CUTLASS reads K-major only; the
 * cuBLASLt self-test may have chosen M-major), x is quantised into
 * scratch: the same codes and scales, one launch more.  Call only once
 * K % 128 == 0 has been checked. */
static dsa_err act_fp8(dsa_cuda_backend *be, const dsa_linear_params *p, int kmajor,
                       const void **q, const void **s, int *norm)
{
    int64_t K = p->w->cols, M = p->m;
    *norm = p->x_q && p->x_scale && kmajor == be->lt_act_scale_kmajor && aligned16(p->x_q) &&
            aligned16(p->x_scale);
    if (*norm) {
        *q = p->x_q;
        *s = p->x_scale;
        return DSA_OK;
    }
    void *qs, *ss;
    size_t qbytes = (size_t)(M * K), sbytes = (size_t)(M * (K / 128)) * sizeof(float);
    dsa_err err;
    if ((err = dsa_cuda_scratch(be, DSA_CUDA_SCR_QACT, qbytes, &qs)) ||
        (err = dsa_cuda_scratch(be, DSA_CUDA_SCR_QSCALE, sbytes, &ss)) ||
        (err = dsa_cuda_quant_fp8(be, qs, K, ss, p->x, p->ld_x, M, K, kmajor)))
        return err;
    *q = qs;
    *s = ss;
    return DSA_OK;
}

/* FP8 through cuBLASLt; *done = 0 when this shape must take the fallback. */
static dsa_err linear_lt_fp8(dsa_cuda_backend *be, const dsa_linear_params *p, int kmajor,
                             int *done)
{
    const dsa_weight *w = p->w;
    int64_t N = w->rows, K = w->cols, M = p->m;
    *done = 0;
    if (K % 128 || N % 16 || w->ld % 16 || w->row0 || w->col0 || w->block_rows != 128 ||
        w->block_cols != 128 || w->scale_ld % 4 || p->ld_out % (p->out_f32 ? 4 : 8) ||
        !aligned16(p->out) ||
        !aligned16(w->data) || !aligned16(w->scale))
        return DSA_OK;
    dsa_cuda_lt_plan key = {.kind = PLAN_FP8, .accumulate = p->accumulate, .kmajor = kmajor,
                            .out_f32 = p->out_f32, .n = N, .k = K, .m = M, .ld_w = w->ld, .ld_x = K,
                            .ld_out = p->ld_out};
    dsa_cuda_lt_plan *plan;
    dsa_err err = plan_get(be, &key, &plan);
    if (err || !plan->ok)
        return err;
    const void *q, *xs;
    int norm;
    if ((err = act_fp8(be, p, kmajor, &q, &xs, &norm)))
        return err;
    const void *ws = w->scale;
    if ((err = DSA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
             plan->desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &ws, sizeof ws))) ||
        (err = DSA_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
             plan->desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &xs, sizeof xs))))
        return err;
    float alpha = 1.0f, beta = p->accumulate ? 1.0f : 0.0f;
    cublasStatus_t st = cublasLtMatmul(be->lt, plan->desc, &alpha, w->data, plan->a, q, plan->b,
                                       &beta, p->out, plan->c, p->out, plan->c, &plan->algo,
                                       be->lt_ws, be->lt_ws_bytes, be->stream);
    if (st == CUBLAS_STATUS_NOT_SUPPORTED) {
        plan->ok = 0;
        return DSA_OK;
    }
    if ((err = DSA_CUBLAS_CHECK(st)))
        return err;
    *done = 1;
    be->last_path = norm ? "lt-fp8 (norm's codes)" : "lt-fp8";
    return DSA_OK;
}

static dsa_err linear_lt_bf16(dsa_cuda_backend *be, const dsa_linear_params *p, int *done)
{
    const dsa_weight *w = p->w;
    *done = 0;
    if (w->cols % 8 || w->ld % 8 || p->ld_x % 8 || p->ld_out % (p->out_f32 ? 4 : 8) ||
        !aligned16(p->out) ||
        !aligned16(p->x) || !aligned16(w->data))
        return DSA_OK;
    dsa_cuda_lt_plan key = {.kind = PLAN_BF16, .accumulate = p->accumulate,
                            .out_f32 = p->out_f32, .n = w->rows,
                            .k = w->cols, .m = p->m, .ld_w = w->ld, .ld_x = p->ld_x,
                            .ld_out = p->ld_out};
    dsa_cuda_lt_plan *plan;
    dsa_err err = plan_get(be, &key, &plan);
    if (err || !plan->ok)
        return err;
    float alpha = 1.0f, beta = p->accumulate ? 1.0f : 0.0f;
    cublasStatus_t st = cublasLtMatmul(be->lt, plan->desc, &alpha, w->data, plan->a, p->x,
                                       plan->b, &beta, p->out, plan->c, p->out, plan->c,
                                       &plan->algo, be->lt_ws, be->lt_ws_bytes, be->stream);
    if (st == CUBLAS_STATUS_NOT_SUPPORTED) {
        plan->ok = 0;
        return DSA_OK;
    }
    if ((err = DSA_CUBLAS_CHECK(st)))
        return err;
    *done = 1;
    be->last_path = "lt-bf16";
    return DSA_OK;
}

/* FP8 through CUTLASS (BF16 out); *done = 0 when this shape must take
 * another path. */
static dsa_err linear_cutlass(dsa_cuda_backend *be, const dsa_linear_params *p, int *done)
{
    const dsa_weight *w = p->w;
    int64_t N = w->rows, K = w->cols, M = p->m;
    *done = 0;
    if (p->out_f32 || K % 128 || w->ld % 16 || w->row0 || w->col0 || w->block_rows != 128 ||
        w->block_cols != 128 || p->ld_out % 8 || !aligned16(p->out) || !aligned16(w->data) ||
        N > INT32_MAX || M > INT32_MAX)
        return DSA_OK;
    const void *q, *s;
    int norm;
    dsa_err err;
    if ((err = act_fp8(be, p, 1, &q, &s, &norm)))
        return err;
    dsa_cutlass_gemm g = {.out = p->out, .xq = q, .xs = s, .w = dsa_cuda_w_of(w), .m = M,
                          .ld_out = p->ld_out, .accumulate = p->accumulate};
    if ((err = dsa_cutlass_gemm_run(be, &g, done)) || !*done)
        return err;
    be->last_path = norm ? "cutlass-fp8 (norm's codes)" : "cutlass-fp8";
    return DSA_OK;
}

/* ---- Which FP8 implementation per shape -----------------------------------
 * Keyed by (M rounded up to a power of two, N, K): the first call of a key
 * outside graph capture runs both implementations into a private buffer
 * (one warm-up, TUNE_REPS timed with events), checks that they agree
 * (relative L2 < TUNE_AGREE: a CUTLASS result that disagrees with the
 * self-tested cuBLASLt path is never chosen) and records the faster.  A key
 * first met while capturing takes cuBLASLt and is tuned later; a key whose
 * outputs exceed TUNE_BYTES_MAX (M in the thousands: prefill) is not tuned
 * and takes cuBLASLt.  The table
 * is small (a model has a dozen linear shapes times the M buckets). */
enum { TUNE_SLOTS = 512, TUNE_REPS = 3 };
#define TUNE_BYTES_MAX ((size_t)64 << 20)
#define TUNE_AGREE 0.02

typedef struct tune_entry {
    int64_t m_bucket, n, k;     /* m_bucket 0: free slot */
    int impl;                   /* DSA_CUDA_LINEAR_LT or _CUTLASS */
    float ms[2];                /* mean time of each, ms (-1: declined) */
} tune_entry;

struct dsa_cuda_tune {
    tune_entry e[TUNE_SLOTS];
    int n;
};

static void tune_free(dsa_cuda_backend *be)
{
    free(be->tune);
    be->tune = NULL;
}

static int64_t tune_bucket(int64_t m)
{
    int64_t b = 1;
    while (b < m)
        b <<= 1;
    return b;
}

static tune_entry *tune_find(dsa_cuda_backend *be, int64_t mb, int64_t n, int64_t k, int add)
{
    if (!be->tune && !(add && (be->tune = calloc(1, sizeof *be->tune))))
        return NULL;
    uint64_t h = ((uint64_t)mb * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)n * 0xC2B2AE3D27D4EB4Full) ^
                 (uint64_t)k;
    for (int i = 0; i < TUNE_SLOTS; i++) {
        tune_entry *t = &be->tune->e[(h + (uint64_t)i) % TUNE_SLOTS];
        if (t->m_bucket == mb && t->n == n && t->k == k)
            return t;
        if (!t->m_bucket) {
            if (!add || be->tune->n >= TUNE_SLOTS / 2)
                return NULL;
            t->m_bucket = mb;
            t->n = n;
            t->k = k;
            be->tune->n++;
            return t;
        }
    }
    return NULL;
}

typedef dsa_err (*linear_impl_fn)(dsa_cuda_backend *be, const dsa_linear_params *p, int *done);

static dsa_err lt_impl(dsa_cuda_backend *be, const dsa_linear_params *p, int *done)
{
    return linear_lt_fp8(be, p, be->lt_act_scale_kmajor, done);
}

/* Mean time of TUNE_REPS runs of fn on p (after one warm-up) in ms, or -1
 * when fn declines the shape; the result is left in p->out. */
static dsa_err tune_time(dsa_cuda_backend *be, linear_impl_fn fn, const dsa_linear_params *p,
                         cudaEvent_t ev[2], float *ms)
{
    int done = 0;
    dsa_err err = fn(be, p, &done);
    *ms = -1.0f;
    if (err || !done)
        return err;
    if ((err = DSA_CUDA_CHECK(cudaEventRecord(ev[0], be->stream))))
        return err;
    for (int r = 0; r < TUNE_REPS && !err; r++)
        err = fn(be, p, &done);
    if (err || (err = DSA_CUDA_CHECK(cudaEventRecord(ev[1], be->stream))) ||
        (err = DSA_CUDA_CHECK(cudaEventSynchronize(ev[1]))) ||
        (err = DSA_CUDA_CHECK(cudaEventElapsedTime(ms, ev[0], ev[1]))))
        return err;
    *ms /= TUNE_REPS;
    return DSA_OK;
}

/* Times both implementations on this call's operands into a private
 * output and fills t; the call itself then runs the chosen one. */
static dsa_err tune_run(dsa_cuda_backend *be, const dsa_linear_params *p, tune_entry *t)
{
    int64_t M = p->m, N = p->w->rows;
    size_t bytes = (size_t)(M * N) * 2;
    void *out[2] = {NULL, NULL};
    uint16_t *h = malloc(2 * bytes);
    cudaEvent_t ev[2] = {NULL, NULL};
    dsa_err err = h ? DSA_OK : dsa_fail(DSA_NOMEM, "cuda linear: tuning buffers");
    t->impl = DSA_CUDA_LINEAR_LT;
    if (err || (err = DSA_CUDA_CHECK(cudaMalloc(&out[0], bytes))) ||
        (err = DSA_CUDA_CHECK(cudaMalloc(&out[1], bytes))) ||
        (err = DSA_CUDA_CHECK(cudaEventCreate(&ev[0]))) ||
        (err = DSA_CUDA_CHECK(cudaEventCreate(&ev[1]))))
        goto done;
    linear_impl_fn fn[2] = {lt_impl, linear_cutlass};
    for (int i = 0; i < 2; i++) {
        dsa_linear_params q = *p;
        q.out = out[i];
        q.ld_out = N;
        q.accumulate = 0;
        if ((err = tune_time(be, fn[i], &q, ev, &t->ms[i])))
            goto done;
    }
    if (t->ms[0] < 0 || t->ms[1] < 0) {
        t->impl = t->ms[1] < 0 ? DSA_CUDA_LINEAR_LT : DSA_CUDA_LINEAR_CUTLASS;
        goto done;
    }
    if ((err = DSA_CUDA_CHECK(cudaMemcpy(h, out[0], bytes, cudaMemcpyDeviceToHost))) ||
        (err = DSA_CUDA_CHECK(cudaMemcpy(h + M * N, out[1], bytes, cudaMemcpyDeviceToHost))))
        goto done;
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < M * N; i++) {
        double a = dsa_bf16_to_f32(h[i]), b = dsa_bf16_to_f32(h[M * N + i]);
        num += (a - b) * (a - b);
        den += a * a;
    }
    double rel = sqrt(num / (den > 0 ? den : 1));
    if (!(rel < TUNE_AGREE))
        DSA_WARN("cuda linear: CUTLASS and cuBLASLt FP8 disagree at M=%lld N=%lld K=%lld (rel "
                 "%.3g): cuBLASLt kept", (long long)M, (long long)N, (long long)p->w->cols, rel);
    else if (t->ms[1] < t->ms[0])
        t->impl = DSA_CUDA_LINEAR_CUTLASS;
    DSA_INFO("cuda linear: FP8 M<=%lld N=%lld K=%lld: cuBLASLt %.1f us, CUTLASS %.1f us -> %s",
             (long long)t->m_bucket, (long long)N, (long long)p->w->cols, 1e3 * t->ms[0],
             1e3 * t->ms[1], t->impl == DSA_CUDA_LINEAR_CUTLASS ? "CUTLASS" : "cuBLASLt");
done:
    if (ev[0])
        cudaEventDestroy(ev[0]);
    if (ev[1])
        cudaEventDestroy(ev[1]);
    if (out[0])
        cudaFree(out[0]);
    if (out[1])
        cudaFree(out[1]);
    free(h);
    return err;
}

/* The FP8 implementation for this call: forced, tuned, or cuBLASLt. */
static dsa_err linear_pick(dsa_cuda_backend *be, const dsa_linear_params *p, int *impl)
{
    *impl = DSA_CUDA_LINEAR_LT;
    if (be->linear_force) {
        *impl = be->linear_force;
        return DSA_OK;
    }
    if (p->out_f32 || !be->lt_fp8)
        return DSA_OK;
    int64_t mb = tune_bucket(p->m);
    tune_entry *t = tune_find(be, mb, p->w->rows, p->w->cols, !be->capturing);
    if (!t)
        return DSA_OK;
    if (!t->ms[0] && !t->ms[1]) {
        /* Tuning is an optimisation: a shape whose two private outputs would
         * exceed TUNE_BYTES_MAX (prefill-sized M), or a tuning run that
         * fails (no memory left beside the KV cache, say), keeps cuBLASLt,
         * and the linear itself goes on. */
        dsa_err err = (size_t)(p->m * p->w->rows) * 4 > TUNE_BYTES_MAX
                          ? DSA_UNSUPPORTED
                          : tune_run(be, p, t);
        if (err) {
            if (err != DSA_UNSUPPORTED)
                DSA_WARN("cuda linear: tuning M=%lld N=%lld K=%lld failed (%s): cuBLASLt kept",
                         (long long)p->m, (long long)p->w->rows, (long long)p->w->cols,
                         dsa_errmsg());
            (void)cudaGetLastError();
            t->impl = DSA_CUDA_LINEAR_LT;
            t->ms[0] = t->ms[1] = -1.0f; /* not retried */
        }
    }
    *impl = t->impl;
    return DSA_OK;
}

void dsa_cuda_linear_force(dsa_backend *be, dsa_cuda_linear_impl impl)
{
    dsa_cuda_be(be)->linear_force = (int)impl;
}

int dsa_cuda_linear_tuned(dsa_backend *be_, int64_t m, int64_t n, int64_t k, float ms[2])
{
    dsa_cuda_backend *be = dsa_cuda_be(be_);
    tune_entry *t = tune_find(be, tune_bucket(m), n, k, 0);
    if (!t || (!t->ms[0] && !t->ms[1]))
        return 0;
    ms[0] = t->ms[0];
    ms[1] = t->ms[1];
    return t->impl;
}

static dsa_err linear_fallback(dsa_cuda_backend *be, const dsa_linear_params *p)
{
    dsa_cuda_gemm g = {.out = p->out, .x = p->x, .w = dsa_cuda_w_of(p->w), .m = p->m,
                       .ld_x = p->ld_x, .ld_out = p->ld_out, .accumulate = p->accumulate,
                       .out_f32 = p->out_f32};
    be->last_path = "dequant";
    return dsa_cuda_gemm_run(be, &g);
}

dsa_err dsa_cuda_linear(dsa_backend *be_, const dsa_linear_params *p)
{
    dsa_cuda_backend *be = dsa_cuda_be(be_);
    if (p->m <= 0 || p->w->rows <= 0)
        return DSA_OK;
    int done = 0;
    dsa_err err = DSA_OK;
    if (p->w->dtype == DSA_DTYPE_F8_E4M3) {
        int impl = DSA_CUDA_LINEAR_LT;
        if ((err = linear_pick(be, p, &impl)))
            return err;
        if (impl == DSA_CUDA_LINEAR_CUTLASS)
            err = linear_cutlass(be, p, &done);
        else if (impl == DSA_CUDA_LINEAR_LT && be->lt_fp8 && !be->lt_disabled)
            err = linear_lt_fp8(be, p, be->lt_act_scale_kmajor, &done);
    } else if (!be->lt_disabled) {
        if (p->w->dtype == DSA_DTYPE_BF16)
            err = linear_lt_bf16(be, p, &done);
    }
    if (err || done)
        return err;
    return linear_fallback(be, p);
}

/* ---- Self-test of the FP8 block-scaled path ------------------------------- */

static uint64_t st_rng(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

enum { ST_N = 256, ST_K = 512, ST_MMAX = 64 };

/* The self-test's device buffers: W [ST_N, ST_K] e4m3 with 128x128 scales,
 * x [ST_MMAX, ST_K] BF16, y [ST_MMAX, ST_N] BF16. */
typedef struct st_bufs {
    void *w, *s, *x, *y;
    uint16_t *hy;
    float *ref;
} st_bufs;

/* Relative L2 distance of y (BF16, M x ST_N) from the dequantising
 * kernel's result for the first M rows of x, through the cuBLASLt FP8 path
 * with the given activation scale layout; *ok = 0 when cuBLASLt declined
 * the shape. */
static dsa_err st_probe(dsa_cuda_backend *be, st_bufs *b, int64_t M, int kmajor, int *ok,
                        double *rel)
{
    dsa_weight w = {.dtype = DSA_DTYPE_F8_E4M3, .rows = ST_N, .cols = ST_K, .ld = ST_K,
                    .data = b->w, .scale = b->s, .scale_ld = ST_K / 128, .block_rows = 128,
                    .block_cols = 128};
    dsa_linear_params p = {.out = b->y, .x = b->x, .w = &w, .m = M, .ld_x = ST_K, .ld_out = ST_N};
    size_t bytes = (size_t)(M * ST_N) * sizeof(uint16_t);
    dsa_err err;
    if ((err = linear_fallback(be, &p)) ||
        (err = DSA_CUDA_CHECK(cudaMemcpyAsync(b->hy, b->y, bytes, cudaMemcpyDeviceToHost,
                                              be->stream))) ||
        (err = DSA_CUDA_CHECK(cudaStreamSynchronize(be->stream))))
        return err;
    for (int64_t i = 0; i < M * ST_N; i++)
        b->ref[i] = dsa_bf16_to_f32(b->hy[i]);
    *ok = 0;
    if ((err = linear_lt_fp8(be, &p, kmajor, ok)) || !*ok)
        return err;
    if ((err = DSA_CUDA_CHECK(cudaMemcpyAsync(b->hy, b->y, bytes, cudaMemcpyDeviceToHost,
                                              be->stream))) ||
        (err = DSA_CUDA_CHECK(cudaStreamSynchronize(be->stream))))
        return err;
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < M * ST_N; i++) {
        double d = (double)dsa_bf16_to_f32(b->hy[i]) - b->ref[i];
        num += d * d;
        den += (double)b->ref[i] * b->ref[i];
    }
    *rel = sqrt(num / (den > 0 ? den : 1));
    return DSA_OK;
}

/* Which activation scale layout cuBLASLt's VEC128 mode reads, tested
 * against the dequantising kernel.  The inputs make the two layouts
 * disagree by orders of magnitude: weight block scales spread over
 * 2^-6..2^6, and every (row, 128-column block) of x scaled by its own
 * power of two in 2^-8..2^8, so a transposed scale reading rescales whole
 * products; at the right layout only e4m3 rounding remains (~0.03).  The
 * layout is decided at M = 64 (at M = 1 the two coincide), accepted only
 * when it beats the other by 8x and stays under 0.06; then M = 1 and M = 8
 * are probed with it, and a shape cuBLASLt declines there is reported by
 * name, since the linear would silently take the fallback at that batch. */
void dsa_cuda_lt_selftest(dsa_cuda_backend *be)
{
    be->lt_fp8 = 0;
    if (be->lt_disabled)
        return;
    st_bufs b = {0};
    uint8_t *hw = malloc((size_t)ST_N * ST_K);
    float hs[(ST_N / 128) * (ST_K / 128)];
    uint16_t *hx = malloc(sizeof(uint16_t) * ST_MMAX * ST_K);
    b.hy = malloc(sizeof(uint16_t) * ST_MMAX * ST_N);
    b.ref = malloc(sizeof(float) * ST_MMAX * ST_N);
    dsa_err err = DSA_NOMEM;
    if (!hw || !hx || !b.hy || !b.ref) {
        err = dsa_fail(DSA_NOMEM, "self-test buffers");
        goto done;
    }
    uint64_t seed = 12345;
    for (int i = 0; i < ST_N * ST_K; i++) {
        uint8_t v = (uint8_t)st_rng(&seed);
        hw[i] = (v & 0x7f) == 0x7f ? (uint8_t)(v ^ 1) : v; /* no NaN codes */
    }
    for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++)
        hs[i] = ldexpf(1.0f, (int)(st_rng(&seed) % 13) - 6);
    for (int m = 0; m < ST_MMAX; m++)
        for (int kb = 0; kb < ST_K / 128; kb++) {
            int e = (int)(st_rng(&seed) % 17) - 8;
            for (int j = 0; j < 128; j++) {
                double u = (double)(st_rng(&seed) >> 11) * 0x1.0p-53 * 2.0 - 1.0;
                hx[m * ST_K + kb * 128 + j] = dsa_f32_to_bf16(ldexpf((float)u, e));
            }
        }
    if ((err = DSA_CUDA_CHECK(cudaMalloc(&b.w, (size_t)ST_N * ST_K))) ||
        (err = DSA_CUDA_CHECK(cudaMalloc(&b.s, sizeof hs))) ||
        (err = DSA_CUDA_CHECK(cudaMalloc(&b.x, sizeof(uint16_t) * ST_MMAX * ST_K))) ||
        (err = DSA_CUDA_CHECK(cudaMalloc(&b.y, sizeof(uint16_t) * ST_MMAX * ST_N))) ||
        (err = DSA_CUDA_CHECK(cudaMemcpy(b.w, hw, (size_t)ST_N * ST_K, cudaMemcpyHostToDevice))) ||
        (err = DSA_CUDA_CHECK(cudaMemcpy(b.s, hs, sizeof hs, cudaMemcpyHostToDevice))) ||
        (err = DSA_CUDA_CHECK(cudaMemcpy(b.x, hx, sizeof(uint16_t) * ST_MMAX * ST_K,
                                         cudaMemcpyHostToDevice))))
        goto done;
    double rel[2] = {INFINITY, INFINITY};
    for (int kmajor = 0; kmajor < 2; kmajor++) {
        int ok = 0;
        if ((err = st_probe(be, &b, ST_MMAX, kmajor, &ok, &rel[kmajor])))
            goto done;
        DSA_INFO("cuda backend: cuBLASLt FP8 self-test M=%d, %s activation scales: %s%.3g",
                 ST_MMAX, kmajor ? "K-major" : "M-major", ok ? "rel err " : "declined, ",
                 ok ? rel[kmajor] : 0.0);
    }
    int best = rel[1] < rel[0];
    if (!(rel[best] < 0.06 && rel[!best] > 8 * rel[best])) {
        DSA_WARN("cuda backend: cuBLASLt FP8 self-test inconclusive (rel err %.3g M-major, %.3g "
                 "K-major): FP8 linears take the dequantising kernel", rel[0], rel[1]);
        goto done;
    }
    static const int64_t probe_m[] = {1, 8};
    for (size_t i = 0; i < sizeof probe_m / sizeof probe_m[0]; i++) {
        int ok = 0;
        double r = INFINITY;
        if ((err = st_probe(be, &b, probe_m[i], best, &ok, &r)))
            goto done;
        if (!ok)
            DSA_WARN("cuda backend: cuBLASLt declines FP8 at M=%lld: linears of %lld rows take "
                     "the dequantising kernel", (long long)probe_m[i], (long long)probe_m[i]);
        else if (!(r < 0.06)) {
            DSA_WARN("cuda backend: cuBLASLt FP8 at M=%lld: rel err %.3g; FP8 path off",
                     (long long)probe_m[i], r);
            goto done;
        }
    }
    be->lt_fp8 = 1;
    be->lt_act_scale_kmajor = best;
done:
    if (err)
        DSA_WARN("cuda backend: cuBLASLt FP8 self-test failed: %s", dsa_errmsg());
    (void)cudaGetLastError();
    if (b.w)
        cudaFree(b.w);
    if (b.s)
        cudaFree(b.s);
    if (b.x)
        cudaFree(b.x);
    if (b.y)
        cudaFree(b.y);
    free(hw);
    free(hx);
    free(b.hy);
    free(b.ref);
}
