/* cors.c - Starlette's CORSMiddleware rules in C (see cors.h).
 *
 * What the middleware sends, from its source: simple responses get
 * Access-Control-Allow-Origin "*" when every origin is allowed (the request's
 * origin, with Vary: Origin, when a cookie came or only listed origins are
 * allowed) and Access-Control-Allow-Credentials "true" with credentials;
 * preflights get the allowed methods, Access-Control-Max-Age 600, the allowed
 * headers (or the requested ones echoed when all are allowed) and 400 naming
 * what was refused. */
#include "head/cors.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const all_methods[] = {"DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST",
                                          "PUT"};
/* CORS-safelisted request headers, always allowed */
static const char *const safelisted[] = {"Accept", "Accept-Language", "Content-Language",
                                         "Content-Type"};

static void free_list(char **l, int n)
{
    for (int i = 0; i < n; i++)
        free(l[i]);
    free(l);
}

static int push(char ***l, int *n, const char *s)
{
    char **nl = realloc(*l, (size_t)(*n + 1) * sizeof *nl);
    if (!nl)
        return -1;
    *l = nl;
    if (!(nl[*n] = strdup(s)))
        return -1;
    (*n)++;
    return 0;
}

static int has(char *const *l, int n, const char *s)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(l[i], s))
            return 1;
    return 0;
}

