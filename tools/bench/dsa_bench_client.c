/* dsa_bench_client.c - the load generator; see dsa_bench_client.h.
 *
 * One uv loop on the calling thread.  An arrival timer moves requests whose
 * send time has come into a FIFO; up to max_concurrency of them run at once,
 * each on its own connection (struct conn: a TCP handle and a timeout timer,
 * freed when both have closed).  With TLS the socket carries ciphertext:
 * received bytes go through dsa_bench_tls and the plaintext to the HTTP
 * parser; what OpenSSL produces is written out after each step. */
#include "tools/bench/dsa_bench_client.h"

#include <cjson/cJSON.h>
#include <llhttp.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "common/log.h"
#include "tools/bench/dsa_bench_sse.h"
#include "tools/bench/dsa_bench_tls.h"

typedef struct run run;

typedef struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t connect;
    run *r;
    dsa_bench_result *out;
    char *req;             /* request bytes, owned */
    size_t n_req;
    llhttp_t parser;
    dsa_bench_sse sse;
    dsa_bench_tls *tls;    /* NULL: plain HTTP */
    int handshaken;
    double now;            /* arrival time of the bytes being parsed */
    double most_recent;    /* vLLM's most_recent_timestamp */
    int first_chunk;
    int message_done;
    int failed;
    int closing;
    int n_open;            /* handles still open */
    char errbody[200];     /* start of a non-200 body */
    size_t n_errbody;
    char rbuf[64 * 1024];
    char plain[64 * 1024]; /* TLS: decrypted bytes */
} conn;

/* One write in flight; the bytes live until libuv is done with them. */
typedef struct conn_write {
    uv_write_t req;
    conn *c;
    size_t n;
    char data[];
} conn_write;

struct run {
    const dsa_bench_client_params *p;
    const dsa_bench_request *reqs;
    dsa_bench_result *out;
    int n;
    uv_loop_t loop;
    uv_timer_t arrival;
    struct sockaddr_storage addr;
    dsa_bench_tls_ctx *tls; /* NULL: plain HTTP */
    llhttp_settings_t settings;
    char host_header[300];
    double t0, t_end;
    int next_arrival;      /* next request index to arrive */
    int *fifo;             /* arrived, not started */
    int fifo_head, fifo_tail;
    int active, n_done;
};

void dsa_bench_result_deinit(dsa_bench_result *r)
{
    if (!r)
        return;
    free(r->itl);
    free(r->text);
    memset(r, 0, sizeof *r);
}

static void conn_fail(conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Records the first failure of a request (later ones are consequences). */
static void conn_fail(conn *c, const char *fmt, ...)
{
    if (c->failed)
        return;
    c->failed = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->out->error, sizeof c->out->error, fmt, ap);
    va_end(ap);
}

static void dispatch(run *r);

static void on_handle_closed(uv_handle_t *h)
{
    conn *c = h->data;
    if (--c->n_open == 0) {
        dsa_bench_sse_deinit(&c->sse);
        dsa_bench_tls_free(c->tls);
        free(c->req);
        free(c);
    }
}

/* Ends a request: settles its result, closes its handles, lets the next
 * waiting request start. */
static void conn_close(conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    dsa_bench_result *o = c->out;
    if (!c->failed) {
        if (o->http_status != 200) {
            conn_fail(c, "HTTP %d: %.*s", o->http_status, (int)c->n_errbody, c->errbody);
        } else if (!c->message_done) {
            conn_fail(c, "the response ended early");
        } else if (!c->first_chunk) {
            conn_fail(c, "Never received a valid chunk to calculate TTFT.");
        } else {
            o->success = 1;
            o->latency = c->most_recent - o->start;
        }
    }
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    run *r = c->r;
    r->active--;
    r->n_done++;
    r->t_end = dsa_time_now();
    if (r->p->on_progress)
        r->p->on_progress(r->p->user, r->n_done, r->n);
    if (r->n_done == r->n)
        uv_close((uv_handle_t *)&r->arrival, NULL);
    else
        dispatch(r);
}

static int push_itl(dsa_bench_result *o, double v)
{
    if (o->n_itl == o->cap_itl) {
        int cap = o->cap_itl ? o->cap_itl * 2 : 64;
        double *n = realloc(o->itl, (size_t)cap * sizeof *n);
        if (!n)
            return -1;
        o->itl = n;
        o->cap_itl = cap;
    }
    o->itl[o->n_itl++] = v;
    return 0;
}

