/* main.c - dsa-head: the OpenAI-compatible HTTP head.
 *
 *   dsa-head --model DIR [--host H --port P --api-key K ...]
 *
 * Options come from one declarative table (STYLE.md rule 18) with vLLM's
 * names where vLLM has the option.  API keys: --api-key (repeatable),
 * --api-key-file (one key a line) and DSA_API_KEY.
 *
 * Distributed (docs/distributed.md):
 *   mpirun -np 1 dsa-head --model DIR ... : -np N dsa-worker --model DIR --tp T
 * --distributed auto (default) turns MPI on when the launcher says the job
 * has more than one rank (OMPI_COMM_WORLD_SIZE or PMI_SIZE > 1); then MPI
 * starts first thing (every rank must) and the head drives the workers
 * over the MPI transport.  Otherwise no MPI call is made at all. */
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "common/log.h"
#include "head/server.h"
#include "common/spec_config.h"
#include "proto/step.h"
#include "worker/lm_head.h"
#ifdef DSA_HAVE_MPI
#include "proto/mpi_transport.h"
#endif

#define OPT(name, type, field, lo, hi, def, meta, help, req) \
    {name, type, offsetof(dsa_head_opts, field), lo, hi, def, meta, help, req}
static const dsa_option head_options[] = {
    OPT("model", DSA_OPT_STRING, model, 0, 0, NULL, "DIR", "checkpoint directory (Hugging Face layout)", 1),
    OPT("host", DSA_OPT_STRING, host, 0, 0, "127.0.0.1", "ADDR", "address to listen on", 0),
    OPT("port", DSA_OPT_INT, port, 0, 65535, "8000", "N", "TCP port; 0 picks a free one", 0),
    OPT("api-key", DSA_OPT_STRING_LIST, api_key, 0, 0, NULL, "KEY", "accepted Bearer key (repeatable; also DSA_API_KEY)", 0),
    OPT("api-key-file", DSA_OPT_STRING, api_key_file, 0, 0, NULL, "FILE", "file with one accepted key a line", 0),
    OPT("served-model-name", DSA_OPT_STRING, served_model_name, 0, 0, NULL, "NAME", "model name in the API (default: the model directory's name)", 0),
    OPT("max-model-len", DSA_OPT_INT, max_model_len, 0, 1 << 24, "0", "N", "context length, prompt + output; 0: the model's max_position_embeddings", 0),
    OPT("max-num-seqs", DSA_OPT_INT, max_num_seqs, 1, 65536, "256", "N", "sequences in one batch", 0),
    OPT("max-num-batched-tokens", DSA_OPT_INT, max_num_batched_tokens, 1, 1 << 24, "2048", "N", "token budget of one step (prompts are chunked to fit)", 0),
    OPT("max-queued", DSA_OPT_INT, max_queued, 0, 1 << 24, "1024", "N", "sequences waiting for a slot before new requests get 429", 0),
    OPT("block-size", DSA_OPT_INT, block_size, 1, 4096, "64", "N", "KV cache block size in tokens", 0),
    OPT("num-gpu-blocks-override", DSA_OPT_INT, num_gpu_blocks_override, 0, 1LL << 31, "0", "N", "KV cache blocks; 0 sizes the cache from --kv-cache-memory", 0),
    OPT("device", DSA_OPT_STRING, device, 0, 0, "cpu", "DEV", "device of the in-process worker: cpu, cuda or cuda:N (CUDA builds; the worker holds 90% of the GPU's memory)", 0),
    OPT("kv-cache-memory", DSA_OPT_INT, kv_cache_memory, 0, 1LL << 50, "0", "BYTES", "KV cache budget in bytes of the in-process worker; 0: 256 MiB on the CPU, all the GPU memory left after the weights on CUDA (capped at what --max-num-seqs full sequences need)", 0),
    OPT("gpu-memory-utilization", DSA_OPT_DOUBLE, gpu_memory_utilization, 0.01, 1, "1", "F", "share of the KV blocks the workers report that the scheduler uses (the CPU worker sizes its cache from --kv-cache-memory)", 0),
    OPT("no-enable-prefix-caching", DSA_OPT_FLAG, no_enable_prefix_caching, 0, 0, NULL, NULL, "do not reuse cached KV blocks of shared prompt prefixes", 0),
    OPT("threads", DSA_OPT_INT, threads, 0, 1024, "0", "N", "CPU worker threads; 0: one per core", 0),
    OPT("max-connections", DSA_OPT_INT, max_connections, 1, 1 << 20, "8192", "N", "open connections before new ones get 503", 0),
    OPT("max-header-bytes", DSA_OPT_INT, max_header_bytes, 256, 1 << 24, "65536", "BYTES", "request line + headers limit (431)", 0),
    OPT("max-body-bytes", DSA_OPT_INT, max_body_bytes, 1024, 1LL << 32, "33554432", "BYTES", "request body limit (413)", 0),
    OPT("max-unsent-total", DSA_OPT_INT, max_unsent_total, 0, 1LL << 42, "268435456", "BYTES", "bytes queued for all streaming clients together: past it new streams get 503 and the client furthest behind is disconnected; 0: no bound", 0),
    OPT("max-unsent-bytes", DSA_OPT_INT, max_unsent_bytes, 4096, 1LL << 40, "67108864", "BYTES", "a streaming client this far behind is disconnected (its request aborted)", 0),
    OPT("tokenize-inline-bytes", DSA_OPT_INT, tokenize_inline_bytes, 0, 1LL << 32, "4096", "BYTES", "longer prompts are tokenized on the thread pool, off the loop", 0),
    OPT("drain-timeout", DSA_OPT_DOUBLE, drain_timeout, 0, 86400, "30", "SEC", "after SIGTERM/SIGINT, how long in-flight requests may finish", 0),
    OPT("timeout-keep-alive", DSA_OPT_DOUBLE, timeout_keep_alive, 0.01, 86400, "5", "SEC", "idle keep-alive connections are closed after this (also VLLM_HTTP_TIMEOUT_KEEP_ALIVE); set it above the load balancer's idle timeout", 0),
    OPT("request-timeout", DSA_OPT_DOUBLE, request_timeout, 0.01, 86400, "30", "SEC", "a request must arrive completely within this (408)", 0),
    OPT("chat-template-variant", DSA_OPT_STRING, chat_template_variant, 0, 0, "auto", "NAME", "auto, v3 or r1 (auto detects from tokenizer_config.json)", 0),
    OPT("generation-config", DSA_OPT_STRING, generation_config, 0, 0, "auto", "MODE", "default sampling parameters: auto (the model's generation_config.json), vllm (vLLM's own defaults) or a folder holding a generation_config.json", 0),
    OPT("allowed-origins", DSA_OPT_STRING, allowed_origins, 0, 0, "[\"*\"]", "JSON", "CORS: allowed origins, a JSON list (as vLLM)", 0),
    OPT("allowed-methods", DSA_OPT_STRING, allowed_methods, 0, 0, "[\"*\"]", "JSON", "CORS: allowed methods, a JSON list (as vLLM)", 0),
    OPT("allowed-headers", DSA_OPT_STRING, allowed_headers, 0, 0, "[\"*\"]", "JSON", "CORS: allowed headers, a JSON list (as vLLM)", 0),
    OPT("allow-credentials", DSA_OPT_FLAG, allow_credentials, 0, 0, NULL, NULL, "CORS: allow credentials (as vLLM)", 0),
    OPT("protect-metrics", DSA_OPT_FLAG, protect_metrics, 0, 0, NULL, NULL, "require an API key for /metrics too", 0),
    OPT("disable-log-requests", DSA_OPT_FLAG, disable_log_requests, 0, 0, NULL, NULL, "do not log each request", 0),
    OPT("log-format", DSA_OPT_STRING, log_format, 0, 0, "json", "FMT", "json (one object a line) or text", 0),
    OPT("log-level", DSA_OPT_STRING, log_level, 0, 0, "info", "LEVEL", "debug, info, warn or error", 0),
    OPT("port-file", DSA_OPT_STRING, port_file, 0, 0, NULL, "FILE", "write the bound port here once listening (for tests)", 0),
    OPT("tensor-parallel-size", DSA_OPT_INT, tensor_parallel_size, 0, 1024, "0", "N", "TP size the workers must form (they set the layout; another one is refused: /health and requests 503 with the reason); 0: accept theirs", 0),
    OPT("pipeline-parallel-size", DSA_OPT_INT, pipeline_parallel_size, 0, 1024, "0", "N", "pipeline stages the workers must form, checked like --tensor-parallel-size; 0: accept theirs", 0),
    OPT("distributed", DSA_OPT_STRING, distributed, 0, 0, "auto", "MODE", "auto, on or off: drive dsa-worker ranks over MPI (auto: when mpirun started more than one rank)", 0),
    OPT("step-timeout", DSA_OPT_DOUBLE, step_timeout, 0.1, 86400, "60", "SEC", "distributed: a step's result must come within this, else the job ends", 0),
    OPT("health-late-timeout", DSA_OPT_DOUBLE, health_late_timeout, 0.1, 86400, "5", "SEC", "distributed: /health answers 503 once a step's result or a ping's answer is this late (the job still ends at --step-timeout)", 0),
    OPT("ping-interval", DSA_OPT_DOUBLE, ping_interval, 0.05, 3600, "1", "SEC", "distributed: while no step runs, ping the workers this often", 0),
    OPT("hello-timeout", DSA_OPT_DOUBLE, hello_timeout, 0.1, 86400, "1800", "SEC", "distributed: every worker must have loaded its shard within this", 0),
    OPT("lm-head-dtype", DSA_OPT_STRING, lm_head_dtype, 0, 0, "auto", "DTYPE", "lm_head of the in-process worker as stored (auto), or as an FP8 e4m3 (fp8) or int8 (int8, CPU) copy made at load (its logit error is logged; distributed workers need the same flag)", 0),
    OPT("cpu-int8-activations", DSA_OPT_FLAG, cpu_int8_act, 0, 0, NULL, NULL, "in-process CPU worker: AWQ int4 linears quantise activations to int8 (blocks of 32) and run integer dot products (logits differ from the F32 reference path by the rounding: docs/api-parameters.md; distributed workers need the same flag)", 0),
    OPT("speculative-config", DSA_OPT_STRING, speculative_config, 0, 0, NULL, "JSON", "speculative decoding with the checkpoint's MTP module, as vLLM: {\"method\": \"deepseek_mtp\", \"num_speculative_tokens\": K} (K drafts verified per step, 1 to 8; distributed workers need the same flag)", 0),
    OPT("preflight-timeout", DSA_OPT_DOUBLE, preflight_timeout, 0.1, 3600, "30", "SEC", "distributed: bound on MPI start-up and its self-test", 0),
};
#undef OPT
#define N_OPTIONS ((int)(sizeof head_options / sizeof head_options[0]))

