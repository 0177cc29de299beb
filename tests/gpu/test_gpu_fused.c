/* test_gpu_fused.c - the parity group "fused" (test_gpu_ops.c --group
 * fused): the ops that replace several launches with one, against the CPU
 * or against what the unfused GPU path computes.
 * - vocab_gather: the TP slices in vocabulary order, exact;
 * - rmsnorm with out_q: the codes and scales equal the 1x128 quantisation
 *   (MODEL_SPEC.md §8) of the BF16 output the same launch wrote, exact;
 * - an FP8 linear handed those codes (x_q, x_scale) against the same
 *   linear quantising x itself, per implementation (cuBLASLt, CUTLASS):
 *   equal outputs bit for bit, and the codes really read (a linear given
 *   the codes with a different x still gives the norm's result);
 * - the one-shot all-reduce's protocol on one GPU: n "ranks" in this
 *   process, each on its own stream (dsa_cuda_ar_create_local), sums equal
 *   to the rank-order F32 sums bit for bit, many calls in a row (both
 *   staging buffers, the epochs), and three calls captured in a CUDA graph
 *   per rank and replayed. */
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/dtype.h"
#include "kernels/cuda/cuda_allreduce.h"
#include "kernels/cuda/cuda_internal.h"
#include "tests/gpu/gpu_harness.h"

static int ok_cuda(cudaError_t e, const char *what)
{
    if (e != cudaSuccess)
        fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
    return e == cudaSuccess;
}

static void test_vocab_gather(gh *h, int64_t P, int64_t N, int64_t V)
{
    int64_t ld = (V + P - 1) / P;
    float *in = malloc((size_t)(P * N * ld) * sizeof *in);
    for (int64_t i = 0; i < P * N * ld; i++)
        in[i] = gh_uniform(h);
    size_t ib = (size_t)(P * N * ld) * sizeof(float), ob = (size_t)(N * V) * sizeof(float);
    void *gi = gh_bytes(h, h->gpu, in, ib), *ci = gh_bytes(h, h->cpu, in, ib);
    float *zero = calloc((size_t)(N * V), sizeof(float));
    void *go = gh_bytes(h, h->gpu, zero, ob), *co = gh_bytes(h, h->cpu, zero, ob);
    dsa_vocab_gather_params pc = {.out = co, .in = ci, .n_rows = N, .ld = ld, .n_parts = P,
                                  .vocab = V};
    dsa_vocab_gather_params pg = pc;
    pg.out = go, pg.in = gi;
    dsa_err e1 = h->cpu->ops->vocab_gather(h->cpu, &pc), e2 = h->gpu->ops->vocab_gather(h->gpu, &pg);
    float *a = malloc(ob), *b = malloc(ob);
    h->gpu->ops->download(h->gpu, a, go, ob);
    h->gpu->ops->sync(h->gpu);
    memcpy(b, co, ob);
    char shape[64];
    snprintf(shape, sizeof shape, "tp=%lld rows=%lld V=%lld", (long long)P, (long long)N,
             (long long)V);
    int same = !e1 && !e2 && memcmp(a, b, ob) == 0;
    gh_report(h, "vocab_gather", shape, "exact", same ? 0.0 : 1.0, 0.0, same);
    free(in), free(zero), free(a), free(b);
    gh_free(h->gpu, gi), gh_free(h->cpu, ci), gh_free(h->gpu, go), gh_free(h->cpu, co);
}

