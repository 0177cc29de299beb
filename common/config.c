/* config.c - config.json (model_type deepseek_v3 / deepseek_v2) into a
 * validated dsa_config; see config.h.
 *
 * Fields come in two kinds.  Shape-defining fields (dimensions, expert
 * counts) are required: a tiny test model changes every one of them, so a
 * silent default would load the wrong shapes.  Behavioural fields default per
 * model_type as Hugging Face's DeepseekV3Config / DeepseekV2Config do (and
 * DeepSeek's own configuration_deepseek.py for the fields transformers
 * hard-codes: scoring_func, topk_method, moe_layer_freq).  One table below
 * drives presence, type, null handling and defaults; cross-field rules follow
 * in validate().
 *
 * Error codes: DSA_FORMAT for malformed JSON, a missing field or a wrong JSON
 * type; DSA_RANGE for a value out of range; DSA_UNSUPPORTED for a model_type,
 * rope type or quantisation this project does not run.  Every message reads
 * "PATH: field 'NAME': what is wrong". */
#include "common/config.h"
#include "common/config_internal.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

enum model_kind { KIND_V3, KIND_V2, KIND_COUNT };

typedef enum field_type {
    FT_INT,   /* int, |v| <= INT_MAX */
    FT_I64,   /* int64_t, |v| <= 2^53 (exact in a JSON double) */
    FT_DBL,   /* double, finite */
    FT_BOOL,  /* int 0/1 from true/false */
} field_type;

enum {
    F_REQUIRED = 1 << 0, /* absent -> error (null still allowed if F_NULL) */
    F_NULL = 1 << 1,     /* null -> null_value */
    F_POS = 1 << 2,      /* must be > 0 */
    F_NONNEG = 1 << 3,   /* must be >= 0 */
};

typedef struct field_spec {
    const char *name;
    field_type type;
    size_t offset;
    unsigned flags;
    double def[KIND_COUNT]; /* when absent and not required */
    double null_value;      /* when null and F_NULL */
} field_spec;

#define OFF(f) offsetof(dsa_config, f)

/* The declarative table: name, type, destination, rules, defaults (V3, V2),
 * value for null.  MoE shape fields are checked for presence in validate()
 * only when the model has routed experts. */
static const field_spec config_fields[] = {
    {"vocab_size", FT_I64, OFF(vocab_size), F_REQUIRED | F_POS, {0, 0}, 0},
    {"hidden_size", FT_I64, OFF(hidden_size), F_REQUIRED | F_POS, {0, 0}, 0},
    {"intermediate_size", FT_I64, OFF(intermediate_size), F_REQUIRED | F_POS, {0, 0}, 0},
    {"moe_intermediate_size", FT_I64, OFF(moe_intermediate_size), F_NULL | F_NONNEG, {0, 0}, 0},
    {"num_hidden_layers", FT_INT, OFF(n_layers), F_REQUIRED | F_POS, {0, 0}, 0},
    {"num_nextn_predict_layers", FT_INT, OFF(n_nextn_predict_layers), F_NULL | F_NONNEG, {0, 0}, 0},
    {"num_attention_heads", FT_INT, OFF(n_heads), F_REQUIRED | F_POS, {0, 0}, 0},
    {"q_lora_rank", FT_I64, OFF(q_lora_rank), F_REQUIRED | F_NULL | F_NONNEG, {0, 0}, 0},
    {"kv_lora_rank", FT_I64, OFF(kv_lora_rank), F_REQUIRED | F_POS, {0, 0}, 0},
    {"qk_nope_head_dim", FT_I64, OFF(qk_nope_head_dim), F_REQUIRED | F_POS, {0, 0}, 0},
    {"qk_rope_head_dim", FT_I64, OFF(qk_rope_head_dim), F_REQUIRED | F_POS, {0, 0}, 0},
    {"v_head_dim", FT_I64, OFF(v_head_dim), F_REQUIRED | F_POS, {0, 0}, 0},
    {"n_routed_experts", FT_INT, OFF(n_routed_experts), F_REQUIRED | F_NULL | F_NONNEG, {0, 0}, 0},
    {"n_shared_experts", FT_INT, OFF(n_shared_experts), F_NULL | F_NONNEG, {0, 0}, 0},
    {"num_experts_per_tok", FT_INT, OFF(n_experts_per_tok), F_NULL | F_NONNEG, {0, 0}, 0},
    {"n_group", FT_INT, OFF(n_group), F_NULL | F_POS, {8, 1}, 1},
    {"topk_group", FT_INT, OFF(topk_group), F_NULL | F_POS, {4, 1}, 1},
    {"first_k_dense_replace", FT_INT, OFF(first_k_dense_replace), F_NONNEG, {3, 0}, 0},
    {"moe_layer_freq", FT_INT, OFF(moe_layer_freq), F_POS, {1, 1}, 0},
    {"routed_scaling_factor", FT_DBL, OFF(routed_scaling_factor), F_POS, {2.5, 1.0}, 0},
    {"norm_topk_prob", FT_BOOL, OFF(norm_topk_prob), 0, {1, 0}, 0},
    {"rms_norm_eps", FT_DBL, OFF(rms_norm_eps), F_POS, {1e-6, 1e-6}, 0},
    {"max_position_embeddings", FT_I64, OFF(max_position_embeddings), F_POS, {4096, 2048}, 0},
    {"bos_token_id", FT_INT, OFF(bos_token_id), F_NULL | F_NONNEG, {0, 1}, -1},
    {"eos_token_id", FT_INT, OFF(eos_token_id), F_NULL | F_NONNEG, {1, 2}, -1},
    {"tie_word_embeddings", FT_BOOL, OFF(tie_word_embeddings), 0, {0, 0}, 0},
};

