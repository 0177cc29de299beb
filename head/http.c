/* http.c - HTTP/1.1 connections on libuv with llhttp (see http.h).
 *
 * A connection's bytes go into `in`; the parser consumes them until a
 * request is complete, then pauses (on_message_complete returns
 * HPE_PAUSED) so the request is dispatched outside the parser and the next
 * pipelined request waits in `in` until this one's response is done.
 * Handles (tcp, timer) are closed asynchronously and the connection is
 * freed in the last close callback (STYLE.md rule 9). */
#include "head/http.h"

#include <llhttp.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"
#include "head/api.h"

#define LINGER_MS 2000               /* after a final response, wait for EOF */

struct dsa_http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    dsa_http_params p;
    llhttp_settings_t settings;
    dsa_http_conn *conns;
    int64_t n_conns;
    int closing, listener_open;
    uint64_t next_id;
    int port;
    int64_t unsent;             /* bytes in every connection's write queue */
};

struct dsa_http_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    dsa_http_server *srv;
    dsa_http_conn *next, *prev;
    llhttp_t parser;
    char *in;                   /* unparsed input */
    size_t n_in, cap_in;
    /* the request being parsed */
    dsa_jbuf url, field, value, auth, reqid, body;
    dsa_jbuf origin, acr_method, acr_headers;
    dsa_jbuf extra;             /* response headers the application added */
    int has_cookie;
    int64_t unsent;             /* bytes of this connection's write queue */
    int64_t header_bytes;
    int expect_continue;
    int error_status;           /* 413/431/400 found while parsing */
    int parsing;                /* a message has begun */
    int ready;                  /* a message is complete, not dispatched */
    /* the request in progress */
    dsa_http_req req;
    int busy, streaming, keep_alive, http10;
    int status;
    void *req_user;
    int processing;             /* inside process_input */
    int reading;
    int shutting, closing, n_open;
    int overflow;               /* a slow reader fell too far behind */
    char id[48];
};

static void conn_close(dsa_http_conn *c);
static void process_input(dsa_http_conn *c);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);

const char *dsa_http_status_text(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}

/* ---- handles and writes ---------------------------------------------------- */

static void server_maybe_free(dsa_http_server *s)
{
    if (s->closing && !s->listener_open && s->n_conns == 0)
        free(s);
}

static void on_conn_closed(uv_handle_t *h)
{
    dsa_http_conn *c = h->data;
    if (--c->n_open > 0)
        return;
    dsa_http_server *s = c->srv;
    free(c->in);
    dsa_jbuf_deinit(&c->url);
    dsa_jbuf_deinit(&c->field);
    dsa_jbuf_deinit(&c->value);
    dsa_jbuf_deinit(&c->auth);
    dsa_jbuf_deinit(&c->reqid);
    dsa_jbuf_deinit(&c->body);
    dsa_jbuf_deinit(&c->origin);
    dsa_jbuf_deinit(&c->acr_method);
    dsa_jbuf_deinit(&c->acr_headers);
    dsa_jbuf_deinit(&c->extra);
    free(c);
    s->n_conns--;
    server_maybe_free(s);
}

static void conn_close(dsa_http_conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    dsa_http_server *s = c->srv;
    if (c->busy && c->req_user && s->p.on_abort) {
        void *u = c->req_user;
        c->req_user = NULL;
        s->p.on_abort(s->p.user, c, u);
    }
    c->busy = 0;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_closed);
}

typedef struct wreq {
    uv_write_t req;
    uv_buf_t buf;
    char data[];
} wreq;

/* Every write is counted into the connection's and the server's unsent
 * bytes until its callback (done, failed or canceled by the close). */
static void on_written(uv_write_t *w, int status)
{
    dsa_http_conn *c = w->data;
    wreq *wr = (wreq *)w;
    c->unsent -= (int64_t)wr->buf.len;
    c->srv->unsent -= (int64_t)wr->buf.len;
    free(wr);
    if (status < 0 && status != UV_ECANCELED)
        conn_close(c);
}

