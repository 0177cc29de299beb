/* loader.c - builds a shard's weight descriptors from a checkpoint; see
 * loader.h.  Tensor names and shapes follow MODEL_SPEC.md §2. */
#include "worker/loader.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/log.h"
#include "worker/loader_internal.h"

typedef dsa_load_ctx load_ctx;

/* The file a tensor lives in, for messages. */
static const char *tensor_file(const dsa_st_tensor *t)
{
    const char *p = dsa_st_file_path(t->file);
    const char *slash = strrchr(p, '/');
    return slash ? slash + 1 : p;
}

static dsa_err find_tensor(load_ctx *c, const char *name, const dsa_st_tensor **out)
{
    *out = dsa_st_model_find(c->w->st, name);
    if (!*out)
        return dsa_fail(DSA_NOTFOUND, "%s: missing tensor '%s'", c->w->dir, name);
    return DSA_OK;
}

static int is_matrix_dtype(dsa_dtype t)
{
    return t == DSA_DTYPE_F32 || t == DSA_DTYPE_F16 || t == DSA_DTYPE_BF16 ||
           t == DSA_DTYPE_F8_E4M3;
}

/* A slice [r0, r0+nr) x [c0, c0+nc) of the stored matrix `name`, which must
 * have shape [rows, cols].  rows == 0 means a vector of `cols` elements. */
static dsa_err load_slice(load_ctx *c, const char *name, int64_t rows, int64_t cols,
                          int64_t r0, int64_t nr, int64_t c0, int64_t nc, dsa_weight *w)
{
    if (rows > 0 && dsa_loader_awq_wanted(c->cfg, name))
        return dsa_loader_awq_slice(c, name, rows, cols, r0, nr, c0, nc, w);
    const dsa_st_tensor *t;
    dsa_err err = find_tensor(c, name, &t);
    if (err)
        return err;
    if (!is_matrix_dtype(t->dtype))
        return dsa_fail(DSA_DTYPE, "%s: tensor '%s': dtype %s is not a weight dtype",
                        tensor_file(t), name, dsa_dtype_name(t->dtype));
    int vector = rows == 0;
    if (vector ? (t->ndim != 1 || t->shape[0] != cols)
               : (t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols)) {
        char got[96];
        int n = 0;
        got[0] = '\0';
        for (int i = 0; i < t->ndim && n < (int)sizeof got - 24; i++)
            n += snprintf(got + n, sizeof got - (size_t)n, "%s%lld", i ? ", " : "",
                          (long long)t->shape[i]);
        if (vector)
            return dsa_fail(DSA_SHAPE, "%s: tensor '%s': shape [%s], config implies [%lld]",
                            tensor_file(t), name, got, (long long)cols);
        return dsa_fail(DSA_SHAPE, "%s: tensor '%s': shape [%s], config implies [%lld, %lld]",
                        tensor_file(t), name, got, (long long)rows, (long long)cols);
    }
    if (vector) {
        rows = 1;
        nr = 1;
        r0 = 0;
    }
    size_t es = dsa_dtype_size(t->dtype);
    memset(w, 0, sizeof *w);
    w->dtype = t->dtype;
    w->rows = nr;
    w->cols = nc;
    w->ld = cols;
    w->row0 = r0;
    w->col0 = c0;
    w->data = (const char *)t->data + ((size_t)r0 * (size_t)cols + (size_t)c0) * es;
    c->w->bytes += (uint64_t)nr * (uint64_t)nc * es;
    if (t->dtype != DSA_DTYPE_F8_E4M3)
        return DSA_OK;

    /* FP8: W.weight_scale_inv, F32 [ceil(rows/br), ceil(cols/bc)]. */
    int64_t br = c->cfg->block_rows > 0 ? c->cfg->block_rows : 128;
    int64_t bc = c->cfg->block_cols > 0 ? c->cfg->block_cols : 128;
    char sname[512];
    snprintf(sname, sizeof sname, "%s_scale_inv", name);
    const dsa_st_tensor *s = dsa_st_model_find(c->w->st, sname);
    if (!s)
        return dsa_fail(DSA_NOTFOUND, "%s: FP8 tensor '%s' has no scale tensor '%s'",
                        tensor_file(t), name, sname);
    int64_t sr = (rows + br - 1) / br, sc = (cols + bc - 1) / bc;
    if (s->dtype != DSA_DTYPE_F32 || s->ndim != 2 || s->shape[0] != sr || s->shape[1] != sc)
        return dsa_fail(DSA_SHAPE, "%s: tensor '%s': expected F32 [%lld, %lld] block scales",
                        tensor_file(s), sname, (long long)sr, (long long)sc);
    w->scale = s->data;
    w->scale_ld = sc;
    w->block_rows = br;
    w->block_cols = bc;
    c->w->bytes += (uint64_t)sr * (uint64_t)sc * 4;
    return DSA_OK;
}