/* Reads one key a line (blank lines and #comments skipped) into keys. */
static int read_key_file(const char *path, char **buf, const char ***keys, int *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t cap = 0, len = 0;
    char tmp[4096];
    size_t r;
    while ((r = fread(tmp, 1, sizeof tmp, f)) > 0) {
        if (len + r + 1 > cap) {
            cap = (len + r + 1) * 2;
            char *nb = realloc(*buf, cap);
            if (!nb) {
                fclose(f);
                return -1;
            }
            *buf = nb;
        }
        memcpy(*buf + len, tmp, r);
        len += r;
    }
    fclose(f);
    if (!*buf)
        return 0;
    (*buf)[len] = 0;
    for (char *save = NULL, *line = strtok_r(*buf, "\r\n", &save); line;
         line = strtok_r(NULL, "\r\n", &save)) {
        while (*line == ' ' || *line == '\t')
            line++;
        char *end = line + strlen(line);
        while (end > line && (end[-1] == ' ' || end[-1] == '\t'))
            *--end = 0;
        if (!*line || *line == '#')
            continue;
        const char **nk = realloc(*keys, (size_t)(*n + 1) * sizeof *nk);
        if (!nk)
            return -1;
        *keys = nk;
        (*keys)[(*n)++] = line;
    }
    return 0;
}