static dsa_err parse_list(const char *name, const char *json, char ***out, int *n)
{
    *out = NULL;
    *n = 0;
    cJSON *v = cJSON_Parse(json ? json : "[\"*\"]");
    if (!cJSON_IsArray(v)) {
        cJSON_Delete(v);
        return dsa_fail(DSA_INVAL, "--%s: expected a JSON list of strings, e.g. '[\"*\"]'",
                        name);
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, v)
    {
        if (!cJSON_IsString(it)) {
            cJSON_Delete(v);
            free_list(*out, *n);
            *out = NULL;
            *n = 0;
            return dsa_fail(DSA_INVAL, "--%s: expected a JSON list of strings", name);
        }
        if (push(out, n, it->valuestring)) {
            cJSON_Delete(v);
            return dsa_fail(DSA_NOMEM, "cors");
        }
    }
    cJSON_Delete(v);
    return DSA_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *join(char *const *l, int n)
{
    dsa_jbuf b = {0};
    for (int i = 0; i < n; i++) {
        if (i)
            dsa_jbuf_puts(&b, ", ");
        dsa_jbuf_puts(&b, l[i]);
    }
    if (!b.data)
        return strdup("");
    return b.data; /* the jbuf's buffer, malloc'd */
}

dsa_err dsa_cors_init(dsa_cors *c, const char *origins_json, const char *methods_json,
                      const char *headers_json, int allow_credentials)
{
    memset(c, 0, sizeof *c);
    c->credentials = allow_credentials;
    char **methods = NULL, **headers = NULL;
    int n_methods = 0, n_headers = 0;
    dsa_err err;
    if ((err = parse_list("allowed-origins", origins_json, &c->origins, &c->n_origins)) ||
        (err = parse_list("allowed-methods", methods_json, &methods, &n_methods)) ||
        (err = parse_list("allowed-headers", headers_json, &headers, &n_headers)))
        goto fail;
    c->all_origins = has(c->origins, c->n_origins, "*");
    c->all_headers = has(headers, n_headers, "*");
    err = dsa_fail(DSA_NOMEM, "cors");
    if (has(methods, n_methods, "*")) {
        for (size_t i = 0; i < sizeof all_methods / sizeof *all_methods; i++)
            if (push(&c->methods, &c->n_methods, all_methods[i]))
                goto fail;
    } else {
        for (int i = 0; i < n_methods; i++)
            if (push(&c->methods, &c->n_methods, methods[i]))
                goto fail;
    }
    /* sorted(SAFELISTED_HEADERS | set(allow_headers)) */
    char **all = NULL;
    int n_all = 0;
    for (size_t i = 0; i < sizeof safelisted / sizeof *safelisted; i++)
        if (push(&all, &n_all, safelisted[i]))
            goto fail_all;
    for (int i = 0; i < n_headers; i++)
        if (!has(all, n_all, headers[i]) && push(&all, &n_all, headers[i]))
            goto fail_all;
    qsort(all, (size_t)n_all, sizeof *all, cmp_str);
    if (!(c->headers_line = join(all, n_all)) || !(c->methods_line = join(c->methods,
                                                                          c->n_methods)))
        goto fail_all;
    for (int i = 0; i < n_all; i++) {
        if (push(&c->headers_lc, &c->n_headers, all[i]))
            goto fail_all;
        for (char *p = c->headers_lc[c->n_headers - 1]; *p; p++)
            *p = (char)tolower((unsigned char)*p);
    }
    free_list(all, n_all);
    free_list(methods, n_methods);
    free_list(headers, n_headers);
    return DSA_OK;
fail_all:
    free_list(all, n_all);
fail:
    free_list(methods, n_methods);
    free_list(headers, n_headers);
    dsa_cors_deinit(c);
    return err;
}

void dsa_cors_deinit(dsa_cors *c)
{
    free_list(c->origins, c->n_origins);
    free_list(c->methods, c->n_methods);
    free_list(c->headers_lc, c->n_headers);
    free(c->methods_line);
    free(c->headers_line);
    memset(c, 0, sizeof *c);
}

static int origin_allowed(const dsa_cors *c, const char *origin)
{
    return c->all_origins || has(c->origins, c->n_origins, origin);
}

/* Header values go out as they came: drop CR/LF so none can add a line. */
static void put_value(dsa_jbuf *b, const char *v)
{
    for (; *v; v++)
        if (*v != '\r' && *v != '\n')
            dsa_jbuf_put(b, v, 1);
    dsa_jbuf_puts(b, "\r\n");
}

int dsa_cors_preflight(const dsa_cors *c, const dsa_http_req *r, dsa_jbuf *hdrs, int *status,
                       const char **body)
{
    if (strcmp(r->method_name, "OPTIONS") || !r->origin || !r->acr_method)
        return 0;
    int explicit_origin = !c->all_origins || c->credentials;
    if (explicit_origin)
        dsa_jbuf_puts(hdrs, "Vary: Origin\r\n");
    else
        dsa_jbuf_puts(hdrs, "Access-Control-Allow-Origin: *\r\n");
    dsa_jbuf_printf(hdrs, "Access-Control-Allow-Methods: %s\r\nAccess-Control-Max-Age: 600\r\n",
                    c->methods_line);
    if (!c->all_headers)
        dsa_jbuf_printf(hdrs, "Access-Control-Allow-Headers: %s\r\n", c->headers_line);
    if (c->credentials)
        dsa_jbuf_puts(hdrs, "Access-Control-Allow-Credentials: true\r\n");
    int bad_origin = 0, bad_method = 0, bad_headers = 0;
    if (origin_allowed(c, r->origin)) {
        if (explicit_origin) {
            dsa_jbuf_puts(hdrs, "Access-Control-Allow-Origin: ");
            put_value(hdrs, r->origin);
        }
    } else {
        bad_origin = 1;
    }
    if (!has(c->methods, c->n_methods, r->acr_method))
        bad_method = 1;
    if (c->all_headers && r->acr_headers) {
        dsa_jbuf_puts(hdrs, "Access-Control-Allow-Headers: ");
        put_value(hdrs, r->acr_headers);
    } else if (r->acr_headers) {
        /* each requested name, lower-cased and trimmed, must be allowed */
        const char *p = r->acr_headers;
        while (!bad_headers) {
            const char *e = strchr(p, ',');
            size_t n = e ? (size_t)(e - p) : strlen(p);
            while (n && isspace((unsigned char)*p)) {
                p++;
                n--;
            }
            while (n && isspace((unsigned char)p[n - 1]))
                n--;
            int ok = 0;
            for (int i = 0; i < c->n_headers && !ok; i++)
                ok = strlen(c->headers_lc[i]) == n && !strncasecmp(c->headers_lc[i], p, n);
            bad_headers = !ok;
            if (!e)
                break;
            p = e + 1;
        }
    }
    static const char *const texts[8] = {
        "OK", "Disallowed CORS headers", "Disallowed CORS method",
        "Disallowed CORS method, headers", "Disallowed CORS origin",
        "Disallowed CORS origin, headers", "Disallowed CORS origin, method",
        "Disallowed CORS origin, method, headers"};
    int k = bad_origin * 4 + bad_method * 2 + bad_headers;
    *status = k ? 400 : 200;
    *body = texts[k];
    return 1;
}

void dsa_cors_simple(const dsa_cors *c, const dsa_http_req *r, dsa_jbuf *hdrs)
{
    if (!r->origin)
        return;
    int explicit_origin = (c->all_origins && r->has_cookie) ||
                          (!c->all_origins && origin_allowed(c, r->origin));
    if (explicit_origin) {
        dsa_jbuf_puts(hdrs, "Access-Control-Allow-Origin: ");
        put_value(hdrs, r->origin);
        dsa_jbuf_puts(hdrs, "Vary: Origin\r\n");
    } else if (c->all_origins) {
        dsa_jbuf_puts(hdrs, "Access-Control-Allow-Origin: *\r\n");
    }
    if (c->credentials)
        dsa_jbuf_puts(hdrs, "Access-Control-Allow-Credentials: true\r\n");
}
