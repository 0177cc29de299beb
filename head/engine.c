/* engine.c - the engine thread (see engine.h). */
#include "head/engine.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/grammar.h"
#include "common/log.h"
#include "head/engine_int.h"
#include "head/engine_mask.h"

static void wait_begin(dsa_engine *e, int kind)
{
    atomic_store(&e->wait_kind, kind);
    atomic_store(&e->wait_since_us, (long long)(dsa_time_now() * 1e6));
}

static void wait_end(dsa_engine *e)
{
    atomic_store(&e->wait_since_us, 0);
    e->last_contact = dsa_time_now();
}

/* ---- engine thread ------------------------------------------------------ */

dsa_engine_event *dsa_engine_event_new(dsa_engine_req *r)
{
    dsa_engine_event *ev = calloc(1, sizeof *ev);
    if (!ev)
        return NULL;
    dsa_engine_req_ref(r);
    ev->req = r;
    ev->n_prompt = r->n_prompt;
    ev->n_generated = r->seq.n_generated;
    return ev;
}

static void events_push(dsa_engine *e, dsa_engine_event *head, dsa_engine_event *tail)
{
    if (!head)
        return;
    if (e->stop && !e->started) {
        /* destroying: nobody will poll */
        while (head) {
            dsa_engine_event *next = head->next;
            dsa_engine_event_free(head);
            head = next;
        }
        return;
    }
    pthread_mutex_lock(&e->mu);
    if (e->ev_tail)
        e->ev_tail->next = head;
    else
        e->ev_head = head;
    e->ev_tail = tail;
    pthread_mutex_unlock(&e->mu);
    e->p.notify(e->p.notify_user);
}

/* Takes a request out of the engine: scheduler, text state, reference. */
static void req_retire(dsa_engine *e, dsa_engine_req *r, dsa_finish why)
{
    if (r->t_scheduled == 0) /* never planned (a preempted one no longer counts) */
        atomic_fetch_sub(&e->n_waiting, 1);
    if (r->in_sched) {
        dsa_sched_remove(&e->sched, &r->seq);
        dsa_sched_seq_deinit(&r->seq);
        dsa_textout_deinit(&r->out);
        r->in_sched = 0;
    }
    double now = dsa_time_now();
    dsa_metrics *m = e->p.metrics;
    dsa_metrics_lock(m);
    m->success[why]++;
    if (why != DSA_FINISH_ERROR) {
        dsa_hist_observe(&m->e2e, now - r->t_arrival);
        dsa_hist_observe(&m->n_prompt, r->n_prompt);
        dsa_hist_observe(&m->n_generation, r->seq.n_generated);
        if (r->t_first > 0) {
            dsa_hist_observe(&m->prefill, r->t_first - r->t_scheduled);
            dsa_hist_observe(&m->decode, r->t_last - r->t_first);
            dsa_hist_observe(&m->inference, r->t_last - r->t_scheduled);
            /* vLLM's mean time per output token: the first is not counted */
            int32_t n_decoded = r->seq.n_generated - 1;
            dsa_hist_observe(&m->tpot, n_decoded > 0 ? (r->t_last - r->t_first) / n_decoded : 0);
        }
    }
    dsa_metrics_unlock(m);
    atomic_fetch_sub(&e->n_active, 1);
    dsa_engine_req_release(r);
}

static dsa_engine_event *fail_event(dsa_engine_req *r, int status, const char *msg)
{
    dsa_engine_event *ev = dsa_engine_event_new(r);
    if (ev) {
        ev->status = status;
        ev->finish = "error";
        /* cut to the event's fixed field */
        size_t n = strnlen(msg, sizeof ev->message - 1);
        memcpy(ev->message, msg, n);
        ev->message[n] = '\0';
    }
    return ev;
}

/* The min_tokens bans: EOS (unless ignore_eos) and the stop ids inside
 * the vocabulary, while fewer than min_tokens tokens are generated. */
