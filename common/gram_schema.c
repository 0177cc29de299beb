/* gram_schema.c - JSON Schema to grammar, the subset OpenAI's structured
 * outputs and vLLM's xgrammar backend accept, writing the same language
 * xgrammar writes: any whitespace [ \n\t]* between tokens (none around the
 * root), object properties in the declared order (required ones present,
 * optional ones may be left out), no properties beyond the declared ones
 * unless additionalProperties allows them (after the declared ones), and
 * xgrammar's string, number and format rules (formats: here and
 * gram_format.c).  Integer and number bounds are exact (gram_number.c;
 * xgrammar's range rules over-accept, see docs/perf/structured.md).
 * Keywords outside the subset are refused (DSA_UNSUPPORTED naming them),
 * never ignored. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/gram_internal.h"

typedef struct sc {
    dsa_gram *g;
    gx_arena *a;
    const cJSON *root;
    int any_ws;
    /* $ref targets already given a rule */
    const cJSON **ref_node;
    int *ref_rule;
    int n_ref, cap_ref;
    int any_rule;    /* rule of any JSON value, -1 until needed */
    int depth;
} sc;

static gx *ws(sc *s)
{
    if (!s->any_ws)
        return gx_empty(s->a);
    return gx_rep(s->a, gx_class(s->a, (uint32_t[]){' ', ' ', '\n', '\n', '\t', '\t'}, 3, 0),
                  0, -1);
}

/* Separator sep (',' or ':') with whitespace around, or ", " / ": ". */
static gx *sep(sc *s, char c)
{
    if (!s->any_ws)
        return gx_bytes(s->a, c == ',' ? ", " : ": ", 2);
    return gx_seq3(s->a, ws(s), gx_bytes(s->a, &c, 1), ws(s));
}

static gx *cls(sc *s, const uint32_t *r, int n, int neg) { return gx_class(s->a, r, n, neg); }

static gx *digits(sc *s, int min) /* [0-9]{min,} */
{
    return gx_rep(s->a, cls(s, (uint32_t[]){'0', '9'}, 1, 0), min, -1);
}

/* ---- basic values ---- */
static gx *json_string(sc *s)
{
    gx *hex = cls(s, (uint32_t[]){'0', '9', 'A', 'F', 'a', 'f'}, 3, 0);
    gx *esc = gx_alt2(s->a, cls(s, (uint32_t[]){'"', '"', '\\', '\\', '/', '/', 'b', 'b', 'f', 'f',
                                                'n', 'n', 'r', 'r', 't', 't'}, 8, 0),
                      gx_seq2(s->a, gx_str(s->a, "u"), gx_rep(s->a, hex, 4, 4)));
    gx *ch = gx_alt2(s->a, cls(s, (uint32_t[]){0, 0x1f, '"', '"', '\\', '\\'}, 3, 1),
                     gx_seq2(s->a, gx_str(s->a, "\\"), esc));
    return gx_seq3(s->a, gx_str(s->a, "\""), gx_rep(s->a, ch, 0, -1), gx_str(s->a, "\""));
}

static gx *json_int_plain(sc *s)
{
    return gx_alt2(s->a, gx_str(s->a, "0"),
                   gx_seq3(s->a, gx_rep(s->a, gx_str(s->a, "-"), 0, 1),
                           cls(s, (uint32_t[]){'1', '9'}, 1, 0), digits(s, 0)));
}

static gx *json_number(sc *s)
{
    gx *frac = gx_rep(s->a, gx_seq2(s->a, gx_str(s->a, "."), digits(s, 1)), 0, 1);
    gx *exp = gx_rep(s->a, gx_seq3(s->a, cls(s, (uint32_t[]){'e', 'e', 'E', 'E'}, 2, 0),
                                   gx_rep(s->a, cls(s, (uint32_t[]){'+', '+', '-', '-'}, 2, 0),
                                          0, 1),
                                   digits(s, 1)), 0, 1);
    return gx_seq3(s->a, json_int_plain(s), frac, exp);
}

