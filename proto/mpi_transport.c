/* mpi_transport.c - MPI start-up, bounded waits, frames and the head's transport
 * (see mpi_transport.h). */
#include "proto/mpi_transport.h"

#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"

/* The watchdog's message, formatted before alarm() is armed: a signal
 * handler can only write() a ready buffer, hence this one file-level
 * buffer (the process has one watchdog). */
static char watchdog_msg[512];
static size_t watchdog_len;

static void watchdog_fire(int sig)
{
    (void)sig;
    ssize_t rc = write(2, watchdog_msg, watchdog_len);
    (void)rc;
    _exit(3);
}

static void env_name(const dsa_mpi_env *env, int *rank, const char **host)
{
    *rank = env && env->rank >= 0 ? env->rank : -1;
    *host = env && env->host[0] ? env->host : "?";
    if (*rank < 0) {
        const char *r = getenv("OMPI_COMM_WORLD_RANK");
        *rank = r ? atoi(r) : -1;
    }
}

void dsa_mpi_watchdog(const dsa_mpi_env *env, double seconds, const char *what)
{
    if (seconds <= 0) {
        alarm(0);
        return;
    }
    int rank;
    const char *host;
    char hbuf[256] = "?";
    env_name(env, &rank, &host);
    if (!strcmp(host, "?") && gethostname(hbuf, sizeof hbuf - 1) == 0)
        host = hbuf;
    int n = snprintf(watchdog_msg, sizeof watchdog_msg,
                     "dsa: rank %d (%s): %s did not finish in %.0f s; a rank of the job "
                     "did not start or cannot be reached\n",
                     rank, host, what, seconds);
    watchdog_len = n > 0 && (size_t)n < sizeof watchdog_msg ? (size_t)n : 0;
    struct sigaction sa = {.sa_handler = watchdog_fire};
    sigaction(SIGALRM, &sa, NULL);
    unsigned s = (unsigned)(seconds + 0.999);
    alarm(s ? s : 1);
}

void dsa_mpi_abort(const dsa_mpi_env *env, int code, const char *fmt, ...)
{
    int rank;
    const char *host;
    env_name(env, &rank, &host);
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "dsa: rank %d (%s): %s\n", rank, host, msg);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code ? code : 1);
    _exit(code ? code : 1);
}

/* Between polls: for the first half millisecond only yield the core (a
 * collective needs several progress rounds, each driven by MPI_Test, and
 * peers answer within microseconds), then sleep a little longer each poll,
 * 20 us up to 1 ms, so waiting ranks leave the cores to working ones. */
typedef struct poller {
    double t0;
    long ns;
} poller;

static void poll_pause(poller *p)
{
    if (dsa_time_now() - p->t0 < 5e-4) {
        sched_yield();
        return;
    }
    struct timespec ts = {0, p->ns};
    nanosleep(&ts, NULL);
    if (p->ns < 1000000)
        p->ns *= 2;
}

dsa_err dsa_mpi_wait(MPI_Request *req, MPI_Status *st, double timeout_s, const char *what,
                     int peer)
{
    double deadline = timeout_s > 0 ? dsa_time_now() + timeout_s : 0;
    poller pl = {.t0 = dsa_time_now(), .ns = 20000};
    for (;;) {
        int done = 0;
        MPI_Status s;
        if (MPI_Test(req, &done, &s) != MPI_SUCCESS)
            return dsa_fail(DSA_IO, "%s %d: MPI error", what, peer);
        if (done) {
            if (st)
                *st = s;
            return DSA_OK;
        }
        if (deadline && dsa_time_now() > deadline)
            return dsa_fail(DSA_TIMEOUT, "%s %d: no answer in %.1f s", what, peer, timeout_s);
        poll_pause(&pl);
    }
}

dsa_err dsa_mpi_init(int *argc, char ***argv, double timeout_s, dsa_mpi_env *env)
{
    return dsa_mpi_init_thread(argc, argv, MPI_THREAD_FUNNELED, timeout_s, env);
}

