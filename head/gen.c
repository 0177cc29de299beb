/* gen.c - generation requests of dsa-head (see server_int.h).
 *
 * A generation request is a `gen` object owned by the loop: it lives until
 * its response is complete or its connection goes away (on_abort), and
 * holds one reference to each of its choices' engine requests. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/reasoning.h"
#include "head/json_in.h"
#include "head/server_int.h"

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
        free(c->plps);
    }
    free(g->ch);
    for (int i = 0; i < g->n_prompts && g->ids; i++)
        free(g->ids[i]);
    free(g->ids);
    free(g->n_ids);
    dsa_api_request_free(&g->api);
    dsa_gram_destroy(g->gram);
    head *h = g->h;
    if (g->prev)
        g->prev->next = g->next;
    else
        h->gens = g->next;
    if (g->next)
        g->next->prev = g->prev;
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
    if (dsa_gen_compile_grammar(g))
        return;
    if (a->kind == DSA_API_CHAT) {
        char *text = NULL;
        dsa_err err = dsa_chat_render_tools(h->variant, a->messages, a->tools,
                                            a->add_generation_prompt != 0,
                                            dsa_tok_bos_token(h->tok), &text);
        if (!err && a->continue_final_message &&
            (err = dsa_chat_continue_final(a->messages, text)) == DSA_INVAL) {
            g->failed = 1;
            dsa_api_fail(&g->err, 400, "continue_final_message", "%s", dsa_errmsg());
            free(text);
            return;
        }
        if (err) {
            g->failed = 1;
            dsa_api_fail(&g->err, err == DSA_NOMEM ? 500 : 400, "messages", "%s", dsa_errmsg());
            return;
        }
        size_t n = 0, n_text = strlen(text);
        if (a->n_nul) /* `\u0000` in the messages: NUL bytes are data */
            dsa_json_nul_restore(text, n_text);
        err = dsa_tok_encode(h->tok, text, n_text, a->add_special_tokens, &g->ids[0], &n);
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
        dsa_err err = dsa_tok_encode(h->tok, p->text, p->n_text, a->add_special_tokens,
                                     &g->ids[i], &n);
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
        dsa_jbuf echo = {0};
        if (dsa_api_chat_echo(&g->api, &echo) == DSA_OK && echo.len) {
            dsa_api_delta de = {.index = i, .content = echo.data, .n_content = echo.len};
            dsa_api_sse_chunk(&b, &g->meta, &de, g->api.include_usage);
        }
        dsa_jbuf_deinit(&echo);
    }
    dsa_http_stream_write(g->conn, b.data, b.len);
    dsa_jbuf_deinit(&b);
}

