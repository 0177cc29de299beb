/* comm_nccl.c - the collectives of comm.h over NCCL on device memory,
 * queued on the CUDA backend's stream (dsa_cuda_stream).
 *
 * Two NCCL communicators per rank:
 *   tp: this stage's TP group, NCCL rank = tp_rank (all-reduce, all-gather);
 *   pp: the ranks with this tp_rank across the stages, NCCL rank = stage
 *       (activations to stage + 1 / from stage - 1); none when n_stages == 1.
 * A separate PP communicator (rather than one world communicator with peer
 * ranks) keeps the TP collectives on an NVLink-only ring inside a node and
 * lets NCCL pick the network transport for the stage-to-stage traffic alone.
 *
 * Ids: the TP group's id is made by its tp_rank 0, the PP group's by its
 * stage 0 rank; every worker contributes both slots to one MPI_Iallgather
 * over the workers' communicator, completed by dsa_mpi_wait against the
 * deadline, and picks its groups' ids from the result.
 *
 * Nothing waits without a bound.  The communicators are non-blocking
 * (ncclConfig_t.blocking = 0): initialisation and every enqueue return at
 * once and are polled (ncclCommGetAsyncError, a host call that stream
 * capture allows) against timeout_s.  An op only queues its collective on
 * the stream: it never waits for the stream, so the host runs ahead of the
 * GPU across collectives and a CUDA graph can hold them (graph_safe; the
 * model captures decode steps with the collectives and the PP hand-off
 * inside).  The bound on the work itself is a watchdog thread per rank:
 * the model arms it (watch(1)) when a step starts and disarms it once it
 * has waited for the step (watch(0)); a step still running at the deadline
 * has both communicators aborted by the watchdog (ncclCommAbort, which
 * ends the NCCL kernel stuck on the stream, so the host's wait returns),
 * watch(0) fails with DSA_TIMEOUT naming the step and the group, and every
 * later op fails at once (the peers are out of step; the worker aborts the
 * job).  The mutex makes the abort and an enqueue exclusive.
 *
 * Before, each op polled the stream until its collective finished: one host
 * synchronisation per collective (about 2 per layer), and no graphs in any
 * layout with TP or PP.  Now: one per step, where the host needs the
 * sampled ids anyway.
 *
 * All-reduces of decode size (dsa_comm_ar_oneshot: at most 256 KiB) inside
 * one node take the one-shot kernel (kernels/cuda/cuda_allreduce.h) on the
 * same stream when the whole TP group agreed at setup that it can (one
 * host, peer access between every pair of devices, every shared area
 * mapped); larger ones, and every all-reduce of a group spread over nodes,
 * go to NCCL.  DSA_CUDA_NO_ONESHOT=1 sends them all to NCCL.
 *
 * NCCL is called directly here rather than through kernels/cuda/nccl_comm.h
 * because that wrapper has neither a non-blocking create nor an abort; its
 * error macro (DSA_NCCL_CHECK) and id helper are used. */
#include "worker/comm.h"

#include <nccl.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "kernels/cuda/cuda_allreduce.h"
#include "kernels/cuda/cuda_internal.h" /* DSA_CUDA_CHECK (STYLE.md rule 11) */
#include "kernels/cuda/nccl_comm.h"
#include "proto/mpi_transport.h"

typedef struct comm_nccl {
    dsa_comm base;
    ncclComm_t tp;          /* this stage's TP group */
    ncclComm_t pp;          /* this tp_rank across stages; NULL: one stage */
    cudaStream_t stream;    /* the backend's, borrowed */
    int broken;             /* aborted after a timeout or failure */
    dsa_cuda_ar *ar;        /* the one-shot all-reduce; NULL: NCCL only */
    dsa_comm_ar_caps ar_caps;    /* what the TP group agreed it can take */
    uint64_t n_oneshot;     /* all-reduces that took it */
    /* The watchdog: `mu` guards everything below and the communicators'
     * enqueues against the watchdog's abort. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t watchdog;
    int have_watchdog, stop;
    double armed_until;     /* 0: no step running */
    int fired;              /* the watchdog aborted a step */
} comm_nccl;

static void nap(int polls)
{
    if (polls < 64) {
        sched_yield();
        return;
    }
    struct timespec ts = {0, polls < 1024 ? 20000 : 200000};
    nanosleep(&ts, NULL);
}

static void abort_all(comm_nccl *c)
{
    if (c->tp)
        (void)ncclCommAbort(c->tp);
    if (c->pp)
        (void)ncclCommAbort(c->pp);
    c->tp = c->pp = NULL;
    c->broken = 1;
}