static void test_norm_quant(gh *h, int64_t n, int64_t dim)
{
    gh_weight w;
    gh_weight_make(h, &w, DSA_DTYPE_BF16, 1, dim, 0, 0, 1, dim);
    float *x = gh_rand(h, n * dim, 3.0f);
    int64_t nkb = (dim + 127) / 128;
    void *gx = gh_act(h, h->gpu, x, n * dim), *go = gh_act(h, h->gpu, x, n * dim);
    uint8_t *zq = calloc((size_t)(n * dim), 1);
    float *zs = calloc((size_t)(n * nkb), sizeof(float));
    void *gq = gh_bytes(h, h->gpu, zq, (size_t)(n * dim));
    void *gs = gh_bytes(h, h->gpu, zs, (size_t)(n * nkb) * sizeof(float));
    dsa_rmsnorm_params p = {.out = go, .x = gx, .weight = &w.gpu, .n_rows = n, .dim = dim,
                            .ld_x = dim, .ld_out = dim, .eps = 1e-6f, .out_q = gq,
                            .out_scale = gs};
    dsa_err err = h->gpu->ops->rmsnorm(h->gpu, &p);
    float *y = gh_get(h, h->gpu, go, n * dim);
    uint8_t *q = malloc((size_t)(n * dim));
    float *s = malloc((size_t)(n * nkb) * sizeof *s);
    h->gpu->ops->download(h->gpu, q, gq, (size_t)(n * dim));
    h->gpu->ops->download(h->gpu, s, gs, (size_t)(n * nkb) * sizeof *s);
    h->gpu->ops->sync(h->gpu);
    int kmajor = dsa_cuda_be(h->gpu)->lt_act_scale_kmajor;
    int64_t bad = err ? 1 : 0;
    for (int64_t r = 0; r < n; r++)
        for (int64_t b = 0; b < nkb; b++) {
            float amax = 0;
            for (int64_t j = b * 128; j < dim && j < b * 128 + 128; j++)
                amax = fmaxf(amax, fabsf(y[r * dim + j]));
            float sc = fmaxf(amax, 1e-4f) / 448.0f;
            float got = s[kmajor ? r * nkb + b : b * n + r];
            bad += got != sc;
            for (int64_t j = b * 128; j < dim && j < b * 128 + 128; j++)
                bad += q[r * dim + j] != dsa_f32_to_e4m3(y[r * dim + j] / sc);
        }
    char shape[64];
    snprintf(shape, sizeof shape, "rows=%lld dim=%lld", (long long)n, (long long)dim);
    gh_report(h, "rmsnorm+quant", shape, kmajor ? "codes, scales (kmajor)" : "codes, scales",
              (double)bad, 0.0, bad == 0);
    free(x), free(zq), free(zs), free(y), free(q), free(s);
    gh_free(h->gpu, gx), gh_free(h->gpu, go), gh_free(h->gpu, gq), gh_free(h->gpu, gs);
    gh_weight_free(h, &w);
}

/* y = W x with x = RMSNorm(h) for M rows of K, W FP8 [N, K] with 128x128
 * scales: the linear that takes the norm's codes (x_q, x_scale) against the
 * one that quantises x itself, per forced implementation.  The same codes
 * and scales go into the same GEMM, so the outputs must be equal bit for
 * bit.  Whether the codes were taken is read from the path the linear
 * reports; when they were, a third call gives the codes with x replaced by
 * other values and must still give the norm's result (the codes, not x,
 * were read).  CUTLASS reads K-major scales only: where the cuBLASLt
 * self-test chose M-major, the norm writes M-major and CUTLASS must
 * quantise itself (the path says so, and the result is still equal). */
