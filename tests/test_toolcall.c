/* test_toolcall.c - the DeepSeek tool-call parser.
 *
 * Expected results for well-formed and malformed outputs; a round trip of
 * calls rendered by the chat template; and split invariance: every input is
 * fed cut in every way into two pieces, into three (short inputs), byte by
 * byte and at random, and must give the same content and calls as one feed;
 * a call's arguments only grow from feed to feed (streamed fragments). */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/chat.h"
#include "common/toolcall.h"

#define CALLS_BEGIN "<｜tool▁calls▁begin｜>"
#define CALLS_END "<｜tool▁calls▁end｜>"
#define CALL_BEGIN "<｜tool▁call▁begin｜>"
#define CALL_END "<｜tool▁call▁end｜>"
#define SEP "<｜tool▁sep｜>"
#define CALL(name, args)                                                     \
    CALL_BEGIN "function" SEP name "\n```json\n" args "\n```" CALL_END

typedef struct result {
    dsa_chat_buf content;
    cJSON *calls; /* dsa_toolcall_to_json of all calls */
} result;

static void result_free(result *r)
{
    dsa_chat_buf_deinit(&r->content);
    cJSON_Delete(r->calls);
}

/* Feeds s[0..len) cut at cuts[0..n_cuts), checking delta bookkeeping. */
static void parse(const char *s, size_t len, const size_t *cuts,
                  size_t n_cuts, result *r)
{
    dsa_toolcall_parser p;
    dsa_toolcall_delta d;
    memset(r, 0, sizeof *r);
    dsa_chat_buf_append(&r->content, "", 0);
    cr_assert_eq(dsa_toolcall_init(&p, "call_"), DSA_OK);
    size_t at = 0, seen = 0;
    char *prev[16] = {0};
    for (size_t i = 0; i <= n_cuts + 1; i++) {
        if (i <= n_cuts) {
            size_t end = i < n_cuts ? cuts[i] : len;
            cr_assert_eq(dsa_toolcall_feed(&p, s + at, end - at, &d), DSA_OK);
            at = end;
        } else {
            cr_assert_eq(dsa_toolcall_finish(&p, &d), DSA_OK);
        }
        cr_assert(d.content);
        cr_assert_eq(d.i_first, seen);
        seen += d.n_new;
        /* arguments only grow: what was handed on stays their prefix */
        for (size_t c = 0; c < p.n_calls && c < 16; c++) {
            cr_assert_eq(strlen(p.calls[c].arguments), p.calls[c].n_arguments);
            if (prev[c])
                cr_assert(!strncmp(p.calls[c].arguments, prev[c], strlen(prev[c])),
                          "'%s' then '%s'", prev[c], p.calls[c].arguments);
            free(prev[c]);
            prev[c] = strdup(p.calls[c].arguments);
        }
        dsa_chat_buf_append(&r->content, d.content, d.n_content);
    }
    cr_assert_eq(seen, p.n_calls);
    cr_assert_eq(p.open, 0);
    for (size_t c = 0; c < 16; c++)
        free(prev[c]);
    cr_assert_eq(dsa_toolcall_to_json(p.calls, p.n_calls, &r->calls), DSA_OK);
    dsa_toolcall_deinit(&p);
}

static void check_all_splits(const char *s)
{
    size_t n = strlen(s);
    result ref, got;
    parse(s, n, NULL, 0, &ref);
    char *ref_calls = cJSON_PrintUnformatted(ref.calls);
    for (int mode = 0; mode < 3; mode++) {
        size_t n_runs = mode == 0 ? n + 1 : mode == 1 ? (n <= 96 ? n + 1 : 0)
                                                       : 1;
        for (size_t i = 0; i < n_runs; i++) {
            for (size_t j = mode == 1 ? i : 0; j < (mode == 1 ? n + 1 : 1);
                 j++) {
                size_t cuts2[2] = {i, j};
                size_t *every = NULL;
                if (mode == 0) {
                    parse(s, n, &i, 1, &got);
                } else if (mode == 1) {
                    parse(s, n, cuts2, 2, &got);
                } else {
                    every = malloc((n + 1) * sizeof *every);
                    for (size_t k = 0; k < n; k++)
                        every[k] = k;
                    parse(s, n, every, n, &got);
                    free(every);
                }
                char *got_calls = cJSON_PrintUnformatted(got.calls);
                cr_assert_str_eq(got.content.data, ref.content.data,
                                 "input '%s' mode %d cut %zu,%zu", s, mode,
                                 i, j);
                cr_assert_str_eq(got_calls, ref_calls,
                                 "input '%s' mode %d cut %zu,%zu", s, mode,
                                 i, j);
                free(got_calls);
                result_free(&got);
            }
        }
    }
    free(ref_calls);
    result_free(&ref);
}