/* --distributed from the command line before the options are parsed (MPI
 * starts before anything else): "auto" when absent. */
static const char *distributed_arg(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--distributed") && i + 1 < argc)
            return argv[i + 1];
        if (!strncmp(argv[i], "--distributed=", 14))
            return argv[i] + 14;
    }
    return "auto";
}

static int arg_given(int argc, char **argv, const char *name)
{
    size_t n = strlen(name);
    for (int i = 1; i < argc; i++)
        if (!strncmp(argv[i], name, n) && (argv[i][n] == 0 || argv[i][n] == '='))
            return 1;
    return 0;
}

static int launcher_ranks(void)
{
    const char *v = getenv("OMPI_COMM_WORLD_SIZE");
    if (!v || !*v)
        v = getenv("PMI_SIZE");
    return v && *v ? atoi(v) : 1;
}

/* Options, logging, keys, then the server; the exit code. */
static int serve(dsa_head_opts *op, int argc, char **argv)
{
    dsa_head_opts o = {0};
    int help = 0;
    /* A client that closes its socket while a response is being written
     * must cost an EPIPE on that write, not the process (libuv leaves
     * SIGPIPE to the application). */
    signal(SIGPIPE, SIG_IGN);
    dsa_err err = dsa_options_parse(head_options, N_OPTIONS, &o, argc, argv, &help);
    if (help) {
        dsa_options_usage(stdout, "dsa-head",
                          "Serves a DeepSeek-V3/R1 checkpoint over an OpenAI-compatible HTTP API.",
                          head_options, N_OPTIONS);
        dsa_options_free(head_options, N_OPTIONS, &o);
        return 0;
    }
    if (err) {
        fprintf(stderr, "dsa-head: %s\n", dsa_errmsg());
        dsa_options_free(head_options, N_OPTIONS, &o);
        return 2;
    }
    o.mpi = op->mpi;
    if (dsa_spec_config_parse(o.speculative_config, DSA_SPEC_TOKENS_MAX, &o.spec_k)) {
        fprintf(stderr, "dsa-head: %s\n", dsa_errmsg());
        dsa_options_free(head_options, N_OPTIONS, &o);
        return 2;
    }
    dsa_lm_head_dtype lm_head_dtype;
    if (dsa_lm_head_dtype_parse(o.lm_head_dtype, &lm_head_dtype)) {
        fprintf(stderr, "dsa-head: %s\n", dsa_errmsg());
        dsa_options_free(head_options, N_OPTIONS, &o);
        return 2;
    }
    o.lm_head_quant = (int)lm_head_dtype;
    /* vLLM's environment variable for uvicorn's keep-alive, when the
     * option is not given */
    const char *ka = getenv("VLLM_HTTP_TIMEOUT_KEEP_ALIVE");
    if (ka && *ka && !arg_given(argc, argv, "--timeout-keep-alive")) {
        char *end;
        double v = strtod(ka, &end);
        if (*end || !(v >= 0.01 && v <= 86400)) {
            fprintf(stderr, "dsa-head: VLLM_HTTP_TIMEOUT_KEEP_ALIVE=%s: expected seconds in "
                    "[0.01, 86400]\n", ka);
            dsa_options_free(head_options, N_OPTIONS, &o);
            return 2;
        }
        o.timeout_keep_alive = v;
    }
    dsa_log_level level = DSA_LOG_INFO;
    if (!strcmp(o.log_level, "debug"))
        level = DSA_LOG_DEBUG;
    else if (!strcmp(o.log_level, "warn"))
        level = DSA_LOG_WARN;
    else if (!strcmp(o.log_level, "error"))
        level = DSA_LOG_ERROR;
    else if (strcmp(o.log_level, "info")) {
        fprintf(stderr, "dsa-head: --log-level: expected debug, info, warn or error\n");
        dsa_options_free(head_options, N_OPTIONS, &o);
        return 2;
    }
    if (strcmp(o.log_format, "json") && strcmp(o.log_format, "text")) {
        fprintf(stderr, "dsa-head: --log-format: expected json or text\n");
        dsa_options_free(head_options, N_OPTIONS, &o);
        return 2;
    }
    dsa_log_setup(level, !strcmp(o.log_format, "json"));
    /* one descriptor per connection: raise the soft limit to the hard one */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    const char **keys = NULL;
    int n_keys = 0, rc = 2;
    char *key_buf = NULL;
    for (int i = 0; i < o.api_key.n; i++) {
        const char **nk = realloc(keys, (size_t)(n_keys + 1) * sizeof *nk);
        if (!nk)
            goto out;
        keys = nk;
        keys[n_keys++] = o.api_key.items[i];
    }
    const char *env = getenv("DSA_API_KEY");
    if (env && *env) {
        const char **nk = realloc(keys, (size_t)(n_keys + 1) * sizeof *nk);
        if (!nk)
            goto out;
        keys = nk;
        keys[n_keys++] = env;
    }
    if (o.api_key_file && read_key_file(o.api_key_file, &key_buf, &keys, &n_keys)) {
        fprintf(stderr, "dsa-head: --api-key-file %s: cannot read it\n", o.api_key_file);
        goto out;
    }
    rc = dsa_head_run(&o, keys, n_keys);
out:
    free(keys);
    free(key_buf);
    dsa_options_free(head_options, N_OPTIONS, &o);
    return rc;
}

