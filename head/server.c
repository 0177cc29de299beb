/* server.c - dsa-head's endpoints, startup and drain (see server.h).
 *
 * Threads: the loop thread runs everything here except the model load and
 * long tokenizations (uv thread pool) and the engine (its own thread).
 * A generation request is a `gen` object owned by the loop: it lives until
 * its response is complete or its connection goes away (on_abort), and
 * holds one reference to each of its choices' engine requests. */
#include "head/server.h"

#include <inttypes.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "common/chat.h"
#include "common/log.h"
#include "common/reasoning.h"
#include "common/tokenizer.h"
#include "head/api.h"
#include "head/engine.h"
#include "head/http.h"
#include "head/metrics.h"
#include "head/tools.h"
#include "worker/step.h"
#ifdef DSA_HAVE_MPI
#include "proto/mpi_transport.h"
#endif

/* After a fatal transport error: how long the loop keeps running so the
 * failed responses reach their clients before the job ends. */
#define FATAL_FLUSH_MS 1500

enum { HEAD_STARTING, HEAD_SERVING, HEAD_DRAINING, HEAD_FAILED, HEAD_STOPPED };

typedef struct head {
    const dsa_head_opts *o;
    const char *const *keys;
    int n_keys;
    uv_loop_t loop;
    uv_async_t async;
    uv_signal_t sigterm, sigint;
    uv_timer_t drain_timer;
    uv_work_t load_work;
    int load_failed;
    char load_error[512];
    dsa_http_server *http;
    dsa_transport *transport;
    dsa_engine *engine;
    dsa_tok *tok;
    int has_chat;
    dsa_chat_variant variant;
    dsa_metrics metrics;
    int state;
    int exit_code;
    int64_t max_model_len;
    int64_t vocab;
    char model_name[256];
    int64_t n_gens;             /* generation requests in progress */
    uint64_t next_id;
    double drain_deadline;
    /* distributed */
    int n_stages, tp;           /* the workers' layout (1 x 1 in-process) */
    int layout_refused;         /* not the configured layout: load_error says why */
    uv_timer_t fatal_timer;
    int fatal;                  /* a transport error: the job must restart */
    char fatal_msg[300];
} head;

typedef struct choice {
    dsa_engine_req *er;         /* one reference, NULL once released */
    dsa_jbuf text, reasoning;
    dsa_engine_lp *lps;         /* non-streaming logprobs */
    int n_lps, cap_lps;
    const char *finish;
    int64_t n_generated;
    size_t text_offset;
    dsa_tools_out tools;        /* chat: DeepSeek tool-call tokens -> tool_calls */
} choice;

typedef struct gen {
    head *h;
    dsa_http_conn *conn;        /* NULL once the client is gone */
    dsa_api_request api;
    char id[64];
    uint32_t call_salt;         /* makes tool-call ids unique per request */
    dsa_api_resp_meta meta;
    int n_prompts;
    int32_t **ids;              /* [n_prompts] tokenized prompts */
    int32_t *n_ids;
    int n_choices, n_done;
    choice *ch;
    int64_t prompt_tokens;
    uv_work_t work;
    int in_work;
    dsa_api_error err;
    int failed;
    int reasoning;
    double t_start;
    const char *request_id;     /* borrowed from the connection; copy below */
    char rid[72];
} gen;

/* ---- small helpers -------------------------------------------------------- */

static void respond_json(dsa_http_conn *c, int status, const dsa_jbuf *b, const char *extra)
{
    dsa_http_respond(c, status, "application/json", extra, b->data ? b->data : "{}",
                     b->data ? b->len : 2);
}

static void respond_error(dsa_http_conn *c, const dsa_api_error *e, const char *extra)
{
    dsa_jbuf b = {0};
    dsa_api_error_json(&b, e);
    respond_json(c, e->status, &b, extra);
    dsa_jbuf_deinit(&b);
}

static void respond_fail(dsa_http_conn *c, int status, const char *param, const char *msg,
                         const char *extra)
{
    dsa_api_error e;
    dsa_api_fail(&e, status, param, "%s", msg);
    respond_error(c, &e, extra);
}

static int authorized(head *h, const dsa_http_req *r)
{
    const char *a = r->authorization;
    return dsa_api_auth_check(a, a ? strlen(a) : 0, h->keys, h->n_keys);
}

/* ---- generation: tokenize, submit, stream ----------------------------------- */

static void gen_free(gen *g)
{
    for (int i = 0; i < g->n_choices; i++) {
        choice *c = &g->ch[i];
        if (c->er) {
            c->er->user = NULL;
            if (c->finish)
                dsa_engine_req_release(c->er);
            else
                dsa_engine_abort(g->h->engine, c->er);
        }
        dsa_jbuf_deinit(&c->text);
        dsa_jbuf_deinit(&c->reasoning);
        dsa_tools_out_deinit(&c->tools);
        free(c->lps);
    }
    free(g->ch);
    for (int i = 0; i < g->n_prompts && g->ids; i++)
        free(g->ids[i]);
    free(g->ids);
    free(g->n_ids);
    dsa_api_request_free(&g->api);
    head *h = g->h;
    free(g);
    /* the last request of a drain: let the loop stop (not from here, which
     * may be deep inside an HTTP callback) */
    if (--h->n_gens == 0 && h->state == HEAD_DRAINING)
        uv_async_send(&h->async);
}

/* Tokenizes every prompt (thread pool or inline).  Touches only g's
 * request, ids and err, and the immutable tokenizer. */
