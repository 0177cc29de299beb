/* engine_req.c - the engine's side that other threads call (see engine.h):
 * requests and their references, submitting and aborting them, taking the
 * engine thread's events, and the counters and states the server reads.
 * Everything here goes through the engine's mutex or its atomics; the
 * engine thread itself is engine.c. */
#include "head/engine.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/grammar.h"
#include "common/log.h"
#include "head/engine_int.h"

double dsa_engine_wait_s(const dsa_engine *e)
{
    long long since = atomic_load(&((dsa_engine *)e)->wait_since_us);
    return since ? dsa_time_now() - (double)since / 1e6 : 0;
}

const char *dsa_engine_late(const dsa_engine *e)
{
    dsa_engine *m = (dsa_engine *)e;
    long long since = atomic_load(&m->wait_since_us);
    if (!e->p.transport->ops->ping || !since)
        return NULL;
    double late = e->p.late_s > 0 ? e->p.late_s : 5;
    if (dsa_time_now() - (double)since / 1e6 <= late)
        return NULL;
    return atomic_load(&m->wait_kind) == 1 ? "a ping's answer is late" : "a step's result is late";
}

dsa_err dsa_engine_req_create(const int32_t *prompt, int32_t n_prompt, dsa_engine_req **out)
{
    dsa_engine_req *r = calloc(1, sizeof *r);
    if (!r || !(r->prompt = malloc((size_t)(n_prompt > 0 ? n_prompt : 1) * sizeof *prompt))) {
        free(r);
        return dsa_fail(DSA_NOMEM, "request");
    }
    memcpy(r->prompt, prompt, (size_t)n_prompt * sizeof *prompt);
    r->n_prompt = n_prompt;
    r->reasoning_flags = -1;
    r->gram_wait_id = -1;
    atomic_init(&r->refs, 1);
    atomic_init(&r->aborted, 0);
    *out = r;
    return DSA_OK;
}

void dsa_engine_req_release(dsa_engine_req *r)
{
    if (!r || atomic_fetch_sub(&r->refs, 1) != 1)
        return;
    free(r->prompt);
    dsa_gram_destroy(r->gram);
    free(r->gram_mask);
    free(r->banned);
    free(r->plps);
    free(r);
}

void dsa_engine_req_ref(dsa_engine_req *r)
{
    atomic_fetch_add(&r->refs, 1);
}

void dsa_engine_submit(dsa_engine *e, dsa_engine_req *r)
{
    dsa_engine_req_ref(r);
    atomic_fetch_add(&e->n_waiting, 1);
    atomic_fetch_add(&e->n_active, 1);
    pthread_mutex_lock(&e->mu);
    r->next_new = NULL;
    if (e->new_tail)
        e->new_tail->next_new = r;
    else
        e->new_head = r;
    e->new_tail = r;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

void dsa_engine_abort(dsa_engine *e, dsa_engine_req *r)
{
    atomic_store(&r->aborted, 1);
    abort_node *n = malloc(sizeof *n);
    pthread_mutex_lock(&e->mu);
    if (n) {
        /* the node carries the caller's reference to the engine thread */
        n->req = r;
        n->next = e->aborts;
        e->aborts = n;
        pthread_cond_signal(&e->cv);
        r = NULL;
    }
    pthread_mutex_unlock(&e->mu);
    /* without a node the engine still sees `aborted` at its next step */
    dsa_engine_req_release(r);
}

dsa_engine_event *dsa_engine_poll(dsa_engine *e)
{
    pthread_mutex_lock(&e->mu);
    dsa_engine_event *ev = e->ev_head;
    e->ev_head = e->ev_tail = NULL;
    pthread_mutex_unlock(&e->mu);
    return ev;
}

void dsa_engine_event_free(dsa_engine_event *ev)
{
    if (!ev)
        return;
    dsa_engine_req_release(ev->req);
    dsa_jbuf_deinit(&ev->content);
    dsa_jbuf_deinit(&ev->reasoning);
    free(ev->lps);
    free(ev->plps);
    free(ev);
}

int64_t dsa_engine_n_waiting(const dsa_engine *e)
{
    return atomic_load(&((dsa_engine *)e)->n_waiting);
}

int64_t dsa_engine_n_active(const dsa_engine *e)
{
    return atomic_load(&((dsa_engine *)e)->n_active);
}

const char *dsa_engine_fatal(const dsa_engine *e)
{
    return atomic_load(&((dsa_engine *)e)->fatal) ? e->fatal_msg : NULL;
}
