/* dsa_bench.c - dsa-bench: a benchmark_serving-style load generator for
 * OpenAI-compatible servers (dsa-head, vLLM, SGLang, ...).
 *
 *   dsa-bench --backend openai --port 8000 --tokenizer DIR \
 *             --dataset-name random --random-input-len 128 \
 *             --random-output-len 128 --num-prompts 100 --max-concurrency 8 \
 *             --save-result --result-dir out
 *
 * Flags carry vLLM's names (benchmarks/benchmark_serving.py, `vllm bench
 * serve`); metrics and result keys are vLLM's (dsa_bench_metrics.h).  As
 * vLLM does, one request with the first prompt is sent before the timed run
 * (retried until --ready-check-timeout-sec; not retried when the server's
 * certificate fails verification), so the run starts against a server that
 * answers.  https:// base URLs use TLS with the certificate verified against
 * the system CA store (--ca-cert FILE: only that file's CAs; --insecure: no
 * check) and the URL's host sent as SNI.  The process exits 0 when the run happened, failed
 * requests included (they are counted); 1 on a bad command line, dataset or
 * a server that never answered; 2 when the result cannot be written. */
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/options.h"
#include "common/tokenizer.h"
#include "tools/bench/dsa_bench_client.h"
#include "tools/bench/dsa_bench_data.h"
#include "tools/bench/dsa_bench_metrics.h"
#include "tools/bench/dsa_bench_report.h"

#define OPT(name, type, field, lo, hi, def, meta, help) \
    {name, type, offsetof(dsa_bench_opts, field), lo, hi, def, meta, help, 0}
