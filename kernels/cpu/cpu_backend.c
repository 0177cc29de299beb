/* cpu_backend.c - the CPU backend: vtable, memory, thread pool plumbing and
 * the element-wise ops (embed, rmsnorm, rope, kv_store, silu_mul, add).
 *
 * Activations are F32 host memory; upload/download are memcpy and weights
 * are used where they lie (mmapped checkpoint).  The heavy ops live in
 * cpu_linear.c, cpu_attn.c, cpu_moe.c and cpu_sample.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/cpu/cpu_internal.h"



/* ---- Scratch and parallel loops ----------------------------------------- */

float *dsa_cpu_scratch_get(dsa_cpu_scratch *s, int slot, size_t n)
{
    if (n == 0)
        n = 1;
    if (s->cap[slot] >= n)
        return s->buf[slot];
    size_t cap = s->cap[slot] * 2 > n ? s->cap[slot] * 2 : n;
    size_t bytes = (cap * sizeof(float) + 63) & ~(size_t)63;
    float *p = aligned_alloc(64, bytes);
    if (!p)
        return NULL;
    free(s->buf[slot]);
    s->buf[slot] = p;
    s->cap[slot] = cap;
    return p;
}

typedef struct pfor_job {
    dsa_cpu_range_fn fn;
    void *ctx;
    int64_t n, grain;
    _Atomic int64_t next;
} pfor_job;

static void pfor_worker(void *ctx, int tid)
{
    pfor_job *j = ctx;
    for (;;) {
        int64_t b = atomic_fetch_add_explicit(&j->next, j->grain, memory_order_relaxed);
        if (b >= j->n)
            break;
        int64_t e = b + j->grain < j->n ? b + j->grain : j->n;
        j->fn(j->ctx, b, e, tid);
    }
}

void dsa_cpu_parallel_for(dsa_cpu_backend *be, int64_t n, int64_t grain,
                          dsa_cpu_range_fn fn, void *ctx)
{
    if (n <= 0)
        return;
    if (grain < 1)
        grain = 1;
    if (be->n_threads == 1 || n <= grain) {
        fn(ctx, 0, n, 0);
        return;
    }
    pfor_job j = {.fn = fn, .ctx = ctx, .n = n, .grain = grain};
    atomic_init(&j.next, 0);
    dsa_threadpool_share(be->pool, pfor_worker, &j);
}

/* ---- Memory ------------------------------------------------------------- */

static void cpu_destroy(dsa_backend *be_)
{
    dsa_cpu_backend *be = dsa_cpu_be(be_);
    dsa_threadpool_destroy(be->pool);
    if (be->scratch)
        for (int t = 0; t < be->n_threads; t++)
            for (int s = 0; s < DSA_CPU_SCR_COUNT; s++)
                free(be->scratch[t].buf[s]);
    free(be->scratch);
    free(be);
}

static dsa_err cpu_alloc(dsa_backend *be, size_t bytes, void **out)
{
    size_t n = (bytes + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, n ? n : 64);
    if (!p) {
        *out = NULL;
        return dsa_fail(DSA_NOMEM, "cpu backend: cannot allocate %zu bytes", bytes);
    }
    memset(p, 0, n ? n : 64);
    *out = p;
    return DSA_OK;
}

static void cpu_free(dsa_backend *be, void *p)
{
    free(p);
}

static dsa_err cpu_copy(dsa_backend *be, void *dst, const void *src, size_t bytes)
{
    if (bytes)
        memmove(dst, src, bytes);
    return DSA_OK;
}

static dsa_err cpu_act_from_f32(dsa_backend *be, void *dst, const float *src, size_t n)
{
    return cpu_copy(be, dst, src, n * sizeof(float));
}

static dsa_err cpu_act_to_f32(dsa_backend *be, float *dst, const void *src, size_t n)
{
    return cpu_copy(be, dst, src, n * sizeof(float));
}