dsa_err dsa_loader_slice(dsa_load_ctx *c, const char *name, int64_t rows, int64_t cols,
                         int64_t r0, int64_t nr, int64_t c0, int64_t nc, dsa_weight *w)
{
    return load_slice(c, name, rows, cols, r0, nr, c0, nc, w);
}

/* Whole matrix [rows, cols]. */
static dsa_err load_full(load_ctx *c, const char *name, int64_t rows, int64_t cols, dsa_weight *w)
{
    return load_slice(c, name, rows, cols, 0, rows, 0, cols, w);
}

static dsa_err load_vector(load_ctx *c, const char *name, int64_t n, dsa_weight *w)
{
    return load_slice(c, name, 0, n, 0, 1, 0, n, w);
}

/* An MLP (gate/up column-parallel, down row-parallel) under prefix, with
 * full intermediate width `inter` split over tp. */
static dsa_err load_mlp(load_ctx *c, const char *prefix, int64_t inter, dsa_expert *e)
{
    const dsa_shard *sh = &c->w->shard;
    int64_t D = c->cfg->hidden_size, il = inter / sh->tp_size, i0 = il * sh->tp_rank;
    char name[512];
    dsa_err err;
    snprintf(name, sizeof name, "%s.gate_proj.weight", prefix);
    if ((err = load_slice(c, name, inter, D, i0, il, 0, D, &e->gate)))
        return err;
    snprintf(name, sizeof name, "%s.up_proj.weight", prefix);
    if ((err = load_slice(c, name, inter, D, i0, il, 0, D, &e->up)))
        return err;
    snprintf(name, sizeof name, "%s.down_proj.weight", prefix);
    return load_slice(c, name, D, inter, 0, D, i0, il, &e->down);
}

/* The router's correction bias as F32 (converted into *owned when stored
 * in another dtype). */
static dsa_err load_bias(load_ctx *c, const char *name, int64_t n, const float **out,
                         float **owned)
{
    dsa_weight v;
    dsa_err err = load_vector(c, name, n, &v);
    if (err)
        return err;
    if (v.dtype == DSA_DTYPE_F32) {
        *out = v.data;
        return DSA_OK;
    }
    if (v.dtype == DSA_DTYPE_F8_E4M3)
        return dsa_fail(DSA_DTYPE, "%s: tensor '%s': FP8 bias is not supported", c->w->dir, name);
    float *f = malloc((size_t)n * sizeof *f);
    if (!f)
        return dsa_fail(DSA_NOMEM, "loading '%s'", name);
    for (int64_t i = 0; i < n; i++)
        f[i] = dsa_weight_get(&v, 0, i);
    *owned = f;
    *out = f;
    return DSA_OK;
}

