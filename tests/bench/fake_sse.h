/* fake_sse.h - a scripted HTTP/1.1 server on 127.0.0.1 for test_bench.c.
 *
 * It accepts a fixed number of connections on an ephemeral port, one thread
 * each.  A connection reads one request, picks its script from the marker
 * "case:NAME" in the body, and writes the script's pieces at fixed offsets
 * from the request's arrival, recording when each write returned
 * (sent_at[step], dsa_time_now's clock, which the client uses too).
 * Scripts: ok, chat, 500, reset, malformed, garbage, truncated, error_event,
 * no_tokens, silent (see fake_sse.c).  Every thread is joined by
 * fake_sse_stop; a server that gets fewer connections than expected gives
 * up after 20 s. */
#ifndef DSA_TESTS_FAKE_SSE_H
#define DSA_TESTS_FAKE_SSE_H

#include <pthread.h>

#define FAKE_MAX_CONNS 16
#define FAKE_MAX_STEPS 16

typedef struct fake_conn {
    int fd;
    pthread_t th;
    int started;
    char script[32];
    double t_request;               /* the request was read completely */
    double sent_at[FAKE_MAX_STEPS]; /* just before step k was written */
    int n_steps;
} fake_conn;

typedef struct fake_sse {
    int listen_fd, port, n_expected, n_conns;
    volatile int stop;
    pthread_t acceptor;
    fake_conn conns[FAKE_MAX_CONNS];
} fake_sse;

/* 0 on success. */
int fake_sse_start(fake_sse *s, int n_conns);
void fake_sse_stop(fake_sse *s);
/* The connection accepted i-th (requests sent one at a time map 1:1). */
int fake_sse_conn_of(const fake_sse *s, int i);
/* A loopback port nothing listens on (bound, then closed); 0 on failure. */
int fake_sse_free_port(void);

#endif