static int push_text(dsa_bench_result *o, const char *s)
{
    size_t n = strlen(s);
    if (o->n_text + n + 1 > o->cap_text) {
        size_t cap = o->cap_text ? o->cap_text : 256;
        while (cap < o->n_text + n + 1)
            cap *= 2;
        char *t = realloc(o->text, cap);
        if (!t)
            return -1;
        o->text = t;
        o->cap_text = cap;
    }
    memcpy(o->text + o->n_text, s, n + 1);
    o->n_text += n;
    return 0;
}

static const char *nonempty_string(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) && v->valuestring[0] ? v->valuestring : NULL;
}

/* One data event of the stream.  Returns non-zero to stop the request. */
static int on_event(void *user, const char *data, size_t len)
{
    conn *c = user;
    dsa_bench_result *o = c->out;
    while (len && (*data == ' ' || *data == '\t'))
        data++, len--;
    while (len && (data[len - 1] == ' ' || data[len - 1] == '\t' || data[len - 1] == '\n'))
        len--;
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0)
        return 0;
    cJSON *j = cJSON_ParseWithLength(data, len);
    if (!j || !cJSON_IsObject(j)) {
        conn_fail(c, "malformed SSE data: %.100s", data);
        cJSON_Delete(j);
        return 1;
    }
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(j, "error");
    if (err && !cJSON_IsNull(err)) {
        const char *msg = cJSON_IsObject(err) ? nonempty_string(err, "message") : NULL;
        conn_fail(c, "error event: %.300s", msg ? msg : "(no message)");
        cJSON_Delete(j);
        return 1;
    }
    const cJSON *choices = cJSON_GetObjectItemCaseSensitive(j, "choices");
    const cJSON *c0 = cJSON_IsArray(choices) ? cJSON_GetArrayItem(choices, 0) : NULL;
    int is_chat = c->r->p->backend == DSA_BENCH_OPENAI_CHAT;
    const char *text = NULL;
    int token = 0;
    if (c0 && !is_chat) {
        token = 1; /* vLLM: any chunk with choices, even with empty text */
        text = nonempty_string(c0, "text");
    } else if (c0) {
        const cJSON *delta = cJSON_GetObjectItemCaseSensitive(c0, "delta");
        text = nonempty_string(delta, "content");
        if (!text)
            text = nonempty_string(delta, "reasoning_content");
        if (!text)
            text = nonempty_string(delta, "reasoning");
        token = text != NULL;
    }
    int rc = 0;
    if (token) {
        if (!c->first_chunk) {
            c->first_chunk = 1;
            o->ttft = c->now - o->start;
        } else if (push_itl(o, c->now - c->most_recent)) {
            conn_fail(c, "out of memory");
            rc = 1;
        }
        c->most_recent = c->now;
        o->n_chunks++;
        if (text && push_text(o, text)) {
            conn_fail(c, "out of memory");
            rc = 1;
        }
    }
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(j, "usage");
    if (cJSON_IsObject(usage)) {
        const cJSON *ct = cJSON_GetObjectItemCaseSensitive(usage, "completion_tokens");
        const cJSON *pt = cJSON_GetObjectItemCaseSensitive(usage, "prompt_tokens");
        if (cJSON_IsNumber(ct))
            o->output_tokens = (int)ct->valuedouble;
        if (cJSON_IsNumber(pt))
            o->usage_prompt_tokens = (int)pt->valuedouble;
    }
    if (is_chat)
        c->most_recent = c->now; /* vLLM's chat client: every data event */
    cJSON_Delete(j);
    return rc;
}

static conn *parser_conn(llhttp_t *p)
{
    return p->data;
}

static int on_headers_complete(llhttp_t *p)
{
    conn *c = parser_conn(p);
    c->out->http_status = p->status_code;
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    conn *c = parser_conn(p);
    if (c->out->http_status != 200) {
        size_t room = sizeof c->errbody - c->n_errbody;
        size_t k = len < room ? len : room;
        memcpy(c->errbody + c->n_errbody, at, k);
        c->n_errbody += k;
        return 0;
    }
    dsa_err err = dsa_bench_sse_feed(&c->sse, at, len, on_event, c);
    if (err) {
        if (err != DSA_CANCELED)
            conn_fail(c, "SSE: %s", dsa_errmsg());
        return -1;
    }
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    conn *c = parser_conn(p);
    if (c->out->http_status == 200) {
        dsa_err err = dsa_bench_sse_finish(&c->sse, on_event, c);
        if (err) {
            if (err != DSA_CANCELED)
                conn_fail(c, "SSE: %s", dsa_errmsg());
            return -1;
        }
    }
    c->message_done = 1;
    return HPE_PAUSED;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    conn *c = h->data;
    (void)suggested;
    *buf = uv_buf_init(c->rbuf, sizeof c->rbuf);
}

