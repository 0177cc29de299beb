/* threadpool.h - a fixed pool of worker threads for the CPU backend.
 *
 * dsa_threadpool_run() runs one function on every thread of the pool at
 * once (the caller is thread 0) and returns when all have finished: the
 * fork-join shape every CPU op needs; dsa_threadpool_share() is the same
 * for work-sharing loops, where a worker that arrives after the caller
 * finished its share skips the job instead of being waited for.  Idle
 * workers spin briefly on the job counter, so back-to-back ops (decode)
 * start in well under a microsecond, then sleep on a condition variable;
 * the caller spins briefly on the join, then sleeps on a futex.  A pool serves one caller at a time:
 * run() is neither reentrant nor thread-safe. */
#ifndef DSA_KERNELS_CPU_THREADPOOL_H
#define DSA_KERNELS_CPU_THREADPOOL_H

#include "common/error.h"

typedef struct dsa_threadpool dsa_threadpool;

/* fn(ctx, tid) with tid in [0, n_threads). */
typedef void (*dsa_threadpool_fn)(void *ctx, int tid);

/* Creates a pool of n_threads (>= 1) threads, n_threads - 1 of them new. */
dsa_err dsa_threadpool_create(int n_threads, dsa_threadpool **out);
/* Joins the workers; NULL is a no-op. */
void dsa_threadpool_destroy(dsa_threadpool *pool);
int dsa_threadpool_size(const dsa_threadpool *pool);
/* Runs fn on every thread and waits for all of them. */
void dsa_threadpool_run(dsa_threadpool *pool, dsa_threadpool_fn fn, void *ctx);
/* Runs fn on the caller and on every worker that starts it before the
 * caller's call returns, and waits for those: fn must share its work
 * dynamically (take items from a common counter until none are left), as
 * any subset of the threads may run it, the caller always among them. */
void dsa_threadpool_share(dsa_threadpool *pool, dsa_threadpool_fn fn, void *ctx);

#endif
