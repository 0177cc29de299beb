/* spec_config.c - parses --speculative-config (see spec_config.h). */
#include "common/spec_config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>


dsa_err dsa_spec_config_parse(const char *json, int k_max, int *k)
{
    *k = 0;
    if (!json || !*json)
        return DSA_OK;
    cJSON *j = cJSON_Parse(json);
    dsa_err err = DSA_OK;
    if (!cJSON_IsObject(j)) {
        err = dsa_fail(DSA_INVAL, "--speculative-config: expected a JSON object such as "
                       "{\"method\": \"deepseek_mtp\", \"num_speculative_tokens\": 1}");
        goto out;
    }
    const char *method = NULL;
    int n = 1;
    const cJSON *f;
    cJSON_ArrayForEach(f, j) {
        const char *name = f->string;
        if (!strcmp(name, "method")) {
            if (!cJSON_IsString(f)) {
                err = dsa_fail(DSA_INVAL, "--speculative-config: field 'method' must be a "
                               "string");
                goto out;
            }
            method = f->valuestring;
        } else if (!strcmp(name, "num_speculative_tokens")) {
            double v = cJSON_IsNumber(f) ? f->valuedouble : NAN;
            if (!(v >= 1 && v <= k_max) || v != floor(v)) {
                err = dsa_fail(DSA_INVAL, "--speculative-config: field "
                               "'num_speculative_tokens' must be an integer from 1 to %d",
                               k_max);
                goto out;
            }
            n = (int)v;
        } else if (!strcmp(name, "model") && cJSON_IsNull(f)) {
            /* vLLM: the MTP module lives in the target checkpoint */
        } else {
            err = dsa_fail(DSA_INVAL, "--speculative-config: field '%s' is not supported "
                           "(this engine takes 'method' and 'num_speculative_tokens')", name);
            goto out;
        }
    }
    if (!method || (strcmp(method, "deepseek_mtp") && strcmp(method, "mtp"))) {
        err = dsa_fail(DSA_INVAL, "--speculative-config: field 'method' must be "
                       "\"deepseek_mtp\" (DeepSeek's MTP module; got %s%s%s)",
                       method ? "\"" : "", method ? method : "none", method ? "\"" : "");
        goto out;
    }
    *k = n;
out:
    cJSON_Delete(j);
    return err;
}
