/* api_struct.c - vLLM's structured-output request fields: response_format
 * (json_schema, json_object), structured_outputs {json, regex, choice,
 * grammar, json_object, structural_tag} and the older guided_json,
 * guided_regex, guided_choice, guided_grammar.  At most one constraint per
 * request, as vLLM requires; the grammar itself is compiled (and its
 * errors answered with a 400 naming the field) off the loop, in
 * head/server.c's tokenize step (common/grammar.h). */
#include "head/api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/grammar.h"

static const cJSON *field(const cJSON *root, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

/* Records one constraint; a second one is refused. */
static dsa_err set(dsa_api_request *r, dsa_api_error *e, const char *param, int kind,
                   const cJSON *v)
{
    if (r->gram_kind)
        return dsa_api_fail(e, 400, param, "You can only use one kind of structured outputs "
                            "constraint but multiple are specified ('%s' and '%s')",
                            r->gram_param, param);
    snprintf(r->gram_param, sizeof r->gram_param, "%s", param);
    r->gram_kind = kind + 1;
    if (kind == DSA_GRAM_JSON_OBJECT)
        return DSA_OK;
    /* a schema may come as an object or as its JSON text; a regex as a
     * string; a choice as a list of strings */
    char *t = NULL;
    if (kind == DSA_GRAM_JSON_SCHEMA && cJSON_IsString(v))
        t = strdup(v->valuestring);
    else if (kind == DSA_GRAM_JSON_SCHEMA && (cJSON_IsObject(v) || cJSON_IsBool(v)))
        t = cJSON_PrintUnformatted(v);
    else if ((kind == DSA_GRAM_REGEX || kind == DSA_GRAM_EBNF) && cJSON_IsString(v))
        t = strdup(v->valuestring);
    else if (kind == DSA_GRAM_CHOICE && cJSON_IsArray(v)) {
        for (const cJSON *c = v->child; c; c = c->next)
            if (!cJSON_IsString(c))
                return dsa_api_fail(e, 400, param, "'%s' must be a list of strings", param);
        if (!v->child)
            return dsa_api_fail(e, 400, param, "'%s' must not be empty", param);
        t = cJSON_PrintUnformatted(v);
    } else {
        return dsa_api_fail(e, 400, param, "'%s' must be %s", param,
                            kind == DSA_GRAM_JSON_SCHEMA ? "a JSON schema (object or string)"
                            : kind == DSA_GRAM_CHOICE ? "a list of strings" : "a string");
    }
    if (!t)
        return dsa_api_fail(e, 500, NULL, "out of memory");
    free(r->gram_text);
    r->gram_text = t;
    r->gram_len = strlen(t);
    return DSA_OK;
}

static dsa_err parse_response_format(const cJSON *root, dsa_api_request *r, dsa_api_error *e)
{
    const cJSON *v = field(root, "response_format");
    if (!v)
        return DSA_OK;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(v, "type");
    if (!cJSON_IsObject(v) || !cJSON_IsString(t))
        return dsa_api_fail(e, 400, "response_format", "'response_format' must be an object "
                            "with a string 'type'");
    const char *type = t->valuestring;
    if (!strcmp(type, "text"))
        return DSA_OK;
    if (!strcmp(type, "json_object"))
        return set(r, e, "response_format", DSA_GRAM_JSON_OBJECT, NULL);
    if (!strcmp(type, "json_schema")) {
        const cJSON *js = cJSON_GetObjectItemCaseSensitive(v, "json_schema");
        if (!cJSON_IsObject(js))
            return dsa_api_fail(e, 400, "response_format.json_schema", "When response_format "
                                "type is 'json_schema', the 'json_schema' field must be "
                                "provided.");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(js, "name");
        const cJSON *strict = cJSON_GetObjectItemCaseSensitive(js, "strict");
        if (name && !cJSON_IsString(name))
            return dsa_api_fail(e, 400, "response_format.json_schema.name",
                                "'response_format.json_schema.name' must be a string");
        if (strict && !cJSON_IsNull(strict) && !cJSON_IsBool(strict))
            return dsa_api_fail(e, 400, "response_format.json_schema.strict",
                                "'response_format.json_schema.strict' must be a boolean");
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(js, "schema");
        if (!s || cJSON_IsNull(s))
            return dsa_api_fail(e, 400, "response_format.json_schema.schema",
                                "'response_format.json_schema.schema' must be given");
        return set(r, e, "response_format.json_schema.schema", DSA_GRAM_JSON_SCHEMA, s);
    }
    if (!strcmp(type, "structural_tag"))
        return dsa_api_fail(e, 400, "response_format", "response_format type "
                            "'structural_tag' is not supported");
    return dsa_api_fail(e, 400, "response_format", "response_format type must be one of "
                        "'text', 'json_object', 'json_schema', 'structural_tag'");
}

static const struct {
    const char *name;
    int kind;
} guided[] = {
    {"json", DSA_GRAM_JSON_SCHEMA}, {"regex", DSA_GRAM_REGEX}, {"choice", DSA_GRAM_CHOICE},
    {"grammar", DSA_GRAM_EBNF},
};

dsa_err dsa_api_parse_structured(const cJSON *root, dsa_api_request *r, dsa_api_error *e)
{
    dsa_err err;
    if ((err = parse_response_format(root, r, e)))
        return err;
    char name[64];
    for (size_t i = 0; i < sizeof guided / sizeof guided[0]; i++) {
        snprintf(name, sizeof name, "guided_%s", guided[i].name);
        const cJSON *v = field(root, name);
        if (v && (err = set(r, e, name, guided[i].kind, v)))
            return err;
    }
    const cJSON *so = field(root, "structured_outputs");
    if (!so)
        return DSA_OK;
    if (!cJSON_IsObject(so))
        return dsa_api_fail(e, 400, "structured_outputs", "'structured_outputs' must be an "
                            "object");
    for (const cJSON *k = so->child; k; k = k->next) {
        snprintf(name, sizeof name, "structured_outputs.%.40s", k->string);
        if (cJSON_IsNull(k))
            continue;
        int known = 0;
        for (size_t i = 0; i < sizeof guided / sizeof guided[0]; i++)
            if (!strcmp(k->string, guided[i].name)) {
                known = 1;
                if ((err = set(r, e, name, guided[i].kind, k)))
                    return err;
            }
        if (known)
            continue;
        if (!strcmp(k->string, "json_object")) {
            if (!cJSON_IsBool(k))
                return dsa_api_fail(e, 400, name, "'%s' must be a boolean", name);
            if (cJSON_IsTrue(k) && (err = set(r, e, name, DSA_GRAM_JSON_OBJECT, NULL)))
                return err;
        } else if (!strcmp(k->string, "disable_any_whitespace")) {
            if (!cJSON_IsBool(k))
                return dsa_api_fail(e, 400, name, "'%s' must be a boolean", name);
            r->gram_compact = cJSON_IsTrue(k); /* ", " and ": " only, as vLLM's */
        } else if (!strcmp(k->string, "disable_fallback") ||
                   !strcmp(k->string, "disable_additional_properties") ||
                   !strcmp(k->string, "whitespace_pattern")) {
            if (!cJSON_IsFalse(k) && !(cJSON_IsString(k) && !k->valuestring[0]))
                return dsa_api_fail(e, 400, name, "'%s' is not supported", name);
        } else if (!strcmp(k->string, "backend")) {
            /* the engine is ours whatever backend is named, as vLLM
             * ignores a per-request backend */
        } else {
            return dsa_api_fail(e, 400, name, "'%s' is not supported", name);
        }
    }
    return DSA_OK;
}
