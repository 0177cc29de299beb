/* test_chat.c - chat-template rendering and recognition.
 *
 * Conformance: every conversation of tests/data/chat/conversations.json
 * (written by tools/golden/chat_golden.py with transformers) is rendered
 * with both variants and add_generation_prompt false and true, and must be
 * byte-identical to the reference.  Recognition: the real V3 template
 * (tests/data/deepseek-v3-tokenizer) and the R1 template (tests/data/chat) are detected, harmless
 * reformatting is tolerated, and any change that could alter the output is
 * refused.  Errors: malformed messages fail with DSA_INVAL naming the field. */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/chat.h"
#include "tests/support.h"

#define BOS "<｜begin▁of▁sentence｜>"

static char *read_data(const char *rel)
{
    char *path = dsa_test_data_path(rel);
    cr_assert(path);
    char *text = dsa_test_read_file(path, NULL);
    cr_assert(text, "cannot read %s", path);
    free(path);
    return text;
}

/* The V3 chat_template (tests/data/deepseek-v3-tokenizer). */
static char *v3_template(void)
{
    char *path = dsa_test_data_path("deepseek-v3-tokenizer/tokenizer_config.json");
    char *text = dsa_test_read_file(path, NULL);
    cr_assert(text, "cannot read %s", path);
    free(path);
    cJSON *cfg = cJSON_Parse(text);
    free(text);
    cr_assert(cfg);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
    cr_assert(cJSON_IsString(t));
    char *out = strdup(t->valuestring);
    cJSON_Delete(cfg);
    return out;
}

static size_t first_diff(const char *a, const char *b)
{
    size_t i = 0;
    while (a[i] && a[i] == b[i])
        i++;
    return i;
}

Test(chat, conformance)
{
    char *text = read_data("chat/conversations.json");
    cJSON *doc = cJSON_Parse(text);
    free(text);
    cr_assert(doc, "conversations.json does not parse");
    const cJSON *bos = cJSON_GetObjectItemCaseSensitive(doc, "bos_token");
    cr_assert(cJSON_IsString(bos));
    cr_assert_str_eq(bos->valuestring, BOS);
    const cJSON *convs = cJSON_GetObjectItemCaseSensitive(doc,
                                                          "conversations");
    int n_conv = cJSON_GetArraySize(convs), n_checked = 0, n_bad = 0;
    cr_assert_geq(n_conv, 50, "only %d conversations", n_conv);

    const cJSON *c;
    cJSON_ArrayForEach(c, convs) {
        const char *name =
            cJSON_GetObjectItemCaseSensitive(c, "name")->valuestring;
        const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(c, "messages");
        const cJSON *exp = cJSON_GetObjectItemCaseSensitive(c, "expected");
        for (int v = 0; v < DSA_CHAT_VARIANT_COUNT; v++) {
            const cJSON *ev = cJSON_GetObjectItemCaseSensitive(
                exp, v == DSA_CHAT_V3 ? "v3" : v == DSA_CHAT_R1 ? "r1" : "r1_distill");
            for (int agp = 0; agp < 2; agp++) {
                const cJSON *want = cJSON_GetObjectItemCaseSensitive(
                    ev, agp ? "true" : "false");
                cr_assert(cJSON_IsString(want));
                char *got = NULL;
                dsa_err err = dsa_chat_render((dsa_chat_variant)v, msgs,
                                              agp, bos->valuestring, &got);
                cr_assert_eq(err, DSA_OK, "%s/%s: %s", name,
                             dsa_chat_variant_name(v), dsa_errmsg());
                if (strcmp(got, want->valuestring)) {
                    size_t at = first_diff(got, want->valuestring);
                    cr_log_error("%s %s agp=%d: differs at byte %zu:\n"
                                 "got  %.80s\nwant %.80s", name,
                                 dsa_chat_variant_name(v), agp, at, got + at,
                                 want->valuestring + at);
                    n_bad++;
                }
                free(got);
                n_checked++;
            }
        }
    }
    cJSON_Delete(doc);
    cr_log_info("%d conversations, %d renders, %d mismatches", n_conv,
                n_checked, n_bad);
    cr_assert_eq(n_bad, 0, "%d of %d renders differ", n_bad, n_checked);
}

