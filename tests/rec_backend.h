/* rec_backend.h - a graph-recording backend for tests, included by the
 * test files that use it (test_model_graph.c, test_model_graph_dist.c):
 * it wraps the CPU backend the way CUDA stream capture wraps a stream.
 * Between graph_begin and graph_end it stores a copy of each op's params
 * instead of running the op, and refuses (as CUDA does) alloc, free,
 * upload, download, host conversions, sample and sync; graph_replay runs
 * the stored ops again on the same buffers.  rec_call queues a host
 * function in stream order (how a test communicator puts its collectives
 * into a graph, as NCCL's enter a CUDA graph). */
#ifndef DSA_TESTS_REC_BACKEND_H
#define DSA_TESTS_REC_BACKEND_H

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"


/* The ops a graph may hold: X(name, params type). */
#define REC_OPS(X)                                  \
    X(embed, dsa_embed_params)                      \
    X(rmsnorm, dsa_rmsnorm_params)                  \
    X(linear, dsa_linear_params)                    \
    X(rope, dsa_rope_params)                        \
    X(kv_store, dsa_kv_store_params)                \
    X(mla_attn, dsa_mla_attn_params)                \
    X(mla_absorb_q, dsa_mla_absorb_params)          \
    X(mla_absorb_o, dsa_mla_absorb_params)          \
    X(silu_mul, dsa_silu_mul_params)                \
    X(add, dsa_add_params)                          \
    X(router, dsa_router_params)                    \
    X(moe, dsa_moe_params)                          \
    X(vocab_gather, dsa_vocab_gather_params)

typedef enum rec_kind {
#define X(name, type) REC_##name,
    REC_OPS(X)
#undef X
    REC_copy,
    REC_call,
} rec_kind;

typedef struct rec_copy_params {
    void *dst;
    const void *src;
    size_t bytes;
} rec_copy_params;

/* A host function queued in stream order (a collective on the backend's
 * stream, as NCCL's are): run at once, or recorded and run at each replay
 * with its copy of arg. */
typedef struct rec_call_params {
    dsa_err (*fn)(void *arg);
    unsigned char arg[96];
} rec_call_params;

typedef struct rec_op {
    rec_kind kind;
    union {
#define X(name, type) type name;
        REC_OPS(X)
#undef X
        rec_copy_params copy;
        rec_call_params call;
    } p;
} rec_op;

typedef struct rec_graph {
    int64_t key;
    rec_op *ops;
    int n_ops;
} rec_graph;

typedef struct rec_backend {
    dsa_backend base;           /* first: the model sees a dsa_backend */
    dsa_backend *cpu;           /* owned */
    dsa_backend_ops ops;
    int recording;
    rec_op *cur;                /* ops of the graph being recorded */
    int n_cur, cap_cur;
    rec_graph graphs[16];
    int n_graphs;
    int fail_begin;             /* graph_begin fails (fallback test) */
    /* counters */
    int n_begin, n_end, n_replay, n_replayed_ops, n_refused, n_recorded_ops;
} rec_backend;

static rec_backend *rec(dsa_backend *be)
{
    return (rec_backend *)be;
}

static dsa_err rec_refuse(rec_backend *r, const char *what)
{
    r->n_refused++;
    return dsa_fail(DSA_INVAL, "recording backend: %s during graph capture", what);
}

static dsa_err rec_push(rec_backend *r, const rec_op *op)
{
    if (r->n_cur == r->cap_cur) {
        int cap = r->cap_cur ? 2 * r->cap_cur : 64;
        rec_op *n = realloc(r->cur, (size_t)cap * sizeof *n);
        if (!n)
            return dsa_fail(DSA_NOMEM, "recording backend");
        r->cur = n;
        r->cap_cur = cap;
    }
    r->cur[r->n_cur++] = *op;
    r->n_recorded_ops++;
    return DSA_OK;
}