static dsa_err load_layer(load_ctx *c, int l, dsa_layer_weights *lw)
{
    if (dsa_config_is_dense(c->cfg))
        return dsa_loader_dense_layer(c, l, lw);
    const dsa_config *cfg = c->cfg;
    const dsa_weights *w = c->w;
    int64_t D = cfg->hidden_size, H = cfg->n_heads, Hl = w->n_heads_local, h0 = w->head_begin;
    int64_t nope = cfg->qk_nope_head_dim, rope = cfg->qk_rope_head_dim, vd = cfg->v_head_dim;
    int64_t kvr = cfg->kv_lora_rank, qk = nope + rope;
    char p[256], name[512];
    dsa_err err;
    snprintf(p, sizeof p, "model.layers.%d", l);
#define NAME(suffix) (snprintf(name, sizeof name, "%s.%s", p, suffix), name)
    if ((err = load_vector(c, NAME("input_layernorm.weight"), D, &lw->attn_norm)) ||
        (err = load_vector(c, NAME("post_attention_layernorm.weight"), D, &lw->ffn_norm)))
        return err;
    if (cfg->q_lora_rank > 0) {
        int64_t ql = cfg->q_lora_rank;
        if ((err = load_full(c, NAME("self_attn.q_a_proj.weight"), ql, D, &lw->q_a)) ||
            (err = load_vector(c, NAME("self_attn.q_a_layernorm.weight"), ql, &lw->q_a_norm)) ||
            (err = load_slice(c, NAME("self_attn.q_b_proj.weight"), H * qk, ql, h0 * qk, Hl * qk,
                              0, ql, &lw->q_b)))
            return err;
    } else if ((err = load_slice(c, NAME("self_attn.q_proj.weight"), H * qk, D, h0 * qk, Hl * qk,
                                 0, D, &lw->q_proj))) {
        return err;
    }
    if ((err = load_full(c, NAME("self_attn.kv_a_proj_with_mqa.weight"), kvr + rope, D, &lw->kv_a)) ||
        (err = load_vector(c, NAME("self_attn.kv_a_layernorm.weight"), kvr, &lw->kv_a_norm)) ||
        (err = load_slice(c, NAME("self_attn.kv_b_proj.weight"), H * (nope + vd), kvr,
                          h0 * (nope + vd), Hl * (nope + vd), 0, kvr, &lw->kv_b)) ||
        (err = load_slice(c, NAME("self_attn.o_proj.weight"), D, H * vd, 0, D, h0 * vd, Hl * vd,
                          &lw->o)))
        return err;

    lw->is_moe = dsa_config_layer_is_moe(cfg, l);
    if (!lw->is_moe) {
        dsa_expert e;
        if ((err = load_mlp(c, NAME("mlp"), cfg->intermediate_size, &e)))
            return err;
        lw->gate = e.gate;
        lw->up = e.up;
        lw->down = e.down;
        return DSA_OK;
    }
    int64_t E = cfg->n_routed_experts;
    if ((err = load_full(c, NAME("mlp.gate.weight"), E, D, &lw->router)))
        return err;
    lw->router_bias = NULL;
    if (cfg->topk_method == DSA_TOPK_NOAUX_TC &&
        (err = load_bias(c, NAME("mlp.gate.e_score_correction_bias"), E, &lw->router_bias,
                         &lw->router_bias_owned)))
        return err;
    lw->experts = calloc((size_t)E, sizeof *lw->experts);
    if (!lw->experts)
        return dsa_fail(DSA_NOMEM, "layer %d experts", l);
    for (int64_t e = 0; e < E; e++) {
        char ep[300];
        snprintf(ep, sizeof ep, "%s.mlp.experts.%lld", p, (long long)e);
        if ((err = load_mlp(c, ep, cfg->moe_intermediate_size, &lw->experts[e])))
            return err;
    }
    if (cfg->n_shared_experts > 0) {
        int64_t si = cfg->moe_intermediate_size * cfg->n_shared_experts;
        if ((err = load_mlp(c, NAME("mlp.shared_experts"), si, &lw->shared)))
            return err;
        lw->shared_inter = si / w->shard.tp_size;
    }
#undef NAME
    return DSA_OK;
}

/* The MTP module of a last stage: layer num_hidden_layers (the first of
 * num_nextn_predict_layers; DeepSeek-V3 ships one). */
static dsa_err load_mtp(load_ctx *c)
{
    dsa_weights *w = c->w;
    const dsa_config *cfg = c->cfg;
    int64_t D = cfg->hidden_size, V = cfg->vocab_size;
    if (cfg->n_nextn_predict_layers < 1)
        return dsa_fail(DSA_NOTFOUND, "%s/config.json: num_nextn_predict_layers is %d: the "
                        "checkpoint has no MTP module for deepseek_mtp speculation", w->dir,
                        cfg->n_nextn_predict_layers);
    int l = cfg->n_layers;
    char name[512];
    dsa_mtp_weights *t = &w->mtp;
    dsa_err err;
#define MTP_NAME(suffix) (snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix), name)
    if ((err = load_slice(c, MTP_NAME("embed_tokens.weight"), V, D, w->vocab_begin,
                          w->vocab_rows, 0, D, &t->embed)) ||
        (err = load_vector(c, MTP_NAME("enorm.weight"), D, &t->enorm)) ||
        (err = load_vector(c, MTP_NAME("hnorm.weight"), D, &t->hnorm)) ||
        (err = load_full(c, MTP_NAME("eh_proj.weight"), D, 2 * D, &t->eh_proj)) ||
        (err = load_layer(c, l, &t->layer)) ||
        (err = load_vector(c, MTP_NAME("shared_head.norm.weight"), D, &t->head_norm)) ||
        (err = load_slice(c, MTP_NAME("shared_head.head.weight"), V, D, w->vocab_begin,
                          w->vocab_rows, 0, D, &t->head)))
        return err;
#undef MTP_NAME
    w->has_mtp = 1;
    return DSA_OK;
}