static void tokenize_prompts(gen *g)
{
    head *h = g->h;
    dsa_api_request *a = &g->api;
    g->n_prompts = a->kind == DSA_API_CHAT ? 1 : a->n_prompts;
    g->ids = calloc((size_t)g->n_prompts, sizeof *g->ids);
    g->n_ids = calloc((size_t)g->n_prompts, sizeof *g->n_ids);
    if (!g->ids || !g->n_ids) {
        g->failed = 1;
        dsa_api_fail(&g->err, 500, NULL, "out of memory");
        return;
    }
    if (a->kind == DSA_API_CHAT) {
        char *text = NULL;
        dsa_err err = dsa_chat_render(h->variant, a->messages, a->add_generation_prompt != 0,
                                      dsa_tok_bos_token(h->tok), &text);
        if (err) {
            g->failed = 1;
            dsa_api_fail(&g->err, err == DSA_NOMEM ? 500 : 400, "messages", "%s", dsa_errmsg());
            return;
        }
        size_t n = 0;
        err = dsa_tok_encode(h->tok, text, strlen(text), 0, &g->ids[0], &n);
        free(text);
        g->n_ids[0] = (int32_t)n;
        if (err) {
            g->failed = 1;
            dsa_api_fail(&g->err, err == DSA_NOMEM ? 500 : 400, "messages", "%s", dsa_errmsg());
        }
        return;
    }
    for (int i = 0; i < g->n_prompts; i++) {
        dsa_api_prompt *p = &a->prompts[i];
        if (p->ids) {
            if (!(g->ids[i] = malloc((size_t)p->n_ids * sizeof(int32_t)))) {
                g->failed = 1;
                dsa_api_fail(&g->err, 500, NULL, "out of memory");
                return;
            }
            memcpy(g->ids[i], p->ids, (size_t)p->n_ids * sizeof(int32_t));
            g->n_ids[i] = p->n_ids;
            continue;
        }
        if (!h->tok) {
            g->failed = 1;
            dsa_api_fail(&g->err, 400, "prompt", "this model has no tokenizer.json: send "
                         "token ids as the prompt");
            return;
        }
        size_t n = 0;
        dsa_err err = dsa_tok_encode(h->tok, p->text, p->n_text, 1, &g->ids[i], &n);
        g->n_ids[i] = (int32_t)n;
        if (err) {
            g->failed = 1;
            dsa_api_fail(&g->err, err == DSA_NOMEM ? 500 : 400, "prompt", "%s", dsa_errmsg());
            return;
        }
    }
}

static void send_role_chunks(gen *g)
{
    dsa_jbuf b = {0};
    for (int i = 0; i < g->n_choices; i++) {
        dsa_api_delta d = {.index = i, .role = "assistant"};
        dsa_api_sse_chunk(&b, &g->meta, &d, g->api.include_usage);
    }
    dsa_http_stream_write(g->conn, b.data, b.len);
    dsa_jbuf_deinit(&b);
}

static void gen_start(gen *g)
{
    head *h = g->h;
    dsa_api_request *a = &g->api;
    dsa_http_conn *conn = g->conn;
    if (g->failed) {
        respond_error(conn, &g->err, NULL);
        gen_free(g);
        return;
    }
    for (int i = 0; i < g->n_prompts; i++) {
        int64_t n = g->n_ids[i];
        if (n == 0) {
            respond_fail(conn, 400, a->kind == DSA_API_CHAT ? "messages" : "prompt",
                         "the prompt is empty", NULL);
            gen_free(g);
            return;
        }
        for (int64_t j = 0; j < n; j++)
            if (g->ids[i][j] >= h->vocab) {
                char msg[160];
                snprintf(msg, sizeof msg, "token id %d is outside the vocabulary (%" PRId64 ")",
                         g->ids[i][j], h->vocab);
                respond_fail(conn, 400, "prompt", msg, NULL);
                gen_free(g);
                return;
            }
        int64_t max_new = a->max_tokens > 0 ? a->max_tokens : h->max_model_len - n;
        if (n + max_new > h->max_model_len || max_new < 1) {
            char msg[256];
            snprintf(msg, sizeof msg, "This model's maximum context length is %" PRId64
                     " tokens. However, you requested %" PRId64 " tokens (%" PRId64
                     " in the messages, %" PRId64 " in the completion). Please reduce the "
                     "length of the messages or completion.", h->max_model_len, n + max_new, n,
                     max_new);
            respond_fail(conn, 400, a->max_tokens > 0 ? "max_tokens" : "messages", msg, NULL);
            gen_free(g);
            return;
        }
        g->prompt_tokens += n * a->n;
    }
    int n_choices = g->n_prompts * a->n;
    if (dsa_engine_n_waiting(h->engine) + n_choices > h->o->max_queued) {
        dsa_metrics_lock(&h->metrics);
        h->metrics.rejected_queue_full++;
        dsa_metrics_unlock(&h->metrics);
        respond_fail(conn, 429, NULL, "the server is busy: the request queue is full; retry "
                     "later", "Retry-After: 1\r\n");
        gen_free(g);
        return;
    }
    g->ch = calloc((size_t)n_choices, sizeof *g->ch);
    if (!g->ch) {
        respond_fail(conn, 500, NULL, "out of memory", NULL);
        gen_free(g);
        return;
    }
    uint64_t base_seed = a->has_seed ? a->seed : ((uint64_t)rand() << 32 ^ (uint64_t)rand() ^ uv_hrtime());
    for (int i = 0; i < n_choices; i++) {
        int p = i / a->n;
        dsa_engine_req *er;
        if (dsa_engine_req_create(g->ids[p], g->n_ids[p], &er)) {
            respond_fail(conn, 500, NULL, "out of memory", NULL);
            gen_free(g);
            return;
        }
        int64_t max_new = a->max_tokens > 0 ? a->max_tokens : h->max_model_len - g->n_ids[p];
        er->max_new = (int32_t)max_new;
        er->sp = (dsa_sampling){
            .temperature = (float)(a->temperature >= 0 ? a->temperature : 1.0),
            .top_p = (float)(a->top_p > 0 ? a->top_p : 1.0), .min_p = (float)a->min_p,
            .top_k = (int32_t)(a->top_k > 0 ? a->top_k : -1), .seed = base_seed + (uint64_t)i,
            .presence_penalty = (float)a->presence_penalty,
            .frequency_penalty = (float)a->frequency_penalty,
            .repetition_penalty = (float)a->repetition_penalty,
            .n_logprobs = a->logprobs ? a->top_logprobs : -1};
        er->ignore_eos = a->ignore_eos;
        er->skip_special = a->skip_special_tokens;
        er->reasoning_flags = g->reasoning ? DSA_REASON_TRIM : -1;
        er->want_logprobs = a->logprobs;
        er->stop = a->stop;
        er->n_stop = a->n_stop;
        er->t_arrival = g->t_start;
        er->user = g;
        er->index = i;
        g->ch[i].er = er;
        g->n_choices = i + 1;
        /* ids "call_<8 hex>_<n>", the hex distinct per choice */
        char pfx[32];
        snprintf(pfx, sizeof pfx, "call_%08x_", g->call_salt ^ (uint32_t)i * 0x9e3779b9u);
        if (dsa_tools_out_init(&g->ch[i].tools, dsa_tools_active(a), !a->parallel_tool_calls,
                               pfx)) {
            respond_fail(conn, 500, NULL, "out of memory", NULL);
            gen_free(g);
            return;
        }
    }
    if (a->stream && a->kind != DSA_API_GENERATE) {
        dsa_http_stream_begin(conn, 200, "text/event-stream");
        if (a->kind == DSA_API_CHAT)
            send_role_chunks(g);
    }
    for (int i = 0; i < g->n_choices; i++)
        dsa_engine_submit(h->engine, g->ch[i].er);
}