/* Any JSON value (one shared recursive rule). */
static gx *json_any(sc *s)
{
    if (s->any_rule >= 0)
        return gx_ref(s->a, s->any_rule);
    int r = gram_rule_new(s->g, "any");
    if (r < 0)
        return NULL;
    s->any_rule = r;
    gx *v = gx_ref(s->a, r);
    gx *arr = gx_alt2(s->a,
        gx_seq(s->a, (gx *[]){gx_str(s->a, "["), ws(s), v,
                              gx_rep(s->a, gx_seq2(s->a, sep(s, ','), v), 0, -1), ws(s),
                              gx_str(s->a, "]")}, 6),
        gx_seq3(s->a, gx_str(s->a, "["), ws(s), gx_str(s->a, "]")));
    gx *kv = gx_seq3(s->a, json_string(s), sep(s, ':'), v);
    gx *obj = gx_alt2(s->a,
        gx_seq(s->a, (gx *[]){gx_str(s->a, "{"), ws(s), kv,
                              gx_rep(s->a, gx_seq2(s->a, sep(s, ','), kv), 0, -1), ws(s),
                              gx_str(s->a, "}")}, 6),
        gx_seq3(s->a, gx_str(s->a, "{"), ws(s), gx_str(s->a, "}")));
    s->g->rules[r].def = gx_alt(s->a, (gx *[]){json_number(s), json_string(s),
        gx_str(s->a, "true"), gx_str(s->a, "false"), gx_str(s->a, "null"), arr, obj}, 7);
    return s->g->rules[r].def ? v : NULL;
}

static dsa_err bad(const char *path, const char *fmt, const char *arg)
{
    char what[256];
    snprintf(what, sizeof what, fmt, arg);
    return dsa_fail(DSA_UNSUPPORTED, "%s%s%s", path, *path ? ": " : "", what);
}

static dsa_err bound(const cJSON *o, const char *k, int *has, long long *v,
                     const char *path)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!x)
        return DSA_OK;
    if (!cJSON_IsNumber(x))
        return dsa_fail(DSA_FORMAT, "%s: '%s' must be a number", path, k);
    double d = x->valuedouble;
    if (fabs(d) > 1e15)
        return bad(path, "'%s' beyond 1e15 is not supported", k);
    long long n = (long long)(strstr(k, "Min") || !strcmp(k, "minimum") ? ceil(d) : floor(d));
    if (!strcmp(k, "exclusiveMinimum") && (double)n == d)
        n++;
    if (!strcmp(k, "exclusiveMaximum") && (double)n == d)
        n--;
    if (*has && ((strstr(k, "inimum") && n < *v) || (strstr(k, "aximum") && n > *v)))
        return DSA_OK; /* the tighter of minimum/exclusiveMinimum wins */
    *has = 1;
    *v = n;
    return DSA_OK;
}

/* A number's bounds: the tighter of minimum/exclusiveMinimum (exclusive on
 * a tie), and of maximum/exclusiveMaximum. */
static gx *number_value(sc *s, const cJSON *o, const char *path)
{
    static const char *const keys[] = {"minimum", "exclusiveMinimum", "maximum",
                                       "exclusiveMaximum"};
    int has[2] = {0, 0}, inc[2] = {1, 1};
    double v[2] = {0, 0};
    for (int i = 0; i < 4; i++) {
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, keys[i]);
        if (!x)
            continue;
        if (!cJSON_IsNumber(x)) {
            dsa_fail(DSA_FORMAT, "%s: '%s' must be a number", path, keys[i]);
            return NULL;
        }
        int side = i / 2, excl = i % 2;
        double d = x->valuedouble;
        int tighter = !has[side] || (side ? d < v[side] : d > v[side]) ||
                      (d == v[side] && excl);
        if (tighter) {
            has[side] = 1;
            v[side] = d;
            inc[side] = !excl;
        }
    }
    if (!has[0] && !has[1])
        return json_number(s);
    if (has[0] && has[1] && (v[0] > v[1] || (v[0] == v[1] && !(inc[0] && inc[1])))) {
        dsa_fail(DSA_FORMAT, "%s: minimum is above maximum", path);
        return NULL;
    }
    gx *x;
    dsa_err err = gram_num_range(s->a, has[0], v[0], inc[0], has[1], v[1], inc[1], &x);
    if (err) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s", dsa_errmsg());
        dsa_fail(err, "%s: %s", path, msg);
        return NULL;
    }
    return x;
}

static gx *schema_value(sc *s, const cJSON *o, const char *path);