dsa_err dsa_mpi_init_thread(int *argc, char ***argv, int required, double timeout_s,
                            dsa_mpi_env *env)
{
    memset(env, 0, sizeof *env);
    env->rank = -1;
    env->workers = MPI_COMM_NULL;
    env->t_start = dsa_time_now();
    dsa_mpi_watchdog(NULL, timeout_s, "MPI start-up (MPI_Init and the pre-flight self-test)");
    int provided = 0;
    if (MPI_Init_thread(argc, argv, required, &provided) != MPI_SUCCESS)
        return dsa_fail(DSA_IO, "MPI_Init_thread failed");
    if (provided < required) {
        dsa_mpi_watchdog(NULL, 0, NULL);
        return dsa_fail(DSA_INVAL, "MPI provides thread level %d, this program needs %d "
                        "(MPI_THREAD_SERIALIZED = %d)", provided, required,
                        MPI_THREAD_SERIALIZED);
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &env->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &env->size);
    int n = 0;
    MPI_Get_processor_name(env->host, &n);
    dsa_mpi_watchdog(env, timeout_s, "the pre-flight self-test");

    /* Pre-flight: everyone reaches a barrier, then sum(rank + 1) must equal
     * size (size + 1) / 2, all within the deadline. */
    MPI_Request req;
    dsa_err err;
    if (MPI_Ibarrier(MPI_COMM_WORLD, &req) != MPI_SUCCESS)
        return dsa_fail(DSA_IO, "MPI_Ibarrier failed");
    if ((err = dsa_mpi_wait(&req, NULL, timeout_s, "pre-flight barrier of world size",
                            env->size)))
        return err;
    long long mine = env->rank + 1, sum = 0;
    if (MPI_Iallreduce(&mine, &sum, 1, MPI_LONG_LONG, MPI_SUM, MPI_COMM_WORLD, &req) !=
        MPI_SUCCESS)
        return dsa_fail(DSA_IO, "MPI_Iallreduce failed");
    if ((err = dsa_mpi_wait(&req, NULL, timeout_s, "pre-flight all-reduce of world size",
                            env->size)))
        return err;
    long long want = (long long)env->size * (env->size + 1) / 2;
    if (sum != want)
        return dsa_fail(DSA_IO, "pre-flight checksum %lld, expected %lld", sum, want);
    /* The workers' communicator; the head (rank 0) takes no part in it. */
    if (MPI_Comm_split(MPI_COMM_WORLD, env->rank == 0 ? MPI_UNDEFINED : 1, env->rank,
                       &env->workers) != MPI_SUCCESS)
        return dsa_fail(DSA_IO, "MPI_Comm_split failed");
    if (env->workers != MPI_COMM_NULL)
        MPI_Comm_set_errhandler(env->workers, MPI_ERRORS_RETURN);
    dsa_mpi_watchdog(env, 0, NULL);
    DSA_INFO("rank %d of %d on %s: pre-flight ok in %.2f s", env->rank, env->size, env->host,
             dsa_time_now() - env->t_start);
    return DSA_OK;
}

dsa_err dsa_mpi_send_frame(MPI_Comm comm, int dest, int tag, const uint8_t *buf, size_t len,
                           double timeout_s)
{
    if (len > INT32_MAX)
        return dsa_fail(DSA_RANGE, "frame of %zu bytes", len);
    MPI_Request req;
    if (MPI_Isend(buf, (int)len, MPI_BYTE, dest, tag, comm, &req) != MPI_SUCCESS)
        return dsa_fail(DSA_IO, "MPI_Isend to rank %d failed", dest);
    return dsa_mpi_wait(&req, NULL, timeout_s, "sending a frame to rank", dest);
}

dsa_err dsa_mpi_recv_frame(MPI_Comm comm, int source, int tag, double timeout_s, uint8_t **buf,
                           size_t *len, int *from)
{
    double deadline = timeout_s > 0 ? dsa_time_now() + timeout_s : 0;
    poller pl = {.t0 = dsa_time_now(), .ns = 20000};
    MPI_Message msg;
    MPI_Status st;
    for (;;) {
        int flag = 0;
        if (MPI_Improbe(source, tag, comm, &flag, &msg, &st) != MPI_SUCCESS)
            return dsa_fail(DSA_IO, "MPI_Improbe failed");
        if (flag)
            break;
        if (deadline && dsa_time_now() > deadline)
            return dsa_fail(DSA_TIMEOUT, "waiting for a frame from rank %d: nothing in %.1f s",
                            source, timeout_s);
        poll_pause(&pl);
    }
    int n = 0;
    MPI_Get_count(&st, MPI_BYTE, &n);
    uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
    if (!b)
        return dsa_fail(DSA_NOMEM, "frame of %d bytes", n);
    if (MPI_Mrecv(b, n, MPI_BYTE, &msg, &st) != MPI_SUCCESS) {
        free(b);
        return dsa_fail(DSA_IO, "MPI_Mrecv from rank %d failed", st.MPI_SOURCE);
    }
    *buf = b;
    *len = (size_t)n;
    if (from)
        *from = st.MPI_SOURCE;
    return DSA_OK;
}

