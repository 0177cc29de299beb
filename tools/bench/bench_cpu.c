/* bench_cpu.c - dsa-bench-cpu: prefill and decode throughput of a
 * checkpoint on the CPU backend, against the memory-bandwidth floor.
 *
 * The floor of a decode step is the bytes of weights it must read divided
 * by the machine's measured read bandwidth (measured here, in the same run,
 * with the same thread count).  At batch 1 a step reads every attention and
 * dense weight, the k routed plus the shared experts of each MoE layer, and
 * lm_head.  At batch B the routed experts read are estimated as
 * E * (1 - (1 - k/E)^B) per layer (uniform routing).
 *
 *   dsa-bench-cpu --model DIR [--threads N --prompt-len 256 --decode-steps 32
 *                  --batches 1,16 --json FILE] */
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/options.h"
#include "worker/lm_head.h"
#include "worker/model.h"

typedef struct bench_opts {
    const char *model, *batches, *json, *lm_head_dtype;
    long long threads, prompt_len, decode_steps, bw_mib;
    int int8_act;
} bench_opts;

#define OPT(name, type, field, lo, hi, def, meta, help, req) \
    {name, type, offsetof(bench_opts, field), lo, hi, def, meta, help, req}
static const dsa_option bench_options[] = {
    OPT("model", DSA_OPT_STRING, model, 0, 0, NULL, "DIR", "checkpoint directory", 1),
    OPT("threads", DSA_OPT_INT, threads, 0, 1024, "0", "N", "CPU threads; 0 uses every core", 0),
    OPT("prompt-len", DSA_OPT_INT, prompt_len, 1, 1 << 16, "128", "N", "prompt tokens per sequence", 0),
    OPT("decode-steps", DSA_OPT_INT, decode_steps, 1, 1 << 16, "16", "N", "decode steps timed", 0),
    OPT("batches", DSA_OPT_STRING, batches, 0, 0, "1,16", "LIST", "batch sizes (sequences)", 0),
    OPT("bw-mib", DSA_OPT_INT, bw_mib, 64, 1 << 16, "1024", "MIB", "buffer for the bandwidth test", 0),
    OPT("lm-head-dtype", DSA_OPT_STRING, lm_head_dtype, 0, 0, "auto", "DTYPE", "auto, fp8 or int8 (worker/lm_head.h)", 0),
    OPT("cpu-int8-activations", DSA_OPT_FLAG, int8_act, 0, 0, NULL, NULL, "AWQ linears with int8 activations (kernels/cpu/cpu_awq_int8.c)", 0),
    OPT("json", DSA_OPT_STRING, json, 0, 0, NULL, "FILE", "also write results as JSON", 0),
};
#undef OPT
#define N_OPTIONS ((int)(sizeof bench_options / sizeof bench_options[0]))

/* ---- read bandwidth: each thread sums its part of a large buffer ---- */
typedef struct bw_part {
    const double *p;
    size_t n;
    double sum;
} bw_part;

/* Sums the part with 512-bit loads (8 independent accumulators), the same
 * access pattern as the GEMV kernels, so the floor uses a bandwidth the
 * kernels can actually reach. */
static void *bw_read(void *arg)
{
    bw_part *b = arg;
#ifdef __AVX512F__
    __m512d a[8];
    for (int k = 0; k < 8; k++)
        a[k] = _mm512_setzero_pd();
    size_t i = 0;
    for (; i + 64 <= b->n; i += 64)
        for (int k = 0; k < 8; k++)
            a[k] = _mm512_add_pd(a[k], _mm512_loadu_pd(b->p + i + 8 * k));
    double s = 0;
    for (int k = 0; k < 8; k++)
        s += _mm512_reduce_add_pd(a[k]);
    for (; i < b->n; i++)
        s += b->p[i];
    b->sum = s;
#else
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = 0; i + 4 <= b->n; i += 4) {
        s0 += b->p[i];
        s1 += b->p[i + 1];
        s2 += b->p[i + 2];
        s3 += b->p[i + 3];
    }
    b->sum = s0 + s1 + s2 + s3;
