/* mkmodel.c - dsa-mkmodel: writes a tiny random DeepSeek-V3 checkpoint in the
 * layout Hugging Face publishes (MODEL_SPEC.md sections 1-2), for tests.
 *
 * Output directory:
 *   config.json, generation_config.json
 *   model.safetensors.index.json, model-0000K-of-0000N.safetensors
 *   tokenizer.json        byte-level BPE (DeepSeek's pre-tokenizer and
 *                         ByteLevel decoder), 256 byte tokens, generated
 *                         merges, DeepSeek's special tokens
 *   tokenizer_config.json DeepSeek-V3's chat template, bos/eos, add_bos
 *
 * Weights: linears N(0, 1/fan_in), norms 1 + N(0, 0.1^2), embedding N(0, 1),
 * lm_head N(0, 9/hidden), e_score_correction_bias N(0, 0.005^2), drawn in
 * tensor order from one splitmix64 stream, so a seed gives byte-identical
 * files.  --dtype fp8 stores every linear as F8_E4M3 with an F32
 * weight_scale_inv per 128x128 block (scale = amax/448, ragged tail blocks
 * share one scale); norms, router gate, embedding and lm_head BF16, the
 * correction bias F32, as DeepSeek-V3 does.  --dtype bf16 stores all BF16
 * but the bias; --dtype f32 all F32.
 *
 * Exit status: 0 on success, 2 for a bad command line, 1 when writing
 * fails. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "common/dtype.h"
#include "common/error.h"
#include "common/options.h"
#include "common/safetensors.h"
#include "tools/mkmodel/mk_tokenizer.h"

#define MK_BLOCK 128
#define MK_E4M3_MAX 448.0f

/* ------------------------------------------------------------------ */
/* Options: one table drives parsing, bounds and --help (STYLE rule 18). */

typedef struct mk_opts {
    const char *out;
    long long hidden, layers, heads, vocab, inter, moe_inter;
    long long experts, experts_per_tok, shared_experts, n_group, topk_group;
    long long dense_layers, q_lora_rank, kv_lora_rank, nope, rope, v;
    const char *dtype;
    long long seed, shards;
    double yarn_factor;
    long long yarn_original, max_pos;
    double rope_theta, routed_scale;
    long long mtp;
} mk_opts;

#define MK_OPT(name, type, field, lo, hi, def, meta, help) \
    {name, type, offsetof(mk_opts, field), lo, hi, def, meta, help, 0}