/* Maps the pages of [p, p + span) in one call (MADV_POPULATE_READ: the
 * kernel reads ahead and fills the page tables in large runs instead of
 * one fault per page) when that span is mostly this rank's (used bytes at
 * least half of it: a TP slice of a wider tensor otherwise maps the other
 * ranks' columns too).  Returns 0 when done, -1 when the caller should
 * touch the pages itself (older kernels, sparse slices). */
int dsa_loader_prefault(const void *p, size_t span, size_t used)
{
#ifdef MADV_POPULATE_READ
    if (span == 0 || used * 2 < span)
        return -1;
    uintptr_t page = 4096, a = (uintptr_t)p & ~(page - 1);
    uintptr_t e = ((uintptr_t)p + span + page - 1) & ~(page - 1);
    return madvise((void *)a, e - a, MADV_POPULATE_READ) == 0 ? 0 : -1;
#else
    (void)p, (void)span, (void)used;
    return -1;
#endif
}

/* Brings in the pages a weight slice covers, so the first request does
 * not pay for the checkpoint's page faults: one populate call over the
 * slice's span, else one byte read per page per row run. */
static uint64_t touch_weight(const dsa_weight *w)
{
    if (!w->data)
        return 0;
    if (w->dtype == DSA_DTYPE_I32)
        return dsa_loader_awq_touch(w);
    size_t es = dsa_dtype_size(w->dtype);
    size_t row_bytes = (size_t)w->cols * es;
    size_t span = w->rows > 0 ? ((size_t)(w->rows - 1) * (size_t)w->ld) * es + row_bytes : 0;
    if (dsa_loader_prefault(w->data, span, (size_t)w->rows * row_bytes) == 0)
        return (uint64_t)w->rows * row_bytes;
    volatile unsigned char sink = 0;
    const long page = 4096;
    for (int64_t r = 0; r < w->rows; r++) {
        const unsigned char *row = (const unsigned char *)w->data + (size_t)r * (size_t)w->ld * es;
        for (size_t off = 0; off < row_bytes; off += (size_t)page)
            sink ^= row[off];
        sink ^= row[row_bytes - 1];
    }
    (void)sink;
    return (uint64_t)w->rows * row_bytes;
}

typedef struct progress {
    uint64_t bytes_total, bytes_done;
    int tensors_done;
    double t0, last;
    int tty;
} progress;

static void progress_step(progress *pg, const dsa_weight *w, int final)
{
    if (w) {
        pg->bytes_done += touch_weight(w);
        pg->tensors_done++;
    }
    double now = dsa_time_now();
    if (!final && now - pg->last < (pg->tty ? 0.2 : 5.0))
        return;
    pg->last = now;
    double el = now - pg->t0;
    double rate = el > 0 ? (double)pg->bytes_done / el : 0;
    double left = rate > 0 ? (double)(pg->bytes_total - pg->bytes_done) / rate : 0;
    double pct = pg->bytes_total ? 100.0 * (double)pg->bytes_done / (double)pg->bytes_total : 100;
    if (pg->tty) {
        fprintf(stderr, "\rloading: %d tensors, %.1f/%.1f MB (%.0f%%), %.0f MB/s, %.0fs left   %s",
                pg->tensors_done, pg->bytes_done / 1e6, pg->bytes_total / 1e6, pct, rate / 1e6,
                left, final ? "\n" : "");
    } else {
        DSA_INFO("loading: %d tensors, %.1f/%.1f MB (%.0f%%), %.0f MB/s, %.0fs left",
                 pg->tensors_done, pg->bytes_done / 1e6, pg->bytes_total / 1e6, pct, rate / 1e6,
                 left);
    }
}

