/* test_grammar_schema.c - JSON Schema features of the grammar engine
 * beyond test_grammar.c: exact number ranges (every candidate decimal in a
 * grid checked against the bounds), the string formats of gram_format.c
 * and prefixItems.  (Masks against xgrammar: test_grammar_oracle.c.) */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/grammar.h"
#include "common/tokenizer.h"

static dsa_tok *tok;
static dsa_gram_vocab *voc;

static void setup(void)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/deepseek-v3-tokenizer", getenv("DSA_TEST_DATA"));
    cr_assert_eq(dsa_tok_load(dir, &tok), DSA_OK, "%s", dsa_errmsg());
    int32_t eos = dsa_tok_eos_id(tok);
    dsa_gram_vocab_params p = {.tok = tok, .n_vocab = 129280, .stop_ids = &eos, .n_stop_ids = 1};
    cr_assert_eq(dsa_gram_vocab_create(&p, &voc), DSA_OK);
}

static void teardown(void)
{
    dsa_gram_vocab_destroy(voc);
    dsa_tok_destroy(tok);
}

TestSuite(grammar_schema, .init = setup, .fini = teardown, .timeout = 120);

static dsa_err try_compile(const char *schema, dsa_gram **g)
{
    dsa_gram_params p = {.kind = DSA_GRAM_JSON_SCHEMA, .text = schema, .len = strlen(schema),
                         .vocab = voc, .any_whitespace = 1};
    *g = NULL;
    return dsa_gram_compile(&p, g);
}

static dsa_gram *compile(const char *schema)
{
    dsa_gram *g;
    cr_assert_eq(try_compile(schema, &g), DSA_OK, "%s: %s", schema, dsa_errmsg());
    return g;
}

/* 1: s is a complete sentence; 0: a prefix only; -1: not even a prefix. */
static int judge(dsa_gram *g, const char *s)
{
    int32_t st = dsa_gram_start(g);
    if (dsa_gram_accept_bytes(g, &st, s, strlen(s)))
        return -1;
    return dsa_gram_is_complete(g, st);
}

#define FULL(g, s) cr_expect_eq(judge(g, s), 1, "'%s' should be complete", s)
#define NOT_FULL(g, s) cr_expect_neq(judge(g, s), 1, "'%s' should not be complete", s)

typedef struct range {
    const char *schema;
    int has_lo, lo_inc, has_hi, hi_inc;
    double lo, hi;
} range;

static int in_range(const range *r, double v)
{
    if (r->has_lo && (r->lo_inc ? v < r->lo : v <= r->lo))
        return 0;
    if (r->has_hi && (r->hi_inc ? v > r->hi : v >= r->hi))
        return 0;
    return 1;
}