#define MAX_EXACT_INT 9007199254740992.0 /* 2^53 */

static const char *json_type_name(const cJSON *v)
{
    if (cJSON_IsNull(v))
        return "null";
    if (cJSON_IsBool(v))
        return "a boolean";
    if (cJSON_IsNumber(v))
        return "a number";
    if (cJSON_IsString(v))
        return "a string";
    if (cJSON_IsArray(v))
        return "an array";
    if (cJSON_IsObject(v))
        return "an object";
    return "invalid";
}

/* Reads a number that must be an integer in [lo, hi]. */
static dsa_err get_integer(const cJSON *v, const char *path, const char *name,
                           double lo, double hi, double *out)
{
    if (!cJSON_IsNumber(v))
        return dsa_fail(DSA_FORMAT, "%s: field '%s': expected an integer, got %s", path,
                        name, json_type_name(v));
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d))
        return dsa_fail(DSA_FORMAT, "%s: field '%s': expected an integer, got %g", path,
                        name, d);
    if (d < lo || d > hi)
        return dsa_fail(DSA_RANGE, "%s: field '%s': %.0f out of range [%.0f, %.0f]", path,
                        name, d, lo, hi);
    *out = d;
    return DSA_OK;
}

static dsa_err get_double(const cJSON *v, const char *path, const char *name, double *out)
{
    if (!cJSON_IsNumber(v))
        return dsa_fail(DSA_FORMAT, "%s: field '%s': expected a number, got %s", path,
                        name, json_type_name(v));
    if (!isfinite(v->valuedouble))
        return dsa_fail(DSA_RANGE, "%s: field '%s': not a finite number", path, name);
    *out = v->valuedouble;
    return DSA_OK;
}

static void store(dsa_config *cfg, const field_spec *f, double v)
{
    char *p = (char *)cfg + f->offset;
    switch (f->type) {
    case FT_INT:
    case FT_BOOL: {
        int i = (int)v;
        memcpy(p, &i, sizeof i);
        break;
    }
    case FT_I64: {
        int64_t i = (int64_t)v;
        memcpy(p, &i, sizeof i);
        break;
    }
    case FT_DBL:
        memcpy(p, &v, sizeof v);
        break;
    }
}

