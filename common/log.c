/* log.c - stderr logging; see log.h. */
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static dsa_log_level log_level = DSA_LOG_INFO;
static int log_json;

void dsa_log_setup(dsa_log_level level, int json)
{
    log_level = level;
    log_json = json;
}

static const char *level_name(dsa_log_level l)
{
    switch (l) {
    case DSA_LOG_DEBUG: return "debug";
    case DSA_LOG_INFO: return "info";
    case DSA_LOG_WARN: return "warn";
    default: return "error";
    }
}

/* Writes s as the inside of a JSON string. */
static void put_json_string(FILE *f, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
}

static void log_v(dsa_log_level level, const char *request_id, const char *fmt, va_list ap)
{
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[32];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);

    flockfile(stderr);
    if (log_json) {
        fprintf(stderr, "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",", when,
                ts.tv_nsec / 1000000, level_name(level));
        if (request_id) {
            fputs("\"request_id\":\"", stderr);
            put_json_string(stderr, request_id);
            fputs("\",", stderr);
        }
        fputs("\"msg\":\"", stderr);
        put_json_string(stderr, msg);
        fputs("\"}\n", stderr);
    } else {
        fprintf(stderr, "%s.%03ldZ %-5s %s%s%s%s\n", when, ts.tv_nsec / 1000000,
                level_name(level), request_id ? "[" : "", request_id ? request_id : "",
                request_id ? "] " : "", msg);
    }
    funlockfile(stderr);
}

void dsa_log(dsa_log_level level, const char *fmt, ...)
{
    if (level < log_level)
        return;
    va_list ap;
    va_start(ap, fmt);
    log_v(level, NULL, fmt, ap);
    va_end(ap);
}

void dsa_log_req(dsa_log_level level, const char *request_id, const char *fmt, ...)
{
    if (level < log_level)
        return;
    va_list ap;
    va_start(ap, fmt);
    log_v(level, request_id, fmt, ap);
    va_end(ap);
}

double dsa_time_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
