/* test_model.c - the loader (errors naming file and tensor, TP slices) and
 * the forward pass's batching invariants, on the golden checkpoints. */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support.h"
#include "worker/model.h"

/* A golden checkpoint directory of this dtype (tests/support.h). */
static char *find_golden(const char *dtype)
{
    char *dir = dsa_test_golden_dir(dtype);
    cr_assert_not_null(dir, "no golden config of dtype %s", dtype);
    return dir;
}

/* Copies the checkpoint at src into a fresh directory as one
 * model.safetensors, leaving out tensor `skip` (may be NULL), storing tensor
 * `retype` (may be NULL; F32) as I32 of the same shape, and writing
 * config.json with `from` replaced by `to` (may be NULL). */
static char *copy_checkpoint_retype(const char *src, const char *skip, const char *retype,
                                    const char *from, const char *to)
{
    char *dir = dsa_test_mkdtemp();
    cr_assert_not_null(dir);
    dsa_st_model *m;
    cr_assert_eq(dsa_st_model_open(src, &m), DSA_OK, "%s", dsa_errmsg());
    dsa_st_writer *w;
    cr_assert_eq(dsa_st_writer_create(&w), DSA_OK);
    for (int i = 0; i < dsa_st_model_n_tensors(m); i++) {
        const dsa_st_tensor *t = dsa_st_model_tensor(m, i);
        if (skip && strcmp(t->name, skip) == 0)
            continue;
        dsa_dtype dt = t->dtype;
        if (retype && strcmp(t->name, retype) == 0) {
            cr_assert_eq(dt, DSA_DTYPE_F32, "%s is not F32", retype);
            dt = DSA_DTYPE_I32;
        }
        cr_assert_eq(dsa_st_writer_add(w, t->name, dt, t->ndim, t->shape, t->data), DSA_OK);
    }
    char path[2048];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    cr_assert_eq(dsa_st_writer_write(w, path), DSA_OK, "%s", dsa_errmsg());
    dsa_st_writer_destroy(w);
    dsa_st_model_close(m);

    snprintf(path, sizeof path, "%s/config.json", src);
    char *cfg = dsa_test_read_file(path, NULL);
    cr_assert_not_null(cfg);
    if (from) {
        char *at = strstr(cfg, from);
        cr_assert_not_null(at, "config.json has no '%s'", from);
        size_t n = strlen(cfg) - strlen(from) + strlen(to) + 1;
        char *out = malloc(n);
        snprintf(out, n, "%.*s%s%s", (int)(at - cfg), cfg, to, at + strlen(from));
        free(cfg);
        cfg = out;
    }
    snprintf(path, sizeof path, "%s/config.json", dir);
    cr_assert_eq(dsa_test_write_file(path, cfg, strlen(cfg)), 0);
    free(cfg);
    return dir;
}

static char *copy_checkpoint(const char *src, const char *skip, const char *from, const char *to)
{
    return copy_checkpoint_retype(src, skip, NULL, from, to);
}

static void expect_load_error(const char *dir, dsa_err want, const char *needle1,
                              const char *needle2)
{
    dsa_weights *w = NULL;
    dsa_err err = dsa_weights_load(dir, NULL, &w);
    cr_expect_eq(err, want, "got %s: %s", dsa_strerror(err), dsa_errmsg());
    cr_expect_null(w);
    cr_expect_not_null(strstr(dsa_errmsg(), needle1), "message '%s' lacks '%s'", dsa_errmsg(),
                       needle1);
    if (needle2)
        cr_expect_not_null(strstr(dsa_errmsg(), needle2), "message '%s' lacks '%s'",
                           dsa_errmsg(), needle2);
}

Test(loader, missing_tensor_is_named)
{
    char *src = find_golden("f32");
    char *dir = copy_checkpoint(src, "model.layers.0.self_attn.kv_a_layernorm.weight", NULL, NULL);
    expect_load_error(dir, DSA_NOTFOUND, "model.layers.0.self_attn.kv_a_layernorm.weight", NULL);
    dsa_test_rmtree(dir);
    free(dir);
    free(src);
}