static const dsa_option mk_options[] = {
    {"out", DSA_OPT_STRING, offsetof(mk_opts, out), 0, 0, NULL, "DIR",
     "output directory (created if missing; files in it are replaced)", 1},
    MK_OPT("hidden", DSA_OPT_INT, hidden, 1, 65536, "64", "N", "hidden_size"),
    MK_OPT("layers", DSA_OPT_INT, layers, 1, 512, "2", "N", "num_hidden_layers"),
    MK_OPT("heads", DSA_OPT_INT, heads, 1, 1024, "4", "N", "num_attention_heads"),
    MK_OPT("vocab", DSA_OPT_INT, vocab, 276, 1000000, "512", "N",
           "vocab_size (>= 3 + 256 bytes + 17 specials)"),
    MK_OPT("inter", DSA_OPT_INT, inter, 1, 1000000, "128", "N", "intermediate_size (dense MLP)"),
    MK_OPT("moe-inter", DSA_OPT_INT, moe_inter, 1, 1000000, "32", "N", "moe_intermediate_size"),
    MK_OPT("experts", DSA_OPT_INT, experts, 2, 4096, "8", "N", "n_routed_experts"),
    MK_OPT("experts-per-tok", DSA_OPT_INT, experts_per_tok, 1, 4096, "2", "N",
           "num_experts_per_tok"),
    MK_OPT("shared-experts", DSA_OPT_INT, shared_experts, 0, 64, "1", "N", "n_shared_experts"),
    MK_OPT("n-group", DSA_OPT_INT, n_group, 1, 4096, "2", "N", "n_group (router groups)"),
    MK_OPT("topk-group", DSA_OPT_INT, topk_group, 1, 4096, "1", "N", "topk_group"),
    MK_OPT("dense-layers", DSA_OPT_INT, dense_layers, 0, 512, "1", "N",
           "first_k_dense_replace"),
    MK_OPT("q-lora-rank", DSA_OPT_INT, q_lora_rank, 0, 1000000, "48", "N",
           "q_lora_rank; 0 writes null (one q_proj)"),
    MK_OPT("kv-lora-rank", DSA_OPT_INT, kv_lora_rank, 1, 1000000, "32", "N", "kv_lora_rank"),
    MK_OPT("nope", DSA_OPT_INT, nope, 1, 4096, "16", "N", "qk_nope_head_dim"),
    MK_OPT("rope", DSA_OPT_INT, rope, 2, 4096, "8", "N", "qk_rope_head_dim (even)"),
    MK_OPT("v", DSA_OPT_INT, v, 1, 4096, "16", "N", "v_head_dim"),
    MK_OPT("dtype", DSA_OPT_STRING, dtype, 0, 0, "f32", "f32|bf16|fp8", "weight storage"),
    MK_OPT("seed", DSA_OPT_INT, seed, 0, 1e15, "1", "N", "random seed"),
    MK_OPT("shards", DSA_OPT_INT, shards, 1, 99999, "1", "N", "number of safetensors files"),
    MK_OPT("yarn-factor", DSA_OPT_DOUBLE, yarn_factor, 1, 1e6, "1", "F",
           "YaRN rope_scaling factor; 1 writes no rope_scaling"),
    MK_OPT("yarn-original", DSA_OPT_INT, yarn_original, 0, 1000000000, "0", "N",
           "original_max_position_embeddings; 0: max-pos / yarn-factor"),
    MK_OPT("max-pos", DSA_OPT_INT, max_pos, 1, 1000000000, "4096", "N", "max_position_embeddings"),
    MK_OPT("rope-theta", DSA_OPT_DOUBLE, rope_theta, 1, 1e12, "10000", "F", "rope_theta"),
    MK_OPT("routed-scale", DSA_OPT_DOUBLE, routed_scale, 1e-6, 1e6, "2.5", "F",
           "routed_scaling_factor"),
    MK_OPT("mtp", DSA_OPT_INT, mtp, 0, 1, "0", "N",
           "num_nextn_predict_layers: 1 adds DeepSeek's MTP module as layer --layers"),
};
#define MK_N_OPTIONS ((int)(sizeof mk_options / sizeof mk_options[0]))

typedef enum mk_wtype { MK_F32, MK_BF16, MK_FP8 } mk_wtype;

/* Cross-field rules the table cannot express; the message names the flags. */
static dsa_err mk_opts_check(mk_opts *o, mk_wtype *wt)
{
    if (strcmp(o->dtype, "f32") == 0)
        *wt = MK_F32;
    else if (strcmp(o->dtype, "bf16") == 0)
        *wt = MK_BF16;
    else if (strcmp(o->dtype, "fp8") == 0)
        *wt = MK_FP8;
    else
        return dsa_fail(DSA_INVAL, "option --dtype: '%s' is not one of f32, bf16, fp8", o->dtype);
    if (o->rope % 2)
        return dsa_fail(DSA_INVAL, "option --rope: %lld is odd (RoPE rotates pairs)", o->rope);
    if (o->experts % o->n_group)
        return dsa_fail(DSA_INVAL, "option --n-group: %lld does not divide --experts %lld",
                        o->n_group, o->experts);
    if (o->experts / o->n_group < 2)
        return dsa_fail(DSA_INVAL,
                        "option --n-group: %lld groups of --experts %lld leave fewer than 2 "
                        "experts per group (group score is a top-2 sum)",
                        o->n_group, o->experts);
    if (o->topk_group > o->n_group)
        return dsa_fail(DSA_INVAL, "option --topk-group: %lld exceeds --n-group %lld",
                        o->topk_group, o->n_group);
    if (o->experts_per_tok > o->topk_group * (o->experts / o->n_group))
        return dsa_fail(DSA_INVAL,
                        "option --experts-per-tok: %lld exceeds the %lld experts in "
                        "--topk-group %lld groups",
                        o->experts_per_tok, o->topk_group * (o->experts / o->n_group),
                        o->topk_group);
    if (o->dense_layers > o->layers)
        return dsa_fail(DSA_INVAL, "option --dense-layers: %lld exceeds --layers %lld",
                        o->dense_layers, o->layers);
    if (o->yarn_factor > 1.0 && o->yarn_original == 0) {
        o->yarn_original = (long long)llround((double)o->max_pos / o->yarn_factor);
        if (o->yarn_original < 1)
            return dsa_fail(DSA_INVAL,
                            "option --yarn-factor: --max-pos %lld / %g leaves no original "
                            "context; pass --yarn-original",
                            o->max_pos, o->yarn_factor);
    }
    return DSA_OK;
}

