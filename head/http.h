/* http.h - a small HTTP/1.1 server on libuv + llhttp: keep-alive,
 * pipelining (requests on one connection are answered in order; bytes of
 * the next request wait while one is in progress), chunked request bodies,
 * Expect: 100-continue, limits on header and body size (431/413), a read
 * timeout for slow clients (408), an idle keep-alive timeout and a
 * connection cap (503).
 *
 * The application gets each complete request through on_request and
 * answers it, at once or later, with dsa_http_respond or the
 * dsa_http_stream_* calls (chunked transfer encoding).  When the client goes
 * away while a request is in progress, on_abort is called with the
 * request's user pointer; the application must not touch the connection
 * afterwards.  Everything runs on the loop thread. */
#ifndef DSA_HEAD_HTTP_H
#define DSA_HEAD_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "common/error.h"

typedef struct dsa_http_conn dsa_http_conn;
typedef struct dsa_http_server dsa_http_server;

typedef struct dsa_http_req {
    int method;                 /* llhttp_method_t */
    const char *method_name;
    const char *path;           /* NUL-terminated, without the query */
    const char *authorization;  /* header value or NULL */
    const char *request_id;     /* X-Request-Id or a generated id */
    int request_id_given;       /* request_id is the client's X-Request-Id */
    const char *origin;         /* Origin header or NULL (CORS) */
    const char *acr_method;     /* Access-Control-Request-Method or NULL */
    const char *acr_headers;    /* Access-Control-Request-Headers or NULL */
    int has_cookie;             /* a Cookie header came */
    const char *body;           /* NUL-terminated */
    size_t n_body;
    int keep_alive;
    double t_start;             /* dsa_time_now() at the first byte */
} dsa_http_req;

typedef struct dsa_http_params {
    const char *host;           /* a name or address (getaddrinfo), "::" for all */
    int port;                   /* 0: ephemeral */
    int64_t max_connections;
    int64_t max_header_bytes;
    int64_t max_body_bytes;
    double read_timeout;        /* seconds to receive a whole request */
    double keepalive_timeout;   /* idle seconds before closing */
    int64_t max_unsent_bytes;   /* a stream's client further behind is dropped */
    /* bytes queued for all clients together: past it, the stream furthest
     * behind is dropped at the next write (0: no bound) */
    int64_t max_unsent_total;
    void (*on_request)(void *user, dsa_http_conn *c, const dsa_http_req *r);
    void (*on_abort)(void *user, dsa_http_conn *c, void *req_user);
    /* called on every finished response (status) for metrics and logs */
    void (*on_response)(void *user, const dsa_http_req *r, int status, double seconds);
    void *user;
} dsa_http_params;

dsa_err dsa_http_server_create(uv_loop_t *loop, const dsa_http_params *p,
                               dsa_http_server **out);
/* The bound port (after an ephemeral bind). */
int dsa_http_server_port(const dsa_http_server *s);
int64_t dsa_http_server_n_connections(const dsa_http_server *s);
/* Closes the listener and every connection (aborting requests in
 * progress); the server is freed once every handle has closed, which the
 * loop's run completes. */
void dsa_http_server_close(dsa_http_server *s);

/* Bytes queued on every connection, not yet taken by the kernel. */
int64_t dsa_http_server_unsent_bytes(const dsa_http_server *s);
/* 1 when the unsent bytes exceed max_unsent_total; then the connection
 * furthest behind is dropped (from the loop, shortly).  Stream writes check
 * it themselves. */
int dsa_http_server_over_bound(dsa_http_server *s);

/* Header lines ("Name: value\r\n") added to the response of the request in
 * progress (copied; CORS). */
void dsa_http_conn_add_headers(dsa_http_conn *c, const char *lines);

/* The application's object for the request in progress (for on_abort). */
void dsa_http_conn_set_user(dsa_http_conn *c, void *req_user);

/* A complete response.  extra_headers: "Name: value\r\n" lines or NULL. */
void dsa_http_respond(dsa_http_conn *c, int status, const char *content_type,
                      const char *extra_headers, const char *body, size_t n_body);
/* A streamed response: headers now, then chunks, then the end. */
void dsa_http_stream_begin(dsa_http_conn *c, int status, const char *content_type);
/* Returns -1 when the connection is too far behind (the caller should
 * treat the client as gone; on_abort follows). */
int dsa_http_stream_write(dsa_http_conn *c, const char *data, size_t n);
void dsa_http_stream_end(dsa_http_conn *c);

const char *dsa_http_status_text(int status);

#endif
