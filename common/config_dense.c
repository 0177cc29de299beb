/* config_dense.c - config.json of the dense GQA architectures (model_type
 * qwen2 and llama: the DeepSeek-R1-Distill checkpoints) and AWQ's
 * quantization_config; see config.h.
 *
 * Defaults are those of transformers' Qwen2Config and LlamaConfig for the
 * behavioural fields; the shape fields (vocab_size, hidden_size,
 * intermediate_size, num_hidden_layers, num_attention_heads) are required,
 * as for DeepSeek-V3, because a tiny test model changes all of them.
 * Fields the engine does not implement are refused by name rather than
 * ignored: use_sliding_window true (Qwen2: no distill sets it), hidden_act
 * other than silu, mlp_bias (Llama), rope types other than default and
 * llama3. */
#include "common/config_internal.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

typedef enum dfield_type { DF_INT, DF_I64, DF_DBL, DF_BOOL } dfield_type;

typedef struct dfield {
    const char *name;
    dfield_type type;
    size_t offset;
    int required;
    double def;         /* when absent (or null) and not required */
    double min;         /* smallest allowed value */
} dfield;

#define OFF(f) offsetof(dsa_config, f)
#define MAX_EXACT 9007199254740992.0 /* 2^53 */

/* num_key_value_heads and head_dim default from other fields (below);
 * -1 here marks "derived". */
static const dfield dense_fields[] = {
    {"vocab_size", DF_I64, OFF(vocab_size), 1, 0, 1},
    {"hidden_size", DF_I64, OFF(hidden_size), 1, 0, 1},
    {"intermediate_size", DF_I64, OFF(intermediate_size), 1, 0, 1},
    {"num_hidden_layers", DF_INT, OFF(n_layers), 1, 0, 1},
    {"num_attention_heads", DF_INT, OFF(n_heads), 1, 0, 1},
    {"num_key_value_heads", DF_INT, OFF(n_kv_heads), 0, -1, 1},
    {"head_dim", DF_I64, OFF(head_dim), 0, -1, 2},
    {"rms_norm_eps", DF_DBL, OFF(rms_norm_eps), 0, 1e-6, 1e-30},
    {"max_position_embeddings", DF_I64, OFF(max_position_embeddings), 0, -1, 1},
    {"bos_token_id", DF_INT, OFF(bos_token_id), 0, -1, 0},
    {"eos_token_id", DF_INT, OFF(eos_token_id), 0, -1, 0},
    {"tie_word_embeddings", DF_BOOL, OFF(tie_word_embeddings), 0, 0, 0},
};

static const char *jtype(const cJSON *v)
{
    return cJSON_IsNull(v) ? "null" : cJSON_IsBool(v) ? "a boolean" : cJSON_IsNumber(v) ? "a number"
         : cJSON_IsString(v) ? "a string" : cJSON_IsArray(v) ? "an array" : "an object";
}

static void dstore(dsa_config *cfg, const dfield *f, double v)
{
    char *p = (char *)cfg + f->offset;
    if (f->type == DF_INT || f->type == DF_BOOL) {
        int i = (int)v;
        memcpy(p, &i, sizeof i);
    } else if (f->type == DF_I64) {
        int64_t i = (int64_t)v;
        memcpy(p, &i, sizeof i);
    } else {
        memcpy(p, &v, sizeof v);
    }
}

/* A number field `name` (shown as `shown`) that must be >= min; integral
 * unless dbl. */
static dsa_err dnumber(const cJSON *v, const char *path, const char *shown, int dbl, double min,
                       double *out)
{
    if (!cJSON_IsNumber(v))
        return dsa_fail(DSA_FORMAT, "%s: field '%s': expected %s, got %s", path, shown,
                        dbl ? "a number" : "an integer", jtype(v));
    double d = v->valuedouble;
    if (!isfinite(d) || (!dbl && (d != floor(d) || fabs(d) > MAX_EXACT)))
        return dsa_fail(DSA_FORMAT, "%s: field '%s': expected %s, got %g", path, shown,
                        dbl ? "a finite number" : "an integer", d);
    if (d < min)
        return dsa_fail(DSA_RANGE, "%s: field '%s': %g is below %g", path, shown, d, min);
    *out = d;
    return DSA_OK;
}