static void on_tokenized(uv_work_t *w)
{
    tokenize_prompts(w->data);
}

static void after_tokenized(uv_work_t *w, int status)
{
    gen *g = w->data;
    g->in_work = 0;
    if (!g->conn) { /* the client left meanwhile */
        gen_free(g);
        return;
    }
    if (status < 0) {
        g->failed = 1;
        dsa_api_fail(&g->err, 500, NULL, "tokenization canceled");
    }
    gen_start(g);
}

/* The token's text for logprobs (raw piece, special tokens included). */
static void token_text(head *h, int32_t id, dsa_jbuf *store, size_t *off, size_t *len)
{
    char *t = NULL;
    size_t n = 0;
    *off = store->len;
    if (h->tok && dsa_tok_decode(h->tok, &id, 1, 0, &t, &n) == DSA_OK) {
        dsa_jbuf_put(store, t, n);
    } else {
        char tmp[32];
        n = (size_t)snprintf(tmp, sizeof tmp, "token_id:%d", id);
        dsa_jbuf_put(store, tmp, n);
    }
    free(t);
    *len = store->len - *off;
}

/* Formats logprob entries for the API (texts decoded into store). */
static dsa_api_logprob *format_lps(head *h, const dsa_engine_lp *lps, int n, dsa_jbuf *store)
{
    dsa_api_logprob *out = calloc((size_t)(n > 0 ? n : 1), sizeof *out);
    if (!out)
        return NULL;
    size_t (*offs)[21] = calloc((size_t)(n > 0 ? n : 1), sizeof *offs);
    if (!offs) {
        free(out);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        token_text(h, lps[i].id, store, &offs[i][0], &out[i].n_text);
        out[i].logprob = lps[i].logprob;
        out[i].n_top = lps[i].n_top;
        for (int j = 0; j < lps[i].n_top; j++) {
            token_text(h, lps[i].top_ids[j], store, &offs[i][j + 1], &out[i].top_n_text[j]);
            out[i].top_logprob[j] = lps[i].top_logprobs[j];
        }
    }
    /* the store may have moved while growing: resolve offsets last */
    for (int i = 0; i < n; i++) {
        out[i].text = store->data + offs[i][0];
        for (int j = 0; j < out[i].n_top; j++)
            out[i].top_text[j] = store->data + offs[i][j + 1];
    }
    free(offs);
    return out;
}

static void gen_finish_response(gen *g)
{
    head *h = g->h;
    dsa_api_usage u = {.prompt_tokens = g->prompt_tokens};
    for (int i = 0; i < g->n_choices; i++)
        u.completion_tokens += g->ch[i].n_generated;
    dsa_jbuf b = {0};
    if (g->api.stream && g->api.kind != DSA_API_GENERATE) {
        if (g->api.include_usage)
            dsa_api_sse_usage(&b, &g->meta, &u);
        dsa_api_sse_done(&b);
        dsa_http_stream_write(g->conn, b.data, b.len);
        dsa_http_stream_end(g->conn);
    } else {
        dsa_api_choice *cs = calloc((size_t)g->n_choices, sizeof *cs);
        dsa_jbuf store = {0};
        dsa_api_logprob **lp = calloc((size_t)g->n_choices, sizeof *lp);
        dsa_jbuf *content = calloc((size_t)g->n_choices, sizeof *content);
        int oom = !cs || !lp || !content;
        for (int i = 0; !oom && i < g->n_choices; i++) {
            choice *c = &g->ch[i];
            oom = dsa_tools_out_parse_all(&c->tools, c->text.data, c->text.len, &content[i]) !=
                  DSA_OK;
        }
        if (oom) {
            respond_fail(g->conn, 500, NULL, "out of memory", NULL);
        } else {
            for (int i = 0; i < g->n_choices; i++) {
                choice *c = &g->ch[i];
                cs[i] = (dsa_api_choice){
                    .text = content[i].data ? content[i].data : "", .n_text = content[i].len,
                    .reasoning = g->reasoning ? (c->reasoning.data ? c->reasoning.data : "")
                                              : NULL,
                    .n_reasoning = c->reasoning.len,
                    .finish_reason = dsa_tools_out_finish_reason(&c->tools, c->finish),
                    .has_logprobs = g->api.logprobs,
                    .tool_calls = c->tools.p.calls, .n_tool_calls = c->tools.n_calls};
                if (g->api.logprobs) {
                    lp[i] = format_lps(h, c->lps, c->n_lps, &store);
                    cs[i].logprobs = lp[i];
                    cs[i].n_logprobs = lp[i] ? c->n_lps : 0;
                }
            }
            dsa_api_response(&b, &g->meta, cs, g->n_choices, &u);
            respond_json(g->conn, 200, &b, NULL);
        }
        for (int i = 0; lp && i < g->n_choices; i++)
            free(lp[i]);
        for (int i = 0; content && i < g->n_choices; i++)
            dsa_jbuf_deinit(&content[i]);
        free(content);
        free(lp);
        free(cs);
        dsa_jbuf_deinit(&store);
    }
    dsa_jbuf_deinit(&b);
    if (!h->o->disable_log_requests)
        DSA_INFO("request %s done: %s, %d choice(s), prompt %" PRId64 " completion %" PRId64
                 " tokens, %.3fs", g->rid, g->id, g->n_choices, u.prompt_tokens,
                 u.completion_tokens, dsa_time_now() - g->t_start);
    gen_free(g);
}