/* ---- the head's transport --------------------------------------------- */

typedef struct in_flight {
    uint64_t step_id;
    uint8_t *frame;          /* the plan, kept until every send completed */
    MPI_Request *reqs;       /* [n_workers] */
    uint8_t *mframe;         /* its StepMasks frame (masks_later), likewise */
    MPI_Request *mreqs;      /* [n_workers]: n_mreqs started */
    int n_mreqs;
    dsa_err merr;            /* sending the masks failed: collect's error */
} in_flight;

typedef struct mpi_transport {
    dsa_transport base;
    const dsa_mpi_env *env;
    dsa_mpi_transport_params p;
    int n_workers, tp, pp;
    int result_rank;         /* world rank of the last stage's tp_rank 0 */
    dsa_hello *hellos;       /* [n_workers] */
    in_flight q[DSA_MPI_IN_FLIGHT];
    int q_head, q_len;
    uint64_t nonce;
    int64_t n_masks_sent;
} mpi_transport;

static dsa_err send_all(mpi_transport *t, const uint8_t *buf, size_t len, MPI_Request *reqs)
{
    for (int w = 0; w < t->n_workers; w++)
        if (MPI_Isend(buf, (int)len, MPI_BYTE, w + 1, DSA_MPI_TAG_CTRL, MPI_COMM_WORLD,
                      &reqs[w]) != MPI_SUCCESS)
            return dsa_fail(DSA_IO, "MPI_Isend to rank %d failed", w + 1);
    return DSA_OK;
}

static dsa_err wait_all(mpi_transport *t, MPI_Request *reqs, double timeout_s)
{
    dsa_err err;
    for (int w = 0; w < t->n_workers; w++)
        if ((err = dsa_mpi_wait(&reqs[w], NULL, timeout_s, "sending to worker rank", w + 1)))
            return err;
    return DSA_OK;
}

static dsa_err send_ctl_all(mpi_transport *t, const dsa_ctl_msg *m, double timeout_s)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    MPI_Request *reqs = calloc((size_t)t->n_workers, sizeof *reqs);
    dsa_err err = reqs ? dsa_ctl_encode(m, &buf, &len) : dsa_fail(DSA_NOMEM, "requests");
    if (!err && !(err = send_all(t, buf, len, reqs)))
        err = wait_all(t, reqs, timeout_s);
    free(reqs);
    free(buf);
    return err;
}

dsa_err dsa_mpi_transport_submit(dsa_transport *base, const dsa_step_plan *plan)
{
    mpi_transport *t = (mpi_transport *)base;
    if (t->q_len == DSA_MPI_IN_FLIGHT)
        return dsa_fail(DSA_BUSY, "%d plans already in flight", DSA_MPI_IN_FLIGHT);
    in_flight *f = &t->q[(t->q_head + t->q_len) % DSA_MPI_IN_FLIGHT];
    size_t len = 0;
    dsa_err err = dsa_step_plan_encode(plan, &f->frame, &len);
    if (err)
        return err;
    if (len > INT32_MAX) {
        free(f->frame);
        f->frame = NULL;
        return dsa_fail(DSA_RANGE, "plan of %zu bytes", len);
    }
    f->step_id = plan->step_id;
    if ((err = send_all(t, f->frame, len, f->reqs)))
        return err; /* fatal for the job: some workers may have the plan */
    t->q_len++;
    return DSA_OK;
}

