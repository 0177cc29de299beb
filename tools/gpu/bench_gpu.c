/* bench_gpu.c - GPU benchmarks of the CUDA backend (dsa-bench-gpu):
 *   ceilings  device-to-device copy GB/s (read + write), cuBLASLt BF16 and
 *             FP8 (block-scaled, activation quantisation included) TFLOP/s
 *             at 8192^3;
 *   gemm      FP8 linear at the TP=8 shard's shapes, M = 1..4096;
 *   mla       decode attention GB/s, batch 1..256 x context 1k..32k (16 heads);
 *   shard     one rank's shard of DeepSeek-V3 under TP=8 PP=2 (31 layers:
 *             3 dense + 28 MoE at 1/8 width, random FP8 weights generated
 *             on the device, ~42 GB): decode step time at batch 1, 8, 32,
 *             128, 256 (context 1024, replayed CUDA graph) against the HBM
 *             floor (bytes that must be read / measured copy bandwidth),
 *             with the experts each batch's (balanced) routing touches, a
 *             per-op time breakdown of the eager step at batch 1 and 256,
 *             and prefill tokens/s (4096 tokens) against the FP8 peak.
 * Times are medians of CUDA-event-timed repeats after warm-up; prints a
 * table and writes JSON (--json FILE).  Usage: dsa-bench-gpu [--json F]
 * [--only ceilings|gemm|mla|shard]. */
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_backend.h"

static dsa_backend *be;
static FILE *js;
static int js_first = 1;
static double copy_gbs, bf16_tf, fp8_tf;

#define CK(x)                                                                    \
    do {                                                                         \
        dsa_err e_ = (x);                                                        \
        if (e_) {                                                                \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, dsa_errmsg()); \
            exit(1);                                                             \
        }                                                                        \
    } while (0)