static const dsa_option bench_options[] = {
    OPT("backend", DSA_OPT_STRING, backend, 0, 0, "openai", "NAME", "openai (/v1/completions) or openai-chat (/v1/chat/completions)"),
    OPT("base-url", DSA_OPT_STRING, base_url, 0, 0, NULL, "URL", "server URL, http[s]://HOST[:PORT][/PREFIX] (overrides --host/--port)"),
    OPT("ca-cert", DSA_OPT_STRING, ca_cert, 0, 0, NULL, "FILE", "https: trust only the CA certificates in this PEM file (default: the system store)"),
    OPT("insecure", DSA_OPT_FLAG, insecure, 0, 0, NULL, NULL, "https: do not verify the server's certificate"),
    OPT("host", DSA_OPT_STRING, host, 0, 0, "127.0.0.1", "HOST", "server address"),
    OPT("port", DSA_OPT_INT, port, 1, 65535, "8000", "N", "server port"),
    OPT("endpoint", DSA_OPT_STRING, endpoint, 0, 0, NULL, "PATH", "request path (default: /v1/completions or /v1/chat/completions by backend)"),
    OPT("model", DSA_OPT_STRING, model, 0, 0, NULL, "NAME|DIR", "model id; a directory also serves as the tokenizer, and its name is sent"),
    OPT("served-model-name", DSA_OPT_STRING, served_model_name, 0, 0, NULL, "NAME", "the \"model\" field sent (default: from --model; none: left out)"),
    OPT("tokenizer", DSA_OPT_STRING, tokenizer, 0, 0, NULL, "DIR", "directory with tokenizer.json (default: --model when it is a directory)"),
    OPT("api-key", DSA_OPT_STRING, api_key, 0, 0, NULL, "KEY", "Bearer key (default: $OPENAI_API_KEY)"),
    OPT("dataset-name", DSA_OPT_STRING, dataset_name, 0, 0, "random", "NAME", "random, sharegpt or sonnet"),
    OPT("dataset-path", DSA_OPT_STRING, dataset_path, 0, 0, NULL, "FILE", "ShareGPT JSON or sonnet text file"),
    OPT("num-prompts", DSA_OPT_INT, num_prompts, 1, 10000000, "1000", "N", "requests to send"),
    OPT("random-input-len", DSA_OPT_INT, random_input_len, 1, 1 << 24, "1024", "N", "random: prompt tokens (special tokens included)"),
    OPT("random-output-len", DSA_OPT_INT, random_output_len, 1, 1 << 24, "128", "N", "random: max_tokens"),
    OPT("random-range-ratio", DSA_OPT_DOUBLE, random_range_ratio, 0, 0.999999, "0", "R", "random: lengths uniform in [L(1-R), L(1+R)]"),
    OPT("random-prefix-len", DSA_OPT_INT, random_prefix_len, 0, 1 << 24, "0", "N", "random: tokens of a prefix shared by all prompts"),
    OPT("sharegpt-output-len", DSA_OPT_INT, sharegpt_output_len, 0, 1 << 24, "0", "N", "sharegpt: fixed max_tokens (0: the reference answer's length)"),
    OPT("sonnet-input-len", DSA_OPT_INT, sonnet_input_len, 1, 1 << 24, "550", "N", "sonnet: prompt tokens at most"),
    OPT("sonnet-output-len", DSA_OPT_INT, sonnet_output_len, 1, 1 << 24, "150", "N", "sonnet: max_tokens"),
    OPT("sonnet-prefix-len", DSA_OPT_INT, sonnet_prefix_len, 0, 1 << 24, "200", "N", "sonnet: tokens of the shared prefix"),
    OPT("request-rate", DSA_OPT_STRING, request_rate, 0, 0, "inf", "RPS", "requests per second (Poisson/gamma arrivals); inf: all at once"),
    OPT("burstiness", DSA_OPT_DOUBLE, burstiness, 1e-6, 1e9, "1.0", "K", "gamma shape of the gaps (1: Poisson; < 1 burstier)"),
    OPT("max-concurrency", DSA_OPT_INT, max_concurrency, 0, 1 << 24, "0", "N", "requests in flight at most (0: unlimited)"),
    OPT("ignore-eos", DSA_OPT_FLAG, ignore_eos, 0, 0, NULL, NULL, "send ignore_eos: every request generates its max_tokens"),
    OPT("temperature", DSA_OPT_DOUBLE, temperature, -1, 2, "-1", "T", "sampling temperature sent (-1: none, the server's default)"),
    OPT("seed", DSA_OPT_INT, seed, 0, 0, "0", "N", "seed of prompts and arrival times"),
    OPT("disable-tqdm", DSA_OPT_FLAG, disable_tqdm, 0, 0, NULL, NULL, "no progress bar"),
    OPT("percentile-metrics", DSA_OPT_STRING, percentile_metrics, 0, 0, "ttft,tpot,itl", "LIST", "metrics reported with percentiles: ttft,tpot,itl,e2el"),
    OPT("metric-percentiles", DSA_OPT_STRING, metric_percentiles, 0, 0, "99", "LIST", "percentiles reported, e.g. 25,50,99"),
    OPT("goodput", DSA_OPT_STRING_LIST, goodput, 0, 0, NULL, "KEY:MS", "SLO for goodput, ttft/tpot/e2el in ms, e.g. ttft:500"),
    OPT("save-result", DSA_OPT_FLAG, save_result, 0, 0, NULL, NULL, "write the result as JSON"),
    OPT("save-detailed", DSA_OPT_FLAG, save_detailed, 0, 0, NULL, NULL, "include generated texts in the JSON"),
    OPT("result-dir", DSA_OPT_STRING, result_dir, 0, 0, ".", "DIR", "directory of the JSON file"),
    OPT("result-filename", DSA_OPT_STRING, result_filename, 0, 0, NULL, "NAME", "file name (default: BACKEND-RATEqps[-concurrencyN]-MODEL-DATE.json)"),
    OPT("ready-check-timeout-sec", DSA_OPT_DOUBLE, ready_check_timeout, 0, 86400, "600", "SEC", "retry the initial test request this long (0: skip it)"),
    OPT("request-timeout", DSA_OPT_DOUBLE, request_timeout, 0, 1e7, "21600", "SEC", "one request's limit (0: none)"),
};
#undef OPT
#define N_OPTIONS ((int)(sizeof bench_options / sizeof bench_options[0]))

/* The progress bar: tqdm's layout on stderr, at most ten redraws a second. */
typedef struct progress {
    double t0, last;
    int enabled;
} progress;

