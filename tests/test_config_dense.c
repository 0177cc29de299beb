/* test_config_dense.c - config.json of the R1-Distill architectures (qwen2,
 * llama) and AWQ quantization_config: the published configs' values,
 * transformers' defaults, refusals by field name, llama3 rope frequencies
 * against transformers' formula written out here, the derived context
 * length and the K/V cache bytes per token. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "common/config.h"
#include "worker/model.h"

/* deepseek-ai/DeepSeek-R1-Distill-Llama-8B config.json (shape fields) */
static const char *LLAMA_8B =
    "{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\",\"vocab_size\":128256,"
    "\"hidden_size\":4096,\"intermediate_size\":14336,\"num_hidden_layers\":32,"
    "\"num_attention_heads\":32,\"num_key_value_heads\":8,\"max_position_embeddings\":131072,"
    "\"rms_norm_eps\":1e-05,\"rope_theta\":500000.0,\"rope_scaling\":{\"factor\":8.0,"
    "\"high_freq_factor\":4.0,\"low_freq_factor\":1.0,\"original_max_position_embeddings\":8192,"
    "\"rope_type\":\"llama3\"},\"tie_word_embeddings\":false,\"bos_token_id\":128000,"
    "\"eos_token_id\":128001,\"hidden_act\":\"silu\",\"attention_bias\":false,"
    "\"mlp_bias\":false,\"pretraining_tp\":1,\"torch_dtype\":\"bfloat16\"}";

/* deepseek-ai/DeepSeek-R1-Distill-Qwen-7B config.json (shape fields) */
static const char *QWEN_7B =
    "{\"architectures\":[\"Qwen2ForCausalLM\"],\"model_type\":\"qwen2\",\"vocab_size\":152064,"
    "\"hidden_size\":3584,\"intermediate_size\":18944,\"num_hidden_layers\":28,"
    "\"num_attention_heads\":28,\"num_key_value_heads\":4,\"max_position_embeddings\":131072,"
    "\"rms_norm_eps\":1e-06,\"rope_theta\":10000,\"sliding_window\":4096,"
    "\"use_sliding_window\":false,\"max_window_layers\":28,\"tie_word_embeddings\":false,"
    "\"bos_token_id\":151643,\"eos_token_id\":151643,\"hidden_act\":\"silu\","
    "\"rope_scaling\":null,\"torch_dtype\":\"bfloat16\"}";

Test(config_dense, published_llama_8b)
{
    dsa_config c;
    cr_assert_eq(dsa_config_parse(LLAMA_8B, "x", &c), DSA_OK, "%s", dsa_errmsg());
    cr_assert_eq(c.arch, DSA_ARCH_LLAMA);
    cr_assert(dsa_config_is_dense(&c));
    cr_assert_eq(c.n_kv_heads, 8);
    cr_assert_eq(c.head_dim, 128);
    cr_assert_eq(c.qkv_bias, 0);
    cr_assert(c.rope.llama3);
    cr_assert_eq(c.rope.original_max_position_embeddings, 8192);
    cr_assert_eq(dsa_config_max_len(&c), 131072);
    cr_assert_float_eq(dsa_config_softmax_scale(&c), 1.0 / sqrt(128.0), 1e-12);
    /* K and V of 8 heads x 128 over 32 layers, BF16: 128 KiB per token */
    cr_assert_eq(dsa_model_block_bytes(&c, 32, 16, 2), 16 * 128 * 1024);
}

Test(config_dense, published_qwen_7b)
{
    dsa_config c;
    cr_assert_eq(dsa_config_parse(QWEN_7B, "x", &c), DSA_OK, "%s", dsa_errmsg());
    cr_assert_eq(c.arch, DSA_ARCH_QWEN2);
    cr_assert_eq(c.n_kv_heads, 4);
    cr_assert_eq(c.head_dim, 128);
    cr_assert_eq(c.qkv_bias, 1);
    cr_assert(!c.rope.llama3 && !c.rope.yarn);
    cr_assert_float_eq(c.rope.theta, 10000.0, 0);
    /* 2 x 4 x 128 values x 28 layers x 2 bytes = 56 KiB per token */
    cr_assert_eq(dsa_model_block_bytes(&c, 28, 1, 2), 57344);
}

/* transformers' _compute_llama3_parameters, in double */
Test(config_dense, llama3_frequencies)
{
    dsa_config c;
    cr_assert_eq(dsa_config_parse(LLAMA_8B, "x", &c), DSA_OK);
    float f[64];
    dsa_config_rope_freqs(&c, f);
    int n_low = 0, n_mid = 0, n_high = 0;
    for (int i = 0; i < 64; i++) {
        double base = 1.0 / pow(500000.0, 2.0 * i / 128.0), wl = 2 * M_PI / base, want;
        if (wl < 8192.0 / 4.0) {
            want = base, n_high++;
        } else if (wl > 8192.0 / 1.0) {
            want = base / 8.0, n_low++;
        } else {
            double s = (8192.0 / wl - 1.0) / (4.0 - 1.0);
            want = (1 - s) * base / 8.0 + s * base, n_mid++;
        }
        cr_assert(fabs(f[i] - want) <= 1e-6 * want, "i %d: %g vs %g", i, f[i], want);
    }
    cr_assert(n_low > 0 && n_mid > 0 && n_high > 0); /* all three bands exercised */
}

