/* params.h - what a parsed request (head/api.h) asks of the engine, with
 * vLLM's defaults: sampling values the request leaves out come from the
 * checkpoint's generation_config.json (common/genconfig.h), then from
 * vLLM's own defaults; the output length and prompt truncation follow
 * vLLM's serving code.  Pure functions, tested in tests/test_head_api.c. */
#ifndef DSA_HEAD_PARAMS_H
#define DSA_HEAD_PARAMS_H

#include <stdint.h>

#include "common/genconfig.h"
#include "head/api.h"
#include "proto/step.h"

/* Temperature, top_p, top_k, min_p, repetition_penalty: the request's,
 * else the generation config's, else 1, 1, off, 0, 1.  The penalties,
 * seed and logprobs are the request's.  gc may be NULL. */
void dsa_params_sampling(const dsa_api_request *a, const dsa_genconfig *gc, uint64_t seed,
                         dsa_sampling *sp);

/* The output length of a prompt of n_prompt tokens: the least of what the
 * request asks (completions: 16 unless max_tokens is null), the context
 * left (max_model_len - n_prompt) and the generation config's
 * max_new_tokens, as vLLM's get_max_tokens does.  gc may be NULL. */
int64_t dsa_params_max_new(const dsa_api_request *a, const dsa_genconfig *gc,
                           int64_t max_model_len, int64_t n_prompt);

/* truncate_prompt_tokens: keeps the last k of ids[0..*n) in place (k = -1:
 * max_model_len; k = 0 leaves an empty prompt, which the caller refuses).
 * k > max_model_len is refused (400 naming the parameter), as vLLM does. */
dsa_err dsa_params_truncate(const dsa_api_request *a, int64_t max_model_len, int32_t *ids,
                            int32_t *n, dsa_api_error *e);

#endif
