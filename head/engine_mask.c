/* engine_mask.c - the engine's grammar-mask helper thread (engine_mask.h
 * has the ownership rules).  One batch at a time: start publishes it under
 * the mutex and signals; the thread fills every job, clears `pending` under
 * the mutex and signals back. */
#include "head/engine_mask.h"

#include <pthread.h>
#include <stdlib.h>

#include "common/log.h"

struct dsa_engine_masker {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* guarded by mu */
    dsa_engine_mask_job *jobs;
    int n_jobs;
    int pending;        /* a batch is handed over and not yet filled */
    int stop;
};

static void *filler_main(void *arg)
{
    dsa_engine_masker *f = arg;
    pthread_mutex_lock(&f->mu);
    for (;;) {
        while (!f->stop && !(f->pending && f->jobs))
            pthread_cond_wait(&f->cv, &f->mu);
        if (f->stop)
            break;
        dsa_engine_mask_job *jobs = f->jobs;
        int n = f->n_jobs;
        pthread_mutex_unlock(&f->mu);
        /* the jobs and their masks are this thread's until pending clears */
        dsa_engine_masks_fill(jobs, n);
        pthread_mutex_lock(&f->mu);
        f->jobs = NULL;
        f->pending = 0;
        pthread_cond_broadcast(&f->cv);
    }
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

dsa_err dsa_engine_masker_create(dsa_engine_masker **out)
{
    dsa_engine_masker *f = calloc(1, sizeof *f);
    if (!f)
        return dsa_fail(DSA_NOMEM, "mask filler");
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    if (pthread_create(&f->thread, NULL, filler_main, f)) {
        pthread_mutex_destroy(&f->mu);
        pthread_cond_destroy(&f->cv);
        free(f);
        return dsa_fail(DSA_INTERNAL, "cannot start the grammar mask thread");
    }
    *out = f;
    return DSA_OK;
}

void dsa_engine_masker_destroy(dsa_engine_masker *f)
{
    if (!f)
        return;
    dsa_engine_masker_wait(f);
    pthread_mutex_lock(&f->mu);
    f->stop = 1;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    pthread_join(f->thread, NULL);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
    free(f);
}

void dsa_engine_masker_start(dsa_engine_masker *f, dsa_engine_mask_job *jobs, int n)
{
    pthread_mutex_lock(&f->mu);
    f->jobs = jobs;
    f->n_jobs = n;
    f->pending = 1;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

void dsa_engine_masker_wait(dsa_engine_masker *f)
{
    pthread_mutex_lock(&f->mu);
    while (f->pending)
        pthread_cond_wait(&f->cv, &f->mu);
    pthread_mutex_unlock(&f->mu);
}

dsa_err dsa_engine_masker_wait_cb(void *f)
{
    dsa_engine_masker_wait(f);
    return DSA_OK;
}

void dsa_engine_masks_fill(dsa_engine_mask_job *jobs, int n)
{
    for (int i = 0; i < n; i++) {
        jobs[i].err = dsa_gram_fill_mask(jobs[i].gram, jobs[i].state, jobs[i].mask);
        if (jobs[i].err)
            DSA_ERROR("structured output: %s", dsa_errmsg());
    }
}

dsa_err dsa_engine_masks_submit(dsa_transport *t, dsa_step_plan *plan,
                                dsa_engine_mask_job *jobs, int n)
{
    plan->masks_later = 1;
    dsa_err err = t->ops->submit(t, plan);
    if (!err) {
        /* the workers run the forward pass meanwhile */
        dsa_engine_masks_fill(jobs, n);
        if (t->ops->send_masks(t, plan))
            DSA_ERROR("step %llu: %s", (unsigned long long)plan->step_id, dsa_errmsg());
    }
    plan->masks_later = 0;
    return err;
}