static dsa_err dfield_parse(const cJSON *root, const dfield *f, const char *path, dsa_config *cfg)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, f->name);
    double d = 0;
    dsa_err err;
    /* eos_token_id may be a list (Llama-3 lists several): the first is the
     * model's; generation_config.json carries the stop list. */
    if (v && cJSON_IsArray(v) && strcmp(f->name, "eos_token_id") == 0) {
        if (cJSON_GetArraySize(v) == 0)
            return dsa_fail(DSA_FORMAT, "%s: field 'eos_token_id': empty list", path);
        v = cJSON_GetArrayItem(v, 0);
    }
    if (!v || cJSON_IsNull(v)) {
        if (f->required)
            return dsa_fail(DSA_FORMAT, "%s: field '%s': missing", path, f->name);
        dstore(cfg, f, f->def);
        return DSA_OK;
    }
    if (f->type == DF_BOOL) {
        if (!cJSON_IsBool(v))
            return dsa_fail(DSA_FORMAT, "%s: field '%s': expected a boolean, got %s", path,
                            f->name, jtype(v));
        dstore(cfg, f, cJSON_IsTrue(v) ? 1 : 0);
        return DSA_OK;
    }
    if ((err = dnumber(v, path, f->name, f->type == DF_DBL, f->min, &d)))
        return err;
    if (f->type == DF_INT && d > 2147483647.0)
        return dsa_fail(DSA_RANGE, "%s: field '%s': %g too large", path, f->name, d);
    dstore(cfg, f, d);
    return DSA_OK;
}

static int json_true(const cJSON *root, const char *key)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, key));
}

/* rope_theta and rope_scaling (or transformers 5's rope_parameters):
 * default or llama3. */
static dsa_err dense_rope(const cJSON *root, const char *path, dsa_config *cfg)
{
    dsa_rope_config *r = &cfg->rope;
    double d = 0;
    dsa_err err;
    r->theta = 10000.0;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "rope_theta");
    if (v && !cJSON_IsNull(v)) {
        if ((err = dnumber(v, path, "rope_theta", 1, 1.0, &d)))
            return err;
        r->theta = d;
    }
    const char *key = "rope_scaling";
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!rs || cJSON_IsNull(rs)) {
        key = "rope_parameters";
        rs = cJSON_GetObjectItemCaseSensitive(root, key);
    }
    if (!rs || cJSON_IsNull(rs))
        goto check;
    if (!cJSON_IsObject(rs))
        return dsa_fail(DSA_FORMAT, "%s: field '%s': expected an object, got %s", path, key,
                        jtype(rs));
    char shown[96];
    v = cJSON_GetObjectItemCaseSensitive(rs, "rope_theta");
    if (v && !cJSON_IsNull(v)) {
        snprintf(shown, sizeof shown, "%s.rope_theta", key);
        if ((err = dnumber(v, path, shown, 1, 1.0, &d)))
            return err;
        r->theta = d;
    }
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
    if (!t)
        t = cJSON_GetObjectItemCaseSensitive(rs, "type");
    const char *type = cJSON_IsString(t) ? t->valuestring : "default";
    if (t && !cJSON_IsString(t))
        return dsa_fail(DSA_FORMAT, "%s: field '%s.rope_type': expected a string, got %s", path,
                        key, jtype(t));
    if (strcmp(type, "default") == 0)
        goto check;
    if (strcmp(type, "llama3") != 0)
        return dsa_fail(DSA_UNSUPPORTED, "%s: field '%s.rope_type': '%.64s' not supported for "
                        "%s (default, llama3)", path, key, type, cfg->model_type);
    r->llama3 = 1;
    static const struct {
        const char *name;
        size_t off;
    } ll[] = {{"factor", offsetof(dsa_rope_config, factor)},
              {"low_freq_factor", offsetof(dsa_rope_config, low_freq_factor)},
              {"high_freq_factor", offsetof(dsa_rope_config, high_freq_factor)}};
    for (size_t i = 0; i < sizeof ll / sizeof ll[0]; i++) {
        snprintf(shown, sizeof shown, "%s.%s", key, ll[i].name);
        v = cJSON_GetObjectItemCaseSensitive(rs, ll[i].name);
        if (!v)
            return dsa_fail(DSA_FORMAT, "%s: field '%s': missing", path, shown);
        if ((err = dnumber(v, path, shown, 1, 1e-30, &d)))
            return err;
        memcpy((char *)r + ll[i].off, &d, sizeof d);
    }
    snprintf(shown, sizeof shown, "%s.original_max_position_embeddings", key);
    v = cJSON_GetObjectItemCaseSensitive(rs, "original_max_position_embeddings");
    if (!v)
        return dsa_fail(DSA_FORMAT, "%s: field '%s': missing", path, shown);
    if ((err = dnumber(v, path, shown, 0, 1, &d)))
        return err;
    r->original_max_position_embeddings = (int64_t)d;
    if (!(r->high_freq_factor > r->low_freq_factor))
        return dsa_fail(DSA_RANGE, "%s: field '%s.high_freq_factor': must exceed "
                        "low_freq_factor", path, key);
check:
    if (!(r->theta > 1.0))
        return dsa_fail(DSA_RANGE, "%s: field 'rope_theta': must be > 1, got %g", path, r->theta);
    return DSA_OK;
}