/* Parses s in one go and compares with the expected content and calls
 * (expected_calls: JSON array text of [name, arguments] pairs). */
static void expect(const char *s, const char *content,
                   const char *expected_calls)
{
    result r;
    parse(s, strlen(s), NULL, 0, &r);
    cr_assert_str_eq(r.content.data, content, "input '%s'", s);
    cJSON *want = cJSON_Parse(expected_calls);
    cr_assert(want);
    cr_assert_eq(cJSON_GetArraySize(r.calls), cJSON_GetArraySize(want),
                 "input '%s'", s);
    for (int i = 0; i < cJSON_GetArraySize(want); i++) {
        const cJSON *w = cJSON_GetArrayItem(want, i);
        const cJSON *c = cJSON_GetArrayItem(r.calls, i);
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(c, "function");
        char id[32];
        snprintf(id, sizeof id, "call_%d", i);
        cr_assert_str_eq(cJSON_GetObjectItem(c, "id")->valuestring, id);
        cr_assert_str_eq(cJSON_GetObjectItem(c, "type")->valuestring,
                         "function");
        cr_assert_str_eq(cJSON_GetObjectItem(fn, "name")->valuestring,
                         cJSON_GetArrayItem(w, 0)->valuestring);
        cr_assert_str_eq(cJSON_GetObjectItem(fn, "arguments")->valuestring,
                         cJSON_GetArrayItem(w, 1)->valuestring,
                         "input '%s'", s);
    }
    cJSON_Delete(want);
    result_free(&r);
    check_all_splits(s);
}

Test(toolcall, well_formed)
{
    expect("plain text only, 中文 🙂", "plain text only, 中文 🙂", "[]");
    expect("", "", "[]");
    expect("Let me check." CALLS_BEGIN
           CALL("get_weather", "{\"city\": \"Paris\"}") CALLS_END,
           "Let me check.", "[[\"get_weather\", \"{\\\"city\\\": \\\"Paris\\\"}\"]]");
    expect(CALLS_BEGIN CALL("a", "{\"x\": 1}") "\n" CALL("b", "{}")
           CALLS_END "after",
           "after", "[[\"a\", \"{\\\"x\\\": 1}\"], [\"b\", \"{}\"]]");
    /* No "<｜tool▁calls▁end｜>" (V3's template renders single calls so). */
    expect(CALLS_BEGIN CALL("a", "{}"), "", "[[\"a\", \"{}\"]]");
    expect(CALLS_BEGIN CALL("a", "{}") "\n\n", "", "[[\"a\", \"{}\"]]");
    /* Multi-line arguments keep their inner text. */
    expect(CALLS_BEGIN CALL("w", "{\n  \"t\": \"x\\ny\"\n}") CALLS_END, "",
           "[[\"w\", \"{\\n  \\\"t\\\": \\\"x\\\\ny\\\"\\n}\"]]");
    /* No fence; no arguments at all; other fence info. */
    expect(CALLS_BEGIN CALL_BEGIN "function" SEP "f\n{\"x\":1}" CALL_END,
           "", "[[\"f\", \"{\\\"x\\\":1}\"]]");
    expect(CALLS_BEGIN CALL_BEGIN "function" SEP "now" CALL_END CALLS_END,
           "", "[[\"now\", \"{}\"]]");
    expect(CALLS_BEGIN CALL_BEGIN "function" SEP " f \n```\n[1]\n```"
           CALL_END, "", "[[\"f\", \"[1]\"]]");
    /* Two sections. */
    expect("a" CALLS_BEGIN CALL("f", "1") CALLS_END "b" CALLS_BEGIN
           CALL("g", "2") CALLS_END "c", "abc",
           "[[\"f\", \"1\"], [\"g\", \"2\"]]");
}

