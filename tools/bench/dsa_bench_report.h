/* dsa_bench_report.h - dsa-bench's command-line options and its outputs:
 * the text summary in vLLM's layout and the result JSON with vLLM's keys
 * (serve.py: duration, completed, failed, total_input_tokens,
 * total_output_tokens, request_throughput, request_goodput,
 * output_throughput, total_token_throughput, input_lens, output_lens,
 * ttfts, itls, errors, and per selected metric mean_X_ms, median_X_ms,
 * std_X_ms, pP_X_ms; plus the run's settings: date, backend, model_id,
 * tokenizer_id, num_prompts, request_rate, burstiness, max_concurrency).
 * dsa-bench adds usage_prompt_tokens (the server's count of each prompt,
 * -1 without usage) and, with --save-detailed, generated_texts. */
#ifndef DSA_BENCH_REPORT_H
#define DSA_BENCH_REPORT_H

#include <stdio.h>

#include <cjson/cJSON.h>

#include "common/options.h"
#include "tools/bench/dsa_bench_data.h"
#include "tools/bench/dsa_bench_metrics.h"

/* Parsed command line (fields named after the flags). */
typedef struct dsa_bench_opts {
    const char *backend, *base_url, *host, *endpoint;
    long long port;
    const char *model, *served_model_name, *tokenizer, *api_key;
    const char *ca_cert;
    int insecure;
    const char *dataset_name, *dataset_path;
    long long num_prompts;
    long long random_input_len, random_output_len, random_prefix_len;
    double random_range_ratio;
    long long sharegpt_output_len;
    long long sonnet_input_len, sonnet_output_len, sonnet_prefix_len;
    const char *request_rate;
    double burstiness;
    long long max_concurrency;
    int ignore_eos;
    double temperature;
    long long seed;
    int disable_tqdm;
    const char *percentile_metrics, *metric_percentiles;
    dsa_strlist goodput;
    int save_result, save_detailed;
    const char *result_dir, *result_filename;
    double ready_check_timeout, request_timeout;
} dsa_bench_opts;

/* What to report, from the options. */
typedef struct dsa_bench_report {
    int selected[DSA_BENCH_METRIC_COUNT];
    double pcts[DSA_BENCH_MAX_PCTS];
    int n_pcts;
    dsa_bench_slo slo;
    int has_slo;
    char concurrency_text[32];
} dsa_bench_report;

dsa_err dsa_bench_report_options(const dsa_bench_opts *o, dsa_bench_report *r);

/* The "Serving Benchmark Result" block. */
void dsa_bench_report_print(FILE *f, const dsa_bench_report *r, const dsa_bench_summary *s);

/* The result object (caller deletes).  NULL when out of memory. */
cJSON *dsa_bench_report_json(const dsa_bench_report *r, const dsa_bench_opts *o,
                             const char *model_id, const char *tokenizer_id,
                             const dsa_bench_dataset *d, const dsa_bench_result *res,
                             const dsa_bench_summary *s);

/* Writes the JSON to --result-dir/--result-filename (or vLLM's default
 * name); the path written goes to file. */
dsa_err dsa_bench_report_save(const dsa_bench_report *r, const dsa_bench_opts *o,
                              const char *model_id, const char *tokenizer_id,
                              const dsa_bench_dataset *d, const dsa_bench_result *res,
                              const dsa_bench_summary *s, char *file, size_t cap);

#endif