#endif
    return NULL;
}

/* Best of 10 passes, GB/s. */
static double measure_bandwidth(int threads, size_t bytes)
{
    size_t n = bytes / sizeof(double);
    double *buf = malloc(n * sizeof *buf);
    if (!buf)
        return 0;
    for (size_t i = 0; i < n; i++)
        buf[i] = (double)(i & 1023);
    double best = 0;
    pthread_t tid[256];
    bw_part parts[256];
    if (threads > 256)
        threads = 256;
    for (int rep = 0; rep < 10; rep++) {
        double t0 = dsa_time_now();
        for (int t = 0; t < threads; t++) {
            parts[t] = (bw_part){.p = buf + n / (size_t)threads * (size_t)t,
                                 .n = n / (size_t)threads};
            pthread_create(&tid[t], NULL, bw_read, &parts[t]);
        }
        for (int t = 0; t < threads; t++)
            pthread_join(tid[t], NULL);
        double dt = dsa_time_now() - t0;
        double gbs = (double)bytes / dt / 1e9;
        if (gbs > best)
            best = gbs;
    }
    free(buf);
    return best;
}

/* Resident set size in bytes (/proc/self/statm), 0 when unknown. */
static double rss_bytes(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return 0;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = 0;
    fclose(f);
    return (double)resident * (double)sysconf(_SC_PAGESIZE);
}

/* ---- bytes a decode step reads ---- */
static double weight_bytes(const dsa_weight *w)
{
    if (!w->data)
        return 0;
    if (w->dtype == DSA_DTYPE_I32) /* AWQ: int4 + F16 scale and int4 zero per group */
        return (double)w->rows * (double)w->cols * (0.5 + 2.5 / (double)w->awq_group);
    double b = (double)w->rows * (double)w->cols * (double)dsa_dtype_size(w->dtype);
    if (w->dtype == DSA_DTYPE_F8_E4M3)
        b += ceil((double)w->rows / 128) * ceil((double)w->cols / 128) * 4;
    return b;
}

static double expert_bytes(const dsa_expert *e)
{
    return weight_bytes(&e->gate) + weight_bytes(&e->up) + weight_bytes(&e->down);
}

/* Weight bytes of one decode step at batch B (see the file comment). */
static double step_bytes(const dsa_weights *w, int B)
{
    const dsa_config *c = &w->cfg;
    double total = weight_bytes(&w->lm_head) + weight_bytes(&w->final_norm);
    for (int l = 0; l < w->shard.layer_end - w->shard.layer_begin; l++) {
        const dsa_layer_weights *lw = &w->layers[l];
        const dsa_weight *ws[] = {&lw->attn_norm, &lw->ffn_norm, &lw->q_proj, &lw->q_a,
                                  &lw->q_a_norm, &lw->q_b, &lw->kv_a, &lw->kv_a_norm,
                                  &lw->kv_b, &lw->o, &lw->gate, &lw->up, &lw->down,
                                  &lw->router, &lw->k_proj, &lw->v_proj, &lw->q_bias,
                                  &lw->k_bias, &lw->v_bias};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
            total += weight_bytes(ws[i]);
        if (lw->is_moe) {
            double E = c->n_routed_experts, k = c->n_experts_per_tok;
            double used = E * (1 - pow(1 - k / E, B));
            total += used * expert_bytes(&lw->experts[0]) + expert_bytes(&lw->shared);
        }
    }
    return total;
}

typedef struct result {
    int batch;
    double prefill_tok_s, decode_tok_s, decode_step_ms, floor_ms;
} result;

/* Prefills `batch` prompts of prompt_len tokens in one step, then times
 * decode_steps steps of one token per sequence. */