dsa_err dsa_mpi_transport_collect(dsa_transport *base, dsa_step_result *res)
{
    mpi_transport *t = (mpi_transport *)base;
    if (t->q_len == 0)
        return dsa_fail(DSA_INVAL, "no plan in flight");
    in_flight *f = &t->q[t->q_head];
    t->q_head = (t->q_head + 1) % DSA_MPI_IN_FLIGHT;
    t->q_len--;
    dsa_err err = wait_all(t, f->reqs, t->p.step_timeout_s);
    for (int k = 0; k < f->n_mreqs; k++) {
        dsa_err e2 = dsa_mpi_wait(&f->mreqs[k], NULL, t->p.step_timeout_s,
                                  "sending grammar masks to worker rank", t->result_rank + k);
        err = err ? err : e2;
    }
    free(f->frame);
    free(f->mframe);
    f->frame = f->mframe = NULL;
    f->n_mreqs = 0;
    if (!err && f->merr)
        err = dsa_fail(f->merr, "step %llu: its grammar masks were not sent",
                       (unsigned long long)f->step_id);
    f->merr = DSA_OK;
    if (err)
        return err;
    uint8_t *buf = NULL;
    size_t len = 0;
    int type = 0;
    if ((err = dsa_mpi_recv_frame(MPI_COMM_WORLD, t->result_rank, DSA_MPI_TAG_REPLY,
                                  t->p.step_timeout_s, &buf, &len, NULL)))
        return dsa_fail(err, "step %llu: result from rank %d (%s): %s",
                        (unsigned long long)f->step_id, t->result_rank,
                        t->hellos[t->result_rank - 1].host, dsa_errmsg());
    if (!(err = dsa_frame_peek(buf, len, &type))) {
        if (type == DSA_MSG_STEP_RESULT) {
            err = dsa_step_result_decode(buf, len, res);
            if (!err && res->step_id != f->step_id) {
                dsa_step_result_free(res);
                err = dsa_fail(DSA_FORMAT, "result of step %llu, expected %llu",
                               (unsigned long long)res->step_id,
                               (unsigned long long)f->step_id);
            }
        } else {
            err = dsa_fail(DSA_FORMAT, "rank %d answered a step with message type %d",
                           t->result_rank, type);
        }
    }
    free(buf);
    return err;
}

dsa_err dsa_mpi_transport_send_masks(dsa_transport *base, const dsa_step_plan *plan)
{
    mpi_transport *t = (mpi_transport *)base;
    in_flight *f = &t->q[(t->q_head + t->q_len + DSA_MPI_IN_FLIGHT - 1) % DSA_MPI_IN_FLIGHT];
    if (!t->q_len || f->step_id != plan->step_id || f->mframe || !plan->masks_later)
        return dsa_fail(DSA_INVAL, "masks of step %llu: not the last plan sent with masks_later",
                        (unsigned long long)plan->step_id);
    size_t len = 0;
    dsa_err err = dsa_step_masks_encode(plan, &f->mframe, &len);
    if (!err && len > INT32_MAX)
        err = dsa_fail(DSA_RANGE, "masks of %zu bytes", len);
    /* every rank of the last stage: with drafts they all sample */
    for (int k = 0; !err && k < t->tp; k++) {
        if (MPI_Isend(f->mframe, (int)len, MPI_BYTE, t->result_rank + k, DSA_MPI_TAG_MASKS,
                      MPI_COMM_WORLD, &f->mreqs[k]) != MPI_SUCCESS)
            err = dsa_fail(DSA_IO, "MPI_Isend of masks to rank %d failed", t->result_rank + k);
        else
            f->n_mreqs++;
    }
    if (!err)
        t->n_masks_sent++;
    f->merr = err; /* the plan is in flight either way: its collect fails */
    return err;
}

int64_t dsa_mpi_transport_n_masks_sent(const dsa_transport *base)
{
    return ((const mpi_transport *)base)->n_masks_sent;
}

static dsa_err mpi_step(dsa_transport *base, const dsa_step_plan *plan, dsa_step_result *res)
{
    dsa_err err = dsa_mpi_transport_submit(base, plan);
    return err ? err : dsa_mpi_transport_collect(base, res);
}