Test(loader, shape_not_matching_config_names_file_and_tensor)
{
    char *src = find_golden("f32");
    char path[2048];
    snprintf(path, sizeof path, "%s/config.json", src);
    dsa_config cfg;
    cr_assert_eq(dsa_config_load(path, &cfg), DSA_OK, "%s", dsa_errmsg());
    /* A kv_lora_rank one larger than the tensors were made with. */
    char from[64], to[64];
    snprintf(from, sizeof from, "\"kv_lora_rank\": %lld", (long long)cfg.kv_lora_rank);
    snprintf(to, sizeof to, "\"kv_lora_rank\": %lld", (long long)cfg.kv_lora_rank + 2);
    char *dir = copy_checkpoint(src, NULL, from, to);
    expect_load_error(dir, DSA_SHAPE, "model.safetensors", "kv_a_proj_with_mqa");
    dsa_test_rmtree(dir);
    free(dir);
    free(src);
}

Test(loader, dtype_not_a_weight_dtype)
{
    char *src = find_golden("f32");
    char *dir = copy_checkpoint_retype(src, NULL, "model.layers.1.self_attn.o_proj.weight", NULL,
                                       NULL);
    expect_load_error(dir, DSA_DTYPE, "model.layers.1.self_attn.o_proj.weight", "I32");
    dsa_test_rmtree(dir);
    free(dir);
    free(src);
}

Test(loader, fp8_weight_without_scale)
{
    char *src = find_golden("fp8");
    char *dir = copy_checkpoint(src, "model.layers.0.self_attn.kv_b_proj.weight_scale_inv", NULL,
                                NULL);
    expect_load_error(dir, DSA_NOTFOUND, "kv_b_proj.weight_scale_inv", "model.safetensors");
    dsa_test_rmtree(dir);
    free(dir);
    free(src);
}

Test(loader, missing_directory)
{
    expect_load_error("/nonexistent/dsa-model", DSA_NOTFOUND, "/nonexistent/dsa-model/config.json", NULL);
}

Test(loader, bad_shard_is_refused)
{
    char *src = find_golden("f32");
    dsa_weights *w = NULL;
    dsa_shard bad = {.tp_rank = 2, .tp_size = 2, .layer_begin = 0, .layer_end = 1};
    cr_expect_eq(dsa_weights_load(src, &bad, &w), DSA_INVAL);
    dsa_shard odd = {.tp_rank = 0, .tp_size = 3, .layer_begin = 0, .layer_end = 1};
    cr_expect_eq(dsa_weights_load(src, &odd, &w), DSA_INVAL, "%s", dsa_errmsg());
    cr_expect_not_null(strstr(dsa_errmsg(), "divisible"), "%s", dsa_errmsg());
    cr_expect_null(w);
    free(src);
}

static void expect_same_weight(const dsa_weight *part, const dsa_weight *full, int64_t r0,
                               int64_t c0, const char *what)
{
    cr_assert_eq(part->dtype, full->dtype, "%s", what);
    for (int64_t i = 0; i < part->rows; i += (part->rows > 7 ? 7 : 1))
        for (int64_t j = 0; j < part->cols; j += (part->cols > 5 ? 5 : 1))
            cr_assert_eq(dsa_weight_get(part, i, j), dsa_weight_get(full, r0 + i, c0 + j),
                         "%s (%lld, %lld)", what, (long long)i, (long long)j);
}

