/* server.c - dsa-head's endpoints, startup and drain (see server.h).
 *
 * Threads: the loop thread runs everything here except the model load and
 * long tokenizations (uv thread pool) and the engine (its own thread).
 * Generation requests are gen.c's. */
#include "head/server.h"

#include <inttypes.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "common/log.h"
#include "head/json_in.h"
#include "head/server_int.h"
#include "worker/step.h"
#ifdef DSA_HAVE_MPI
#include "proto/mpi_transport.h"
#endif

/* After a fatal transport error: how long the loop keeps running so the
 * failed responses reach their clients before the job ends. */
#define FATAL_FLUSH_MS 1500
/* After the drain timeout: at most this long for the error events of the
 * requests it ended to reach their clients. */
#define FLUSH_MS 1000
/* Distributed drain: a step this late means the workers are gone. */
#define DRAIN_STALL_S 0.3

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
        dsa_gen_on_event(h, ev);
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
        size_t n_text = t.n_prompt;
        int add_special = t.add_special_tokens;
        if (t.messages) {
            if (!h->has_chat) {
                err = dsa_api_fail(&e, 400, "messages", "no supported chat template");
            } else if ((err = dsa_chat_render_tools(h->variant, t.messages, t.tools,
                                                    t.add_generation_prompt != 0,
                                                    dsa_tok_bos_token(h->tok), &rendered))) {
                dsa_api_fail(&e, 400, "messages", "%s", dsa_errmsg());
            }
            text = rendered;
            n_text = rendered ? strlen(rendered) : 0;
            if (rendered && t.n_nul)
                dsa_json_nul_restore(rendered, n_text);
            add_special = 0;
        }
        int32_t *ids = NULL;
        size_t n = 0;
        if (!err && (err = dsa_tok_encode(h->tok, text, n_text, add_special, &ids, &n)))
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
    int method;         /* allowed method (GET allows HEAD too) */
    int kind;           /* what to do */
} route;

enum { R_CHAT, R_COMPLETIONS, R_GENERATE, R_MODELS, R_HEALTH, R_METRICS, R_TOKENIZE,
       R_DETOKENIZE, R_VERSION };

/* /ping is vLLM's (SageMaker's) alias of /health, GET and POST */
static const route routes[] = {
    {"/v1/chat/completions", HTTP_POST, R_CHAT},
    {"/v1/completions", HTTP_POST, R_COMPLETIONS},
    {"/generate", HTTP_POST, R_GENERATE},
    {"/v1/models", HTTP_GET, R_MODELS},
    {"/health", HTTP_GET, R_HEALTH},
    {"/ping", HTTP_GET, R_HEALTH},
    {"/ping", HTTP_POST, R_HEALTH},
    {"/metrics", HTTP_GET, R_METRICS},
    {"/tokenize", HTTP_POST, R_TOKENIZE},
    {"/detokenize", HTTP_POST, R_DETOKENIZE},
    {"/version", HTTP_GET, R_VERSION},
};

/* /health and /ping: 200 while serving with workers that keep time; 503
 * while loading, draining, failed, or while the workers are late (a step
 * or a ping overdue by --health-late-timeout). */
static void handle_health(head *h, dsa_http_conn *c)
{
    if (h->layout_refused) { /* not the configured layout: say why */
        char body[sizeof h->load_error + 48];
        int n = snprintf(body, sizeof body, "{\"status\":\"failed\",\"reason\":\"%s\"}",
                         h->load_error); /* no quote or backslash in the message */
        dsa_http_respond(c, 503, "application/json", NULL, body, (size_t)n);
        return;
    }
    const char *late = h->state == HEAD_SERVING && h->engine ? dsa_engine_late(h->engine)
                                                             : NULL;
    int ok = h->state == HEAD_SERVING && !late;
    const char *body = ok                           ? "{\"status\":\"ok\"}"
                       : late                       ? "{\"status\":\"stalled\"}"
                       : h->state == HEAD_STARTING ? "{\"status\":\"starting\"}"
                       : h->state == HEAD_FAILED   ? "{\"status\":\"failed\"}"
                                                   : "{\"status\":\"draining\"}";
    dsa_http_respond(c, ok ? 200 : 503, "application/json", NULL, body, strlen(body));
}

