/* genconfig.c - generation_config.json's sampling defaults (genconfig.h). */
#include "common/genconfig.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

/* One key: *has stays 0 when absent, null or equal to transformers'
 * default (GenerationConfig.to_diff_dict drops those). */
static dsa_err get_num(const cJSON *root, const char *path, const char *key, double lo,
                       double hi, int lo_open, int integer, double hf_default, int *has,
                       double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    *has = 0;
    if (!v || cJSON_IsNull(v))
        return DSA_OK;
    if (!cJSON_IsNumber(v) || (integer && v->valuedouble != floor(v->valuedouble)))
        return dsa_fail(DSA_FORMAT, "%s: '%s' must be %s", path, key,
                        integer ? "an integer" : "a number");
    double d = v->valuedouble;
    if (!isfinite(d) || d < lo || d > hi || (lo_open && d == lo))
        return dsa_fail(DSA_RANGE, "%s: '%s' is %g, outside %s%g, %g]", path, key, d,
                        lo_open ? "(" : "[", lo, hi);
    if (d == hf_default)
        return DSA_OK;
    *has = 1;
    *out = d;
    return DSA_OK;
}

dsa_err dsa_genconfig_parse(const char *json_text, const char *path, dsa_genconfig *g)
{
    memset(g, 0, sizeof *g);
    cJSON *root = cJSON_Parse(json_text);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return dsa_fail(DSA_FORMAT, "%s: not a JSON object", path);
    }
    double top_k = 0, max_tokens = 0;
    /* NAN: transformers has no default for the key (None), so any value
     * is kept */
    dsa_err err;
    if ((err = get_num(root, path, "temperature", 0, INFINITY, 0, 0, 1.0, &g->has_temperature,
                       &g->temperature)) ||
        (err = get_num(root, path, "top_p", 0, 1, 1, 0, 1.0, &g->has_top_p, &g->top_p)) ||
        (err = get_num(root, path, "top_k", -1, INT32_MAX, 0, 1, 50, &g->has_top_k, &top_k)) ||
        (err = get_num(root, path, "min_p", 0, 1, 0, 0, NAN, &g->has_min_p, &g->min_p)) ||
        (err = get_num(root, path, "repetition_penalty", 0, INFINITY, 1, 0, 1.0,
                       &g->has_repetition_penalty, &g->repetition_penalty)) ||
        (err = get_num(root, path, "max_new_tokens", 1, INT32_MAX, 0, 1, NAN,
                       &g->has_max_tokens, &max_tokens)))
        goto out;
    g->top_k = (int64_t)top_k;
    g->max_tokens = (int64_t)max_tokens;
out:
    cJSON_Delete(root);
    if (err)
        memset(g, 0, sizeof *g);
    return err;
}

dsa_err dsa_genconfig_load(const char *mode, const char *model_dir, dsa_genconfig *g,
                           int *found)
{
    memset(g, 0, sizeof *g);
    *found = 0;
    if (mode && !strcmp(mode, "vllm"))
        return DSA_OK;
    const char *dir = !mode || !strcmp(mode, "auto") ? model_dir : mode;
    char path[4096];
    if (snprintf(path, sizeof path, "%s/generation_config.json", dir) >= (int)sizeof path)
        return dsa_fail(DSA_INVAL, "%s: path too long", dir);
    FILE *f = fopen(path, "rb");
    if (!f)
        return errno == ENOENT ? DSA_OK : dsa_fail(DSA_IO, "%s: %s", path, strerror(errno));
    /* a generation config is a few hundred bytes; 1 MiB bounds a wrong file */
    char *buf = malloc((1 << 20) + 1);
    if (!buf) {
        fclose(f);
        return dsa_fail(DSA_NOMEM, "%s: out of memory", path);
    }
    size_t n = fread(buf, 1, 1 << 20, f);
    int bad = ferror(f) || !feof(f);
    fclose(f);
    dsa_err err;
    if (bad) {
        err = dsa_fail(DSA_IO, "%s: unreadable or larger than 1 MiB", path);
    } else {
        buf[n] = 0;
        err = dsa_genconfig_parse(buf, path, g);
        *found = err == DSA_OK;
    }
    free(buf);
    return err;
}
