/* engine_out.c - what a step's result does to its requests (engine_int.h):
 * each generated token is handled as one (text, logprobs, finish), a
 * speculative step's accepted tokens one after another, as the same tokens
 * would be in steps without drafts; a token that finishes a request drops
 * the ones after it.  A step's tokens of one request then go out as one
 * event (one streamed chunk), as vLLM streams a speculative step's tokens
 * in one delta. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/grammar.h"
#include "head/engine_int.h"

static int is_stop_id(const dsa_engine_req *r, int32_t tok)
{
    for (int i = 0; i < r->n_stop_ids; i++)
        if (r->stop_ids[i] == tok)
            return 1;
    return 0;
}

static void logprob_entry(const dsa_step_tok *o, dsa_engine_lp *lp)
{
    lp->id = o->token;
    lp->logprob = o->logprob;
    lp->n_top = o->n_top;
    memcpy(lp->top_ids, o->top_ids, sizeof lp->top_ids);
    memcpy(lp->top_logprobs, o->top_logprobs, sizeof lp->top_logprobs);
}

/* Handles token number g (1-based) of r's output; returns its event (or
 * NULL) and sets *done (a dsa_finish + 1) when the token ends r. */
static dsa_engine_event *on_token(dsa_engine *e, dsa_engine_req *r, const dsa_step_tok *o,
                                  int32_t g, double now, int *done)
{
    dsa_engine_event *ev = dsa_engine_event_new(r);
    if (!ev) {
        *done = DSA_FINISH_ERROR + 1;
        return NULL;
    }
    int32_t tok = o->token;
    dsa_metrics *m = e->p.metrics;
    dsa_metrics_lock(m);
    m->generation_tokens++;
    if (g == 1)
        dsa_hist_observe(&m->ttft, now - r->t_arrival);
    else
        dsa_hist_observe(&m->itl, now - r->t_last);
    dsa_metrics_unlock(m);
    if (g == 1)
        r->t_first = now;
    r->t_last = now;
    ev->n_tokens = 1;
    ev->n_generated = g;
    if (r->want_logprobs && (ev->lps = calloc(1, sizeof *ev->lps))) {
        logprob_entry(o, ev->lps);
        ev->n_lps = 1;
    }
    dsa_err err = DSA_OK;
    if (r->gram && r->gram_wait_id >= 0) {
        if (tok == r->gram_wait_id)
            r->gram_wait_id = -1; /* the grammar starts at the next token */
    } else if (r->gram && (r->gram_words < 0 ||
                           dsa_gram_accept_token(r->gram, &r->gram_state, tok))) {
        ev->status = 500;
        ev->finish = "error";
        snprintf(ev->message, sizeof ev->message, "structured output: token %d does not follow "
                 "the grammar (or its matcher ran out of memory)", tok);
        *done = DSA_FINISH_ERROR + 1;
        return ev;
    }
    if (r->ctl.prompt_lps && g == 1) {
        if (r->n_plps != r->n_prompt - 1) {
            err = dsa_fail(DSA_NOMEM, "prompt logprobs: %d of %d positions", r->n_plps,
                           r->n_prompt - 1);
        } else {
            ev->plps = r->plps;
            ev->n_plps = r->n_plps;
            r->plps = NULL;
            r->n_plps = r->cap_plps = 0;
            r->plps_sent = 1;
        }
    }
    /* vLLM: EOS and stop ids end a request from min_tokens tokens on (the
     * sampler bans them before), stop strings only past min_tokens, their
     * text unsearched until then */
    int can_stop = g >= r->min_tokens;
    int eos = can_stop && tok == e->p.eos_token_id && !r->ignore_eos;
    int stop_tok = can_stop && !eos && is_stop_id(r, tok);
    /* the stop token's text is output only with include_stop_str_in_output
     * (vLLM's detokenizer drops it otherwise; EOS is a special token that
     * skip_special_tokens drops anyway) */
    if (!err && (r->include_stop || (!eos && !stop_tok))) {
        int n_stop = r->out.n_stop;
        if (g <= r->min_tokens)
            r->out.n_stop = 0;
        err = dsa_textout_feed(&r->out, tok, &ev->content, &ev->reasoning);
        r->out.n_stop = n_stop;
    }
    if (!err && r->out.stopped) {
        ev->finish = "stop";
        if (r->out.stop_index >= 0 && r->out.stop_index < r->n_stop)
            ev->stop_str = r->stop[r->out.stop_index];
    } else if (!err && stop_tok) {
        ev->finish = "stop";
        ev->has_stop_token = 1;
        ev->stop_token = tok;
    } else if (!err && eos) {
        ev->finish = "stop";
    }
    else if (!err && (g >= r->max_new || r->seq.n_prompt + g >= r->seq.n_max))
        ev->finish = "length";
    if (!err && ev->finish)
        err = dsa_textout_finish(&r->out, &ev->content, &ev->reasoning);
    if (err) {
        ev->status = 500;
        ev->finish = "error";
        snprintf(ev->message, sizeof ev->message, "detokenizing token %d: %s", tok,
                 dsa_errmsg());
    }
    if (ev->finish)
        *done = ev->status ? DSA_FINISH_ERROR + 1
                           : (ev->finish[0] == 'l' ? DSA_FINISH_LENGTH : DSA_FINISH_STOP) + 1;
    return ev;
}