/* A failed choice fails the whole request. */
static void gen_fail(gen *g, int status, const char *msg)
{
    dsa_api_error e;
    dsa_api_fail(&e, status, NULL, "%s", msg);
    DSA_WARN("request %s failed: %s", g->rid, msg);
    if (g->api.stream && g->api.kind != DSA_API_GENERATE) {
        dsa_jbuf b = {0};
        dsa_api_sse_error(&b, &e);
        dsa_api_sse_done(&b);
        dsa_http_stream_write(g->conn, b.data, b.len);
        dsa_http_stream_end(g->conn);
        dsa_jbuf_deinit(&b);
    } else {
        respond_error(g->conn, &e, NULL);
    }
    gen_free(g);
}

static void on_event(head *h, dsa_engine_event *ev)
{
    gen *g = ev->req->user;
    if (!g || !g->conn)
        return;
    choice *c = &g->ch[ev->req->index];
    if (ev->status) {
        c->finish = "error";
        gen_fail(g, ev->status, ev->message);
        return;
    }
    c->n_generated = ev->n_generated;
    if (g->api.stream && g->api.kind != DSA_API_GENERATE) {
        dsa_jbuf b = {0}, store = {0};
        dsa_api_logprob *lp = ev->n_lps ? format_lps(h, ev->lps, ev->n_lps, &store) : NULL;
        dsa_tools_delta td;
        if (dsa_tools_out_feed(&c->tools, ev->content.data, ev->content.len,
                               ev->finish != NULL, &td)) {
            dsa_jbuf_deinit(&store);
            free(lp);
            c->finish = "error";
            gen_fail(g, 500, "out of memory");
            return;
        }
        dsa_tools_sse_event sev = {
            .meta = &g->meta, .index = ev->req->index, .td = &td,
            .reasoning = ev->reasoning.data, .n_reasoning = ev->reasoning.len,
            .logprobs = lp, .n_logprobs = lp ? ev->n_lps : 0, .text_offset = &c->text_offset,
            .finish_reason = ev->finish ? dsa_tools_out_finish_reason(&c->tools, ev->finish)
                                        : NULL,
            .include_usage = g->api.include_usage};
        dsa_tools_sse(&b, &sev);
        int rc = b.len ? dsa_http_stream_write(g->conn, b.data, b.len) : 0;
        dsa_jbuf_deinit(&b);
        dsa_jbuf_deinit(&store);
        free(lp);
        if (rc < 0) {
            /* the client is too slow or gone: on_abort follows */
            return;
        }
    } else {
        dsa_jbuf_put(&c->text, ev->content.data ? ev->content.data : "", ev->content.len);
        dsa_jbuf_put(&c->reasoning, ev->reasoning.data ? ev->reasoning.data : "",
                     ev->reasoning.len);
        for (int i = 0; i < ev->n_lps; i++) {
            if (c->n_lps == c->cap_lps) {
                int cap = c->cap_lps ? c->cap_lps * 2 : 16;
                dsa_engine_lp *n = realloc(c->lps, (size_t)cap * sizeof *n);
                if (!n)
                    break;
                c->lps = n;
                c->cap_lps = cap;
            }
            c->lps[c->n_lps++] = ev->lps[i];
        }
    }
    if (ev->finish) {
        c->finish = ev->finish;
        if (++g->n_done == g->n_choices)
            gen_finish_response(g);
    }
}

static void maybe_stop(head *h);
static void stop_all(head *h);

static void on_fatal_timer(uv_timer_t *t)
{
    head *h = t->data;
    h->exit_code = 3;
    stop_all(h);
}

/* The transport failed (a worker died or went silent): unready, every
 * request failed (the engine did that), exit after a short flush so the
 * job is restarted (under MPI: dsa_mpi_abort in dsa_head_run). */
static void head_fatal(head *h, const char *msg)
{
    if (h->fatal)
        return;
    h->fatal = 1;
    snprintf(h->fatal_msg, sizeof h->fatal_msg, "%s", msg);
    if (h->state == HEAD_STOPPED)
        return;
    h->state = HEAD_FAILED;
    DSA_ERROR("the workers failed: %s; /health answers 503, every request failed, exiting "
              "in %.1f s", msg, FATAL_FLUSH_MS / 1e3);
    uv_timer_stop(&h->drain_timer);
    uv_timer_start(&h->fatal_timer, on_fatal_timer, FATAL_FLUSH_MS, 0);
}

static void on_async(uv_async_t *a)
{
    head *h = a->data;
    if (!h->engine) {
        if (h->state == HEAD_DRAINING)
            maybe_stop(h);
        return;
    }
    dsa_engine_event *ev = dsa_engine_poll(h->engine);
    while (ev) {
        dsa_engine_event *next = ev->next;
        on_event(h, ev);
        dsa_engine_event_free(ev);
        ev = next;
    }
    const char *fatal = h->engine ? dsa_engine_fatal(h->engine) : NULL;
    if (fatal)
        head_fatal(h, fatal);
    if (h->state == HEAD_DRAINING)
        maybe_stop(h);
}