Test(toolcall, malformed_is_content)
{
    /* Cut off inside a call before its name line ends: everything comes
     * back verbatim. */
    const char *cut = "x" CALLS_BEGIN CALL_BEGIN "function" SEP "f";
    expect(cut, cut, "[]");
    /* ... after it: the call was handed on (streamed), it stays a call
     * with the arguments written so far */
    expect("x" CALLS_BEGIN CALL_BEGIN "function" SEP "f\n```json\n{\"a\":", "x",
           "[[\"f\", \"{\\\"a\\\":\"]]");
    expect("x" CALLS_BEGIN CALL_BEGIN "function" SEP "f\n```json\n{\"a\": 1}\n``", "x",
           "[[\"f\", \"{\\\"a\\\": 1}\"]]");
    expect("x" CALLS_BEGIN CALL_BEGIN "function" SEP "f\n", "x", "[[\"f\", \"{}\"]]");
    /* A body without separator, then a good call. */
    expect(CALLS_BEGIN CALL_BEGIN "garbage" CALL_END CALL("g", "{}")
           CALLS_END,
           CALLS_BEGIN CALL_BEGIN "garbage" CALL_END, "[[\"g\", \"{}\"]]");
    /* Empty name. */
    expect(CALLS_BEGIN CALL_BEGIN "function" SEP "\n{}" CALL_END,
           CALLS_BEGIN CALL_BEGIN "function" SEP "\n{}" CALL_END, "[]");
    /* Stray text in the section. */
    expect(CALLS_BEGIN "hello", CALLS_BEGIN "hello", "[]");
    expect(CALLS_BEGIN CALL("f", "{}") "\nhello" CALL("g", "{}"),
           "\nhello" CALL("g", "{}"), "[[\"f\", \"{}\"]]");
    /* A call cut short by the next call: kept with what it had. */
    expect(CALLS_BEGIN CALL_BEGIN "function" SEP "f\n{" CALL("g", "{}")
           CALLS_END, "", "[[\"f\", \"{\"], [\"g\", \"{}\"]]");
    expect(CALLS_BEGIN CALL_BEGIN "function" SEP "f {" CALL("g", "{}")
           CALLS_END,
           CALLS_BEGIN CALL_BEGIN "function" SEP "f {", "[[\"g\", \"{}\"]]");
    /* ... or by the end of the section. */
    expect(CALLS_BEGIN CALL_BEGIN "function" SEP "f" CALLS_END "t",
           CALLS_BEGIN CALL_BEGIN "function" SEP "f" "t", "[]");
    /* Lone markers and partial markers. */
    expect(CALLS_BEGIN, CALLS_BEGIN, "[]");
    expect("a <｜tool", "a <｜tool", "[]");
    expect("a " CALL_END " b " CALLS_END, "a " CALL_END " b " CALLS_END,
           "[]");
    expect(CALLS_BEGIN "<｜tool▁call▁beg", CALLS_BEGIN "<｜tool▁call▁beg",
           "[]");
    /* An empty section just vanishes. */
    expect("a" CALLS_BEGIN CALLS_END "b", "ab", "[]");
}