Test(grammar_schema, number_ranges_exact)
{
    static const range rs[] = {
        {"{\"type\":\"number\",\"minimum\":0.5,\"maximum\":10}", 1, 1, 1, 1, 0.5, 10},
        {"{\"type\":\"number\",\"exclusiveMinimum\":0}", 1, 0, 0, 0, 0, 0},
        {"{\"type\":\"number\",\"exclusiveMaximum\":-2.5}", 0, 0, 1, 0, 0, -2.5},
        {"{\"type\":\"number\",\"minimum\":-1.25,\"exclusiveMaximum\":3.75}", 1, 1, 1, 0, -1.25,
         3.75},
        {"{\"type\":\"number\",\"exclusiveMinimum\":-0.1,\"maximum\":0.1}", 1, 0, 1, 1, -0.1, 0.1},
        {"{\"type\":\"number\",\"minimum\":2,\"maximum\":2}", 1, 1, 1, 1, 2, 2},
        {"{\"type\":\"number\",\"minimum\":-3.5,\"maximum\":-3.5}", 1, 1, 1, 1, -3.5, -3.5},
        {"{\"type\":\"number\",\"exclusiveMinimum\":0,\"exclusiveMaximum\":1}", 1, 0, 1, 0, 0, 1},
        {"{\"type\":\"number\",\"exclusiveMinimum\":0.999,\"maximum\":1.001}", 1, 0, 1, 1, 0.999,
         1.001},
        {"{\"type\":\"number\",\"minimum\":-12.05,\"maximum\":-0.125}", 1, 1, 1, 1, -12.05, -0.125},
        /* the tighter bound wins; exclusive on a tie */
        {"{\"type\":\"number\",\"minimum\":1,\"exclusiveMinimum\":1,\"maximum\":7,"
         "\"exclusiveMaximum\":20}", 1, 0, 1, 1, 1, 7},
        {"{\"type\":\"number\",\"maximum\":0}", 0, 0, 1, 1, 0, 0},
    };
    static const char *fracs[] = {"", ".0", ".5", ".25", ".05", ".125", ".999", ".001", ".1",
                                  ".75", ".0001", ".10", ".2499", ".2501", ".04999"};
    char buf[64];
    for (size_t k = 0; k < sizeof rs / sizeof rs[0]; k++) {
        dsa_gram *g = compile(rs[k].schema);
        int n_in = 0;
        for (int i = -25; i <= 25; i++)
            for (size_t f = 0; f < sizeof fracs / sizeof fracs[0]; f++)
                for (int neg = 0; neg < 2; neg++) {
                    if (neg && i)
                        continue; /* "-0.x" covers the negative fractions of zero */
                    snprintf(buf, sizeof buf, "%s%d%s", neg ? "-" : "", i, fracs[f]);
                    double v = strtod(buf, NULL);
                    int want = in_range(&rs[k], v) && !(v == 0 && buf[0] == '-');
                    n_in += want;
                    cr_expect_eq(judge(g, buf) == 1, want, "%s: '%s' %s", rs[k].schema, buf,
                                 want ? "refused" : "accepted");
                }
        cr_expect(n_in > 0, "%s: the grid holds no number in range", rs[k].schema);
        /* no exponent, no leading zeros, no bare point */
        NOT_FULL(g, "1e0");
        NOT_FULL(g, "01");
        NOT_FULL(g, "1.");
        dsa_gram_destroy(g);
    }
    dsa_gram *g;
    cr_expect_eq(try_compile("{\"type\":\"number\",\"minimum\":3,\"exclusiveMaximum\":3}", &g),
                 DSA_FORMAT);
    cr_expect_eq(try_compile("{\"type\":\"number\",\"minimum\":\"3\"}", &g), DSA_FORMAT);
    cr_expect_neq(try_compile("{\"type\":\"number\",\"maximum\":1e300}", &g), DSA_OK);
    cr_expect(strstr(dsa_errmsg(), "beyond 1e15"), "%s", dsa_errmsg());
}

