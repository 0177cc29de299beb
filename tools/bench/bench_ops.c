/* bench_ops.c - throughput of the CPU backend's hot ops.
 *
 * Usage: bench_ops [n_threads] [seconds per case]
 * linear: F32 / BF16 / FP8 weights at the shapes of a hidden-2048 MoE model
 * ([2048 x 2048] attention-sized, [1408 x 2048] expert gate/up, [2048 x
 * 1408] expert down) for m = 1, 4, 16, 64, 256 tokens.  Each call uses the
 * next of enough weight copies to exceed the caches (~256 MiB), as a
 * forward pass walks through its layers, so small m shows the memory-bound
 * rate.  Prints ms per call, weight GB/s and GFLOP/s.  Then MoE decode
 * (64 experts, top-6, FP8), MLA attention decode and sampling over a
 * 129280-token vocabulary; AWQ int4 at Qwen2-0.5B's MLP shapes.
 * A third argument picks sections (comma-separated): linear, awq, awq8
 * (AWQ with int8 activations), moe, attn, sample, and qwen (only when
 * named: Qwen2-0.5B's shapes, its 272 MB head included; qwen1: decode,
 * m = 1, alone). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/dtype.h"
#include "kernels/backend.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Process CPU time: on a shared machine, wall time / (cpu time / threads)
 * shows how much of the wall time other processes took. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int g_threads = 1;

static uint64_t rng = 12345;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

static float rndf(void)
{
    return (float)rnd() / 65536.0f / 32768.0f - 1.0f;
}

/* n_copies weights of one shape and dtype in one buffer. */
typedef struct wset {
    dsa_weight *w;
    int n;
    void *data;
    float *scale;
} wset;

static int wset_make(wset *s, dsa_dtype dt, int64_t R, int64_t C, size_t budget)
{
    size_t bytes = (size_t)(R * C) * dsa_dtype_size(dt);
    int n = (int)(budget / bytes);
    n = n < 1 ? 1 : n > 4096 ? 4096 : n;
    int64_t sr = (R + 127) / 128, sc = (C + 127) / 128;
    s->n = n;
    s->w = calloc((size_t)n, sizeof *s->w);
    s->data = aligned_alloc(64, (bytes * (size_t)n + 63) & ~(size_t)63);
    s->scale = malloc((size_t)(sr * sc * n) * sizeof(float));
    if (!s->w || !s->data || !s->scale)
        return -1;
    unsigned char *d = s->data;
    for (size_t i = 0; i < bytes * (size_t)n; i++)
        d[i] = (unsigned char)(rnd() & 0x77); /* finite, moderate values in every dtype */
    for (int64_t i = 0; i < sr * sc * n; i++)
        s->scale[i] = 1.0f / 512.0f;
    for (int i = 0; i < n; i++)
        s->w[i] = (dsa_weight){.dtype = dt, .rows = R, .cols = C, .ld = C,
                               .data = d + bytes * (size_t)i, .scale = s->scale + sr * sc * i,
                               .scale_ld = sc, .block_rows = 128, .block_cols = 128};
    return 0;
}

static void wset_free(wset *s)
{
    free(s->w);
    free(s->data);
    free(s->scale);
}

/* One linear table: every dtype x shape x m, weights rotated through a
 * 256 MiB set (a shape bigger than that is one copy, already past L3). */
typedef struct lin_cases {
    const dsa_dtype *dts;
    size_t n_dts;
    const int64_t (*shapes)[2];
    size_t n_shapes;
    const int64_t *ms;
    size_t n_ms;
} lin_cases;

