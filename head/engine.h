/* engine.h - the head's engine thread: takes tokenized requests from the
 * loop thread, schedules them (head/sched.h), sends each step's plan
 * through the transport to the workers, turns sampled tokens into text
 * (head/textout.h) and hands events back to the loop.
 *
 * Threads: dsa_engine_submit/abort/poll are called from the loop thread;
 * everything else runs on the engine thread.  Requests are refcounted: the
 * loop holds one reference from dsa_engine_req_create until it calls
 * dsa_engine_abort or dsa_engine_req_release, the engine one while it
 * works on it, and each undelivered event one.  A step that fails fails
 * its requests with an error event; the engine never exits on one.  A
 * fatal transport error (transport_errors_fatal) fails every request and
 * stops stepping; the owner then exits (dsa_engine_fatal).
 *
 * With max_in_flight = 2 the engine pipelines: schedule and submit A,
 * schedule and submit B (requests not in A), collect and commit A,
 * schedule and submit A', collect B, ... (dsa_sched_schedule_batch). */
#ifndef DSA_HEAD_ENGINE_H
#define DSA_HEAD_ENGINE_H

#include <stdatomic.h>
#include <stdint.h>

#include "common/tokenizer.h"
#include "head/api.h"
#include "head/metrics.h"
#include "head/sched.h"
#include "head/textout.h"
#include "proto/step.h"

typedef struct dsa_engine dsa_engine;

/* One generated sequence (one choice of an HTTP request). */
typedef struct dsa_engine_req {
    /* set by the loop before submit, read-only afterwards */
    int32_t *prompt;            /* [n_prompt], owned */
    int32_t n_prompt;
    int32_t max_new;
    dsa_sampling sp;
    int ignore_eos;
    int skip_special;
    int reasoning_flags;        /* < 0: no reasoning split */
    int want_logprobs;
    char *const *stop;          /* borrowed from user, [n_stop] */
    int n_stop;
    int include_stop;           /* include_stop_str_in_output */
    /* vLLM's stop_token_ids (borrowed, [n_stop_ids]): sampling one ends the
     * choice with "stop" and stop_reason the id; its text is not output.
     * Until min_tokens tokens are generated nothing stops it: EOS and the
     * stop ids are banned at the sampler, and stop strings are looked for
     * only in the text of the tokens after the first min_tokens. */
    const int32_t *stop_ids;
    int n_stop_ids;
    int32_t min_tokens;
    /* Logit controls and prompt logprobs for the plans (proto/step.h
     * fields n_allowed .. prompt_top; ids borrowed from user).  The engine
     * fills banned (EOS unless ignore_eos, and the stop ids) itself. */
    dsa_step_seq ctl;
    double t_arrival;           /* dsa_time_now() when the HTTP request came */
    /* structured output: the grammar (one reference, released with the
     * request; NULL none) and its state; the engine fills gram_mask for
     * each step that samples and advances the state by each token */
    struct dsa_gram *gram;
    /* >= 0: the grammar waits for this token (R1's "</think>"): no mask
     * and no state change until it is sampled, and it applies from the
     * token after it (vLLM with a reasoning parser); -1: from the first */
    int32_t gram_wait_id;
    int32_t gram_state;
    int32_t gram_words;
    /* [(1 + spec_k) * gram_words], owned: mask j for verified position j
     * of a step with drafts (proto/step.h), mask 0 alone without */
    uint32_t *gram_mask;
    /* the grammar state before verified position j of the next step
     * (gram_states[0] = gram_state; j > 0: after the drafts before it),
     * valid for j <= seq.n_draft (dsa_engine_gram_drafts) */
    int32_t gram_states[DSA_SPEC_TOKENS_MAX + 1];
    void *user;                 /* loop side only: its owner, NULL once abandoned */
    int index;                  /* choice index */
    /* engine thread */
    dsa_sched_seq seq;
    dsa_textout out;
    int32_t *banned;            /* ctl.banned, owned */
    dsa_prompt_lp *plps;        /* prompt logprobs gathered so far, positions 1.. */
    int32_t n_plps, cap_plps;
    int plps_sent;              /* handed to the first token's event */
    double t_scheduled, t_first, t_last;
    int in_sched;
    /* shared */
    atomic_int refs;
    atomic_int aborted;
    struct dsa_engine_req *next_new;
} dsa_engine_req;

/* One token's logprobs as the engine reports them. */
typedef struct dsa_engine_lp {
    int32_t id;
    float logprob;
    int n_top;
    int32_t top_ids[DSA_TOP_LOGPROBS_MAX];
    float top_logprobs[DSA_TOP_LOGPROBS_MAX];
} dsa_engine_lp;