/* One table entry: presence, null, type, sign. */
static dsa_err parse_field(const cJSON *root, const field_spec *f, int kind, const char *path,
                           dsa_config *cfg)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, f->name);
    double d = 0;
    dsa_err err;

    /* eos_token_id may be a list (several stop tokens); the first is used. */
    if (v && cJSON_IsArray(v) && strcmp(f->name, "eos_token_id") == 0) {
        if (cJSON_GetArraySize(v) == 0)
            return dsa_fail(DSA_FORMAT, "%s: field '%s': empty list", path, f->name);
        const cJSON *e;
        cJSON_ArrayForEach(e, v) {
            if ((err = get_integer(e, path, f->name, 0, INT_MAX, &d)))
                return err;
        }
        v = cJSON_GetArrayItem(v, 0);
    }

    if (!v) {
        if (f->flags & F_REQUIRED)
            return dsa_fail(DSA_FORMAT, "%s: field '%s': missing", path, f->name);
        store(cfg, f, f->def[kind]);
        return DSA_OK;
    }
    if (cJSON_IsNull(v)) {
        if (!(f->flags & F_NULL))
            return dsa_fail(DSA_FORMAT, "%s: field '%s': must not be null", path, f->name);
        store(cfg, f, f->null_value);
        return DSA_OK;
    }
    switch (f->type) {
    case FT_INT:
        err = get_integer(v, path, f->name, -INT_MAX, INT_MAX, &d);
        break;
    case FT_I64:
        err = get_integer(v, path, f->name, -MAX_EXACT_INT, MAX_EXACT_INT, &d);
        break;
    case FT_DBL:
        err = get_double(v, path, f->name, &d);
        break;
    case FT_BOOL:
        if (!cJSON_IsBool(v))
            return dsa_fail(DSA_FORMAT, "%s: field '%s': expected a boolean, got %s", path,
                            f->name, json_type_name(v));
        d = cJSON_IsTrue(v) ? 1 : 0;
        err = DSA_OK;
        break;
    default:
        err = dsa_fail(DSA_INTERNAL, "%s: field '%s': bad table entry", path, f->name);
    }
    if (err)
        return err;
    if ((f->flags & F_POS) && !(d > 0))
        return dsa_fail(DSA_RANGE, "%s: field '%s': must be positive, got %g", path, f->name, d);
    if ((f->flags & F_NONNEG) && d < 0)
        return dsa_fail(DSA_RANGE, "%s: field '%s': must not be negative, got %g", path,
                        f->name, d);
    store(cfg, f, d);
    return DSA_OK;
}

/* A string field; absent -> def (which may be NULL: then *out = NULL). */
static dsa_err get_string(const cJSON *obj, const char *key, const char *shown,
                          const char *path, const char *def, const char **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return DSA_OK;
    }
    if (!cJSON_IsString(v))
        return dsa_fail(DSA_FORMAT, "%s: field '%s': expected a string, got %s", path, shown,
                        json_type_name(v));
    *out = v->valuestring;
    return DSA_OK;
}

/* An optional number, named prefix.key in messages (key alone if no prefix). */
static dsa_err get_opt_double(const cJSON *obj, const char *key, const char *prefix,
                              const char *path, double def, double *out)
{
    char name[96];
    if (prefix)
        snprintf(name, sizeof name, "%s.%s", prefix, key);
    else
        snprintf(name, sizeof name, "%s", key);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return DSA_OK;
    }
    return get_double(v, path, name, out);
}