static void bench_linear_cases(dsa_backend *be, double secs, const lin_cases *lc)
{
    int64_t m_max = 1, n_max = 1, k_max = 1;
    for (size_t i = 0; i < lc->n_ms; i++)
        m_max = lc->ms[i] > m_max ? lc->ms[i] : m_max;
    for (size_t i = 0; i < lc->n_shapes; i++) {
        n_max = lc->shapes[i][0] > n_max ? lc->shapes[i][0] : n_max;
        k_max = lc->shapes[i][1] > k_max ? lc->shapes[i][1] : k_max;
    }
    float *x = malloc((size_t)(m_max * k_max) * sizeof(float));
    float *out = malloc((size_t)(m_max * n_max) * sizeof(float));
    for (int64_t i = 0; i < m_max * k_max; i++)
        x[i] = rndf();
    printf("%-8s %-12s %5s %10s %10s %10s %12s\n", "dtype", "W [n x k]", "m", "ms/call", "GB/s",
           "GFLOP/s", "GB/s(cpu)");
    for (size_t d = 0; d < lc->n_dts; d++)
        for (size_t si = 0; si < lc->n_shapes; si++) {
            const dsa_dtype *dts = lc->dts;
            const int64_t (*shapes)[2] = lc->shapes;
            wset s;
            if (wset_make(&s, dts[d], shapes[si][0], shapes[si][1], (size_t)256 << 20)) {
                fprintf(stderr, "bench_ops: out of memory\n");
                exit(1);
            }
            for (size_t mi = 0; mi < lc->n_ms; mi++) {
                int64_t m = lc->ms[mi];
                dsa_linear_params p = {.out = out, .x = x, .m = m, .ld_x = shapes[si][1],
                                       .ld_out = shapes[si][0]};
                long calls = 0;
                double t0 = now_s(), c0 = cpu_s(), t;
                do {
                    p.w = &s.w[calls % s.n];
                    if (be->ops->linear(be, &p) != DSA_OK) {
                        fprintf(stderr, "linear failed\n");
                        exit(1);
                    }
                    calls++;
                    t = now_s() - t0;
                } while (t < secs);
                double per = t / (double)calls;
                double cper = (cpu_s() - c0) / (double)calls / g_threads;
                double wb = (double)(shapes[si][0] * shapes[si][1]) * (double)dsa_dtype_size(dts[d]);
                double fl = 2.0 * (double)m * (double)(shapes[si][0] * shapes[si][1]);
                char shp[32];
                snprintf(shp, sizeof shp, "%lldx%lld", (long long)shapes[si][0], (long long)shapes[si][1]);
                printf("%-8s %-12s %5lld %10.4f %10.1f %10.1f %12.1f\n", dsa_dtype_name(dts[d]), shp,
                       (long long)m, per * 1e3, wb / per / 1e9, fl / per / 1e9, wb / cper / 1e9);
                fflush(stdout);
            }
            wset_free(&s);
        }
    free(x);
    free(out);
}

static void bench_linear(dsa_backend *be, double secs)
{
    static const dsa_dtype dts[] = {DSA_DTYPE_F32, DSA_DTYPE_BF16, DSA_DTYPE_F8_E4M3};
    static const int64_t shapes[][2] = {{2048, 2048}, {1408, 2048}, {2048, 1408}};
    static const int64_t ms[] = {1, 4, 16, 64, 256};
    lin_cases lc = {dts, 3, shapes, 3, ms, 5};
    bench_linear_cases(be, secs, &lc);
}

/* Qwen2-0.5B's linears (q+k+v fused, o, gate/up, down, the tied 151936 x
 * 896 head: 272 MB in BF16, one copy past any cache), BF16 and FP8, for
 * decode (m = 1), a speculative verify (m = 4) and prefill (m = 128). */
static void bench_qwen(dsa_backend *be, double secs, int m1_only)
{
    static const dsa_dtype dts[] = {DSA_DTYPE_BF16, DSA_DTYPE_F8_E4M3};
    static const int64_t shapes[][2] = {{1152, 896}, {4864, 896}, {896, 4864}, {151936, 896}};
    static const int64_t ms[] = {1, 4, 128};
    lin_cases lc = {dts, 2, shapes, 4, ms, m1_only ? 1 : 3};
    bench_linear_cases(be, secs, &lc);
}

/* One MoE decode step: 64 experts [1408 x 2048] FP8, top-6, n_tokens 1 and
 * 4; 4 expert sets in rotation so the weights come from memory. */
static void bench_moe(dsa_backend *be, double secs)
{
    enum { E = 64, D = 2048, I = 1408, K = 6, SETS = 4 };
    wset g, u, dn;
    if (wset_make(&g, DSA_DTYPE_F8_E4M3, I, D, (size_t)E * SETS * I * D) ||
        wset_make(&u, DSA_DTYPE_F8_E4M3, I, D, (size_t)E * SETS * I * D) ||
        wset_make(&dn, DSA_DTYPE_F8_E4M3, D, I, (size_t)E * SETS * I * D))
        exit(1);
    dsa_expert *ex = malloc(sizeof(dsa_expert) * E * SETS);
    for (int i = 0; i < E * SETS; i++)
        ex[i] = (dsa_expert){g.w[i], u.w[i], dn.w[i]};
    float x[4 * D], out[4 * D], wt[4 * K];
    int32_t ids[4 * K];
    for (int i = 0; i < 4 * D; i++)
        x[i] = rndf();
    for (int T = 1; T <= 4; T *= 4) {
        long calls = 0;
        double t0 = now_s(), c0 = cpu_s(), t;
        int64_t active = 0;
        do {
            for (int k = 0; k < T * K; k++) {
                ids[k] = (int32_t)((k * 7 + calls * 13) % E);
                wt[k] = 0.3f;
            }
            dsa_moe_params p = {.out = out, .x = x, .ids = ids, .weights = wt,
                                .experts = ex + (calls % SETS) * E, .n_tokens = T, .dim = D,
                                .inter = I, .n_experts = E, .top_k = K};
            if (be->ops->moe(be, &p) != DSA_OK)
                exit(1);
            char seen[E] = {0};
            for (int k = 0; k < T * K; k++)
                active += !seen[ids[k]]++;
            calls++;
            t = now_s() - t0;
        } while (t < secs);
        double per = t / (double)calls;
        double cper = (cpu_s() - c0) / (double)calls / g_threads;
        double bytes = (double)active / (double)calls * 3.0 * I * D;
        printf("moe fp8 E=%d top%d dim %d inter %d tokens %d: %.3f ms/call, %.1f GB/s of experts"
               " (%.1f GB/s per cpu-time)\n", E, K, D, I, T, per * 1e3, bytes / per / 1e9, bytes / cper / 1e9);
    }
    free(ex);
    wset_free(&g);
    wset_free(&u);
    wset_free(&dn);
}