static void conn_write(dsa_http_conn *c, const char *a, size_t na, const char *b, size_t nb)
{
    if (c->closing || c->shutting || c->overflow)
        return;
    wreq *w = malloc(sizeof *w + na + nb);
    if (!w) {
        conn_close(c);
        return;
    }
    memcpy(w->data, a, na);
    if (nb)
        memcpy(w->data + na, b, nb);
    w->buf = uv_buf_init(w->data, (unsigned)(na + nb));
    w->req.data = c;
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &w->buf, 1, on_written) < 0) {
        free(w);
        conn_close(c);
        return;
    }
    c->unsent += (int64_t)(na + nb);
    c->srv->unsent += (int64_t)(na + nb);
}

static void on_linger_timeout(uv_timer_t *t)
{
    conn_close(t->data);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    dsa_http_conn *c = req->data;
    free(req);
    if (status < 0 || c->closing) {
        conn_close(c);
        return;
    }
    uv_timer_start(&c->timer, on_linger_timeout, LINGER_MS, 0);
}

/* Finishes the connection after what is queued has been written: shut the
 * write side down, read and drop until EOF or the linger timeout. */
static void conn_shutdown(dsa_http_conn *c)
{
    if (c->closing || c->shutting)
        return;
    c->shutting = 1;
    uv_shutdown_t *req = malloc(sizeof *req);
    if (!req) {
        conn_close(c);
        return;
    }
    req->data = c;
    if (uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
        free(req);
        conn_close(c);
    }
}

static void on_timeout(uv_timer_t *t)
{
    dsa_http_conn *c = t->data;
    if (c->parsing && !c->busy) {
        /* a slow client: the whole request did not arrive in time */
        c->keep_alive = 0;
        c->busy = 1;
        dsa_http_respond(c, 408, "application/json", NULL,
                         "{\"error\":{\"message\":\"request timed out\",\"type\":"
                         "\"invalid_request_error\",\"param\":null,\"code\":408}}", 95);
        return;
    }
    if (!c->busy)
        conn_close(c);
}

static void timer_idle(dsa_http_conn *c)
{
    double s = c->parsing ? c->srv->p.read_timeout : c->srv->p.keepalive_timeout;
    uv_timer_start(&c->timer, on_timeout, (uint64_t)(s * 1000), 0);
}

/* ---- parser callbacks ----------------------------------------------------- */

static int count_header(dsa_http_conn *c, size_t n)
{
    c->header_bytes += (int64_t)n;
    if (c->header_bytes > c->srv->p.max_header_bytes) {
        c->error_status = 431;
        return -1;
    }
    return 0;
}

static int on_message_begin(llhttp_t *p)
{
    dsa_http_conn *c = p->data;
    c->parsing = 1;
    c->header_bytes = 0;
    c->expect_continue = 0;
    c->error_status = 0;
    dsa_jbuf_reset(&c->url);
    dsa_jbuf_reset(&c->field);
    dsa_jbuf_reset(&c->value);
    dsa_jbuf_reset(&c->auth);
    dsa_jbuf_reset(&c->reqid);
    dsa_jbuf_reset(&c->body);
    dsa_jbuf_reset(&c->origin);
    dsa_jbuf_reset(&c->acr_method);
    dsa_jbuf_reset(&c->acr_headers);
    c->has_cookie = 0;
    c->req.t_start = dsa_time_now();
    timer_idle(c);
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
    dsa_http_conn *c = p->data;
    if (count_header(c, n))
        return -1;
    dsa_jbuf_put(&c->url, at, n);
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
    dsa_http_conn *c = p->data;
    if (count_header(c, n))
        return -1;
    dsa_jbuf_put(&c->field, at, n);
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
    dsa_http_conn *c = p->data;
    if (count_header(c, n))
        return -1;
    dsa_jbuf_put(&c->value, at, n);
    return 0;
}