/* Each op: recorded (params copied) while recording, else run on the CPU. */
#define X(name, type)                                                   \
    static dsa_err rec_##name(dsa_backend *be, const type *p)           \
    {                                                                   \
        rec_backend *r = rec(be);                                       \
        if (r->recording) {                                             \
            rec_op op = {.kind = REC_##name};                           \
            op.p.name = *p;                                             \
            return rec_push(r, &op);                                    \
        }                                                               \
        return r->cpu->ops->name(r->cpu, p);                            \
    }
REC_OPS(X)
#undef X

static dsa_err rec_copy(dsa_backend *be, void *dst, const void *src, size_t bytes)
{
    rec_backend *r = rec(be);
    if (r->recording) {
        rec_op op = {.kind = REC_copy, .p.copy = {dst, src, bytes}};
        return rec_push(r, &op);
    }
    return r->cpu->ops->copy(r->cpu, dst, src, bytes);
}

static dsa_err rec_run(rec_backend *r, const rec_op *op)
{
    dsa_backend *c = r->cpu;
    switch (op->kind) {
#define X(name, type)   \
    case REC_##name:    \
        return c->ops->name(c, &op->p.name);
        REC_OPS(X)
#undef X
    case REC_copy:
        return c->ops->copy(c, op->p.copy.dst, op->p.copy.src, op->p.copy.bytes);
    case REC_call:
        return ((rec_op *)op)->p.call.fn(((rec_op *)op)->p.call.arg);
    }
    return dsa_fail(DSA_INVAL, "recording backend: bad op");
}

static inline dsa_err rec_call(rec_backend *r, dsa_err (*fn)(void *), const void *arg, size_t size)
{
    rec_op op = {.kind = REC_call, .p.call = {.fn = fn}};
    if (size > sizeof op.p.call.arg)
        return dsa_fail(DSA_INVAL, "recording backend: call argument of %zu bytes", size);
    memcpy(op.p.call.arg, arg, size);
    if (r->recording)
        return rec_push(r, &op);
    return fn(op.p.call.arg);
}

static dsa_err rec_alloc(dsa_backend *be, size_t bytes, void **out)
{
    rec_backend *r = rec(be);
    if (r->recording)
        return rec_refuse(r, "alloc");
    return r->cpu->ops->alloc(r->cpu, bytes, out);
}

static void rec_free(dsa_backend *be, void *p)
{
    rec_backend *r = rec(be);
    if (r->recording) {
        r->n_refused++; /* freeing a buffer a graph may name */
        return;
    }
    r->cpu->ops->free(r->cpu, p);
}

static dsa_err rec_upload(dsa_backend *be, void *dst, const void *src, size_t bytes)
{
    rec_backend *r = rec(be);
    if (r->recording)
        return rec_refuse(r, "upload");
    return r->cpu->ops->upload(r->cpu, dst, src, bytes);
}

static dsa_err rec_download(dsa_backend *be, void *dst, const void *src, size_t bytes)
{
    rec_backend *r = rec(be);
    if (r->recording)
        return rec_refuse(r, "download");
    return r->cpu->ops->download(r->cpu, dst, src, bytes);
}

static dsa_err rec_act_from_f32(dsa_backend *be, void *dst, const float *src, size_t n)
{
    rec_backend *r = rec(be);
    if (r->recording)
        return rec_refuse(r, "act_from_f32");
    return r->cpu->ops->act_from_f32(r->cpu, dst, src, n);
}

static dsa_err rec_act_to_f32(dsa_backend *be, float *dst, const void *src, size_t n)
{
    rec_backend *r = rec(be);
    if (r->recording)
        return rec_refuse(r, "act_to_f32");
    return r->cpu->ops->act_to_f32(r->cpu, dst, src, n);
}

static dsa_err rec_weight_prepare(dsa_backend *be, dsa_weight *w)
{
    rec_backend *r = rec(be);
    if (r->recording)
        return rec_refuse(r, "weight_prepare");
    return r->cpu->ops->weight_prepare(r->cpu, w);
}

static void rec_weight_release(dsa_backend *be, dsa_weight *w)
{
    rec_backend *r = rec(be);
    r->cpu->ops->weight_release(r->cpu, w);
}

static dsa_err rec_sample(dsa_backend *be, const dsa_sample_params *p)
{
    rec_backend *r = rec(be);
    if (r->recording)
        return rec_refuse(r, "sample");
    return r->cpu->ops->sample(r->cpu, p);
}

static dsa_err rec_sync(dsa_backend *be)
{
    rec_backend *r = rec(be);
    if (r->recording)
        return rec_refuse(r, "sync");
    return r->cpu->ops->sync(r->cpu);
}

static dsa_err rec_graph_begin(dsa_backend *be)
{
    rec_backend *r = rec(be);
    if (r->fail_begin)
        return dsa_fail(DSA_UNSUPPORTED, "recording backend: graph_begin told to fail");
    if (r->recording)
        return dsa_fail(DSA_INVAL, "recording backend: already recording");
    r->recording = 1;
    r->n_cur = 0;
    r->n_begin++;
    return DSA_OK;
}

static dsa_err rec_graph_end(dsa_backend *be, int64_t key)
{
    rec_backend *r = rec(be);
    if (!r->recording)
        return dsa_fail(DSA_INVAL, "recording backend: graph_end without graph_begin");
    r->recording = 0;
    r->n_end++;
    rec_graph *g = NULL;
    for (int i = 0; i < r->n_graphs; i++)
        if (r->graphs[i].key == key)
            g = &r->graphs[i];
    if (!g) {
        if (r->n_graphs == (int)(sizeof r->graphs / sizeof r->graphs[0]))
            return dsa_fail(DSA_NOMEM, "recording backend: graph table full");
        g = &r->graphs[r->n_graphs++];
        *g = (rec_graph){.key = key};
    }
    free(g->ops);
    g->ops = malloc((size_t)(r->n_cur ? r->n_cur : 1) * sizeof *g->ops);
    if (!g->ops)
        return dsa_fail(DSA_NOMEM, "recording backend: graph");
    memcpy(g->ops, r->cur, (size_t)r->n_cur * sizeof *g->ops);
    g->n_ops = r->n_cur;
    return DSA_OK;
}

static dsa_err rec_graph_replay(dsa_backend *be, int64_t key)
{
    rec_backend *r = rec(be);
    if (r->recording)
        return rec_refuse(r, "graph_replay");
    for (int i = 0; i < r->n_graphs; i++) {
        if (r->graphs[i].key != key)
            continue;
        r->n_replay++;
        for (int j = 0; j < r->graphs[i].n_ops; j++) {
            dsa_err err = rec_run(r, &r->graphs[i].ops[j]);
            if (err)
                return err;
            r->n_replayed_ops++;
        }
        return DSA_OK;
    }
    return dsa_fail(DSA_NOTFOUND, "recording backend: no graph %lld", (long long)key);
}

/* What the CUDA backend does when it grows a scratch buffer that captured
 * graphs name: every graph is dropped, and a replay finds none. */
static inline void rec_drop_graphs(rec_backend *r)
{
    for (int i = 0; i < r->n_graphs; i++)
        free(r->graphs[i].ops);
    r->n_graphs = 0;
}

static void rec_destroy(dsa_backend *be)
{
    rec_backend *r = rec(be);
    for (int i = 0; i < r->n_graphs; i++)
        free(r->graphs[i].ops);
    free(r->cur);
    dsa_backend_destroy(r->cpu);
    free(r);
}

static rec_backend *rec_create(void)
{
    rec_backend *r = calloc(1, sizeof *r);
    cr_assert_not_null(r);
    cr_assert_eq(dsa_backend_cpu_create(2, &r->cpu), DSA_OK);
    r->ops = (dsa_backend_ops){
        .name = "recording", .destroy = rec_destroy, .alloc = rec_alloc, .free = rec_free,
        .upload = rec_upload, .download = rec_download, .copy = rec_copy,
        .act_from_f32 = rec_act_from_f32, .act_to_f32 = rec_act_to_f32,
        .weight_prepare = rec_weight_prepare, .weight_release = rec_weight_release,
#define X(name, type) .name = rec_##name,
        REC_OPS(X)
#undef X
        .sample = rec_sample, .sync = rec_sync, .graph_begin = rec_graph_begin,
        .graph_end = rec_graph_end, .graph_replay = rec_graph_replay};
    r->base.ops = &r->ops;
    r->base.act_dtype = r->cpu->act_dtype;
    r->base.act_size = r->cpu->act_size;
    return r;
}

#endif