/* Tokens a step sampled (with the prompt tokens it computed, the step's
 * vllm:iteration_tokens_total). */
uint64_t dsa_engine_n_sampled(const dsa_step_result *res)
{
    uint64_t n = 0;
    for (int i = 0; i < res->n_seqs; i++)
        n += res->seqs[i].token >= 0 ? 1 + (uint64_t)res->seqs[i].n_extra : 0;
    return n;
}

/* Appends b (a later token of the same request and step) to a: texts,
 * logprobs, token count and b's finish; 0 when a cannot take b (a failed
 * event stays its own, so the tokens before it are not lost with it). */
static int event_merge(dsa_engine_event *a, const dsa_engine_event *b)
{
    if (a->status || b->status || b->n_plps || (a->lps == NULL) != (b->lps == NULL))
        return 0;
    if (b->n_lps) {
        dsa_engine_lp *l = realloc(a->lps, (size_t)(a->n_lps + b->n_lps) * sizeof *l);
        if (!l)
            return 0;
        a->lps = l;
        memcpy(a->lps + a->n_lps, b->lps, (size_t)b->n_lps * sizeof *l);
        a->n_lps += b->n_lps;
    }
    if (b->content.len)
        dsa_jbuf_put(&a->content, b->content.data, b->content.len);
    if (b->reasoning.len)
        dsa_jbuf_put(&a->reasoning, b->reasoning.data, b->reasoning.len);
    if (a->content.oom || a->reasoning.oom) {
        a->status = 500;
        snprintf(a->message, sizeof a->message, "out of memory for a step's text");
        a->finish = "error";
        return 1;
    }
    a->n_tokens += b->n_tokens;
    a->n_generated = b->n_generated;
    a->finish = b->finish;
    a->has_stop_token = b->has_stop_token;
    a->stop_token = b->stop_token;
    a->stop_str = b->stop_str;
    return 1;
}

int dsa_engine_on_output(dsa_engine *e, dsa_engine_req *r, const dsa_step_out *o,
                         int32_t n_draft, double now, dsa_engine_event **head,
                         dsa_engine_event **tail)
{
    dsa_engine_event *eh = *head, *et = *tail;
    if (n_draft > 0) {
        /* vLLM's spec-decode counters: one draft of n_draft tokens */
        dsa_metrics *m = e->p.metrics;
        dsa_metrics_lock(m);
        m->spec_drafts++;
        m->spec_draft_tokens += (uint64_t)n_draft;
        m->spec_accepted_tokens += (uint64_t)o->n_extra;
        for (int32_t j = 0; j < o->n_extra && j < DSA_SPEC_TOKENS_MAX; j++)
            m->spec_accepted_per_pos[j]++;
        dsa_metrics_unlock(m);
    }
    /* the scheduler appended all of them: the first is number g0 */
    int32_t g0 = r->seq.n_generated - o->n_extra, done = 0, j;
    for (j = 0; j <= o->n_extra && !done; j++) {
        dsa_step_tok t;
        if (j == 0) {
            t = (dsa_step_tok){.token = o->token, .logprob = o->logprob, .n_top = o->n_top};
            memcpy(t.top_ids, o->top_ids, sizeof t.top_ids);
            memcpy(t.top_logprobs, o->top_logprobs, sizeof t.top_logprobs);
        } else {
            t = o->extra[j - 1];
        }
        dsa_engine_event *ev = on_token(e, r, &t, g0 + j, now, &done);
        if (ev && et && j > 0 && et->req == r && event_merge(et, ev)) {
            dsa_engine_event_free(ev);
            if (et->status) /* the merge failed the request */
                done = DSA_FINISH_ERROR + 1;
            continue;
        }
        EV_APPEND(eh, et, ev);
    }
    if (done && j <= o->n_extra) {
        /* finished inside the run: the tokens after it were never output
         * (the request is retired next; its counts go to the metrics) */
        r->seq.n_generated = g0 + j - 1;
        r->seq.n_tokens = r->seq.n_prompt + r->seq.n_generated;
    }
    *head = eh;
    *tail = et;
    return done;
}

void dsa_engine_gram_drafts(dsa_engine_req *r)
{
    dsa_sched_seq *q = &r->seq;
    if (!r->gram || q->n_draft == 0)
        return;
    int32_t j = 0;
    if (r->gram_words < 0) {
        j = 0; /* the request fails at its next token */
    } else if (r->gram_wait_id >= 0) {
        while (j < q->n_draft && q->drafts[j] != r->gram_wait_id)
            j++;
    } else {
        int32_t st = r->gram_state;
        r->gram_states[0] = st;
        /* a refused draft leaves st as it was (grammar.h) and ends the run */
        while (j < q->n_draft && dsa_gram_accept_token(r->gram, &st, q->drafts[j]) == DSA_OK)
            r->gram_states[++j] = st;
    }
    q->n_draft = j;
}