/* Waits until comm's pending NCCL call (init, enqueue, finalize) is no
 * longer in progress.  DSA_OK, DSA_DEVICE (NCCL error) or DSA_TIMEOUT. */
static dsa_err nccl_settle(ncclComm_t comm, double deadline, const char *what, int peer)
{
    for (int polls = 0;; polls++) {
        ncclResult_t st = ncclSuccess;
        dsa_err err = DSA_NCCL_CHECK(ncclCommGetAsyncError(comm, &st));
        if (err)
            return err;
        if (st != ncclInProgress)
            return DSA_NCCL_CHECK(st);
        if (dsa_time_now() > deadline)
            return dsa_fail(DSA_TIMEOUT, "%s %d: NCCL call still in progress at the deadline",
                            what, peer);
        nap(polls);
    }
}

/* Settles an op queued on comm (the enqueue itself, bounded; the work on
 * the stream is the watchdog's to bound).  On failure the communicators
 * are aborted.  Called with c->mu held. */
static dsa_err op_wait(comm_nccl *c, ncclComm_t comm, ncclResult_t queued, double t0,
                       const char *what, int peer)
{
    double deadline = t0 + (c->base.timeout_s > 0 ? c->base.timeout_s : 1e30);
    dsa_err err = DSA_NCCL_CHECK(queued);
    if (!err)
        err = nccl_settle(comm, deadline, what, peer);
    if (err) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", dsa_errmsg());
        abort_all(c);
        err = dsa_fail(err, "%s (NCCL communicators aborted)", msg);
    }
    return err;
}

/* The watchdog thread: sleeps until a step is armed, then until its
 * deadline; a step still armed then is aborted. */