static void on_progress(void *user, int done, int total)
{
    progress *pg = user;
    double now = dsa_time_now();
    if (!pg->enabled || (done < total && now - pg->last < 0.1))
        return;
    pg->last = now;
    double el = now - pg->t0, rate = el > 0 ? done / el : 0;
    double left = rate > 0 ? (total - done) / rate : 0;
    int w = 30, fill = total ? (int)((long long)w * done / total) : w;
    char bar[64];
    for (int i = 0; i < w; i++)
        bar[i] = i < fill ? '#' : ' ';
    bar[w] = 0;
    fprintf(stderr, "\r%3d%%|%s| %d/%d [%02d:%02d<%02d:%02d, %.2fit/s]",
            total ? 100 * done / total : 100, bar, done, total, (int)el / 60, (int)el % 60,
            (int)left / 60, (int)left % 60, rate);
    if (done == total)
        fputc('\n', stderr);
    fflush(stderr);
}

/* Splits http[s]://HOST[:PORT][/PREFIX] into o->host/o->port/url_prefix;
 * *tls is 1 for https. */
static dsa_err parse_base_url(dsa_bench_opts *o, char *host, size_t cap, char *prefix,
                              size_t pcap, int *tls)
{
    const char *u = o->base_url;
    if (strncmp(u, "http://", 7) == 0) {
        *tls = 0;
        u += 7;
    } else if (strncmp(u, "https://", 8) == 0) {
        *tls = 1;
        u += 8;
    } else {
        return dsa_fail(DSA_INVAL, "--base-url: '%s' must start with http:// or https://", u);
    }
    const char *slash = strchr(u, '/');
    size_t hl = slash ? (size_t)(slash - u) : strlen(u);
    snprintf(prefix, pcap, "%s", slash ? slash : "");
    size_t pl = strlen(prefix);
    if (pl && prefix[pl - 1] == '/')
        prefix[pl - 1] = 0;
    const char *colon = NULL;
    if (*u == '[') { /* [v6]:port */
        const char *rb = memchr(u, ']', hl);
        if (!rb)
            return dsa_fail(DSA_INVAL, "--base-url: bad IPv6 address");
        snprintf(host, cap, "%.*s", (int)(rb - u - 1), u + 1);
        colon = rb + 1 < u + hl && rb[1] == ':' ? rb + 1 : NULL;
    } else {
        colon = memchr(u, ':', hl);
        snprintf(host, cap, "%.*s", (int)(colon ? (size_t)(colon - u) : hl), u);
    }
    if (!host[0])
        return dsa_fail(DSA_INVAL, "--base-url: no host in '%s'", o->base_url);
    o->port = *tls ? 443 : 80;
    if (colon) {
        char *end;
        long p = strtol(colon + 1, &end, 10);
        if (end != u + hl || p < 1 || p > 65535)
            return dsa_fail(DSA_INVAL, "--base-url: bad port in '%s'", o->base_url);
        o->port = p;
    }
    o->host = host;
    return DSA_OK;
}