static void test_linear_norm_codes(gh *h, int64_t M, int64_t N, int64_t K)
{
    gh_weight nw, w;
    gh_weight_make(h, &nw, DSA_DTYPE_BF16, 1, K, 0, 0, 1, K);
    gh_weight_make(h, &w, DSA_DTYPE_F8_E4M3, N, K, 0, 0, N, K);
    float *x = gh_rand(h, M * K, 3.0f), *other = gh_rand(h, M * K, 1.0f);
    int64_t nkb = K / 128;
    void *g_in = gh_act(h, h->gpu, x, M * K), *gn = gh_act(h, h->gpu, x, M * K);
    void *go = gh_act(h, h->gpu, other, M * K);
    uint8_t *zq = calloc((size_t)(M * K), 1);
    float *zs = calloc((size_t)(M * nkb), sizeof(float));
    void *gq = gh_bytes(h, h->gpu, zq, (size_t)(M * K));
    void *gs = gh_bytes(h, h->gpu, zs, (size_t)(M * nkb) * sizeof(float));
    float *zero = calloc((size_t)(M * N), sizeof(float));
    void *gy[3];
    for (int i = 0; i < 3; i++)
        gy[i] = gh_act(h, h->gpu, zero, M * N);
    dsa_rmsnorm_params np = {.out = gn, .x = g_in, .weight = &nw.gpu, .n_rows = M, .dim = K,
                             .ld_x = K, .ld_out = K, .eps = 1e-6f, .out_q = gq,
                             .out_scale = gs};
    dsa_err err = h->gpu->ops->rmsnorm(h->gpu, &np);
    int kmajor = dsa_cuda_be(h->gpu)->lt_act_scale_kmajor;
    static const struct { dsa_cuda_linear_impl impl; const char *name; } im[] = {
        {DSA_CUDA_LINEAR_LT, "lt-fp8"},
        {DSA_CUDA_LINEAR_CUTLASS, "cutlass-fp8"},
    };
    char shape[64];
    snprintf(shape, sizeof shape, "M=%lld N=%lld K=%lld", (long long)M, (long long)N,
             (long long)K);
    for (size_t i = 0; i < sizeof im / sizeof im[0]; i++) {
        if (im[i].impl == DSA_CUDA_LINEAR_LT && !dsa_cuda_lt_fp8_enabled(h->gpu))
            continue; /* as linear-real: the self-test turned the path off */
        dsa_cuda_linear_force(h->gpu, im[i].impl);
        dsa_linear_params self = {.out = gy[0], .x = gn, .w = &w.gpu, .m = M, .ld_x = K,
                                  .ld_out = N};
        dsa_linear_params taken = self, proof = self;
        taken.out = gy[1], taken.x_q = gq, taken.x_scale = gs;
        proof.out = gy[2], proof.x = go, proof.x_q = gq, proof.x_scale = gs;
        const char *p_self = "", *p_taken = "";
        if (!err && !(err = h->gpu->ops->linear(h->gpu, &self)))
            p_self = dsa_cuda_last_linear_path(h->gpu);
        if (!err && !(err = h->gpu->ops->linear(h->gpu, &taken)))
            p_taken = dsa_cuda_last_linear_path(h->gpu);
        int used = strstr(p_taken, "norm's codes") != NULL;
        /* cuBLASLt reads the layout the norm wrote; CUTLASS only K-major. */
        int want_used = im[i].impl == DSA_CUDA_LINEAR_LT || kmajor;
        if (!err && used)
            err = h->gpu->ops->linear(h->gpu, &proof);
        float *y[3] = {NULL, NULL, NULL};
        for (int j = 0; j < 3; j++)
            y[j] = gh_get(h, h->gpu, gy[j], M * N);
        int64_t diff = 0, diff_proof = 0;
        for (int64_t j = 0; j < M * N; j++) {
            diff += memcmp(&y[0][j], &y[1][j], sizeof(float)) != 0;
            diff_proof += used && memcmp(&y[0][j], &y[2][j], sizeof(float)) != 0;
        }
        char note[160];
        snprintf(note, sizeof note, "%s vs %s; codes %s (%s scales)", p_taken, p_self,
                 used ? "taken" : "quantised again", kmajor ? "K-major" : "M-major");
        int ran = !err && strncmp(p_self, im[i].name, strlen(im[i].name)) == 0 &&
                  strncmp(p_taken, im[i].name, strlen(im[i].name)) == 0;
        gh_report(h, "linear+norm codes", shape, note, (double)(diff + diff_proof), 0.0,
                  ran && used == want_used && diff == 0 && diff_proof == 0);
        for (int j = 0; j < 3; j++)
            free(y[j]);
    }
    dsa_cuda_linear_force(h->gpu, DSA_CUDA_LINEAR_AUTO);
    free(x), free(other), free(zq), free(zs), free(zero);
    gh_free(h->gpu, g_in), gh_free(h->gpu, gn), gh_free(h->gpu, go);
    gh_free(h->gpu, gq), gh_free(h->gpu, gs);
    for (int i = 0; i < 3; i++)
        gh_free(h->gpu, gy[i]);
    gh_weight_free(h, &w);
    gh_weight_free(h, &nw);
}