static void bench_attn(dsa_backend *be, double secs)
{
    enum { H = 16, R = 512, P = 64, BS = 64 };
    static const int lens[] = {512, 4096};
    for (int li = 0; li < 2; li++) {
        int L = lens[li], nb = (L + BS - 1) / BS;
        dsa_kv_layer c = {.n_blocks = nb, .block_size = BS, .width = R + P};
        c.data = malloc((size_t)nb * BS * (R + P) * sizeof(float));
        float *q = malloc(H * (R + P) * sizeof(float)), *o = malloc(H * R * sizeof(float));
        int32_t *bt = malloc((size_t)nb * sizeof(int32_t));
        for (int i = 0; i < nb * BS * (R + P); i++)
            ((float *)c.data)[i] = rndf();
        for (int i = 0; i < H * (R + P); i++)
            q[i] = rndf();
        for (int i = 0; i < nb; i++)
            bt[i] = nb - 1 - i;
        int32_t seq = 0, pos = L - 1;
        dsa_mla_attn_params p = {.out = o, .q_lat = q, .q_pe = q + H * R, .ld_qpe_token = H * P,
                                 .ld_qpe_head = P, .cache = &c, .seq = &seq, .pos = &pos,
                                 .block_tables = bt, .ld_block_table = nb, .n_tokens = 1,
                                 .n_heads = H, .kv_rank = R, .rope_dim = P, .scale = 0.1f};
        long calls = 0;
        double t0 = now_s(), t;
        do {
            if (be->ops->mla_attn(be, &p) != DSA_OK)
                exit(1);
            calls++;
            t = now_s() - t0;
        } while (t < secs);
        double per = t / (double)calls;
        printf("mla_attn decode H=%d ctx %d: %.3f ms/call, %.1f GB/s of cache, %.1f GFLOP/s\n", H, L,
               per * 1e3, (double)L * (R + P) * 4 / per / 1e9,
               (double)L * H * (2.0 * R + P) * 2 / per / 1e9);
        free(c.data);
        free(q);
        free(o);
        free(bt);
    }
}

static void bench_sample(dsa_backend *be, double secs)
{
    enum { V = 129280 };
    float *l = malloc((size_t)V * sizeof(float));
    for (int i = 0; i < V; i++)
        l[i] = 8.0f * rndf();
    static const dsa_sample_row rows[] = {
        {.temperature = 0.0f, .top_p = 1.0f},
        {.temperature = 0.6f, .top_p = 0.95f},
        {.temperature = 1.0f, .top_p = 1.0f, .top_k = 40},
        {.temperature = 1.0f, .top_p = 1.0f},
    };
    static const char *names[] = {"greedy", "T0.6 top_p0.95", "top_k40", "plain T1"};
    for (int r = 0; r < 4; r++) {
        int32_t id;
        float lp;
        long calls = 0;
        double t0 = now_s(), t;
        do {
            dsa_sample_row row = rows[r];
            row.step = (uint64_t)calls;
            dsa_sample_params p = {.out_ids = &id, .out_logprobs = &lp, .logits = l, .rows = &row,
                                   .n_rows = 1, .vocab = V};
            if (be->ops->sample(be, &p) != DSA_OK)
                exit(1);
            calls++;
            t = now_s() - t0;
        } while (t < secs);
        printf("sample vocab %d %-16s (+logprob): %.3f ms/row\n", V, names[r], t / (double)calls * 1e3);
    }
    free(l);
}

/* AWQ int4 g128 at the shapes of Qwen2-0.5B's MLP ([4864 x 896] gate/up,
 * [896 x 4864] down) for m = 1, 4, 16, 128; copies in rotation beyond the
 * caches.  GB/s counts the packed weights, zeros and scales (AutoAWQ's
 * layout, also for the "awq8" section: int8 activations on a backend with
 * --cpu-int8-activations, whose repack is prepared before timing). */