static dsa_err parse_rope(const cJSON *root, const char *path, dsa_config *cfg)
{
    dsa_rope_config *r = &cfg->rope;
    dsa_err err;

    memset(r, 0, sizeof *r);
    /* rope_theta: top level, or inside rope_parameters (newer transformers). */
    if ((err = get_opt_double(root, "rope_theta", NULL, path, 10000.0, &r->theta)))
        return err;

    const char *key = "rope_parameters";
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!rs || cJSON_IsNull(rs)) {
        key = "rope_scaling";
        rs = cJSON_GetObjectItemCaseSensitive(root, key);
    }
    if (rs && !cJSON_IsNull(rs)) {
        if (!cJSON_IsObject(rs))
            return dsa_fail(DSA_FORMAT, "%s: field '%s': expected an object, got %s", path,
                            key, json_type_name(rs));
        if (cJSON_GetObjectItemCaseSensitive(rs, "rope_theta") &&
            (err = get_opt_double(rs, "rope_theta", key, path, r->theta, &r->theta)))
            return err;

        const char *type, *type_key = "rope_type";
        char shown[64];
        if (!cJSON_GetObjectItemCaseSensitive(rs, type_key))
            type_key = "type";
        snprintf(shown, sizeof shown, "%s.%s", key, type_key);
        if ((err = get_string(rs, type_key, shown, path, NULL, &type)))
            return err;
        if (!type)
            return dsa_fail(DSA_FORMAT, "%s: field '%s.rope_type': missing (or 'type')", path,
                            key);
        if (strcmp(type, "yarn") == 0 || strcmp(type, "deepseek_yarn") == 0) {
            r->yarn = 1;
        } else if (strcmp(type, "default") != 0) {
            return dsa_fail(DSA_UNSUPPORTED,
                            "%s: field '%s': rope type '%s' not supported (yarn or default)",
                            path, shown, type);
        }
        if (r->yarn) {
            double l0 = 0;
            char name[96];
            const cJSON *v;

            snprintf(name, sizeof name, "%s.factor", key);
            v = cJSON_GetObjectItemCaseSensitive(rs, "factor");
            if (!v)
                return dsa_fail(DSA_FORMAT, "%s: field '%s': missing", path, name);
            if ((err = get_double(v, path, name, &r->factor)))
                return err;
            if (!(r->factor > 0))
                return dsa_fail(DSA_RANGE, "%s: field '%s': must be positive, got %g", path,
                                name, r->factor);

            snprintf(name, sizeof name, "%s.original_max_position_embeddings", key);
            v = cJSON_GetObjectItemCaseSensitive(rs, "original_max_position_embeddings");
            if (!v)
                return dsa_fail(DSA_FORMAT, "%s: field '%s': missing", path, name);
            if ((err = get_integer(v, path, name, 1, MAX_EXACT_INT, &l0)))
                return err;
            r->original_max_position_embeddings = (int64_t)l0;

            if ((err = get_opt_double(rs, "beta_fast", key, path, 32.0, &r->beta_fast)) ||
                (err = get_opt_double(rs, "beta_slow", key, path, 1.0, &r->beta_slow)) ||
                (err = get_opt_double(rs, "mscale", key, path, 1.0, &r->mscale)) ||
                (err = get_opt_double(rs, "mscale_all_dim", key, path, 0.0,
                                      &r->mscale_all_dim)))
                return err;
            if (!(r->beta_fast > 0) || !(r->beta_slow > 0))
                return dsa_fail(DSA_RANGE, "%s: field '%s.%s': must be positive", path, key,
                                r->beta_fast > 0 ? "beta_slow" : "beta_fast");
        }
    }
    if (!(r->theta > 1.0))
        return dsa_fail(DSA_RANGE, "%s: field 'rope_theta': must be > 1, got %g", path,
                        r->theta);
    return DSA_OK;
}

static dsa_err parse_quant(const cJSON *root, const char *path, dsa_config *cfg)
{
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(root, "quantization_config");
    const char *s;
    dsa_err err;

    cfg->fp8 = 0;
    cfg->block_rows = cfg->block_cols = 0;
    if (!q || cJSON_IsNull(q))
        return DSA_OK;
    if (!cJSON_IsObject(q))
        return dsa_fail(DSA_FORMAT, "%s: field 'quantization_config': expected an object, got %s",
                        path, json_type_name(q));
    if ((err = get_string(q, "quant_method", "quantization_config.quant_method", path, NULL, &s)))
        return err;
    if (!s)
        return dsa_fail(DSA_FORMAT, "%s: field 'quantization_config.quant_method': missing",
                        path);
    if (strcmp(s, "awq") == 0)
        return dsa_config_parse_awq(q, path, cfg);
    if (strcmp(s, "fp8") != 0)
        return dsa_fail(DSA_UNSUPPORTED,
                        "%s: field 'quantization_config.quant_method': '%s' not supported "
                        "(fp8, awq)", path, s);
    if ((err = get_string(q, "fmt", "quantization_config.fmt", path, "e4m3", &s)))
        return err;
    if (strcmp(s, "e4m3") != 0)
        return dsa_fail(DSA_UNSUPPORTED,
                        "%s: field 'quantization_config.fmt': '%s' not supported (e4m3)", path, s);
    if ((err = get_string(q, "activation_scheme", "quantization_config.activation_scheme", path,
                          "dynamic", &s)))
        return err;
    if (strcmp(s, "dynamic") != 0)
        return dsa_fail(DSA_UNSUPPORTED,
                        "%s: field 'quantization_config.activation_scheme': '%s' not supported "
                        "(dynamic)", path, s);

    cfg->fp8 = 1;
    cfg->block_rows = cfg->block_cols = 128;
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(q, "weight_block_size");
    if (b && !cJSON_IsNull(b)) {
        const char *name = "quantization_config.weight_block_size";
        double r = 0, c = 0;
        if (!cJSON_IsArray(b) || cJSON_GetArraySize(b) != 2)
            return dsa_fail(DSA_FORMAT, "%s: field '%s': expected [rows, cols]", path, name);
        if ((err = get_integer(cJSON_GetArrayItem(b, 0), path, name, 1, 1 << 20, &r)) ||
            (err = get_integer(cJSON_GetArrayItem(b, 1), path, name, 1, 1 << 20, &c)))
            return err;
        cfg->block_rows = (int64_t)r;
        cfg->block_cols = (int64_t)c;
    }
    return DSA_OK;
}

