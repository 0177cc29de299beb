/* dsa_bench_client.h - dsa-bench's load generator: streaming OpenAI
 * requests over HTTP/1.1 (libuv + llhttp), plain or in TLS (OpenSSL,
 * dsa_bench_tls.h), timed the way vLLM's benchmark client times them.
 *
 * Each request opens its own connection, sends one POST with "stream": true
 * and stream_options.include_usage, and reads the SSE stream.  Timings
 * follow vllm/benchmarks/lib/endpoint_request_func.py:
 *   st           monotonic time just before the connection is opened
 *                (aiohttp's session.post includes acquiring a connection);
 *   ttft         arrival of the first token chunk - st;
 *   itl[]        arrival of each later token chunk - arrival of the chunk
 *                before it;
 *   latency      arrival of the last counted chunk - st (E2EL).
 * A "token chunk" is, for /v1/completions, every data event whose choices
 * array is non-empty (vLLM counts it even when its text is empty); for
 * /v1/chat/completions, a data event whose choices[0].delta carries
 * non-empty content or reasoning_content (R1's thinking counts as output).
 * vLLM's chat client counts any chunk with choices, which makes a server's
 * early role-only chunk the "first token": we do not.  As in vLLM, the chat
 * latency ends at the last data event of any kind (the usage chunk
 * included) and the completions latency at the last chunk with choices.
 * All events delivered by one read share that read's timestamp, as with
 * aiohttp's iter_any().
 *
 * output_tokens is usage.completion_tokens of the usage chunk (0 when the
 * server sent none: the caller then counts tokens of the text, as vLLM).
 *
 * A request fails (success 0, error set) on: connection errors and resets,
 * a status other than 200, a malformed HTTP response, a body that ends early,
 * a data event that is not JSON, an {"error": ...} event, no token chunk at
 * all, the per-request timeout, or a failed TLS handshake (a certificate
 * that fails verification sets `permanent`).  Failures are counted, never
 * fatal.  With TLS, st still precedes the TCP connect, so TTFT includes the
 * handshake (as aiohttp's does).
 *
 * Threads: everything runs on the calling thread's own uv loop. */
#ifndef DSA_BENCH_CLIENT_H
#define DSA_BENCH_CLIENT_H

#include <stddef.h>

#include "common/error.h"

typedef enum dsa_bench_backend {
    DSA_BENCH_OPENAI,      /* /v1/completions */
    DSA_BENCH_OPENAI_CHAT, /* /v1/chat/completions */
} dsa_bench_backend;

/* One request to send (borrowed by the client for the run). */
typedef struct dsa_bench_request {
    const char *prompt;    /* UTF-8, NUL-terminated */
    int prompt_len;        /* tokens, as the dataset counted them */
    int output_len;        /* max_tokens */
} dsa_bench_request;

/* One request's outcome: vLLM's RequestFuncOutput.  Times in seconds. */
typedef struct dsa_bench_result {
    int success;
    double start;          /* st: monotonic clock (dsa_time_now) */
    double ttft;
    double latency;        /* E2EL */
    double *itl;           /* n_itl inter-token latencies, owned */
    int n_itl, cap_itl;
    int output_tokens;     /* usage.completion_tokens; 0 when absent */
    int usage_prompt_tokens; /* usage.prompt_tokens; -1 when absent */
    int n_chunks;          /* token chunks received */
    int http_status;       /* 0 when no status line arrived */
    int permanent;         /* failed in a way retrying cannot fix (certificate) */
    char *text;            /* generated text, owned, NUL-terminated */
    size_t n_text, cap_text;
    char error[512];       /* empty on success */
} dsa_bench_result;

void dsa_bench_result_deinit(dsa_bench_result *r);

typedef struct dsa_bench_client_params {
    const char *host;      /* numeric address or name */
    int port;
    int tls;               /* 1: https (SNI and certificate checks against host) */
    const char *ca_file;   /* TLS: PEM CAs trusted instead of the system store */
    int insecure;          /* TLS: no certificate verification */
    const char *path;      /* request path, e.g. "/v1/completions" */
    const char *host_header; /* Host: value; NULL: host:port */
    dsa_bench_backend backend;
    const char *model;     /* "model" field; NULL: left out */
    const char *api_key;   /* Bearer token; NULL: no Authorization header */
    int ignore_eos;
    double temperature;    /* < 0: left out (the server's default) */
    double timeout_s;      /* per request, from st; <= 0: none */
    int max_concurrency;   /* requests in flight at most; 0: unlimited */
    /* Send times in seconds after the start, non-decreasing (n of them);
     * NULL: all at once.  A request whose time came while max_concurrency
     * requests are in flight waits for one to finish, as in vLLM (the
     * semaphore is taken after the arrival). */
    const double *send_at;
    /* Progress: called after each finished request on the loop thread. */
    void (*on_progress)(void *user, int n_done, int n_total);
    void *user;
} dsa_bench_client_params;

/* Runs n requests; out[i] receives request i's outcome (zeroed first; the
 * caller deinits each).  *duration_s: from the first send slot until the
 * last request ended (vLLM's benchmark_duration).  Fails only when the run
 * cannot happen at all (address not resolvable, CA file unreadable, out of
 * memory); failed
 * requests are reported in out[]. */
dsa_err dsa_bench_client_run(const dsa_bench_client_params *p, const dsa_bench_request *reqs,
                             int n, dsa_bench_result *out, double *duration_s);

/* The JSON body dsa-bench sends for one request (malloc'd, caller frees);
 * exposed for tests. */
char *dsa_bench_client_body(const dsa_bench_client_params *p, const dsa_bench_request *r);

#endif
