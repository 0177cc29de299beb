/* gram_tools.c - forced tool calls (tool_choice "required" or a named
 * function) as a grammar over DeepSeek-V3's tool-call format
 * (common/toolcall.h), markers being added tokens (gx_marker):
 *
 *   calls_begin CALL ("\n" CALL)* calls_end        (one CALL unless parallel)
 *   CALL = call_begin "function" sep NAME "\n```json\n" ARGS "\n```" call_end
 *
 * with ARGS following the tool's parameters schema (any JSON object when
 * it has none).  Each tool's schema resolves its own $refs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/gram_internal.h"

static int marker_id(const cJSON *m, const char *k, int32_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, k);
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 0xFFFFFF)
        return -1;
    *out = (int32_t)v->valuedouble;
    return 0;
}

dsa_err gram_from_tools(dsa_gram *g, gx_arena *a, const char *text, size_t len, int any_ws)
{
    cJSON *root = cJSON_ParseWithLength(text, len);
    dsa_err err = DSA_OK;
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(root, "tools");
    const cJSON *mk = cJSON_GetObjectItemCaseSensitive(root, "markers");
    int32_t cb, ce, b, e, sep;
    if (!cJSON_IsArray(tools) || !tools->child || marker_id(mk, "calls_begin", &cb) ||
        marker_id(mk, "calls_end", &ce) || marker_id(mk, "call_begin", &b) ||
        marker_id(mk, "call_end", &e) || marker_id(mk, "sep", &sep)) {
        err = dsa_fail(DSA_FORMAT, "tool grammar: malformed description");
        goto out;
    }
    gx_list calls = {0};
    for (const cJSON *t = tools->child; t; t = t->next) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(t, "name");
        const cJSON *params = cJSON_GetObjectItemCaseSensitive(t, "parameters");
        if (!cJSON_IsString(name)) {
            err = dsa_fail(DSA_FORMAT, "tool grammar: a tool without a name");
            goto out;
        }
        gx *args;
        cJSON any = {.type = cJSON_Object};
        if ((err = gram_schema_value(g, a, params && !cJSON_IsNull(params) ? params : &any,
                                     any_ws, &args))) {
            char msg[400];
            snprintf(msg, sizeof msg, "%s", dsa_errmsg());
            err = dsa_fail(err, "tools: function '%.64s' parameters: %s", name->valuestring, msg);
            goto out;
        }
        gx *call = gx_seq(a, (gx *[]){gx_marker(a, b), gx_str(a, "function"), gx_marker(a, sep),
                                      gx_str(a, name->valuestring), gx_str(a, "\n```json\n"),
                                      args, gx_str(a, "\n```"), gx_marker(a, e)}, 8);
        if (gx_list_push(a, &calls, call)) {
            err = DSA_NOMEM;
            goto out;
        }
    }
    int r = gram_rule_new(g, "call");
    g->root = gram_rule_new(g, "root");
    if (r < 0 || g->root < 0) {
        err = DSA_NOMEM;
        goto out;
    }
    g->rules[r].def = gx_alt(a, calls.v, calls.n);
    gx *more = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "parallel"))
                   ? gx_rep(a, gx_seq2(a, gx_str(a, "\n"), gx_ref(a, r)), 0, -1)
                   : gx_empty(a);
    g->rules[g->root].def = gx_seq(a, (gx *[]){gx_marker(a, cb), gx_ref(a, r), more,
                                               gx_marker(a, ce)}, 4);
    if (!g->rules[r].def || !g->rules[g->root].def)
        err = DSA_NOMEM;
out:
    cJSON_Delete(root);
    return err;
}