static dsa_err sub(sc *s, const cJSON *o, const char *path, const char *key, gx **out)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", path, key);
    *out = schema_value(s, o, p);
    return *out ? DSA_OK : DSA_FORMAT;
}

/* ---- strings ---- */
static gx *date_g(sc *s)
{
    gx *d = cls(s, (uint32_t[]){'0', '9'}, 1, 0);
    gx *month = gx_alt2(s->a, gx_seq2(s->a, gx_str(s->a, "0"), cls(s, (uint32_t[]){'1', '9'}, 1, 0)),
                        gx_seq2(s->a, gx_str(s->a, "1"), cls(s, (uint32_t[]){'0', '2'}, 1, 0)));
    gx *day = gx_alt(s->a, (gx *[]){gx_seq2(s->a, gx_str(s->a, "0"), cls(s, (uint32_t[]){'1', '9'}, 1, 0)),
        gx_seq2(s->a, cls(s, (uint32_t[]){'1', '2'}, 1, 0), d),
        gx_seq2(s->a, gx_str(s->a, "3"), cls(s, (uint32_t[]){'0', '1'}, 1, 0))}, 3);
    return gx_seq(s->a, (gx *[]){gx_rep(s->a, d, 4, 4), gx_str(s->a, "-"), month, gx_str(s->a, "-"),
                                 day}, 5);
}

/* xgrammar's time: second 60 allowed (leap second); in its date-time the
 * 60 moves to the minute instead.  Kept as written so the masks agree. */
static gx *time_g(sc *s, int sixty_in_minute)
{
    gx *d = cls(s, (uint32_t[]){'0', '9'}, 1, 0);
    gx *d5 = gx_seq2(s->a, cls(s, (uint32_t[]){'0', '5'}, 1, 0), d);
    gx *hour = gx_alt2(s->a, gx_seq2(s->a, cls(s, (uint32_t[]){'0', '1'}, 1, 0), d),
                       gx_seq2(s->a, gx_str(s->a, "2"), cls(s, (uint32_t[]){'0', '3'}, 1, 0)));
    gx *sec = gx_alt2(s->a, d5, gx_str(s->a, "60"));
    gx *frac = gx_rep(s->a, gx_seq2(s->a, gx_str(s->a, "."), digits(s, 1)), 0, 1);
    gx *tz = gx_alt2(s->a, gx_str(s->a, "Z"),
                     gx_seq(s->a, (gx *[]){cls(s, (uint32_t[]){'+', '+', '-', '-'}, 2, 0), hour,
                                           gx_str(s->a, ":"), d5}, 4));
    return gx_seq(s->a, (gx *[]){hour, gx_str(s->a, ":"), sixty_in_minute ? sec : d5,
                                 gx_str(s->a, ":"), sixty_in_minute ? d5 : sec, frac, tz}, 7);
}

