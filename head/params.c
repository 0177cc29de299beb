/* params.c - request settings with vLLM's defaults (params.h). */
#include "head/params.h"

#include <string.h>

void dsa_params_sampling(const dsa_api_request *a, const dsa_genconfig *gc, uint64_t seed,
                         dsa_sampling *sp)
{
    static const dsa_genconfig none;
    if (!gc)
        gc = &none;
    /* vLLM's _DEFAULT_SAMPLING_PARAMS: temperature 1, top_p 1, top_k 0
     * (off), min_p 0, repetition_penalty 1 */
    double temperature = a->temperature >= 0 ? a->temperature
                         : gc->has_temperature ? gc->temperature : 1.0;
    /* vLLM raises a temperature in (0, 0.01) to 0.01 (_MAX_TEMP) against
     * overflow in the scaled logits */
    if (temperature > 0 && temperature < 0.01)
        temperature = 0.01;
    double top_p = a->top_p > 0 ? a->top_p : gc->has_top_p ? gc->top_p : 1.0;
    int64_t top_k = a->has_top_k ? a->top_k : gc->has_top_k ? gc->top_k : -1;
    double min_p = a->has_min_p ? a->min_p : gc->has_min_p ? gc->min_p : 0.0;
    double rep = a->has_repetition_penalty ? a->repetition_penalty
                 : gc->has_repetition_penalty ? gc->repetition_penalty : 1.0;
    *sp = (dsa_sampling){
        .temperature = (float)temperature, .top_p = (float)top_p, .min_p = (float)min_p,
        .top_k = (int32_t)(top_k > 0 ? top_k : -1), .seed = seed,
        .presence_penalty = (float)a->presence_penalty,
        .frequency_penalty = (float)a->frequency_penalty,
        .repetition_penalty = (float)rep,
        .n_logprobs = a->logprobs ? a->top_logprobs : -1};
}

int64_t dsa_params_max_new(const dsa_api_request *a, const dsa_genconfig *gc,
                           int64_t max_model_len, int64_t n_prompt)
{
    if (a->max_tokens == 0) /* echo: the prompt is evaluated with one unreported token */
        return 1;
    int64_t m = max_model_len - n_prompt;
    if (a->max_tokens > 0 && a->max_tokens < m)
        m = a->max_tokens;
    if (gc && gc->has_max_tokens && gc->max_tokens < m)
        m = gc->max_tokens;
    return m;
}

dsa_err dsa_params_truncate(const dsa_api_request *a, int64_t max_model_len, int32_t *ids,
                            int32_t *n, dsa_api_error *e)
{
    if (!a->has_truncate)
        return DSA_OK;
    int64_t k = a->truncate_prompt_tokens < 0 ? max_model_len : a->truncate_prompt_tokens;
    if (k > max_model_len)
        return dsa_api_fail(e, 400, "truncate_prompt_tokens", "truncate_prompt_tokens value "
                            "(%lld) is greater than max_model_len (%lld). Please request a "
                            "smaller truncation size.", (long long)k,
                            (long long)max_model_len);
    if (*n > k) {
        memmove(ids, ids + (*n - k), (size_t)k * sizeof *ids);
        *n = (int32_t)k;
    }
    return DSA_OK;
}