static dsa_err ctl_setup(dsa_engine *e, dsa_engine_req *r)
{
    int64_t V = e->p.transport->info.vocab_size;
    r->ctl.min_tokens = r->min_tokens;
    r->ctl.n_banned = 0;
    if (r->min_tokens <= 0)
        return DSA_OK;
    free(r->banned);
    if (!(r->banned = malloc((size_t)(r->n_stop_ids + 1) * sizeof *r->banned)))
        return dsa_fail(DSA_NOMEM, "min_tokens bans");
    int32_t n = 0;
    if (!r->ignore_eos && e->p.eos_token_id >= 0 && e->p.eos_token_id < V)
        r->banned[n++] = e->p.eos_token_id;
    for (int i = 0; i < r->n_stop_ids; i++)
        if (r->stop_ids[i] >= 0 && r->stop_ids[i] < V)
            r->banned[n++] = r->stop_ids[i];
    r->ctl.banned = r->banned;
    r->ctl.n_banned = n;
    return DSA_OK;
}

/* Keeps the step's prompt logprob entries not seen yet (a recomputed
 * prompt after preemption reports them again). */
static void plps_take(dsa_engine_req *r, const dsa_step_out *o)
{
    if (r->plps_sent)
        return;
    for (int32_t k = 0; k < o->n_prompt_lps; k++) {
        if (o->prompt_lps[k].pos != r->n_plps + 1)
            continue;
        if (r->n_plps == r->cap_plps) {
            int32_t cap = r->cap_plps ? r->cap_plps * 2 : 64;
            dsa_prompt_lp *n = realloc(r->plps, (size_t)cap * sizeof *n);
            if (!n)
                return; /* the response then lacks them: on_token fails it */
            r->plps = n;
            r->cap_plps = cap;
        }
        r->plps[r->n_plps++] = o->prompt_lps[k];
    }
}

/* Drafts for r; a grammar's request gets room for one mask per verified
 * position (dsa_engine_gram_drafts cuts its drafts to the grammar). */
static dsa_err spec_setup(dsa_engine *e, dsa_engine_req *r)
{
    r->seq.spec_k = e->p.spec_k;
    if (!r->gram || r->gram_words <= 0 || e->p.spec_k == 0)
        return DSA_OK;
    uint32_t *m = realloc(r->gram_mask, (size_t)(1 + e->p.spec_k) * (size_t)r->gram_words *
                                            sizeof *m);
    if (!m)
        return dsa_fail(DSA_NOMEM, "grammar masks for the drafts");
    r->gram_mask = m;
    return DSA_OK;
}

/* Moves submitted requests into the scheduler and applies aborts.  Called
 * with e->mu held; the lists are detached first. */
static void take_inputs(dsa_engine *e, dsa_engine_req *news, abort_node *aborts)
{
    dsa_engine_event *eh = NULL, *et = NULL;
    for (dsa_engine_req *r = news, *next; r; r = next) {
        next = r->next_new;
        r->seq.state = DSA_SEQ_NEW;
        if (atomic_load(&r->aborted)) {
            req_retire(e, r, DSA_FINISH_ABORT);
            continue;
        }
        if (atomic_load(&e->fatal)) {
            char msg[sizeof e->fatal_msg + 64];
            snprintf(msg, sizeof msg, "the workers failed: %.200s", e->fatal_msg);
            dsa_engine_event *ev = fail_event(r, 503, msg);
            EV_APPEND(eh, et, ev);
            req_retire(e, r, DSA_FINISH_ERROR);
            continue;
        }
        dsa_err err = ctl_setup(e, r);
        if (!err)
            err = dsa_sched_seq_init(&r->seq, ++e->next_seq_id, r->prompt, r->n_prompt,
                                     r->max_new, &r->sp);
        if (!err)
            err = spec_setup(e, r);
        if (!err && (err = dsa_sched_add(&e->sched, &r->seq)))
            dsa_sched_seq_deinit(&r->seq);
        if (err) {
            dsa_engine_event *ev = fail_event(r, err == DSA_RANGE ? 400 : 500, dsa_errmsg());
            EV_APPEND(eh, et, ev);
            r->seq.state = DSA_SEQ_NEW;
            req_retire(e, r, DSA_FINISH_ERROR);
            continue;
        }
        r->seq.user = r;
        r->seq.ctl = &r->ctl;
        r->in_sched = 1;
        dsa_textout_init(&r->out, e->p.tok, r->skip_special, r->stop, r->n_stop,
                         r->reasoning_flags);
        r->out.include_stop = r->include_stop;
    }
    for (abort_node *a = aborts, *next; a; a = next) {
        next = a->next;
        dsa_engine_req *r = a->req;
        /* a sequence in a submitted batch is retired at that batch's
         * commit (it sees `aborted`) */
        if (r->in_sched && !r->seq.in_flight)
            req_retire(e, r, DSA_FINISH_ABORT);
        dsa_engine_req_release(r); /* the loop's reference */
        free(a);
    }
    events_push(e, eh, et);
}

