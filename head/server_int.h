/* server_int.h - what the parts of dsa-head's application share (not a
 * public interface): the server's state, a generation request and its
 * choices, the response helpers.  server.c owns the loop, the endpoints,
 * startup and drain; gen.c the generation requests (tokenize, submit,
 * stream, finish).  Everything runs on the loop thread. */
#ifndef DSA_HEAD_SERVER_INT_H
#define DSA_HEAD_SERVER_INT_H

#include <stdint.h>
#include <string.h>
#include <uv.h>

#include "common/grammar.h"
#include "common/chat.h"
#include "common/genconfig.h"
#include "common/tokenizer.h"
#include "head/api.h"
#include "head/cors.h"
#include "head/engine.h"
#include "head/http.h"
#include "head/metrics.h"
#include "head/params.h"
#include "head/server.h"
#include "head/tools.h"

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
    dsa_gram_vocab *gvocab;     /* structured output: the vocabulary trie ... */
    dsa_gram_cache *gcache;     /* ... and compiled grammars (NULL: no tokenizer) */
    int has_chat;
    dsa_chat_variant variant;
    dsa_genconfig genconfig;    /* sampling defaults (--generation-config) */
    dsa_metrics metrics;
    int state;
    int exit_code;
    int64_t max_model_len;
    int64_t vocab;
    char model_name[256];
    int64_t n_gens;             /* generation requests in progress */
    struct gen *gens;           /* ... listed (to fail them all at once) */
    uint64_t next_id;
    double drain_deadline;
    /* distributed */
    int n_stages, tp;           /* the workers' layout (1 x 1 in-process) */
    int layout_refused;         /* not the configured layout: load_error says why */
    uv_timer_t fatal_timer;
    uv_timer_t flush_timer;     /* stop once the last error events are out */
    uv_timer_t watch_timer;     /* distributed drain: are the workers gone? */
    int flushing;
    double flush_deadline;
    dsa_cors cors;
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
    dsa_prompt_lp *plps;        /* prompt logprobs (non-streaming), owned */
    int n_plps;
    int echoed;                 /* streaming echo: the prompt went out */
    int has_stop_token;         /* stop_reason (head/api.h dsa_api_choice) */
    int32_t stop_token;
    const char *stop_str;
} choice;

typedef struct gen {
    head *h;
    struct gen *next, *prev;    /* in h->gens */
    dsa_http_conn *conn;        /* NULL once the client is gone */
    dsa_api_request api;
    char id[DSA_API_MAX_REQUEST_ID + 16]; /* "chatcmpl-..." / "cmpl-..." */
    uint32_t call_salt;         /* makes tool-call ids unique per request */
    dsa_api_resp_meta meta;
    int n_prompts;
    int32_t **ids;              /* [n_prompts] tokenized prompts */
    int32_t *n_ids;
    int n_choices, n_done;
    choice *ch;
    int64_t prompt_tokens;
    uv_work_t work;
    dsa_gram *gram;             /* structured output, one reference; NULL none */
    int in_work;
    dsa_api_error err;
    int failed;
    int started;                /* submitted (a stream has begun) */
    int reasoning;
    double t_start;
    const char *request_id;     /* borrowed from the connection; copy below */
    char rid[72];
} gen;

/* ---- small helpers -------------------------------------------------------- */

static inline void respond_json(dsa_http_conn *c, int status, const dsa_jbuf *b, const char *extra)
{
    dsa_http_respond(c, status, "application/json", extra, b->data ? b->data : "{}",
                     b->data ? b->len : 2);
}

static inline void respond_error(dsa_http_conn *c, const dsa_api_error *e, const char *extra)
{
    dsa_jbuf b = {0};
    dsa_api_error_json(&b, e);
    respond_json(c, e->status, &b, extra);
    dsa_jbuf_deinit(&b);
}

static inline void respond_fail(dsa_http_conn *c, int status, const char *param, const char *msg,
                         const char *extra)
{
    dsa_api_error e;
    dsa_api_fail(&e, status, param, "%s", msg);
    respond_error(c, &e, extra);
}

static inline int authorized(head *h, const dsa_http_req *r)
{
    const char *a = r->authorization;
    return dsa_api_auth_check(a, a ? strlen(a) : 0, h->keys, h->n_keys);
}

/* ---- gen.c ---------------------------------------------------------------- */

/* POST /v1/chat/completions, /v1/completions, /generate (the server is
 * serving and the client authorized). */
void dsa_gen_handle(head *h, dsa_http_conn *c, const dsa_http_req *r, dsa_api_kind kind);
/* http's on_abort: the client of g went away. */
void dsa_gen_on_abort(void *user, dsa_http_conn *c, void *req_user);
/* One engine event (loop thread). */
void dsa_gen_on_event(head *h, dsa_engine_event *ev);
/* Ends every request in progress with `status`, telling its client the
 * server is shutting down (why: a short reason): streams get an SSE error
 * event then [DONE], the others an error object.  The requests are freed;
 * their bytes are queued on the sockets. */
void dsa_gen_fail_all(head *h, int status, const char *why);
/* Structured output (gen_gram.c): compiles the request's grammar into
 * g->gram (0), or fails g with a 400 naming the field (1); gives a choice
 * its grammar state. */
int dsa_gen_compile_grammar(gen *g);
void dsa_gen_attach_grammar(gen *g, dsa_engine_req *er);

#endif