static void engine_notify(void *user)
{
    uv_async_send(user);
}

static void handle_generate(head *h, dsa_http_conn *c, const dsa_http_req *r, dsa_api_kind kind)
{
    if (kind == DSA_API_CHAT && !h->has_chat) {
        respond_fail(c, 400, "messages", h->tok ? "this model's chat template is not one the "
                     "server renders (see --chat-template-variant)"
                     : "this model has no tokenizer.json; use /v1/completions with token ids",
                     NULL);
        return;
    }
    gen *g = calloc(1, sizeof *g);
    if (!g) {
        respond_fail(c, 500, NULL, "out of memory", NULL);
        return;
    }
    g->h = h;
    h->n_gens++;
    g->conn = c;
    g->t_start = r->t_start;
    snprintf(g->rid, sizeof g->rid, "%s", r->request_id);
    dsa_api_error e;
    if (dsa_api_parse(kind, r->body, r->n_body, &g->api, &e)) {
        respond_error(c, &e, NULL);
        gen_free(g);
        return;
    }
    if (g->api.model && strcmp(g->api.model, h->model_name)) {
        char msg[400];
        snprintf(msg, sizeof msg, "The model `%.200s` does not exist.", g->api.model);
        respond_fail(c, 404, "model", msg, NULL);
        gen_free(g);
        return;
    }
    g->call_salt = (uint32_t)(uv_hrtime() & 0xffffffffu);
    snprintf(g->id, sizeof g->id, "%s-%016" PRIx64 "%08x",
             kind == DSA_API_CHAT ? "chatcmpl" : "cmpl", ++h->next_id, (unsigned)g->call_salt);
    g->meta = (dsa_api_resp_meta){.kind = kind, .id = g->id, .created = (int64_t)time(NULL),
                                  .model = h->model_name};
    g->reasoning = kind == DSA_API_CHAT && h->variant == DSA_CHAT_R1;
    dsa_http_conn_set_user(c, g);
    if (!h->o->disable_log_requests)
        DSA_INFO("request %s: %s %s, stream %d, max_tokens %" PRId64, g->rid, r->method_name,
                 r->path, g->api.stream, g->api.max_tokens);
    size_t text = 0;
    for (int i = 0; i < g->api.n_prompts; i++)
        text += g->api.prompts[i].n_text;
    if (g->api.messages)
        text += r->n_body;
    if ((int64_t)text > h->o->tokenize_inline_bytes) {
        g->work.data = g;
        g->in_work = 1;
        if (uv_queue_work(&h->loop, &g->work, on_tokenized, after_tokenized) == 0)
            return;
        g->in_work = 0;
    }
    tokenize_prompts(g);
    gen_start(g);
}

static void on_abort(void *user, dsa_http_conn *c, void *req_user)
{
    gen *g = req_user;
    g->conn = NULL;
    DSA_INFO("request %s: client disconnected, aborted", g->rid);
    if (!g->in_work)
        gen_free(g);
}

/* ---- other endpoints ------------------------------------------------------ */

static void handle_models(head *h, dsa_http_conn *c)
{
    dsa_jbuf b = {0};
    dsa_jbuf_puts(&b, "{\"object\":\"list\",\"data\":[{\"id\":");
    dsa_jbuf_str(&b, h->model_name, strlen(h->model_name));
    dsa_jbuf_printf(&b, ",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"deepseek-alpha\","
                    "\"root\":", (long long)time(NULL));
    dsa_jbuf_str(&b, h->o->model, strlen(h->o->model));
    dsa_jbuf_printf(&b, ",\"parent\":null,\"max_model_len\":%" PRId64 "}]}", h->max_model_len);
    respond_json(c, 200, &b, NULL);
    dsa_jbuf_deinit(&b);
}

static void handle_tokenize(head *h, dsa_http_conn *c, const dsa_http_req *r, int detok)
{
    dsa_api_tokenize t;
    dsa_api_error e;
    if (!h->tok) {
        respond_fail(c, 400, NULL, "this model has no tokenizer.json", NULL);
        return;
    }
    if (dsa_api_parse_tokenize(r->body, r->n_body, detok, &t, &e)) {
        respond_error(c, &e, NULL);
        return;
    }
    dsa_jbuf b = {0};
    dsa_err err = DSA_OK;
    if (detok) {
        char *text = NULL;
        size_t n = 0;
        if ((err = dsa_tok_decode(h->tok, t.ids, (size_t)t.n_ids, 0, &text, &n)))
            dsa_api_fail(&e, 400, "tokens", "%s", dsa_errmsg());
        else {
            dsa_jbuf_puts(&b, "{\"prompt\":");
            dsa_jbuf_str(&b, text, n);
            dsa_jbuf_puts(&b, "}");
        }
        free(text);
    } else {
        char *rendered = NULL;
        const char *text = t.prompt;
        int add_special = t.add_special_tokens;
        if (t.messages) {
            if (!h->has_chat) {
                err = dsa_api_fail(&e, 400, "messages", "no supported chat template");
            } else if ((err = dsa_chat_render(h->variant, t.messages,
                                              t.add_generation_prompt != 0,
                                              dsa_tok_bos_token(h->tok), &rendered))) {
                dsa_api_fail(&e, 400, "messages", "%s", dsa_errmsg());
            }
            text = rendered;
            add_special = 0;
        }
        int32_t *ids = NULL;
        size_t n = 0;
        if (!err && (err = dsa_tok_encode(h->tok, text, strlen(text), add_special, &ids, &n)))
            dsa_api_fail(&e, 400, "prompt", "%s", dsa_errmsg());
        if (!err) {
            dsa_jbuf_printf(&b, "{\"count\":%zu,\"max_model_len\":%" PRId64 ",\"tokens\":[", n,
                            h->max_model_len);
            for (size_t i = 0; i < n; i++)
                dsa_jbuf_printf(&b, "%s%d", i ? "," : "", ids[i]);
            dsa_jbuf_puts(&b, "]}");
        }
        free(ids);
        free(rendered);
    }
    if (err)
        respond_error(c, &e, NULL);
    else
        respond_json(c, 200, &b, NULL);
    dsa_jbuf_deinit(&b);
    dsa_api_tokenize_free(&t);
}