static void bench_awq(dsa_backend *be, double secs, int int8)
{
    static const int64_t shapes[][2] = {{4864, 896}, {896, 4864}};
    static const int64_t ms[] = {1, 4, 16, 128};
    enum { G = 128 };
    float *x = malloc(128 * 4864 * sizeof(float)), *out = malloc(128 * 4864 * sizeof(float));
    for (int i = 0; i < 128 * 4864; i++)
        x[i] = rndf();
    for (size_t si = 0; si < 2; si++) {
        int64_t R = shapes[si][0], C = shapes[si][1], words = R / 8 * C, gw = R / 8 * (C / G);
        size_t bytes = (size_t)(words * 4 + gw * 4 + gw * 16);
        int n = (int)(((size_t)256 << 20) / bytes);
        int32_t *q = malloc((size_t)(words * n) * 4), *z = malloc((size_t)(gw * n) * 4);
        uint16_t *sc = malloc((size_t)(gw * 8 * n) * 2);
        if (!q || !z || !sc)
            exit(1);
        for (int64_t i = 0; i < words * n; i++)
            q[i] = (int32_t)(rnd() ^ (rnd() << 16));
        for (int64_t i = 0; i < gw * n; i++)
            z[i] = (int32_t)0x88888888u;
        for (int64_t i = 0; i < gw * 8 * n; i++)
            sc[i] = dsa_f32_to_f16(0.01f);
        dsa_weight *ws = calloc((size_t)n, sizeof *ws);
        if (!ws)
            exit(1);
        for (int i = 0; i < n; i++) {
            ws[i] = (dsa_weight){.dtype = DSA_DTYPE_I32, .rows = R, .cols = C, .ld = R / 8,
                                 .data = q + words * i, .awq_zeros = z + gw * i,
                                 .awq_scales = sc + gw * 8 * i, .awq_group = G};
            if (be->ops->weight_prepare(be, &ws[i]) != DSA_OK || (int8 && !ws[i].awq8))
                exit(1);
        }
        for (size_t mi = 0; mi < 4; mi++) {
            int64_t m = ms[mi];
            long calls = 0;
            double t0 = now_s(), c0 = cpu_s(), t;
            do {
                dsa_linear_params p = {.out = out, .x = x, .w = &ws[calls % n], .m = m, .ld_x = C,
                                       .ld_out = R};
                if (be->ops->linear(be, &p) != DSA_OK)
                    exit(1);
                calls++;
                t = now_s() - t0;
            } while (t < secs);
            double per = t / (double)calls;
            double cper = (cpu_s() - c0) / (double)calls / g_threads;
            double fl = 2.0 * (double)m * (double)(R * C);
            printf("%s g%d %lldx%lld m %4lld: %9.4f ms/call %7.1f GB/s %7.1f GFLOP/s"
                   " %7.1f GB/s(cpu) %7.1f GFLOP/s(cpu)\n", int8 ? "awq8" : "awq", G,
                   (long long)R, (long long)C,
                   (long long)m, per * 1e3, (double)bytes / per / 1e9, fl / per / 1e9,
                   (double)bytes / cper / 1e9, fl / cper / 1e9);
            fflush(stdout);
        }
        for (int i = 0; i < n; i++)
            be->ops->weight_release(be, &ws[i]);
        free(ws);
        free(q);
        free(z);
        free(sc);
    }
    free(x);
    free(out);
}

/* 1 when the comma-separated list names section `name` exactly. */
static int has_section(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; (p = strstr(p, name)); p += n)
        if ((p == list || p[-1] == ',') && (p[n] == '\0' || p[n] == ','))
            return 1;
    return 0;
}

int main(int argc, char **argv)
{
    int n_threads = argc > 1 ? atoi(argv[1]) : 0;
    double secs = argc > 2 ? atof(argv[2]) : 0.3;
    const char *only = argc > 3 ? argv[3] : "";
    dsa_backend *be = NULL;
    if (n_threads <= 0)
        n_threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    g_threads = n_threads;
    if (dsa_backend_cpu_create(n_threads, &be) != DSA_OK) {
        fprintf(stderr, "bench_ops: cannot create the CPU backend\n");
        return 1;
    }
    if (!*only || strstr(only, "linear"))
        bench_linear(be, secs);
    if (strstr(only, "qwen"))
        bench_qwen(be, secs, strstr(only, "qwen1") != NULL);
    if (!*only || has_section(only, "awq"))
        bench_awq(be, secs, 0);
    if (!*only || has_section(only, "awq8")) {
        dsa_backend_cpu_set_int8_activations(be, 1);
        bench_awq(be, secs, 1);
        dsa_backend_cpu_set_int8_activations(be, 0);
    }
    if (!*only || strstr(only, "moe"))
        bench_moe(be, secs);
    if (!*only || strstr(only, "attn"))
        bench_attn(be, secs);
    if (!*only || strstr(only, "sample"))
        bench_sample(be, secs);
    dsa_backend_destroy(be);
    return 0;
}
