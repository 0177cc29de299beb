/* engine_int.h - the engine's state, shared by engine.c (the thread,
 * scheduling, steps) and engine_out.c (what a step's result does to its
 * requests: tokens, events, speculative-decoding counts).  Internal to
 * head/. */
#ifndef DSA_HEAD_ENGINE_INT_H
#define DSA_HEAD_ENGINE_INT_H

#include <pthread.h>

#include "head/engine.h"
#include "head/engine_mask.h"

typedef struct abort_node {
    struct abort_node *next;
    dsa_engine_req *req;
} abort_node;

struct dsa_engine {
    dsa_engine_params p;
    dsa_sched sched;
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    dsa_engine_req *new_head, *new_tail;  /* submitted, guarded by mu */
    abort_node *aborts;                    /* guarded by mu */
    dsa_engine_event *ev_head, *ev_tail;   /* ready for the loop, guarded by mu */
    atomic_llong n_waiting, n_active;
    uint64_t next_seq_id;
    /* pipelining (max_in_flight 2): a FIFO of submitted batches */
    int max_in_flight;
    dsa_sched_batch fl[2];
    int fl_n[2];
    uint64_t fl_prompt[2];
    int fl_head, fl_len;
    atomic_int fatal;
    char fatal_msg[256];
    /* dsa_time_now() * 1e6 when the engine began waiting on the workers
     * (a step or a ping), 0 when not waiting; 1 for a ping, 2 for a step */
    atomic_llong wait_since_us;
    atomic_int wait_kind;
    double last_contact;        /* engine thread: the workers last answered */
    /* grammar masks filled during the forward pass (engine_mask.h): NULL
     * when masks are filled before the step (mask_sync) or by the engine
     * thread after the plan is sent (late_masks); jobs[0..n_jobs) and
     * job_reqs belong to the filler from start until wait */
    dsa_engine_masker *filler;
    /* MPI workers (a transport with send_masks): the plan is sent first and
     * the jobs are filled on the engine thread during the forward pass */
    int late_masks;
    dsa_engine_mask_job *jobs;
    dsa_engine_req **job_reqs;
    int n_jobs, cap_jobs;
    atomic_llong n_masks_overlapped;
};

#define EV_APPEND(head, tail, ev)      \
    do {                               \
        if (ev) {                      \
            if (tail)                  \
                (tail)->next = (ev);   \
            else                       \
                (head) = (ev);         \
            (tail) = (ev);             \
        }                              \
    } while (0)


/* A new event of r holding a reference to it (NULL: no memory). */
dsa_engine_event *dsa_engine_event_new(dsa_engine_req *r);
void dsa_engine_req_ref(dsa_engine_req *r);

/* Generated tokens the result counts (vllm:iteration_tokens_total). */
uint64_t dsa_engine_n_sampled(const dsa_step_result *res);
/* Turns r's step output o (a plan row with n_draft drafts) into events
 * appended to the list (head, tail), after the scheduler committed it; returns 0,
 * or a dsa_finish + 1 when a token ends r (the caller retires it). */
int dsa_engine_on_output(dsa_engine *e, dsa_engine_req *r, const dsa_step_out *o,
                         int32_t n_draft, double now, dsa_engine_event **head,
                         dsa_engine_event **tail);

/* After r's step output: cuts r's new drafts at the first one its grammar
 * refuses (during the reasoning wait, at the reasoning's end token: the
 * grammar applies after it) and records the grammar states the next
 * step's masks start from (r->gram_states).  The MTP drafts unmasked; a
 * draft the grammar refuses would be rejected anyway. */
void dsa_engine_gram_drafts(dsa_engine_req *r);

#endif