static dsa_err run_batch(dsa_backend *be, const dsa_weights *w, const bench_opts *o, int batch,
                         result *r)
{
    int64_t P = o->prompt_len, S = o->decode_steps, bs = 64;
    int64_t mb = (P + S + 1 + bs - 1) / bs;
    dsa_model_params mp = {.n_blocks = mb * batch, .block_size = bs, .max_blocks_per_seq = mb};
    dsa_model *m = NULL;
    dsa_err err = dsa_model_create(be, w, &mp, &m);
    if (err)
        return err;
    int64_t T = P * batch, V = w->vocab_rows;
    int32_t *tok = malloc((size_t)T * sizeof *tok), *pos = malloc((size_t)T * sizeof *pos);
    int32_t *seq = malloc((size_t)T * sizeof *seq), *rows = malloc((size_t)batch * sizeof *rows);
    int32_t *bt = malloc((size_t)(mb * batch) * sizeof *bt);
    float *logits = malloc((size_t)(batch * V) * sizeof *logits);
    if (!tok || !pos || !seq || !rows || !bt || !logits) {
        err = dsa_fail(DSA_NOMEM, "bench buffers");
        goto out;
    }
    for (int64_t i = 0; i < mb * batch; i++)
        bt[i] = (int32_t)i;
    uint64_t x = 88172645463325252ull;
    for (int64_t t = 0; t < T; t++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        tok[t] = (int32_t)(x % (uint64_t)w->cfg.vocab_size);
        pos[t] = (int32_t)(t % P);
        seq[t] = (int32_t)(t / P);
    }
    for (int b = 0; b < batch; b++)
        rows[b] = (int32_t)((b + 1) * P - 1);
    dsa_batch bt_prefill = {.n_tokens = T, .tokens = tok, .pos = pos, .seq = seq,
                            .n_seqs = batch, .block_tables = bt, .n_logits = batch,
                            .logit_rows = rows};
    double t0 = dsa_time_now();
    if ((err = dsa_model_forward(m, &bt_prefill, logits)))
        goto out;
    r->prefill_tok_s = (double)T / (dsa_time_now() - t0);

    double t_dec = 0;
    for (int64_t s = 0; s <= S; s++) { /* step 0 warms up, untimed */
        for (int b = 0; b < batch; b++) {
            tok[b] = (int32_t)((s * 7919 + b * 104729) % w->cfg.vocab_size);
            pos[b] = (int32_t)(P + s);
            seq[b] = b;
            rows[b] = b;
        }
        dsa_batch d = {.n_tokens = batch, .tokens = tok, .pos = pos, .seq = seq,
                       .n_seqs = batch, .block_tables = bt, .n_logits = batch,
                       .logit_rows = rows};
        double ts = dsa_time_now();
        if ((err = dsa_model_forward(m, &d, logits)))
            goto out;
        if (s > 0)
            t_dec += dsa_time_now() - ts;
    }
    r->decode_step_ms = t_dec / (double)S * 1e3;
    r->decode_tok_s = (double)(S * batch) / t_dec;
out:
    free(tok);
    free(pos);
    free(seq);
    free(rows);
    free(bt);
    free(logits);
    dsa_model_destroy(m);
    return err;
}