/* Calls rendered by the R1 template (the model's own format) parse back. */
Test(toolcall, round_trip_from_template)
{
    const char *msgs =
        "[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\","
        "\"content\":null,\"tool_calls\":["
        "{\"id\":\"x\",\"type\":\"function\",\"function\":{\"name\":"
        "\"get_weather\",\"arguments\":\"{\\\"city\\\": \\\"Paris\\\"}\"}},"
        "{\"id\":\"y\",\"type\":\"function\",\"function\":{\"name\":"
        "\"search\",\"arguments\":\"{\\\"q\\\": \\\"a\\\\nb ```\\\"}\"}}]}]";
    cJSON *m = cJSON_Parse(msgs);
    cr_assert(m);
    char *prompt;
    cr_assert_eq(dsa_chat_render(DSA_CHAT_R1, m, false, "", &prompt), DSA_OK);
    const char *start = strstr(prompt, "<｜Assistant｜>");
    const char *eos = strstr(prompt, "<｜end▁of▁sentence｜>");
    cr_assert(start && eos);
    start += strlen("<｜Assistant｜>");
    char *out = strndup(start, (size_t)(eos - start));
    result r;
    parse(out, strlen(out), NULL, 0, &r);
    cr_assert_str_eq(r.content.data, "");
    cr_assert_eq(cJSON_GetArraySize(r.calls), 2);
    const cJSON *tcs = cJSON_GetObjectItem(cJSON_GetArrayItem(m, 1),
                                           "tool_calls");
    for (int i = 0; i < 2; i++) {
        const cJSON *fn_want = cJSON_GetObjectItem(
            cJSON_GetArrayItem(tcs, i), "function");
        const cJSON *fn_got = cJSON_GetObjectItem(
            cJSON_GetArrayItem(r.calls, i), "function");
        cr_assert_str_eq(cJSON_GetObjectItem(fn_got, "name")->valuestring,
                         cJSON_GetObjectItem(fn_want, "name")->valuestring);
        cr_assert_str_eq(
            cJSON_GetObjectItem(fn_got, "arguments")->valuestring,
            cJSON_GetObjectItem(fn_want, "arguments")->valuestring);
    }
    check_all_splits(out);
    result_free(&r);
    free(out);
    free(prompt);
    cJSON_Delete(m);
}

Test(toolcall, random_inputs)
{
    static const char *const parts[] = {
        CALLS_BEGIN, CALLS_END, CALL_BEGIN, CALL_END, SEP, "function", "f",
        "\n", "```json\n", "\n```", "{\"a\": 1}", " ", "x", "é", "<｜",
        "<｜tool▁call", "```"};
    unsigned seed = 777;
    char buf[2048];
    for (int iter = 0; iter < 200; iter++) {
        buf[0] = '\0';
        seed = seed * 1103515245u + 12345u;
        int k = (int)((seed >> 16) % 20);
        for (int j = 0; j < k; j++) {
            seed = seed * 1103515245u + 12345u;
            strcat(buf, parts[(seed >> 16) % (sizeof parts / sizeof *parts)]);
        }
        check_all_splits(buf);
    }
}

Test(toolcall, utf8_deltas_and_ids)
{
    dsa_toolcall_parser p;
    dsa_toolcall_delta d;
    cr_assert_eq(dsa_toolcall_init(&p, "call_req7_"), DSA_OK);
    cr_assert_eq(dsa_toolcall_feed(&p, "ab\xc3", 3, &d), DSA_OK);
    cr_assert_str_eq(d.content, "ab"); /* "é" is held until complete */
    cr_assert_eq(dsa_toolcall_feed(&p, "\xa9" CALLS_BEGIN CALL("f", "{}"),
                                   strlen("\xa9" CALLS_BEGIN CALL("f", "{}")),
                                   &d), DSA_OK);
    cr_assert_str_eq(d.content, "\xc3\xa9");
    cr_assert_eq(d.n_new, 1);
    cr_assert_str_eq(p.calls[d.i_first].id, "call_req7_0");
    cr_assert_eq(dsa_toolcall_finish(&p, &d), DSA_OK);
    cr_assert_eq(d.n_new, 0);
    dsa_toolcall_deinit(&p);
    /* Defaults, and deinit of a never-fed parser. */
    cr_assert_eq(dsa_toolcall_init(&p, NULL), DSA_OK);
    cr_assert_str_eq(p.id_prefix, "call_");
    dsa_toolcall_deinit(&p);
    cJSON *empty;
    cr_assert_eq(dsa_toolcall_to_json(NULL, 0, &empty), DSA_OK);
    cr_assert_eq(cJSON_GetArraySize(empty), 0);
    cJSON_Delete(empty);
}
