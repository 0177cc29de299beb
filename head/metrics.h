/* metrics.h - the head's Prometheus metrics under vLLM's names, types,
 * labels and histogram buckets (vLLM V1's PrometheusStatLogger), so that
 * dashboards, alerts and autoscalers written for vLLM read them unchanged:
 * `vllm:num_requests_running{model_name="m",engine="0"}`, counters with the
 * `_total` suffix prometheus_client adds, `le` last on bucket lines, bucket
 * bounds written as Python floats ("1.0", "0.025").  The head is one engine,
 * so `engine` is always "0".
 *
 * Three metrics of our own, with no vLLM counterpart, keep a `dsa:` prefix:
 * dsa:num_connections, dsa:http_requests_total{status="2xx"},
 * dsa:request_rejected_queue_full_total.
 *
 * Updated from the engine thread (scheduler state, token counters,
 * latencies) and the loop thread (HTTP counters); one mutex guards them.
 * Rendering takes the same mutex. */
#ifndef DSA_HEAD_METRICS_H
#define DSA_HEAD_METRICS_H

#include <pthread.h>
#include <stdint.h>

#include "head/api.h"
#include "proto/step.h"

#define DSA_HIST_MAX_BUCKETS 32

typedef struct dsa_hist {
    double bounds[DSA_HIST_MAX_BUCKETS];    /* upper bounds, ascending */
    int n_bounds;
    uint64_t counts[DSA_HIST_MAX_BUCKETS + 1];  /* [n_bounds]: above the last */
    double sum;
    uint64_t n;
} dsa_hist;

/* vLLM's FinishReason values, in its order ("stop", "length", "abort",
 * "error"); the finished_reason label of vllm:request_success. */
typedef enum dsa_finish {
    DSA_FINISH_STOP,
    DSA_FINISH_LENGTH,
    DSA_FINISH_ABORT,
    DSA_FINISH_ERROR,
    DSA_FINISH_COUNT
} dsa_finish;

typedef struct dsa_metrics {
    pthread_mutex_t mu;
    const char *model_name;     /* borrowed */
    double t_created;           /* Unix time of init: the _created samples */
    /* gauges */
    int64_t running, waiting;
    double kv_usage;
    int64_t connections;
    /* counters */
    uint64_t prompt_tokens, generation_tokens;
    uint64_t success[DSA_FINISH_COUNT];
    uint64_t http_requests[6];  /* by status class 1xx..5xx, [0] other */
    uint64_t rejected_queue_full;
    uint64_t prefix_cache_queries, prefix_cache_hits; /* tokens */
    uint64_t preemptions;
    /* speculative decoding (vLLM's spec_decode counters; rendered when
     * spec_k > 0, per_pos for positions 0..spec_k-1) */
    int spec_k;
    uint64_t spec_drafts, spec_draft_tokens, spec_accepted_tokens;
    uint64_t spec_accepted_per_pos[DSA_SPEC_TOKENS_MAX];
    /* histograms of seconds */
    dsa_hist ttft, itl, tpot;   /* tpot: one per request, its mean */
    dsa_hist e2e, queue, inference, prefill, decode;
    /* histograms of counts */
    dsa_hist n_prompt, n_generation;   /* per request, tokens */
    dsa_hist iteration_tokens;  /* per engine step */
    dsa_hist params_n, params_max_tokens;
} dsa_metrics;

void dsa_metrics_init(dsa_metrics *m, const char *model_name);
void dsa_metrics_deinit(dsa_metrics *m);
/* The per-request token histograms use vLLM's 1-2-5 buckets up to the
 * context length (1, 2, 5, 10, 20, ... <= max_model_len).  Called once when
 * the length is known, before requests come; until then they only have
 * +Inf. */
void dsa_metrics_set_max_model_len(dsa_metrics *m, int64_t max_model_len);

/* Callers hold m->mu around updates (dsa_metrics_lock/unlock). */
void dsa_metrics_lock(dsa_metrics *m);
void dsa_metrics_unlock(dsa_metrics *m);
void dsa_hist_observe(dsa_hist *h, double v);

/* A request's parameters: n once per prompt (vllm:request_params_n; <= 0:
 * not observed) and, once per choice, the max_tokens the client sent
 * (vllm:request_params_max_tokens; <= 0: none sent, not observed, as
 * vLLM).  Takes the lock. */
void dsa_metrics_observe_params(dsa_metrics *m, int n, int64_t max_tokens);

/* Prometheus text exposition format 0.0.4. */
void dsa_metrics_render(dsa_metrics *m, dsa_jbuf *out);

#endif