Test(chat, detect_known_templates)
{
    char *v3 = v3_template();
    char *r1 = read_data("chat/r1_chat_template.jinja");
    dsa_chat_variant v;
    cr_assert_eq(dsa_chat_detect(v3, &v), DSA_OK, "%s", dsa_errmsg());
    cr_assert_eq(v, DSA_CHAT_V3);
    cr_assert_eq(dsa_chat_detect(r1, &v), DSA_OK, "%s", dsa_errmsg());
    cr_assert_eq(v, DSA_CHAT_R1);
    cr_assert_str_eq(dsa_chat_variant_name(DSA_CHAT_V3), "deepseek-v3");
    cr_assert_str_eq(dsa_chat_variant_name(DSA_CHAT_R1), "deepseek-r1");
    free(v3);
    free(r1);
}

/* The R1-Distill checkpoints' template is recognised as its own variant,
 * which reasons (the head splits reasoning_content off) and can be named
 * as an override. */
Test(chat, detect_r1_distill_template)
{
    char *t = read_data("chat/r1_distill_chat_template.jinja");
    dsa_chat_variant v = DSA_CHAT_V3;
    cr_assert_eq(dsa_chat_detect(t, &v), DSA_OK, "%s", dsa_errmsg());
    cr_assert_eq(v, DSA_CHAT_R1_DISTILL);
    cr_assert(dsa_chat_variant_reasons(v));
    cr_assert(!dsa_chat_variant_reasons(DSA_CHAT_V3));
    cr_assert_str_eq(dsa_chat_variant_name(v), "deepseek-r1-distill");
    v = DSA_CHAT_V3;
    cr_assert_eq(dsa_chat_variant_from_name("R1-Distill", &v), DSA_OK);
    cr_assert_eq(v, DSA_CHAT_R1_DISTILL);
    /* one byte changed in a string literal is another template */
    char *p = strstr(t, "<think>");
    cr_assert_not_null(p);
    p[1] = 'T';
    cr_assert_eq(dsa_chat_detect(t, &v), DSA_UNSUPPORTED);
    free(t);
}

/* Replaces the first occurrence of `from` in s (which must contain it). */
static char *replace(const char *s, const char *from, const char *to)
{
    const char *p = strstr(s, from);
    cr_assert(p, "'%s' not in template", from);
    size_t n = strlen(s) - strlen(from) + strlen(to);
    char *out = malloc(n + 1);
    size_t k = (size_t)(p - s);
    memcpy(out, s, k);
    strcpy(out + k, to);
    strcat(out, p + strlen(from));
    return out;
}

Test(chat, detect_tolerates_reformatting)
{
    char *v3 = v3_template();
    dsa_chat_variant v;
    /* The shared V3 template has raw newlines in its string literals; the
     * Hub's JSON-escaped form has "\n" escapes. Same template. */
    char *a = replace(v3, "'\n\n'", "'\\n\\n'");
    char *b = replace(a, "{{bos_token}}", "{{ bos_token }}");
    char *c = replace(b, "{%- for message in messages %}",
                      "{%-  for message   in messages\n%}");
    char *d = replace(c, "{% endif %}", "{# a comment #}{% endif %}");
    cr_assert_eq(dsa_chat_detect(d, &v), DSA_OK, "%s", dsa_errmsg());
    cr_assert_eq(v, DSA_CHAT_V3);
    free(a);
    free(b);
    free(c);
    free(d);
    free(v3);
}