/* ------------------------------------------------------------------ */
/* Random numbers: splitmix64 and Box-Muller, identical on every host with
 * IEEE doubles and a correctly rounded libm for log/sqrt/cos. */

typedef struct mk_rng {
    uint64_t s;
} mk_rng;

static uint64_t mk_rng_next(mk_rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in (0, 1). */
static double mk_rng_uniform(mk_rng *r)
{
    return ((double)(mk_rng_next(r) >> 11) + 0.5) * 0x1p-53;
}

static float mk_rng_normal(mk_rng *r)
{
    double u1 = mk_rng_uniform(r), u2 = mk_rng_uniform(r);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* ------------------------------------------------------------------ */
/* The tensor plan: every tensor of the checkpoint with its shape, in
 * DeepSeek's names and order. */

typedef enum mk_kind { MK_EMBED, MK_NORM, MK_LINEAR, MK_GATE, MK_BIAS, MK_HEAD } mk_kind;

typedef struct mk_tensor {
    char name[128];
    mk_kind kind;
    int64_t rows, cols;  /* cols 0: a vector of rows elements */
    dsa_dtype dtype;     /* storage of the tensor itself */
    uint64_t nbytes;     /* incl. the weight_scale_inv of an FP8 linear */
    int shard;
} mk_tensor;

typedef struct mk_plan {
    mk_tensor *t;
    int n, cap;
    uint64_t total;      /* bytes of all tensors */
} mk_plan;

static dsa_err mk_plan_add(mk_plan *p, mk_wtype wt, mk_kind kind, int64_t rows, int64_t cols,
                           const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static dsa_err mk_plan_add(mk_plan *p, mk_wtype wt, mk_kind kind, int64_t rows, int64_t cols,
                           const char *fmt, ...)
{
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 64;
        mk_tensor *t = realloc(p->t, (size_t)cap * sizeof *t);
        if (!t)
            return dsa_fail(DSA_NOMEM, "out of memory for the tensor list");
        p->t = t;
        p->cap = cap;
    }
    mk_tensor *t = &p->t[p->n];
    memset(t, 0, sizeof *t);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    t->kind = kind;
    t->rows = rows;
    t->cols = cols;
    if (wt == MK_F32 || kind == MK_BIAS)
        t->dtype = DSA_DTYPE_F32;
    else if (wt == MK_BF16 || kind != MK_LINEAR)
        t->dtype = DSA_DTYPE_BF16;
    else
        t->dtype = DSA_DTYPE_F8_E4M3;
    int64_t n = rows * (cols ? cols : 1);
    t->nbytes = (uint64_t)n * dsa_dtype_size(t->dtype);
    if (t->dtype == DSA_DTYPE_F8_E4M3)
        t->nbytes += (uint64_t)((rows + MK_BLOCK - 1) / MK_BLOCK) *
                     (uint64_t)((cols + MK_BLOCK - 1) / MK_BLOCK) * 4u;
    p->total += t->nbytes;
    p->n++;
    return DSA_OK;
}

static dsa_err mk_plan_mlp(mk_plan *p, mk_wtype wt, const char *prefix, int64_t inter,
                           int64_t d)
{
    dsa_err err;
    if ((err = mk_plan_add(p, wt, MK_LINEAR, inter, d, "%sgate_proj.weight", prefix)) ||
        (err = mk_plan_add(p, wt, MK_LINEAR, inter, d, "%sup_proj.weight", prefix)) ||
        (err = mk_plan_add(p, wt, MK_LINEAR, d, inter, "%sdown_proj.weight", prefix)))
        return err;
    return DSA_OK;
}

/* The tensors of decoder layer l (dense below --dense-layers, else MoE). */
static dsa_err mk_plan_layer(mk_plan *p, const mk_opts *o, mk_wtype wt, int l)
{
    const int64_t d = o->hidden, h = o->heads, qk = o->nope + o->rope;
    dsa_err err;
    char pre[96];
    const char *a = "self_attn.";
    snprintf(pre, sizeof pre, "model.layers.%d.", l);
    if ((err = mk_plan_add(p, wt, MK_NORM, d, 0, "%sinput_layernorm.weight", pre)))
        return err;
    if (o->q_lora_rank == 0) {
        if ((err = mk_plan_add(p, wt, MK_LINEAR, h * qk, d, "%s%sq_proj.weight", pre, a)))
            return err;
    } else if ((err = mk_plan_add(p, wt, MK_LINEAR, o->q_lora_rank, d,
                                  "%s%sq_a_proj.weight", pre, a)) ||
               (err = mk_plan_add(p, wt, MK_NORM, o->q_lora_rank, 0,
                                  "%s%sq_a_layernorm.weight", pre, a)) ||
               (err = mk_plan_add(p, wt, MK_LINEAR, h * qk, o->q_lora_rank,
                                  "%s%sq_b_proj.weight", pre, a))) {
        return err;
    }
    if ((err = mk_plan_add(p, wt, MK_LINEAR, o->kv_lora_rank + o->rope, d,
                           "%s%skv_a_proj_with_mqa.weight", pre, a)) ||
        (err = mk_plan_add(p, wt, MK_NORM, o->kv_lora_rank, 0,
                           "%s%skv_a_layernorm.weight", pre, a)) ||
        (err = mk_plan_add(p, wt, MK_LINEAR, h * (o->nope + o->v), o->kv_lora_rank,
                           "%s%skv_b_proj.weight", pre, a)) ||
        (err = mk_plan_add(p, wt, MK_LINEAR, d, h * o->v, "%s%so_proj.weight", pre, a)) ||
        (err = mk_plan_add(p, wt, MK_NORM, d, 0, "%spost_attention_layernorm.weight", pre)))
        return err;
    char mp[128];
    if (l < o->dense_layers) {
        snprintf(mp, sizeof mp, "%smlp.", pre);
        if ((err = mk_plan_mlp(p, wt, mp, o->inter, d)))
            return err;
        return DSA_OK;
    }
    if ((err = mk_plan_add(p, wt, MK_GATE, o->experts, d, "%smlp.gate.weight", pre)) ||
        (err = mk_plan_add(p, wt, MK_BIAS, o->experts, 0,
                           "%smlp.gate.e_score_correction_bias", pre)))
        return err;
    for (int e = 0; e < o->experts; e++) {
        snprintf(mp, sizeof mp, "%smlp.experts.%d.", pre, e);
        if ((err = mk_plan_mlp(p, wt, mp, o->moe_inter, d)))
            return err;
    }
    if (o->shared_experts > 0) {
        snprintf(mp, sizeof mp, "%smlp.shared_experts.", pre);
        if ((err = mk_plan_mlp(p, wt, mp, o->moe_inter * o->shared_experts, d)))
            return err;
    }
    return DSA_OK;
}

static dsa_err mk_plan_build(mk_plan *p, const mk_opts *o, mk_wtype wt)
{
    const int64_t d = o->hidden;
    dsa_err err;
    char pre[96];
    if ((err = mk_plan_add(p, wt, MK_EMBED, o->vocab, d, "model.embed_tokens.weight")))
        return err;
    for (int l = 0; l < o->layers; l++)
        if ((err = mk_plan_layer(p, o, wt, l)))
            return err;
    if (o->mtp) {
        /* DeepSeek-V3's MTP module, stored as layer num_hidden_layers */
        int l = (int)o->layers;
        snprintf(pre, sizeof pre, "model.layers.%d.", l);
        if ((err = mk_plan_add(p, wt, MK_EMBED, o->vocab, d, "%sembed_tokens.weight", pre)) ||
            (err = mk_plan_add(p, wt, MK_NORM, d, 0, "%senorm.weight", pre)) ||
            (err = mk_plan_add(p, wt, MK_NORM, d, 0, "%shnorm.weight", pre)) ||
            (err = mk_plan_add(p, wt, MK_LINEAR, d, 2 * d, "%seh_proj.weight", pre)) ||
            (err = mk_plan_layer(p, o, wt, l)) ||
            (err = mk_plan_add(p, wt, MK_NORM, d, 0, "%sshared_head.norm.weight", pre)) ||
            (err = mk_plan_add(p, wt, MK_HEAD, o->vocab, d, "%sshared_head.head.weight", pre)))
            return err;
    }
    if ((err = mk_plan_add(p, wt, MK_NORM, d, 0, "model.norm.weight")) ||
        (err = mk_plan_add(p, wt, MK_HEAD, o->vocab, d, "lm_head.weight")))
        return err;
    return DSA_OK;
}

/* Contiguous shards balanced by bytes; none empty.  A tensor and its
 * weight_scale_inv always share a shard (nbytes counts both). */
static dsa_err mk_plan_shard(mk_plan *p, int n_shards)
{
    if (n_shards > p->n)
        return dsa_fail(DSA_INVAL, "option --shards: %d shards for %d tensors", n_shards, p->n);
    uint64_t acc = 0;
    int prev = 0;
    for (int i = 0; i < p->n; i++) {
        int k = (int)((double)acc * n_shards / (double)p->total);
        if (k > n_shards - 1)
            k = n_shards - 1;
        if (k < prev)
            k = prev;
        if (k > prev + 1)
            k = prev + 1;
        if (k < n_shards - (p->n - i))  /* leave one tensor per remaining shard */
            k = n_shards - (p->n - i);
        if (i == 0)
            k = 0;
        p->t[i].shard = prev = k;
        acc += p->t[i].nbytes;
    }
    return DSA_OK;
}

/* ------------------------------------------------------------------ */
/* Weights */

static float mk_std(const mk_tensor *t)
{
    switch (t->kind) {
    case MK_EMBED:
        return 1.0f;
    case MK_HEAD:
        return 3.0f / sqrtf((float)t->cols);
    case MK_BIAS:
        return 0.005f;
    case MK_NORM:
        return 0.1f;
    default:
        return 1.0f / sqrtf((float)t->cols);
    }
}

/* Buffers of one tensor as stored; data[1] is the FP8 scale grid. */
typedef struct mk_data {
    void *data[2];
} mk_data;

/* Quantises w[rows][cols] per 128x128 block into q and scale_inv
 * [ceil(rows/128)][ceil(cols/128)]: W ~= e4m3(q) * scale_inv. */
static void mk_quantise_fp8(const float *w, int64_t rows, int64_t cols, uint8_t *q,
                            float *scale_inv)
{
    const int64_t nbc = (cols + MK_BLOCK - 1) / MK_BLOCK;
    for (int64_t br = 0; br * MK_BLOCK < rows; br++) {
        for (int64_t bc = 0; bc < nbc; bc++) {
            int64_t r1 = br * MK_BLOCK + MK_BLOCK < rows ? br * MK_BLOCK + MK_BLOCK : rows;
            int64_t c1 = bc * MK_BLOCK + MK_BLOCK < cols ? bc * MK_BLOCK + MK_BLOCK : cols;
            float amax = 0.0f;
            for (int64_t r = br * MK_BLOCK; r < r1; r++)
                for (int64_t c = bc * MK_BLOCK; c < c1; c++)
                    amax = fmaxf(amax, fabsf(w[r * cols + c]));
            float s = amax > 0.0f ? amax / MK_E4M3_MAX : 1.0f;
            scale_inv[br * nbc + bc] = s;
            for (int64_t r = br * MK_BLOCK; r < r1; r++)
                for (int64_t c = bc * MK_BLOCK; c < c1; c++)
                    q[r * cols + c] = dsa_f32_to_e4m3(w[r * cols + c] / s);
        }
    }
}

/* Draws tensor t from rng and converts it to its storage dtype. */
static dsa_err mk_tensor_make(const mk_tensor *t, mk_rng *rng, mk_data *out)
{
    const int64_t n = t->rows * (t->cols ? t->cols : 1);
    const float std = mk_std(t), mean = t->kind == MK_NORM ? 1.0f : 0.0f;
    float *w = malloc((size_t)n * sizeof *w);
    out->data[0] = out->data[1] = NULL;
    if (!w)
        return dsa_fail(DSA_NOMEM, "%s: out of memory", t->name);
    for (int64_t i = 0; i < n; i++)
        w[i] = mean + std * mk_rng_normal(rng);
    if (t->dtype == DSA_DTYPE_F32) {
        out->data[0] = w;
        return DSA_OK;
    }
    if (t->dtype == DSA_DTYPE_BF16) {
        uint16_t *b = malloc((size_t)n * sizeof *b);
        if (b)
            for (int64_t i = 0; i < n; i++)
                b[i] = dsa_f32_to_bf16(w[i]);
        free(w);
        out->data[0] = b;
        return b ? DSA_OK : dsa_fail(DSA_NOMEM, "%s: out of memory", t->name);
    }
    int64_t ns = ((t->rows + MK_BLOCK - 1) / MK_BLOCK) * ((t->cols + MK_BLOCK - 1) / MK_BLOCK);
    uint8_t *q = malloc((size_t)n);
    float *s = malloc((size_t)ns * sizeof *s);
    if (q && s)
        mk_quantise_fp8(w, t->rows, t->cols, q, s);
    free(w);
    out->data[0] = q;
    out->data[1] = s;
    if (!q || !s)
        return dsa_fail(DSA_NOMEM, "%s: out of memory", t->name);
    return DSA_OK;
}

static char *mk_path(const char *dir, const char *file)
{
    size_t n = strlen(dir) + strlen(file) + 2;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s/%s", dir, file);
    return s;
}

/* Writes every shard and the index.  Tensors are drawn in plan order, which
 * is shard order, so the stream does not depend on --shards. */
static dsa_err mk_write_weights(const mk_plan *p, const mk_opts *o)
{
    const int n_shards = (int)o->shards;
    dsa_err err = DSA_OK;
    mk_rng rng = {(uint64_t)o->seed * 0x2545f4914f6cdd1dull + 1};
    int n_names = 0;
    const char **names = calloc((size_t)p->n * 2, sizeof *names);
    const char **files = calloc((size_t)p->n * 2, sizeof *files);
    char (*scale_names)[140] = calloc((size_t)p->n, sizeof *scale_names);
    char (*shard_files)[48] = calloc((size_t)n_shards, sizeof *shard_files);
    mk_data *data = calloc((size_t)p->n, sizeof *data);
    dsa_st_writer *w = NULL;
    char *path = NULL;
    if (!names || !files || !scale_names || !shard_files || !data) {
        err = dsa_fail(DSA_NOMEM, "out of memory");
        goto fail;
    }
    int i = 0;
    for (int k = 0; k < n_shards; k++) {
        snprintf(shard_files[k], sizeof shard_files[k], "model-%05d-of-%05d.safetensors", k + 1,
                 n_shards);
        if ((err = dsa_st_writer_create(&w)))
            goto fail;
        int first = i;
        for (; i < p->n && p->t[i].shard == k; i++) {
            const mk_tensor *t = &p->t[i];
            int64_t shape[2] = {t->rows, t->cols};
            if ((err = mk_tensor_make(t, &rng, &data[i])) ||
                (err = dsa_st_writer_add(w, t->name, t->dtype, t->cols ? 2 : 1, shape,
                                         data[i].data[0])))
                goto fail;
            names[n_names] = t->name;
            files[n_names++] = shard_files[k];
            if (data[i].data[1]) {
                int64_t sshape[2] = {(t->rows + MK_BLOCK - 1) / MK_BLOCK,
                                     (t->cols + MK_BLOCK - 1) / MK_BLOCK};
                snprintf(scale_names[i], sizeof scale_names[i], "%s_scale_inv", t->name);
                if ((err = dsa_st_writer_add(w, scale_names[i], DSA_DTYPE_F32, 2, sshape,
                                             data[i].data[1])))
                    goto fail;
                names[n_names] = scale_names[i];
                files[n_names++] = shard_files[k];
            }
        }
        if (!(path = mk_path(o->out, shard_files[k]))) {
            err = dsa_fail(DSA_NOMEM, "out of memory");
            goto fail;
        }
        if ((err = dsa_st_writer_write(w, path)))
            goto fail;
        free(path);
        path = NULL;
        dsa_st_writer_destroy(w);
        w = NULL;
        for (int j = first; j < i; j++) {
            free(data[j].data[0]);
            free(data[j].data[1]);
            data[j].data[0] = data[j].data[1] = NULL;
        }
    }
    if (!(path = mk_path(o->out, "model.safetensors.index.json"))) {
        err = dsa_fail(DSA_NOMEM, "out of memory");
        goto fail;
    }
    err = dsa_st_write_index(path, p->total, n_names, names, files);
fail:
    if (data)
        for (int j = 0; j < p->n; j++) {
            free(data[j].data[0]);
            free(data[j].data[1]);
        }
    dsa_st_writer_destroy(w);
    free(path);
    free(data);
    free(shard_files);
    free(scale_names);
    free(files);
    free(names);
    return err;
}

/* ------------------------------------------------------------------ */
/* JSON files */

static dsa_err mk_write_json(const mk_opts *o, const char *file, cJSON *root)
{
    dsa_err err = DSA_OK;
    char *text = root ? cJSON_Print(root) : NULL;
    char *path = mk_path(o->out, file);
    FILE *f = NULL;
    if (!text || !path) {
        err = dsa_fail(DSA_NOMEM, "%s: out of memory", file);
        goto out;
    }
    if (!(f = fopen(path, "wb"))) {
        err = dsa_fail(DSA_IO, "cannot write %s: %s", path, strerror(errno));
        goto out;
    }
    if (fputs(text, f) < 0 || fputc('\n', f) < 0)
        err = dsa_fail(DSA_IO, "cannot write %s: %s", path, strerror(errno));
    if (fclose(f) != 0 && !err)
        err = dsa_fail(DSA_IO, "cannot write %s: %s", path, strerror(errno));
out:
    free(path);
    cJSON_free(text);
    cJSON_Delete(root);
    return err;
}

static cJSON *mk_config_json(const mk_opts *o, mk_wtype wt)
{
    cJSON *c = cJSON_CreateObject();
    cJSON *arch = cJSON_AddArrayToObject(c, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString("DeepseekV3ForCausalLM"));
    cJSON_AddFalseToObject(c, "attention_bias");
    cJSON_AddNumberToObject(c, "attention_dropout", 0.0);
    cJSON_AddNumberToObject(c, "bos_token_id", 0);
    cJSON_AddNumberToObject(c, "eos_token_id", 1);
    cJSON_AddNumberToObject(c, "first_k_dense_replace", (double)o->dense_layers);
    cJSON_AddStringToObject(c, "hidden_act", "silu");
    cJSON_AddNumberToObject(c, "hidden_size", (double)o->hidden);
    cJSON_AddNumberToObject(c, "initializer_range", 0.02);
    cJSON_AddNumberToObject(c, "intermediate_size", (double)o->inter);
    cJSON_AddNumberToObject(c, "kv_lora_rank", (double)o->kv_lora_rank);
    cJSON_AddNumberToObject(c, "max_position_embeddings", (double)o->max_pos);
    cJSON_AddStringToObject(c, "model_type", "deepseek_v3");
    cJSON_AddNumberToObject(c, "moe_intermediate_size", (double)o->moe_inter);
    cJSON_AddNumberToObject(c, "moe_layer_freq", 1);
    cJSON_AddNumberToObject(c, "n_group", (double)o->n_group);
    cJSON_AddNumberToObject(c, "n_routed_experts", (double)o->experts);
    cJSON_AddNumberToObject(c, "n_shared_experts", (double)o->shared_experts);
    cJSON_AddTrueToObject(c, "norm_topk_prob");
    cJSON_AddNumberToObject(c, "num_attention_heads", (double)o->heads);
    cJSON_AddNumberToObject(c, "num_experts_per_tok", (double)o->experts_per_tok);
    cJSON_AddNumberToObject(c, "num_hidden_layers", (double)o->layers);
    cJSON_AddNumberToObject(c, "num_key_value_heads", (double)o->heads);
    cJSON_AddNumberToObject(c, "num_nextn_predict_layers", (double)o->mtp);
    if (o->q_lora_rank)
        cJSON_AddNumberToObject(c, "q_lora_rank", (double)o->q_lora_rank);
    else
        cJSON_AddNullToObject(c, "q_lora_rank");
    cJSON_AddNumberToObject(c, "qk_nope_head_dim", (double)o->nope);
    cJSON_AddNumberToObject(c, "qk_rope_head_dim", (double)o->rope);
    if (wt == MK_FP8) {
        cJSON *q = cJSON_AddObjectToObject(c, "quantization_config");
        cJSON_AddStringToObject(q, "activation_scheme", "dynamic");
        cJSON_AddStringToObject(q, "fmt", "e4m3");
        cJSON_AddStringToObject(q, "quant_method", "fp8");
        int bs[2] = {MK_BLOCK, MK_BLOCK};
        cJSON_AddItemToObject(q, "weight_block_size", cJSON_CreateIntArray(bs, 2));
    }
    cJSON_AddNumberToObject(c, "rms_norm_eps", 1e-6);
    if (o->yarn_factor > 1.0) {
        cJSON *r = cJSON_AddObjectToObject(c, "rope_scaling");
        cJSON_AddNumberToObject(r, "beta_fast", 32);
        cJSON_AddNumberToObject(r, "beta_slow", 1);
        cJSON_AddNumberToObject(r, "factor", o->yarn_factor);
        cJSON_AddNumberToObject(r, "mscale", 1.0);
        cJSON_AddNumberToObject(r, "mscale_all_dim", 1.0);
        cJSON_AddNumberToObject(r, "original_max_position_embeddings", (double)o->yarn_original);
        cJSON_AddStringToObject(r, "type", "yarn");
    } else {
        cJSON_AddNullToObject(c, "rope_scaling");
    }
    cJSON_AddNumberToObject(c, "rope_theta", o->rope_theta);
    cJSON_AddNumberToObject(c, "routed_scaling_factor", o->routed_scale);
    cJSON_AddStringToObject(c, "scoring_func", "sigmoid");
    cJSON_AddFalseToObject(c, "tie_word_embeddings");
    cJSON_AddNumberToObject(c, "topk_group", (double)o->topk_group);
    cJSON_AddStringToObject(c, "topk_method", "noaux_tc");
    cJSON_AddStringToObject(c, "torch_dtype", wt == MK_F32 ? "float32" : "bfloat16");
    cJSON_AddTrueToObject(c, "use_cache");
    cJSON_AddNumberToObject(c, "v_head_dim", (double)o->v);
    cJSON_AddNumberToObject(c, "vocab_size", (double)o->vocab);
    return c;
}

static cJSON *mk_generation_json(void)
{
    cJSON *g = cJSON_CreateObject();
    cJSON_AddTrueToObject(g, "_from_model_config");
    cJSON_AddNumberToObject(g, "bos_token_id", 0);
    cJSON_AddNumberToObject(g, "eos_token_id", 1);
    cJSON_AddTrueToObject(g, "do_sample");
    cJSON_AddNumberToObject(g, "temperature", 0.6);
    cJSON_AddNumberToObject(g, "top_p", 0.95);
    return g;
}

/* ------------------------------------------------------------------ */

/* mkdir -p; an existing directory is fine. */
static dsa_err mk_mkdirs(const char *dir)
{
    char *p = strdup(dir);
    if (!p)
        return dsa_fail(DSA_NOMEM, "out of memory");
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char c = *s;
            *s = '\0';
            if (mkdir(p, 0777) != 0 && errno != EEXIST) {
                dsa_err err = dsa_fail(DSA_IO, "cannot create --out directory %s: %s", p,
                                       strerror(errno));
                free(p);
                return err;
            }
            *s = c;
            if (!c)
                break;
        }
    }
    free(p);
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return dsa_fail(DSA_IO, "--out %s is not a directory", dir);
    return DSA_OK;
}

