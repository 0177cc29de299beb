/* spec_config.h - vLLM's --speculative-config for DeepSeek's MTP module
 * (docs/design.md "Speculative decoding"): a JSON object
 *   {"method": "deepseek_mtp", "num_speculative_tokens": k}
 * Anything this engine cannot do as vLLM does is refused with a message
 * naming the field. */
#ifndef DSA_COMMON_SPEC_CONFIG_H
#define DSA_COMMON_SPEC_CONFIG_H

#include "common/error.h"

/* *k = num_speculative_tokens (1..k_max; vLLM's default for deepseek_mtp,
 * the checkpoint's one MTP layer, is 1); json NULL or empty: *k = 0 (no
 * speculation).  DSA_INVAL with the reason otherwise.  dsa-head and
 * dsa-worker take the same flag. */
dsa_err dsa_spec_config_parse(const char *json, int k_max, int *k);

#endif