/* Rank 1 of TP=2 sees exactly the rows/columns DESIGN.md assigns it. */
static void check_tp_slices(const char *dtype)
{
    char *src = find_golden(dtype);
    dsa_weights *full = NULL, *part = NULL;
    cr_assert_eq(dsa_weights_load(src, NULL, &full), DSA_OK, "%s", dsa_errmsg());
    const dsa_config *c = &full->cfg;
    dsa_shard s = {.tp_rank = 1, .tp_size = 2, .layer_begin = 0, .layer_end = c->n_layers};
    cr_assert_eq(dsa_weights_load(src, &s, &part), DSA_OK, "%s", dsa_errmsg());
    int64_t Hl = c->n_heads / 2, qk = c->qk_nope_head_dim + c->qk_rope_head_dim;
    int64_t nv = c->qk_nope_head_dim + c->v_head_dim;
    cr_expect_eq(part->n_heads_local, Hl);
    for (int l = 0; l < c->n_layers; l++) {
        const dsa_layer_weights *p = &part->layers[l], *f = &full->layers[l];
        if (c->q_lora_rank > 0)
            expect_same_weight(&p->q_b, &f->q_b, Hl * qk, 0, "q_b_proj");
        else
            expect_same_weight(&p->q_proj, &f->q_proj, Hl * qk, 0, "q_proj");
        expect_same_weight(&p->kv_b, &f->kv_b, Hl * nv, 0, "kv_b_proj");
        expect_same_weight(&p->o, &f->o, 0, Hl * c->v_head_dim, "o_proj");
        expect_same_weight(&p->kv_a, &f->kv_a, 0, 0, "kv_a_proj (replicated)");
        if (p->is_moe) {
            int64_t il = c->moe_intermediate_size / 2;
            expect_same_weight(&p->experts[1].gate, &f->experts[1].gate, il, 0, "expert gate");
            expect_same_weight(&p->experts[1].down, &f->experts[1].down, 0, il, "expert down");
        } else {
            int64_t il = c->intermediate_size / 2;
            expect_same_weight(&p->up, &f->up, il, 0, "dense up");
            expect_same_weight(&p->down, &f->down, 0, il, "dense down");
        }
    }
    int64_t vper = (c->vocab_size + 1) / 2;
    cr_expect_eq(part->vocab_begin, vper);
    cr_expect_eq(part->vocab_rows, c->vocab_size - vper);
    expect_same_weight(&part->lm_head, &full->lm_head, vper, 0, "lm_head");
    expect_same_weight(&part->embed, &full->embed, vper, 0, "embed_tokens");
    cr_expect_lt(part->bytes, full->bytes);
    dsa_weights_free(part);
    dsa_weights_free(full);
    free(src);
}

Test(loader, tp_slices_f32) { check_tp_slices("f32"); }
Test(loader, tp_slices_fp8_ragged_blocks) { check_tp_slices("fp8"); }

Test(loader, pipeline_stage_holds_its_layers)
{
    char *src = find_golden("f32");
    dsa_weights *w = NULL;
    dsa_config cfg;
    char path[2048];
    snprintf(path, sizeof path, "%s/config.json", src);
    cr_assert_eq(dsa_config_load(path, &cfg), DSA_OK);
    cr_assert_geq(cfg.n_layers, 2);
    dsa_shard s = {.tp_rank = 0, .tp_size = 1, .layer_begin = 1, .layer_end = cfg.n_layers};
    cr_assert_eq(dsa_weights_load(src, &s, &w), DSA_OK, "%s", dsa_errmsg());
    cr_expect_eq(w->has_embed, 0);
    cr_expect_eq(w->has_head, 1);
    cr_expect_null(w->embed.data);
    dsa_weights_free(w);
    free(src);
}

/* ---- forward pass invariants ---- */

typedef struct fixture {
    dsa_backend *be;
    dsa_weights *w;
    dsa_model *m;
    int64_t V;
} fixture;

static void fixture_open(fixture *f, const char *dtype, int64_t block_size)
{
    char *src = find_golden(dtype);
    cr_assert_eq(dsa_backend_cpu_create(2, &f->be), DSA_OK);
    cr_assert_eq(dsa_weights_load(src, NULL, &f->w), DSA_OK, "%s", dsa_errmsg());
    free(src);
    dsa_model_params mp = {.n_blocks = 64, .block_size = block_size, .max_blocks_per_seq = 16};
    cr_assert_eq(dsa_model_create(f->be, f->w, &mp, &f->m), DSA_OK, "%s", dsa_errmsg());
    f->V = f->w->cfg.vocab_size;
}