/* Calls fn on every weight descriptor of the shard (absent ones included:
 * their data is NULL), in load order; stops at the first non-zero return. */
static int weights_visit(dsa_weights *w, int (*fn)(dsa_weight *wt, void *user), void *user)
{
    int rc = 0;
#define VISIT(x) \
    if ((rc = fn(&(x), user))) \
        return rc
    /* a fused pair stands for its two parts, which the model no longer reads */
#define VISIT_PAIR(p, a, b) \
    if ((p).w.data) { \
        VISIT((p).w); \
    } else { \
        VISIT(a); \
        VISIT(b); \
    }
    if (w->has_embed)
        VISIT(w->embed);
    for (int i = 0; i < w->shard.layer_end - w->shard.layer_begin; i++) {
        dsa_layer_weights *lw = &w->layers[i];
        VISIT(lw->attn_norm);
        VISIT(lw->ffn_norm);
        VISIT(lw->q_proj);
        VISIT_PAIR(lw->qkv_a, lw->q_a, lw->kv_a);
        VISIT(lw->q_a_norm);
        VISIT(lw->q_b);
        VISIT(lw->kv_a_norm);
        VISIT(lw->kv_b);
        VISIT(lw->o);
        VISIT(lw->k_proj);
        VISIT(lw->v_proj);
        VISIT(lw->q_bias);
        VISIT(lw->k_bias);
        VISIT(lw->v_bias);
        VISIT_PAIR(lw->gate_up, lw->gate, lw->up);
        VISIT(lw->down);
        VISIT(lw->router);
        if (lw->is_moe && lw->experts)
            for (int e = 0; e < w->cfg.n_routed_experts; e++) {
                VISIT(lw->experts[e].gate);
                VISIT(lw->experts[e].up);
                VISIT(lw->experts[e].down);
            }
        VISIT_PAIR(lw->shared_gate_up, lw->shared.gate, lw->shared.up);
        VISIT(lw->shared.down);
        if (i == w->shard.layer_end - w->shard.layer_begin - 1 && w->has_mtp) {
            /* the MTP module after the last main layer */
            dsa_mtp_weights *t = &w->mtp;
            dsa_layer_weights *ml = &t->layer;
            VISIT(t->embed);
            VISIT(t->enorm);
            VISIT(t->hnorm);
            VISIT(t->eh_proj);
            VISIT(ml->attn_norm);
            VISIT(ml->ffn_norm);
            VISIT(ml->q_proj);
            VISIT_PAIR(ml->qkv_a, ml->q_a, ml->kv_a);
            VISIT(ml->q_a_norm);
            VISIT(ml->q_b);
            VISIT(ml->kv_a_norm);
            VISIT(ml->kv_b);
            VISIT(ml->o);
            VISIT_PAIR(ml->gate_up, ml->gate, ml->up);
            VISIT(ml->down);
            VISIT(ml->router);
            if (ml->is_moe && ml->experts)
                for (int e = 0; e < w->cfg.n_routed_experts; e++) {
                    VISIT(ml->experts[e].gate);
                    VISIT(ml->experts[e].up);
                    VISIT(ml->experts[e].down);
                }
            VISIT_PAIR(ml->shared_gate_up, ml->shared.gate, ml->shared.up);
            VISIT(ml->shared.down);
            VISIT(t->head_norm);
            VISIT(t->head);
        }
    }
    if (w->has_head) {
        VISIT(w->final_norm);
        VISIT(w->lm_head);
    }
#undef VISIT_PAIR
#undef VISIT
    return 0;
}

/* The padding rows of the fused pairs, which the reading-in touches too. */
static uint64_t pair_extra(const dsa_weights_pair *p, const dsa_weight *a, const dsa_weight *b)
{
    if (!p->w.data)
        return 0;
    return (uint64_t)(p->w.rows - a->rows - b->rows) * (uint64_t)p->w.cols *
           dsa_dtype_size(p->w.dtype);
}