static void handle_metrics(head *h, dsa_http_conn *c)
{
    dsa_jbuf b = {0};
    dsa_metrics_lock(&h->metrics);
    h->metrics.connections = h->http ? dsa_http_server_n_connections(h->http) : 0;
    dsa_metrics_unlock(&h->metrics);
    dsa_metrics_render(&h->metrics, &b);
    dsa_http_respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", NULL,
                     b.data ? b.data : "", b.len);
    dsa_jbuf_deinit(&b);
}

typedef struct route {
    const char *path;
    int method;         /* allowed method */
    int kind;           /* what to do */
} route;

enum { R_CHAT, R_COMPLETIONS, R_GENERATE, R_MODELS, R_HEALTH, R_METRICS, R_TOKENIZE,
       R_DETOKENIZE, R_VERSION };

static const route routes[] = {
    {"/v1/chat/completions", HTTP_POST, R_CHAT},
    {"/v1/completions", HTTP_POST, R_COMPLETIONS},
    {"/generate", HTTP_POST, R_GENERATE},
    {"/v1/models", HTTP_GET, R_MODELS},
    {"/health", HTTP_GET, R_HEALTH},
    {"/metrics", HTTP_GET, R_METRICS},
    {"/tokenize", HTTP_POST, R_TOKENIZE},
    {"/detokenize", HTTP_POST, R_DETOKENIZE},
    {"/version", HTTP_GET, R_VERSION},
};

static void on_request(void *user, dsa_http_conn *c, const dsa_http_req *r)
{
    head *h = user;
    const route *rt = NULL;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (!strcmp(r->path, routes[i].path))
            rt = &routes[i];
    if (!rt) {
        respond_fail(c, 404, NULL, "Not Found", NULL);
        return;
    }
    int method_ok = r->method == rt->method || (rt->method == HTTP_GET && r->method == HTTP_HEAD);
    if (!method_ok) {
        char allow[64];
        snprintf(allow, sizeof allow, "Allow: %s\r\n",
                 llhttp_method_name((llhttp_method_t)rt->method));
        respond_fail(c, 405, NULL, "Method Not Allowed", allow);
        return;
    }
    if (rt->kind == R_HEALTH && h->layout_refused) {
        char body[sizeof h->load_error + 48];
        int n = snprintf(body, sizeof body, "{\"status\":\"failed\",\"reason\":\"%s\"}",
                         h->load_error); /* no quote or backslash in the message */
        dsa_http_respond(c, 503, "application/json", NULL, body, (size_t)n);
        return;
    }
    if (rt->kind == R_HEALTH) {
        int ok = h->state == HEAD_SERVING;
        const char *body = ok                           ? "{\"status\":\"ok\"}"
                           : h->state == HEAD_STARTING ? "{\"status\":\"starting\"}"
                           : h->state == HEAD_FAILED   ? "{\"status\":\"failed\"}"
                                                       : "{\"status\":\"draining\"}";
        dsa_http_respond(c, ok ? 200 : 503, "application/json", NULL, body, strlen(body));
        return;
    }
    if (rt->kind == R_VERSION) {
        dsa_http_respond(c, 200, "application/json", NULL, "{\"version\":\"0.1.0\"}", 19);
        return;
    }
    if ((rt->kind != R_METRICS || h->o->protect_metrics) && !authorized(h, r)) {
        respond_fail(c, 401, NULL, "Unauthorized: a valid API key is required "
                     "(Authorization: Bearer <key>)", "WWW-Authenticate: Bearer\r\n");
        return;
    }
    if (rt->kind == R_METRICS) {
        handle_metrics(h, c);
        return;
    }
    if (h->state != HEAD_SERVING) {
        respond_fail(c, 503, NULL, h->state == HEAD_STARTING ? "the model is still loading"
                                   : h->layout_refused ? h->load_error
                                   : h->state == HEAD_FAILED ? "the workers failed; the server "
                                                               "is restarting"
                                                             : "the server is shutting down",
                     "Retry-After: 1\r\n");
        return;
    }
    switch (rt->kind) {
    case R_CHAT: handle_generate(h, c, r, DSA_API_CHAT); break;
    case R_COMPLETIONS: handle_generate(h, c, r, DSA_API_COMPLETION); break;
    case R_GENERATE: handle_generate(h, c, r, DSA_API_GENERATE); break;
    case R_MODELS: handle_models(h, c); break;
    case R_TOKENIZE: handle_tokenize(h, c, r, 0); break;
    case R_DETOKENIZE: handle_tokenize(h, c, r, 1); break;
    }
}

static void on_response(void *user, const dsa_http_req *r, int status, double seconds)
{
    head *h = user;
    dsa_metrics_lock(&h->metrics);
    h->metrics.http_requests[status >= 100 && status < 600 ? status / 100 : 0]++;
    dsa_metrics_unlock(&h->metrics);
    if (!h->o->disable_log_requests && r->path)
        DSA_DEBUG("request %s: %s %s -> %d in %.4fs", r->request_id ? r->request_id : "-",
                  r->method_name ? r->method_name : "-", r->path, status, seconds);
}

/* ---- startup and drain ------------------------------------------------------ */

