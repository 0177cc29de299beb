/* test_threadpool.c - the CPU backend's fork-join pool
 * (kernels/cpu/threadpool.c):
 *   - run() runs the job once on every thread, every time;
 *   - share() hands every item of a counter-shared loop to exactly one
 *     thread, always runs the caller's share, and returns only after each
 *     worker that entered the job has left it (the job lives on the
 *     caller's stack), also with more threads than cores, where workers
 *     often arrive after the caller closed the job. */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "kernels/cpu/threadpool.h"

enum { N_ITEMS = 257 };

typedef struct run_job {
    _Atomic int ran[16];
} run_job;

static void run_fn(void *ctx, int tid)
{
    run_job *j = ctx;
    atomic_fetch_add(&j->ran[tid], 1);
}

Test(threadpool, run_reaches_every_thread)
{
    for (int nt = 1; nt <= 3; nt++) {
        dsa_threadpool *pool;
        cr_assert_eq(dsa_threadpool_create(nt, &pool), DSA_OK);
        cr_assert_eq(dsa_threadpool_size(pool), nt);
        for (int call = 0; call < 500; call++) {
            run_job j;
            for (int t = 0; t < 16; t++)
                atomic_init(&j.ran[t], 0);
            dsa_threadpool_run(pool, run_fn, &j);
            for (int t = 0; t < 16; t++)
                cr_assert_eq(atomic_load(&j.ran[t]), t < nt ? 1 : 0, "threads %d call %d tid %d", nt,
                             call, t);
        }
        dsa_threadpool_destroy(pool);
    }
}

typedef struct share_job {
    _Atomic int next;
    _Atomic int hits[N_ITEMS];
    _Atomic int caller_ran;
    _Atomic int inside;          /* threads inside fn right now */
} share_job;

static void share_fn(void *ctx, int tid)
{
    share_job *j = ctx;
    atomic_fetch_add(&j->inside, 1);
    if (tid == 0)
        atomic_store(&j->caller_ran, 1);
    for (;;) {
        int i = atomic_fetch_add(&j->next, 1);
        if (i >= N_ITEMS)
            break;
        atomic_fetch_add(&j->hits[i], 1);
    }
    atomic_fetch_sub(&j->inside, 1);
}

static void share_many(int nt, int calls)
{
    dsa_threadpool *pool;
    cr_assert_eq(dsa_threadpool_create(nt, &pool), DSA_OK);
    for (int call = 0; call < calls; call++) {
        share_job j;
        memset(&j, 0, sizeof j);
        dsa_threadpool_share(pool, share_fn, &j);
        cr_assert_eq(atomic_load(&j.caller_ran), 1, "threads %d call %d", nt, call);
        cr_assert_eq(atomic_load(&j.inside), 0, "threads %d call %d: a worker still inside", nt,
                     call);
        for (int i = 0; i < N_ITEMS; i++)
            cr_assert_eq(atomic_load(&j.hits[i]), 1, "threads %d call %d item %d", nt, call, i);
        /* poison the job as the caller's next stack frame would */
        memset(&j, 0x55, sizeof j);
    }
    dsa_threadpool_destroy(pool);
}

Test(threadpool, share_each_item_once)
{
    share_many(1, 50);
    share_many(2, 3000);
}

Test(threadpool, share_oversubscribed)
{
    share_many(9, 1500);
}