/* Timing of the requests just scheduled; returns the prompt tokens the
 * plan computes (prefix-cache hits excluded). */
static uint64_t note_scheduled(dsa_engine *e, dsa_sched_batch *b, int n)
{
    double now = dsa_time_now();
    for (int i = 0; i < n; i++) {
        dsa_engine_req *r = b->planned[i]->user;
        if (r->t_scheduled == 0) {
            r->t_scheduled = now;
            atomic_fetch_sub(&e->n_waiting, 1);
            dsa_metrics_lock(e->p.metrics);
            dsa_hist_observe(&e->p.metrics->queue, now - r->t_arrival);
            dsa_metrics_unlock(e->p.metrics);
        }
    }
    e->n_jobs = 0;
    for (int i = 0; i < n; i++) { /* grammar masks of the rows that sample */
        dsa_engine_req *r = b->planned[i]->user;
        dsa_step_seq *q = &b->plan.seqs[i];
        if (!r->gram || !q->sample || r->gram_words <= 0 || r->gram_wait_id >= 0)
            continue;
        /* one mask per verified position: the states before each draft */
        int32_t n_pos = 1 + q->n_draft;
        r->gram_states[0] = r->gram_state;
        q->mask = r->gram_mask;
        q->n_mask = r->gram_words;
        if (((e->filler && b == &e->sched.batch) || e->late_masks) &&
            e->n_jobs + n_pos <= e->cap_jobs) {
            /* filled during the forward pass (run_step, run_pipelined) */
            for (int32_t j = 0; j < n_pos; j++) {
                e->jobs[e->n_jobs] = (dsa_engine_mask_job){
                    .gram = r->gram, .state = r->gram_states[j],
                    .mask = r->gram_mask + (size_t)j * (size_t)r->gram_words};
                e->job_reqs[e->n_jobs++] = r;
            }
            continue;
        }
        for (int32_t j = 0; j < n_pos; j++) {
            if (dsa_gram_fill_mask(r->gram, r->gram_states[j],
                                   r->gram_mask + (size_t)j * (size_t)r->gram_words)) {
                DSA_ERROR("structured output: %s", dsa_errmsg());
                r->gram_words = -1; /* on_token fails the request */
                q->mask = NULL;
                q->n_mask = 0;
                break;
            }
        }
    }
    uint64_t prompt_tokens = 0;
    for (int i = 0; i < n; i++) {
        const dsa_step_seq *q = &b->plan.seqs[i];
        int32_t end = q->pos + q->n_tokens < q->n_prompt ? q->pos + q->n_tokens : q->n_prompt;
        if (end > q->pos)
            prompt_tokens += (uint64_t)(end - q->pos);
    }
    return prompt_tokens;
}

static void batch_commit(dsa_engine *e, dsa_sched_batch *b, const dsa_step_result *r)
{
    if (b == &e->sched.batch)
        dsa_sched_commit(&e->sched, r);
    else
        dsa_sched_commit_batch(&e->sched, b, r);
}

/* Fails everything the scheduler holds with `status` (no event for the
 * aborted). */
static void fail_all(dsa_engine *e, int status, const char *msg)
{
    dsa_engine_event *eh = NULL, *et = NULL;
    dsa_sched_seq *q;
    while ((q = e->sched.running.head) || (q = e->sched.waiting.head)) {
        dsa_engine_req *r = q->user;
        if (!atomic_load(&r->aborted)) {
            dsa_engine_event *ev = fail_event(r, status, msg);
            EV_APPEND(eh, et, ev);
        }
        req_retire(e, r, atomic_load(&r->aborted) ? DSA_FINISH_ABORT : DSA_FINISH_ERROR);
    }
    events_push(e, eh, et);
}