dsa_err dsa_config_parse_dense(const cJSON *root, const char *path, dsa_arch arch,
                               dsa_config *cfg)
{
    dsa_err err;
    cfg->arch = arch;
    for (size_t i = 0; i < sizeof dense_fields / sizeof dense_fields[0]; i++)
        if ((err = dfield_parse(root, &dense_fields[i], path, cfg)))
            return err;
    if (cfg->n_kv_heads < 0)
        cfg->n_kv_heads = cfg->n_heads;
    if (cfg->head_dim < 0) {
        if (cfg->hidden_size % cfg->n_heads)
            return dsa_fail(DSA_RANGE, "%s: field 'hidden_size': %lld not divisible by "
                            "num_attention_heads %d (and no head_dim)", path,
                            (long long)cfg->hidden_size, cfg->n_heads);
        cfg->head_dim = cfg->hidden_size / cfg->n_heads;
    }
    if (cfg->max_position_embeddings < 0)
        cfg->max_position_embeddings = arch == DSA_ARCH_QWEN2 ? 32768 : 2048;
    if (cfg->head_dim % 2)
        return dsa_fail(DSA_RANGE, "%s: field 'head_dim': must be even, got %lld", path,
                        (long long)cfg->head_dim);
    if (cfg->n_heads % cfg->n_kv_heads)
        return dsa_fail(DSA_RANGE, "%s: field 'num_key_value_heads': %d does not divide "
                        "num_attention_heads %d", path, cfg->n_kv_heads, cfg->n_heads);
    if (cfg->bos_token_id >= cfg->vocab_size || cfg->eos_token_id >= cfg->vocab_size)
        return dsa_fail(DSA_RANGE, "%s: field '%s': not below vocab_size %lld", path,
                        cfg->bos_token_id >= cfg->vocab_size ? "bos_token_id" : "eos_token_id",
                        (long long)cfg->vocab_size);

    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
    if (act && !(cJSON_IsString(act) && strcmp(act->valuestring, "silu") == 0))
        return dsa_fail(DSA_UNSUPPORTED, "%s: field 'hidden_act': only silu is supported", path);
    if (arch == DSA_ARCH_QWEN2) {
        /* Qwen2Attention: q/k/v always biased, o_proj never. */
        cfg->qkv_bias = 1;
        if (json_true(root, "use_sliding_window"))
            return dsa_fail(DSA_UNSUPPORTED, "%s: field 'use_sliding_window': true is not "
                            "supported (sliding-window attention; every R1-Distill sets false)",
                            path);
    } else {
        if (json_true(root, "attention_bias"))
            cfg->qkv_bias = 1; /* LlamaAttention biases o_proj too: refused below */
        if (cfg->qkv_bias)
            return dsa_fail(DSA_UNSUPPORTED, "%s: field 'attention_bias': true is not supported "
                            "for llama", path);
        if (json_true(root, "mlp_bias"))
            return dsa_fail(DSA_UNSUPPORTED, "%s: field 'mlp_bias': true is not supported", path);
        const cJSON *tp = cJSON_GetObjectItemCaseSensitive(root, "pretraining_tp");
        if (cJSON_IsNumber(tp) && tp->valuedouble != 1)
            return dsa_fail(DSA_UNSUPPORTED, "%s: field 'pretraining_tp': only 1 is supported",
                            path);
    }
    if ((err = dense_rope(root, path, cfg)))
        return err;

    const cJSON *q = cJSON_GetObjectItemCaseSensitive(root, "quantization_config");
    if (!q || cJSON_IsNull(q))
        return DSA_OK;
    if (!cJSON_IsObject(q))
        return dsa_fail(DSA_FORMAT, "%s: field 'quantization_config': expected an object, got %s",
                        path, jtype(q));
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(q, "quant_method");
    if (!cJSON_IsString(m) || strcmp(m->valuestring, "awq") != 0)
        return dsa_fail(DSA_UNSUPPORTED, "%s: field 'quantization_config.quant_method': '%.64s' "
                        "not supported for %s (awq)", path,
                        cJSON_IsString(m) ? m->valuestring : "?", cfg->model_type);
    return dsa_config_parse_awq(q, path, cfg);
}