static int on_header_value_complete(llhttp_t *p)
{
    dsa_http_conn *c = p->data;
    const char *f = c->field.data ? c->field.data : "";
    const char *v = c->value.data ? c->value.data : "";
    if (!strcasecmp(f, "authorization")) {
        dsa_jbuf_reset(&c->auth);
        dsa_jbuf_put(&c->auth, v, c->value.len);
    } else if (!strcasecmp(f, "x-request-id")) {
        dsa_jbuf_reset(&c->reqid);
        dsa_jbuf_put(&c->reqid, v, c->value.len < 64 ? c->value.len : 64);
    } else if (!strcasecmp(f, "origin")) {
        dsa_jbuf_reset(&c->origin);
        dsa_jbuf_put(&c->origin, v, c->value.len);
    } else if (!strcasecmp(f, "access-control-request-method")) {
        dsa_jbuf_reset(&c->acr_method);
        dsa_jbuf_put(&c->acr_method, v, c->value.len);
    } else if (!strcasecmp(f, "access-control-request-headers")) {
        dsa_jbuf_reset(&c->acr_headers);
        dsa_jbuf_put(&c->acr_headers, v, c->value.len);
    } else if (!strcasecmp(f, "cookie")) {
        c->has_cookie = 1;
    } else if (!strcasecmp(f, "expect") && !strcasecmp(v, "100-continue")) {
        c->expect_continue = 1;
    }
    dsa_jbuf_reset(&c->field);
    dsa_jbuf_reset(&c->value);
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    dsa_http_conn *c = p->data;
    if ((p->flags & F_CONTENT_LENGTH) &&
        p->content_length > (uint64_t)c->srv->p.max_body_bytes) {
        c->error_status = 413;
        return -1;
    }
    if (c->expect_continue)
        conn_write(c, "HTTP/1.1 100 Continue\r\n\r\n", 25, NULL, 0);
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    dsa_http_conn *c = p->data;
    if ((int64_t)(c->body.len + n) > c->srv->p.max_body_bytes) {
        c->error_status = 413;
        return -1;
    }
    dsa_jbuf_put(&c->body, at, n);
    if (c->body.oom) {
        c->error_status = 500;
        return -1;
    }
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    dsa_http_conn *c = p->data;
    c->ready = 1;
    return HPE_PAUSED;
}

/* ---- dispatch ----------------------------------------------------------------- */

static void fail_request(dsa_http_conn *c, int status, const char *msg)
{
    dsa_api_error e;
    dsa_api_fail(&e, status, NULL, "%s", msg);
    dsa_jbuf b = {0};
    dsa_api_error_json(&b, &e);
    c->keep_alive = 0;
    c->busy = 1;
    dsa_jbuf_reset(&c->extra);
    if (!c->req.request_id) {
        snprintf(c->id, sizeof c->id, "req-%llx", (unsigned long long)++c->srv->next_id);
        c->req.request_id = c->id;
    }
    dsa_http_respond(c, status, "application/json", NULL, b.data ? b.data : "", b.len);
    dsa_jbuf_deinit(&b);
}