int main(int argc, char **argv)
{
    dsa_head_opts o = {0};
    const char *dist = distributed_arg(argc, argv);
    int use_mpi = !strcmp(dist, "on") || (!strcmp(dist, "auto") && launcher_ranks() > 1);
    if (strcmp(dist, "on") && strcmp(dist, "off") && strcmp(dist, "auto")) {
        fprintf(stderr, "dsa-head: --distributed: expected auto, on or off\n");
        return 2;
    }
#ifdef DSA_HAVE_MPI
    static dsa_mpi_env mpi_env;
    if (use_mpi) {
        double pre = 30;
        for (int i = 1; i + 1 < argc; i++)
            if (!strcmp(argv[i], "--preflight-timeout"))
                pre = atof(argv[i + 1]);
        if (dsa_mpi_init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, pre > 0 ? pre : 30,
                                &mpi_env))
            dsa_mpi_abort(&mpi_env, 2, "dsa-head: MPI start-up: %s", dsa_errmsg());
        if (mpi_env.rank != 0)
            dsa_mpi_abort(&mpi_env, 2, "dsa-head runs on rank 0 only (this is rank %d)",
                          mpi_env.rank);
        if (mpi_env.size < 2)
            dsa_mpi_abort(&mpi_env, 2, "--distributed on: the job has no worker ranks "
                          "(mpirun -np 1 dsa-head ... : -np N dsa-worker ...)");
        o.mpi = &mpi_env;
    }
#else
    if (use_mpi) {
        fprintf(stderr, "dsa-head: --distributed %s: this build has no MPI\n", dist);
        return 2;
    }
#endif
    int rc = serve(&o, argc, argv);
#ifdef DSA_HAVE_MPI
    if (o.mpi) {
        /* dsa_head_run ends the job itself on failures; this covers bad
         * options, which the workers would otherwise wait out */
        if (rc)
            dsa_mpi_abort(&mpi_env, rc, "dsa-head exits with code %d", rc);
        MPI_Finalize();
    }
#endif
    return rc;
}