/* A transport error with transport_errors_fatal: the workers are out of
 * step.  Batches still submitted are dropped, every request fails with
 * 503, and the engine stops stepping (dsa_engine_fatal tells the owner). */
static void engine_fatal(dsa_engine *e, const char *msg)
{
    snprintf(e->fatal_msg, sizeof e->fatal_msg, "%s", msg);
    atomic_store(&e->fatal, 1);
    DSA_ERROR("transport failed, the head stops serving: %s", msg);
    while (e->fl_len) {
        dsa_sched_commit_batch(&e->sched, &e->fl[e->fl_head], NULL);
        e->fl_head = (e->fl_head + 1) % 2;
        e->fl_len--;
    }
    char m[sizeof e->fatal_msg + 64];
    snprintf(m, sizeof m, "the workers failed: %.200s", msg);
    fail_all(e, 503, m);
    if (e->p.notify)
        e->p.notify(e->p.notify_user); /* even with no request to fail */
}

/* After b's step (err: the transport failed; else res is the result):
 * commit, events, retirements.  b is no longer in flight. */
static void finish_step(dsa_engine *e, dsa_sched_batch *b, int n, dsa_err err,
                        dsa_step_result *res, uint64_t prompt_tokens)
{
    dsa_engine_event *eh = NULL, *et = NULL;
    if (err || res->status) {
        char msg[sizeof ((dsa_engine_event *)0)->message];
        snprintf(msg, sizeof msg, "step %llu failed: %.200s",
                 (unsigned long long)b->plan.step_id, err ? dsa_errmsg() : res->message);
        if (err && e->p.transport_errors_fatal) {
            batch_commit(e, b, NULL);
            engine_fatal(e, msg);
            return;
        }
        DSA_ERROR("%s", msg);
        dsa_engine_req *failed[n > 0 ? n : 1];
        for (int i = 0; i < n; i++)
            failed[i] = b->planned[i]->user;
        batch_commit(e, b, NULL);
        for (int i = 0; i < n; i++) {
            dsa_engine_event *ev = fail_event(failed[i], 500, msg);
            EV_APPEND(eh, et, ev);
            req_retire(e, failed[i], DSA_FINISH_ERROR);
        }
        if (!err)
            dsa_step_result_free(res);
        events_push(e, eh, et);
        return;
    }
    uint64_t step_tokens = prompt_tokens + dsa_engine_n_sampled(res);
    dsa_metrics_lock(e->p.metrics);
    e->p.metrics->prompt_tokens += prompt_tokens;
    if (step_tokens > 0)
        dsa_hist_observe(&e->p.metrics->iteration_tokens, (double)step_tokens);
    dsa_metrics_unlock(e->p.metrics);
    dsa_engine_req *planned[n > 0 ? n : 1];
    for (int i = 0; i < n; i++)
        planned[i] = b->planned[i]->user;
    batch_commit(e, b, res);
    double now = dsa_time_now();
    for (int i = 0; i < n; i++) {
        dsa_engine_req *r = planned[i];
        if (atomic_load(&r->aborted)) {
            /* its abort may still be queued: it only drops the reference */
            if (r->in_sched)
                req_retire(e, r, DSA_FINISH_ABORT);
            continue;
        }
        if (i < res->n_seqs && r->ctl.prompt_lps)
            plps_take(r, &res->seqs[i]);
        if (i >= res->n_seqs || res->seqs[i].token < 0)
            continue;
        int done = dsa_engine_on_output(e, r, &res->seqs[i], b->plan.seqs[i].n_draft, now,
                                        &eh, &et);
        if (done)
            req_retire(e, r, (dsa_finish)(done - 1));
        else
            dsa_engine_gram_drafts(r);
    }
    dsa_step_result_free(res);
    events_push(e, eh, et);
}