static void dispatch(dsa_http_conn *c)
{
    dsa_http_server *s = c->srv;
    c->ready = 0;
    c->parsing = 0;
    c->busy = 1;
    c->streaming = 0;
    c->status = 0;
    uv_timer_stop(&c->timer);
    c->http10 = c->parser.http_major == 1 && c->parser.http_minor == 0;
    c->keep_alive = llhttp_should_keep_alive(&c->parser) && !s->closing;
    char *url = c->url.data ? c->url.data : (char *)"/";
    char *q = strpbrk(url, "?#");
    if (q)
        *q = 0;
    c->req.request_id_given = c->reqid.len > 0;
    if (c->reqid.len) {
        c->req.request_id = c->reqid.data;
    } else {
        snprintf(c->id, sizeof c->id, "req-%llx%04x", (unsigned long long)++s->next_id,
                 (unsigned)(uv_hrtime() & 0xffff));
        c->req.request_id = c->id;
    }
    c->req.method = c->parser.method;
    c->req.method_name = llhttp_method_name((llhttp_method_t)c->parser.method);
    c->req.path = url;
    c->req.authorization = c->auth.len ? c->auth.data : NULL;
    c->req.origin = c->origin.data ? c->origin.data : NULL;
    c->req.acr_method = c->acr_method.data ? c->acr_method.data : NULL;
    c->req.acr_headers = c->acr_headers.data ? c->acr_headers.data : NULL;
    c->req.has_cookie = c->has_cookie;
    dsa_jbuf_reset(&c->extra);
    c->req.body = c->body.data ? c->body.data : "";
    c->req.n_body = c->body.len;
    c->req.keep_alive = c->keep_alive;
    s->p.on_request(s->p.user, c, &c->req);
}

static void process_input(dsa_http_conn *c)
{
    if (c->processing)
        return;
    c->processing = 1;
    while (!c->closing && !c->shutting && !c->busy && c->n_in > 0) {
        llhttp_errno_t err = llhttp_execute(&c->parser, c->in, c->n_in);
        size_t used = c->n_in;
        if (err != HPE_OK) {
            const char *pos = llhttp_get_error_pos(&c->parser);
            used = pos && pos >= c->in && pos <= c->in + c->n_in ? (size_t)(pos - c->in)
                                                                  : c->n_in;
        }
        memmove(c->in, c->in + used, c->n_in - used);
        c->n_in -= used;
        if (err == HPE_PAUSED) {
            llhttp_resume(&c->parser);
            if (c->ready)
                dispatch(c);
            continue;
        }
        if (err != HPE_OK) {
            int status = c->error_status ? c->error_status : 400;
            const char *msg = status == 413   ? "request body too large"
                              : status == 431 ? "request headers too large"
                                              : llhttp_get_error_reason(&c->parser);
            c->n_in = 0;
            fail_request(c, status, msg ? msg : "malformed HTTP request");
            break;
        }
    }
    c->processing = 0;
    if (!c->closing && !c->shutting && !c->reading && !c->busy) {
        /* the backlog was consumed: read again */
        c->reading = 1;
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static __thread char slab[65536];
    (void)h;
    (void)suggested;
    *buf = uv_buf_init(slab, sizeof slab);
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    dsa_http_conn *c = st->data;
    if (n < 0) {
        /* EOF or error: the client is gone, abort what it asked for */
        conn_close(c);
        return;
    }
    if (n == 0 || c->shutting)
        return;
    if (c->n_in + (size_t)n > c->cap_in) {
        size_t cap = c->cap_in ? c->cap_in : 4096;
        while (cap < c->n_in + (size_t)n)
            cap *= 2;
        char *d = realloc(c->in, cap);
        if (!d) {
            conn_close(c);
            return;
        }
        c->in = d;
        c->cap_in = cap;
    }
    memcpy(c->in + c->n_in, buf->base, (size_t)n);
    c->n_in += (size_t)n;
    if (c->busy) {
        /* pipelined bytes wait; stop reading when too many pile up */
        if ((int64_t)c->n_in > c->srv->p.max_header_bytes + c->srv->p.max_body_bytes) {
            uv_read_stop(st);
            c->reading = 0;
        }
        return;
    }
    process_input(c);
}

static void request_done(dsa_http_conn *c)
{
    dsa_http_server *s = c->srv;
    if (s->p.on_response)
        s->p.on_response(s->p.user, &c->req, c->status, dsa_time_now() - c->req.t_start);
    c->busy = 0;
    c->streaming = 0;
    c->req_user = NULL;
    if (c->overflow) {
        conn_close(c);
        return;
    }
    if (!c->keep_alive) {
        conn_shutdown(c);
        return;
    }
    timer_idle(c);
    process_input(c);
}

/* ---- responses ---------------------------------------------------------------- */

static void write_head(dsa_http_conn *c, int status, const char *ctype, const char *extra,
                       const char *length_or_chunked, const char *body, size_t n_body)
{
    char head[4096];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n%sx-request-id: %s\r\n%s%.*s%s\r\n",
                     status, dsa_http_status_text(status), ctype, length_or_chunked,
                     c->req.request_id ? c->req.request_id : "-", extra ? extra : "",
                     (int)c->extra.len, c->extra.data ? c->extra.data : "",
                     c->keep_alive ? "" : "Connection: close\r\n");
    if (n < 0 || (size_t)n >= sizeof head)
        n = 0;
    conn_write(c, head, (size_t)n, body, n_body);
}