/* Cross-field rules, after every field has a value. */
static dsa_err validate(const cJSON *root, const char *path, dsa_config *cfg)
{
    if (cfg->qk_rope_head_dim % 2)
        return dsa_fail(DSA_RANGE, "%s: field 'qk_rope_head_dim': must be even, got %lld", path,
                        (long long)cfg->qk_rope_head_dim);
    if (cfg->bos_token_id >= cfg->vocab_size)
        return dsa_fail(DSA_RANGE, "%s: field 'bos_token_id': %d not below vocab_size %lld", path,
                        cfg->bos_token_id, (long long)cfg->vocab_size);
    if (cfg->eos_token_id >= cfg->vocab_size)
        return dsa_fail(DSA_RANGE, "%s: field 'eos_token_id': %d not below vocab_size %lld", path,
                        cfg->eos_token_id, (long long)cfg->vocab_size);

    int E = cfg->n_routed_experts;
    if (E == 0)
        return DSA_OK; /* dense model: the MoE fields are unused */

    static const char *const moe_required[] = {"moe_intermediate_size", "num_experts_per_tok",
                                               "n_shared_experts"};
    for (size_t i = 0; i < sizeof moe_required / sizeof *moe_required; i++) {
        if (!cJSON_GetObjectItemCaseSensitive(root, moe_required[i]))
            return dsa_fail(DSA_FORMAT, "%s: field '%s': missing (required with n_routed_experts)",
                            path, moe_required[i]);
    }
    if (cfg->moe_intermediate_size <= 0)
        return dsa_fail(DSA_RANGE, "%s: field 'moe_intermediate_size': must be positive with "
                        "n_routed_experts %d", path, E);
    if (cfg->n_experts_per_tok <= 0)
        return dsa_fail(DSA_RANGE, "%s: field 'num_experts_per_tok': must be positive with "
                        "n_routed_experts %d", path, E);
    if (cfg->n_experts_per_tok > E)
        return dsa_fail(DSA_RANGE, "%s: field 'num_experts_per_tok': %d exceeds n_routed_experts %d",
                        path, cfg->n_experts_per_tok, E);
    if (E % cfg->n_group)
        return dsa_fail(DSA_RANGE, "%s: field 'n_group': n_routed_experts %d not divisible by %d",
                        path, E, cfg->n_group);
    if (cfg->topk_group > cfg->n_group)
        return dsa_fail(DSA_RANGE, "%s: field 'topk_group': %d exceeds n_group %d", path,
                        cfg->topk_group, cfg->n_group);
    /* Grouped routing can pick only among the kept groups' experts. */
    if (cfg->topk_method != DSA_TOPK_GREEDY &&
        cfg->n_experts_per_tok > cfg->topk_group * (E / cfg->n_group))
        return dsa_fail(DSA_RANGE, "%s: field 'num_experts_per_tok': %d exceeds topk_group %d x "
                        "%d experts per group", path, cfg->n_experts_per_tok, cfg->topk_group,
                        E / cfg->n_group);
    /* noaux_tc scores a group by the sum of its top-2 experts. */
    if (cfg->topk_method == DSA_TOPK_NOAUX_TC && cfg->n_group > 1 && E / cfg->n_group < 2)
        return dsa_fail(DSA_RANGE, "%s: field 'n_group': noaux_tc needs >= 2 experts per group, "
                        "got %d", path, E / cfg->n_group);
    return DSA_OK;
}

