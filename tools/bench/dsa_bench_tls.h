/* dsa_bench_tls.h - TLS for dsa-bench's connections (OpenSSL), driven
 * through memory BIOs so that the libuv loop keeps doing all socket I/O.
 *
 * A dsa_bench_tls_ctx holds the settings of a run: the trust store (the
 * system's, or only the PEM file given), whether the peer certificate is
 * verified, and the server name.  The name is sent as SNI (unless it is an
 * IP literal, which SNI does not carry) and the certificate must match it
 * (DNS name, or IP address for a literal).
 *
 * A dsa_bench_tls is one connection's state.  The caller moves bytes:
 * received ciphertext in with dsa_bench_tls_feed, ciphertext to send out
 * with dsa_bench_tls_take_output after every call that may produce some
 * (handshake, write, read).
 *
 * Threads: a context may be shared by the connections of one loop; nothing
 * here is shared across threads. */
#ifndef DSA_BENCH_TLS_H
#define DSA_BENCH_TLS_H

#include <stddef.h>
#include <sys/types.h>

#include "common/error.h"

typedef struct dsa_bench_tls_ctx dsa_bench_tls_ctx;
typedef struct dsa_bench_tls dsa_bench_tls;

typedef struct dsa_bench_tls_params {
    const char *server_name; /* host of the URL: SNI and the name checked */
    const char *ca_file;     /* PEM bundle trusted instead of the system store; NULL: system */
    int insecure;            /* 1: no certificate or name check */
} dsa_bench_tls_params;

dsa_err dsa_bench_tls_ctx_new(const dsa_bench_tls_params *p, dsa_bench_tls_ctx **out);
void dsa_bench_tls_ctx_free(dsa_bench_tls_ctx *ctx);

/* A client connection in the handshake's initial state. */
dsa_err dsa_bench_tls_new(dsa_bench_tls_ctx *ctx, dsa_bench_tls **out);
void dsa_bench_tls_free(dsa_bench_tls *t);

/* Hands received ciphertext to the TLS engine. */
dsa_err dsa_bench_tls_feed(dsa_bench_tls *t, const char *data, size_t n);

/* Advances the handshake: 1 when it is complete, 0 when it needs more input,
 * -2 when the server's certificate failed the checks (retrying cannot help),
 * -1 on any other failure; the reason is in msg. */
int dsa_bench_tls_handshake(dsa_bench_tls *t, char *msg, size_t cap);

/* Encrypts n plaintext bytes (only after the handshake): 0 or -1 with msg. */
int dsa_bench_tls_write(dsa_bench_tls *t, const char *data, size_t n, char *msg, size_t cap);

/* Decrypts into buf: bytes > 0, 0 when it needs more input, -2 when the
 * peer closed the TLS session (close_notify), -1 on failure with msg. */
ssize_t dsa_bench_tls_read(dsa_bench_tls *t, char *buf, size_t cap, char *msg, size_t mcap);

/* Ciphertext waiting to be sent, malloc'd into *out (NULL when none, or on
 * allocation failure: -1); *n its length.  Returns 0 or -1. */
int dsa_bench_tls_take_output(dsa_bench_tls *t, char **out, size_t *n);

#endif