void dsa_http_conn_add_headers(dsa_http_conn *c, const char *lines)
{
    dsa_jbuf_puts(&c->extra, lines);
}

int64_t dsa_http_server_unsent_bytes(const dsa_http_server *s)
{
    return s->unsent;
}

void dsa_http_conn_set_user(dsa_http_conn *c, void *req_user)
{
    c->req_user = req_user;
}

void dsa_http_respond(dsa_http_conn *c, int status, const char *ctype, const char *extra,
                      const char *body, size_t n_body)
{
    if (!c->busy || c->closing)
        return;
    char len[64];
    snprintf(len, sizeof len, "Content-Length: %zu\r\n", n_body);
    c->status = status;
    write_head(c, status, ctype, extra, len, body, n_body);
    request_done(c);
}

void dsa_http_stream_begin(dsa_http_conn *c, int status, const char *ctype)
{
    if (!c->busy || c->closing)
        return;
    c->status = status;
    c->streaming = 1;
    if (c->http10)
        c->keep_alive = 0;
    write_head(c, status, ctype, "Cache-Control: no-cache\r\n",
               c->http10 ? "" : "Transfer-Encoding: chunked\r\n", NULL, 0);
}

static void on_overflow(uv_timer_t *t)
{
    conn_close(t->data);
}

/* Drops a client that does not read: from the loop, not from inside the
 * caller, which still holds its request. */
static void conn_overflow(dsa_http_conn *c, const char *why)
{
    dsa_log_req(DSA_LOG_WARN, c->req.request_id ? c->req.request_id : "-",
                "client too slow (%lld bytes unsent%s), closing", (long long)c->unsent, why);
    c->overflow = 1;
    c->keep_alive = 0;
    uv_timer_start(&c->timer, on_overflow, 0, 0);
}

/* Past the server-wide bound: the connection furthest behind goes first,
 * a stream (its request aborted) or a finished response still queued (one
 * scan, only while over the bound). */
static void cut_slowest(dsa_http_server *s)
{
    dsa_http_conn *worst = NULL;
    for (dsa_http_conn *c = s->conns; c; c = c->next)
        if (!c->overflow && !c->closing && (!worst || c->unsent > worst->unsent))
            worst = c;
    if (worst && worst->unsent > 0)
        conn_overflow(worst, "; the server's bound on unsent data is reached");
}

int dsa_http_server_over_bound(dsa_http_server *s)
{
    if (s->p.max_unsent_total <= 0 || s->unsent <= s->p.max_unsent_total)
        return 0;
    cut_slowest(s);
    return 1;
}

int dsa_http_stream_write(dsa_http_conn *c, const char *data, size_t n)
{
    if (!c->streaming || c->closing || c->overflow)
        return -1;
    if ((int64_t)uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) >
        c->srv->p.max_unsent_bytes) {
        conn_overflow(c, "");
        return -1;
    }
    if (dsa_http_server_over_bound(c->srv) && c->overflow)
        return -1;
    if (n == 0)
        return 0;
    if (c->http10) {
        conn_write(c, data, n, NULL, 0);
        return 0;
    }
    /* one write per chunk: size line + data + CRLF */
    char *buf = malloc(n + 24);
    if (!buf)
        return -1;
    int h = snprintf(buf, 24, "%zx\r\n", n);
    memcpy(buf + h, data, n);
    memcpy(buf + h + n, "\r\n", 2);
    conn_write(c, buf, (size_t)h + n + 2, NULL, 0);
    free(buf);
    return 0;
}