static void on_load(uv_work_t *w)
{
    head *h = w->data;
    const dsa_head_opts *o = h->o;
    dsa_err err;
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", o->model);
    FILE *f = fopen(path, "rb");
    if (f) {
        fclose(f);
        if ((err = dsa_tok_load(o->model, &h->tok))) {
            snprintf(h->load_error, sizeof h->load_error, "tokenizer: %s", dsa_errmsg());
            h->load_failed = 1;
            return;
        }
        if (dsa_chat_select(dsa_tok_chat_template(h->tok), o->chat_template_variant,
                            &h->variant) == DSA_OK)
            h->has_chat = 1;
        else
            DSA_WARN("chat completions disabled: %s", dsa_errmsg());
    } else {
        DSA_WARN("%s: no tokenizer.json; only token-id prompts are served", o->model);
    }
    h->n_stages = h->tp = 1;
#ifdef DSA_HAVE_MPI
    if (o->mpi) {
        /* the workers load their shards meanwhile; each says Hello */
        dsa_mpi_transport_params mp = {.hello_timeout_s = o->hello_timeout,
                                       .step_timeout_s = o->step_timeout,
                                       .n_blocks = o->num_gpu_blocks_override};
        if ((err = dsa_mpi_transport_create(o->mpi, &mp, &h->transport))) {
            snprintf(h->load_error, sizeof h->load_error, "%s", dsa_errmsg());
            h->load_failed = 1;
            return;
        }
        int n = 0;
        const dsa_hello *hs = dsa_mpi_transport_hellos(h->transport, &n);
        if (n > 0) {
            h->n_stages = hs[0].n_stages;
            h->tp = hs[0].tp_size;
        }
        DSA_INFO("%d worker rank(s): TP=%d x PP=%d; %s", n, h->tp, h->n_stages,
                 h->n_stages >= 2 ? "two micro-batches in flight" : "one batch in flight");
        return;
    }
#endif
    /* The CPU worker needs a budget; a CUDA worker takes what its memory
     * share leaves unless one is given. */
    int on_cpu = !o->device || strcmp(o->device, "cpu") == 0;
    int64_t kv_bytes = o->kv_cache_memory > 0 ? o->kv_cache_memory : on_cpu ? 256LL << 20 : 0;
    dsa_worker_step_params wp = {.model_dir = o->model, .device = o->device,
                                 .n_threads = (int)o->threads,
                                 .block_size = o->block_size, .max_model_len = o->max_model_len,
                                 .n_blocks = o->num_gpu_blocks_override,
                                 .kv_cache_bytes = kv_bytes,
                                 .max_num_seqs = o->max_num_seqs};
    dsa_worker_step *ws = NULL;
    if ((err = dsa_worker_step_create(&wp, &ws)) ||
        (err = dsa_worker_step_transport(ws, &h->transport))) {
        dsa_worker_step_destroy(ws);
        snprintf(h->load_error, sizeof h->load_error, "%s", dsa_errmsg());
        h->load_failed = 1;
    }
}

static void after_load(uv_work_t *w, int status)
{
    head *h = w->data;
    if (h->state != HEAD_STARTING) /* a signal came while loading */
        return;
    if (h->load_failed || status < 0) {
#ifdef DSA_HAVE_MPI
        /* the workers wait for Config: the whole job must end */
        if (h->o->mpi)
            dsa_mpi_abort(h->o->mpi, 2, "dsa-head startup failed: %s", h->load_error);
#endif
        DSA_ERROR("startup failed: %s", h->load_error);
        h->exit_code = 1;
        stop_all(h);
        return;
    }
    const dsa_head_opts *o = h->o;
    if ((o->tensor_parallel_size > 0 && o->tensor_parallel_size != h->tp) ||
        (o->pipeline_parallel_size > 0 && o->pipeline_parallel_size != h->n_stages)) {
        /* A wrong launch (e.g. workers started without --tp) would serve a
         * slow or half-sized model while looking healthy: stay up, unready,
         * with the reason on /health, until the service is fixed and restarted. */
        snprintf(h->load_error, sizeof h->load_error,
                 "the workers form TP=%d x PP=%d, the configured layout is "
                 "--tensor-parallel-size %lld --pipeline-parallel-size %lld",
                 h->tp, h->n_stages, o->tensor_parallel_size > 0 ? o->tensor_parallel_size : h->tp,
                 o->pipeline_parallel_size > 0 ? o->pipeline_parallel_size : h->n_stages);
        DSA_ERROR("refusing to serve: %s; /health and requests answer 503", h->load_error);
        h->layout_refused = 1;
        h->state = HEAD_FAILED;
        return;
    }
    const dsa_worker_info *wi = &h->transport->info;
    h->vocab = wi->vocab_size;
    h->max_model_len = h->o->max_model_len > 0 ? h->o->max_model_len
                                               : wi->max_position_embeddings;
    if (h->max_model_len > wi->max_blocks_per_seq * wi->block_size)
        h->max_model_len = wi->max_blocks_per_seq * wi->block_size;
    dsa_engine_params ep = {.transport = h->transport, .tok = h->tok, .metrics = &h->metrics,
                            .max_num_seqs = h->o->max_num_seqs,
                            .max_num_batched_tokens = h->o->max_num_batched_tokens,
                            .disable_prefix_caching = h->o->no_enable_prefix_caching,
                            .kv_fraction = h->o->gpu_memory_utilization,
                            .eos_token_id = wi->eos_token_id, .notify = engine_notify,
                            .notify_user = &h->async,
                            .max_in_flight = h->n_stages >= 2 ? 2 : 1,
                            .transport_errors_fatal = h->o->mpi != NULL};
    if (h->tok && dsa_tok_eos_id(h->tok) >= 0)
        ep.eos_token_id = dsa_tok_eos_id(h->tok);
    if (dsa_engine_create(&ep, &h->engine)) {
        DSA_ERROR("startup failed: %s", dsa_errmsg());
        h->exit_code = 1;
        stop_all(h);
        return;
    }
    h->state = HEAD_SERVING;
    DSA_INFO("serving %s as '%s' on %s:%d: %" PRId64 " KV blocks of %" PRId64 " tokens, "
             "max model len %" PRId64 ", chat %s", h->o->model, h->model_name, h->o->host,
             dsa_http_server_port(h->http), wi->n_blocks, wi->block_size, h->max_model_len,
             h->has_chat ? dsa_chat_variant_name(h->variant) : "off");
}