static void on_request(void *user, dsa_http_conn *c, const dsa_http_req *r)
{
    head *h = user;
    /* CORS first, as vLLM's middleware: preflights for any path, no key */
    dsa_jbuf cors = {0};
    int status;
    const char *text;
    if (dsa_cors_preflight(&h->cors, r, &cors, &status, &text)) {
        dsa_http_conn_add_headers(c, cors.data ? cors.data : "");
        dsa_http_respond(c, status, "text/plain; charset=utf-8", NULL, text, strlen(text));
        dsa_jbuf_deinit(&cors);
        return;
    }
    dsa_cors_simple(&h->cors, r, &cors);
    const route *rt = NULL;
    char allow[64] = "";
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (strcmp(r->path, routes[i].path))
            continue;
        size_t n = strlen(allow);
        snprintf(allow + n, sizeof allow - n, "%s%s", n ? ", " : "",
                 llhttp_method_name((llhttp_method_t)routes[i].method));
        if (r->method == routes[i].method ||
            (routes[i].method == HTTP_GET && r->method == HTTP_HEAD))
            rt = &routes[i];
    }
    /* the 401 of a missing key goes without them: vLLM's authentication
     * middleware sits outside its CORS middleware */
    int needs_key = rt && rt->kind != R_HEALTH && rt->kind != R_VERSION &&
                    (rt->kind != R_METRICS || h->o->protect_metrics);
    if (cors.data && (!needs_key || authorized(h, r)))
        dsa_http_conn_add_headers(c, cors.data);
    dsa_jbuf_deinit(&cors);
    if (!rt && !allow[0]) {
        respond_fail(c, 404, NULL, "Not Found", NULL);
        return;
    }
    if (!rt) {
        char hdr[96];
        snprintf(hdr, sizeof hdr, "Allow: %s\r\n", allow);
        respond_fail(c, 405, NULL, "Method Not Allowed", hdr);
        return;
    }
    if (rt->kind == R_HEALTH) {
        handle_health(h, c);
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
    case R_CHAT: dsa_gen_handle(h, c, r, DSA_API_CHAT); break;
    case R_COMPLETIONS: dsa_gen_handle(h, c, r, DSA_API_COMPLETION); break;
    case R_GENERATE: dsa_gen_handle(h, c, r, DSA_API_GENERATE); break;
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
    /* errors at the default level (and without --disable-log-requests too);
     * a health probe's 503 (loading, draining) is no warning */
    const char *rid = r->request_id ? r->request_id : "-";
    int probe = r->path && (!strcmp(r->path, "/health") || !strcmp(r->path, "/ping"));
    if (status >= 400)
        dsa_log_req(status >= 500 && !probe ? DSA_LOG_WARN : DSA_LOG_INFO, rid,
                    "%s %s -> %d in %.4fs",
                    r->method_name ? r->method_name : "-", r->path ? r->path : "-", status,
                    seconds);
    else if (!h->o->disable_log_requests && r->path)
        dsa_log_req(DSA_LOG_DEBUG, rid, "%s %s -> %d in %.4fs",
                    r->method_name ? r->method_name : "-", r->path, status, seconds);
}

/* ---- startup and drain ------------------------------------------------------ */

static void on_load(uv_work_t *w)
{
    head *h = w->data;
    const dsa_head_opts *o = h->o;
    dsa_err err;
    char path[4096];
    int found = 0;
    const char *gmode = o->generation_config ? o->generation_config : "auto";
    if (dsa_genconfig_load(gmode, o->model, &h->genconfig, &found)) {
        snprintf(h->load_error, sizeof h->load_error, "--generation-config: %s", dsa_errmsg());
        h->load_failed = 1;
        return;
    }
    if (found && (h->genconfig.has_temperature || h->genconfig.has_top_p ||
                  h->genconfig.has_top_k || h->genconfig.has_min_p ||
                  h->genconfig.has_repetition_penalty || h->genconfig.has_max_tokens))
        DSA_WARN("default sampling parameters come from %s/generation_config.json (as vLLM "
                 "does); --generation-config vllm turns this off",
                 strcmp(gmode, "auto") ? gmode : o->model);
    else if (!found && strcmp(gmode, "auto") && strcmp(gmode, "vllm"))
        DSA_WARN("--generation-config %s: no generation_config.json there; vLLM's defaults apply",
                 gmode);
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
                                 .max_num_seqs = o->max_num_seqs,
                                 .spec_tokens = o->spec_k,
                                 .lm_head_quant = o->lm_head_quant,
                                 .cpu_int8_act = o->cpu_int8_act};
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
    if (h->tok) {
        int32_t eos = wi->eos_token_id;
        dsa_gram_vocab_params gp = {.tok = h->tok, .n_vocab = (size_t)h->vocab, .stop_ids = &eos,
                                    .n_stop_ids = eos >= 0};
        if (dsa_gram_vocab_create(&gp, &h->gvocab) ||
            dsa_gram_cache_create(h->gvocab, 64, &h->gcache))
            DSA_WARN("structured output disabled: %s", dsa_errmsg());
    }
    h->max_model_len = h->o->max_model_len > 0 ? h->o->max_model_len
                                               : wi->max_position_embeddings;
    if (h->max_model_len > wi->max_blocks_per_seq * wi->block_size)
        h->max_model_len = wi->max_blocks_per_seq * wi->block_size;
    dsa_metrics_set_max_model_len(&h->metrics, h->max_model_len);
    dsa_engine_params ep = {.transport = h->transport, .tok = h->tok, .metrics = &h->metrics,
                            .max_num_seqs = h->o->max_num_seqs,
                            .max_num_batched_tokens = h->o->max_num_batched_tokens,
                            .disable_prefix_caching = h->o->no_enable_prefix_caching,
                            .kv_fraction = h->o->gpu_memory_utilization,
                            .eos_token_id = wi->eos_token_id, .notify = engine_notify,
                            .notify_user = &h->async,
                            .max_in_flight = h->n_stages >= 2 ? 2 : 1,
                            .transport_errors_fatal = h->o->mpi != NULL,
                            .ping_interval_s = h->o->ping_interval,
                            .late_s = h->o->health_late_timeout,
                            .spec_k = h->o->spec_k};
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
    uv_close((uv_handle_t *)&h->flush_timer, on_closed);
    uv_close((uv_handle_t *)&h->watch_timer, on_closed);
}