static uint64_t layer_extra(const dsa_layer_weights *lw)
{
    return pair_extra(&lw->qkv_a, &lw->q_a, &lw->kv_a) +
           pair_extra(&lw->gate_up, &lw->gate, &lw->up) +
           pair_extra(&lw->shared_gate_up, &lw->shared.gate, &lw->shared.up);
}

static uint64_t fused_extra_bytes(const dsa_weights *w)
{
    uint64_t n = w->has_mtp ? layer_extra(&w->mtp.layer) : 0;
    for (int i = 0; i < w->shard.layer_end - w->shard.layer_begin; i++)
        n += layer_extra(&w->layers[i]);
    return n;
}

static int touch_one(dsa_weight *wt, void *user)
{
    if (wt->data)
        progress_step(user, wt, 0);
    return 0;
}

static void touch_all(dsa_weights *w)
{
    progress pg = {.bytes_total = w->bytes, .t0 = dsa_time_now(), .tty = isatty(2)};
    pg.last = pg.t0;
    weights_visit(w, touch_one, &pg);
    progress_step(&pg, NULL, 1);
}

typedef struct prepare_ctx {
    dsa_backend *be;
    dsa_err err;
    int64_t n, limit;   /* weights visited; release stops at limit */
} prepare_ctx;

static int prepare_one(dsa_weight *wt, void *user)
{
    prepare_ctx *c = user;
    if (!wt->data)
        return 0;
    c->err = c->be->ops->weight_prepare(c->be, wt);
    if (c->err)
        return 1;
    c->n++;
    return 0;
}

static int release_one(dsa_weight *wt, void *user)
{
    prepare_ctx *c = user;
    if (!wt->data)
        return 0;
    if (c->n++ >= c->limit)
        return 1;
    if (c->be->ops->weight_release)
        c->be->ops->weight_release(c->be, wt);
    return 0;
}

dsa_err dsa_weights_prepare(dsa_weights *w, dsa_backend *be)
{
    prepare_ctx c = {.be = be, .err = DSA_OK};
    if (!weights_visit(w, prepare_one, &c))
        return DSA_OK;
    /* Undo the weights already prepared, so the caller holds none. */
    prepare_ctx r = {.be = be, .limit = c.n};
    weights_visit(w, release_one, &r);
    return c.err;
}

void dsa_weights_release(dsa_weights *w, dsa_backend *be)
{
    prepare_ctx c = {.be = be, .limit = INT64_MAX};
    weights_visit(w, release_one, &c);
}

static dsa_err check_shard(const dsa_config *cfg, const dsa_shard *s, const char *dir)
{
    if (s->tp_size < 1 || s->tp_rank < 0 || s->tp_rank >= s->tp_size)
        return dsa_fail(DSA_INVAL, "tp_rank %d of tp_size %d is invalid", s->tp_rank, s->tp_size);
    if (s->layer_begin < 0 || s->layer_end > cfg->n_layers || s->layer_begin >= s->layer_end)
        return dsa_fail(DSA_INVAL, "layers [%d, %d) not within the model's %d layers",
                        s->layer_begin, s->layer_end, cfg->n_layers);
    if (dsa_config_is_dense(cfg) && cfg->n_kv_heads % s->tp_size && s->tp_size % cfg->n_kv_heads)
        return dsa_fail(DSA_INVAL, "%s/config.json: field 'num_key_value_heads' (%d) and "
                        "tensor-parallel size %d: one must divide the other", dir,
                        cfg->n_kv_heads, s->tp_size);
    struct {
        const char *field;
        int64_t value;
    } split[] = {
        {"num_attention_heads", cfg->n_heads},
        {"intermediate_size", cfg->first_k_dense_replace > 0 || dsa_config_is_dense(cfg)
                                  ? cfg->intermediate_size : 0},
        {"moe_intermediate_size", cfg->n_routed_experts > 0 ? cfg->moe_intermediate_size : 0},
    };
    for (size_t i = 0; i < sizeof split / sizeof split[0]; i++)
        if (split[i].value % s->tp_size != 0)
            return dsa_fail(DSA_INVAL, "%s/config.json: field '%s' (%lld) is not divisible by "
                            "tensor-parallel size %d", dir, split[i].field,
                            (long long)split[i].value, s->tp_size);
    return DSA_OK;
}

