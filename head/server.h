/* server.h - dsa-head's application: the OpenAI endpoints on top of
 * head/http.h, the engine thread and the in-process worker, auth, limits,
 * metrics, health, and the SIGTERM/SIGINT drain.
 *
 * dsa_head_run owns the loop: it starts listening at once (/health answers
 * 503 while the model loads on a worker thread), serves until a signal,
 * drains and returns the process exit code. */
#ifndef DSA_HEAD_SERVER_H
#define DSA_HEAD_SERVER_H

#include "common/options.h"

struct dsa_mpi_env;

typedef struct dsa_head_opts {
    const char *model;
    const char *host;
    long long port;
    dsa_strlist api_key;
    const char *api_key_file;
    const char *served_model_name;
    long long max_model_len;
    long long max_num_seqs;
    long long max_num_batched_tokens;
    long long max_queued;
    long long block_size;
    long long num_gpu_blocks_override;
    const char *device;
    long long kv_cache_memory;
    double gpu_memory_utilization;
    int no_enable_prefix_caching;
    long long threads;
    long long max_connections;
    long long max_header_bytes;
    long long max_body_bytes;
    long long max_unsent_bytes;
    long long max_unsent_total;
    long long tokenize_inline_bytes;
    double drain_timeout;
    double timeout_keep_alive;
    double request_timeout;
    const char *chat_template_variant;
    const char *generation_config;  /* auto, vllm or a folder */
    int protect_metrics;
    /* CORS as vLLM (head/cors.h): JSON lists */
    const char *allowed_origins, *allowed_methods, *allowed_headers;
    int allow_credentials;
    int disable_log_requests;
    const char *log_format;
    const char *log_level;
    const char *port_file;
    /* distributed (docs/distributed.md) */
    const char *distributed;    /* auto, on, off */
    double step_timeout, hello_timeout, preflight_timeout;
    double health_late_timeout; /* /health 503 once the workers are this late */
    double ping_interval;       /* idle: ping the workers this often */
    /* the layout the deployment configured (0: whatever the workers
     * form); another one is refused at start (no engine, /health 503) */
    long long tensor_parallel_size, pipeline_parallel_size;
    /* set by main, not an option: the MPI job when distributed, else NULL.
     * Then the load step waits for the workers (dsa_mpi_transport_create),
     * a transport error ends the job (dsa_mpi_abort) and a clean exit
     * sends Shutdown; main calls MPI_Finalize. */
    struct dsa_mpi_env *mpi;
    /* vLLM's --speculative-config (JSON, head/spec_config.h); main sets
     * spec_k from it: num_speculative_tokens, 0 without speculation */
    const char *speculative_config;
    int spec_k;
    /* --lm-head-dtype of the in-process worker (worker/lm_head.h); main
     * sets lm_head_quant (a dsa_lm_head_dtype) from it */
    const char *lm_head_dtype;
    int lm_head_quant;
    /* --cpu-int8-activations of the in-process worker (worker/step.h) */
    int cpu_int8_act;
} dsa_head_opts;

/* Serves until SIGTERM/SIGINT and the drain complete.  Returns 0 after a
 * clean drain, 1 when startup failed.  With o->mpi, any failure (startup,
 * a transport error: /health 503, every request failed, ~1.5 s to flush
 * the responses) ends the whole job with dsa_mpi_abort instead of
 * returning. */
int dsa_head_run(const dsa_head_opts *o, const char **api_keys, int n_api_keys);

#endif