void dsa_http_stream_end(dsa_http_conn *c)
{
    if (!c->streaming || c->closing)
        return;
    if (!c->http10)
        conn_write(c, "0\r\n\r\n", 5, NULL, 0);
    request_done(c);
}

/* ---- server ------------------------------------------------------------------ */

static void on_connection(uv_stream_t *l, int status)
{
    dsa_http_server *s = l->data;
    if (status < 0 || s->closing)
        return;
    dsa_http_conn *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->srv = s;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->n_open = 2;
    s->n_conns++;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    if (uv_accept(l, (uv_stream_t *)&c->tcp) < 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    llhttp_init(&c->parser, HTTP_REQUEST, &s->settings);
    c->parser.data = c;
    if (s->n_conns > s->p.max_connections) {
        fail_request(c, 503, "too many connections");
        return;
    }
    c->reading = 1;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    timer_idle(c);
}

dsa_err dsa_http_server_create(uv_loop_t *loop, const dsa_http_params *p,
                               dsa_http_server **out)
{
    dsa_http_server *s = calloc(1, sizeof *s);
    if (!s)
        return dsa_fail(DSA_NOMEM, "http server");
    s->loop = loop;
    s->p = *p;
    if (s->p.max_unsent_bytes <= 0)
        s->p.max_unsent_bytes = 64 << 20;
    llhttp_settings_init(&s->settings);
    s->settings.on_message_begin = on_message_begin;
    s->settings.on_url = on_url;
    s->settings.on_header_field = on_header_field;
    s->settings.on_header_value = on_header_value;
    s->settings.on_header_value_complete = on_header_value_complete;
    s->settings.on_headers_complete = on_headers_complete;
    s->settings.on_body = on_body;
    s->settings.on_message_complete = on_message_complete;
    /* a name (localhost) or an address, IPv4 or IPv6: the first address
     * getaddrinfo gives, as uvicorn binds */
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE}, *ai = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", p->port);
    int rc = getaddrinfo(p->host && *p->host ? p->host : NULL, port, &hints, &ai);
    if (rc != 0 || !ai) {
        free(s);
        return dsa_fail(DSA_INVAL, "--host %s: %s", p->host ? p->host : "",
                        rc ? gai_strerror(rc) : "no address");
    }
    struct sockaddr_storage addr;
    memcpy(&addr, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    s->listener_open = 1;
    if ((rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&addr, 0)) < 0 ||
        (rc = uv_listen((uv_stream_t *)&s->listener, 1024, on_connection)) < 0) {
        dsa_err err = dsa_fail(DSA_IO, "cannot listen on %s:%d: %s", p->host, p->port,
                               uv_strerror(rc));
        s->closing = 1;
        dsa_http_server_close(s);
        return err;
    }
    struct sockaddr_storage bound;
    int len = sizeof bound;
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &len);
    s->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
    *out = s;
    return DSA_OK;
}

int dsa_http_server_port(const dsa_http_server *s)
{
    return s->port;
}

int64_t dsa_http_server_n_connections(const dsa_http_server *s)
{
    return s->n_conns;
}

static void on_listener_closed(uv_handle_t *h)
{
    dsa_http_server *s = h->data;
    s->listener_open = 0;
    server_maybe_free(s);
}

void dsa_http_server_close(dsa_http_server *s)
{
    s->closing = 1;
    while (s->conns)
        conn_close(s->conns);
    if (!uv_is_closing((uv_handle_t *)&s->listener))
        uv_close((uv_handle_t *)&s->listener, on_listener_closed);
}