static dsa_err cpu_weight_prepare(dsa_backend *be, dsa_weight *w)
{
    switch (w->dtype) {
    case DSA_DTYPE_F32:
    case DSA_DTYPE_F16:
    case DSA_DTYPE_BF16:
        return DSA_OK;
    case DSA_DTYPE_I8: /* --lm-head-dtype int8 (cpu_awq_int8.c) */
        if (!w->scale || w->block_rows != 1 || w->ld % 32)
            return dsa_fail(DSA_INVAL, "cpu backend: int8 weight without row scales");
        return DSA_OK;
    case DSA_DTYPE_F8_E4M3:
        if (!w->scale || w->block_rows <= 0 || w->block_cols <= 0)
            return dsa_fail(DSA_INVAL, "cpu backend: FP8 weight without block scales");
        return DSA_OK;
    case DSA_DTYPE_I32: /* AWQ int4 (cpu_awq.c) */
        if (!w->awq_zeros || !w->awq_scales || w->awq_group <= 0)
            return dsa_fail(DSA_INVAL, "cpu backend: AWQ weight without zeros or scales");
        if (dsa_cpu_be(be)->awq_int8 && !w->awq8) {
            dsa_cpu_awq8 *p = NULL;
            dsa_err err = dsa_cpu_awq8_create(w, &p);
            if (err == DSA_NOMEM)
                return dsa_fail(err, "cpu backend: int8 repack of a %lld x %lld AWQ weight",
                                (long long)w->rows, (long long)w->cols);
            w->awq8 = p; /* NULL (unsupported shape): the F32 path */
        }
        return DSA_OK;
    default:
        return dsa_fail(DSA_DTYPE, "cpu backend: weight dtype %s", dsa_dtype_name(w->dtype));
    }
}

static void cpu_weight_release(dsa_backend *be, dsa_weight *w)
{
    if (w->dtype == DSA_DTYPE_I32 && w->awq8) {
        dsa_cpu_awq8_destroy((dsa_cpu_awq8 *)w->awq8);
        w->awq8 = NULL;
    }
}

void dsa_backend_cpu_set_int8_activations(dsa_backend *be, int on)
{
    dsa_cpu_be(be)->awq_int8 = on != 0;
}

static dsa_err cpu_sync(dsa_backend *be)
{
    return DSA_OK;
}

/* ---- embed -------------------------------------------------------------- */

static dsa_err cpu_embed(dsa_backend *be, const dsa_embed_params *p)
{
    const dsa_weight *tab = p->table;
    for (int64_t t = 0; t < p->n_tokens; t++) {
        float *o = (float *)p->out + t * tab->cols;
        int64_t r = (int64_t)p->ids[t] - p->row_begin;
        if (r >= 0 && r < tab->rows)
            dsa_cpu_weight_row(tab, r, o);
        else
            memset(o, 0, (size_t)tab->cols * sizeof(float));
    }
    return DSA_OK;
}

/* ---- rmsnorm ------------------------------------------------------------ */

typedef struct rms_job {
    const dsa_rmsnorm_params *p;
    const float *w;             /* [dim] dequantised weight */
} rms_job;

static void rms_range(void *ctx, int64_t b, int64_t e, int tid)
{
    const rms_job *j = ctx;
    const dsa_rmsnorm_params *p = j->p;
    int64_t d = p->dim;
    for (int64_t r = b; r < e; r++) {
        const float *x = (const float *)p->x + r * p->ld_x;
        float *o = (float *)p->out + r * p->ld_out;
        if (p->residual) {
            float *res = (float *)p->residual + r * d;
            for (int64_t i = 0; i < d; i++)
                res[i] += x[i];
            x = res;
        }
        float ss = dsa_cpu_dot(x, x, d);
        float inv = 1.0f / sqrtf(ss / (float)d + p->eps);
        for (int64_t i = 0; i < d; i++)
            o[i] = j->w[i] * (x[i] * inv);
        if (p->out_q)
            dsa_cpu_quant_row(p->out_q + r * d, p->out_scale + r * ((d + 127) / 128), o, d);
    }
}

static dsa_err cpu_rmsnorm(dsa_backend *be_, const dsa_rmsnorm_params *p)
{
    dsa_cpu_backend *be = dsa_cpu_be(be_);
    float *w = dsa_cpu_scratch_get(&be->scratch[0], DSA_CPU_SCR_TMP, (size_t)p->dim);
    if (!w)
        return DSA_NOMEM;
    dsa_cpu_weight_row(p->weight, 0, w);
    rms_job j = {.p = p, .w = w};
    int64_t grain = 16384 / (p->dim > 0 ? p->dim : 1) + 1;
    dsa_cpu_parallel_for(be, p->n_rows, grain, rms_range, &j);
    return DSA_OK;
}

/* ---- rope --------------------------------------------------------------- */

/* The angle is the F32 product pos * inv_freq (as DeepSeek's reference
 * builds its freqs_cis), then cos/sin in F32. */