dsa_err dsa_config_parse_awq(const cJSON *q, const char *path, dsa_config *cfg)
{
    double d = 0;
    dsa_err err;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(q, "bits");
    if (v && (err = dnumber(v, path, "quantization_config.bits", 0, 1, &d)))
        return err;
    if (v && d != 4)
        return dsa_fail(DSA_UNSUPPORTED, "%s: field 'quantization_config.bits': %g not "
                        "supported (4)", path, d);
    v = cJSON_GetObjectItemCaseSensitive(q, "version");
    if (v && !cJSON_IsNull(v) &&
        !(cJSON_IsString(v) && (strcmp(v->valuestring, "gemm") == 0 ||
                                strcmp(v->valuestring, "GEMM") == 0)))
        return dsa_fail(DSA_UNSUPPORTED, "%s: field 'quantization_config.version': only gemm "
                        "is supported", path);
    v = cJSON_GetObjectItemCaseSensitive(q, "zero_point");
    if (v && !cJSON_IsTrue(v))
        return dsa_fail(DSA_UNSUPPORTED, "%s: field 'quantization_config.zero_point': only true "
                        "is supported", path);
    v = cJSON_GetObjectItemCaseSensitive(q, "group_size");
    if (!v)
        return dsa_fail(DSA_FORMAT, "%s: field 'quantization_config.group_size': missing", path);
    if ((err = dnumber(v, path, "quantization_config.group_size", 0, 8, &d)))
        return err;
    if ((int64_t)d % 8)
        return dsa_fail(DSA_UNSUPPORTED, "%s: field 'quantization_config.group_size': %g is "
                        "not a multiple of 8", path, d);
    cfg->awq_group = (int64_t)d;
    v = cJSON_GetObjectItemCaseSensitive(q, "modules_to_not_convert");
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsArray(v))
            return dsa_fail(DSA_FORMAT, "%s: field 'quantization_config.modules_to_not_convert':"
                            " expected a list", path);
        const cJSON *e;
        cJSON_ArrayForEach(e, v) {
            if (!cJSON_IsString(e) || strlen(e->valuestring) >= sizeof cfg->awq_skip[0] ||
                !e->valuestring[0])
                return dsa_fail(DSA_FORMAT, "%s: field 'quantization_config."
                                "modules_to_not_convert': entries must be names of 1..63 bytes",
                                path);
            if (cfg->n_awq_skip == DSA_CONFIG_AWQ_SKIP_MAX)
                return dsa_fail(DSA_RANGE, "%s: field 'quantization_config."
                                "modules_to_not_convert': more than %d entries", path,
                                DSA_CONFIG_AWQ_SKIP_MAX);
            snprintf(cfg->awq_skip[cfg->n_awq_skip++], sizeof cfg->awq_skip[0], "%s",
                     e->valuestring);
        }
    }
    cfg->awq = 1;
    return DSA_OK;
}

int dsa_config_awq_quantised(const dsa_config *cfg, const char *name)
{
    if (!cfg->awq)
        return 0;
    /* transformers' replace_with_awq_linear skips a module when any entry
     * of modules_to_not_convert is a substring of its name; lm_head and the
     * embedding are never quantised. */
    if (strstr(name, "lm_head") || strstr(name, "embed_tokens"))
        return 0;
    /* DeepSeek's router (mlp.gate) is a parameter, not an nn.Linear: AWQ
     * never converts it */
    size_t n = strlen(name);
    if (n >= 9 && strcmp(name + n - 9, ".mlp.gate") == 0)
        return 0;
    for (int i = 0; i < cfg->n_awq_skip; i++)
        if (strstr(name, cfg->awq_skip[i]))
            return 0;
    return 1;
}

/* transformers' _compute_default_rope_parameters, then for llama3
 * _compute_llama3_parameters: wavelengths longer than L0/low_freq_factor
 * are divided by factor, shorter than L0/high_freq_factor kept, and the
 * band between interpolated smoothly. */
void dsa_config_dense_rope_freqs(const dsa_config *cfg, float *inv_freq)
{
    const dsa_rope_config *r = &cfg->rope;
    int64_t d = cfg->head_dim, half = d / 2;
    for (int64_t i = 0; i < half; i++) {
        /* torch: 1.0 / base ** (arange(0, d, 2).float() / d), in F32 */
        float e = (float)(2 * i) / (float)d;
        float f = 1.0f / powf((float)r->theta, e);
        if (r->llama3) {
            double l0 = (double)r->original_max_position_embeddings;
            double low_wl = l0 / r->low_freq_factor, high_wl = l0 / r->high_freq_factor;
            double wl = 2.0 * M_PI / (double)f;
            double g = wl > low_wl ? (double)f / r->factor : (double)f;
            if (!(wl < high_wl) && !(wl > low_wl)) {
                double s = (l0 / wl - r->low_freq_factor) /
                           (r->high_freq_factor - r->low_freq_factor);
                g = (1.0 - s) * g / r->factor + s * g;
            }
            f = (float)g;
        }
        inv_freq[i] = f;
    }
}

int64_t dsa_config_max_len(const dsa_config *cfg)
{
    int64_t n = cfg->max_position_embeddings;
    const dsa_rope_config *r = &cfg->rope;
    if (r->yarn && r->factor > 1.0) {
        int64_t y = (int64_t)((double)r->original_max_position_embeddings * r->factor);
        if (y > n)
            n = y;
    }
    return n;
}
