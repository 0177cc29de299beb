/* test_log.c - log levels, plain and JSON line formats, JSON escaping. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "tests/support.h"

/* Runs fn with stderr redirected to a file; returns what it wrote. */
static char *capture_stderr(void (*fn)(void))
{
    char *dir = dsa_test_mkdtemp();
    char path[1024];
    snprintf(path, sizeof path, "%s/err", dir);
    fflush(stderr);
    int saved = dup(2);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    dup2(fileno(f), 2);
    fn();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    fclose(f);
    char *text = dsa_test_read_file(path, NULL);
    dsa_test_rmtree(dir);
    free(dir);
    cr_assert_not_null(text);
    return text;
}

static void log_plain(void)
{
    dsa_log_setup(DSA_LOG_INFO, 0);
    DSA_DEBUG("hidden %d", 1);
    DSA_INFO("shown %d", 2);
    DSA_ERROR("bad %s", "thing");
}

static void log_json(void)
{
    dsa_log_setup(DSA_LOG_WARN, 1);
    DSA_INFO("dropped");
    DSA_WARN("quote \" backslash \\ newline \n tab \t end");
}

Test(log, plain_lines_and_levels)
{
    char *out = capture_stderr(log_plain);
    cr_expect_null(strstr(out, "hidden"));
    cr_expect_not_null(strstr(out, "info  shown 2\n"), "%s", out);
    cr_expect_not_null(strstr(out, "error bad thing\n"), "%s", out);
    free(out);
}

Test(log, json_lines_escape)
{
    char *out = capture_stderr(log_json);
    cr_expect_null(strstr(out, "dropped"));
    cr_expect_eq(out[0], '{', "%s", out);
    cr_expect_not_null(strstr(out, "\"level\":\"warn\""), "%s", out);
    cr_expect_not_null(
        strstr(out, "\"msg\":\"quote \\\" backslash \\\\ newline \\u000a tab \\u0009 end\"}\n"),
        "%s", out);
    /* one object, one line */
    cr_expect_eq(strchr(out, '\n'), out + strlen(out) - 1, "%s", out);
    free(out);
}

static void log_req(void)
{
    dsa_log_setup(DSA_LOG_INFO, 1);
    dsa_log_req(DSA_LOG_DEBUG, "r-0", "dropped");
    dsa_log_req(DSA_LOG_INFO, "r-\"1", "POST /x -> %d", 400);
    dsa_log_setup(DSA_LOG_INFO, 0);
    dsa_log_req(DSA_LOG_WARN, "r-2", "plain");
}

Test(log, request_id_field)
{
    char *out = capture_stderr(log_req);
    cr_expect_null(strstr(out, "dropped"));
    cr_expect_not_null(strstr(out, "\"level\":\"info\",\"request_id\":\"r-\\\"1\","
                              "\"msg\":\"POST /x -> 400\"}\n"), "%s", out);
    cr_expect_not_null(strstr(out, "warn  [r-2] plain\n"), "%s", out);
    free(out);
}

Test(log, monotonic_clock)
{
    double a = dsa_time_now(), b = dsa_time_now();
    cr_expect_geq(b, a);
    cr_expect_gt(a, 0);
}