Test(chat, detect_refuses_other_templates)
{
    char *v3 = v3_template();
    char *r1 = read_data("chat/r1_chat_template.jinja");
    dsa_chat_variant v;
    /* Any change that can alter the output is a different template. */
    const char *edits[][3] = {
        /* R1 before the <think> generation-prompt update */
        {"r1", "{{'<｜Assistant｜><think>\\n'}}", "{{'<｜Assistant｜>'}}"},
        {"r1", "content.split('</think>')[-1]", "content.split('</think>')[0]"},
        {"v3", "'<｜tool▁outputs▁end｜>'}}{% endif %}",
         "'<｜tool▁outputs▁end｜>' }}{% endif %}\n"},
        {"v3", "'```json'", "'```JSON'"},
        {"v3", "{%- if message['role'] == 'user' %}",
         "{%- if message['role'] == 'user ' %}"},
    };
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        char *t = replace(edits[i][0][0] == 'r' ? r1 : v3, edits[i][1],
                          edits[i][2]);
        cr_assert_eq(dsa_chat_detect(t, &v), DSA_UNSUPPORTED, "edit %zu", i);
        cr_assert(strstr(dsa_errmsg(), "DeepSeek-style template"), "%s",
                  dsa_errmsg());
        cr_assert(strstr(dsa_errmsg(), "override"), "%s", dsa_errmsg());
        free(t);
    }
    const char *llama = "{% for message in messages %}{{'<|start_header_id|>'"
                        " + message['role'] + '<|end_header_id|>\\n\\n' + "
                        "message['content'] + '<|eot_id|>'}}{% endfor %}";
    cr_assert_eq(dsa_chat_detect(llama, &v), DSA_UNSUPPORTED);
    cr_assert(strstr(dsa_errmsg(), "not a DeepSeek-V3 or DeepSeek-R1"), "%s",
              dsa_errmsg());
    cr_assert_eq(dsa_chat_detect("", &v), DSA_UNSUPPORTED);
    cr_assert_eq(dsa_chat_detect(NULL, &v), DSA_NOTFOUND);
    free(v3);
    free(r1);
}

Test(chat, select_override)
{
    char *r1 = read_data("chat/r1_chat_template.jinja");
    dsa_chat_variant v = DSA_CHAT_V3;
    cr_assert_eq(dsa_chat_select(r1, NULL, &v), DSA_OK);
    cr_assert_eq(v, DSA_CHAT_R1);
    v = DSA_CHAT_V3;
    cr_assert_eq(dsa_chat_select(r1, "auto", &v), DSA_OK);
    cr_assert_eq(v, DSA_CHAT_R1);
    cr_assert_eq(dsa_chat_select(r1, "v3", &v), DSA_OK);
    cr_assert_eq(v, DSA_CHAT_V3);
    cr_assert_eq(dsa_chat_select("{{ unknown }}", "R1", &v), DSA_OK);
    cr_assert_eq(v, DSA_CHAT_R1);
    cr_assert_eq(dsa_chat_select(NULL, "deepseek-v3", &v), DSA_OK);
    cr_assert_eq(v, DSA_CHAT_V3);
    cr_assert_eq(dsa_chat_select("{{ unknown }}", "", &v), DSA_UNSUPPORTED);
    cr_assert_eq(dsa_chat_select(r1, "llama3", &v), DSA_INVAL);
    cr_assert(strstr(dsa_errmsg(), "llama3"), "%s", dsa_errmsg());
    free(r1);
}

static dsa_err render_json(dsa_chat_variant v, const char *json, char **out)
{
    cJSON *m = cJSON_Parse(json);
    cr_assert(m, "bad test JSON: %s", json);
    *out = NULL;
    dsa_err err = dsa_chat_render(v, m, true, BOS, out);
    cJSON_Delete(m);
    return err;
}

