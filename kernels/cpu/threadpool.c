/* threadpool.c - fork-join pool; see threadpool.h.
 *
 * A job is published by storing fn/ctx, resetting `state` to the new
 * generation and bumping `gen` (release).  A worker that notices the new
 * generation enters the job by one CAS on `state` (generation tag in the
 * high half, CLOSED bit, count of workers entered in the low bits), runs
 * it and counts itself in `done`.  dsa_threadpool_share() closes the job
 * when the caller's own share is done, so it waits only for the workers
 * that entered: a worker the OS has not scheduled yet (a shared or
 * oversubscribed machine) skips the job instead of holding the caller up
 * for a time slice.  The caller waits by spinning briefly, then sleeping
 * on a futex the last worker wakes.  The mutex and condition variable only
 * serve workers that gave up spinning. */
#include "kernels/cpu/threadpool.h"

#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define tp_pause() _mm_pause()
#else
#define tp_pause() ((void)0)
#endif

/* Spin iterations before a worker / the caller sleeps. */
enum { TP_SPIN_WORKER = 20000, TP_SPIN_MAIN = 2000 };

#define TP_CLOSED ((uint64_t)1 << 31)
#define TP_COUNT_MASK (TP_CLOSED - 1)

typedef struct tp_worker {
    dsa_threadpool *pool;
    pthread_t thread;
    int tid;
} tp_worker;

struct dsa_threadpool {
    int n_threads;
    tp_worker *workers;           /* [n_threads - 1], tids 1.. */
    int n_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    _Atomic unsigned gen;         /* job generation */
    _Atomic uint64_t state;       /* gen << 32 | TP_CLOSED | workers entered */
    _Atomic uint32_t done;        /* workers that finished the job (futex word) */
    _Atomic int caller_sleeping;
    _Atomic int stop;
    dsa_threadpool_fn fn;         /* current job, written before gen++ */
    void *ctx;
};

static void tp_futex_wait(_Atomic uint32_t *addr, uint32_t val)
{
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void tp_futex_wake(_Atomic uint32_t *addr)
{
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* Enters job g unless it is closed or already replaced by a newer one. */
static int tp_enter(dsa_threadpool *pool, unsigned g)
{
    uint64_t st = atomic_load_explicit(&pool->state, memory_order_acquire);
    for (;;) {
        if ((unsigned)(st >> 32) != g || (st & TP_CLOSED))
            return 0;
        if (atomic_compare_exchange_weak_explicit(&pool->state, &st, st + 1,
                                                  memory_order_acq_rel, memory_order_acquire))
            return 1;
    }
}

static void *tp_main(void *arg)
{
    tp_worker *w = arg;
    dsa_threadpool *pool = w->pool;
    unsigned seen = 0;
    for (;;) {
        unsigned g = atomic_load_explicit(&pool->gen, memory_order_acquire);
        for (int i = 0; g == seen && i < TP_SPIN_WORKER; i++) {
            tp_pause();
            g = atomic_load_explicit(&pool->gen, memory_order_acquire);
        }
        if (g == seen) {
            pthread_mutex_lock(&pool->mu);
            while ((g = atomic_load_explicit(&pool->gen, memory_order_acquire)) == seen)
                pthread_cond_wait(&pool->cv, &pool->mu);
            pthread_mutex_unlock(&pool->mu);
        }
        seen = g;
        if (atomic_load_explicit(&pool->stop, memory_order_acquire))
            break;
        if (!tp_enter(pool, g))
            continue;
        pool->fn(pool->ctx, w->tid);
        atomic_fetch_add(&pool->done, 1);
        if (atomic_load(&pool->caller_sleeping))
            tp_futex_wake(&pool->done);
    }
    return NULL;
}

static void tp_publish(dsa_threadpool *pool)
{
    pthread_mutex_lock(&pool->mu);
    atomic_fetch_add_explicit(&pool->gen, 1, memory_order_release);
    pthread_cond_broadcast(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
}

dsa_err dsa_threadpool_create(int n_threads, dsa_threadpool **out)
{
    *out = NULL;
    if (n_threads < 1)
        return dsa_fail(DSA_INVAL, "threadpool: %d threads", n_threads);
    dsa_threadpool *pool = calloc(1, sizeof *pool);
    if (!pool)
        return DSA_NOMEM;
    pool->n_threads = n_threads;
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->cv, NULL);
    if (n_threads > 1) {
        pool->workers = calloc((size_t)n_threads - 1, sizeof *pool->workers);
        if (!pool->workers)
            goto fail;
    }
    for (int i = 0; i < n_threads - 1; i++) {
        tp_worker *w = &pool->workers[i];
        w->pool = pool;
        w->tid = i + 1;
        if (pthread_create(&w->thread, NULL, tp_main, w) != 0)
            goto fail;
        pool->n_started++;
    }
    *out = pool;
    return DSA_OK;
fail:
    dsa_threadpool_destroy(pool);
    return dsa_fail(DSA_NOMEM, "threadpool: cannot start %d threads", n_threads);
}

void dsa_threadpool_destroy(dsa_threadpool *pool)
{
    if (!pool)
        return;
    if (pool->n_started > 0) {
        atomic_store_explicit(&pool->stop, 1, memory_order_release);
        tp_publish(pool);
        for (int i = 0; i < pool->n_started; i++)
            pthread_join(pool->workers[i].thread, NULL);
    }
    pthread_cond_destroy(&pool->cv);
    pthread_mutex_destroy(&pool->mu);
    free(pool->workers);
    free(pool);
}

int dsa_threadpool_size(const dsa_threadpool *pool)
{
    return pool->n_threads;
}

/* Publishes fn, runs the caller's share, then waits for all n_threads - 1
 * workers (all_workers) or for those that entered before it closed the
 * job. */
static void tp_run(dsa_threadpool *pool, dsa_threadpool_fn fn, void *ctx, int all_workers)
{
    if (pool->n_threads == 1) {
        fn(ctx, 0);
        return;
    }
    unsigned g = atomic_load_explicit(&pool->gen, memory_order_relaxed) + 1;
    pool->fn = fn;
    pool->ctx = ctx;
    atomic_store_explicit(&pool->done, 0, memory_order_relaxed);
    atomic_store_explicit(&pool->state, (uint64_t)g << 32, memory_order_release);
    tp_publish(pool);
    fn(ctx, 0);
    uint32_t want = (uint32_t)(pool->n_threads - 1);
    if (!all_workers)
        want = (uint32_t)(atomic_fetch_or(&pool->state, TP_CLOSED) & TP_COUNT_MASK);
    for (int i = 0; i < TP_SPIN_MAIN; i++) {
        if (atomic_load_explicit(&pool->done, memory_order_acquire) == want)
            return;
        tp_pause();
    }
    atomic_store(&pool->caller_sleeping, 1);
    uint32_t d;
    while ((d = atomic_load(&pool->done)) != want)
        tp_futex_wait(&pool->done, d);
    atomic_store(&pool->caller_sleeping, 0);
}

void dsa_threadpool_run(dsa_threadpool *pool, dsa_threadpool_fn fn, void *ctx)
{
    tp_run(pool, fn, ctx, 1);
}

void dsa_threadpool_share(dsa_threadpool *pool, dsa_threadpool_fn fn, void *ctx)
{
    tp_run(pool, fn, ctx, 0);
}