/* The sampler-side parameters (head/api_logits.c) of one choice. */
static void gen_logit_params(dsa_engine_req *er, const dsa_api_request *a)
{
    er->stop_ids = a->stop_token_ids;
    er->n_stop_ids = a->n_stop_token_ids;
    er->min_tokens = (int32_t)a->min_tokens;
    er->ctl = (dsa_step_seq){.n_allowed = a->n_allowed, .allowed = a->allowed_ids,
                             .n_bias = a->n_bias, .bias_ids = a->bias_ids,
                             .bias_values = a->bias_values,
                             .prompt_lps = a->prompt_logprobs >= 0,
                             .prompt_top = a->prompt_logprobs > 0 ? a->prompt_logprobs : 0};
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
    if (dsa_api_check_vocab(a, h->vocab, &g->err)) {
        respond_error(conn, &g->err, NULL);
        gen_free(g);
        return;
    }
    for (int i = 0; i < g->n_prompts; i++) {
        dsa_api_error te;
        if (dsa_params_truncate(a, h->max_model_len, g->ids[i], &g->n_ids[i], &te)) {
            respond_error(conn, &te, NULL);
            gen_free(g);
            return;
        }
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
        /* echo with max_tokens 0 evaluates the prompt with one token */
        int64_t max_new = a->max_tokens == 0 ? 1
                          : a->max_tokens > 0 ? a->max_tokens : h->max_model_len - n;
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
        g->prompt_tokens += n; /* once per prompt whatever n is, as vLLM counts */
    }
    if (a->stream && h->http && dsa_http_server_over_bound(h->http)) {
        respond_fail(conn, 503, NULL, "the server is busy: too much data is queued for slow "
                     "clients; retry later", "Retry-After: 1\r\n");
        gen_free(g);
        return;
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
        er->max_new = (int32_t)dsa_params_max_new(a, &h->genconfig, h->max_model_len,
                                                  g->n_ids[p]);
        gen_logit_params(er, a);
        dsa_params_sampling(a, &h->genconfig, base_seed + (uint64_t)i, &er->sp);
        er->ignore_eos = a->ignore_eos;
        er->skip_special = a->skip_special_tokens;
        er->reasoning_flags = g->reasoning ? DSA_REASON_TRIM : -1;
        er->want_logprobs = a->logprobs;
        er->stop = a->stop;
        er->n_stop = a->n_stop;
        er->include_stop = a->include_stop_str_in_output;
        er->t_arrival = g->t_start;
        dsa_gen_attach_grammar(g, er);
        er->user = g;
        er->index = i;
        dsa_metrics_observe_params(&h->metrics, i % a->n ? 0 : a->n, a->max_tokens);
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
    g->started = 1;
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
static void token_text(head *h, int32_t id, int as_ids, dsa_jbuf *store, size_t *off,
                       size_t *len)
{
    char *t = NULL;
    size_t n = 0;
    *off = store->len;
    if (!as_ids && h->tok && dsa_tok_decode(h->tok, &id, 1, 0, &t, &n) == DSA_OK) {
        dsa_jbuf_put(store, t, n);
    } else {
        char tmp[32];
        n = (size_t)snprintf(tmp, sizeof tmp, "token_id:%d", id);
        dsa_jbuf_put(store, tmp, n);
    }
    free(t);
    *len = store->len - *off;
}

/* Formats logprob entries for the API (texts decoded into store; as_ids:
 * return_tokens_as_token_ids, every token as "token_id:N").  The entries
 * point into store: it must not grow while they are in use. */
static dsa_api_logprob *format_lps(head *h, const dsa_engine_lp *lps, int n, int as_ids,
                                   dsa_jbuf *store)
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
        token_text(h, lps[i].id, as_ids, store, &offs[i][0], &out[i].n_text);
        out[i].logprob = lps[i].logprob;
        out[i].n_top = lps[i].n_top;
        for (int j = 0; j < lps[i].n_top; j++) {
            token_text(h, lps[i].top_ids[j], as_ids, store, &offs[i][j + 1],
                       &out[i].top_n_text[j]);
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

/* vLLM's prompt_logprobs array of one choice into out (texts decoded into
 * a store of its own, resolved once it stops growing). */
static void plps_json(head *h, const choice *c, int as_ids, dsa_jbuf *out)
{
    dsa_jbuf store = {0};
    int n = c->n_plps;
    dsa_api_prompt_lp *pl = calloc((size_t)(n > 0 ? n : 1), sizeof *pl);
    size_t (*offs)[21] = calloc((size_t)(n > 0 ? n : 1), sizeof *offs);
    if (!pl || !offs) {
        out->oom = 1;
        goto done;
    }
    for (int i = 0; i < n; i++) {
        const dsa_prompt_lp *e = &c->plps[i];
        pl[i] = (dsa_api_prompt_lp){.token = e->token, .logprob = e->logprob, .rank = e->rank,
                                    .n_top = e->n_top};
        token_text(h, e->token, as_ids, &store, &offs[i][0], &pl[i].n_text);
        for (int j = 0; j < e->n_top; j++) {
            pl[i].top_ids[j] = e->top_ids[j];
            pl[i].top_logprob[j] = e->top_logprobs[j];
            token_text(h, e->top_ids[j], as_ids, &store, &offs[i][j + 1],
                       &pl[i].top_n_text[j]);
        }
    }
    for (int i = 0; i < n; i++) {
        pl[i].text = store.data + offs[i][0];
        for (int j = 0; j < pl[i].n_top; j++)
            pl[i].top_text[j] = store.data + offs[i][j + 1];
    }
    dsa_api_prompt_logprobs_json(out, pl, n);
done:
    free(pl);
    free(offs);
    dsa_jbuf_deinit(&store);
}

/* echo on /v1/completions: the prompt's text before the generated text,
 * and with logprobs the prompt tokens' entries (plps, positions 1..) before
 * the generated ones (the first prompt token's null, the prompt token
 * leading its top list, as vLLM); max_tokens 0 keeps the prompt only.
 * *lps is malloc'd, [*n_lps]. */
static void echo_build(gen *g, int p, const dsa_prompt_lp *plps, int n_plps, const char *gtext,
                       size_t n_gtext, const dsa_engine_lp *glps, int n_glps, dsa_jbuf *text,
                       dsa_engine_lp **lps, int *n_lps)
{
    head *h = g->h;
    const dsa_api_request *a = &g->api;
    int gen_too = a->max_tokens != 0;
    const dsa_api_prompt *pr = &a->prompts[p];
    if (pr->text) {
        dsa_jbuf_put(text, pr->text, pr->n_text);
    } else {
        char *t = NULL;
        size_t n = 0;
        if (h->tok && dsa_tok_decode(h->tok, pr->ids, (size_t)pr->n_ids, 0, &t, &n) == DSA_OK)
            dsa_jbuf_put(text, t, n);
        free(t);
    }
    if (gen_too)
        dsa_jbuf_put(text, gtext ? gtext : "", n_gtext);
    *lps = NULL;
    *n_lps = 0;
    if (!a->logprobs)
        return;
    int np = g->n_ids[p], ng = gen_too ? n_glps : 0;
    dsa_engine_lp *l = calloc((size_t)(np + ng), sizeof *l);
    if (!l)
        return;
    l[0].id = g->ids[p][0];
    for (int k = 1; k < np && k - 1 < n_plps; k++) {
        const dsa_prompt_lp *e = &plps[k - 1];
        dsa_engine_lp *d = &l[k];
        d->id = e->token;
        d->logprob = e->logprob;
        d->top_ids[d->n_top] = e->token;
        d->top_logprobs[d->n_top++] = e->logprob;
        for (int j = 0; j < e->n_top && d->n_top < DSA_TOP_LOGPROBS_MAX; j++)
            if (e->top_ids[j] != e->token) {
                d->top_ids[d->n_top] = e->top_ids[j];
                d->top_logprobs[d->n_top++] = e->top_logprobs[j];
            }
        if (a->top_logprobs == 0)
            d->n_top = 0;
    }
    if (ng)
        memcpy(l + np, glps, (size_t)ng * sizeof *l);
    *lps = l;
    *n_lps = np + ng;
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
        /* one texts store per choice: a choice's entries point into its
         * store, which must not grow (move) once they are resolved */
        dsa_jbuf *store = calloc((size_t)g->n_choices, sizeof *store);
        dsa_api_logprob **lp = calloc((size_t)g->n_choices, sizeof *lp);
        dsa_jbuf *content = calloc((size_t)g->n_choices, sizeof *content);
        dsa_jbuf *plj = calloc((size_t)g->n_choices, sizeof *plj);
        dsa_engine_lp **elps = calloc((size_t)g->n_choices, sizeof *elps);
        int *n_elps = calloc((size_t)g->n_choices, sizeof *n_elps);
        int oom = !cs || !store || !lp || !content || !plj || !elps || !n_elps;
        for (int i = 0; !oom && i < g->n_choices; i++) {
            choice *c = &g->ch[i];
            oom = dsa_tools_out_parse_all(&c->tools, c->text.data, c->text.len, &content[i]) !=
                  DSA_OK;
            if (!oom && g->api.echo && g->api.kind == DSA_API_CHAT) {
                dsa_jbuf full = {0};
                oom = dsa_api_chat_echo(&g->api, &full) != DSA_OK;
                dsa_jbuf_put(&full, content[i].data ? content[i].data : "", content[i].len);
                oom = oom || full.oom;
                dsa_jbuf_deinit(&content[i]);
                content[i] = full;
            } else if (!oom && g->api.echo) {
                dsa_jbuf_reset(&content[i]);
                echo_build(g, i / g->api.n, c->plps, c->n_plps, c->text.data, c->text.len,
                           c->lps, c->n_lps, &content[i], &elps[i], &n_elps[i]);
                oom = content[i].oom || (g->api.logprobs && !elps[i]);
            }
            if (!oom && g->api.prompt_logprobs >= 0) {
                plps_json(h, c, g->api.return_tokens_as_token_ids, &plj[i]);
                oom = plj[i].oom;
            }
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
                    .tool_calls = c->tools.p.calls, .n_tool_calls = c->tools.n_calls,
                    .has_stop_token = c->has_stop_token, .stop_token = c->stop_token,
                    .stop_str = c->stop_str, .prompt_logprobs = plj[i].data};
                if (g->api.logprobs) {
                    const dsa_engine_lp *src = elps[i] ? elps[i] : c->lps;
                    int n_src = elps[i] ? n_elps[i] : c->n_lps;
                    lp[i] = format_lps(h, src, n_src, g->api.return_tokens_as_token_ids,
                                       &store[i]);
                    cs[i].logprobs = lp[i];
                    cs[i].n_logprobs = lp[i] ? n_src : 0;
                    if (lp[i] && elps[i])
                        lp[i][0].none = 1; /* the first prompt token */
                }
            }
            dsa_api_response(&b, &g->meta, cs, g->n_choices, &u);
            respond_json(g->conn, 200, &b, NULL);
        }
        for (int i = 0; lp && i < g->n_choices; i++)
            free(lp[i]);
        for (int i = 0; content && i < g->n_choices; i++)
            dsa_jbuf_deinit(&content[i]);
        for (int i = 0; store && i < g->n_choices; i++)
            dsa_jbuf_deinit(&store[i]);
        for (int i = 0; plj && i < g->n_choices; i++)
            dsa_jbuf_deinit(&plj[i]);
        for (int i = 0; elps && i < g->n_choices; i++)
            free(elps[i]);
        free(plj);
        free(elps);
        free(n_elps);
        free(content);
        free(lp);
        free(cs);
        free(store);
    }
    dsa_jbuf_deinit(&b);
    if (!h->o->disable_log_requests)
        dsa_log_req(DSA_LOG_INFO, g->rid, "done: %s, %d choice(s), prompt %" PRId64
                    " completion %" PRId64 " tokens, %.3fs", g->id, g->n_choices,
                    u.prompt_tokens, u.completion_tokens, dsa_time_now() - g->t_start);
    gen_free(g);
}

