/* metrics.c - counters, gauges and histograms rendered as Prometheus text
 * the way prometheus_client renders vLLM's (see metrics.h). */
#include "head/metrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/pyjson.h"

/* vLLM's bucket boundaries (vllm/v1/metrics/loggers.py). */
static const double ttft_bounds[] = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,
                                     0.25,  0.5,   0.75, 1.0,  2.5,  5.0,  7.5,  10.0,
                                     20.0,  40.0,  80.0, 160.0, 640.0, 2560.0};
static const double itl_bounds[] = {0.01, 0.025, 0.05, 0.075, 0.1,  0.15, 0.2,
                                    0.3,  0.4,   0.5,  0.75,  1.0,  2.5,  5.0,
                                    7.5,  10.0,  20.0, 40.0,  80.0};
static const double request_bounds[] = {0.3,  0.5,  0.8,  1.0,   1.5,   2.0,   2.5,
                                        5.0,  10.0, 15.0, 20.0,  30.0,  40.0,  50.0,
                                        60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
static const double iteration_bounds[] = {1,   8,    16,   32,   64,   128,  256,
                                          512, 1024, 2048, 4096, 8192, 16384};
static const double n_bounds[] = {1, 2, 5, 10, 20};
#define NB(a) ((int)(sizeof(a) / sizeof(a)[0]))

static void hist_init(dsa_hist *h, const double *b, int n)
{
    memset(h, 0, sizeof *h);
    h->n_bounds = n < DSA_HIST_MAX_BUCKETS ? n : DSA_HIST_MAX_BUCKETS;
    memcpy(h->bounds, b, (size_t)h->n_bounds * sizeof *b);
}

/* vLLM's build_1_2_5_buckets: 1, 2, 5, 10, 20, 50, ... while <= max. */
static void hist_init_125(dsa_hist *h, int64_t max)
{
    double b[DSA_HIST_MAX_BUCKETS];
    int n = 0;
    static const int mant[3] = {1, 2, 5};
    for (double scale = 1; n < DSA_HIST_MAX_BUCKETS; scale *= 10) {
        int i = 0;
        for (; i < 3 && n < DSA_HIST_MAX_BUCKETS && mant[i] * scale <= (double)max; i++)
            b[n++] = mant[i] * scale;
        if (i < 3)
            break;
    }
    hist_init(h, b, n);
}

void dsa_metrics_init(dsa_metrics *m, const char *model_name)
{
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
    m->model_name = model_name;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    m->t_created = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
    hist_init(&m->ttft, ttft_bounds, NB(ttft_bounds));
    hist_init(&m->itl, itl_bounds, NB(itl_bounds));
    hist_init(&m->tpot, itl_bounds, NB(itl_bounds));
    dsa_hist *req[] = {&m->e2e, &m->queue, &m->inference, &m->prefill, &m->decode};
    for (int i = 0; i < NB(req); i++)
        hist_init(req[i], request_bounds, NB(request_bounds));
    hist_init(&m->iteration_tokens, iteration_bounds, NB(iteration_bounds));
    hist_init(&m->params_n, n_bounds, NB(n_bounds));
    dsa_metrics_set_max_model_len(m, 0);
}

void dsa_metrics_set_max_model_len(dsa_metrics *m, int64_t max_model_len)
{
    dsa_metrics_lock(m);
    hist_init_125(&m->n_prompt, max_model_len);
    hist_init_125(&m->n_generation, max_model_len);
    hist_init_125(&m->params_max_tokens, max_model_len);
    dsa_metrics_unlock(m);
}

void dsa_metrics_deinit(dsa_metrics *m)
{
    pthread_mutex_destroy(&m->mu);
}

void dsa_metrics_lock(dsa_metrics *m)
{
    pthread_mutex_lock(&m->mu);
}

void dsa_metrics_unlock(dsa_metrics *m)
{
    pthread_mutex_unlock(&m->mu);
}

void dsa_hist_observe(dsa_hist *h, double v)
{
    int i = 0;
    while (i < h->n_bounds && v > h->bounds[i])
        i++;
    h->counts[i]++;
    h->sum += v;
    h->n++;
}

void dsa_metrics_observe_params(dsa_metrics *m, int n, int64_t max_tokens)
{
    dsa_metrics_lock(m);
    if (n > 0)
        dsa_hist_observe(&m->params_n, n);
    if (max_tokens > 0)
        dsa_hist_observe(&m->params_max_tokens, (double)max_tokens);
    dsa_metrics_unlock(m);
}

/* A double as prometheus_client writes it (floatToGoString): Python's
 * repr ("2.0", "0.025", "1e-05"), "+Inf", and integral parts longer than
 * six digits in Go's exponent form ("1e+06").  Shortest digits that read
 * back to the same value. */
static void fmt_float(char out[40], double v)
{
    if (isnan(v) || isinf(v)) {
        strcpy(out, isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf");
        return;
    }
    dsa_pyjson_float(out, v);
    const char *dot = strchr(out, '.');
    if (v > 0 && dot && dot - out > 6 && !strchr(out, 'e')) {
        int n_int = (int)(dot - out);
        char m[40];
        snprintf(m, sizeof m, "%c.%.*s", out[0], n_int - 1, out + 1);
        size_t k = strlen(m);
        while (k > 0 && (m[k - 1] == '0' || m[k - 1] == '.'))
            m[--k] = '\0';
        snprintf(out, 40, "%.30se+0%d", m, (n_int - 1) % 100);
    }
}

static void put_float(dsa_jbuf *o, double v)
{
    char s[40];
    fmt_float(s, v);
    dsa_jbuf_puts(o, s);
}

/* Escapes a label value (backslash, quote, newline) or, quote = 0, HELP
 * text (backslash, newline). */
static void put_escaped(dsa_jbuf *o, const char *s, int quote)
{
    for (; *s; s++) {
        if (*s == '\\')
            dsa_jbuf_puts(o, "\\\\");
        else if (*s == '\n')
            dsa_jbuf_puts(o, "\\n");
        else if (*s == '"' && quote)
            dsa_jbuf_puts(o, "\\\"");
        else
            dsa_jbuf_put(o, s, 1);
    }
}

static void head(dsa_jbuf *o, const char *name, const char *type, const char *help)
{
    dsa_jbuf_printf(o, "# HELP %s ", name);
    put_escaped(o, help, 0);
    dsa_jbuf_printf(o, "\n# TYPE %s %s\n", name, type);
}

/* One sample: name{engine="0"[,extra],model_name=".."} value, the labels
 * sorted by name as prometheus_client writes them. */
static void sample(dsa_jbuf *o, const dsa_metrics *m, const char *name, const char *suffix,
                   const char *extra, double v)
{
    dsa_jbuf_printf(o, "%s%s{engine=\"0\",", name, suffix);
    if (extra)
        dsa_jbuf_printf(o, "%s,", extra);
    dsa_jbuf_puts(o, "model_name=\"");
    put_escaped(o, m->model_name, 1);
    dsa_jbuf_puts(o, "\"} ");
    put_float(o, v);
    dsa_jbuf_puts(o, "\n");
}

static void gauge(dsa_jbuf *o, const dsa_metrics *m, const char *name, const char *help,
                  double v)
{
    head(o, name, "gauge", help);
    sample(o, m, name, "", NULL, v);
}

/* The creation times of a counter's or histogram's series: in the text
 * format prometheus_client writes them after the family's samples, as a
 * gauge family of their own ("<name>_created"), one per label set. */
static void created(dsa_jbuf *o, const dsa_metrics *m, const char *name, const char *help,
                    const char *const *extra, int n_extra)
{
    char c[128];
    snprintf(c, sizeof c, "%s_created", name);
    head(o, c, "gauge", help);
    for (int i = 0; i < (n_extra ? n_extra : 1); i++)
        sample(o, m, name, "_created", n_extra ? extra[i] : NULL, m->t_created);
}

/* name without "_total"; prometheus_client adds it. */
static void counter(dsa_jbuf *o, const dsa_metrics *m, const char *name, const char *help,
                    double v)
{
    char total[128];
    snprintf(total, sizeof total, "%s_total", name);
    head(o, total, "counter", help);
    sample(o, m, name, "_total", NULL, v);
    created(o, m, name, help, NULL, 0);
}

static void hist(dsa_jbuf *o, const dsa_metrics *m, const char *name, const char *help,
                 const dsa_hist *h)
{
    head(o, name, "histogram", help);
    uint64_t cum = 0;
    char le[64];
    for (int i = 0; i <= h->n_bounds; i++) {
        cum += h->counts[i];
        char b[40];
        fmt_float(b, i < h->n_bounds ? h->bounds[i] : INFINITY);
        snprintf(le, sizeof le, "le=\"%s\"", b);
        sample(o, m, name, "_bucket", le, (double)cum);
    }
    sample(o, m, name, "_count", NULL, (double)h->n);
    sample(o, m, name, "_sum", NULL, h->sum);
    created(o, m, name, help, NULL, 0);
}

/* Our own metrics (metrics.h): a `dsa:` name and no engine label. */
static void render_own(dsa_metrics *m, dsa_jbuf *o)
{
    head(o, "dsa:num_connections", "gauge", "Open HTTP connections.");
    dsa_jbuf_printf(o, "dsa:num_connections %lld.0\n", (long long)m->connections);
    head(o, "dsa:http_requests_total", "counter", "HTTP responses by status class.");
    for (int i = 1; i < 6; i++)
        dsa_jbuf_printf(o, "dsa:http_requests_total{status=\"%dxx\"} %llu.0\n", i,
                        (unsigned long long)m->http_requests[i]);
    head(o, "dsa:request_rejected_queue_full_total", "counter",
         "Requests refused with 429 because the queue was full.");
    dsa_jbuf_printf(o, "dsa:request_rejected_queue_full_total %llu.0\n",
                    (unsigned long long)m->rejected_queue_full);
}

void dsa_metrics_render(dsa_metrics *m, dsa_jbuf *o)
{
    static const char *const reasons[DSA_FINISH_COUNT] = {
        "finished_reason=\"stop\"", "finished_reason=\"length\"",
        "finished_reason=\"abort\"", "finished_reason=\"error\""};
    dsa_metrics_lock(m);
    gauge(o, m, "vllm:num_requests_running", "Number of requests in model execution batches.",
          (double)m->running);
    gauge(o, m, "vllm:num_requests_waiting", "Number of requests waiting to be processed.",
          (double)m->waiting);
    gauge(o, m, "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.",
          m->kv_usage);
    counter(o, m, "vllm:prefix_cache_queries",
            "Prefix cache queries, in terms of number of queried tokens.",
            (double)m->prefix_cache_queries);
    counter(o, m, "vllm:prefix_cache_hits",
            "Prefix cache hits, in terms of number of cached tokens.",
            (double)m->prefix_cache_hits);
    counter(o, m, "vllm:num_preemptions", "Cumulative number of preemption from the engine.",
            (double)m->preemptions);
    counter(o, m, "vllm:prompt_tokens", "Number of prefill tokens processed.",
            (double)m->prompt_tokens);
    counter(o, m, "vllm:generation_tokens", "Number of generation tokens processed.",
            (double)m->generation_tokens);
    if (m->spec_k > 0) {
        counter(o, m, "vllm:spec_decode_num_drafts", "Number of spec decoding drafts.",
                (double)m->spec_drafts);
        counter(o, m, "vllm:spec_decode_num_draft_tokens", "Number of draft tokens.",
                (double)m->spec_draft_tokens);
        counter(o, m, "vllm:spec_decode_num_accepted_tokens", "Number of accepted tokens.",
                (double)m->spec_accepted_tokens);
        static const char *const pos_help = "Accepted tokens per draft position.";
        const char *labels[DSA_SPEC_TOKENS_MAX];
        char lb[DSA_SPEC_TOKENS_MAX][32];
        int k = m->spec_k < DSA_SPEC_TOKENS_MAX ? m->spec_k : DSA_SPEC_TOKENS_MAX;
        head(o, "vllm:spec_decode_num_accepted_tokens_per_pos_total", "counter", pos_help);
        for (int i = 0; i < k; i++) {
            snprintf(lb[i], sizeof lb[i], "position=\"%d\"", i);
            labels[i] = lb[i];
            sample(o, m, "vllm:spec_decode_num_accepted_tokens_per_pos", "_total", labels[i],
                   (double)m->spec_accepted_per_pos[i]);
        }
        created(o, m, "vllm:spec_decode_num_accepted_tokens_per_pos", pos_help, labels, k);
    }
    static const char *const success_help = "Count of successfully processed requests.";
    head(o, "vllm:request_success_total", "counter", success_help);
    for (int i = 0; i < DSA_FINISH_COUNT; i++)
        sample(o, m, "vllm:request_success", "_total", reasons[i], (double)m->success[i]);
    created(o, m, "vllm:request_success", success_help, reasons, DSA_FINISH_COUNT);
    hist(o, m, "vllm:request_prompt_tokens", "Number of prefill tokens processed.",
         &m->n_prompt);
    hist(o, m, "vllm:request_generation_tokens", "Number of generation tokens processed.",
         &m->n_generation);
    hist(o, m, "vllm:iteration_tokens_total", "Histogram of number of tokens per engine_step.",
         &m->iteration_tokens);
    hist(o, m, "vllm:request_params_n", "Histogram of the n request parameter.", &m->params_n);
    hist(o, m, "vllm:request_params_max_tokens",
         "Histogram of the max_tokens request parameter.", &m->params_max_tokens);
    hist(o, m, "vllm:time_to_first_token_seconds",
         "Histogram of time to first token in seconds.", &m->ttft);
    hist(o, m, "vllm:inter_token_latency_seconds",
         "Histogram of inter-token latency in seconds.", &m->itl);
    hist(o, m, "vllm:request_time_per_output_token_seconds",
         "Histogram of time_per_output_token_seconds per request.", &m->tpot);
    hist(o, m, "vllm:e2e_request_latency_seconds",
         "Histogram of e2e request latency in seconds.", &m->e2e);
    hist(o, m, "vllm:request_queue_time_seconds",
         "Histogram of time spent in WAITING phase for request.", &m->queue);
    hist(o, m, "vllm:request_inference_time_seconds",
         "Histogram of time spent in RUNNING phase for request.", &m->inference);
    hist(o, m, "vllm:request_prefill_time_seconds",
         "Histogram of time spent in PREFILL phase for request.", &m->prefill);
    hist(o, m, "vllm:request_decode_time_seconds",
         "Histogram of time spent in DECODE phase for request.", &m->decode);
    render_own(m, o);
    dsa_metrics_unlock(m);
}
