/* mpi_transport.h - the MPI side of the head<->worker protocol: start-up with a
 * bounded pre-flight self-test, deadline-bounded waits, frames over MPI
 * point-to-point, and the head's MPI transport (the dsa_transport of
 * step.h, plus an asynchronous submit/collect pair so the head keeps two
 * micro-batches in flight for PP=2).
 *
 * Layout (DESIGN.md): world rank 0 is the head; ranks 1..TP*PP are workers,
 * stage = (r-1)/TP, tp_rank = (r-1)%TP.  The head sends plans and control
 * frames to every worker with tag DSA_MPI_TAG_CTRL; workers answer (Hello,
 * StepResult from the last stage's tp_rank 0, Ping echoes) with
 * DSA_MPI_TAG_REPLY.
 *
 * Nothing here blocks without a bound: every wait polls a non-blocking
 * request against a deadline (MPI_Test with a backoff sleep, so idle ranks
 * leave the cores to busy ones) and fails with DSA_TIMEOUT naming the peer.
 * A rank that cannot continue calls dsa_mpi_abort, which prints
 * "rank R (host): message" and takes the whole job down with MPI_Abort. */
#ifndef DSA_PROTO_MPI_TRANSPORT_H
#define DSA_PROTO_MPI_TRANSPORT_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "proto/control.h"
#include "proto/step.h"

/* DSA_MPI_TAG_MASKS: a plan's grammar masks (StepMasks), head -> the last
 * stage's ranks, after the plan (its own tag, so a worker takes it from
 * inside its step while the next plan may already wait on CTRL). */
enum { DSA_MPI_TAG_CTRL = 1, DSA_MPI_TAG_REPLY = 2, DSA_MPI_TAG_MASKS = 3 };

typedef struct dsa_mpi_env {
    int rank, size;
    char host[MPI_MAX_PROCESSOR_NAME];
    MPI_Comm workers;       /* ranks 1..size-1 (MPI_COMM_NULL on the head) */
    double t_start;         /* dsa_time_now() at dsa_mpi_init */
} dsa_mpi_env;

/* MPI_Init_thread (funneled), then the pre-flight self-test: a
 * non-blocking barrier and an all-reduce of a checksum over the world,
 * polled against timeout_s, then the split into the workers' communicator.
 * A watchdog (SIGALRM) covers MPI_Init itself, which blocks until every
 * rank of the job has started: if a rank never starts, this rank exits
 * after timeout_s with a message naming itself and its host, and mpirun
 * takes the job down.  Errors from MPI calls are returned, not fatal. */
dsa_err dsa_mpi_init(int *argc, char ***argv, double timeout_s, dsa_mpi_env *env);
/* The same with the thread level to ask for (MPI_THREAD_FUNNELED,
 * MPI_THREAD_SERIALIZED, ...): fails with DSA_INVAL
 * when the library provides less.  The head asks for SERIALIZED: it calls
 * MPI from its load thread, its engine thread and main, never at once. */
dsa_err dsa_mpi_init_thread(int *argc, char ***argv, int required, double timeout_s,
                            dsa_mpi_env *env);

/* Arms (seconds > 0) or disarms (0) the watchdog: after `seconds` the
 * process prints "rank R (host): <what> did not finish in Ns" and exits. */
void dsa_mpi_watchdog(const dsa_mpi_env *env, double seconds, const char *what);

/* Prints "dsa: rank R (host): message" on stderr and aborts the job. */
void dsa_mpi_abort(const dsa_mpi_env *env, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));

/* Completes *req within timeout_s (<= 0: no bound).  On timeout the
 * request is cancelled and DSA_TIMEOUT returned, naming `what` and `peer`. */
dsa_err dsa_mpi_wait(MPI_Request *req, MPI_Status *st, double timeout_s, const char *what,
                     int peer);

/* A frame to dest (bounded); buf stays owned by the caller. */
dsa_err dsa_mpi_send_frame(MPI_Comm comm, int dest, int tag, const uint8_t *buf, size_t len,
                           double timeout_s);
/* The next frame from source (or MPI_ANY_SOURCE) with tag, within
 * timeout_s (<= 0: no bound).  *buf is malloc'd; *from is its sender. */
dsa_err dsa_mpi_recv_frame(MPI_Comm comm, int source, int tag, double timeout_s, uint8_t **buf,
                           size_t *len, int *from);

/* ---- the head's transport --------------------------------------------- */

typedef struct dsa_mpi_transport_params {
    double hello_timeout_s;  /* workers loading their weights (default 600) */
    double step_timeout_s;   /* one step's result (default 60) */
    int64_t n_blocks;        /* > 0: use this many KV blocks (<= every Hello's) */
} dsa_mpi_transport_params;

/* Waits for every worker's Hello, checks that they form a TP x PP layout
 * and agree on the model, sends Config and returns the transport.
 * env is borrowed and must outlive the transport.  Destroying it sends
 * Shutdown to every worker (bounded); MPI_Finalize stays with the caller. */
dsa_err dsa_mpi_transport_create(const dsa_mpi_env *env, const dsa_mpi_transport_params *p,
                                 dsa_transport **out);
/* Sends a plan to every worker without waiting for its result; at most
 * DSA_MPI_IN_FLIGHT plans may be outstanding (DSA_BUSY beyond). */
#define DSA_MPI_IN_FLIGHT 8
dsa_err dsa_mpi_transport_submit(dsa_transport *t, const dsa_step_plan *plan);
/* The masks of the plan submitted last (it has masks_later) to the last
 * stage's ranks, without waiting (the transport's send_masks op). */
dsa_err dsa_mpi_transport_send_masks(dsa_transport *t, const dsa_step_plan *plan);
/* StepMasks frames sent since creation (tests, logs). */
int64_t dsa_mpi_transport_n_masks_sent(const dsa_transport *t);
/* The result of the oldest outstanding plan (results come back in order). */
dsa_err dsa_mpi_transport_collect(dsa_transport *t, dsa_step_result *res);
/* Every worker's Hello, in world-rank order ([0] is rank 1). */
const dsa_hello *dsa_mpi_transport_hellos(const dsa_transport *t, int *n);
/* Pings every worker and waits for all echoes (idle transport only). */
dsa_err dsa_mpi_transport_ping(dsa_transport *t, double timeout_s);

#endif