static int is_dir(const char *p)
{
    struct stat st;
    return p && stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int count_text_tokens(void *user, const char *text)
{
    int32_t *ids = NULL;
    size_t n = 0;
    dsa_tok_encode(user, text, strlen(text), 0, &ids, &n);
    free(ids);
    return (int)n;
}

/* vLLM's initial single-prompt test run, retried until the deadline. */
static dsa_err ready_check(const dsa_bench_client_params *cp, const dsa_bench_request *req,
                           double timeout)
{
    double deadline = dsa_time_now() + timeout;
    for (;;) {
        dsa_bench_result r;
        double d;
        dsa_err err = dsa_bench_client_run(cp, req, 1, &r, &d);
        if (err)
            return err;
        int ok = r.success;
        char msg[sizeof r.error];
        snprintf(msg, sizeof msg, "%s", r.error);
        int permanent = r.permanent;
        dsa_bench_result_deinit(&r);
        if (ok)
            return DSA_OK;
        if (permanent)
            return dsa_fail(DSA_IO, "initial test run failed: %s", msg);
        if (dsa_time_now() + 1 > deadline)
            return dsa_fail(DSA_TIMEOUT, "initial test run failed: %s", msg);
        sleep(1);
    }
}

static dsa_err load_dataset(const dsa_bench_opts *o, const dsa_tok *tok, int chat,
                            dsa_bench_dataset *d)
{
    uint64_t seed = (uint64_t)o->seed;
    if (strcmp(o->dataset_name, "random") == 0) {
        dsa_bench_random_params rp = {
            .n = (int)o->num_prompts, .input_len = (int)o->random_input_len,
            .output_len = (int)o->random_output_len, .prefix_len = (int)o->random_prefix_len,
            .range_ratio = o->random_range_ratio, .seed = seed};
        return dsa_bench_data_random(tok, &rp, d);
    }
    if (strcmp(o->dataset_name, "sharegpt") == 0)
        return dsa_bench_data_sharegpt(tok, o->dataset_path, (int)o->num_prompts,
                                       (int)o->sharegpt_output_len, seed, d);
    if (strcmp(o->dataset_name, "sonnet") == 0) {
        dsa_bench_sonnet_params sp = {
            .path = o->dataset_path, .n = (int)o->num_prompts,
            .input_len = (int)o->sonnet_input_len, .output_len = (int)o->sonnet_output_len,
            .prefix_len = (int)o->sonnet_prefix_len, .formatted = !chat, .seed = seed};
        return dsa_bench_data_sonnet(tok, &sp, d);
    }
    return dsa_fail(DSA_INVAL, "--dataset-name: '%s' is not random, sharegpt or sonnet",
                    o->dataset_name);
}

int main(int argc, char **argv)
{
    dsa_bench_opts o = {0};
    int help = 0, rc = 1;
    dsa_tok *tok = NULL;
    dsa_bench_dataset data = {0};
    dsa_bench_result *res = NULL;
    /* A server that resets a connection costs that request (counted as
     * failed), not the client: writes get EPIPE instead of SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);
    double *send_at = NULL;
    dsa_bench_summary sum = {0};
    dsa_bench_report rep = {0};
    char host[256], prefix[512], path[1024], served[256];
    dsa_err err = dsa_options_parse(bench_options, N_OPTIONS, &o, argc, argv, &help);
    if (help) {
        dsa_options_usage(stdout, "dsa-bench",
                          "Load test an OpenAI-compatible server the way vLLM's "
                          "benchmark_serving.py does.", bench_options, N_OPTIONS);
        dsa_options_free(bench_options, N_OPTIONS, &o);
        return 0;
    }
    dsa_log_setup(DSA_LOG_INFO, 0);
    if (err)
        goto fail;
    dsa_bench_client_params cp = {.timeout_s = o.request_timeout,
                                  .ignore_eos = o.ignore_eos, .temperature = o.temperature};
    if (strcmp(o.backend, "openai") == 0) {
        cp.backend = DSA_BENCH_OPENAI;
    } else if (strcmp(o.backend, "openai-chat") == 0) {
        cp.backend = DSA_BENCH_OPENAI_CHAT;
    } else {
        err = dsa_fail(DSA_INVAL, "--backend: '%s' is not openai or openai-chat", o.backend);
        goto fail;
    }
    prefix[0] = 0;
    if (o.base_url &&
        (err = parse_base_url(&o, host, sizeof host, prefix, sizeof prefix, &cp.tls)))
        goto fail;
    if (!cp.tls && (o.ca_cert || o.insecure)) {
        err = dsa_fail(DSA_INVAL, "--ca-cert and --insecure need an https:// --base-url");
        goto fail;
    }
    if (o.ca_cert && o.insecure) {
        err = dsa_fail(DSA_INVAL, "--ca-cert and --insecure exclude each other");
        goto fail;
    }
    cp.ca_file = o.ca_cert;
    cp.insecure = o.insecure;
    const char *ep = o.endpoint ? o.endpoint
                     : cp.backend == DSA_BENCH_OPENAI ? "/v1/completions"
                                                      : "/v1/chat/completions";
    snprintf(path, sizeof path, "%s%s", prefix, ep);
    cp.host = o.host;
    cp.port = (int)o.port;
    cp.path = path;
    cp.max_concurrency = (int)o.max_concurrency;
    cp.api_key = o.api_key ? o.api_key : getenv("OPENAI_API_KEY");
    cp.model = o.served_model_name;
    if (!cp.model && o.model) {
        /* a checkpoint directory: send its name, dsa-head's default served name */
        size_t l = strlen(o.model);
        while (l > 1 && o.model[l - 1] == '/')
            l--;
        const char *b = o.model + l;
        while (b > o.model && b[-1] != '/')
            b--;
        snprintf(served, sizeof served, "%.*s", (int)(o.model + l - b), b);
        cp.model = is_dir(o.model) ? served : o.model;
    }
    if ((err = dsa_bench_report_options(&o, &rep)))
        goto fail;
    const char *tok_dir = o.tokenizer ? o.tokenizer : is_dir(o.model) ? o.model : NULL;
    if (!tok_dir) {
        err = dsa_fail(DSA_INVAL, "a tokenizer is needed: --tokenizer DIR (or --model DIR)");
        goto fail;
    }
    if ((err = dsa_tok_load(tok_dir, &tok)))
        goto fail;
    double rate = strcmp(o.request_rate, "inf") == 0 ? INFINITY : strtod(o.request_rate, NULL);
    if (!(rate > 0)) {
        err = dsa_fail(DSA_INVAL, "--request-rate: '%s' must be > 0 or inf", o.request_rate);
        goto fail;
    }
    if ((err = load_dataset(&o, tok, cp.backend == DSA_BENCH_OPENAI_CHAT, &data)))
        goto fail;
    if (data.token_mismatch)
        DSA_WARN("prompts differ from their target lengths by %d tokens in all after "
                 "decoding and re-encoding", data.token_mismatch);
    if (data.n < o.num_prompts)
        DSA_WARN("the dataset gave %d of %lld prompts", data.n, o.num_prompts);
    if (o.ready_check_timeout > 0) {
        printf("Starting initial single prompt test run...\n");
        fflush(stdout);
        if ((err = ready_check(&cp, &data.reqs[0], o.ready_check_timeout)))
            goto fail;
        printf("Initial test run completed. Starting main benchmark run...\n");
    }
    printf("Traffic request rate: %s\nBurstiness factor: %g (%s)\n"
           "Maximum request concurrency: %s\n", isinf(rate) ? "inf" : o.request_rate,
           o.burstiness, o.burstiness == 1.0 ? "Poisson process" : "Gamma distribution",
           o.max_concurrency ? rep.concurrency_text : "None");
    fflush(stdout);
    if ((err = dsa_bench_arrivals(data.n, rate, o.burstiness, (uint64_t)o.seed, &send_at)))
        goto fail;
    if (!(res = calloc((size_t)data.n, sizeof *res))) {
        err = dsa_fail(DSA_NOMEM, "results");
        goto fail;
    }
    progress pg = {.t0 = dsa_time_now(), .enabled = !o.disable_tqdm};
    cp.send_at = isinf(rate) ? NULL : send_at;
    cp.on_progress = on_progress;
    cp.user = &pg;
    double duration;
    if ((err = dsa_bench_client_run(&cp, data.reqs, data.n, res, &duration)))
        goto fail;
    if ((err = dsa_bench_summary_compute(data.reqs, res, data.n, duration, rep.pcts, rep.n_pcts,
                                         &rep.slo, count_text_tokens, tok, &sum)))
        goto fail;
    dsa_bench_report_print(stdout, &rep, &sum);
    rc = 0;
    if (o.save_result) {
        char file[4096];
        if ((err = dsa_bench_report_save(&rep, &o, cp.model, tok_dir, &data, res, &sum, file,
                                         sizeof file))) {
            rc = 2;
            goto fail;
        }
        printf("Saved the result to %s\n", file);
    }
    goto out;
fail:
    fprintf(stderr, "dsa-bench: %s: %s\n", dsa_strerror(err), dsa_errmsg());
out:
    for (int i = 0; res && i < data.n; i++)
        dsa_bench_result_deinit(&res[i]);
    free(res);
    free(send_at);
    dsa_bench_summary_deinit(&sum);
    dsa_bench_dataset_deinit(&data);
    dsa_tok_destroy(tok);
    dsa_options_free(bench_options, N_OPTIONS, &o);
    return rc;
}