static void jrow(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#include <stdarg.h>
static void jrow(const char *fmt, ...)
{
    if (!js)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(js, "%s\n  {", js_first ? "" : ",");
    vfprintf(js, fmt, ap);
    fprintf(js, "}");
    va_end(ap);
    js_first = 0;
}

typedef dsa_err (*bench_fn)(void *ctx);

static int cmp_f(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Median milliseconds of fn over reps (after 3 warm-ups). */
static double time_ms(bench_fn fn, void *ctx, int reps)
{
    cudaStream_t s = (cudaStream_t)dsa_cuda_stream(be);
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    for (int i = 0; i < 3; i++)
        CK(fn(ctx));
    float *t = malloc((size_t)reps * sizeof *t);
    for (int i = 0; i < reps; i++) {
        cudaEventRecord(a, s);
        CK(fn(ctx));
        cudaEventRecord(b, s);
        cudaEventSynchronize(b);
        cudaEventElapsedTime(&t[i], a, b);
    }
    qsort(t, (size_t)reps, sizeof *t, cmp_f);
    double m = t[reps / 2];
    free(t);
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return m;
}

static void *dalloc(size_t bytes)
{
    void *p;
    CK(be->ops->alloc(be, bytes, &p));
    return p;
}

/* A device weight [rows, cols] of random data generated on the device. */
static dsa_weight dweight(dsa_dtype dt, int64_t rows, int64_t cols, uint64_t seed)
{
    int64_t ld = (cols + 15) & ~(int64_t)15;
    dsa_weight w = {.dtype = dt, .rows = rows, .cols = cols, .ld = ld,
                    .block_rows = 128, .block_cols = 128};
    void *d = dalloc((size_t)(rows * ld) * (dt == DSA_DTYPE_F8_E4M3 ? 1 : 2));
    CK(dsa_cuda_fill_random(be, d, rows * ld, dt, seed));
    w.data = d;
    if (dt == DSA_DTYPE_F8_E4M3) {
        int64_t sr = (rows + 127) / 128, sc = (((cols + 127) / 128) + 3) & ~(int64_t)3;
        void *s = dalloc((size_t)(sr * sc) * 4);
        CK(dsa_cuda_fill_random(be, s, sr * sc, DSA_DTYPE_F32, seed + 1));
        w.scale = s;
        w.scale_ld = sc;
    }
    return w;
}

static void dfree_weight(dsa_weight *w)
{
    be->ops->free(be, (void *)w->data);
    if (w->scale)
        be->ops->free(be, (void *)w->scale);
}

/* ---- ceilings ---------------------------------------------------------- */

typedef struct copy_ctx { void *a, *b; size_t n; } copy_ctx;
static dsa_err run_copy(void *c_)
{
    copy_ctx *c = c_;
    return be->ops->copy(be, c->b, c->a, c->n);
}

typedef struct lin_ctx { dsa_linear_params p; } lin_ctx;
static dsa_err run_lin(void *c_)
{
    return be->ops->linear(be, &((lin_ctx *)c_)->p);
}

static double gemm_tflops(dsa_dtype dt, int64_t M, int64_t N, int64_t K, int reps,
                          const char **path)
{
    dsa_weight w = dweight(dt, N, K, 7);
    void *x = dalloc((size_t)(M * K) * 2), *y = dalloc((size_t)(M * N) * 2);
    CK(dsa_cuda_fill_random(be, x, M * K, DSA_DTYPE_BF16, 9));
    lin_ctx c = {{.out = y, .x = x, .w = &w, .m = M, .ld_x = K, .ld_out = N}};
    double ms = time_ms(run_lin, &c, reps);
    *path = dsa_cuda_last_linear_path(be);
    dfree_weight(&w);
    be->ops->free(be, x);
    be->ops->free(be, y);
    return 2.0 * M * N * K / (ms * 1e-3) / 1e12;
}

static void bench_ceilings(void)
{
    size_t n = (size_t)2 << 30;
    copy_ctx c = {dalloc(n), dalloc(n), n};
    CK(dsa_cuda_fill_random(be, c.a, (int64_t)(n / 2), DSA_DTYPE_BF16, 1));
    double ms = time_ms(run_copy, &c, 20);
    copy_gbs = 2.0 * (double)n / (ms * 1e-3) / 1e9;
    be->ops->free(be, c.a);
    be->ops->free(be, c.b);
    const char *p1, *p2;
    bf16_tf = gemm_tflops(DSA_DTYPE_BF16, 8192, 8192, 8192, 20, &p1);
    fp8_tf = gemm_tflops(DSA_DTYPE_F8_E4M3, 8192, 8192, 8192, 20, &p2);
    printf("\n== ceilings ==\n%-34s %10.1f GB/s\n%-34s %10.1f TFLOP/s (%s)\n%-34s %10.1f TFLOP/s (%s)\n",
           "D2D copy (read+write)", copy_gbs, "BF16 GEMM 8192^3", bf16_tf, p1,
           "FP8 GEMM 8192^3 (+act quant)", fp8_tf, p2);
    jrow("\"bench\": \"ceilings\", \"copy_gbs\": %.1f, \"bf16_tflops\": %.1f, \"fp8_tflops\": %.1f, "
         "\"fp8_path\": \"%s\"", copy_gbs, bf16_tf, fp8_tf, p2);
}

/* ---- FP8 GEMM at the shard's shapes ------------------------------------- */

static void bench_gemm(void)
{
    static const struct { const char *name; int64_t n, k; } sh[] = {
        {"q_a", 1536, 7168}, {"q_b/8", 3072, 1536}, {"kv_a", 576, 7168},
        {"o/8", 7168, 2048}, {"dense gate/8", 2304, 7168}, {"dense down/8", 7168, 2304},
        {"expert gate/8", 256, 7168}, {"expert down/8", 7168, 256},
    };
    static const int64_t Ms[] = {1, 8, 32, 128, 512, 4096};
    printf("\n== FP8 linear (TFLOP/s | GB/s of weights) ==\n%-14s", "shape \\ M");
    for (size_t j = 0; j < sizeof Ms / sizeof Ms[0]; j++)
        printf(" %15lld", (long long)Ms[j]);
    printf("\n");
    for (size_t i = 0; i < sizeof sh / sizeof sh[0]; i++) {
        printf("%-14s", sh[i].name);
        for (size_t j = 0; j < sizeof Ms / sizeof Ms[0]; j++) {
            const char *path;
            double tf = gemm_tflops(DSA_DTYPE_F8_E4M3, Ms[j], sh[i].n, sh[i].k, 30, &path);
            double sec = 2.0 * Ms[j] * sh[i].n * sh[i].k / (tf * 1e12);
            double gbs = (double)(sh[i].n * sh[i].k) / sec / 1e9;
            printf(" %6.1f|%6.0f%s", tf, gbs, path[0] == 'l' ? " " : "*");
            jrow("\"bench\": \"gemm\", \"shape\": \"%s\", \"n\": %lld, \"k\": %lld, \"m\": %lld, "
                 "\"tflops\": %.2f, \"weight_gbs\": %.1f, \"path\": \"%s\"", sh[i].name,
                 (long long)sh[i].n, (long long)sh[i].k, (long long)Ms[j], tf, gbs, path);
        }
        printf("\n");
    }
    printf("(* = dequantising fallback kernel, not cuBLASLt)\n");
}

/* ---- MLA decode ------------------------------------------------------------ */

typedef struct attn_ctx { dsa_mla_attn_params p; } attn_ctx;
static dsa_err run_attn(void *c_)
{
    return be->ops->mla_attn(be, &((attn_ctx *)c_)->p);
}

static void bench_mla(void)
{
    static const int64_t Bs[] = {1, 8, 32, 128, 256}, Cs[] = {1024, 4096, 16384, 32768};
    const int64_t H = 16, R = 512, P = 64, W = 576, bs = 64;
    printf("\n== MLA decode (GB/s of cache read; H=%lld) ==\n%-8s", (long long)H, "B \\ ctx");
    for (int j = 0; j < 4; j++)
        printf(" %10lld", (long long)Cs[j]);
    printf("\n");
    for (int i = 0; i < 5; i++) {
        printf("%-8lld", (long long)Bs[i]);
        for (int j = 0; j < 4; j++) {
            int64_t B = Bs[i], C = Cs[j], mb = C / bs, nb = B * mb;
            if ((double)nb * bs * W * 2 > 20e9) {
                printf(" %10s", "-");
                continue;
            }
            dsa_kv_layer kv = {.data = dalloc((size_t)(nb * bs * W) * 2), .n_blocks = nb,
                               .block_size = bs, .width = W};
            CK(dsa_cuda_fill_random(be, kv.data, nb * bs * W, DSA_DTYPE_BF16, 3));
            int32_t *bt = malloc((size_t)nb * 4), *seq = malloc((size_t)B * 4),
                    *pos = malloc((size_t)B * 4);
            for (int64_t k = 0; k < nb; k++)
                bt[k] = (int32_t)k;
            for (int64_t s = 0; s < B; s++)
                seq[s] = (int32_t)s, pos[s] = (int32_t)(C - 1);
            void *dbt = dalloc((size_t)nb * 4), *dseq = dalloc((size_t)B * 4),
                 *dpos = dalloc((size_t)B * 4);
            CK(be->ops->upload(be, dbt, bt, (size_t)nb * 4));
            CK(be->ops->upload(be, dseq, seq, (size_t)B * 4));
            CK(be->ops->upload(be, dpos, pos, (size_t)B * 4));
            void *q = dalloc((size_t)(B * H * W) * 2), *o = dalloc((size_t)(B * H * R) * 2);
            CK(dsa_cuda_fill_random(be, q, B * H * W, DSA_DTYPE_BF16, 4));
            attn_ctx c = {{.out = o, .q_lat = q, .q_pe = (char *)q + (size_t)(B * H * R) * 2,
                           .ld_qpe_token = H * P, .ld_qpe_head = P, .cache = &kv, .seq = dseq,
                           .pos = dpos, .block_tables = dbt, .ld_block_table = mb, .n_tokens = B,
                           .n_heads = H, .kv_rank = R, .rope_dim = P, .scale = 0.135f}};
            double ms = time_ms(run_attn, &c, 10);
            double gbs = (double)(B * C * W * 2) / (ms * 1e-3) / 1e9;
            printf(" %10.0f", gbs);
            jrow("\"bench\": \"mla_decode\", \"batch\": %lld, \"ctx\": %lld, \"ms\": %.4f, "
                 "\"gbs\": %.1f", (long long)B, (long long)C, ms, gbs);
            void *fr[] = {kv.data, dbt, dseq, dpos, q, o};
            for (int k = 0; k < 6; k++)
                be->ops->free(be, fr[k]);
            free(bt), free(seq), free(pos);
        }
        printf("\n");
    }
}

#include "tools/gpu/bench_shard.h"

int main(int argc, char **argv)
{
    const char *json = NULL, *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json") && i + 1 < argc)
            json = argv[++i];
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            only = argv[++i];
    }
    if (dsa_cuda_device_count() < 1) {
        printf("no CUDA device\n");
        return 77;
    }
    CK(dsa_backend_cuda_create(0, 0.95, &be));
    if (json && (js = fopen(json, "w")))
        fprintf(js, "{\"rows\": [");
    if (!only || !strcmp(only, "ceilings") || !strcmp(only, "shard"))
        bench_ceilings();
    if (!only || !strcmp(only, "gemm"))
        bench_gemm();
    if (!only || !strcmp(only, "mla"))
        bench_mla();
    if (!only || !strcmp(only, "shard"))
        bench_shard();
    if (js) {
        fprintf(js, "\n]}\n");
        fclose(js);
    }
    dsa_backend_destroy(be);
    return 0;
}