Test(grammar_schema, formats)
{
    static const struct {
        const char *format;
        const char *ok[4];
        const char *bad[4];
    } fs[] = {
        {"email", {"ada@example.com", "a.b+c_d@x-y.org", "\\\"q x\\\"@h", "x@y"},
         {"a@b.c", "@x.org", "a..b@x.org", "\\\"a\\q\\\"@h"}},
        {"ipv4", {"192.168.0.1", "255.255.255.255", "0.0.0.0", "01.2.3.4"},
         {"256.1.1.1", "1.2.3", "1.2.3.4.5", "a.b.c.d"}},
        {"ipv6", {"2001:db8::1", "::", "::ffff:10.0.0.1", "fe80:0:0:0:0:0:0:1"},
         {"2001:db8:::1", "12345::", "1:2:3:4:5:6:7:8:9", "g::1"}},
        {"hostname", {"api.example.com", "a", "x-1.y2", "localhost"},
         {"-a.com", "a-.com", "A.com", "a..b"}},
        {"uri", {"https://user@example.com:8080/a/b?q=1&r=%20#f", "urn:isbn:0451450523",
                 "mailto:a@b.c", "file:///etc/hosts"},
         {"//no-scheme", "1http://x", "http://a b", "http://x/%zz"}},
        {"uri-reference", {"../a/b?x=1", "//host/p", "#frag", ""},
         {"a b", "%g0", "x#y#z", "\\\\"}},
        {"uri-template", {"https://x.org/{user}/repos{?page,per_page}", "{+path:3}/x", "plain",
                          "{a*}"},
         {"{}", "{a", "x}y", "{a:0}"}},
        {"duration", {"P3Y6M4DT12H30M5S", "PT20M", "P2W", "P1D"},
         {"P", "PT", "3D", "P1H"}},
        {"json-pointer", {"/a~1b/0", "", "/", "/\xc3\xa9"},
         {"a", "/~2", "/a\\\"", "/\t"}},
        {"relative-json-pointer", {"1/a", "0#", "0", "12/x/y"},
         {"/a", "01", "1#/a", "-1"}},
    };
    char schema[128], doc[256];
    for (size_t k = 0; k < sizeof fs / sizeof fs[0]; k++) {
        snprintf(schema, sizeof schema, "{\"type\":\"string\",\"format\":\"%s\"}", fs[k].format);
        dsa_gram *g = compile(schema);
        for (int i = 0; i < 4; i++) {
            snprintf(doc, sizeof doc, "\"%s\"", fs[k].ok[i]);
            FULL(g, doc);
            snprintf(doc, sizeof doc, "\"%s\"", fs[k].bad[i]);
            NOT_FULL(g, doc);
        }
        dsa_gram_destroy(g);
    }
    dsa_gram *g;
    cr_expect_neq(try_compile("{\"type\":\"string\",\"format\":\"iri\"}", &g), DSA_OK);
    cr_expect(strstr(dsa_errmsg(), "'iri' is not supported"), "%s", dsa_errmsg());
}

Test(grammar_schema, prefix_items)
{
    dsa_gram *g = compile("{\"type\":\"array\",\"prefixItems\":[{\"type\":\"integer\"},"
                          "{\"enum\":[\"a\",\"b\"]}]}");
    FULL(g, "[1, \"a\"]");
    FULL(g, "[ -7 ,\"b\" ]");
    NOT_FULL(g, "[1]");
    NOT_FULL(g, "[1, \"a\", 2]");
    NOT_FULL(g, "[\"a\", 1]");
    dsa_gram_destroy(g);
    g = compile("{\"type\":\"array\",\"prefixItems\":[{\"type\":\"integer\"}],"
                "\"items\":{\"type\":\"boolean\"},\"minItems\":2,\"maxItems\":3}");
    FULL(g, "[1, true]");
    FULL(g, "[1, true, false]");
    NOT_FULL(g, "[1]");
    NOT_FULL(g, "[1, true, false, true]");
    NOT_FULL(g, "[1, 2]");
    dsa_gram_destroy(g);
    g = compile("{\"type\":\"array\",\"prefixItems\":[true,{\"type\":\"null\"}],\"items\":true}");
    FULL(g, "[{\"x\": [1]}, null]");
    FULL(g, "[1, null, \"z\", {}]");
    dsa_gram_destroy(g);
    g = compile("{\"type\":\"array\",\"prefixItems\":[],\"items\":{\"type\":\"integer\"}}");
    FULL(g, "[]");
    FULL(g, "[1, 2, 3]");
    dsa_gram_destroy(g);
    cr_expect_eq(try_compile("{\"type\":\"array\",\"prefixItems\":[{},{}],\"maxItems\":1}", &g),
                 DSA_FORMAT);
    cr_expect_eq(try_compile("{\"type\":\"array\",\"prefixItems\":[{}],\"minItems\":2}", &g),
                 DSA_FORMAT);
    cr_expect_eq(try_compile("{\"type\":\"array\",\"prefixItems\":[false]}", &g), DSA_FORMAT);
    cr_expect_eq(try_compile("{\"type\":\"array\",\"prefixItems\":{}}", &g), DSA_FORMAT);
}