/* The text a client gets for a failure: 4xx texts as they are; a server
 * failure's detail (ranks, hosts, step ids) stays in the log and the client
 * gets a stable message with the request id. */
static void client_message(const gen *g, int status, const char *detail, char *out, size_t n)
{
    if (status < 500)
        snprintf(out, n, "%s", detail);
    else if (status == 503)
        snprintf(out, n, "the model workers failed; the server is restarting, retry later "
                 "(request id %s)", g->rid);
    else
        snprintf(out, n, "internal server error while generating (request id %s)", g->rid);
}

/* Ends g with an error (and frees it).  A stream already begun gets an SSE
 * error event and [DONE]; otherwise an error object with status.  detail
 * goes to the log; the client gets msg, or client_message's text when msg
 * is NULL. */
static void gen_fail(gen *g, int status, const char *detail, const char *msg)
{
    dsa_api_error e;
    char text[sizeof e.message];
    if (!msg) {
        client_message(g, status, detail, text, sizeof text);
        msg = text;
    }
    dsa_api_fail(&e, status, NULL, "%s", msg);
    dsa_log_req(status >= 500 ? DSA_LOG_WARN : DSA_LOG_INFO, g->rid, "request failed (%d): %s",
                status, detail);
    if (!g->conn) {
        gen_free(g);
        return;
    }
    if (g->started && g->api.stream && g->api.kind != DSA_API_GENERATE) {
        dsa_jbuf b = {0};
        dsa_api_sse_error(&b, &e);
        dsa_api_sse_done(&b);
        dsa_http_stream_write(g->conn, b.data, b.len);
        dsa_http_stream_end(g->conn);
        dsa_jbuf_deinit(&b);
    } else {
        respond_error(g->conn, &e, status == 503 ? "Retry-After: 1\r\n" : NULL);
    }
    gen_free(g);
}