static dsa_err cpu_rope(dsa_backend *be, const dsa_rope_params *p)
{
    int64_t half = p->rot_dim / 2;
    for (int64_t t = 0; t < p->n_tokens; t++) {
        float pos = (float)p->positions[t];
        /* interleaved: (x[2i], x[2i+1]); neox: (x[i], x[i + half]) */
        int64_t first = p->neox ? 1 : 2, second = p->neox ? half : 1;
        for (int64_t i = 0; i < half; i++) {
            float ang = pos * p->inv_freq[i];
            float c = cosf(ang), s = sinf(ang);
            for (int64_t h = 0; h < p->n_heads; h++) {
                float *x = (float *)p->x + t * p->ld_token + h * p->ld_head + first * i;
                float x0 = x[0], x1 = x[second];
                x[0] = x0 * c - x1 * s;
                x[second] = x0 * s + x1 * c;
            }
        }
    }
    return DSA_OK;
}

/* ---- kv_store ----------------------------------------------------------- */

static dsa_err cpu_kv_store(dsa_backend *be, const dsa_kv_store_params *p)
{
    const dsa_kv_layer *c = p->cache;
    for (int64_t t = 0; t < p->n_tokens; t++) {
        float *dst = (float *)c->data + (int64_t)p->slots[t] * c->width;
        memcpy(dst, (const float *)p->c_kv + t * p->ld_c, (size_t)p->kv_rank * sizeof(float));
        memcpy(dst + p->kv_rank, (const float *)p->k_pe + t * p->ld_k,
               (size_t)p->rope_dim * sizeof(float));
    }
    return DSA_OK;
}

/* ---- silu_mul, add ------------------------------------------------------ */

static void silu_range(void *ctx, int64_t b, int64_t e, int tid)
{
    const dsa_silu_mul_params *p = ctx;
    for (int64_t r = b; r < e; r++) {
        const float *g = (const float *)p->gate + r * p->ld;
        const float *u = (const float *)p->up + r * p->ld;
        float *o = (float *)p->out + r * p->ld;
        for (int64_t i = 0; i < p->dim; i++)
            o[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
    }
}

static dsa_err cpu_silu_mul(dsa_backend *be, const dsa_silu_mul_params *p)
{
    int64_t grain = 8192 / (p->dim > 0 ? p->dim : 1) + 1;
    dsa_cpu_parallel_for(dsa_cpu_be(be), p->n_rows, grain, silu_range, (void *)p);
    return DSA_OK;
}

static dsa_err cpu_add(dsa_backend *be, const dsa_add_params *p)
{
    const float *a = p->a, *b = p->b;
    float *o = p->out;
    for (int64_t i = 0; i < p->n; i++)
        o[i] = a[i] + b[i];
    return DSA_OK;
}

/* ---- creation ----------------------------------------------------------- */

static const dsa_backend_ops cpu_ops = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_copy,
    .download = cpu_copy,
    .copy = cpu_copy,
    .act_from_f32 = cpu_act_from_f32,
    .act_to_f32 = cpu_act_to_f32,
    .weight_prepare = cpu_weight_prepare,
    .weight_release = cpu_weight_release,
    .embed = cpu_embed,
    .rmsnorm = cpu_rmsnorm,
    .linear = dsa_cpu_linear,
    .rope = cpu_rope,
    .kv_store = cpu_kv_store,
    .mla_attn = dsa_cpu_mla_attn,
    .mla_absorb_q = dsa_cpu_mla_absorb_q,
    .mla_absorb_o = dsa_cpu_mla_absorb_o,
    .silu_mul = cpu_silu_mul,
    .add = cpu_add,
    .router = dsa_cpu_router,
    .moe = dsa_cpu_moe,
    .sample = dsa_cpu_sample,
    .logit_ctl = dsa_cpu_logit_ctl,
    .mask = dsa_cpu_mask,
    .count_add = dsa_cpu_count_add,
    .penalties = dsa_cpu_penalties,
    .logprobs = dsa_cpu_logprobs,
    .gqa_attn = dsa_cpu_gqa_attn,
    .bias_add = dsa_cpu_bias_add,
    .vocab_gather = dsa_cpu_vocab_gather,
    .mha_prefill = dsa_cpu_mha_prefill,
    .sync = cpu_sync,
};

dsa_err dsa_backend_cpu_create(int n_threads, dsa_backend **out)
{
    *out = NULL;
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int)n : 1;
    }
    dsa_cpu_backend *be = calloc(1, sizeof *be);
    if (!be)
        return DSA_NOMEM;
    be->base.ops = &cpu_ops;
    be->base.act_dtype = DSA_DTYPE_F32;
    be->base.act_size = sizeof(float);
    be->n_threads = n_threads;
    be->scratch = calloc((size_t)n_threads, sizeof *be->scratch);
    if (!be->scratch) {
        free(be);
        return DSA_NOMEM;
    }
    dsa_err err = dsa_threadpool_create(n_threads, &be->pool);
    if (err) {
        cpu_destroy(&be->base);
        return err;
    }
    *out = &be->base;
    return DSA_OK;
}