/* One batch at a time: schedule, step, commit. */
static void run_step(dsa_engine *e)
{
    dsa_sched *s = &e->sched;
    int n = dsa_sched_schedule(s);
    if (n == 0 && s->plan.n_finished == 0)
        return;
    uint64_t prompt_tokens = note_scheduled(e, &s->batch, n);
    if (e->n_jobs && e->filler) {
        /* the in-process worker waits for the masks after its forward pass */
        dsa_engine_masker_start(e->filler, e->jobs, e->n_jobs);
        s->plan.mask_wait = dsa_engine_masker_wait_cb;
        s->plan.mask_user = e->filler;
    }
    dsa_step_result res;
    wait_begin(e, 2);
    dsa_transport *t = e->p.transport;
    dsa_err err = !e->n_jobs || e->filler ? t->ops->step(t, &s->plan, &res)
                  : dsa_engine_masks_submit(t, &s->plan, e->jobs, e->n_jobs);
    if (!err && e->n_jobs && !e->filler)
        err = t->ops->collect(t, &res);
    wait_end(e);
    if (e->n_jobs) {
        /* the masks are ours again before any state advances or any
         * request (and its mask) is retired */
        if (e->filler)
            dsa_engine_masker_wait(e->filler);
        s->plan.mask_wait = NULL;
        s->plan.mask_user = NULL;
        for (int i = 0; i < e->n_jobs; i++)
            if (e->jobs[i].err)
                e->job_reqs[i]->gram_words = -1; /* on_token fails the request */
        atomic_fetch_add(&e->n_masks_overlapped, e->n_jobs);
        e->n_jobs = 0;
    }
    finish_step(e, &s->batch, n, err, &res, prompt_tokens);
}

/* Pipelined: fill the FIFO up to max_in_flight batches of disjoint
 * requests, then collect and commit the oldest. */
static void run_pipelined(dsa_engine *e)
{
    dsa_sched *s = &e->sched;
    dsa_transport *t = e->p.transport;
    while (e->fl_len < e->max_in_flight) {
        int slot = (e->fl_head + e->fl_len) % 2;
        dsa_sched_batch *b = &e->fl[slot];
        /* both slots free: this batch takes half of the sequences, the
         * next one the rest; afterwards each takes what is not in flight */
        int avail = s->running.n + s->waiting.n;
        b->limit = e->fl_len == 0 && avail > 1 ? (avail + 1) / 2 : 0;
        int n = dsa_sched_schedule_batch(s, b);
        if (n == 0 && b->plan.n_finished == 0)
            break;
        e->fl_prompt[slot] = note_scheduled(e, b, n);
        e->fl_n[slot] = n;
        dsa_err err = e->n_jobs ? dsa_engine_masks_submit(t, &b->plan, e->jobs, e->n_jobs)
                                : t->ops->submit(t, &b->plan);
        for (int i = 0; i < e->n_jobs; i++)
            if (e->jobs[i].err)
                e->job_reqs[i]->gram_words = -1; /* on_token fails the request */
        atomic_fetch_add(&e->n_masks_overlapped, err ? 0 : e->n_jobs);
        e->n_jobs = 0;
        if (err) {
            finish_step(e, b, n, err, NULL, 0);
            if (atomic_load(&e->fatal))
                return;
            continue;
        }
        e->fl_len++;
    }
    if (!e->fl_len)
        return;
    int slot = e->fl_head;
    e->fl_head = (e->fl_head + 1) % 2;
    e->fl_len--;
    dsa_step_result res;
    wait_begin(e, 2);
    dsa_err err = t->ops->collect(t, &res);
    wait_end(e);
    finish_step(e, &e->fl[slot], e->fl_n[slot], err, &res, e->fl_prompt[slot]);
}

/* Stopping: the batches still submitted come back (results dropped). */
static void drain_flights(dsa_engine *e)
{
    while (e->fl_len) {
        dsa_sched_batch *b = &e->fl[e->fl_head];
        dsa_step_result res;
        if (!atomic_load(&e->fatal) && e->p.transport->ops->collect(e->p.transport, &res) == DSA_OK)
            dsa_step_result_free(&res);
        dsa_sched_commit_batch(&e->sched, b, NULL);
        e->fl_head = (e->fl_head + 1) % 2;
        e->fl_len--;
    }
}