static uint16_t bf16_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static float bf16_value(uint16_t b)
{
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* n ranks, n_elems values of dt each, `calls` all-reduces in a row, or
 * with graph != 0 three calls captured per rank and replayed `calls` times. */
static void test_oneshot(gh *h, int n, int64_t n_elems, dsa_dtype dt, int calls, int graph)
{
    char shape[64], note[64];
    snprintf(shape, sizeof shape, "ranks=%d n=%lld %s", n, (long long)n_elems,
             dsa_dtype_name(dt));
    snprintf(note, sizeof note, graph ? "graph x%d" : "%d calls", calls);
    dsa_cuda_ar *ar[DSA_CUDA_AR_MAX_RANKS];
    if (dsa_cuda_ar_create_local(n, 10.0, ar)) {
        gh_report(h, "allreduce1shot", shape, dsa_errmsg(), 1, 0, 0);
        return;
    }
    size_t es = dsa_dtype_size(dt), bytes = (size_t)n_elems * es;
    cudaStream_t st[DSA_CUDA_AR_MAX_RANKS];
    void *buf[DSA_CUDA_AR_MAX_RANKS];
    cudaGraphExec_t ge[DSA_CUDA_AR_MAX_RANKS] = {0};
    /* host values: small integers for the graph runs (every sum exact) */
    float *want = malloc((size_t)n_elems * sizeof *want);
    unsigned char *host = malloc(bytes * (size_t)n), *got = malloc(bytes);
    for (int64_t i = 0; i < n_elems; i++)
        want[i] = 0;
    int ok = 1;
    for (int r = 0; r < n; r++) {
        for (int64_t i = 0; i < n_elems; i++) {
            float v = graph ? (float)((int)(gh_next(h) % 9) - 4) : gh_uniform(h);
            if (dt == DSA_DTYPE_BF16) {
                uint16_t b = bf16_bits(v);
                memcpy(host + (size_t)r * bytes + (size_t)i * 2, &b, 2);
            } else {
                memcpy(host + (size_t)r * bytes + (size_t)i * 4, &v, 4);
            }
        }
        ok &= ok_cuda(cudaStreamCreateWithFlags(&st[r], cudaStreamNonBlocking), "stream") &&
              ok_cuda(cudaMalloc(&buf[r], bytes), "malloc") &&
              ok_cuda(cudaMemcpy(buf[r], host + (size_t)r * bytes, bytes,
                                 cudaMemcpyHostToDevice), "upload");
    }
    /* the expected result: rank-order F32 sums, rounded to dt, per call */
    float *cur = malloc((size_t)n * (size_t)n_elems * sizeof *cur);
    for (int r = 0; r < n; r++)
        for (int64_t i = 0; i < n_elems; i++)
            cur[(size_t)r * n_elems + i] = dt == DSA_DTYPE_BF16
                ? bf16_value(((uint16_t *)(host + (size_t)r * bytes))[i])
                : ((float *)(host + (size_t)r * bytes))[i];
    int total = graph ? 3 * calls : calls;
    for (int c = 0; c < total; c++)
        for (int64_t i = 0; i < n_elems; i++) {
            float s = 0;
            for (int r = 0; r < n; r++)
                s += cur[(size_t)r * n_elems + i];
            if (dt == DSA_DTYPE_BF16)
                s = bf16_value(bf16_bits(s));
            for (int r = 0; r < n; r++)
                cur[(size_t)r * n_elems + i] = s;
        }
    if (ok && graph) {
        for (int r = 0; r < n && ok; r++) {
            cudaGraph_t g;
            ok &= ok_cuda(cudaStreamBeginCapture(st[r], cudaStreamCaptureModeThreadLocal),
                          "capture");
            for (int k = 0; k < 3 && ok; k++)
                ok &= !dsa_cuda_ar_sum(ar[r], buf[r], n_elems, dt, st[r]);
            ok &= ok_cuda(cudaStreamEndCapture(st[r], &g), "end capture") &&
                  ok_cuda(cudaGraphInstantiate(&ge[r], g, 0), "instantiate");
            cudaGraphDestroy(g);
        }
        for (int c = 0; c < calls && ok; c++)
            for (int r = 0; r < n && ok; r++)
                ok &= ok_cuda(cudaGraphLaunch(ge[r], st[r]), "graph launch");
    } else {
        for (int c = 0; c < calls && ok; c++)
            for (int r = 0; r < n && ok; r++)
                ok &= !dsa_cuda_ar_sum(ar[r], buf[r], n_elems, dt, st[r]);
    }
    int64_t bad = 0;
    for (int r = 0; r < n && ok; r++) {
        ok &= ok_cuda(cudaStreamSynchronize(st[r]), "sync") &&
              ok_cuda(cudaMemcpy(got, buf[r], bytes, cudaMemcpyDeviceToHost), "download");
        for (int64_t i = 0; ok && i < n_elems; i++) {
            float g = dt == DSA_DTYPE_BF16 ? bf16_value(((uint16_t *)got)[i])
                                           : ((float *)got)[i];
            bad += g != cur[(size_t)r * n_elems + i];
        }
    }
    gh_report(h, "allreduce1shot", shape, note, ok ? (double)bad : 1.0, 0.0, ok && bad == 0);
    for (int r = 0; r < n; r++) {
        if (ge[r])
            cudaGraphExecDestroy(ge[r]);
        cudaFree(buf[r]);
        cudaStreamDestroy(st[r]);
        dsa_cuda_ar_destroy(ar[r]);
    }
    free(want), free(host), free(got), free(cur);
}

void gh_suite_fused(gh *h)
{
    test_vocab_gather(h, 8, 256, 129280);
    test_vocab_gather(h, 3, 5, 1001);
    test_norm_quant(h, 7, 7168);
    test_norm_quant(h, 33, 1536);
    test_norm_quant(h, 3, 300);
    test_norm_quant(h, 2, 9000); /* the two-pass kernel, then cuda_quant.cu */
    test_linear_norm_codes(h, 1, 2112, 7168);   /* q_a|kv_a at batch 1 */
    test_linear_norm_codes(h, 7, 3072, 1536);   /* q_b after the q_a norm */
    test_linear_norm_codes(h, 64, 512, 7168);   /* shared gate|up */
    test_oneshot(h, 2, 7168, DSA_DTYPE_BF16, 50, 0);
    test_oneshot(h, 4, 18 * 7168, DSA_DTYPE_BF16, 20, 0);
    test_oneshot(h, 4, 1000, DSA_DTYPE_F32, 7, 0);
    test_oneshot(h, 2, 4096, DSA_DTYPE_F32, 5, 1);
}