Test(chat, bad_messages_name_the_field)
{
    static const struct { const char *json, *path; } cases[] = {
        {"{}", "messages: must be an array"},
        {"[]", "messages: must not be empty"},
        {"[1]", "messages[0]: must be an object"},
        {"[{\"content\":\"x\"}]", "messages[0].role: missing"},
        {"[{\"role\":7,\"content\":\"x\"}]", "messages[0].role: must be"},
        {"[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"robot\","
         "\"content\":\"x\"}]", "messages[1].role: unsupported role 'robot'"},
        {"[{\"role\":\"user\"}]", "messages[0].content: missing"},
        {"[{\"role\":\"system\",\"content\":null}]",
         "messages[0].content: missing"},
        {"[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"user\","
         "\"content\":\"b\"},{\"role\":\"user\",\"content\":5}]",
         "messages[2].content: must be a string or an array"},
        {"[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\","
         "\"image_url\":{}}]}]", "messages[0].content[0].type"},
        {"[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]",
         "messages[0].content[0].text"},
        {"[{\"role\":\"user\",\"content\":[\"x\"]}]",
         "messages[0].content[0]: must be an object"},
        {"[{\"role\":\"assistant\"}]",
         "messages[0].content: missing (an assistant message needs"},
        {"[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[]}]",
         "messages[0].content: missing"},
        {"[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":{}}]",
         "messages[0].tool_calls: must be an array"},
        {"[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[3]}]",
         "messages[0].tool_calls[0]: must be an object"},
        {"[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{"
         "\"type\":\"retrieval\",\"function\":{\"name\":\"f\","
         "\"arguments\":\"{}\"}}]}]", "messages[0].tool_calls[0].type"},
        {"[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{"
         "\"type\":\"function\"}]}]", "messages[0].tool_calls[0].function:"},
        {"[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{"
         "\"function\":{\"arguments\":\"{}\"}}]}]",
         "messages[0].tool_calls[0].function.name"},
        {"[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{"
         "\"function\":{\"name\":\"f\"}},{\"function\":{\"name\":\"g\","
         "\"arguments\":{}}}]}]",
         "messages[0].tool_calls[0].function.arguments: must be a string"},
        {"[{\"role\":\"tool\",\"content\":null}]",
         "messages[0].content: missing"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int v = 0; v < DSA_CHAT_VARIANT_COUNT; v++) {
            char *out;
            dsa_err err = render_json((dsa_chat_variant)v, cases[i].json,
                                      &out);
            cr_assert_eq(err, DSA_INVAL, "case %zu: %s", i, cases[i].json);
            cr_assert(out == NULL);
            cr_assert(strstr(dsa_errmsg(), cases[i].path),
                      "case %zu: message '%s' lacks '%s'", i, dsa_errmsg(),
                      cases[i].path);
        }
}

Test(chat, render_basics)
{
    char *out;
    cr_assert_eq(render_json(DSA_CHAT_R1, "[{\"role\":\"user\",\"content\":"
                                          "\"hi\"}]", &out), DSA_OK);
    cr_assert_str_eq(out, BOS "<｜User｜>hi<｜Assistant｜><think>\n");
    free(out);
    cr_assert_eq(render_json(DSA_CHAT_V3, "[{\"role\":\"user\",\"content\":"
                                          "\"hi\"}]", &out), DSA_OK);
    cr_assert_str_eq(out, BOS "<｜User｜>hi<｜Assistant｜>");
    free(out);
    /* NULL bos renders as "", and an unknown variant is refused. */
    cJSON *m = cJSON_Parse("[{\"role\":\"system\",\"content\":\"s\"}]");
    cr_assert_eq(dsa_chat_render(DSA_CHAT_V3, m, false, NULL, &out), DSA_OK);
    cr_assert_str_eq(out, "s");
    free(out);
    cr_assert_eq(dsa_chat_render(DSA_CHAT_VARIANT_COUNT, m, false, NULL,
                                 &out), DSA_INVAL);
    cJSON_Delete(m);
}

Test(chat, utf8_complete)
{
    const char *s = "a\xc3\xa9\xe4\xb8\xad\xf0\x9f\x99\x82";
    /* a | é (2) | 中 (3) | 🙂 (4) */
    size_t want[] = {0, 1, 1, 3, 3, 3, 6, 6, 6, 6, 10};
    for (size_t n = 0; n <= 10; n++)
        cr_assert_eq(dsa_chat_utf8_complete(s, n), want[n], "n=%zu", n);
    cr_assert_eq(dsa_chat_utf8_complete("\x80\x80", 2), 2);
    cr_assert_eq(dsa_chat_utf8_complete("a\xff", 2), 2);
}

/* Chats with tools: every conversation of tools_conversations.json
 * (tools/golden/tool_prompt_golden.py: vLLM's DeepSeek-V3 tool chat
 * template rendered by transformers) renders byte for byte, with either
 * variant and add_generation_prompt false and true. */