dsa_err dsa_config_parse(const char *json_text, const char *path, dsa_config *cfg)
{
    const char *end = NULL;
    const char *s;
    dsa_err err = DSA_OK;
    int kind;

    if (!path)
        path = "config.json";
    memset(cfg, 0, sizeof *cfg);
    if (!json_text)
        return dsa_fail(DSA_INVAL, "%s: no text", path);
    size_t len = strlen(json_text);
    cJSON *root = cJSON_ParseWithLengthOpts(json_text, len, &end, 0);
    if (!root) {
        size_t pos = end && end >= json_text ? (size_t)(end - json_text) : 0;
        return dsa_fail(DSA_FORMAT, "%s: malformed JSON at byte %zu", path, pos);
    }
    for (const char *p = end; p && *p; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            err = dsa_fail(DSA_FORMAT, "%s: malformed JSON at byte %zu: trailing data", path,
                           (size_t)(p - json_text));
            goto out;
        }
    }
    if (!cJSON_IsObject(root)) {
        err = dsa_fail(DSA_FORMAT, "%s: top level is %s, expected an object", path,
                       json_type_name(root));
        goto out;
    }

    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (!mt) {
        err = dsa_fail(DSA_FORMAT, "%s: field 'model_type': missing", path);
        goto out;
    }
    if (!cJSON_IsString(mt)) {
        err = dsa_fail(DSA_FORMAT, "%s: field 'model_type': expected a string, got %s", path,
                       json_type_name(mt));
        goto out;
    }
    if (strcmp(mt->valuestring, "deepseek_v3") == 0) {
        kind = KIND_V3;
    } else if (strcmp(mt->valuestring, "deepseek_v2") == 0) {
        kind = KIND_V2;
    } else if (strcmp(mt->valuestring, "qwen2") == 0 || strcmp(mt->valuestring, "llama") == 0) {
        snprintf(cfg->model_type, sizeof cfg->model_type, "%s", mt->valuestring);
        err = dsa_config_parse_dense(root, path, mt->valuestring[0] == 'q' ? DSA_ARCH_QWEN2
                                                                          : DSA_ARCH_LLAMA, cfg);
        goto out;
    } else {
        err = dsa_fail(DSA_UNSUPPORTED,
                       "%s: field 'model_type': '%.64s' not supported (deepseek_v3, "
                       "deepseek_v2, qwen2, llama)", path, mt->valuestring);
        goto out;
    }
    snprintf(cfg->model_type, sizeof cfg->model_type, "%s", mt->valuestring);

    for (size_t i = 0; i < sizeof config_fields / sizeof *config_fields; i++) {
        if ((err = parse_field(root, &config_fields[i], kind, path, cfg)))
            goto out;
    }

    if ((err = get_string(root, "scoring_func", "scoring_func", path,
                          kind == KIND_V3 ? "sigmoid" : "softmax", &s)))
        goto out;
    if (strcmp(s, "sigmoid") == 0) {
        cfg->scoring_func = DSA_SCORE_SIGMOID;
    } else if (strcmp(s, "softmax") == 0) {
        cfg->scoring_func = DSA_SCORE_SOFTMAX;
    } else {
        err = dsa_fail(DSA_UNSUPPORTED, "%s: field 'scoring_func': '%.64s' not supported "
                       "(sigmoid, softmax)", path, s);
        goto out;
    }

    if ((err = get_string(root, "topk_method", "topk_method", path,
                          kind == KIND_V3 ? "noaux_tc" : "greedy", &s)))
        goto out;
    if (strcmp(s, "noaux_tc") == 0) {
        cfg->topk_method = DSA_TOPK_NOAUX_TC;
    } else if (strcmp(s, "greedy") == 0 || strcmp(s, "gready") == 0) {
        /* "gready" is the spelling of DeepSeek-V2's own config default. */
        cfg->topk_method = DSA_TOPK_GREEDY;
    } else if (strcmp(s, "group_limited_greedy") == 0) {
        cfg->topk_method = DSA_TOPK_GROUP_LIMITED;
    } else {
        err = dsa_fail(DSA_UNSUPPORTED, "%s: field 'topk_method': '%.64s' not supported "
                       "(noaux_tc, greedy, group_limited_greedy)", path, s);
        goto out;
    }

    if ((err = parse_rope(root, path, cfg)) || (err = parse_quant(root, path, cfg)) ||
        (err = validate(root, path, cfg)))
        goto out;