static gx *string_value(sc *s, const cJSON *o, const char *path)
{
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(o, "pattern");
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(o, "format");
    const cJSON *mn = cJSON_GetObjectItemCaseSensitive(o, "minLength");
    const cJSON *mx = cJSON_GetObjectItemCaseSensitive(o, "maxLength");
    gx *q = gx_str(s->a, "\"");
    if (pat) {
        gx *x;
        if (!cJSON_IsString(pat)) {
            dsa_fail(DSA_FORMAT, "%s: 'pattern' must be a string", path);
            return NULL;
        }
        dsa_err err = gram_from_regex(s->g, s->a, pat->valuestring, strlen(pat->valuestring), &x);
        if (err) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", dsa_errmsg());
            dsa_fail(err, "%s: 'pattern': %s", path, msg);
            return NULL;
        }
        return gx_seq3(s->a, q, x, gx_str(s->a, "\""));
    }
    if (fmt && cJSON_IsString(fmt)) {
        const char *f = fmt->valuestring;
        gx *body = NULL;
        if (!strcmp(f, "date"))
            body = date_g(s);
        else if (!strcmp(f, "time"))
            body = time_g(s, 0);
        else if (!strcmp(f, "date-time"))
            body = gx_seq3(s->a, date_g(s), gx_str(s->a, "T"), time_g(s, 1));
        else if (!strcmp(f, "uuid")) {
            gx *h = cls(s, (uint32_t[]){'0', '9', 'A', 'F', 'a', 'f'}, 3, 0);
            gx *dash = gx_str(s->a, "-");
            body = gx_seq(s->a, (gx *[]){gx_rep(s->a, h, 8, 8), dash, gx_rep(s->a, h, 4, 4), dash,
                                         gx_rep(s->a, h, 4, 4), dash, gx_rep(s->a, h, 4, 4), dash,
                                         gx_rep(s->a, h, 12, 12)}, 9);
        } else {
            dsa_err err = gram_format(s->g, s->a, f, &body);
            if (err) {
                char msg[512];
                snprintf(msg, sizeof msg, "%s", dsa_errmsg());
                dsa_fail(err, "%s: %s", path, msg);
                return NULL;
            }
        }
        return gx_seq3(s->a, q, body, gx_str(s->a, "\""));
    }
    if (mn || mx) {
        if ((mn && (!cJSON_IsNumber(mn) || mn->valuedouble < 0)) ||
            (mx && (!cJSON_IsNumber(mx) || mx->valuedouble < 0))) {
            dsa_fail(DSA_FORMAT, "%s: minLength/maxLength must be non-negative integers", path);
            return NULL;
        }
        int lo = mn ? (int)mn->valuedouble : 0, hi = mx ? (int)mx->valuedouble : -1;
        if (lo > 10000 || hi > 10000) {
            dsa_fail(DSA_RANGE, "%s: minLength/maxLength over 10000", path);
            return NULL;
        }
        if (hi >= 0 && hi < lo) {
            dsa_fail(DSA_FORMAT, "%s: maxLength is below minLength", path);
            return NULL;
        }
        /* Characters other than " \ and controls, no escapes (xgrammar
         * allows controls other than CR LF here, which is not JSON). */
        gx *ch = cls(s, (uint32_t[]){'"', '"', '\\', '\\', 0, 0x1f}, 3, 1);
        return gx_seq3(s->a, q, gx_rep(s->a, ch, lo, hi), gx_str(s->a, "\""));
    }
    return json_string(s);
}

/* ---- arrays and objects ---- */
/* prefixItems, as xgrammar's strict mode reads it: every prefix item is
 * present, then more items only when 'items' allows them (a schema or
 * true; absent or false: none), within minItems/maxItems. */
static gx *tuple_value(sc *s, const cJSON *prefix, const cJSON *items, int lo, int hi,
                       const char *path)
{
    int n = cJSON_GetArraySize(prefix);
    if (!cJSON_IsArray(prefix)) { /* (size 0 then) */
        dsa_fail(DSA_FORMAT, "%s: 'prefixItems' must be an array", path);
        return NULL;
    }
    if (n > 1000) {
        dsa_fail(DSA_RANGE, "%s: over 1000 prefixItems", path);
        return NULL;
    }
    int more = items && !cJSON_IsFalse(items);
    if ((hi >= 0 && hi < n) || (!more && lo > n)) {
        dsa_fail(DSA_FORMAT, "%s: minItems/maxItems exclude the %d prefixItems", path, n);
        return NULL;
    }
    if (!n && !more)
        return gx_seq3(s->a, gx_str(s->a, "["), ws(s), gx_str(s->a, "]"));
    gx_list l = {0};
    gx_list_push(s->a, &l, gx_str(s->a, "["));
    gx_list_push(s->a, &l, ws(s));
    for (int i = 0; i < n; i++) {
        const cJSON *it = cJSON_GetArrayItem(prefix, i);
        char key[32];
        gx *x;
        if (cJSON_IsFalse(it)) {
            dsa_fail(DSA_FORMAT, "%s: prefixItems/%d is false (no value can match)", path, i);
            return NULL;
        }
        snprintf(key, sizeof key, "prefixItems/%d", i);
        if (cJSON_IsTrue(it))
            x = json_any(s);
        else if (sub(s, it, path, key, &x))
            return NULL;
        if (i)
            gx_list_push(s->a, &l, sep(s, ','));
        gx_list_push(s->a, &l, x);
    }
    if (more) {
        gx *item;
        if (cJSON_IsTrue(items))
            item = json_any(s);
        else if (sub(s, items, path, "items", &item))
            return NULL;
        int extra_lo = lo > n ? lo - n : 0, extra_hi = hi < 0 ? -1 : hi - n;
        gx_list_push(s->a, &l, gx_rep(s->a, gx_seq2(s->a, sep(s, ','), item), extra_lo,
                                      extra_hi));
    }
    gx_list_push(s->a, &l, ws(s));
    gx_list_push(s->a, &l, gx_str(s->a, "]"));
    return gx_seq(s->a, l.v, l.n);
}

