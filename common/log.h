/* log.h - leveled logging to stderr, plain text or one JSON object a line.
 *
 * The sink is process-wide and set once at startup (dsa_log_setup) before
 * threads start; after that it is read-only, so logging is thread-safe. */
#ifndef DSA_COMMON_LOG_H
#define DSA_COMMON_LOG_H

typedef enum dsa_log_level {
    DSA_LOG_DEBUG,
    DSA_LOG_INFO,
    DSA_LOG_WARN,
    DSA_LOG_ERROR,
} dsa_log_level;

/* level: messages below it are dropped; json: one JSON object per line with
 * ts, level, msg (for the head's structured logs). */
void dsa_log_setup(dsa_log_level level, int json);

void dsa_log(dsa_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* As dsa_log, about one request: its id goes into the JSON line as its own
 * field, "request_id" (in text lines: "[id] " before the message). */
void dsa_log_req(dsa_log_level level, const char *request_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define DSA_DEBUG(...) dsa_log(DSA_LOG_DEBUG, __VA_ARGS__)
#define DSA_INFO(...) dsa_log(DSA_LOG_INFO, __VA_ARGS__)
#define DSA_WARN(...) dsa_log(DSA_LOG_WARN, __VA_ARGS__)
#define DSA_ERROR(...) dsa_log(DSA_LOG_ERROR, __VA_ARGS__)

/* Seconds on a monotonic clock, for timings and rates. */
double dsa_time_now(void);

#endif