/* Idle with a transport that pings: one ping, bounded by the transport's
 * own timeout; its failure is a transport failure. */
static void idle_ping(dsa_engine *e)
{
    wait_begin(e, 1);
    dsa_err err = e->p.transport->ops->ping(e->p.transport);
    wait_end(e);
    if (err) {
        char msg[300];
        snprintf(msg, sizeof msg, "ping: %.200s", dsa_errmsg());
        if (e->p.transport_errors_fatal)
            engine_fatal(e, msg);
        else
            DSA_ERROR("%s", msg);
    }
}

static int engine_idle(dsa_engine *e)
{
    return !e->stop && !e->new_head && !e->aborts &&
           (atomic_load(&e->fatal) || (!e->sched.running.n && !e->sched.waiting.n &&
                                       !e->sched.n_finished && !e->fl_len));
}

static void *engine_main(void *arg)
{
    dsa_engine *e = arg;
    int pings = e->p.transport->ops->ping != NULL;
    double interval = e->p.ping_interval_s > 0 ? e->p.ping_interval_s : 1;
    e->last_contact = dsa_time_now();
    for (;;) {
        pthread_mutex_lock(&e->mu);
        int ping_now = 0;
        while (engine_idle(e)) {
            if (!pings || atomic_load(&e->fatal)) {
                pthread_cond_wait(&e->cv, &e->mu);
                continue;
            }
            /* idle: wake up for the next ping (the workers' silence while
             * idle must be seen too) */
            double due = e->last_contact + interval, now = dsa_time_now();
            if (now >= due) {
                ping_now = 1;
                break;
            }
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            double wait = due - now;
            ts.tv_sec += (time_t)wait;
            ts.tv_nsec += (long)((wait - (double)(time_t)wait) * 1e9);
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&e->cv, &e->mu, &ts);
        }
        if (ping_now) {
            pthread_mutex_unlock(&e->mu);
            idle_ping(e);
            continue;
        }
        dsa_engine_req *news = e->new_head;
        abort_node *aborts = e->aborts;
        e->new_head = e->new_tail = NULL;
        e->aborts = NULL;
        int stop = e->stop;
        pthread_mutex_unlock(&e->mu);
        take_inputs(e, news, aborts);
        if (stop)
            break;
        if (atomic_load(&e->fatal))
            continue;
        if (e->max_in_flight > 1)
            run_pipelined(e);
        else
            run_step(e);
        dsa_metrics_lock(e->p.metrics);
        e->p.metrics->running = e->sched.running.n;
        e->p.metrics->waiting = dsa_engine_n_waiting(e);
        e->p.metrics->kv_usage = dsa_sched_kv_usage(&e->sched);
        e->p.metrics->prefix_cache_queries = e->sched.st.prefix_queries;
        e->p.metrics->prefix_cache_hits = e->sched.st.prefix_hits;
        e->p.metrics->preemptions = e->sched.st.preemptions;
        dsa_metrics_unlock(e->p.metrics);
    }
    /* stopping: everything still inside is retired without events */
    drain_flights(e);
    dsa_sched_seq *q;
    while ((q = e->sched.running.head) || (q = e->sched.waiting.head))
        req_retire(e, q->user, DSA_FINISH_ABORT);
    return NULL;
}