static void maybe_stop(head *h)
{
    if (h->n_gens == 0 && !h->flushing) {
        DSA_INFO("drained: every request finished");
        stop_all(h);
    }
}

static void on_flushed(uv_timer_t *t)
{
    head *h = t->data;
    if (!h->http || dsa_http_server_unsent_bytes(h->http) == 0 ||
        dsa_time_now() > h->flush_deadline)
        stop_all(h);
}

/* Ends every request in progress with an error the client can read (SSE
 * error event and [DONE], or a 503 object), then stops once those bytes
 * have left (at most FLUSH_MS). */
static void fail_all_and_stop(head *h, const char *why)
{
    if (h->n_gens > 0) {
        DSA_WARN("%s: ending %" PRId64 " request(s) still in flight", why, h->n_gens);
        h->flushing = 1;
        dsa_gen_fail_all(h, 503, why);
    }
    if (!h->flushing) {
        stop_all(h);
        return;
    }
    h->flush_deadline = dsa_time_now() + FLUSH_MS / 1e3;
    uv_timer_stop(&h->drain_timer);
    uv_timer_start(&h->flush_timer, on_flushed, 20, 20);
}

/* Under MPI a SIGTERM that reaches the head through mpirun reached every
 * worker too (mpirun forwards it; a planned drain signals the head alone),
 * and mpirun's teardown after a worker died starts the same way: then the
 * step in progress never returns and SIGKILL follows within about a
 * second.  A step overdue by DRAIN_STALL_S during the drain means that: the
 * requests get their error events while the head still can send them. */
static void on_drain_watch(uv_timer_t *t)
{
    head *h = t->data;
    if (h->state != HEAD_DRAINING || h->flushing || !h->engine)
        return;
    if (dsa_engine_wait_s(h->engine) > DRAIN_STALL_S) {
        uv_timer_stop(t);
        fail_all_and_stop(h, "the workers stopped answering");
    }
}

static void on_drain_timeout(uv_timer_t *t)
{
    head *h = t->data;
    if (h->state != HEAD_DRAINING)
        return;
    fail_all_and_stop(h, "drain timeout");
}

static void on_signal(uv_signal_t *s, int signum)
{
    head *h = s->data;
    if (h->state == HEAD_DRAINING) {
        if (h->flushing)
            return;
        DSA_WARN("second signal %d: stopping now", signum);
        fail_all_and_stop(h, "second signal");
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
    if (h->o->mpi && h->n_gens > 0) {
        uv_timer_start(&h->watch_timer, on_drain_watch, 0, 50);
        on_drain_watch(&h->watch_timer);
    }
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
    if (dsa_cors_init(&h->cors, o->allowed_origins, o->allowed_methods, o->allowed_headers,
                      o->allow_credentials)) {
        DSA_ERROR("%s", dsa_errmsg());
        free(h);
        return 2;
    }
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
    uv_timer_init(&h->loop, &h->flush_timer);
    h->flush_timer.data = h;
    uv_timer_init(&h->loop, &h->watch_timer);
    h->watch_timer.data = h;
    dsa_http_params hp = {.host = o->host, .port = (int)o->port,
                          .max_connections = o->max_connections,
                          .max_header_bytes = o->max_header_bytes,
                          .max_body_bytes = o->max_body_bytes,
                          .max_unsent_bytes = o->max_unsent_bytes,
                          .max_unsent_total = o->max_unsent_total,
                          .read_timeout = o->request_timeout,
                          .keepalive_timeout = o->timeout_keep_alive,
                          .on_request = on_request, .on_abort = dsa_gen_on_abort,
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
    dsa_gram_cache_destroy(h->gcache);
    dsa_gram_vocab_destroy(h->gvocab);
    dsa_tok_destroy(h->tok);
    dsa_metrics_deinit(&h->metrics);
    dsa_cors_deinit(&h->cors);
    int code = h->exit_code;
    free(h);
    DSA_INFO("exit %d", code);
    return code;
}