void dsa_gen_fail_all(head *h, int status, const char *why)
{
    gen *g = h->gens;
    while (g) {
        gen *next = g->next;
        char msg[256];
        snprintf(msg, sizeof msg, "the server is shutting down and ended this request (%s; "
                 "request id %s)", why, g->rid);
        /* (choices not finished are aborted in the engine by gen_free) */
        if (g->in_work) {
            /* the thread pool still tokenizes into g: answer now, free in
             * after_tokenized (conn NULL) */
            dsa_api_error e;
            dsa_api_fail(&e, status, NULL, "%s", msg);
            if (g->conn)
                respond_error(g->conn, &e, NULL);
            g->conn = NULL;
        } else {
            gen_fail(g, status, why, msg);
        }
        g = next;
    }
}

void dsa_gen_on_event(head *h, dsa_engine_event *ev)
{
    gen *g = ev->req->user;
    if (!g || !g->conn)
        return;
    choice *c = &g->ch[ev->req->index];
    if (ev->status) {
        c->finish = "error";
        gen_fail(g, ev->status, ev->message, NULL);
        return;
    }
    c->n_generated = ev->n_generated;
    if (g->api.stream && g->api.kind != DSA_API_GENERATE) {
        dsa_jbuf b = {0}, store = {0}, etext = {0};
        const dsa_engine_lp *elps = ev->lps;
        dsa_engine_lp *echo_lps = NULL;
        int n_elps = ev->n_lps;
        const char *text = ev->content.data;
        size_t n_text = ev->content.len;
        if (g->api.echo && g->api.kind == DSA_API_COMPLETION && !c->echoed) {
            /* the prompt (and its logprobs) with the first delta, as vLLM */
            c->echoed = 1;
            echo_build(g, ev->req->index / g->api.n, ev->plps, ev->n_plps, ev->content.data,
                       ev->content.len, ev->lps, ev->n_lps, &etext, &echo_lps, &n_elps);
            elps = echo_lps;
            text = etext.data;
            n_text = etext.len;
        }
        dsa_api_logprob *lp = n_elps && elps ? format_lps(h, elps, n_elps,
                                                          g->api.return_tokens_as_token_ids,
                                                          &store)
                                             : NULL;
        if (lp && echo_lps)
            lp[0].none = 1;
        free(echo_lps);
        dsa_tools_delta td;
        /* td may point into etext: freed after the chunk is written */
        if (dsa_tools_out_feed(&c->tools, text, n_text, ev->finish != NULL, &td)) {
            dsa_jbuf_deinit(&etext);
            dsa_jbuf_deinit(&store);
            free(lp);
            c->finish = "error";
            gen_fail(g, 500, "out of memory", NULL);
            return;
        }
        dsa_tools_sse_event sev = {
            .meta = &g->meta, .index = ev->req->index, .td = &td,
            .reasoning = ev->reasoning.data, .n_reasoning = ev->reasoning.len,
            .logprobs = lp, .n_logprobs = lp ? n_elps : 0, .text_offset = &c->text_offset,
            .finish_reason = ev->finish ? dsa_tools_out_finish_reason(&c->tools, ev->finish)
                                        : NULL,
            .include_usage = g->api.include_usage, .has_stop_token = ev->has_stop_token,
            .stop_token = ev->stop_token, .stop_str = ev->stop_str};
        dsa_tools_sse(&b, &sev);
        int rc = b.len ? dsa_http_stream_write(g->conn, b.data, b.len) : 0;
        dsa_jbuf_deinit(&b);
        dsa_jbuf_deinit(&etext);
        dsa_jbuf_deinit(&store);
        free(lp);
        if (rc < 0) {
            /* the client is too slow or gone: on_abort follows */
            return;
        }
    } else {
        if (ev->n_plps && !c->plps) {
            c->plps = ev->plps;
            c->n_plps = ev->n_plps;
            ev->plps = NULL;
            ev->n_plps = 0;
        }
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
        c->has_stop_token = ev->has_stop_token;
        c->stop_token = ev->stop_token;
        c->stop_str = ev->stop_str;
        if (++g->n_done == g->n_choices)
            gen_finish_response(g);
    }
}