static void on_closed(uv_handle_t *hd)
{
    (void)hd;
}

/* Stops the engine and closes every handle; uv_run then returns. */
static void stop_all(head *h)
{
    if (h->state == HEAD_STOPPED)
        return;
    h->state = HEAD_STOPPED;
    if (h->http) {
        dsa_http_server_close(h->http); /* aborts what is still in flight */
        h->http = NULL;
    }
    dsa_engine_destroy(h->engine);
    h->engine = NULL;
    uv_close((uv_handle_t *)&h->async, on_closed);
    uv_close((uv_handle_t *)&h->sigterm, on_closed);
    uv_close((uv_handle_t *)&h->sigint, on_closed);
    uv_close((uv_handle_t *)&h->drain_timer, on_closed);
    uv_close((uv_handle_t *)&h->fatal_timer, on_closed);
}

static void maybe_stop(head *h)
{
    if (h->n_gens == 0) {
        DSA_INFO("drained: every request finished");
        stop_all(h);
    }
}

static void on_drain_timeout(uv_timer_t *t)
{
    head *h = t->data;
    if (h->state != HEAD_DRAINING)
        return;
    if (h->n_gens > 0)
        DSA_WARN("drain timeout: aborting %" PRId64 " request(s) still in flight", h->n_gens);
    stop_all(h);
}

static void on_signal(uv_signal_t *s, int signum)
{
    head *h = s->data;
    if (h->state == HEAD_DRAINING) {
        DSA_WARN("second signal %d: stopping now", signum);
        stop_all(h);
        return;
    }
    if (h->state == HEAD_STOPPED)
        return;
    if (h->state == HEAD_FAILED) { /* exiting anyway */
        stop_all(h);
        return;
    }
    DSA_INFO("signal %d: draining (up to %.1fs for %" PRId64 " request(s))", signum,
             h->o->drain_timeout, h->n_gens);
    int starting = h->state == HEAD_STARTING;
    h->state = HEAD_DRAINING;
    if (starting) {
        /* the load keeps going on its thread; exit once it returns */
        h->exit_code = 0;
        stop_all(h);
        return;
    }
    uv_timer_start(&h->drain_timer, on_drain_timeout, (uint64_t)(h->o->drain_timeout * 1000),
                   0);
    maybe_stop(h);
}

int dsa_head_run(const dsa_head_opts *o, const char **keys, int n_keys)
{
    head *h = calloc(1, sizeof *h);
    if (!h)
        return 1;
    h->o = o;
    h->keys = keys;
    h->n_keys = n_keys;
    h->state = HEAD_STARTING;
    const char *name = o->served_model_name;
    if (!name) {
        const char *slash = strrchr(o->model, '/');
        name = slash && slash[1] ? slash + 1 : o->model;
    }
    snprintf(h->model_name, sizeof h->model_name, "%s", name);
    dsa_metrics_init(&h->metrics, h->model_name);
    uv_loop_init(&h->loop);
    uv_async_init(&h->loop, &h->async, on_async);
    h->async.data = h;
    uv_signal_init(&h->loop, &h->sigterm);
    uv_signal_init(&h->loop, &h->sigint);
    h->sigterm.data = h->sigint.data = h;
    uv_signal_start(&h->sigterm, on_signal, SIGTERM);
    uv_signal_start(&h->sigint, on_signal, SIGINT);
    uv_timer_init(&h->loop, &h->drain_timer);
    h->drain_timer.data = h;
    uv_timer_init(&h->loop, &h->fatal_timer);
    h->fatal_timer.data = h;
    dsa_http_params hp = {.host = o->host, .port = (int)o->port,
                          .max_connections = o->max_connections,
                          .max_header_bytes = o->max_header_bytes,
                          .max_body_bytes = o->max_body_bytes,
                          .max_unsent_bytes = o->max_unsent_bytes,
                          .read_timeout = o->request_timeout,
                          .keepalive_timeout = o->timeout_keep_alive,
                          .on_request = on_request, .on_abort = on_abort,
                          .on_response = on_response, .user = h};
    if (dsa_http_server_create(&h->loop, &hp, &h->http)) {
        DSA_ERROR("%s", dsa_errmsg());
        h->exit_code = 1;
        stop_all(h);
    } else {
        int port = dsa_http_server_port(h->http);
        DSA_INFO("listening on %s:%d (%d API key(s)); loading %s", o->host, port, n_keys,
                 o->model);
        if (o->port_file) {
            FILE *f = fopen(o->port_file, "w");
            if (f) {
                fprintf(f, "%d\n", port);
                fclose(f);
            }
        }
        h->load_work.data = h;
        uv_queue_work(&h->loop, &h->load_work, on_load, after_load);
    }
    uv_run(&h->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&h->loop);
    if (rc)
        DSA_WARN("event loop closed with handles open: %s", uv_strerror(rc));
#ifdef DSA_HAVE_MPI
    /* Under MPI a clean exit needs the transport (Shutdown to every
     * worker); anything else ends the whole job, which systemd restarts. */
    if (o->mpi && (h->fatal || h->exit_code || !h->transport))
        dsa_mpi_abort(o->mpi, h->exit_code ? h->exit_code : 3, "dsa-head exits: %s",
                      h->fatal ? h->fatal_msg
                      : h->transport ? "startup failed"
                                     : "stopped before the workers were ready");
#endif
    dsa_transport_destroy(h->transport);
    dsa_tok_destroy(h->tok);
    dsa_metrics_deinit(&h->metrics);
    int code = h->exit_code;
    free(h);
    DSA_INFO("exit %d", code);
    return code;
}