static gx *array_value(sc *s, const cJSON *o, const char *path)
{
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(o, "items");
    const cJSON *mn = cJSON_GetObjectItemCaseSensitive(o, "minItems");
    const cJSON *mx = cJSON_GetObjectItemCaseSensitive(o, "maxItems");
    const cJSON *prefix = cJSON_GetObjectItemCaseSensitive(o, "prefixItems");
    int lo = cJSON_IsNumber(mn) ? (int)mn->valuedouble : 0;
    int hi = cJSON_IsNumber(mx) ? (int)mx->valuedouble : -1;
    if (lo < 0 || lo > 10000 || hi > 10000 || (hi >= 0 && hi < lo)) {
        dsa_fail(DSA_RANGE, "%s: minItems/maxItems out of range", path);
        return NULL;
    }
    /* an empty prefixItems with items is the plain form below */
    if (prefix && (!cJSON_IsArray(prefix) || cJSON_GetArraySize(prefix) || !items ||
                   cJSON_IsFalse(items)))
        return tuple_value(s, prefix, items, lo, hi, path);
    gx *item;
    if (!items || cJSON_IsTrue(items))
        item = json_any(s);
    else if (sub(s, items, path, "items", &item))
        return NULL;
    gx *open = gx_seq2(s->a, gx_str(s->a, "["), ws(s));
    gx *close = gx_seq2(s->a, ws(s), gx_str(s->a, "]"));
    gx *more = gx_rep(s->a, gx_seq2(s->a, sep(s, ','), item), lo ? lo - 1 : 0,
                      hi < 0 ? -1 : hi - 1);
    gx *nonempty = gx_seq(s->a, (gx *[]){open, item, more, close}, 4);
    if (hi == 0)
        return gx_seq3(s->a, gx_str(s->a, "["), ws(s), gx_str(s->a, "]"));
    if (lo > 0)
        return nonempty;
    return gx_alt2(s->a, nonempty, gx_seq3(s->a, gx_str(s->a, "["), ws(s), gx_str(s->a, "]")));
}