/* Plaintext response bytes to the HTTP parser; closes the request when the
 * response is complete or broken. */
static void parse(conn *c, const char *data, size_t n)
{
    llhttp_errno_t e = llhttp_execute(&c->parser, data, n);
    if (c->failed || e == HPE_PAUSED) {
        conn_close(c);
    } else if (e != HPE_OK) {
        conn_fail(c, "malformed HTTP response: %s", llhttp_get_error_reason(&c->parser));
        conn_close(c);
    }
}

/* The end of the byte stream (TCP EOF, or TLS close_notify). */
static void parse_eof(conn *c)
{
    llhttp_errno_t e = llhttp_finish(&c->parser);
    if (!c->failed && e != HPE_OK && e != HPE_PAUSED)
        conn_fail(c, c->tls && !c->handshaken ? "the connection closed during the TLS handshake"
                                              : "the connection closed before the response ended");
    conn_close(c);
}

static void on_write(uv_write_t *w, int status)
{
    conn_write *cw = w->data;
    conn *c = cw->c;
    free(cw);
    if (status < 0 && !c->closing) {
        conn_fail(c, "write: %s", uv_strerror(status));
        conn_close(c);
    }
}

/* Queues n bytes (copied) on the connection.  Returns 0 or -1 (closed). */
static int conn_send(conn *c, const char *data, size_t n)
{
    conn_write *cw = malloc(sizeof *cw + n);
    if (!cw) {
        conn_fail(c, "out of memory");
        conn_close(c);
        return -1;
    }
    cw->c = c;
    cw->n = n;
    cw->req.data = cw;
    memcpy(cw->data, data, n);
    uv_buf_t b = uv_buf_init(cw->data, (unsigned)n);
    int rc = uv_write(&cw->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (rc < 0) {
        free(cw);
        conn_fail(c, "write: %s", uv_strerror(rc));
        conn_close(c);
        return -1;
    }
    return 0;
}

/* Sends whatever ciphertext OpenSSL has produced.  Returns 0 or -1. */
static int tls_flush(conn *c)
{
    char *out;
    size_t n;
    if (dsa_bench_tls_take_output(c->tls, &out, &n)) {
        conn_fail(c, "out of memory");
        conn_close(c);
        return -1;
    }
    int rc = n ? conn_send(c, out, n) : 0;
    free(out);
    return rc;
}

/* Drives a TLS connection after new input (or at the start): the
 * handshake, then the request once, then the decrypted response. */
static void tls_pump(conn *c)
{
    char msg[400];
    if (!c->handshaken) {
        int h = dsa_bench_tls_handshake(c->tls, msg, sizeof msg);
        if (h < 0) {
            conn_fail(c, "%s", msg);
            c->out->permanent = h == -2;
            conn_close(c);
            return;
        }
        if (h == 0) {
            tls_flush(c);
            return;
        }
        c->handshaken = 1;
        if (dsa_bench_tls_write(c->tls, c->req, c->n_req, msg, sizeof msg)) {
            conn_fail(c, "%s", msg);
            conn_close(c);
            return;
        }
    }
    for (;;) {
        ssize_t n = dsa_bench_tls_read(c->tls, c->plain, sizeof c->plain, msg, sizeof msg);
        if (n == 0)
            break;
        if (n == -1) {
            conn_fail(c, "%s", msg);
            conn_close(c);
            return;
        }
        if (n == -2) {
            parse_eof(c);
            return;
        }
        parse(c, c->plain, (size_t)n);
        if (c->closing)
            return;
    }
    tls_flush(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn *c = s->data;
    if (c->closing)
        return;
    if (nread > 0) {
        c->now = dsa_time_now();
        if (!c->tls) {
            parse(c, buf->base, (size_t)nread);
        } else if (dsa_bench_tls_feed(c->tls, buf->base, (size_t)nread)) {
            conn_fail(c, "%s", dsa_errmsg());
            conn_close(c);
        } else {
            tls_pump(c);
        }
    } else if (nread == UV_EOF) {
        c->now = dsa_time_now();
        parse_eof(c);
    } else if (nread < 0) {
        conn_fail(c, "read: %s", uv_strerror((int)nread));
        conn_close(c);
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    conn *c = req->data;
    if (c->closing)
        return;
    int rc = status;
    if (rc >= 0)
        rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc < 0) {
        conn_fail(c, "connect: %s", uv_strerror(rc));
        conn_close(c);
        return;
    }
    if (c->tls)
        tls_pump(c);
    else
        conn_send(c, c->req, c->n_req);
}

static void on_timeout(uv_timer_t *t)
{
    conn *c = t->data;
    conn_fail(c, "timed out after %g s", c->r->p->timeout_s);
    conn_close(c);
}

char *dsa_bench_client_body(const dsa_bench_client_params *p, const dsa_bench_request *r)
{
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return NULL;
    int ok = 1;
    if (p->model)
        ok &= cJSON_AddStringToObject(j, "model", p->model) != NULL;
    if (p->backend == DSA_BENCH_OPENAI_CHAT) {
        cJSON *msgs = cJSON_AddArrayToObject(j, "messages");
        cJSON *m = cJSON_CreateObject();
        ok &= msgs && m;
        if (m) {
            cJSON_AddItemToArray(msgs, m);
            ok &= cJSON_AddStringToObject(m, "role", "user") != NULL;
            ok &= cJSON_AddStringToObject(m, "content", r->prompt) != NULL;
        }
        ok &= cJSON_AddNumberToObject(j, "max_completion_tokens", r->output_len) != NULL;
    } else {
        ok &= cJSON_AddStringToObject(j, "prompt", r->prompt) != NULL;
        ok &= cJSON_AddNumberToObject(j, "max_tokens", r->output_len) != NULL;
    }
    if (p->temperature >= 0)
        ok &= cJSON_AddNumberToObject(j, "temperature", p->temperature) != NULL;
    ok &= cJSON_AddTrueToObject(j, "stream") != NULL;
    cJSON *so = cJSON_AddObjectToObject(j, "stream_options");
    ok &= so && cJSON_AddTrueToObject(so, "include_usage") != NULL;
    if (p->ignore_eos)
        ok &= cJSON_AddTrueToObject(j, "ignore_eos") != NULL;
    char *s = ok ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    return s;
}

/* Formats the whole HTTP request for request i into c->req. */
static int build_request(run *r, conn *c, const dsa_bench_request *q)
{
    const dsa_bench_client_params *p = r->p;
    char *body = dsa_bench_client_body(p, q);
    if (!body)
        return -1;
    char auth[1024] = "";
    if (p->api_key && *p->api_key)
        snprintf(auth, sizeof auth, "Authorization: Bearer %.900s\r\n", p->api_key);
    size_t n_body = strlen(body);
    size_t cap = n_body + strlen(p->path) + strlen(auth) + sizeof r->host_header + 256;
    c->req = malloc(cap);
    if (!c->req) {
        free(body);
        return -1;
    }
    int n = snprintf(c->req, cap,
                     "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: dsa-bench\r\n"
                     "Accept: */*\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n%sConnection: close\r\n\r\n",
                     p->path, r->host_header, n_body, auth);
    memcpy(c->req + n, body, n_body);
    c->n_req = (size_t)n + n_body;
    free(body);
    return 0;
}

static void start_request(run *r, int i)
{
    dsa_bench_result *o = &r->out[i];
    r->active++;
    conn *c = calloc(1, sizeof *c);
    if (!c || build_request(r, c, &r->reqs[i])) {
        if (c)
            free(c->req);
        free(c);
        snprintf(o->error, sizeof o->error, "out of memory");
        r->active--;
        r->n_done++;
        if (r->p->on_progress)
            r->p->on_progress(r->p->user, r->n_done, r->n);
        if (r->n_done == r->n)
            uv_close((uv_handle_t *)&r->arrival, NULL);
        return;
    }
    c->r = r;
    c->out = o;
    dsa_bench_sse_init(&c->sse);
    llhttp_init(&c->parser, HTTP_RESPONSE, &r->settings);
    c->parser.data = c;
    uv_tcp_init(&r->loop, &c->tcp);
    uv_timer_init(&r->loop, &c->timer);
    c->n_open = 2;
    c->tcp.data = c;
    c->timer.data = c;
    c->connect.data = c;
    o->start = dsa_time_now();
    c->most_recent = o->start;
    if (r->p->timeout_s > 0)
        uv_timer_start(&c->timer, on_timeout, (uint64_t)ceil(r->p->timeout_s * 1000), 0);
    uv_tcp_nodelay(&c->tcp, 1);
    if (r->tls && dsa_bench_tls_new(r->tls, &c->tls)) {
        conn_fail(c, "%s", dsa_errmsg());
        conn_close(c);
        return;
    }
    int rc = uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)&r->addr, on_connect);
    if (rc < 0) {
        conn_fail(c, "connect: %s", uv_strerror(rc));
        conn_close(c);
    }
}