static void fixture_close(fixture *f)
{
    dsa_model_destroy(f->m);
    dsa_weights_free(f->w);
    dsa_backend_destroy(f->be);
}

/* Logits of the last token of a 13-token prompt, prefilled in chunks of
 * `chunk` tokens, in blocks starting at `block0`. */
static void prefill_chunked(fixture *f, int chunk, int32_t block0, float *logits)
{
    enum { P = 13 };
    int32_t tok[P], pos[P], seq[P] = {0}, bt[16];
    for (int i = 0; i < 16; i++)
        bt[i] = block0 + i;
    for (int i = 0; i < P; i++) {
        tok[i] = (int32_t)((i * 37 + 5) % f->V);
        pos[i] = i;
    }
    for (int s = 0; s < P; s += chunk) {
        int n = P - s < chunk ? P - s : chunk;
        int32_t last = n - 1;
        dsa_batch b = {.n_tokens = n, .tokens = tok + s, .pos = pos + s, .seq = seq,
                       .n_seqs = 1, .block_tables = bt, .n_logits = 1, .logit_rows = &last};
        cr_assert_eq(dsa_model_forward(f->m, &b, logits), DSA_OK, "%s", dsa_errmsg());
    }
}

Test(model, chunked_prefill_equals_one_shot)
{
    fixture f;
    fixture_open(&f, "f32", 4);
    float *a = malloc((size_t)f.V * sizeof *a), *b = malloc((size_t)f.V * sizeof *b);
    prefill_chunked(&f, 13, 0, a);
    prefill_chunked(&f, 5, 20, b);
    cr_expect_lt(dsa_test_max_rel(b, a, f.V), 1e-5);
    prefill_chunked(&f, 1, 40, b);
    cr_expect_lt(dsa_test_max_rel(b, a, f.V), 1e-5);
    free(a);
    free(b);
    fixture_close(&f);
}

Test(model, batching_does_not_change_a_sequence)
{
    fixture f;
    fixture_open(&f, "fp8", 8);
    float *alone = malloc((size_t)f.V * sizeof *alone);
    prefill_chunked(&f, 13, 0, alone);

    /* The same prompt as sequence 1 of a batch, next to a decode token of
     * sequence 0 (whose earlier cache is in blocks 30..) and a 3-token
     * prompt of sequence 2. */
    enum { P = 13 };
    int32_t tok[32], pos[32], seq[32], bt[3 * 16];
    for (int i = 0; i < 48; i++)
        bt[i] = 30 + i % 34;
    for (int i = 0; i < 16; i++)
        bt[16 + i] = 10 + i;
    int n = 0;
    int32_t warm_tok[6] = {3, 1, 4, 1, 5, 9}, warm_pos[6] = {0, 1, 2, 3, 4, 5}, zero[6] = {0};
    int32_t last = 5;
    dsa_batch w = {.n_tokens = 6, .tokens = warm_tok, .pos = warm_pos, .seq = zero, .n_seqs = 1,
                   .block_tables = bt, .n_logits = 1, .logit_rows = &last};
    float *tmp = malloc((size_t)(3 * f.V) * sizeof *tmp);
    cr_assert_eq(dsa_model_forward(f.m, &w, tmp), DSA_OK, "%s", dsa_errmsg());
    tok[n] = 2, pos[n] = 6, seq[n] = 0, n++;
    for (int i = 0; i < P; i++, n++)
        tok[n] = (int32_t)((i * 37 + 5) % f.V), pos[n] = i, seq[n] = 1;
    for (int i = 0; i < 3; i++, n++)
        tok[n] = (int32_t)(i + 7), pos[n] = i, seq[n] = 2;
    for (int i = 0; i < 16; i++)
        bt[32 + i] = 50 + i % 14;
    int32_t rows[3] = {0, P, n - 1};
    dsa_batch b = {.n_tokens = n, .tokens = tok, .pos = pos, .seq = seq, .n_seqs = 3,
                   .block_tables = bt, .n_logits = 3, .logit_rows = rows};
    cr_assert_eq(dsa_model_forward(f.m, &b, tmp), DSA_OK, "%s", dsa_errmsg());
    cr_expect_lt(dsa_test_max_rel(tmp + f.V, alone, f.V), 1e-5);
    free(tmp);
    free(alone);
    fixture_close(&f);
}