typedef struct dsa_engine_event {
    struct dsa_engine_event *next;
    dsa_engine_req *req;        /* holds a reference, released by the loop */
    dsa_jbuf content, reasoning;/* text deltas */
    int n_tokens;               /* tokens generated in this event */
    dsa_engine_lp *lps;         /* [n_lps] when logprobs are wanted */
    int n_lps;
    const char *finish;         /* NULL, "stop", "length", "abort" */
    /* vLLM's stop_reason with finish "stop": a stop token id
     * (has_stop_token) or a stop string (borrowed from req->stop); neither
     * for EOS */
    int has_stop_token;
    int32_t stop_token;
    const char *stop_str;
    /* with ctl.prompt_lps, on the first token's event: the prompt
     * logprobs of positions 1..n_plps (owned by the event) */
    dsa_prompt_lp *plps;
    int n_plps;
    int status;                 /* != 0: failed with HTTP status (message below) */
    char message[256];
    int64_t n_prompt, n_generated;
} dsa_engine_event;

typedef struct dsa_engine_params {
    dsa_transport *transport;   /* borrowed */
    const dsa_tok *tok;         /* borrowed, may be NULL */
    dsa_metrics *metrics;       /* borrowed */
    int64_t max_num_seqs, max_num_batched_tokens;
    int disable_prefix_caching;
    double kv_fraction;         /* (0, 1]: share of the workers' blocks used; 0: all */
    int32_t eos_token_id;
    void (*notify)(void *user); /* events are ready (called on the engine thread) */
    void *notify_user;
    /* Micro-batches in flight (1 or 2).  2 needs the transport's
     * submit/collect and pays off with PP >= 2 stages: the engine keeps two
     * batches of disjoint requests on the workers.  0: 1. */
    int max_in_flight;
    /* A transport error (the step call failing, not a failed step that the
     * workers report in result.status) is fatal: every request is failed
     * with 503, new ones too, and dsa_engine_fatal reports it.  Otherwise
     * it fails the step's requests with 500 as a failed step does. */
    int transport_errors_fatal;
    /* With a transport that pings (distributed): while idle the workers are
     * pinged every ping_interval_s (0: 1 s), and dsa_engine_late reports a
     * step result or ping answer overdue by late_s (0: 5 s). */
    double ping_interval_s, late_s;
    /* 1: grammar masks are filled on the engine thread before each step.
     * 0 (default): with an in-process transport (shares_plan) and one
     * batch in flight, a helper thread fills them while the step's forward
     * pass runs (head/engine_mask.h); otherwise as with 1. */
    int mask_sync;
    /* num_speculative_tokens (0: none): every request without a grammar
     * asks the workers for this many MTP drafts and verifies them in its
     * next decode step (docs/design.md "Speculative decoding"). */
    int spec_k;
} dsa_engine_params;

dsa_err dsa_engine_create(const dsa_engine_params *p, dsa_engine **out);
/* Stops the thread (requests still inside are failed with "abort" and
 * their events dropped) and frees the engine.  NULL: no-op. */
void dsa_engine_destroy(dsa_engine *e);

/* A request with refs = 1 (the caller's); prompt is copied. */
dsa_err dsa_engine_req_create(const int32_t *prompt, int32_t n_prompt, dsa_engine_req **out);
void dsa_engine_req_release(dsa_engine_req *r);

/* Hands a request to the engine (it takes its own reference). */
void dsa_engine_submit(dsa_engine *e, dsa_engine_req *r);
/* Abandons a request: the engine frees its slot and blocks at its next
 * step; the caller's reference is released. */
void dsa_engine_abort(dsa_engine *e, dsa_engine_req *r);

/* Takes the ready events (a list in order, possibly NULL).  The caller
 * frees each with dsa_engine_event_free. */
dsa_engine_event *dsa_engine_poll(dsa_engine *e);
void dsa_engine_event_free(dsa_engine_event *ev);

/* Requests submitted and not yet running (for the 429 queue limit), and
 * all requests the engine holds. */
int64_t dsa_engine_n_waiting(const dsa_engine *e);
int64_t dsa_engine_n_active(const dsa_engine *e);
/* Grammar masks filled by the helper thread during forward passes so far
 * (any thread; tests). */
int64_t dsa_engine_n_masks_overlapped(const dsa_engine *e);

/* NULL while the transport works; after a fatal transport error (see
 * transport_errors_fatal) its message.  Any thread. */
const char *dsa_engine_fatal(const dsa_engine *e);
/* Any thread: non-NULL (what is late) while the engine has waited longer
 * than late_s for a step's result or a ping's answer; NULL otherwise and
 * always with a transport that does not ping. */
const char *dsa_engine_late(const dsa_engine *e);
/* Any thread: seconds the engine has been waiting on the workers for the
 * step or ping in progress (in-process: the step's compute); 0 when none. */
double dsa_engine_wait_s(const dsa_engine *e);

#endif