dsa_err dsa_mpi_transport_ping(dsa_transport *base, double timeout_s)
{
    mpi_transport *t = (mpi_transport *)base;
    if (t->q_len)
        return dsa_fail(DSA_BUSY, "ping with plans in flight");
    dsa_ctl_msg m = {.type = DSA_MSG_PING, .u.ping = {.nonce = ++t->nonce, .rank = 0}};
    dsa_err err = send_ctl_all(t, &m, timeout_s);
    for (int w = 0; !err && w < t->n_workers; w++) {
        uint8_t *buf = NULL;
        size_t len = 0;
        dsa_ctl_msg r;
        if ((err = dsa_mpi_recv_frame(MPI_COMM_WORLD, w + 1, DSA_MPI_TAG_REPLY, timeout_s, &buf,
                                      &len, NULL)))
            break;
        err = dsa_ctl_decode(buf, len, &r);
        free(buf);
        if (!err && (r.type != DSA_MSG_PING || r.u.ping.nonce != t->nonce))
            err = dsa_fail(DSA_FORMAT, "rank %d: wrong answer to ping", w + 1);
    }
    return err;
}

const dsa_hello *dsa_mpi_transport_hellos(const dsa_transport *base, int *n)
{
    const mpi_transport *t = (const mpi_transport *)base;
    *n = t->n_workers;
    return t->hellos;
}

static void mpi_destroy(dsa_transport *base)
{
    mpi_transport *t = (mpi_transport *)base;
    if (t->hellos) {
        /* Drain what is in flight (bounded), then tell every worker to stop. */
        while (t->q_len) {
            dsa_step_result r;
            if (dsa_mpi_transport_collect(base, &r) == DSA_OK)
                dsa_step_result_free(&r);
        }
        dsa_ctl_msg m = {.type = DSA_MSG_SHUTDOWN};
        if (send_ctl_all(t, &m, t->p.step_timeout_s))
            DSA_WARN("shutdown: %s", dsa_errmsg());
    }
    for (int i = 0; i < DSA_MPI_IN_FLIGHT; i++) {
        free(t->q[i].frame);
        free(t->q[i].reqs);
        free(t->q[i].mframe);
        free(t->q[i].mreqs);
    }
    free(t->hellos);
    free(t);
}

static dsa_err mpi_ping(dsa_transport *base)
{
    return dsa_mpi_transport_ping(base, ((mpi_transport *)base)->p.step_timeout_s);
}

static const dsa_transport_ops mpi_ops = {
    .name = "mpi",
    .step = mpi_step,
    .destroy = mpi_destroy,
    .submit = dsa_mpi_transport_submit,
    .collect = dsa_mpi_transport_collect,
    .ping = mpi_ping,
    .send_masks = dsa_mpi_transport_send_masks,
};

/* Every worker's Hello: the ranks form a TP x PP grid, agree on the model,
 * and stages hold contiguous layers. */
static dsa_err check_hellos(mpi_transport *t)
{
    const dsa_hello *h0 = &t->hellos[0];
    t->tp = h0->tp_size;
    t->pp = h0->n_stages;
    if (t->tp * t->pp != t->n_workers)
        return dsa_fail(DSA_INVAL, "rank 1 reports TP=%d x PP=%d, the job has %d workers",
                        t->tp, t->pp, t->n_workers);
    for (int w = 0; w < t->n_workers; w++) {
        const dsa_hello *h = &t->hellos[w];
        if (h->rank != w + 1 || h->tp_size != t->tp || h->n_stages != t->pp ||
            h->stage != w / t->tp || h->tp_rank != w % t->tp)
            return dsa_fail(DSA_INVAL, "rank %d (%s) reports stage %d/%d tp %d/%d", w + 1,
                            h->host, h->stage, h->n_stages, h->tp_rank, h->tp_size);
        if (h->info.vocab_size != h0->info.vocab_size ||
            h->info.block_size != h0->info.block_size ||
            h->info.max_blocks_per_seq != h0->info.max_blocks_per_seq)
            return dsa_fail(DSA_INVAL, "rank %d (%s) disagrees with rank 1 on the model or "
                            "the KV block layout", w + 1, h->host);
        if (h->tp_rank > 0 && h->layer_begin != h0[w - h->tp_rank].layer_begin)
            return dsa_fail(DSA_INVAL, "rank %d (%s): layers differ within stage %d", w + 1,
                            h->host, h->stage);
    }
    return DSA_OK;
}