int main(int argc, char **argv)
{
    mk_opts o;
    mk_wtype wt = MK_F32;
    mk_plan plan = {0};
    int help = 0;
    memset(&o, 0, sizeof o);
    if (dsa_options_parse(mk_options, MK_N_OPTIONS, &o, argc, argv, &help) ||
        (!help && mk_opts_check(&o, &wt))) {
        fprintf(stderr, "dsa-mkmodel: %s\n", dsa_errmsg());
        fprintf(stderr, "usage: dsa-mkmodel --out DIR [options]; see --help\n");
        return 2;
    }
    if (help) {
        dsa_options_usage(stdout, "dsa-mkmodel",
                          "Writes a tiny random DeepSeek-V3 checkpoint (HF layout, safetensors, "
                          "tokenizer) for tests.",
                          mk_options, MK_N_OPTIONS);
        return 0;
    }
    dsa_err err;
    if ((err = mk_plan_build(&plan, &o, wt)) || (err = mk_plan_shard(&plan, (int)o.shards))) {
        fprintf(stderr, "dsa-mkmodel: %s\n", dsa_errmsg());
        free(plan.t);
        return err == DSA_INVAL ? 2 : 1;
    }
    if ((err = mk_mkdirs(o.out)) ||
        (err = mk_write_json(&o, "config.json", mk_config_json(&o, wt))) ||
        (err = mk_write_json(&o, "generation_config.json", mk_generation_json())) ||
        (err = mk_write_json(&o, "tokenizer.json", mk_tokenizer_json(o.vocab))) ||
        (err = mk_write_json(&o, "tokenizer_config.json", mk_tokenizer_config_json(o.max_pos))) ||
        (err = mk_write_weights(&plan, &o))) {
        fprintf(stderr, "dsa-mkmodel: %s\n", dsa_errmsg());
        free(plan.t);
        return 1;
    }
    printf("dsa-mkmodel: wrote %s: %d weights, %" PRIu64 " bytes in %lld shard%s (%s)\n", o.out,
           plan.n, plan.total, o.shards, o.shards == 1 ? "" : "s", o.dtype);
    free(plan.t);
    return 0;
}
