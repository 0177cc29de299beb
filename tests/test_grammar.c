/* test_grammar.c - the grammar engine (common/grammar.h): languages of the
 * schema, regex and choice compilers checked by feeding bytes, the token
 * mask on the real DeepSeek-V3 vocabulary, errors for input outside the
 * subset, bounds, and the LRU cache.  (Mask equality with xgrammar is
 * test_grammar_oracle.c.) */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

TestSuite(grammar, .init = setup, .fini = teardown, .timeout = 120);

static dsa_gram *compile(dsa_gram_kind k, const char *text, int any_ws)
{
    dsa_gram_params p = {.kind = k, .text = text, .len = text ? strlen(text) : 0, .vocab = voc,
                         .any_whitespace = any_ws};
    dsa_gram *g = NULL;
    cr_assert_eq(dsa_gram_compile(&p, &g), DSA_OK, "%s: %s", text, dsa_errmsg());
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
#define PREFIX(g, s) cr_expect_eq(judge(g, s), 0, "'%s' should be a prefix only", s)
#define NO(g, s) cr_expect_eq(judge(g, s), -1, "'%s' should be refused", s)

Test(grammar, regex_language)
{
    dsa_gram *g = compile(DSA_GRAM_REGEX, "(cat|dog)s? [0-9]{2,3}", 1);
    FULL(g, "cat 12");
    FULL(g, "dogs 123");
    PREFIX(g, "dog");
    PREFIX(g, "cats 1");
    NO(g, "cats 1234");
    NO(g, "bird");
    dsa_gram_destroy(g);
    g = compile(DSA_GRAM_REGEX, "^[^a-c\\s]+\\d?\\.[\\w-]*$", 1);
    FULL(g, "xyz.");
    FULL(g, "\xc3\xa9\xe4\xb8\xad" "7.a_b-c");
    NO(g, "a.");
    NO(g, "x y.");
    PREFIX(g, "\xe4\xb8"); /* a cut character is a prefix */
    NO(g, "\xc0\x80.");    /* an overlong encoding is not a character */
    dsa_gram_destroy(g);
    g = compile(DSA_GRAM_REGEX, "a.c", 1); /* '.' is any character, newline too */
    FULL(g, "a\nc");
    FULL(g, "a\xf0\x9f\x98\x80" "c");
    dsa_gram_destroy(g);
}

Test(grammar, schema_object_order_and_optional)
{
    dsa_gram *g = compile(DSA_GRAM_JSON_SCHEMA, "{\"type\":\"object\",\"properties\":{"
                          "\"a\":{\"type\":\"string\"},\"b\":{\"type\":\"integer\"},"
                          "\"c\":{\"type\":\"boolean\"}},\"required\":[\"b\"]}", 1);
    FULL(g, "{\"b\":1}");
    FULL(g, "{\"a\":\"x\",\"b\":-2,\"c\":true}");
    FULL(g, "{ \"b\" :\n\t0 , \"c\": false }");
    NO(g, "{\"c\":true,\"b\":1}");   /* declared order */
    NO(g, "{\"a\":\"x\"}");          /* b is required */
    NO(g, "{\"b\":1,\"d\":2}");      /* no additional properties */
    NO(g, "{\"b\":01}");
    NO(g, " {\"b\":1}");             /* no whitespace around the root */
    PREFIX(g, "{\"a\":\"\\u00e9");
    NO(g, "{\"a\":\"\x01\"");        /* control characters need escapes */
    dsa_gram_destroy(g);
    /* compact: vLLM's disable_any_whitespace writes ", " and ": " */
    g = compile(DSA_GRAM_JSON_SCHEMA, "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":"
                "\"array\",\"items\":{\"type\":\"integer\"}}},\"required\":[\"a\"]}", 0);
    FULL(g, "{\"a\": [1, 2]}");
    NO(g, "{\"a\":[1,2]}");
    dsa_gram_destroy(g);
}

Test(grammar, schema_values)
{
    dsa_gram *g = compile(DSA_GRAM_JSON_SCHEMA, "{\"type\":\"integer\",\"minimum\":-5,"
                          "\"maximum\":120}", 1);
    const char *ok[] = {"-5", "-1", "0", "7", "99", "100", "120"};
    const char *bad[] = {"-6", "-0", "121", "129", "200", "1000", "007"};
    for (size_t i = 0; i < 7; i++) {
        FULL(g, ok[i]);
        cr_expect_neq(judge(g, bad[i]), 1, "%s", bad[i]);
    }
    dsa_gram_destroy(g);
    g = compile(DSA_GRAM_JSON_SCHEMA, "{\"type\":\"integer\",\"exclusiveMinimum\":10}", 1);
    FULL(g, "11");
    FULL(g, "123456");
    cr_expect_neq(judge(g, "10"), 1);
    NO(g, "-1");
    dsa_gram_destroy(g);
    g = compile(DSA_GRAM_JSON_SCHEMA, "{\"enum\":[\"x\",1.5,null,{\"k\":[true]}]}", 1);
    FULL(g, "\"x\"");
    FULL(g, "1.5");
    FULL(g, "null");
    FULL(g, "{\"k\":[true]}");
    NO(g, "2");
    dsa_gram_destroy(g);
    g = compile(DSA_GRAM_JSON_SCHEMA, "{\"type\":\"array\",\"items\":{\"type\":\"number\"},"
                "\"minItems\":2,\"maxItems\":3}", 1);
    NO(g, "[]");
    PREFIX(g, "[1");
    NO(g, "[1]");
    FULL(g, "[1, 2.5e-3]");
    FULL(g, "[1,2,3]");
    NO(g, "[1,2,3,4]");
    dsa_gram_destroy(g);
    g = compile(DSA_GRAM_JSON_SCHEMA, "{\"type\":\"string\",\"format\":\"date\"}", 1);
    FULL(g, "\"2024-02-29\"");
    NO(g, "\"2024-13-01\"");
    dsa_gram_destroy(g);
    g = compile(DSA_GRAM_JSON_SCHEMA, "{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}", 1);
    NO(g, "\"a\"");
    FULL(g, "\"ab\"");
    FULL(g, "\"\xe6\x97\xa5\xe6\x9c\xac\""); /* two characters, six bytes */
    NO(g, "\"abcd\"");
    dsa_gram_destroy(g);
}

Test(grammar, schema_refs_and_any)
{
    dsa_gram *g = compile(DSA_GRAM_JSON_SCHEMA, "{\"$defs\":{\"n\":{\"type\":\"object\","
                          "\"properties\":{\"v\":{\"type\":\"integer\"},\"next\":{\"anyOf\":["
                          "{\"$ref\":\"#/$defs/n\"},{\"type\":\"null\"}]}},\"required\":[\"v\","
                          "\"next\"]}},\"$ref\":\"#/$defs/n\"}", 1);
    FULL(g, "{\"v\":1,\"next\":{\"v\":2,\"next\":{\"v\":3,\"next\":null}}}");
    NO(g, "{\"v\":1,\"next\":{\"v\":2}}");
    dsa_gram_destroy(g);
    g = compile(DSA_GRAM_JSON_OBJECT, NULL, 1);
    FULL(g, "{\"a\": [1, {\"b\": null}, \"s\"], \"c\": -1.5e+3}");
    NO(g, "{\"c\": -0"); /* xgrammar's numbers have no "-0" (a restriction, still JSON) */
    FULL(g, "{}");
    NO(g, "[1]");
    NO(g, "{\"a\":1,}");
    dsa_gram_destroy(g);
}

Test(grammar, choice_and_masks)
{
    dsa_gram *g = compile(DSA_GRAM_CHOICE, "[\"yes\",\"no\"]", 1);
    size_t nw = dsa_gram_mask_words(voc);
    uint32_t *m = calloc(nw, sizeof *m);
    int32_t st = dsa_gram_start(g);
    cr_assert_eq(dsa_gram_fill_mask(g, st, m), DSA_OK);
    int32_t yes = dsa_tok_token_to_id(tok, "yes", 3), no = dsa_tok_token_to_id(tok, "no", 2);
    int32_t y = dsa_tok_token_to_id(tok, "y", 1), eos = dsa_tok_eos_id(tok);
    int32_t sp = dsa_tok_token_to_id(tok, "\xc4\xa0yes", 5); /* " yes" */
    cr_assert(yes >= 0 && no >= 0 && y >= 0 && sp >= 0);
    cr_expect(m[yes >> 5] >> (yes & 31) & 1);
    cr_expect(m[no >> 5] >> (no & 31) & 1);
    cr_expect(m[y >> 5] >> (y & 31) & 1);
    cr_expect(!(m[sp >> 5] >> (sp & 31) & 1));
    cr_expect(!(m[eos >> 5] >> (eos & 31) & 1));
    cr_assert_eq(dsa_gram_accept_token(g, &st, sp), DSA_INVAL);
    cr_assert_eq(dsa_gram_accept_token(g, &st, eos), DSA_INVAL); /* not complete yet */
    cr_assert_eq(dsa_gram_accept_token(g, &st, yes), DSA_OK);
    cr_assert(dsa_gram_is_terminated(g, st));
    cr_assert_eq(dsa_gram_fill_mask(g, st, m), DSA_OK);
    int n = 0;
    for (size_t w = 0; w < nw; w++)
        n += __builtin_popcount(m[w]);
    cr_expect_eq(n, 1);
    cr_expect(m[eos >> 5] >> (eos & 31) & 1); /* only the end of sentence */
    /* added tokens never match grammar text in the server's vocabulary */
    dsa_gram *j = compile(DSA_GRAM_JSON_SCHEMA, "{\"type\":\"string\"}", 1);
    int32_t s2 = dsa_gram_start(j);
    cr_assert_eq(dsa_gram_accept_bytes(j, &s2, "\"", 1), DSA_OK);
    cr_assert_eq(dsa_gram_fill_mask(j, s2, m), DSA_OK);
    const char *calls = "<\xef\xbd\x9ctool\xe2\x96\x81" "calls\xe2\x96\x81" "begin\xef\xbd\x9c>";
    int32_t call = dsa_tok_token_to_id(tok, calls, strlen(calls));
    cr_assert(call >= 0);
    cr_expect(!(m[call >> 5] >> (call & 31) & 1));
    free(m);
    dsa_gram_destroy(j);
    dsa_gram_destroy(g);
}

static dsa_err compile_err(dsa_gram_kind k, const char *text)
{
    dsa_gram_params p = {.kind = k, .text = text, .len = strlen(text), .vocab = voc,
                         .any_whitespace = 1};
    dsa_gram *g = NULL;
    dsa_err err = dsa_gram_compile(&p, &g);
    cr_assert_null(g);
    return err;
}

Test(grammar, refusals)
{
    cr_expect_eq(compile_err(DSA_GRAM_JSON_SCHEMA, "{\"type\":"), DSA_FORMAT);
    cr_expect_eq(compile_err(DSA_GRAM_JSON_SCHEMA, "{\"not\":{}}"), DSA_FORMAT);
    cr_expect(strstr(dsa_errmsg(), "'not' is not supported"), "%s", dsa_errmsg());
    cr_expect_neq(compile_err(DSA_GRAM_JSON_SCHEMA, "{\"type\":\"array\",\"uniqueItems\":true}"),
                  DSA_OK);
    cr_expect_neq(compile_err(DSA_GRAM_JSON_SCHEMA, "{\"type\":\"strin\"}"), DSA_OK);
    cr_expect_neq(compile_err(DSA_GRAM_JSON_SCHEMA, "{\"$ref\":\"http://x/y\"}"), DSA_OK);
    cr_expect_eq(compile_err(DSA_GRAM_REGEX, "(ab"), DSA_FORMAT);
    cr_expect_eq(compile_err(DSA_GRAM_REGEX, "a)"), DSA_FORMAT);
    cr_expect_eq(compile_err(DSA_GRAM_REGEX, "[b-a]"), DSA_FORMAT);
    cr_expect_eq(compile_err(DSA_GRAM_REGEX, "(a)\\1"), DSA_UNSUPPORTED);
    cr_expect_eq(compile_err(DSA_GRAM_REGEX, "(?!a)b"), DSA_UNSUPPORTED);
    cr_expect_eq(compile_err(DSA_GRAM_REGEX, "a\\bb"), DSA_UNSUPPORTED);
    cr_expect_eq(compile_err(DSA_GRAM_REGEX, "*a"), DSA_FORMAT);
    cr_expect_eq(compile_err(DSA_GRAM_REGEX, "a{20000}"), DSA_RANGE);
    cr_expect_eq(compile_err(DSA_GRAM_CHOICE, "[1]"), DSA_FORMAT);
    cr_expect_eq(compile_err(DSA_GRAM_EBNF, "root ::= root \"a\" | \"b\""), DSA_FORMAT);
    cr_expect(strstr(dsa_errmsg(), "left-recursive"), "%s", dsa_errmsg());
    cr_expect_eq(compile_err(DSA_GRAM_EBNF, "root ::= x"), DSA_FORMAT);
    cr_expect_eq(compile_err(DSA_GRAM_EBNF, "start ::= \"a\""), DSA_FORMAT);
    cr_expect_eq(compile_err(DSA_GRAM_EBNF, "root ::= (=(\"a\")) \"a\""), DSA_UNSUPPORTED);
    cr_expect_eq(compile_err(DSA_GRAM_EBNF, "root ::= \"a"), DSA_FORMAT);
    cr_expect_eq(compile_err(DSA_GRAM_EBNF, "?start: \"a\""), DSA_FORMAT); /* Lark */
    /* deep nesting is refused, not recursed into */
    char *deep = malloc(400 * 32);
    char *p = deep;
    for (int i = 0; i < 400; i++)
        p += sprintf(p, "{\"type\":\"array\",\"items\":");
    p += sprintf(p, "{}");
    for (int i = 0; i < 400; i++)
        *p++ = '}';
    *p = 0;
    cr_expect_neq(compile_err(DSA_GRAM_JSON_SCHEMA, deep), DSA_OK);
    cr_expect(strstr(dsa_errmsg(), "deeper than"), "%s", dsa_errmsg());
    free(deep);
}

Test(grammar, ebnf_language)
{
    dsa_gram *g = compile(DSA_GRAM_EBNF, "# arithmetic\nroot ::= expr\n"
                          "expr ::= term (\"+\" term)*\nterm ::= [0-9]+ | \"(\" expr \")\"\n"
                          "unused ::= \"\\u00e9\" [^\\n\\]]{2,3}\n", 1);
    FULL(g, "1+23");
    FULL(g, "(1+(2))+3");
    PREFIX(g, "(1+");
    NO(g, "1++2");
    NO(g, "(1))");
    dsa_gram_destroy(g);
}

Test(grammar, catastrophic_regex_is_linear)
{
    /* (a+)+b backtracks exponentially in a backtracking engine; here the
     * matcher state stays small and 10,000 bytes take milliseconds */
    dsa_gram *g = compile(DSA_GRAM_REGEX, "(a+)+b", 1);
    int32_t st = dsa_gram_start(g);
    clock_t t0 = clock();
    for (int i = 0; i < 10000; i++)
        cr_assert_eq(dsa_gram_accept_bytes(g, &st, "a", 1), DSA_OK);
    cr_expect_eq(dsa_gram_accept_bytes(g, &st, "c", 1), DSA_INVAL);
    cr_expect_eq(dsa_gram_accept_bytes(g, &st, "b", 1), DSA_OK);
    cr_expect(dsa_gram_is_complete(g, st));
    cr_expect_lt((double)(clock() - t0) / CLOCKS_PER_SEC, 2.0);
    dsa_gram_destroy(g);
}

Test(grammar, cache_lru)
{
    dsa_gram_cache *c;
    cr_assert_eq(dsa_gram_cache_create(voc, 2, &c), DSA_OK);
    dsa_gram *a, *b, *a2, *x;
    cr_assert_eq(dsa_gram_cache_get(c, DSA_GRAM_REGEX, "a+", 2, 1, &a), DSA_OK);
    cr_assert_eq(dsa_gram_cache_get(c, DSA_GRAM_REGEX, "b+", 2, 1, &b), DSA_OK);
    cr_assert_eq(dsa_gram_cache_get(c, DSA_GRAM_REGEX, "a+", 2, 1, &a2), DSA_OK);
    cr_expect_eq(a, a2);               /* a hit */
    cr_assert_eq(dsa_gram_cache_get(c, DSA_GRAM_REGEX, "c+", 2, 1, &x), DSA_OK); /* evicts b */
    dsa_gram_destroy(x);
    cr_assert_eq(dsa_gram_cache_get(c, DSA_GRAM_REGEX, "b+", 2, 1, &x), DSA_OK);
    cr_expect_neq(x, b);               /* compiled again */
    dsa_gram_destroy(x);
    cr_expect_eq(dsa_gram_cache_get(c, DSA_GRAM_REGEX, "(", 1, 1, &x), DSA_FORMAT);
    int64_t hits, misses;
    dsa_gram_cache_stats(c, &hits, &misses);
    cr_expect_eq(hits, 1);
    cr_expect_eq(misses, 5); /* a, b, c, b again, and the bad one */
    dsa_gram_cache_destroy(c);
    /* the requests' references outlive the cache */
    cr_expect(judge(b, "bb") == 1);
    dsa_gram_destroy(a);
    dsa_gram_destroy(a2);
    dsa_gram_destroy(b);
}

Test(grammar, forced_tool_calls)
{
    static const char *const marks[] = {
        "<\xef\xbd\x9ctool\xe2\x96\x81" "calls\xe2\x96\x81" "begin\xef\xbd\x9c>",
        "<\xef\xbd\x9ctool\xe2\x96\x81" "calls\xe2\x96\x81" "end\xef\xbd\x9c>",
        "<\xef\xbd\x9ctool\xe2\x96\x81" "call\xe2\x96\x81" "begin\xef\xbd\x9c>",
        "<\xef\xbd\x9ctool\xe2\x96\x81" "call\xe2\x96\x81" "end\xef\xbd\x9c>",
        "<\xef\xbd\x9ctool\xe2\x96\x81" "sep\xef\xbd\x9c>"};
    int32_t id[5];
    for (int i = 0; i < 5; i++)
        cr_assert_geq(id[i] = dsa_tok_token_to_id(tok, marks[i], strlen(marks[i])), 0);
    char text[512];
    snprintf(text, sizeof text, "{\"tools\":[{\"name\":\"f\",\"parameters\":{\"type\":\"object\","
             "\"properties\":{\"n\":{\"type\":\"integer\"}},\"required\":[\"n\"]}}],"
             "\"parallel\":true,\"markers\":{\"calls_begin\":%d,\"calls_end\":%d,"
             "\"call_begin\":%d,\"call_end\":%d,\"sep\":%d}}", id[0], id[1], id[2], id[3], id[4]);
    dsa_gram *g = compile(DSA_GRAM_TOOLS, text, 0);
    size_t nw = dsa_gram_mask_words(voc);
    uint32_t *m = calloc(nw, sizeof *m);
    int32_t st = dsa_gram_start(g);
    cr_assert_eq(dsa_gram_fill_mask(g, st, m), DSA_OK);
    int n = 0;
    for (size_t w = 0; w < nw; w++)
        n += __builtin_popcount(m[w]);
    cr_expect_eq(n, 1); /* only the calls-begin token */
    cr_expect(m[id[0] >> 5] >> (id[0] & 31) & 1);
    /* the call's text is written with ordinary tokens; the markers are the
     * added tokens themselves */
    int32_t ids[64];
    size_t k = 0;
    ids[k++] = id[0];
    ids[k++] = id[2];
    int32_t *enc = NULL;
    size_t n_enc = 0;
    cr_assert_eq(dsa_tok_encode(tok, "function", 8, 0, &enc, &n_enc), DSA_OK);
    for (size_t i = 0; i < n_enc; i++)
        ids[k++] = enc[i];
    free(enc);
    ids[k++] = id[4];
    const char *body = "f\n```json\n{\"n\": 42}\n```";
    cr_assert_eq(dsa_tok_encode(tok, body, strlen(body), 0, &enc, &n_enc), DSA_OK);
    for (size_t i = 0; i < n_enc; i++)
        ids[k++] = enc[i];
    free(enc);
    ids[k++] = id[3];
    for (size_t i = 0; i < k; i++)
        cr_assert_eq(dsa_gram_accept_token(g, &st, ids[i]), DSA_OK, "token %zu", i);
    cr_expect(!dsa_gram_is_complete(g, st));
    int32_t bad = st;
    cr_expect_eq(dsa_gram_accept_token(g, &bad, id[3]), DSA_INVAL);
    cr_assert_eq(dsa_gram_accept_token(g, &st, id[1]), DSA_OK);
    cr_expect(dsa_gram_is_terminated(g, st));
    free(m);
    dsa_gram_destroy(g);
}

/* Mutated schemas, regexes and grammars (truncations, byte flips, splices;
 * a fixed PRNG): each compiles or fails with an error, never crashes, and
 * a compiled one walks random bytes and fills masks.  Under ASan/UBSan in
 * the sanitizer run. */
Test(grammar, mutated_inputs_fail_cleanly, .timeout = 300)
{
    static const struct {
        dsa_gram_kind k;
        const char *s;
    } seeds[] = {
        {DSA_GRAM_JSON_SCHEMA, "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\","
         "\"maxLength\":3},\"b\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/x\"},"
         "\"minItems\":1}},\"required\":[\"a\"],\"$defs\":{\"x\":{\"anyOf\":[{\"type\":"
         "\"integer\",\"minimum\":-3,\"maximum\":300},{\"enum\":[1,\"z\",null]}]}}}"},
        {DSA_GRAM_JSON_SCHEMA, "{\"type\":\"string\",\"pattern\":\"^(a|b[0-9]{2,3})+\\\\.x$\","
         "\"format\":\"date\"}"},
        {DSA_GRAM_REGEX, "(?:[a-f\\d]{1,4}:){2}[^\\s\"]*(x|y)?\\u00e9+.{0,3}"},
        {DSA_GRAM_EBNF, "root ::= a (\",\" a)*\na ::= [0-9]+ | \"(\" root \")\" | \"\\u00e9\"{2}\n"},
        {DSA_GRAM_CHOICE, "[\"yes\",\"no\",\"\\u00e9t\\u00e9\"]"},
    };
    uint64_t x = 0x9E3779B97F4A7C15ull;
    char buf[1024];
    size_t nw = dsa_gram_mask_words(voc);
    uint32_t *m = calloc(nw, sizeof *m);
    int compiled = 0, refused = 0;
    for (int it = 0; it < 3000; it++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        const char *s = seeds[x % 5].s;
        size_t n = strlen(s);
        memcpy(buf, s, n);
        int edits = 1 + (int)(x >> 8) % 4;
        for (int e = 0; e < edits; e++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            size_t at = (size_t)(x >> 16) % (n ? n : 1);
            switch (x % 4) {
            case 0: buf[at] = (char)(x >> 40); break;                   /* byte */
            case 1: n = at; break;                                      /* cut */
            case 2: if (n + 8 < sizeof buf) {                           /* splice */
                        memmove(buf + at + 4, buf + at, n - at);
                        memcpy(buf + at, "(({[", 4);
                        n += 4;
                    }
                    break;
            default: buf[at] = "{}[]()*+?|\\\"^$-:,"[(x >> 24) % 17]; /* syntax */
            }
        }
        dsa_gram_params p = {.kind = seeds[x % 5].k, .text = buf, .len = n, .vocab = voc,
                             .any_whitespace = (int)(x >> 3) & 1};
        dsa_gram *g = NULL;
        if (dsa_gram_compile(&p, &g)) {
            cr_assert_null(g);
            refused++;
            continue;
        }
        compiled++;
        int32_t st = dsa_gram_start(g);
        for (int k = 0; k < 8; k++) {
            cr_assert_eq(dsa_gram_fill_mask(g, st, m), DSA_OK);
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            char c = (char)(x >> 32);
            (void)dsa_gram_accept_bytes(g, &st, &c, 1); /* refused or taken */
        }
        dsa_gram_destroy(g);
    }
    cr_expect_gt(compiled, 100);
    cr_expect_gt(refused, 100);
    free(m);
}

/* A JSON string's body is one self-looping rule holding the character
 * class's byte sequences and the escape, not a rule per character: a
 * position inside the string then accepts the tokens that stay in it. */
Test(grammar, string_body_is_one_frame)
{
    dsa_gram *g = compile(DSA_GRAM_JSON_SCHEMA, "{\"type\":\"string\"}", 1);
    char *d = dsa_gram_dump(g);
    cr_assert(d);
    static const char root[] = "root0 ::= [\"] star1 [\"]\n";
    cr_expect(strncmp(d, root, strlen(root)) == 0, "%s", d);
    cr_expect(strstr(d, "star1 ::= [\\x20-!#-[\\x5D-\\x7F] star1 | [\\xC2-\\xDF] [\\x80-\\xBF] star1 |"),
              "%s", d);
    cr_expect(strstr(d, "[\\x5C] alt2 star1 | \"\"\n"), "%s", d);
    cr_expect(!strstr(d, "char"), "%s", d);
    free(d);
    FULL(g, "\"a\\u00e9\xc3\xa9\"");
    NO(g, "\"\xc3\"");
    dsa_gram_destroy(g);
}

/* The mask of the state reached by prefix against every token fed alone:
 * the classifications that grammars share through the vocabulary (keyed
 * by a position's reachable rules and the bytes that may follow them)
 * must never carry one grammar's answer into another. */
static void mask_matches_tokens(dsa_gram *g, const char *prefix)
{
    int32_t st = dsa_gram_start(g);
    cr_assert_eq(dsa_gram_accept_bytes(g, &st, prefix, strlen(prefix)), DSA_OK, "%s", prefix);
    size_t nw = dsa_gram_mask_words(voc), n = dsa_gram_vocab_n(voc), n_on = 0;
    uint32_t *mask = calloc(nw, sizeof *mask);
    cr_assert(mask);
    cr_assert_eq(dsa_gram_fill_mask(g, st, mask), DSA_OK);
    for (size_t id = 0; id < n; id++) {
        int32_t s = st;
        int ok = dsa_gram_accept_token(g, &s, (int32_t)id) == DSA_OK;
        int on = mask[id >> 5] >> (id & 31) & 1;
        n_on += (size_t)on;
        cr_assert_eq(on, ok, "after '%s': id %zu is %s by the mask", prefix, id,
                     on ? "allowed" : "refused");
    }
    cr_expect_gt(n_on, 0, "after '%s': nothing allowed", prefix);
    free(mask);
}

Test(grammar, shared_classifications_per_grammar, .timeout = 300)
{
    static const struct {
        dsa_gram_kind kind;
        const char *text;
        const char *prefixes[4];
    } cases[] = {
        {DSA_GRAM_REGEX, "[a-z]*\"x", {"", "ab", "ab\""}},
        {DSA_GRAM_REGEX, "[a-z]*'y", {"", "ab", "ab'"}},
        {DSA_GRAM_REGEX, "[^\"]*\"", {"", "a b", "\xc3\xa9"}},
        {DSA_GRAM_REGEX, "(\xc3\xa9|[^a-z\"])*z", {"", "\xc3\xa9", "A "}},
        {DSA_GRAM_JSON_SCHEMA, "{\"type\":\"string\"}", {"", "\"", "\"ab c"}},
        {DSA_GRAM_JSON_SCHEMA,
         "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\"},"
         "\"b\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}}},\"required\":[\"a\",\"b\"]}",
         {"{\"a\": \"", "{\"a\": \"x y", "{\"a\": \"x\", \"b\": [\"", "{\"a\": \"x\", \"b\": [\"q"}},
        {DSA_GRAM_JSON_OBJECT, NULL, {"{\"", "{\"k\": \"v w", "{\"k\": [\"v"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dsa_gram *g = compile(cases[i].kind, cases[i].text, 1);
        for (int k = 0; k < 4 && cases[i].prefixes[k]; k++)
            mask_matches_tokens(g, cases[i].prefixes[k]);
        dsa_gram_destroy(g);
    }
}

/* Positions are classified when a grammar is compiled (the adaptive
 * token-mask cache built ahead, as xgrammar does), so the first masks of a
 * new grammar classify nothing; a huge grammar stops at a bound of work
 * and classifies the rest lazily, with the same masks. */
Test(grammar, classified_at_compile, .timeout = 300)
{
    dsa_gram *g = compile(DSA_GRAM_JSON_SCHEMA,
                          "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},"
                          "\"n\":{\"type\":\"integer\"},\"tag\":{\"enum\":[\"red\",\"blue\"]}},"
                          "\"required\":[\"name\",\"n\",\"tag\"]}", 1);
    int64_t ahead = 0, lazily = 0;
    dsa_gram_classify_stats(g, &ahead, &lazily);
    cr_expect_gt(ahead, 20, "%lld positions classified at compile", (long long)ahead);
    cr_expect_eq(lazily, 0);
    static const char *const doc[] = {"{\"", "name", "\": \"", "Ada Love", "lace\", \"n\": ",
                                      "-12", ", \"tag\": \"", "blue", "\"}"};
    size_t nw = dsa_gram_mask_words(voc);
    uint32_t *mask = calloc(nw, sizeof *mask);
    cr_assert(mask);
    int32_t st = dsa_gram_start(g);
    for (size_t i = 0; i < sizeof doc / sizeof doc[0]; i++) {
        cr_assert_eq(dsa_gram_fill_mask(g, st, mask), DSA_OK);
        cr_assert_eq(dsa_gram_accept_bytes(g, &st, doc[i], strlen(doc[i])), DSA_OK, "%s", doc[i]);
    }
    cr_assert_eq(dsa_gram_fill_mask(g, st, mask), DSA_OK);
    cr_assert(dsa_gram_is_complete(g, st));
    dsa_gram_classify_stats(g, &ahead, &lazily);
    cr_expect_eq(lazily, 0, "the first walk classified %lld positions", (long long)lazily);
    dsa_gram_destroy(g);

    /* an object of 2,000 required properties: over the bound */
    size_t cap = 2000 * 64 + 64, n = 0, dcap = 2000 * 16 + 16, dn = 0;
    char *schema = malloc(cap), *prefix = malloc(dcap);
    cr_assert(schema && prefix);
    n += (size_t)snprintf(schema + n, cap - n, "{\"type\":\"object\",\"properties\":{");
    for (int i = 0; i < 2000; i++)
        n += (size_t)snprintf(schema + n, cap - n, "%s\"p%d\":{\"type\":\"integer\"}",
                              i ? "," : "", i);
    n += (size_t)snprintf(schema + n, cap - n, "},\"required\":[");
    for (int i = 0; i < 2000; i++)
        n += (size_t)snprintf(schema + n, cap - n, "%s\"p%d\"", i ? "," : "", i);
    snprintf(schema + n, cap - n, "]}");
    dn += (size_t)snprintf(prefix + dn, dcap - dn, "{");
    for (int i = 0; i < 1999; i++)
        dn += (size_t)snprintf(prefix + dn, dcap - dn, "\"p%d\": %d, ", i, i);
    snprintf(prefix + dn, dcap - dn, "\"p1999\": ");
    g = compile(DSA_GRAM_JSON_SCHEMA, schema, 1);
    dsa_gram_classify_stats(g, &ahead, &lazily);
    cr_expect_gt(ahead, 0);
    cr_expect_eq(lazily, 0);
    mask_matches_tokens(g, prefix);
    dsa_gram_classify_stats(g, &ahead, &lazily);
    cr_expect_gt(lazily, 0, "a huge grammar classified everything at compile");
    mask_matches_tokens(g, "{\"p0\": 7");
    dsa_gram_destroy(g);
    free(schema);
    free(prefix);
    free(mask);
}
