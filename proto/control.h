/* control.h - the control messages of the head<->worker protocol
 * (DESIGN.md): Hello (worker -> head: where it sits, what it holds, the KV
 * blocks it can keep), Config (head -> workers), Abort, Ping (either way;
 * the answer echoes the nonce) and Shutdown.  StepPlan and StepResult live
 * in step.h; all share its frame: magic "DSAS", u16 version, u16 type, u32
 * body length, body, little-endian.
 *
 * Encoding and decoding are pure functions.  Decoding checks magic,
 * version, type and every length, and fails with DSA_FORMAT naming what was
 * wrong; it never reads past the buffer. */
#ifndef DSA_PROTO_CONTROL_H
#define DSA_PROTO_CONTROL_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "proto/step.h"

/* Message types after DSA_MSG_STEP_PLAN (1) and DSA_MSG_STEP_RESULT (2);
 * DSA_MSG_STEP_MASKS (8) is step.h's too. */
enum {
    DSA_MSG_HELLO = 3,
    DSA_MSG_CONFIG = 4,
    DSA_MSG_ABORT = 5,
    DSA_MSG_PING = 6,
    DSA_MSG_SHUTDOWN = 7,
};

#define DSA_FRAME_HEADER_BYTES 12

typedef struct dsa_hello {
    int32_t rank;               /* MPI world rank */
    int32_t stage, n_stages, tp_rank, tp_size;
    int32_t layer_begin, layer_end;
    char host[64];              /* MPI_Get_processor_name */
    char device[32];            /* "cpu", "cuda:0", ... */
    int64_t free_bytes;         /* device memory left after weights and KV */
    int64_t weight_bytes;       /* this rank's weight share (dsa_weights.bytes) */
    int64_t rss_bytes;          /* resident set after loading */
    double ready_s;             /* seconds from start to ready */
    dsa_worker_info info;       /* n_blocks etc. (step.h) */
} dsa_hello;

typedef struct dsa_ctl_config {
    int64_t n_blocks;           /* blocks the head will use (<= every Hello's) */
    int32_t step_timeout_ms;    /* bound on a step's collectives */
    uint32_t flags;             /* reserved, 0 */
} dsa_ctl_config;

typedef struct dsa_ctl_msg {
    int type;                   /* DSA_MSG_HELLO .. DSA_MSG_SHUTDOWN */
    union {
        dsa_hello hello;
        dsa_ctl_config config;
        struct { int32_t code; char message[256]; } abort;
        struct { uint64_t nonce; int32_t rank; } ping;
    } u;
} dsa_ctl_msg;

/* The frame's type after checking magic, version and that the body length
 * matches len; DSA_FORMAT otherwise. */
dsa_err dsa_frame_peek(const uint8_t *buf, size_t len, int *type);

/* *buf is malloc'd (caller frees). */
dsa_err dsa_ctl_encode(const dsa_ctl_msg *m, uint8_t **buf, size_t *len);
/* Decodes one control frame into *m (no allocation). */
dsa_err dsa_ctl_decode(const uint8_t *buf, size_t len, dsa_ctl_msg *m);

#endif