Test(model, bad_batch_is_refused)
{
    fixture f;
    fixture_open(&f, "f32", 4);
    float *logits = malloc((size_t)f.V * sizeof *logits);
    int32_t bt[16] = {0};
    int32_t tok = (int32_t)f.V, pos = 0, seq = 0, row = 0;
    dsa_batch b = {.n_tokens = 1, .tokens = &tok, .pos = &pos, .seq = &seq, .n_seqs = 1,
                   .block_tables = bt, .n_logits = 1, .logit_rows = &row};
    cr_expect_eq(dsa_model_forward(f.m, &b, logits), DSA_RANGE);
    cr_expect_not_null(strstr(dsa_errmsg(), "vocabulary"), "%s", dsa_errmsg());
    tok = 1;
    pos = 16 * 4; /* past max_blocks_per_seq * block_size */
    cr_expect_eq(dsa_model_forward(f.m, &b, logits), DSA_RANGE);
    pos = 0;
    bt[0] = 64; /* past n_blocks */
    cr_expect_eq(dsa_model_forward(f.m, &b, logits), DSA_RANGE);
    bt[0] = 0;
    row = 3;
    cr_expect_eq(dsa_model_forward(f.m, &b, logits), DSA_RANGE);
    row = 0;
    cr_expect_eq(dsa_model_forward(f.m, &b, logits), DSA_OK, "%s", dsa_errmsg());
    free(logits);
    fixture_close(&f);
}

/* A backend that counts weight_prepare/weight_release calls and fails the
 * prepare with index fail_at. */
typedef struct counting_backend {
    dsa_backend base;
    dsa_backend_ops ops;
    int n_prepared, n_released, fail_at;
} counting_backend;

static dsa_err counting_prepare(dsa_backend *be, dsa_weight *w)
{
    counting_backend *c = (counting_backend *)be;
    cr_assert_not_null(w->data);
    if (c->n_prepared == c->fail_at)
        return dsa_fail(DSA_DEVICE, "prepare %d refused", c->fail_at);
    c->n_prepared++;
    return DSA_OK;
}

static void counting_release(dsa_backend *be, dsa_weight *w)
{
    ((counting_backend *)be)->n_released++;
}

Test(loader, prepare_undoes_a_partial_failure)
{
    char *src = find_golden("fp8");
    dsa_weights *w = NULL;
    cr_assert_eq(dsa_weights_load(src, NULL, &w), DSA_OK, "%s", dsa_errmsg());
    counting_backend c = {.fail_at = -1};
    c.ops.weight_prepare = counting_prepare;
    c.ops.weight_release = counting_release;
    c.base.ops = &c.ops;
    cr_assert_eq(dsa_weights_prepare(w, &c.base), DSA_OK);
    int all = c.n_prepared;
    cr_expect_gt(all, 20);
    dsa_weights_release(w, &c.base);
    cr_expect_eq(c.n_released, all);

    c = (counting_backend){.fail_at = 9};
    c.ops.weight_prepare = counting_prepare;
    c.ops.weight_release = counting_release;
    c.base.ops = &c.ops;
    cr_expect_eq(dsa_weights_prepare(w, &c.base), DSA_DEVICE);
    cr_expect_eq(c.n_prepared, 9);
    cr_expect_eq(c.n_released, 9, "released %d of the 9 prepared", c.n_released);
    dsa_weights_free(w);
    free(src);
}