dsa_err dsa_weights_load(const char *dir, const dsa_shard *shard, dsa_weights **out)
{
    *out = NULL;
    dsa_weights *w = calloc(1, sizeof *w);
    if (!w)
        return dsa_fail(DSA_NOMEM, "loading %s", dir);
    dsa_err err;
    char path[4096];
    w->dir = strdup(dir);
    if (!w->dir) {
        err = dsa_fail(DSA_NOMEM, "loading %s", dir);
        goto fail;
    }
    snprintf(path, sizeof path, "%s/config.json", dir);
    if ((err = dsa_config_load(path, &w->cfg)))
        goto fail;
    const dsa_config *cfg = &w->cfg;
    w->shard = shard ? *shard
                     : (dsa_shard){.tp_rank = 0, .tp_size = 1, .layer_begin = 0,
                                   .layer_end = cfg->n_layers};
    if ((err = check_shard(cfg, &w->shard, dir)))
        goto fail;
    if ((err = dsa_st_model_open(dir, &w->st)))
        goto fail;

    const dsa_shard *s = &w->shard;
    w->has_embed = s->layer_begin == 0;
    w->has_head = s->layer_end == cfg->n_layers;
    w->n_heads_local = cfg->n_heads / s->tp_size;
    w->head_begin = w->n_heads_local * s->tp_rank;
    if (dsa_config_is_dense(cfg))
        dsa_loader_dense_kv_heads(cfg, s, &w->n_kv_heads_local, &w->kv_head_begin);
    w->inter_local = cfg->intermediate_size / s->tp_size;
    w->moe_inter_local = cfg->moe_intermediate_size / s->tp_size;
    int64_t V = cfg->vocab_size, D = cfg->hidden_size;
    int64_t vper = (V + s->tp_size - 1) / s->tp_size;
    w->vocab_begin = vper * s->tp_rank < V ? vper * s->tp_rank : V;
    w->vocab_rows = w->vocab_begin + vper <= V ? vper : V - w->vocab_begin;

    load_ctx c = {.w = w, .cfg = cfg};
    if (w->has_embed &&
        (err = load_slice(&c, "model.embed_tokens.weight", V, D, w->vocab_begin, w->vocab_rows,
                          0, D, &w->embed)))
        goto fail;
    int n = s->layer_end - s->layer_begin;
    w->layers = calloc((size_t)n, sizeof *w->layers);
    if (!w->layers) {
        err = dsa_fail(DSA_NOMEM, "loading %s", dir);
        goto fail;
    }
    for (int i = 0; i < n; i++)
        if ((err = load_layer(&c, s->layer_begin + i, &w->layers[i])))
            goto fail;
    if (w->has_head) {
        const char *head = cfg->tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight";
        if ((err = load_vector(&c, "model.norm.weight", D, &w->final_norm)) ||
            (err = load_slice(&c, head, V, D, w->vocab_begin, w->vocab_rows, 0, D, &w->lm_head)))
            goto fail;
    }
    if (w->has_head && s->with_mtp && (err = load_mtp(&c)))
        goto fail;
    for (int i = 0; i < n; i++)
        if ((err = dsa_loader_fuse_layer(&w->layers[i])))
            goto fail;
    if (w->has_mtp && (err = dsa_loader_fuse_layer(&w->mtp.layer)))
        goto fail;
    w->bytes += fused_extra_bytes(w);
    touch_all(w);
    DSA_INFO("shard tp %d/%d layers [%d, %d): %.1f MB of weights", s->tp_rank, s->tp_size,
             s->layer_begin, s->layer_end, (double)w->bytes / 1e6);
    *out = w;
    return DSA_OK;
fail:
    dsa_weights_free(w);
    return err;
}

void dsa_weights_free(dsa_weights *w)
{
    if (!w)
        return;
    if (w->layers) {
        for (int i = 0; i < w->shard.layer_end - w->shard.layer_begin; i++)
        {
            free(w->layers[i].experts);
            free(w->layers[i].router_bias_owned);
            dsa_loader_fuse_free(&w->layers[i]);
        }
        free(w->layers);
    }
    free(w->mtp.layer.experts);
    free(w->mtp.layer.router_bias_owned);
    dsa_loader_fuse_free(&w->mtp.layer);
    free(w->lm_head_q);
    free(w->lm_head_scale);
    dsa_st_model_close(w->st);
    free(w->dir);
    free(w);
}