Test(chat, tools_conformance)
{
    char *text = read_data("chat/tools_conversations.json");
    cJSON *doc = cJSON_Parse(text);
    free(text);
    cr_assert(doc, "tools_conversations.json does not parse");
    cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(doc, "bos_token")->valuestring, BOS);
    const cJSON *convs = cJSON_GetObjectItemCaseSensitive(doc, "conversations");
    int n_conv = cJSON_GetArraySize(convs), n_checked = 0, n_bad = 0;
    cr_assert_geq(n_conv, 40, "only %d conversations", n_conv);
    const cJSON *c;
    cJSON_ArrayForEach(c, convs) {
        const char *name = cJSON_GetObjectItemCaseSensitive(c, "name")->valuestring;
        const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(c, "messages");
        const cJSON *tools = cJSON_GetObjectItemCaseSensitive(c, "tools");
        const cJSON *exp = cJSON_GetObjectItemCaseSensitive(c, "expected");
        cr_assert_gt(cJSON_GetArraySize(tools), 0, "%s", name);
        for (int v = 0; v < DSA_CHAT_VARIANT_COUNT; v++)
            for (int agp = 0; agp < 2; agp++) {
                const cJSON *want = cJSON_GetObjectItemCaseSensitive(exp, agp ? "true"
                                                                             : "false");
                char *got = NULL;
                dsa_err err = dsa_chat_render_tools((dsa_chat_variant)v, msgs, tools, agp,
                                                    BOS, &got);
                cr_assert_eq(err, DSA_OK, "%s: %s", name, dsa_errmsg());
                if (strcmp(got, want->valuestring)) {
                    size_t at = first_diff(got, want->valuestring);
                    cr_log_error("%s agp=%d: differs at byte %zu:\ngot  %.80s\nwant %.80s",
                                 name, agp, at, got + at, want->valuestring + at);
                    n_bad++;
                }
                free(got);
                n_checked++;
            }
    }
    cJSON_Delete(doc);
    cr_assert_eq(n_bad, 0, "%d of %d renders differ", n_bad, n_checked);
}

/* The tools reach the prompt; without tools the checkpoint's template is
 * used unchanged; history arguments must be JSON (vLLM parses them). */
Test(chat, tools_render_edges)
{
    cJSON *msgs = cJSON_Parse("[{\"role\":\"user\",\"content\":\"hi\"}]");
    cJSON *tools = cJSON_Parse("[{\"type\":\"function\",\"function\":{\"name\":\"f\","
                               "\"parameters\":{\"type\":\"object\",\"x\":0.5}}}]");
    cJSON *none = cJSON_Parse("[]");
    char *a = NULL, *b = NULL;
    cr_assert_eq(dsa_chat_render_tools(DSA_CHAT_V3, msgs, tools, true, BOS, &a), DSA_OK);
    cr_assert_not_null(strstr(a, "<tools>\n{\"type\": \"function\", \"function\": {\"name\": "
                                 "\"f\", \"description\": null, \"parameters\": {\"type\": "
                                 "\"object\", \"x\": 0.5}}}    \n</tools>"), "%s", a);
    cr_assert_eq(dsa_chat_render_tools(DSA_CHAT_V3, msgs, none, true, BOS, &b), DSA_OK);
    char *c = NULL;
    cr_assert_eq(dsa_chat_render(DSA_CHAT_V3, msgs, true, BOS, &c), DSA_OK);
    cr_assert_str_eq(b, c);
    free(a);
    free(b);
    free(c);
    cJSON *bad = cJSON_Parse("[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\","
                             "\"tool_calls\":[{\"type\":\"function\",\"function\":{\"name\":"
                             "\"f\",\"arguments\":\"{nope\"}}]}]");
    cr_assert_eq(dsa_chat_render_tools(DSA_CHAT_V3, bad, tools, true, BOS, &a), DSA_INVAL);
    cr_assert_not_null(strstr(dsa_errmsg(), "messages[1].tool_calls[0].function.arguments"));
    cJSON_Delete(bad);
    cJSON_Delete(msgs);
    cJSON_Delete(tools);
    cJSON_Delete(none);
}
