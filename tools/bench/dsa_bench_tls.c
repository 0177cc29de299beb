/* dsa_bench_tls.c - see dsa_bench_tls.h. */
#include "tools/bench/dsa_bench_tls.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct dsa_bench_tls_ctx {
    SSL_CTX *ssl;
    char *server_name;
    int is_ip;
    int insecure;
};

struct dsa_bench_tls {
    dsa_bench_tls_ctx *ctx;
    SSL *ssl;
    BIO *in;  /* ciphertext received, read by OpenSSL */
    BIO *out; /* ciphertext OpenSSL produced, to send */
};

static int is_ip_literal(const char *s)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* The first queued OpenSSL error as text, the queue cleared. */
static void ssl_error_text(const char *what, char *msg, size_t cap)
{
    unsigned long e = ERR_get_error();
    char detail[256] = "no detail from OpenSSL";
    if (e)
        ERR_error_string_n(e, detail, sizeof detail);
    ERR_clear_error();
    snprintf(msg, cap, "%s: %s", what, detail);
}

dsa_err dsa_bench_tls_ctx_new(const dsa_bench_tls_params *p, dsa_bench_tls_ctx **out)
{
    *out = NULL;
    char msg[400];
    dsa_bench_tls_ctx *c = calloc(1, sizeof *c);
    if (!c || !(c->server_name = strdup(p->server_name ? p->server_name : ""))) {
        free(c);
        return dsa_fail(DSA_NOMEM, "TLS context");
    }
    c->is_ip = is_ip_literal(c->server_name);
    c->insecure = p->insecure;
    dsa_err err = DSA_OK;
    if (!(c->ssl = SSL_CTX_new(TLS_client_method()))) {
        ssl_error_text("SSL_CTX_new", msg, sizeof msg);
        err = dsa_fail(DSA_INTERNAL, "TLS: %s", msg);
        goto fail;
    }
    SSL_CTX_set_min_proto_version(c->ssl, TLS1_2_VERSION);
    if (p->insecure) {
        SSL_CTX_set_verify(c->ssl, SSL_VERIFY_NONE, NULL);
    } else {
        SSL_CTX_set_verify(c->ssl, SSL_VERIFY_PEER, NULL);
        int ok = p->ca_file ? SSL_CTX_load_verify_locations(c->ssl, p->ca_file, NULL)
                            : SSL_CTX_set_default_verify_paths(c->ssl);
        if (ok != 1) {
            ssl_error_text(p->ca_file ? p->ca_file : "the system CA store", msg, sizeof msg);
            err = dsa_fail(p->ca_file ? DSA_IO : DSA_INTERNAL,
                           "TLS: cannot load CA certificates from %s", msg);
            goto fail;
        }
    }
    *out = c;
    return DSA_OK;
fail:
    dsa_bench_tls_ctx_free(c);
    return err;
}

void dsa_bench_tls_ctx_free(dsa_bench_tls_ctx *ctx)
{
    if (!ctx)
        return;
    SSL_CTX_free(ctx->ssl);
    free(ctx->server_name);
    free(ctx);
}

dsa_err dsa_bench_tls_new(dsa_bench_tls_ctx *ctx, dsa_bench_tls **out)
{
    *out = NULL;
    dsa_bench_tls *t = calloc(1, sizeof *t);
    if (!t)
        return dsa_fail(DSA_NOMEM, "TLS connection");
    t->ctx = ctx;
    t->ssl = SSL_new(ctx->ssl);
    t->in = BIO_new(BIO_s_mem());
    t->out = BIO_new(BIO_s_mem());
    if (!t->ssl || !t->in || !t->out) {
        BIO_free(t->in);
        BIO_free(t->out);
        SSL_free(t->ssl);
        free(t);
        ERR_clear_error();
        return dsa_fail(DSA_NOMEM, "TLS connection");
    }
    /* An empty memory BIO means "no data yet", not end of file. */
    BIO_set_mem_eof_return(t->in, -1);
    SSL_set_bio(t->ssl, t->in, t->out); /* the SSL owns both BIOs now */
    int ok = 1;
    if (!ctx->is_ip && ctx->server_name[0])
        ok &= SSL_set_tlsext_host_name(t->ssl, ctx->server_name) == 1;
    if (!ctx->insecure) {
        if (ctx->is_ip)
            ok &= X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), ctx->server_name) == 1;
        else
            ok &= SSL_set1_host(t->ssl, ctx->server_name) == 1;
    }
    if (!ok) {
        dsa_bench_tls_free(t);
        ERR_clear_error();
        return dsa_fail(DSA_INVAL, "TLS: cannot use '%s' as the server name", ctx->server_name);
    }
    SSL_set_connect_state(t->ssl);
    *out = t;
    return DSA_OK;
}

void dsa_bench_tls_free(dsa_bench_tls *t)
{
    if (!t)
        return;
    SSL_free(t->ssl);
    free(t);
}

dsa_err dsa_bench_tls_feed(dsa_bench_tls *t, const char *data, size_t n)
{
    while (n) {
        int chunk = n > (1u << 30) ? 1 << 30 : (int)n;
        int w = BIO_write(t->in, data, chunk);
        if (w <= 0)
            return dsa_fail(DSA_NOMEM, "TLS: buffering received bytes");
        data += w;
        n -= (size_t)w;
    }
    return DSA_OK;
}

int dsa_bench_tls_handshake(dsa_bench_tls *t, char *msg, size_t cap)
{
    int rc = SSL_do_handshake(t->ssl);
    if (rc == 1)
        return 1;
    int e = SSL_get_error(t->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    long v = SSL_get_verify_result(t->ssl);
    if (v != X509_V_OK) {
        ERR_clear_error();
        snprintf(msg, cap,
                 "TLS handshake with %s: certificate verify failed: %s "
                 "(trust its CA with --ca-cert FILE, or skip the check with --insecure)",
                 t->ctx->server_name, X509_verify_cert_error_string(v));
        return -2;
    }
    char what[300];
    snprintf(what, sizeof what, "TLS handshake with %s", t->ctx->server_name);
    ssl_error_text(what, msg, cap);
    return -1;
}

int dsa_bench_tls_write(dsa_bench_tls *t, const char *data, size_t n, char *msg, size_t cap)
{
    while (n) {
        int chunk = n > (1u << 30) ? 1 << 30 : (int)n;
        int w = SSL_write(t->ssl, data, chunk);
        if (w <= 0) {
            ssl_error_text("TLS write", msg, cap);
            return -1;
        }
        data += w;
        n -= (size_t)w;
    }
    return 0;
}

ssize_t dsa_bench_tls_read(dsa_bench_tls *t, char *buf, size_t cap, char *msg, size_t mcap)
{
    int r = SSL_read(t->ssl, buf, cap > (1u << 30) ? 1 << 30 : (int)cap);
    if (r > 0)
        return r;
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    if (e == SSL_ERROR_ZERO_RETURN)
        return -2;
    ssl_error_text("TLS read", msg, mcap);
    return -1;
}

int dsa_bench_tls_take_output(dsa_bench_tls *t, char **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    size_t pending = BIO_ctrl_pending(t->out);
    if (!pending)
        return 0;
    char *b = malloc(pending);
    if (!b)
        return -1;
    int r = BIO_read(t->out, b, (int)pending);
    if (r <= 0) {
        free(b);
        return -1;
    }
    *out = b;
    *n = (size_t)r;
    return 0;
}