void dsa_gen_handle(head *h, dsa_http_conn *c, const dsa_http_req *r, dsa_api_kind kind)
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
    g->next = h->gens;
    if (h->gens)
        h->gens->prev = g;
    h->gens = g;
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
    /* vLLM names the response after the X-Request-Id header, else the
     * body's request_id, when the client gave one */
    const char *named = r->request_id_given ? r->request_id : g->api.request_id;
    if (named)
        snprintf(g->id, sizeof g->id, "%s-%.*s", kind == DSA_API_CHAT ? "chatcmpl" : "cmpl",
                 DSA_API_MAX_REQUEST_ID, named);
    g->meta = (dsa_api_resp_meta){.kind = kind, .id = g->id, .created = (int64_t)time(NULL),
                                  .model = h->model_name};
    g->reasoning = kind == DSA_API_CHAT && dsa_chat_variant_reasons(h->variant);
    dsa_http_conn_set_user(c, g);
    if (!h->o->disable_log_requests)
        dsa_log_req(DSA_LOG_INFO, g->rid, "%s %s, stream %d, max_tokens %" PRId64,
                    r->method_name, r->path, g->api.stream, g->api.max_tokens);
    if (g->api.ignored)
        dsa_log_req(DSA_LOG_WARN, g->rid, "fields present in the request but ignored: %s",
                    g->api.ignored);
    size_t text = 0;
    for (int i = 0; i < g->api.n_prompts; i++)
        text += g->api.prompts[i].n_text;
    if (g->api.messages)
        text += r->n_body;
    if ((int64_t)text > h->o->tokenize_inline_bytes || g->api.gram_kind ||
        g->api.tool_choice == DSA_API_TOOL_REQUIRED || g->api.tool_choice == DSA_API_TOOL_NAMED) {
        g->work.data = g;
        g->in_work = 1;
        if (uv_queue_work(&h->loop, &g->work, on_tokenized, after_tokenized) == 0)
            return;
        g->in_work = 0;
    }
    tokenize_prompts(g);
    gen_start(g);
}

void dsa_gen_on_abort(void *user, dsa_http_conn *c, void *req_user)
{
    gen *g = req_user;
    g->conn = NULL;
    dsa_log_req(DSA_LOG_INFO, g->rid, "client disconnected, aborted");
    if (!g->in_work)
        gen_free(g);
}