dsa_err dsa_mpi_transport_create(const dsa_mpi_env *env, const dsa_mpi_transport_params *p,
                                 dsa_transport **out)
{
    *out = NULL;
    if (env->rank != 0 || env->size < 2)
        return dsa_fail(DSA_INVAL, "the MPI transport runs on rank 0 of a job with workers "
                        "(rank %d of %d)", env->rank, env->size);
    mpi_transport *t = calloc(1, sizeof *t);
    if (!t)
        return dsa_fail(DSA_NOMEM, "transport");
    dsa_err err;
    t->base.ops = &mpi_ops;
    t->env = env;
    t->p = *p;
    if (t->p.hello_timeout_s <= 0)
        t->p.hello_timeout_s = 600;
    if (t->p.step_timeout_s <= 0)
        t->p.step_timeout_s = 60;
    t->n_workers = env->size - 1;
    dsa_hello *hellos = calloc((size_t)t->n_workers, sizeof *hellos);
    int *seen = calloc((size_t)t->n_workers, sizeof *seen);
    for (int i = 0; i < DSA_MPI_IN_FLIGHT && hellos; i++)
        if (!(t->q[i].reqs = calloc((size_t)t->n_workers, sizeof(MPI_Request))) ||
            !(t->q[i].mreqs = calloc((size_t)t->n_workers, sizeof(MPI_Request))))
            break;
    if (!hellos || !seen || !t->q[DSA_MPI_IN_FLIGHT - 1].mreqs) {
        free(hellos);
        err = dsa_fail(DSA_NOMEM, "hellos");
        goto fail;
    }
    double deadline = dsa_time_now() + t->p.hello_timeout_s;
    for (int got = 0; got < t->n_workers; got++) {
        uint8_t *buf = NULL;
        size_t len = 0;
        int from = 0;
        dsa_ctl_msg m;
        double left = deadline - dsa_time_now();
        if ((err = dsa_mpi_recv_frame(MPI_COMM_WORLD, MPI_ANY_SOURCE, DSA_MPI_TAG_REPLY,
                                      left > 0.01 ? left : 0.01, &buf, &len, &from))) {
            char missing[256] = "";
            size_t o = 0;
            for (int w = 0; w < t->n_workers && o + 12 < sizeof missing; w++)
                if (!seen[w])
                    o += (size_t)snprintf(missing + o, sizeof missing - o, " %d", w + 1);
            free(hellos);
            err = dsa_fail(err, "waiting for the workers' Hello: ranks%s did not report "
                           "within %.0f s", missing, t->p.hello_timeout_s);
            goto fail;
        }
        err = dsa_ctl_decode(buf, len, &m);
        free(buf);
        if (!err && (m.type != DSA_MSG_HELLO || m.u.hello.rank != from || seen[from - 1]))
            err = dsa_fail(DSA_FORMAT, "rank %d: expected one Hello, got message type %d",
                           from, m.type);
        if (err) {
            free(hellos);
            goto fail;
        }
        seen[from - 1] = 1;
        hellos[from - 1] = m.u.hello;
    }
    t->hellos = hellos;
    if ((err = check_hellos(t)))
        goto fail;
    t->result_rank = 1 + (t->pp - 1) * t->tp;
    t->base.info = hellos[t->result_rank - 1].info;
    int64_t n_blocks = hellos[0].info.n_blocks;
    for (int w = 1; w < t->n_workers; w++)
        if (hellos[w].info.n_blocks < n_blocks)
            n_blocks = hellos[w].info.n_blocks;
    if (p->n_blocks > 0 && p->n_blocks <= n_blocks)
        n_blocks = p->n_blocks;
    t->base.info.n_blocks = n_blocks;
    dsa_ctl_msg cfg = {.type = DSA_MSG_CONFIG,
                       .u.config = {.n_blocks = n_blocks,
                                    .step_timeout_ms = (int32_t)(t->p.step_timeout_s * 1000)}};
    if ((err = send_ctl_all(t, &cfg, t->p.step_timeout_s)))
        goto fail;
    free(seen);
    *out = &t->base;
    return DSA_OK;
fail:
    free(seen);
    if (t->hellos) {
        free(t->hellos);
        t->hellos = NULL;
    }
    mpi_destroy(&t->base);
    return err;
}
