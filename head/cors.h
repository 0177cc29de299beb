/* cors.h - CORS as vLLM serves it: Starlette's CORSMiddleware with vLLM's
 * options (--allowed-origins, --allowed-methods, --allowed-headers as JSON
 * lists, --allow-credentials; defaults ["*"], ["*"], ["*"], off).
 *
 * A preflight (OPTIONS carrying Origin and Access-Control-Request-Method) is
 * answered by the middleware for any path, before authentication: 200 "OK"
 * or 400 "Disallowed CORS origin, method, headers".  Any other request with
 * an Origin gets the CORS headers on its response. */
#ifndef DSA_HEAD_CORS_H
#define DSA_HEAD_CORS_H

#include "common/error.h"
#include "head/api.h"
#include "head/http.h"

typedef struct dsa_cors {
    char **origins;
    int n_origins, all_origins;
    char **methods;             /* "*" expanded to every method */
    int n_methods;
    char **headers_lc;          /* allowed headers, lower case, safelisted included */
    int n_headers, all_headers;
    char *methods_line;         /* "DELETE, GET, ..." */
    char *headers_line;         /* "Accept, ..., X-Custom" */
    int credentials;
} dsa_cors;

/* Each list a JSON array of strings, as vLLM's options take them. */
dsa_err dsa_cors_init(dsa_cors *c, const char *origins_json, const char *methods_json,
                      const char *headers_json, int allow_credentials);
void dsa_cors_deinit(dsa_cors *c);

/* Returns 1 when r is a preflight: then *status (200 or 400), the header
 * lines to send in hdrs and the plain-text body in *body. */
int dsa_cors_preflight(const dsa_cors *c, const dsa_http_req *r, dsa_jbuf *hdrs, int *status,
                       const char **body);
/* The header lines of an ordinary response to r (none without an Origin). */
void dsa_cors_simple(const dsa_cors *c, const dsa_http_req *r, dsa_jbuf *hdrs);

#endif
