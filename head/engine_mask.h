/* engine_mask.h - the engine's grammar-mask helper thread.  With the
 * in-process transport the forward pass of a step runs on the engine thread
 * and the grammar masks of the step's sampling rows are needed only after
 * it; this thread fills them meanwhile (issue 16: mask computation overlaps
 * the forward pass).
 *
 * Who owns what, when (the whole thread-safety argument):
 *  - dsa_engine_masker_start hands the job array, the masks the jobs point to
 *    and a reference to each job's grammar to the helper thread.  From then
 *    until dsa_engine_masker_wait returns, only the helper reads the jobs and
 *    writes the masks; the caller touches neither.
 *  - A job carries its grammar state by value: the helper never reads the
 *    request, so the engine may keep running other code (the forward pass)
 *    that does not write the masks.  Grammars are refcounted and lock their
 *    own matcher, so another request sharing the grammar may be advanced on
 *    another thread at the same time.
 *  - dsa_engine_masker_wait (any one thread at a time; the engine thread in
 *    practice, through dsa_step_plan.mask_wait) returns once the helper is
 *    done; the mutex/condition pair orders the helper's writes before the
 *    waiter's reads.  After it the caller owns jobs and masks again.
 *  - The engine calls wait itself after each step too (a step that failed
 *    before sampling never did), before it advances the grammar state or
 *    retires a request (which frees its mask). */
#ifndef DSA_HEAD_ENGINE_MASK_H
#define DSA_HEAD_ENGINE_MASK_H
#include <stdint.h>

#include "common/error.h"
#include "common/grammar.h"
#include "proto/step.h"

typedef struct dsa_engine_mask_job {
    dsa_gram *gram;     /* borrowed: the request holds a reference */
    int32_t state;      /* the grammar state after the last sampled token */
    uint32_t *mask;     /* [mask words] written by the helper */
    dsa_err err;        /* the fill's result, valid after wait */
} dsa_engine_mask_job;

typedef struct dsa_engine_masker dsa_engine_masker;

dsa_err dsa_engine_masker_create(dsa_engine_masker **out);
/* Waits for pending jobs, stops and joins the thread; NULL is a no-op. */
void dsa_engine_masker_destroy(dsa_engine_masker *f);
/* Hands jobs[0..n) to the helper (n >= 1; no batch pending). */
void dsa_engine_masker_start(dsa_engine_masker *f, dsa_engine_mask_job *jobs, int n);
/* Blocks until the batch handed by start is filled; returns at once when
 * none is pending (so calling it twice is harmless). */
void dsa_engine_masker_wait(dsa_engine_masker *f);
/* dsa_engine_masker_wait with a void * (dsa_step_plan.mask_wait). */
dsa_err dsa_engine_masker_wait_cb(void *f);

/* Fills jobs[0..n) on the calling thread (errors in each job's err). */
void dsa_engine_masks_fill(dsa_engine_mask_job *jobs, int n);
/* The order for a transport with send_masks (MPI workers): submits plan
 * with masks_later (its frame without the masks), fills the jobs on the
 * calling thread while the workers run the forward pass, then sends the
 * masks to the ranks that sample, which wait for them only when they
 * sample (dsa_step_plan.mask_wait on the worker).  Returns submit's error
 * (the plan is not in flight); once the plan is in flight a failure to
 * send the masks is the transport's, returned by its collect. */
dsa_err dsa_engine_masks_submit(dsa_transport *t, dsa_step_plan *plan,
                                dsa_engine_mask_job *jobs, int n);

#endif