/* Starts arrived requests while the concurrency limit allows. */
static void dispatch(run *r)
{
    int limit = r->p->max_concurrency;
    while (r->fifo_head < r->fifo_tail && (limit <= 0 || r->active < limit))
        start_request(r, r->fifo[r->fifo_head++]);
}

static void on_arrival(uv_timer_t *t)
{
    run *r = t->data;
    double now = dsa_time_now() - r->t0;
    const double *at = r->p->send_at;
    while (r->next_arrival < r->n && (!at || at[r->next_arrival] <= now))
        r->fifo[r->fifo_tail++] = r->next_arrival++;
    if (r->next_arrival < r->n) {
        double wait = at[r->next_arrival] - now;
        uv_timer_start(&r->arrival, on_arrival, (uint64_t)ceil(wait * 1000), 0);
    }
    dispatch(r);
}

static dsa_err resolve(run *r)
{
    const dsa_bench_client_params *p = r->p;
    char port[16];
    snprintf(port, sizeof port, "%d", p->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    uv_getaddrinfo_t gai;
    int rc = uv_getaddrinfo(&r->loop, &gai, NULL, p->host, port, &hints);
    if (rc < 0)
        return dsa_fail(DSA_INVAL, "cannot resolve '%s': %s", p->host, uv_strerror(rc));
    memcpy(&r->addr, gai.addrinfo->ai_addr, gai.addrinfo->ai_addrlen);
    uv_freeaddrinfo(gai.addrinfo);
    if (p->host_header)
        snprintf(r->host_header, sizeof r->host_header, "%s", p->host_header);
    else if (strchr(p->host, ':'))
        snprintf(r->host_header, sizeof r->host_header, "[%s]:%d", p->host, p->port);
    else
        snprintf(r->host_header, sizeof r->host_header, "%s:%d", p->host, p->port);
    return DSA_OK;
}

dsa_err dsa_bench_client_run(const dsa_bench_client_params *p, const dsa_bench_request *reqs,
                             int n, dsa_bench_result *out, double *duration_s)
{
    run r = {.p = p, .reqs = reqs, .out = out, .n = n};
    *duration_s = 0;
    for (int i = 0; i < n; i++) {
        memset(&out[i], 0, sizeof out[i]);
        out[i].usage_prompt_tokens = -1;
    }
    if (n <= 0)
        return DSA_OK;
    int rc = uv_loop_init(&r.loop);
    if (rc < 0)
        return dsa_fail(DSA_INTERNAL, "uv_loop_init: %s", uv_strerror(rc));
    dsa_err err = resolve(&r);
    if (!err && p->tls) {
        dsa_bench_tls_params tp = {.server_name = p->host, .ca_file = p->ca_file,
                                   .insecure = p->insecure};
        err = dsa_bench_tls_ctx_new(&tp, &r.tls);
    }
    if (!err && !(r.fifo = malloc((size_t)n * sizeof *r.fifo)))
        err = dsa_fail(DSA_NOMEM, "dsa-bench: request queue");
    if (err) {
        dsa_bench_tls_ctx_free(r.tls);
        uv_loop_close(&r.loop);
        return err;
    }
    llhttp_settings_init(&r.settings);
    r.settings.on_headers_complete = on_headers_complete;
    r.settings.on_body = on_body;
    r.settings.on_message_complete = on_message_complete;
    uv_timer_init(&r.loop, &r.arrival);
    r.arrival.data = &r;
    r.t0 = dsa_time_now();
    r.t_end = r.t0;
    on_arrival(&r.arrival);
    uv_run(&r.loop, UV_RUN_DEFAULT);
    *duration_s = r.t_end - r.t0;
    free(r.fifo);
    dsa_bench_tls_ctx_free(r.tls);
    if (uv_loop_close(&r.loop) != 0)
        return dsa_fail(DSA_INTERNAL, "dsa-bench: handles left open on the loop");
    return DSA_OK;
}