dsa_err dsa_engine_create(const dsa_engine_params *p, dsa_engine **out)
{
    dsa_engine *e = calloc(1, sizeof *e);
    if (!e)
        return dsa_fail(DSA_NOMEM, "engine");
    e->p = *p;
    const dsa_worker_info *wi = &p->transport->info;
    double frac = p->kv_fraction > 0 && p->kv_fraction < 1 ? p->kv_fraction : 1;
    int64_t n_blocks = (int64_t)((double)wi->n_blocks * frac);
    dsa_sched_params sp = {.n_blocks = n_blocks > 0 ? n_blocks : 1,
                           .block_size = wi->block_size,
                           .max_num_seqs = p->max_num_seqs,
                           .max_num_batched_tokens = p->max_num_batched_tokens,
                           .disable_prefix_caching = p->disable_prefix_caching,
                           .hash_seed = dsa_blocks_seed(p->metrics->model_name)};
    if (p->spec_k < 0 || p->spec_k > DSA_SPEC_TOKENS_MAX) {
        free(e);
        return dsa_fail(DSA_INVAL, "num_speculative_tokens %d outside 0..%d", p->spec_k,
                        DSA_SPEC_TOKENS_MAX);
    }
    dsa_err err = dsa_sched_init(&e->sched, &sp);
    if (err) {
        free(e);
        return err;
    }
    dsa_metrics_lock(p->metrics);
    p->metrics->spec_k = p->spec_k;
    dsa_metrics_unlock(p->metrics);
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    e->max_in_flight = p->max_in_flight == 2 && p->transport->ops->submit &&
                               p->transport->ops->collect
                           ? 2
                           : 1;
    atomic_init(&e->fatal, 0);
    atomic_init(&e->wait_since_us, 0);
    atomic_init(&e->wait_kind, 0);
    atomic_init(&e->n_waiting, 0);
    atomic_init(&e->n_active, 0);
    atomic_init(&e->n_masks_overlapped, 0);
    /* masks overlap the forward pass: where the step runs on this process's
     * memory one batch at a time, on the helper thread; with MPI workers
     * on the engine thread, between sending the plan and its masks */
    e->late_masks = !p->mask_sync && p->transport->ops->send_masks &&
                    p->transport->ops->submit && p->transport->ops->collect;
    if (e->late_masks ||
        (!p->mask_sync && p->transport->ops->shares_plan && e->max_in_flight == 1)) {
        /* one job per verified position of each sequence */
        e->cap_jobs = (p->max_num_seqs > 0 ? (int)p->max_num_seqs : 256) * (1 + p->spec_k);
        if (!(e->jobs = calloc((size_t)e->cap_jobs, sizeof *e->jobs)) ||
            !(e->job_reqs = calloc((size_t)e->cap_jobs, sizeof *e->job_reqs)) ||
            (!e->late_masks && dsa_engine_masker_create(&e->filler))) {
            free(e->jobs);
            free(e->job_reqs);
            dsa_sched_deinit(&e->sched);
            pthread_mutex_destroy(&e->mu);
            pthread_cond_destroy(&e->cv);
            free(e);
            return dsa_fail(DSA_NOMEM, "grammar mask thread");
        }
    }
    if (pthread_create(&e->thread, NULL, engine_main, e)) {
        dsa_engine_destroy(e);
        return dsa_fail(DSA_INTERNAL, "cannot start the engine thread");
    }
    e->started = 1;
    *out = e;
    return DSA_OK;
}

void dsa_engine_destroy(dsa_engine *e)
{
    if (!e)
        return;
    if (e->started) {
        pthread_mutex_lock(&e->mu);
        e->stop = 1;
        pthread_cond_signal(&e->cv);
        pthread_mutex_unlock(&e->mu);
        pthread_join(e->thread, NULL);
        e->started = 0;
    }
    e->stop = 1;
    /* anything submitted or aborted after the thread's last look */
    take_inputs(e, e->new_head, e->aborts);
    drain_flights(e);
    dsa_sched_seq *q;
    while ((q = e->sched.running.head) || (q = e->sched.waiting.head))
        req_retire(e, q->user, DSA_FINISH_ABORT);
    dsa_engine_event *ev = e->ev_head;
    while (ev) {
        dsa_engine_event *next = ev->next;
        dsa_engine_event_free(ev);
        ev = next;
    }
    dsa_sched_deinit(&e->sched);
    for (int i = 0; i < 2; i++) {
        free(e->fl[i].plan.seqs);
        free(e->fl[i].planned);
        free(e->fl[i].finished);
    }
    dsa_engine_masker_destroy(e->filler);
    free(e->jobs);
    free(e->job_reqs);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e);
}

int64_t dsa_engine_n_masks_overlapped(const dsa_engine *e)
{
    return atomic_load(&((dsa_engine *)e)->n_masks_overlapped);
}