static gx *object_value(sc *s, const cJSON *o, const char *path)
{
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(o, "properties");
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(o, "required");
    const cJSON *addl = cJSON_GetObjectItemCaseSensitive(o, "additionalProperties");
    gx *extra_v = NULL; /* value schema of additional properties, NULL none */
    if (props && !cJSON_IsObject(props)) {
        dsa_fail(DSA_FORMAT, "%s: 'properties' must be an object", path);
        return NULL;
    }
    if (req && !cJSON_IsArray(req)) {
        dsa_fail(DSA_FORMAT, "%s: 'required' must be an array", path);
        return NULL;
    }
    int n = props ? cJSON_GetArraySize(props) : 0;
    if (!addl || cJSON_IsTrue(addl)) {
        /* xgrammar (strict mode): declared properties close the object
         * unless additionalProperties says otherwise. */
        if (!n || cJSON_IsTrue(addl))
            extra_v = json_any(s);
    } else if (cJSON_IsObject(addl)) {
        if (sub(s, addl, path, "additionalProperties", &extra_v))
            return NULL;
    } else if (!cJSON_IsFalse(addl)) {
        dsa_fail(DSA_FORMAT, "%s: 'additionalProperties' must be a boolean or a schema", path);
        return NULL;
    }
    gx **kv = gx_alloc(s->a, (size_t)(n + 1) * sizeof *kv);
    int *opt = gx_alloc(s->a, (size_t)(n + 1) * sizeof *opt);
    if (!kv || !opt)
        return NULL;
    int i = 0;
    for (const cJSON *p = props ? props->child : NULL; p; p = p->next, i++) {
        gx *v;
        char *key = cJSON_PrintUnformatted(&(cJSON){.type = cJSON_String,
                                                    .valuestring = p->string});
        if (!key)
            return NULL;
        gx *k = gx_str(s->a, key);
        free(key);
        if (sub(s, p, path, p->string, &v))
            return NULL;
        kv[i] = gx_seq3(s->a, k, sep(s, ':'), v);
        opt[i] = 1;
        for (const cJSON *r = req ? req->child : NULL; r; r = r->next)
            if (cJSON_IsString(r) && !strcmp(r->valuestring, p->string))
                opt[i] = 0;
    }
    for (const cJSON *r = req ? req->child : NULL; r; r = r->next)
        if (!cJSON_IsString(r) || !cJSON_GetObjectItemCaseSensitive(props, r->valuestring)) {
            bad(path, "required property '%s' is not among the properties",
                cJSON_IsString(r) ? r->valuestring : "?");
            return NULL;
        }
    /* rest_i: properties i.. after something was written; first_i: before. */
    gx *extra_kv = extra_v ? gx_seq3(s->a, json_string(s), sep(s, ':'), extra_v) : NULL;
    gx *rest = extra_kv ? gx_rep(s->a, gx_seq2(s->a, sep(s, ','), extra_kv), 0, -1)
                        : gx_empty(s->a);
    gx *first = extra_kv ? gx_alt2(s->a, gx_seq2(s->a, extra_kv, rest), gx_empty(s->a))
                         : gx_empty(s->a);
    for (i = n - 1; i >= 0; i--) {
        int rr = gram_rule_new(s->g, "props");
        if (rr < 0)
            return NULL;
        gx *rest_ref = gx_ref(s->a, rr);
        gx *with = gx_seq3(s->a, sep(s, ','), kv[i], rest);
        s->g->rules[rr].def = opt[i] ? gx_alt2(s->a, with, rest) : gx_alt(s->a, &with, 1);
        gx *fwith = gx_seq2(s->a, kv[i], rest);
        first = opt[i] ? gx_alt2(s->a, fwith, first) : fwith;
        rest = rest_ref;
    }
    return gx_seq(s->a, (gx *[]){gx_str(s->a, "{"), ws(s), first, ws(s), gx_str(s->a, "}")}, 5);
}

/* ---- dispatch ---- */
static const char *const ignored_kw[] = {
    "title", "description", "default", "examples", "$schema", "$id", "$comment",
    "deprecated", "readOnly", "writeOnly", "$defs", "definitions", "strict", "discriminator",
    "contentMediaType", "contentEncoding", NULL};
static const char *const known_kw[] = {
    "type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
    "enum", "const", "pattern", "format", "minLength", "maxLength", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "anyOf", "oneOf", "allOf", "$ref", "prefixItems",
    NULL};

static int in(const char *const *l, const char *k)
{
    for (; *l; l++)
        if (!strcmp(*l, k))
            return 1;
    return 0;
}

static gx *literal(sc *s, const cJSON *v)
{
    char *t = cJSON_PrintUnformatted(v);
    if (!t)
        return NULL;
    gx *x = gx_str(s->a, t);
    free(t);
    return x;
}

static gx *ref_value(sc *s, const char *ref, const char *path)
{
    const cJSON *t = NULL;
    if (!strcmp(ref, "#"))
        t = s->root;
    else if (!strncmp(ref, "#/$defs/", 8))
        t = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(s->root, "$defs"),
                                             ref + 8);
    else if (!strncmp(ref, "#/definitions/", 14))
        t = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(s->root, "definitions"), ref + 14);
    else {
        bad(path, "$ref '%s' is not supported (only #, #/$defs/NAME, #/definitions/NAME)", ref);
        return NULL;
    }
    if (!t) {
        dsa_fail(DSA_FORMAT, "%s: $ref '%s' names no definition", path, ref);
        return NULL;
    }
    for (int i = 0; i < s->n_ref; i++)
        if (s->ref_node[i] == t)
            return gx_ref(s->a, s->ref_rule[i]);
    if (s->n_ref == s->cap_ref) {
        int cap = s->cap_ref ? s->cap_ref * 2 : 8;
        const cJSON **a = gx_alloc(s->a, (size_t)cap * sizeof *a);
        int *b = gx_alloc(s->a, (size_t)cap * sizeof *b);
        if (!a || !b)
            return NULL;
        if (s->n_ref) {
            memcpy(a, s->ref_node, (size_t)s->n_ref * sizeof *a);
            memcpy(b, s->ref_rule, (size_t)s->n_ref * sizeof *b);
        }
        s->ref_node = a;
        s->ref_rule = b;
        s->cap_ref = cap;
    }
    int r = gram_rule_new(s->g, "ref");
    if (r < 0)
        return NULL;
    s->ref_node[s->n_ref] = t;
    s->ref_rule[s->n_ref++] = r;
    s->g->rules[r].def = schema_value(s, t, ref);
    return s->g->rules[r].def ? gx_ref(s->a, r) : NULL;
}

