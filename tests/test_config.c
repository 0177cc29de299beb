/* test_config.c - config.json parsing, defaults, validation, softmax scale
 * and YaRN frequencies. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/config.h"
#include "tests/support.h"

/* ---- helpers ---- */

static char *fixture_text(const char *name)
{
    char rel[128];
    snprintf(rel, sizeof rel, "config/%s", name);
    char *path = dsa_test_data_path(rel);
    cr_assert_not_null(path);
    char *text = dsa_test_read_file(path, NULL);
    cr_assert_not_null(text, "cannot read %s", path);
    free(path);
    return text;
}

static void load_fixture(const char *name, dsa_config *cfg)
{
    char rel[128];
    snprintf(rel, sizeof rel, "config/%s", name);
    char *path = dsa_test_data_path(rel);
    dsa_err err = dsa_config_load(path, cfg);
    cr_assert_eq(err, DSA_OK, "%s: %s", path, dsa_errmsg());
    free(path);
}

/* Parses `fixture` with `field` ("a" or "a.b") replaced by the JSON text
 * `value`, or removed when value is NULL. */
static dsa_err parse_with(const char *fixture, const char *field, const char *value,
                          dsa_config *cfg)
{
    char *text = fixture_text(fixture);
    cJSON *root = cJSON_Parse(text);
    cr_assert_not_null(root);
    free(text);

    cJSON *obj = root;
    char key[128];
    snprintf(key, sizeof key, "%s", field);
    char *dot = strchr(key, '.');
    const char *leaf = key;
    if (dot) {
        *dot = '\0';
        obj = cJSON_GetObjectItemCaseSensitive(root, key);
        cr_assert(cJSON_IsObject(obj), "no object %s", key);
        leaf = dot + 1;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(obj, leaf);
    if (value) {
        cJSON *v = cJSON_Parse(value);
        cr_assert_not_null(v, "bad test value %s", value);
        cJSON_AddItemToObject(obj, leaf, v);
    }
    char *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    dsa_err err = dsa_config_parse(out, fixture, cfg);
    cJSON_free(out);
    return err;
}

static void expect_fail_in(const char *fixture, const char *field, const char *value,
                           dsa_err code, const char *needle)
{
    dsa_config cfg;
    dsa_err err = parse_with(fixture, field, value, &cfg);
    cr_assert_eq(err, code, "%s=%s: got %s, want %s (%s)", field, value ? value : "(removed)",
                 dsa_strerror(err), dsa_strerror(code), dsa_errmsg());
    cr_assert(strstr(dsa_errmsg(), fixture), "message lacks the file: %s", dsa_errmsg());
    cr_assert(strstr(dsa_errmsg(), needle), "message lacks '%s': %s", needle, dsa_errmsg());
}

static void expect_fail(const char *field, const char *value, dsa_err code, const char *needle)
{
    expect_fail_in("deepseek_v3.json", field, value, code, needle);
}

/* ---- real configs ---- */

Test(config, v3_values)
{
    dsa_config c;
    load_fixture("deepseek_v3.json", &c);
    cr_assert_str_eq(c.model_type, "deepseek_v3");
    cr_assert_eq(c.vocab_size, 129280);
    cr_assert_eq(c.hidden_size, 7168);
    cr_assert_eq(c.intermediate_size, 18432);
    cr_assert_eq(c.moe_intermediate_size, 2048);
    cr_assert_eq(c.n_layers, 61);
    cr_assert_eq(c.n_nextn_predict_layers, 1);
    cr_assert_eq(c.n_heads, 128);
    cr_assert_eq(c.q_lora_rank, 1536);
    cr_assert_eq(c.kv_lora_rank, 512);
    cr_assert_eq(c.qk_nope_head_dim, 128);
    cr_assert_eq(c.qk_rope_head_dim, 64);
    cr_assert_eq(c.v_head_dim, 128);
    cr_assert_eq(c.n_routed_experts, 256);
    cr_assert_eq(c.n_shared_experts, 1);
    cr_assert_eq(c.n_experts_per_tok, 8);
    cr_assert_eq(c.n_group, 8);
    cr_assert_eq(c.topk_group, 4);
    cr_assert_eq(c.first_k_dense_replace, 3);
    cr_assert_eq(c.moe_layer_freq, 1);
    cr_assert_float_eq(c.routed_scaling_factor, 2.5, 1e-12);
    cr_assert_eq(c.norm_topk_prob, 1);
    cr_assert_eq(c.scoring_func, DSA_SCORE_SIGMOID);
    cr_assert_eq(c.topk_method, DSA_TOPK_NOAUX_TC);
    cr_assert_float_eq(c.rms_norm_eps, 1e-6, 1e-15);
    cr_assert_float_eq(c.rope.theta, 10000.0, 1e-9);
    cr_assert_eq(c.rope.yarn, 1);
    cr_assert_float_eq(c.rope.factor, 40.0, 1e-12);
    cr_assert_eq(c.rope.original_max_position_embeddings, 4096);
    cr_assert_float_eq(c.rope.beta_fast, 32.0, 1e-12);
    cr_assert_float_eq(c.rope.beta_slow, 1.0, 1e-12);
    cr_assert_float_eq(c.rope.mscale, 1.0, 1e-12);
    cr_assert_float_eq(c.rope.mscale_all_dim, 1.0, 1e-12);
    cr_assert_eq(c.max_position_embeddings, 163840);
    cr_assert_eq(c.bos_token_id, 0);
    cr_assert_eq(c.eos_token_id, 1);
    cr_assert_eq(c.tie_word_embeddings, 0);
    cr_assert_eq(c.fp8, 1);
    cr_assert_eq(c.block_rows, 128);
    cr_assert_eq(c.block_cols, 128);

    for (int l = 0; l < 3; l++)
        cr_assert_not(dsa_config_layer_is_moe(&c, l), "layer %d", l);
    for (int l = 3; l < 61; l++)
        cr_assert(dsa_config_layer_is_moe(&c, l), "layer %d", l);
}

Test(config, v3_softmax_scale)
{
    dsa_config c;
    load_fixture("deepseek_v3.json", &c);
    /* m = 0.1 ln 40 + 1 = 1.368888; tau = 192^-0.5 m^2 */
    cr_assert_float_eq(dsa_config_softmax_scale(&c), 0.1352338, 1e-6);
    double m = 0.1 * log(40.0) + 1.0;
    cr_assert_float_eq(dsa_config_softmax_scale(&c), m * m / sqrt(192.0), 1e-12);
}

Test(config, v3_yarn_freqs)
{
    dsa_config c;
    load_fixture("deepseek_v3.json", &c);
    float f[32];
    dsa_config_rope_freqs(&c, f);
    /* low = 10, high = 23: i <= 10 keeps theta_i, i >= 23 is theta_i / 40,
     * in between a linear ramp (MODEL_SPEC.md §4). */
    for (int i = 0; i < 32; i++) {
        double theta = pow(10000.0, -2.0 * i / 64.0);
        double ramp = (i - 10.0) / 13.0;
        ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
        double want = theta / 40.0 * ramp + theta * (1.0 - ramp);
        cr_assert(fabs(f[i] - want) <= 1e-6 * want, "i=%d got %.9g want %.9g", i, f[i], want);
        if (i <= 10)
            cr_assert(fabs(f[i] - theta) <= 1e-6 * theta, "i=%d not extrapolated", i);
        if (i >= 23)
            cr_assert(fabs(f[i] - theta / 40) <= 1e-6 * theta / 40, "i=%d not interpolated", i);
    }
    cr_assert(f[11] < pow(10000.0, -22.0 / 64.0) && f[11] > pow(10000.0, -22.0 / 64.0) / 40);
}

Test(config, v2_lite_values)
{
    dsa_config c;
    load_fixture("deepseek_v2_lite.json", &c);
    cr_assert_str_eq(c.model_type, "deepseek_v2");
    cr_assert_eq(c.q_lora_rank, 0);
    cr_assert_eq(c.hidden_size, 2048);
    cr_assert_eq(c.n_heads, 16);
    cr_assert_eq(c.n_layers, 27);
    cr_assert_eq(c.n_nextn_predict_layers, 0);
    cr_assert_eq(c.n_routed_experts, 64);
    cr_assert_eq(c.n_shared_experts, 2);
    cr_assert_eq(c.n_experts_per_tok, 6);
    cr_assert_eq(c.n_group, 1);
    cr_assert_eq(c.topk_group, 1);
    cr_assert_eq(c.scoring_func, DSA_SCORE_SOFTMAX);
    cr_assert_eq(c.topk_method, DSA_TOPK_GREEDY);
    cr_assert_eq(c.norm_topk_prob, 0);
    cr_assert_eq(c.bos_token_id, 100000);
    cr_assert_eq(c.eos_token_id, 100001);
    cr_assert_eq(c.fp8, 0);
    cr_assert_eq(c.first_k_dense_replace, 1);
    cr_assert_not(dsa_config_layer_is_moe(&c, 0));
    cr_assert(dsa_config_layer_is_moe(&c, 1));
    cr_assert(dsa_config_layer_is_moe(&c, 26));
    double m = 0.1 * 0.707 * log(40.0) + 1.0;
    cr_assert_float_eq(dsa_config_softmax_scale(&c), m * m / sqrt(192.0), 1e-12);
}

Test(config, rope_parameters_variant)
{
    dsa_config c;
    load_fixture("tiny_rope_parameters.json", &c);
    cr_assert_eq(c.rope.yarn, 1);
    cr_assert_float_eq(c.rope.theta, 50000.0, 1e-9);
    cr_assert_float_eq(c.rope.factor, 4.0, 1e-12);
    cr_assert_eq(c.rope.original_max_position_embeddings, 512);
    /* moe_layer_freq 2, first dense 1: MoE at 2 only among 0..3. */
    cr_assert_not(dsa_config_layer_is_moe(&c, 0));
    cr_assert_not(dsa_config_layer_is_moe(&c, 1));
    cr_assert(dsa_config_layer_is_moe(&c, 2));
    cr_assert_not(dsa_config_layer_is_moe(&c, 3));
    /* Defaults of V3 for the absent behavioural fields. */
    cr_assert_eq(c.scoring_func, DSA_SCORE_SIGMOID);
    cr_assert_eq(c.topk_method, DSA_TOPK_NOAUX_TC);
    cr_assert_float_eq(c.routed_scaling_factor, 2.5, 1e-12);
    cr_assert_eq(c.norm_topk_prob, 1);
    cr_assert_eq(c.bos_token_id, 0);
    cr_assert_eq(c.eos_token_id, 1);
    cr_assert_float_eq(c.rms_norm_eps, 1e-6, 1e-15);
    cr_assert_eq(c.fp8, 0);
    cr_assert_eq(c.n_nextn_predict_layers, 0);
    double m = 0.1 * log(4.0) + 1.0;
    cr_assert_float_eq(dsa_config_softmax_scale(&c), m * m / sqrt(24.0), 1e-12);

    /* d = 8, L0 = 512, b = 50000: recompute the ramp independently. */
    float f[4];
    dsa_config_rope_freqs(&c, f);
    double corr_lo = 8 * log(512 / (2 * M_PI * 32)) / (2 * log(50000.0));
    double corr_hi = 8 * log(512 / (2 * M_PI * 1)) / (2 * log(50000.0));
    double lo = fmax(floor(corr_lo), 0), hi = fmin(ceil(corr_hi), 7);
    if (lo == hi)
        hi += 0.001;
    for (int i = 0; i < 4; i++) {
        double theta = pow(50000.0, -2.0 * i / 8.0);
        double ramp = fmin(fmax((i - lo) / (hi - lo), 0), 1);
        double want = theta / 4 * ramp + theta * (1 - ramp);
        cr_assert(fabs(f[i] - want) <= 1e-6 * want, "i=%d got %g want %g", i, f[i], want);
    }
}

Test(config, rope_parameters_default_type)
{
    dsa_config c;
    dsa_err err = parse_with("tiny_rope_parameters.json", "rope_parameters",
                             "{\"rope_type\": \"default\", \"rope_theta\": 20000}", &c);
    cr_assert_eq(err, DSA_OK, "%s", dsa_errmsg());
    cr_assert_eq(c.rope.yarn, 0);
    cr_assert_float_eq(c.rope.theta, 20000.0, 1e-9);
    cr_assert_float_eq(dsa_config_softmax_scale(&c), 1.0 / sqrt(24.0), 1e-12);
    float f[4];
    dsa_config_rope_freqs(&c, f);
    for (int i = 0; i < 4; i++) {
        double want = pow(20000.0, -2.0 * i / 8.0);
        cr_assert(fabs(f[i] - want) <= 1e-6 * want, "i=%d", i);
    }
}

Test(config, rope_scaling_null_is_plain)
{
    dsa_config c;
    cr_assert_eq(parse_with("deepseek_v3.json", "rope_scaling", "null", &c), DSA_OK, "%s",
                 dsa_errmsg());
    cr_assert_eq(c.rope.yarn, 0);
    cr_assert_float_eq(dsa_config_softmax_scale(&c), 1.0 / sqrt(192.0), 1e-12);
    float f[32];
    dsa_config_rope_freqs(&c, f);
    for (int i = 0; i < 32; i++) {
        double want = pow(10000.0, -2.0 * i / 64.0);
        cr_assert(fabs(f[i] - want) <= 1e-6 * want, "i=%d", i);
    }
}

Test(config, yarn_defaults_for_absent_betas)
{
    dsa_config c;
    cr_assert_eq(parse_with("deepseek_v3.json", "rope_scaling",
                            "{\"type\":\"yarn\",\"factor\":40,"
                            "\"original_max_position_embeddings\":4096}", &c),
                 DSA_OK, "%s", dsa_errmsg());
    cr_assert_float_eq(c.rope.beta_fast, 32.0, 0);
    cr_assert_float_eq(c.rope.beta_slow, 1.0, 0);
    cr_assert_float_eq(c.rope.mscale, 1.0, 0);
    cr_assert_float_eq(c.rope.mscale_all_dim, 0.0, 0);
    /* mscale_all_dim 0 leaves the scale at 192^-0.5 (HF behaviour). */
    cr_assert_float_eq(dsa_config_softmax_scale(&c), 1.0 / sqrt(192.0), 1e-12);
}

Test(config, nulls_map_to_neutral_values)
{
    dsa_config c;
    cr_assert_eq(parse_with("deepseek_v3.json", "q_lora_rank", "null", &c), DSA_OK);
    cr_assert_eq(c.q_lora_rank, 0);
    cr_assert_eq(parse_with("deepseek_v2_lite.json", "n_group", "null", &c), DSA_OK);
    cr_assert_eq(c.n_group, 1);
    cr_assert_eq(parse_with("deepseek_v2_lite.json", "topk_group", "null", &c), DSA_OK);
    cr_assert_eq(c.topk_group, 1);
    cr_assert_eq(parse_with("deepseek_v3.json", "quantization_config", "null", &c), DSA_OK);
    cr_assert_eq(c.fp8, 0);
}

Test(config, dense_model)
{
    dsa_config c;
    cr_assert_eq(parse_with("deepseek_v2_lite.json", "n_routed_experts", "null", &c), DSA_OK,
                 "%s", dsa_errmsg());
    cr_assert_eq(c.n_routed_experts, 0);
    for (int l = 0; l < c.n_layers; l++)
        cr_assert_not(dsa_config_layer_is_moe(&c, l));
}

Test(config, v2_defaults)
{
    const char *text =
        "{\"model_type\":\"deepseek_v2\",\"vocab_size\":1000,\"hidden_size\":64,"
        "\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
        "\"q_lora_rank\":null,\"kv_lora_rank\":32,\"qk_nope_head_dim\":16,"
        "\"qk_rope_head_dim\":8,\"v_head_dim\":16,\"n_routed_experts\":8,"
        "\"n_shared_experts\":2,\"num_experts_per_tok\":2,\"moe_intermediate_size\":32}";
    dsa_config c;
    cr_assert_eq(dsa_config_parse(text, "v2.json", &c), DSA_OK, "%s", dsa_errmsg());
    cr_assert_eq(c.scoring_func, DSA_SCORE_SOFTMAX);
    cr_assert_eq(c.topk_method, DSA_TOPK_GREEDY);
    cr_assert_eq(c.n_group, 1);
    cr_assert_eq(c.topk_group, 1);
    cr_assert_eq(c.first_k_dense_replace, 0);
    cr_assert_eq(c.norm_topk_prob, 0);
    cr_assert_float_eq(c.routed_scaling_factor, 1.0, 0);
    cr_assert_eq(c.max_position_embeddings, 2048);
    cr_assert_eq(c.bos_token_id, 1);
    cr_assert_eq(c.eos_token_id, 2);
    cr_assert_eq(c.rope.yarn, 0);
    cr_assert_float_eq(c.rope.theta, 10000.0, 0);
}

Test(config, group_limited_and_gready_spellings)
{
    dsa_config c;
    cr_assert_eq(parse_with("deepseek_v2_lite.json", "topk_method", "\"gready\"", &c), DSA_OK);
    cr_assert_eq(c.topk_method, DSA_TOPK_GREEDY);
    cr_assert_eq(parse_with("deepseek_v2_lite.json", "topk_method", "\"group_limited_greedy\"",
                            &c), DSA_OK, "%s", dsa_errmsg());
    cr_assert_eq(c.topk_method, DSA_TOPK_GROUP_LIMITED);
}

Test(config, eos_list_takes_first)
{
    dsa_config c;
    cr_assert_eq(parse_with("deepseek_v3.json", "eos_token_id", "[1, 7]", &c), DSA_OK, "%s",
                 dsa_errmsg());
    cr_assert_eq(c.eos_token_id, 1);
}

Test(config, integral_float_accepted)
{
    dsa_config c;
    cr_assert_eq(parse_with("deepseek_v3.json", "hidden_size", "7168.0", &c), DSA_OK);
    cr_assert_eq(c.hidden_size, 7168);
}

/* ---- failures ---- */

Test(config, malformed_json)
{
    dsa_config c;
    dsa_err err = dsa_config_parse("{\"model_type\": \"deepseek_v3\",, }", "bad.json", &c);
    cr_assert_eq(err, DSA_FORMAT);
    cr_assert(strstr(dsa_errmsg(), "bad.json"), "%s", dsa_errmsg());
    cr_assert(strstr(dsa_errmsg(), "byte 30"), "%s", dsa_errmsg());
}

Test(config, trailing_garbage)
{
    dsa_config c;
    cr_assert_eq(dsa_config_parse("{} x", "bad.json", &c), DSA_FORMAT);
    cr_assert(strstr(dsa_errmsg(), "bad.json: malformed JSON at byte 3"), "%s", dsa_errmsg());
}

Test(config, top_level_not_object)
{
    dsa_config c;
    cr_assert_eq(dsa_config_parse("[1, 2]", "arr.json", &c), DSA_FORMAT);
    cr_assert(strstr(dsa_errmsg(), "arr.json"), "%s", dsa_errmsg());
    cr_assert(strstr(dsa_errmsg(), "object"), "%s", dsa_errmsg());
}

Test(config, missing_file)
{
    dsa_config c;
    cr_assert_eq(dsa_config_load("/nonexistent/dir/config.json", &c), DSA_NOTFOUND);
    cr_assert(strstr(dsa_errmsg(), "/nonexistent/dir/config.json"), "%s", dsa_errmsg());
}

Test(config, missing_model_type)
{
    expect_fail("model_type", NULL, DSA_FORMAT, "field 'model_type': missing");
}

Test(config, unsupported_model_type)
{
    expect_fail("model_type", "\"mistral\"", DSA_UNSUPPORTED, "field 'model_type'");
}

Test(config, missing_required_dim)
{
    expect_fail("hidden_size", NULL, DSA_FORMAT, "field 'hidden_size': missing");
    expect_fail("kv_lora_rank", NULL, DSA_FORMAT, "field 'kv_lora_rank': missing");
    expect_fail("qk_rope_head_dim", NULL, DSA_FORMAT, "field 'qk_rope_head_dim': missing");
    expect_fail("q_lora_rank", NULL, DSA_FORMAT, "field 'q_lora_rank': missing");
    expect_fail("n_routed_experts", NULL, DSA_FORMAT, "field 'n_routed_experts': missing");
}

Test(config, missing_moe_dims)
{
    expect_fail("moe_intermediate_size", NULL, DSA_FORMAT, "field 'moe_intermediate_size'");
    expect_fail("num_experts_per_tok", NULL, DSA_FORMAT, "field 'num_experts_per_tok'");
    expect_fail("n_shared_experts", NULL, DSA_FORMAT, "field 'n_shared_experts'");
}

Test(config, wrong_type_string_for_int)
{
    expect_fail("hidden_size", "\"7168\"", DSA_FORMAT, "field 'hidden_size': expected an integer");
}

Test(config, wrong_type_bool)
{
    expect_fail("norm_topk_prob", "1", DSA_FORMAT, "field 'norm_topk_prob': expected a boolean");
}

Test(config, wrong_type_string_field)
{
    expect_fail("scoring_func", "3", DSA_FORMAT, "field 'scoring_func': expected a string");
}

Test(config, wrong_type_object)
{
    expect_fail("rope_scaling", "[1]", DSA_FORMAT, "field 'rope_scaling'");
    expect_fail("quantization_config", "\"fp8\"", DSA_FORMAT, "field 'quantization_config'");
}

Test(config, null_not_allowed)
{
    expect_fail("hidden_size", "null", DSA_FORMAT, "field 'hidden_size': must not be null");
}

Test(config, non_integer)
{
    expect_fail("num_attention_heads", "1.5", DSA_FORMAT, "field 'num_attention_heads'");
}

Test(config, int_too_large)
{
    expect_fail("num_attention_heads", "1e12", DSA_RANGE, "field 'num_attention_heads'");
}

Test(config, negative_dim)
{
    expect_fail("hidden_size", "-1", DSA_RANGE, "field 'hidden_size': must be positive");
}

Test(config, zero_kv_lora_rank)
{
    expect_fail("kv_lora_rank", "0", DSA_RANGE, "field 'kv_lora_rank'");
}

Test(config, zero_layers)
{
    expect_fail("num_hidden_layers", "0", DSA_RANGE, "field 'num_hidden_layers'");
}

Test(config, odd_rope_dim)
{
    expect_fail("qk_rope_head_dim", "63", DSA_RANGE, "field 'qk_rope_head_dim': must be even");
}

Test(config, experts_not_divisible_by_groups)
{
    expect_fail("n_group", "7", DSA_RANGE, "field 'n_group'");
}

Test(config, topk_group_above_n_group)
{
    expect_fail("topk_group", "9", DSA_RANGE, "field 'topk_group'");
}

Test(config, zero_n_group)
{
    expect_fail("n_group", "0", DSA_RANGE, "field 'n_group'");
}

Test(config, experts_per_tok_above_experts)
{
    expect_fail_in("deepseek_v2_lite.json", "num_experts_per_tok", "65", DSA_RANGE,
                   "field 'num_experts_per_tok'");
}

Test(config, experts_per_tok_above_kept_groups)
{
    /* topk_group 1 of 8 groups keeps 32 experts; 33 cannot be chosen. */
    dsa_config c;
    char *text = fixture_text("deepseek_v3.json");
    cJSON *root = cJSON_Parse(text);
    free(text);
    cJSON_ReplaceItemInObject(root, "topk_group", cJSON_CreateNumber(1));
    cJSON_ReplaceItemInObject(root, "num_experts_per_tok", cJSON_CreateNumber(33));
    char *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    dsa_err err = dsa_config_parse(out, "deepseek_v3.json", &c);
    cJSON_free(out);
    cr_assert_eq(err, DSA_RANGE, "%s", dsa_errmsg());
    cr_assert(strstr(dsa_errmsg(), "deepseek_v3.json: field 'num_experts_per_tok'"), "%s",
              dsa_errmsg());
}

Test(config, zero_experts_per_tok)
{
    expect_fail("num_experts_per_tok", "0", DSA_RANGE, "field 'num_experts_per_tok'");
}

Test(config, eos_outside_vocab)
{
    expect_fail("eos_token_id", "129280", DSA_RANGE, "field 'eos_token_id'");
}

Test(config, bos_outside_vocab)
{
    expect_fail("bos_token_id", "200000", DSA_RANGE, "field 'bos_token_id'");
}

Test(config, eps_not_positive)
{
    expect_fail("rms_norm_eps", "0", DSA_RANGE, "field 'rms_norm_eps'");
    expect_fail("rms_norm_eps", "-1e-6", DSA_RANGE, "field 'rms_norm_eps'");
}

Test(config, unknown_scoring_func)
{
    expect_fail("scoring_func", "\"tanh\"", DSA_UNSUPPORTED, "field 'scoring_func'");
}

Test(config, unknown_topk_method)
{
    expect_fail("topk_method", "\"random\"", DSA_UNSUPPORTED, "field 'topk_method'");
}

Test(config, unsupported_quant_method)
{
    expect_fail("quantization_config.quant_method", "\"bitsandbytes\"", DSA_UNSUPPORTED,
                "field 'quantization_config.quant_method'");
}

Test(config, unsupported_quant_fmt)
{
    expect_fail("quantization_config.fmt", "\"e5m2\"", DSA_UNSUPPORTED,
                "field 'quantization_config.fmt'");
}

Test(config, unsupported_activation_scheme)
{
    expect_fail("quantization_config.activation_scheme", "\"static\"", DSA_UNSUPPORTED,
                "field 'quantization_config.activation_scheme'");
}

Test(config, bad_weight_block_size)
{
    expect_fail("quantization_config.weight_block_size", "[128]", DSA_FORMAT,
                "field 'quantization_config.weight_block_size'");
    expect_fail("quantization_config.weight_block_size", "[128, 0]", DSA_RANGE,
                "field 'quantization_config.weight_block_size'");
}

Test(config, custom_weight_block_size)
{
    dsa_config c;
    cr_assert_eq(parse_with("deepseek_v3.json", "quantization_config.weight_block_size",
                            "[64, 32]", &c), DSA_OK);
    cr_assert_eq(c.block_rows, 64);
    cr_assert_eq(c.block_cols, 32);
}

Test(config, unsupported_rope_type)
{
    expect_fail("rope_scaling.type", "\"linear\"", DSA_UNSUPPORTED, "field 'rope_scaling.type'");
}

Test(config, rope_type_missing)
{
    expect_fail("rope_scaling.type", NULL, DSA_FORMAT, "field 'rope_scaling.rope_type'");
}

Test(config, yarn_missing_factor)
{
    expect_fail("rope_scaling.factor", NULL, DSA_FORMAT, "field 'rope_scaling.factor'");
}

Test(config, yarn_bad_factor)
{
    expect_fail("rope_scaling.factor", "0", DSA_RANGE, "field 'rope_scaling.factor'");
    expect_fail("rope_scaling.factor", "\"40\"", DSA_FORMAT, "field 'rope_scaling.factor'");
}

Test(config, yarn_missing_original_max)
{
    expect_fail("rope_scaling.original_max_position_embeddings", NULL, DSA_FORMAT,
                "field 'rope_scaling.original_max_position_embeddings'");
}

Test(config, yarn_bad_beta)
{
    expect_fail("rope_scaling.beta_fast", "0", DSA_RANGE, "field 'rope_scaling.beta_fast'");
}

Test(config, rope_parameters_bad_theta)
{
    expect_fail_in("tiny_rope_parameters.json", "rope_parameters.rope_theta", "\"big\"",
                   DSA_FORMAT, "field 'rope_parameters.rope_theta'");
}

Test(config, bad_rope_theta)
{
    expect_fail("rope_theta", "0.5", DSA_RANGE, "field 'rope_theta'");
}
