/* config_internal.h - what config.c and config_dense.c share: the parsers
 * of the dense architectures and of AWQ's quantization_config. */
#ifndef DSA_COMMON_CONFIG_INTERNAL_H
#define DSA_COMMON_CONFIG_INTERNAL_H

#include <cjson/cJSON.h>

#include "common/config.h"

/* Fills cfg (already zeroed, model_type copied) from a qwen2 or llama
 * config.json object; errors as dsa_config_parse. */
dsa_err dsa_config_parse_dense(const cJSON *root, const char *path, dsa_arch arch,
                               dsa_config *cfg);

/* quantization_config with quant_method "awq" (q is that object). */
dsa_err dsa_config_parse_awq(const cJSON *q, const char *path, dsa_config *cfg);

/* inv_freq[head_dim / 2] of a dense architecture (default or llama3). */
void dsa_config_dense_rope_freqs(const dsa_config *cfg, float *inv_freq);

#endif