out:
    cJSON_Delete(root);
    return err;
}

dsa_err dsa_config_load(const char *path, dsa_config *cfg)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    dsa_err err;

    memset(cfg, 0, sizeof *cfg);
    if (!f)
        return dsa_fail(errno == ENOENT ? DSA_NOTFOUND : DSA_IO, "%s: %s", path,
                        strerror(errno));
    /* config.json is a few KiB; 16 MiB bounds a wrong path to a huge file. */
    const long cap = 16L << 20;
    if (fseek(f, 0, SEEK_END) != 0) {
        err = dsa_fail(DSA_IO, "%s: %s", path, strerror(errno));
        goto out;
    }
    long n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0) {
        err = dsa_fail(DSA_IO, "%s: cannot determine size", path);
        goto out;
    }
    if (n > cap) {
        err = dsa_fail(DSA_FORMAT, "%s: %ld bytes, too large for a config", path, n);
        goto out;
    }
    buf = malloc((size_t)n + 1);
    if (!buf) {
        err = dsa_fail(DSA_NOMEM, "%s: out of memory", path);
        goto out;
    }
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        err = dsa_fail(DSA_IO, "%s: short read", path);
        goto out;
    }
    buf[n] = '\0';
    if (memchr(buf, '\0', (size_t)n)) {
        err = dsa_fail(DSA_FORMAT, "%s: NUL byte in JSON", path);
        goto out;
    }
    err = dsa_config_parse(buf, path, cfg);
out:
    free(buf);
    fclose(f);
    return err;
}

int dsa_config_layer_is_moe(const dsa_config *cfg, int l)
{
    return cfg->n_routed_experts > 0 && l >= cfg->first_k_dense_replace &&
           cfg->moe_layer_freq > 0 && l % cfg->moe_layer_freq == 0;
}

/* YaRN attention factor m = 0.1 * mscale_all_dim * ln(s) + 1 for s > 1
 * (yarn_get_mscale in HF's DeepseekV3Attention, which squares it into the
 * softmax scale; a zero mscale_all_dim leaves the scale alone). */
double dsa_config_softmax_scale(const dsa_config *cfg)
{
    if (dsa_config_is_dense(cfg))
        return 1.0 / sqrt((double)cfg->head_dim);
    double d = (double)(cfg->qk_nope_head_dim + cfg->qk_rope_head_dim);
    double tau = 1.0 / sqrt(d);
    const dsa_rope_config *r = &cfg->rope;
    if (r->yarn && r->factor > 1.0 && r->mscale_all_dim != 0.0) {
        double m = 0.1 * r->mscale_all_dim * log(r->factor) + 1.0;
        tau *= m * m;
    }
    return tau;
}

/* corr(r) of MODEL_SPEC.md §4: the dimension whose wavelength makes r
 * rotations over the original context L0. */
static double yarn_corr_dim(double rotations, double d, double base, double l0)
{
    return d * log(l0 / (2.0 * M_PI * rotations)) / (2.0 * log(base));
}

void dsa_config_rope_freqs(const dsa_config *cfg, float *inv_freq)
{
    const dsa_rope_config *r = &cfg->rope;
    int64_t d = cfg->qk_rope_head_dim;
    int64_t half = d / 2;
    double low = 0, high = 0;

    if (dsa_config_is_dense(cfg)) {
        dsa_config_dense_rope_freqs(cfg, inv_freq);
        return;
    }
    if (r->yarn) {
        double l0 = (double)r->original_max_position_embeddings;
        low = floor(yarn_corr_dim(r->beta_fast, (double)d, r->theta, l0));
        high = ceil(yarn_corr_dim(r->beta_slow, (double)d, r->theta, l0));
        if (low < 0)
            low = 0;
        if (high > (double)(d - 1))
            high = (double)(d - 1);
        if (low == high)
            high += 0.001;
    }
    for (int64_t i = 0; i < half; i++) {
        double theta = pow(r->theta, -2.0 * (double)i / (double)d);
        if (r->yarn) {
            double ramp = ((double)i - low) / (high - low);
            ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
            double smooth = 1.0 - ramp;
            theta = theta / r->factor * (1.0 - smooth) + theta * smooth;
        }
        inv_freq[i] = (float)theta;
    }
}