static void *watchdog_main(void *arg)
{
    comm_nccl *c = arg;
    pthread_mutex_lock(&c->mu);
    while (!c->stop) {
        if (c->armed_until <= 0) {
            pthread_cond_wait(&c->cv, &c->mu);
            continue;
        }
        double now = dsa_time_now();
        if (now >= c->armed_until) {
            DSA_ERROR("NCCL stage %d tp %d: step still running after %.1f s: aborting the "
                      "communicators", c->base.stage, c->base.tp_rank, c->base.timeout_s);
            abort_all(c);
            c->fired = 1;
            c->armed_until = 0;
            continue;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double wait = c->armed_until - now;
        ts.tv_sec += (time_t)wait;
        ts.tv_nsec += (long)((wait - (double)(time_t)wait) * 1e9);
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&c->cv, &c->mu, &ts);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

static dsa_err nc_watch(dsa_comm *c_, int on)
{
    comm_nccl *c = (comm_nccl *)c_;
    dsa_err err = DSA_OK;
    pthread_mutex_lock(&c->mu);
    if (on) {
        c->fired = 0;
        c->armed_until = dsa_time_now() + (c_->timeout_s > 0 ? c_->timeout_s : 1e30);
        pthread_cond_signal(&c->cv);
    } else {
        c->armed_until = 0;
        if (c->fired)
            err = dsa_fail(DSA_TIMEOUT, "step of stage %d tp %d: no answer from a peer in "
                           "%.1f s (NCCL communicators aborted)", c_->stage, c_->tp_rank,
                           c_->timeout_s);
    }
    pthread_mutex_unlock(&c->mu);
    return err;
}

static dsa_err check_usable(comm_nccl *c, const char *what)
{
    if (c->broken)
        return dsa_fail(DSA_IO, "NCCL %s: the communicators were aborted by an earlier failure",
                        what);
    return DSA_OK;
}

static dsa_err nccl_type(dsa_dtype dt, ncclDataType_t *out)
{
    switch (dt) {
    case DSA_DTYPE_F32: *out = ncclFloat32; return DSA_OK;
    case DSA_DTYPE_BF16: *out = ncclBfloat16; return DSA_OK;
    case DSA_DTYPE_F16: *out = ncclFloat16; return DSA_OK;
    case DSA_DTYPE_I32: *out = ncclInt32; return DSA_OK;
    case DSA_DTYPE_I64: *out = ncclInt64; return DSA_OK;
    default:
        return dsa_fail(DSA_UNSUPPORTED, "NCCL collectives on %s activations",
                        dsa_dtype_name(dt));
    }
}

static dsa_err nc_all_reduce_sum(dsa_comm *c_, void *buf, int64_t n, dsa_dtype dt)
{
    comm_nccl *c = (comm_nccl *)c_;
    ncclDataType_t t = ncclFloat32;
    dsa_err err;
    if (dt != DSA_DTYPE_F32 && dt != DSA_DTYPE_BF16)
        return dsa_fail(DSA_UNSUPPORTED, "NCCL all-reduce of %s", dsa_dtype_name(dt));
    if ((err = nccl_type(dt, &t)))
        return err;
    double t0 = dsa_time_now();
    pthread_mutex_lock(&c->mu);
    if (!(err = check_usable(c, "all-reduce"))) {
        if (dsa_comm_ar_oneshot(&c->ar_caps, n, dt)) {
            c->n_oneshot++;
            err = dsa_cuda_ar_sum(c->ar, buf, n, dt, c->stream);
        } else {
            ncclResult_t r = ncclAllReduce(buf, buf, (size_t)n, t, ncclSum, c->tp, c->stream);
            err = op_wait(c, c->tp, r, t0, "all-reduce of the TP group of stage", c_->stage);
        }
    }
    pthread_mutex_unlock(&c->mu);
    c_->stats.allreduce_s += dsa_time_now() - t0;
    c_->stats.n_allreduce++;
    c_->stats.bytes += (uint64_t)n * dsa_dtype_size(dt);
    return err;
}

static dsa_err nc_all_gather(dsa_comm *c_, void *out, const void *in, int64_t n, dsa_dtype dt)
{
    comm_nccl *c = (comm_nccl *)c_;
    ncclDataType_t t = ncclFloat32;
    dsa_err err;
    if ((err = nccl_type(dt, &t)))
        return err;
    double t0 = dsa_time_now();
    pthread_mutex_lock(&c->mu);
    if (!(err = check_usable(c, "all-gather"))) {
        ncclResult_t r = ncclAllGather(in, out, (size_t)n, t, c->tp, c->stream);
        err = op_wait(c, c->tp, r, t0, "all-gather of the TP group of stage", c_->stage);
    }
    pthread_mutex_unlock(&c->mu);
    c_->stats.allgather_s += dsa_time_now() - t0;
    c_->stats.n_allgather++;
    c_->stats.bytes += (uint64_t)n * dsa_dtype_size(dt) * (uint64_t)c_->tp_size;
    return err;
}

static dsa_err p2p(dsa_comm *c_, void *buf, size_t bytes, int send)
{
    comm_nccl *c = (comm_nccl *)c_;
    dsa_err err;
    int stage = send ? c_->stage + 1 : c_->stage - 1;
    if (stage < 0 || stage >= c_->n_stages || !c->pp)
        return dsa_fail(DSA_INVAL, "no stage %d to %s", stage, send ? "send to" : "receive from");
    double t0 = dsa_time_now();
    pthread_mutex_lock(&c->mu);
    if (!(err = check_usable(c, send ? "send" : "recv"))) {
        ncclResult_t r = send ? ncclSend(buf, bytes, ncclUint8, stage, c->pp, c->stream)
                              : ncclRecv(buf, bytes, ncclUint8, stage, c->pp, c->stream);
        /* Message names the stage; the peer is that stage's rank with our tp_rank. */
        err = op_wait(c, c->pp, r, t0, send ? "activations to stage" : "activations from stage",
                      stage);
    }
    pthread_mutex_unlock(&c->mu);
    c_->stats.p2p_s += dsa_time_now() - t0;
    c_->stats.n_p2p++;
    c_->stats.bytes += bytes;
    return err;
}

static dsa_err nc_send_next(dsa_comm *c, const void *buf, size_t bytes)
{
    return p2p(c, (void *)buf, bytes, 1);
}

static dsa_err nc_recv_prev(dsa_comm *c, void *buf, size_t bytes)
{
    return p2p(c, buf, bytes, 0);
}

/* Flushes and frees one communicator, bounded: past the deadline it is
 * aborted instead. */
static void comm_close(ncclComm_t comm, double timeout_s, int stage)
{
    if (!comm)
        return;
    double deadline = dsa_time_now() + (timeout_s > 0 ? timeout_s : 1e30);
    if (DSA_NCCL_CHECK(ncclCommFinalize(comm)) ||
        nccl_settle(comm, deadline, "closing the NCCL communicators of stage", stage)) {
        (void)ncclCommAbort(comm);
        return;
    }
    (void)DSA_NCCL_CHECK(ncclCommDestroy(comm));
}

static void nc_destroy(dsa_comm *c_)
{
    comm_nccl *c = (comm_nccl *)c_;
    if (c->have_watchdog) {
        pthread_mutex_lock(&c->mu);
        c->stop = 1;
        pthread_cond_signal(&c->cv);
        pthread_mutex_unlock(&c->mu);
        pthread_join(c->watchdog, NULL);
    }
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    comm_close(c->tp, c_->timeout_s, c_->stage);
    comm_close(c->pp, c_->timeout_s, c_->stage);
    if (c->ar)
        DSA_INFO("stage %d tp %d: %llu all-reduces one-shot", c_->stage, c_->tp_rank,
                 (unsigned long long)c->n_oneshot);
    dsa_cuda_ar_destroy(c->ar);
    free(c);
}

static const dsa_comm_ops nccl_ops = {
    .name = "nccl",
    .all_reduce_sum = nc_all_reduce_sum,
    .all_gather = nc_all_gather,
    .send_next = nc_send_next,
    .recv_prev = nc_recv_prev,
    .destroy = nc_destroy,
    .watch = nc_watch,
};

/* Joins a non-blocking communicator of n ranks, bounded by the deadline. */
static dsa_err comm_join(const dsa_nccl_id *id, int n, int rank, double deadline,
                         const char *what, int group, ncclComm_t *out)
{
    ncclUniqueId uid;
    memcpy(&uid, id->bytes, sizeof uid);
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;
    *out = NULL;
    dsa_err err = DSA_NCCL_CHECK(ncclCommInitRankConfig(out, n, uid, rank, &cfg));
    if (!err && *out)
        err = nccl_settle(*out, deadline, what, group);
    if (err) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", dsa_errmsg());
        if (*out)
            (void)ncclCommAbort(*out);
        *out = NULL;
        return dsa_fail(err, "joining NCCL: %s", msg);
    }
    return DSA_OK;
}

/* What each TP rank tells the others about its one-shot all-reduce. */
typedef struct ar_hello {
    char host[64];
    int device;
    int ok;                 /* its area exists and it may take part */
    unsigned char handle[DSA_CUDA_AR_HANDLE_BYTES];
} ar_hello;

/* Sets up the one-shot all-reduce when the whole TP group can use it
 * (comm_nccl.c's header); otherwise c->ar stays NULL and NCCL takes every
 * all-reduce.  Two bounded exchanges over tp_comm: the hellos, then the
 * agreement (the minimum of every rank's verdict), so no rank uses the
 * kernel unless all of them do.  Fails only when an exchange does. */
static dsa_err oneshot_setup(comm_nccl *c, MPI_Comm tp_comm)
{
    int tp = c->base.tp_size, me = c->base.tp_rank;
    double timeout_s = c->base.timeout_s;
    ar_hello mine;
    memset(&mine, 0, sizeof mine);
    (void)gethostname(mine.host, sizeof mine.host - 1);
    const char *off = getenv("DSA_CUDA_NO_ONESHOT");
    mine.ok = tp <= DSA_CUDA_AR_MAX_RANKS && !(off && *off && strcmp(off, "0") != 0) &&
              !DSA_CUDA_CHECK(cudaGetDevice(&mine.device));
    if (mine.ok && dsa_cuda_ar_create(me, tp, timeout_s, &c->ar, mine.handle)) {
        DSA_WARN("one-shot all-reduce unavailable on tp %d: %s", me, dsa_errmsg());
        mine.ok = 0;
    }
    ar_hello *all = calloc((size_t)tp, sizeof *all);
    if (!all)
        return dsa_fail(DSA_NOMEM, "one-shot all-reduce setup");
    dsa_err err = DSA_OK;
    int ok = mine.ok, agreed = 0;
    MPI_Request req;
    if (MPI_Iallgather(&mine, (int)sizeof mine, MPI_BYTE, all, (int)sizeof mine, MPI_BYTE,
                       tp_comm, &req) != MPI_SUCCESS) {
        err = dsa_fail(DSA_IO, "MPI_Iallgather of the one-shot all-reduce handles failed");
        goto done;
    }
    if ((err = dsa_mpi_wait(&req, NULL, timeout_s, "one-shot all-reduce setup of stage",
                            c->base.stage)))
        goto done;
    for (int r = 0; r < tp && ok; r++) {
        int can = 0;
        ok = all[r].ok && strcmp(all[r].host, mine.host) == 0;
        if (ok && r != me)
            ok = !DSA_CUDA_CHECK(cudaDeviceCanAccessPeer(&can, mine.device, all[r].device)) &&
                 can;
    }
    for (int r = 0; r < tp && ok; r++)
        if (r != me && dsa_cuda_ar_open(c->ar, r, all[r].handle)) {
            DSA_WARN("one-shot all-reduce: tp %d cannot map tp %d's area: %s", me, r,
                     dsa_errmsg());
            ok = 0;
        }
    if (MPI_Iallreduce(&ok, &agreed, 1, MPI_INT, MPI_MIN, tp_comm, &req) != MPI_SUCCESS) {
        err = dsa_fail(DSA_IO, "MPI_Iallreduce of the one-shot all-reduce verdicts failed");
        goto done;
    }
    if ((err = dsa_mpi_wait(&req, NULL, timeout_s, "one-shot all-reduce agreement of stage",
                            c->base.stage)))
        goto done;
    if (agreed)
        c->ar_caps = (dsa_comm_ar_caps){.n_ranks = tp, .bytes_max = DSA_CUDA_AR_BYTES_MAX};
    DSA_INFO("stage %d tp %d/%d: one-shot all-reduce %s", c->base.stage, me, tp,
             agreed ? "on for up to 256 KiB (NCCL above)" : "off (NCCL for every size)");
done:
    if (err || !agreed) {
        dsa_cuda_ar_destroy(c->ar);
        c->ar = NULL;
    }
    free(all);
    return err;
}

dsa_err dsa_comm_nccl_create(MPI_Comm tp_comm, MPI_Comm workers, int stage, int n_stages,
                             double timeout_s, void *stream, dsa_comm **out)
{
    *out = NULL;
    comm_nccl *c = calloc(1, sizeof *c);
    dsa_nccl_id *ids = NULL;
    dsa_err err = DSA_OK;
    if (!c)
        return dsa_fail(DSA_NOMEM, "communicator");
    c->base.ops = &nccl_ops;
    c->base.graph_safe = 1;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    MPI_Comm_rank(tp_comm, &c->base.tp_rank);
    MPI_Comm_size(tp_comm, &c->base.tp_size);
    c->base.stage = stage;
    c->base.n_stages = n_stages;
    c->base.timeout_s = timeout_s;
    c->stream = (cudaStream_t)stream;
    int tp = c->base.tp_size, tp_rank = c->base.tp_rank, n_workers = 0, me = 0;
    MPI_Comm_size(workers, &n_workers);
    MPI_Comm_rank(workers, &me);
    if (n_workers != tp * n_stages || me != stage * tp + tp_rank) {
        err = dsa_fail(DSA_INVAL, "NCCL: worker %d of %d is not stage %d tp %d/%d of %d stages",
                       me, n_workers, stage, tp_rank, tp, n_stages);
        goto fail;
    }

    /* Slot 2r: the TP id worker r made (tp_rank 0 only); 2r + 1: its PP id
     * (stage 0 only). */
    dsa_nccl_id mine[2];
    memset(mine, 0, sizeof mine);
    if ((tp_rank == 0 && (err = dsa_nccl_unique_id(&mine[0]))) ||
        (stage == 0 && n_stages > 1 && (err = dsa_nccl_unique_id(&mine[1]))))
        goto fail;
    if (!(ids = calloc((size_t)n_workers * 2, sizeof *ids))) {
        err = dsa_fail(DSA_NOMEM, "NCCL ids");
        goto fail;
    }
    MPI_Request req;
    if (MPI_Iallgather(mine, (int)sizeof mine, MPI_BYTE, ids, (int)sizeof mine, MPI_BYTE,
                       workers, &req) != MPI_SUCCESS) {
        err = dsa_fail(DSA_IO, "MPI_Iallgather of the NCCL ids failed");
        goto fail;
    }
    if ((err = dsa_mpi_wait(&req, NULL, timeout_s, "NCCL id exchange among the workers",
                            n_workers)))
        goto fail;

    double deadline = dsa_time_now() + (timeout_s > 0 ? timeout_s : 1e30);
    if ((err = comm_join(&ids[2 * (stage * tp)], tp, tp_rank, deadline,
                         "TP group of stage", stage, &c->tp)))
        goto fail;
    if (n_stages > 1 && (err = comm_join(&ids[2 * tp_rank + 1], n_stages, stage, deadline,
                                         "PP group of tp_rank", tp_rank, &c->pp)))
        goto fail;
    free(ids);
    ids = NULL;
    if (tp > 1 && (err = oneshot_setup(c, tp_comm)))
        goto fail;
    if (pthread_create(&c->watchdog, NULL, watchdog_main, c)) {
        err = dsa_fail(DSA_NOMEM, "NCCL watchdog thread");
        goto fail;
    }
    c->have_watchdog = 1;
    DSA_INFO("NCCL communicators: stage %d/%d tp %d/%d%s", stage, n_stages, tp_rank, tp,
             c->pp ? ", PP group across stages" : "");
    *out = &c->base;
    return DSA_OK;
fail:
    free(ids);
    dsa_cuda_ar_destroy(c->ar);
    if (c->tp || c->pp)
        abort_all(c);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c);
    return err;
}