static gx *typed_value(sc *s, const cJSON *o, const char *type, const char *path)
{
    if (!strcmp(type, "string"))
        return string_value(s, o, path);
    if (!strcmp(type, "boolean"))
        return gx_alt2(s->a, gx_str(s->a, "true"), gx_str(s->a, "false"));
    if (!strcmp(type, "null"))
        return gx_str(s->a, "null");
    if (!strcmp(type, "array"))
        return array_value(s, o, path);
    if (!strcmp(type, "object"))
        return object_value(s, o, path);
    if (!strcmp(type, "number"))
        return number_value(s, o, path);
    if (!strcmp(type, "integer")) {
        int has_lo = 0, has_hi = 0;
        long long lo = 0, hi = 0;
        if (bound(o, "minimum", &has_lo, &lo, path) ||
            bound(o, "exclusiveMinimum", &has_lo, &lo, path) ||
            bound(o, "maximum", &has_hi, &hi, path) ||
            bound(o, "exclusiveMaximum", &has_hi, &hi, path))
            return NULL;
        if (has_lo && has_hi && lo > hi) {
            dsa_fail(DSA_FORMAT, "%s: minimum is above maximum", path);
            return NULL;
        }
        return has_lo || has_hi ? gram_int_range(s->a, has_lo, lo, has_hi, hi)
                                : json_int_plain(s);
    }
    bad(path, "type '%s' is not a JSON Schema type", type);
    return NULL;
}

static gx *alts_value(sc *s, const cJSON *arr, const char *path, const char *kw)
{
    gx_list l = {0};
    int i = 0;
    if (!cJSON_IsArray(arr) || !cJSON_GetArraySize(arr)) {
        dsa_fail(DSA_FORMAT, "%s: '%s' must be a non-empty array", path, kw);
        return NULL;
    }
    for (const cJSON *c = arr->child; c; c = c->next, i++) {
        char k[64];
        snprintf(k, sizeof k, "%s/%d", kw, i);
        gx *x;
        if (sub(s, c, path, k, &x) || gx_list_push(s->a, &l, x))
            return NULL;
    }
    return gx_alt(s->a, l.v, l.n);
}

static gx *schema_value(sc *s, const cJSON *o, const char *path)
{
    if (++s->depth > GRAM_DEPTH_MAX) {
        dsa_fail(DSA_RANGE, "the schema nests deeper than %d levels", GRAM_DEPTH_MAX);
        return NULL;
    }
    gx *x = NULL;
    if (cJSON_IsTrue(o)) {
        x = json_any(s);
        goto out;
    }
    if (!cJSON_IsObject(o)) {
        dsa_fail(DSA_FORMAT, "%s: a schema must be an object or a boolean", path[0] ? path : "/");
        goto out;
    }
    for (const cJSON *k = o->child; k; k = k->next)
        if (!in(known_kw, k->string) && !in(ignored_kw, k->string)) {
            bad(path[0] ? path : "/", "the keyword '%s' is not supported", k->string);
            goto out;
        }
    const cJSON *v;
    if ((v = cJSON_GetObjectItemCaseSensitive(o, "$ref"))) {
        if (!cJSON_IsString(v))
            dsa_fail(DSA_FORMAT, "%s: '$ref' must be a string", path);
        else
            x = ref_value(s, v->valuestring, path);
        goto out;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(o, "const"))) {
        x = literal(s, v);
        goto out;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(o, "enum"))) {
        gx_list l = {0};
        if (!cJSON_IsArray(v) || !cJSON_GetArraySize(v)) {
            dsa_fail(DSA_FORMAT, "%s: 'enum' must be a non-empty array", path);
            goto out;
        }
        for (const cJSON *c = v->child; c; c = c->next)
            if (gx_list_push(s->a, &l, literal(s, c)))
                goto out;
        x = gx_alt(s->a, l.v, l.n);
        goto out;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(o, "anyOf")) ||
        (v = cJSON_GetObjectItemCaseSensitive(o, "oneOf"))) {
        x = alts_value(s, v, path, v->string);
        goto out;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(o, "allOf"))) {
        if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 1) {
            bad(path, "%s", "'allOf' is supported with one schema only");
            goto out;
        }
        x = schema_value(s, v->child, path);
        goto out;
    }
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "type");
    if (cJSON_IsString(t)) {
        x = typed_value(s, o, t->valuestring, path);
    } else if (cJSON_IsArray(t) && cJSON_GetArraySize(t)) {
        gx_list l = {0};
        for (const cJSON *c = t->child; c; c = c->next) {
            if (!cJSON_IsString(c)) {
                dsa_fail(DSA_FORMAT, "%s: 'type' must name types", path);
                goto out;
            }
            if (gx_list_push(s->a, &l, typed_value(s, o, c->valuestring, path)))
                goto out;
        }
        x = gx_alt(s->a, l.v, l.n);
    } else if (t) {
        dsa_fail(DSA_FORMAT, "%s: 'type' must be a string or an array", path);
    } else if (cJSON_GetObjectItemCaseSensitive(o, "properties")) {
        x = object_value(s, o, path);
    } else if (cJSON_GetObjectItemCaseSensitive(o, "items")) {
        x = array_value(s, o, path);
    } else {
        x = json_any(s);
    }
