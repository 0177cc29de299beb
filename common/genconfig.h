/* genconfig.h - the sampling defaults of a checkpoint's
 * generation_config.json, read as vLLM's --generation-config reads them.
 *
 * vLLM (ModelConfig.get_diff_sampling_param) loads the file with
 * transformers' GenerationConfig, keeps what differs from transformers'
 * defaults (to_diff_dict), and of that only repetition_penalty,
 * temperature, top_k, top_p, min_p and max_new_tokens (as max_tokens); a
 * request's own value wins over these.  So a file's top_k of 50,
 * temperature, top_p or repetition_penalty of 1.0 set nothing (they equal
 * transformers' defaults) and null values are skipped.  Every other key
 * (do_sample, eos_token_id, ...) is not read. */
#ifndef DSA_COMMON_GENCONFIG_H
#define DSA_COMMON_GENCONFIG_H

#include <stdint.h>

#include "common/error.h"

typedef struct dsa_genconfig {
    int has_temperature, has_top_p, has_top_k, has_min_p, has_repetition_penalty;
    int has_max_tokens;
    double temperature, top_p, min_p, repetition_penalty;
    int64_t top_k;
    int64_t max_tokens;     /* max_new_tokens: caps every request's length */
} dsa_genconfig;

/* Parses generation_config.json text (path for messages).  A value of the
 * wrong type or out of vLLM's range fails with DSA_FORMAT / DSA_RANGE. */
dsa_err dsa_genconfig_parse(const char *json_text, const char *path, dsa_genconfig *g);

/* --generation-config MODE: "vllm" sets nothing; "auto" reads
 * MODEL_DIR/generation_config.json; anything else is a folder whose
 * generation_config.json is read.  A missing file sets nothing (as in
 * vLLM); *found says whether a file was read. */
dsa_err dsa_genconfig_load(const char *mode, const char *model_dir, dsa_genconfig *g,
                           int *found);

#endif