static void expect_refused(const char *json, dsa_err code, const char *field)
{
    dsa_config c;
    cr_assert_eq(dsa_config_parse(json, "cfg.json", &c), code, "%s", json);
    cr_assert(strstr(dsa_errmsg(), field), "message '%s' lacks '%s'", dsa_errmsg(), field);
}

Test(config_dense, defaults_and_refusals)
{
    dsa_config c;
    const char *min = "{\"model_type\":\"qwen2\",\"vocab_size\":64,\"hidden_size\":32,"
                      "\"intermediate_size\":48,\"num_hidden_layers\":1,"
                      "\"num_attention_heads\":4}";
    cr_assert_eq(dsa_config_parse(min, "x", &c), DSA_OK, "%s", dsa_errmsg());
    cr_assert_eq(c.n_kv_heads, 4);  /* num_key_value_heads defaults to the heads */
    cr_assert_eq(c.head_dim, 8);    /* hidden_size / heads */
    cr_assert_eq(c.max_position_embeddings, 32768);
    cr_assert_float_eq(c.rms_norm_eps, 1e-6, 0);
    expect_refused("{\"model_type\":\"qwen2\",\"vocab_size\":64,\"hidden_size\":32,"
                   "\"intermediate_size\":48,\"num_hidden_layers\":1,\"num_attention_heads\":4,"
                   "\"use_sliding_window\":true}", DSA_UNSUPPORTED, "use_sliding_window");
    expect_refused("{\"model_type\":\"llama\",\"vocab_size\":64,\"hidden_size\":32,"
                   "\"intermediate_size\":48,\"num_hidden_layers\":1,\"num_attention_heads\":4,"
                   "\"num_key_value_heads\":3}", DSA_RANGE, "num_key_value_heads");
    expect_refused("{\"model_type\":\"llama\",\"vocab_size\":64,\"hidden_size\":32,"
                   "\"intermediate_size\":48,\"num_hidden_layers\":1,\"num_attention_heads\":4,"
                   "\"rope_scaling\":{\"rope_type\":\"dynamic\",\"factor\":2}}",
                   DSA_UNSUPPORTED, "rope_type");
    expect_refused("{\"model_type\":\"llama\",\"vocab_size\":64,\"hidden_size\":32,"
                   "\"intermediate_size\":48,\"num_hidden_layers\":1,\"num_attention_heads\":4,"
                   "\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8}}",
                   DSA_FORMAT, "low_freq_factor");
    expect_refused("{\"model_type\":\"llama\",\"vocab_size\":64,\"hidden_size\":32,"
                   "\"intermediate_size\":48,\"num_hidden_layers\":1,\"num_attention_heads\":4,"
                   "\"hidden_act\":\"gelu\"}", DSA_UNSUPPORTED, "hidden_act");
    expect_refused("{\"model_type\":\"llama\",\"vocab_size\":64,\"hidden_size\":32,"
                   "\"intermediate_size\":48,\"num_attention_heads\":4}", DSA_FORMAT,
                   "num_hidden_layers");
    expect_refused("{\"model_type\":\"mistral\"}", DSA_UNSUPPORTED, "model_type");
}

Test(config_dense, awq_quantization_config)
{
    dsa_config c;
    const char *awq = "{\"model_type\":\"qwen2\",\"vocab_size\":64,\"hidden_size\":32,"
                      "\"intermediate_size\":48,\"num_hidden_layers\":1,"
                      "\"num_attention_heads\":4,\"quantization_config\":{\"bits\":4,"
                      "\"group_size\":128,\"quant_method\":\"awq\",\"version\":\"gemm\","
                      "\"zero_point\":true,\"modules_to_not_convert\":[\"layers.0.mlp\"]}}";
    cr_assert_eq(dsa_config_parse(awq, "x", &c), DSA_OK, "%s", dsa_errmsg());
    cr_assert(c.awq);
    cr_assert_eq(c.awq_group, 128);
    cr_assert(dsa_config_awq_quantised(&c, "model.layers.0.self_attn.q_proj"));
    cr_assert(!dsa_config_awq_quantised(&c, "model.layers.0.mlp.down_proj"));
    cr_assert(!dsa_config_awq_quantised(&c, "lm_head"));
    cr_assert(!dsa_config_awq_quantised(&c, "model.layers.3.mlp.gate"));
    cr_assert(dsa_config_awq_quantised(&c, "model.layers.3.mlp.gate_proj"));
    const char *gemv = "{\"model_type\":\"llama\",\"vocab_size\":64,\"hidden_size\":32,"
                       "\"intermediate_size\":48,\"num_hidden_layers\":1,"
                       "\"num_attention_heads\":4,\"quantization_config\":{\"bits\":4,"
                       "\"group_size\":128,\"quant_method\":\"awq\",\"version\":\"gemv\"}}";
    expect_refused(gemv, DSA_UNSUPPORTED, "version");
    const char *gptq = "{\"model_type\":\"llama\",\"vocab_size\":64,\"hidden_size\":32,"
                       "\"intermediate_size\":48,\"num_hidden_layers\":1,"
                       "\"num_attention_heads\":4,\"quantization_config\":{\"bits\":4,"
                       "\"group_size\":128,\"quant_method\":\"gptq\"}}";
    expect_refused(gptq, DSA_UNSUPPORTED, "quant_method");
}