out:
    s->depth--;
    return x;
}

static dsa_err finish(sc *s, gx *x)
{
    if (!x)
        return s->a->oom ? DSA_NOMEM : DSA_FORMAT;
    s->g->root = gram_rule_new(s->g, "root");
    if (s->g->root < 0)
        return DSA_NOMEM;
    s->g->rules[s->g->root].def = x;
    return DSA_OK;
}

dsa_err gram_from_schema(dsa_gram *g, gx_arena *a, const char *text, size_t len, int any_ws)
{
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root)
        return dsa_fail(DSA_FORMAT, "the schema is not valid JSON");
    sc s = {.g = g, .a = a, .root = root, .any_ws = any_ws, .any_rule = -1};
    dsa_err err = DSA_OK;
    gx *x = schema_value(&s, root, "");
    if (!x)
        err = a->oom ? DSA_NOMEM : (dsa_errmsg()[0] ? DSA_FORMAT : DSA_FORMAT);
    else
        err = finish(&s, x);
    cJSON_Delete(root);
    return err;
}

dsa_err gram_schema_value(dsa_gram *g, gx_arena *a, const cJSON *schema, int any_ws, gx **out)
{
    sc s = {.g = g, .a = a, .root = schema, .any_ws = any_ws, .any_rule = -1};
    *out = schema_value(&s, schema, "");
    return *out ? DSA_OK : a->oom ? DSA_NOMEM : DSA_FORMAT;
}

dsa_err gram_json_object(dsa_gram *g, gx_arena *a, int any_ws)
{
    sc s = {.g = g, .a = a, .any_ws = any_ws, .any_rule = -1};
    return finish(&s, object_value(&s, &(cJSON){.type = cJSON_Object}, ""));
}

dsa_err gram_from_choice(dsa_gram *g, gx_arena *a, const char *text, size_t len)
{
    cJSON *arr = cJSON_ParseWithLength(text, len);
    dsa_err err = DSA_OK;
    gx_list l = {0};
    if (!cJSON_IsArray(arr) || !cJSON_GetArraySize(arr)) {
        err = dsa_fail(DSA_FORMAT, "the choice must be a non-empty array of strings");
        goto out;
    }
    for (const cJSON *c = arr->child; c; c = c->next) {
        if (!cJSON_IsString(c)) {
            err = dsa_fail(DSA_FORMAT, "the choice must be a non-empty array of strings");
            goto out;
        }
        if (gx_list_push(a, &l, gx_str(a, c->valuestring))) {
            err = DSA_NOMEM;
            goto out;
        }
    }
    sc s = {.g = g, .a = a};
    err = finish(&s, gx_alt(a, l.v, l.n));
out:
    cJSON_Delete(arr);
    return err;
}
