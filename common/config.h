/* config.h - a checkpoint's config.json as a validated struct.
 *
 * Reads model_type deepseek_v3 (and deepseek_v2 where the fields coincide),
 * and qwen2 / llama (the R1-Distill models: config_dense.c).
 * No field is assumed to have DeepSeek-V3's value (MODEL_SPEC.md §1): tiny test
 * models change every dimension. */
#ifndef DSA_COMMON_CONFIG_H
#define DSA_COMMON_CONFIG_H

#include <stdint.h>

#include "common/error.h"

typedef enum dsa_score_func {
    DSA_SCORE_SIGMOID,
    DSA_SCORE_SOFTMAX,
} dsa_score_func;

typedef enum dsa_topk_method {
    DSA_TOPK_NOAUX_TC,      /* V3: grouped top-k with correction bias */
    DSA_TOPK_GREEDY,        /* V2-Lite: plain top-k */
    DSA_TOPK_GROUP_LIMITED, /* V2: group by max score, no bias */
} dsa_topk_method;

/* The model family: DeepSeek-V3/V2 (MLA + MoE) or a dense GQA transformer
 * (Qwen2ForCausalLM, LlamaForCausalLM: the R1-Distill checkpoints). */
typedef enum dsa_arch {
    DSA_ARCH_DEEPSEEK,
    DSA_ARCH_QWEN2,
    DSA_ARCH_LLAMA,
} dsa_arch;

typedef struct dsa_rope_config {
    double theta;           /* rope_theta */
    int yarn;               /* 1 when rope_scaling type is "yarn" */
    int llama3;             /* 1 when rope_scaling type is "llama3" (factor, L0 below) */
    double low_freq_factor, high_freq_factor; /* llama3 only */
    double factor;          /* s */
    int64_t original_max_position_embeddings; /* L0 */
    double beta_fast, beta_slow;
    double mscale, mscale_all_dim;
} dsa_rope_config;

#define DSA_CONFIG_AWQ_SKIP_MAX 16

typedef struct dsa_config {
    char model_type[32];
    dsa_arch arch;
    int64_t vocab_size;
    int64_t hidden_size;            /* D */
    int64_t intermediate_size;      /* dense MLP width */
    int64_t moe_intermediate_size;  /* per expert */
    int n_layers;                   /* num_hidden_layers (without MTP) */
    int n_nextn_predict_layers;     /* MTP layers stored after n_layers */
    int n_heads;                    /* num_attention_heads */
    int64_t q_lora_rank;            /* 0: no q compression (q_proj) */
    int64_t kv_lora_rank;           /* latent width, 512 for V3 */
    int64_t qk_nope_head_dim, qk_rope_head_dim, v_head_dim;
    int n_routed_experts;           /* 0: dense model */
    int n_shared_experts;
    int n_experts_per_tok;
    int n_group, topk_group;
    int first_k_dense_replace, moe_layer_freq;
    double routed_scaling_factor;
    int norm_topk_prob;
    dsa_score_func scoring_func;
    dsa_topk_method topk_method;
    double rms_norm_eps;
    dsa_rope_config rope;
    int64_t max_position_embeddings;
    int bos_token_id, eos_token_id;
    int tie_word_embeddings;
    /* Dense architectures (arch != DSA_ARCH_DEEPSEEK); the MLA and MoE
     * fields above are 0 for them. */
    int n_kv_heads;                 /* num_key_value_heads (GQA) */
    int64_t head_dim;               /* head_dim, or hidden_size / num_attention_heads */
    int qkv_bias;                   /* q/k/v projections have a bias (Qwen2; Llama attention_bias) */
    /* quantization_config: fp8 block-scaled weights when fp8 != 0 */
    int fp8;
    int64_t block_rows, block_cols; /* weight_block_size, 128x128 */
    /* quantization_config quant_method awq (version gemm, 4 bits, zero
     * point): linears are packed int4 except those whose name contains one
     * of modules_to_not_convert (awq_skip). */
    int awq;
    int64_t awq_group;              /* group_size (input rows per scale) */
    int n_awq_skip;
    char awq_skip[DSA_CONFIG_AWQ_SKIP_MAX][64];
} dsa_config;

/* Parses config.json text.  `path` names the file in error messages.  Every
 * required field is checked for presence, type and range, and cross-field
 * rules (heads, groups, experts) are checked; a failure returns DSA_FORMAT
 * (malformed JSON, missing field, wrong type), DSA_RANGE (value out of range)
 * or DSA_UNSUPPORTED (model_type, rope type or quantisation not supported),
 * with a message "PATH: field 'NAME': what is wrong".  Shape-defining fields
 * are required; behavioural ones default per model_type as in HF. */
dsa_err dsa_config_parse(const char *json_text, const char *path, dsa_config *cfg);
/* Reads and parses the file at path (DSA_NOTFOUND / DSA_IO when unreadable). */
dsa_err dsa_config_load(const char *path, dsa_config *cfg);

/* 1 for the dense GQA architectures (Qwen2, Llama). */
static inline int dsa_config_is_dense(const dsa_config *cfg)
{
    return cfg->arch != DSA_ARCH_DEEPSEEK;
}

/* 1 when layer l has a MoE FFN (l >= first_k_dense_replace and
 * l % moe_layer_freq == 0 and n_routed_experts > 0). */
int dsa_config_layer_is_moe(const dsa_config *cfg, int l);

/* Softmax scale tau = (nope+rope)^-0.5 * m^2 with the YaRN mscale m
 * (MODEL_SPEC.md §3); head_dim^-0.5 for the dense architectures. */
double dsa_config_softmax_scale(const dsa_config *cfg);

/* Fills inv_freq[dsa_config_rope_dim(cfg)/2] with the (YaRN-corrected)
 * rotary frequencies theta'_i of MODEL_SPEC.md §4, or for the dense
 * architectures the default / llama3-scaled frequencies of transformers'
 * rope initialisers. */
void dsa_config_rope_freqs(const dsa_config *cfg, float *inv_freq);

/* The longest context the model supports, as vLLM derives max_model_len
 * from the config: max_position_embeddings, or for YaRN scaling
 * original_max_position_embeddings * factor when that is larger (llama3
 * scaling is already counted in max_position_embeddings). */
int64_t dsa_config_max_len(const dsa_config *cfg);

/* 1 when the linear `name` (a tensor name without ".weight") is stored as
 * AWQ int4 under this config. */
int dsa_config_awq_quantised(const dsa_config *cfg, const char *name);

/* Rotary width: qk_rope_head_dim, or head_dim for the dense architectures. */
static inline int64_t dsa_config_rope_dim(const dsa_config *cfg)
{
    return dsa_config_is_dense(cfg) ? cfg->head_dim : cfg->qk_rope_head_dim;
}

#endif