int main(int argc, char **argv)
{
    bench_opts o = {0};
    int help = 0, rc = 1;
    dsa_err err = dsa_options_parse(bench_options, N_OPTIONS, &o, argc, argv, &help);
    if (help) {
        dsa_options_usage(stdout, "dsa-bench-cpu",
                          "CPU prefill/decode throughput against the memory-bandwidth floor.",
                          bench_options, N_OPTIONS);
        return 0;
    }
    if (err) {
        fprintf(stderr, "dsa-bench-cpu: %s\n", dsa_errmsg());
        return 2;
    }
    /* info with an FP8 head: its start-up error report is part of the result */
    dsa_log_setup(o.lm_head_dtype && strcmp(o.lm_head_dtype, "auto") ? DSA_LOG_INFO : DSA_LOG_WARN,
                  0);
    int *batches = NULL, n_batches = 0;
    dsa_backend *be = NULL;
    dsa_weights *w = NULL;
    int prepared = 0;
    result res[32];
    if ((err = dsa_parse_int_list(o.batches, "--batches", &batches, &n_batches)))
        goto fail;
    if (n_batches > 32)
        n_batches = 32;
    int threads = o.threads > 0 ? (int)o.threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    double bw = measure_bandwidth(threads, (size_t)o.bw_mib << 20);
    if ((err = dsa_backend_cpu_create(threads, &be)))
        goto fail;
    double tl = dsa_time_now();
    dsa_lm_head_dtype lm_head_dtype;
    if ((err = dsa_lm_head_dtype_parse(o.lm_head_dtype, &lm_head_dtype)) ||
        (err = dsa_weights_load(o.model, NULL, &w)) ||
        (err = dsa_weights_lm_head_apply(w, (int)lm_head_dtype)))
        goto fail;
    double load_s = dsa_time_now() - tl;
    double rss = rss_bytes();
    if (o.int8_act) {
        /* the repack is made here, at weight_prepare; its time and RSS apart */
        double tp = dsa_time_now();
        dsa_backend_cpu_set_int8_activations(be, 1);
        if ((err = dsa_weights_prepare(w, be)))
            goto fail;
        prepared = 1;
        double rss2 = rss_bytes();
        printf("int8 activations: AWQ repack %.2fs, resident +%.1f MB\n", dsa_time_now() - tp,
               (rss2 - rss) / 1e6);
        rss = rss2;
    }
    printf("model %s: %.1f MB of weights (loaded in %.1fs), resident %.1f MB after loading, "
           "%d threads, read bandwidth %.1f GB/s\n",
           o.model, (double)w->bytes / 1e6, load_s, rss / 1e6, threads, bw);
    printf("%6s %14s %14s %14s %12s %8s\n", "batch", "prefill tok/s", "decode tok/s",
           "step ms", "floor ms", "ratio");
    for (int i = 0; i < n_batches; i++) {
        if (batches[i] < 1) {
            err = dsa_fail(DSA_INVAL, "--batches: %d is not a batch size", batches[i]);
            goto fail;
        }
        res[i].batch = batches[i];
        if ((err = run_batch(be, w, &o, batches[i], &res[i])))
            goto fail;
        res[i].floor_ms = step_bytes(w, batches[i]) / (bw * 1e9) * 1e3;
        printf("%6d %14.1f %14.1f %14.2f %12.2f %8.2f\n", res[i].batch, res[i].prefill_tok_s,
               res[i].decode_tok_s, res[i].decode_step_ms, res[i].floor_ms,
               res[i].decode_step_ms / res[i].floor_ms);
        fflush(stdout);
    }
    if (o.json) {
        FILE *f = fopen(o.json, "w");
        if (!f) {
            err = dsa_fail(DSA_IO, "%s: cannot write", o.json);
            goto fail;
        }
        fprintf(f, "{\"model\": \"%s\", \"weight_bytes\": %llu, \"threads\": %d, "
                   "\"bandwidth_gb_s\": %.2f, \"rss_after_load_bytes\": %.0f, "
                   "\"prompt_len\": %lld, \"decode_steps\": %lld, \"results\": [",
                o.model, (unsigned long long)w->bytes, threads, bw, rss, o.prompt_len,
                o.decode_steps);
        for (int i = 0; i < n_batches; i++)
            fprintf(f, "%s{\"batch\": %d, \"prefill_tok_s\": %.2f, \"decode_tok_s\": %.2f, "
                       "\"decode_step_ms\": %.3f, \"floor_ms\": %.3f}",
                    i ? ", " : "", res[i].batch, res[i].prefill_tok_s, res[i].decode_tok_s,
                    res[i].decode_step_ms, res[i].floor_ms);
        fprintf(f, "]}\n");
        fclose(f);
    }
    rc = 0;
fail:
    if (rc)
        fprintf(stderr, "dsa-bench-cpu: %s: %s\n", dsa_strerror(err), dsa_errmsg());
    if (prepared)
        dsa_weights_release(w, be);
    dsa_weights_free(w);
    dsa_backend_destroy(be);
    free(batches);
    dsa_options_free(bench_options, N_OPTIONS, &o);
    return rc;
}
