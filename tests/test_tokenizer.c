/* test_tokenizer.c - the tokenizer against golden ids from PyPI `tokenizers`
 * (tools/golden/tokenizer_golden.py): the DeepSeek-V3 tokenizer
 * (tests/data/deepseek-v3-tokenizer) over the whole corpus, small tokenizers from tests/data for the
 * features DeepSeek's file does not use, streaming, threads, malformed
 * files and invalid UTF-8. */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/tokenizer.h"
#include "tests/support.h"

/* ---- helpers ------------------------------------------------------------ */

typedef struct corpus {
    char **text;
    size_t *len;
    size_t n;
} corpus;

/* One JSON object per line; `key` picks the field kept as a string. */
static cJSON **read_jsonl(const char *rel, size_t *n)
{
    char *path = dsa_test_data_path(rel);
    size_t len;
    char *buf = dsa_test_read_file(path, &len);
    cr_assert(buf, "cannot read %s", path);
    free(path);
    size_t cap = 1024, k = 0;
    cJSON **v = malloc(cap * sizeof *v);
    for (char *p = buf; *p;) {
        char *e = strchr(p, '\n');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l) {
            if (k == cap)
                v = realloc(v, (cap *= 2) * sizeof *v);
            v[k] = cJSON_ParseWithLength(p, l);
            cr_assert(v[k], "%s: bad line %zu", rel, k + 1);
            k++;
        }
        p += l + (e ? 1 : 0);
    }
    free(buf);
    *n = k;
    return v;
}

static void free_jsonl(cJSON **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cJSON_Delete(v[i]);
    free(v);
}

static corpus load_corpus(void)
{
    size_t n;
    cJSON **v = read_jsonl("tokenizer/corpus.jsonl", &n);
    corpus c = {malloc(n * sizeof(char *)), malloc(n * sizeof(size_t)), n};
    for (size_t i = 0; i < n; i++) {
        const cJSON *t = cJSON_GetObjectItem(v[i], "text");
        c.text[i] = strdup(t->valuestring);
        c.len[i] = strlen(t->valuestring);
    }
    free_jsonl(v, n);
    cr_assert(c.n >= 2000, "corpus has %zu strings", c.n);
    return c;
}

static void free_corpus(corpus *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->text[i]);
    free(c->text);
    free(c->len);
}

/* Loads the DeepSeek-V3 tokenizer (tests/data/deepseek-v3-tokenizer). */
static dsa_tok *load_deepseek(void)
{
    char *dir = dsa_test_data_path("deepseek-v3-tokenizer");
    dsa_tok *tok = NULL;
    dsa_err err = dsa_tok_load(dir, &tok);
    cr_assert_eq(err, DSA_OK, "load %s: %s", dir, dsa_errmsg());
    free(dir);
    return tok;
}

static dsa_tok *load_data(const char *rel)
{
    char *path = dsa_test_data_path(rel);
    dsa_tok *tok = NULL;
    dsa_err err = dsa_tok_load_files(path, NULL, &tok);
    cr_assert_eq(err, DSA_OK, "load %s: %s", path, dsa_errmsg());
    free(path);
    return tok;
}

static int ids_equal(const cJSON *arr, const int32_t *ids, size_t n, size_t *at)
{
    size_t k = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
        if (k >= n || (int32_t)e->valuedouble != ids[k]) {
            *at = k;
            return 0;
        }
        k++;
    }
    *at = k;
    return k == n;
}

static int utf8_ok(const char *s, size_t n)
{
    return dsa_tok_utf8_check(s, n) == DSA_OK;
}

/* ---- DeepSeek-V3 -------------------------------------------------------- */

Test(tokenizer, deepseek_load)
{
    dsa_tok *tok = load_deepseek();
    cr_assert_eq(dsa_tok_bos_id(tok), 0);
    cr_assert_eq(dsa_tok_eos_id(tok), 1);
    cr_assert_str_eq(dsa_tok_bos_token(tok), "<｜begin▁of▁sentence｜>");
    cr_assert_str_eq(dsa_tok_eos_token(tok), "<｜end▁of▁sentence｜>");
    cr_assert(dsa_tok_add_bos(tok));
    cr_assert_eq(dsa_tok_n_vocab(tok), 128815);
    cr_assert_eq(dsa_tok_token_to_id(tok, "<｜User｜>", strlen("<｜User｜>")), 128803);
    cr_assert_eq(dsa_tok_token_to_id(tok, "<｜Assistant｜>", strlen("<｜Assistant｜>")), 128804);
    cr_assert_eq(dsa_tok_token_to_id(tok, "Ġt", strlen("Ġt")) >= 0, 1);
    cr_assert_eq(dsa_tok_token_to_id(tok, "no such token!", 14), -1);
    size_t len;
    cr_assert_str_eq(dsa_tok_id_to_token(tok, 128803, &len), "<｜User｜>");
    cr_assert_null(dsa_tok_id_to_token(tok, 1 << 30, &len));
    cr_assert(dsa_tok_is_special(tok, 0));
    cr_assert(!dsa_tok_is_special(tok, 128803)); /* <｜User｜> is not special */
    const char *tpl = dsa_tok_chat_template(tok);
    cr_assert(tpl && strstr(tpl, "add_generation_prompt") && strstr(tpl, "<｜Assistant｜>"));
    dsa_tok_destroy(tok);
    dsa_tok_destroy(NULL);
}

Test(tokenizer, deepseek_golden, .timeout = 240)
{
    dsa_tok *tok = load_deepseek();
    corpus c = load_corpus();
    size_t ng;
    cJSON **g = read_jsonl("tokenizer/golden_deepseek_v3.jsonl", &ng);
    cr_assert_eq(ng, c.n);
    size_t bad_ids = 0, bad_rt = 0, bad_skip = 0, bad_bos = 0, total_ids = 0;
    for (size_t i = 0; i < c.n; i++) {
        int32_t *ids;
        size_t n, at;
        cr_assert_eq(dsa_tok_encode(tok, c.text[i], c.len[i], 0, &ids, &n), DSA_OK, "%s",
                     dsa_errmsg());
        total_ids += n;
        if (!ids_equal(cJSON_GetObjectItem(g[i], "ids"), ids, n, &at)) {
            if (bad_ids++ < 5)
                cr_log_error("string %zu: ids differ at %zu: \"%.80s\"", i, at, c.text[i]);
        }
        char *text;
        size_t tl;
        cr_assert_eq(dsa_tok_decode(tok, ids, n, 0, &text, &tl), DSA_OK);
        if (tl != c.len[i] || memcmp(text, c.text[i], tl) != 0)
            bad_rt++;
        free(text);
        const cJSON *skip = cJSON_GetObjectItem(g[i], "skip");
        cr_assert_eq(dsa_tok_decode(tok, ids, n, 1, &text, &tl), DSA_OK);
        const char *want = skip ? skip->valuestring : c.text[i];
        if (tl != strlen(want) || memcmp(text, want, tl) != 0)
            bad_skip++;
        free(text);
        int32_t *ids2;
        size_t n2;
        cr_assert_eq(dsa_tok_encode(tok, c.text[i], c.len[i], 1, &ids2, &n2), DSA_OK);
        if (n2 != n + 1 || ids2[0] != 0 || (n && memcmp(ids2 + 1, ids, n * sizeof *ids)))
            bad_bos++;
        free(ids2);
        free(ids);
    }
    cr_log_info("deepseek golden: %zu strings, %zu ids, %zu id mismatches", c.n, total_ids,
                bad_ids);
    cr_expect_eq(bad_ids, 0, "%zu of %zu strings encode differently from tokenizers", bad_ids, c.n);
    cr_expect_eq(bad_rt, 0, "%zu strings fail decode(encode(s)) == s", bad_rt);
    cr_expect_eq(bad_skip, 0, "%zu strings decode differently with skip_special_tokens", bad_skip);
    cr_expect_eq(bad_bos, 0, "%zu strings lack BOS with add_special", bad_bos);
    free_jsonl(g, ng);
    free_corpus(&c);
    dsa_tok_destroy(tok);
}

/* Feeds ids one at a time; the deltas must be valid UTF-8 and sum to the
 * one-shot decode. */
static void check_stream(const dsa_tok *tok, const int32_t *ids, size_t n, int skip)
{
    char *want;
    size_t wl;
    cr_assert_eq(dsa_tok_decode(tok, ids, n, skip, &want, &wl), DSA_OK);
    char *got = malloc(wl + 1);
    size_t gl = 0;
    dsa_tok_stream s;
    dsa_tok_stream_init(&s, tok, skip);
    for (size_t i = 0; i <= n; i++) {
        const char *d;
        size_t dl;
        if (i < n)
            cr_assert_eq(dsa_tok_stream_feed(&s, ids[i], &d, &dl), DSA_OK);
        else
            cr_assert_eq(dsa_tok_stream_flush(&s, &d, &dl), DSA_OK);
        cr_assert(utf8_ok(d, dl), "delta %zu is not valid UTF-8", i);
        cr_assert_leq(gl + dl, wl, "stream longer than decode");
        memcpy(got + gl, d, dl);
        gl += dl;
    }
    dsa_tok_stream_deinit(&s);
    cr_assert_eq(gl, wl);
    cr_assert(memcmp(got, want, wl) == 0, "stream differs from decode");
    free(got);
    free(want);
}

Test(tokenizer, deepseek_stream, .timeout = 240)
{
    dsa_tok *tok = load_deepseek();
    corpus c = load_corpus();
    unsigned seed = 12345;
    for (size_t i = 0; i < c.n; i++) {
        int32_t *ids;
        size_t n;
        cr_assert_eq(dsa_tok_encode(tok, c.text[i], c.len[i], 1, &ids, &n), DSA_OK);
        check_stream(tok, ids, n, (int)(i & 1));
        /* A random window: starts and ends mid-character. */
        if (n > 2) {
            size_t a = (size_t)rand_r(&seed) % n, b = a + (size_t)rand_r(&seed) % (n - a);
            check_stream(tok, ids + a, b - a, 0);
        }
        free(ids);
    }
    /* Random ids, mostly byte tokens, to exercise U+FFFD repair. */
    int32_t ids[64];
    for (int r = 0; r < 2000; r++) {
        size_t n = (size_t)rand_r(&seed) % 64;
        for (size_t k = 0; k < n; k++)
            ids[k] = rand_r(&seed) % 4 ? 200 + rand_r(&seed) % 300 : rand_r(&seed) % 128815;
        check_stream(tok, ids, n, r & 1);
    }
    free_corpus(&c);
    dsa_tok_destroy(tok);
}

typedef struct thread_arg {
    const dsa_tok *tok;
    const corpus *c;
    cJSON **g;
    int offset;
    size_t bad;
} thread_arg;

static void *encode_thread(void *p)
{
    thread_arg *a = p;
    for (size_t r = 0; r < a->c->n; r++) {
        size_t i = (r + (size_t)a->offset * 577) % a->c->n;
        int32_t *ids;
        size_t n, at;
        if (dsa_tok_encode(a->tok, a->c->text[i], a->c->len[i], 0, &ids, &n) != DSA_OK ||
            !ids_equal(cJSON_GetObjectItem(a->g[i], "ids"), ids, n, &at))
            a->bad++;
        free(ids);
    }
    return NULL;
}

Test(tokenizer, deepseek_threads, .timeout = 240)
{
    dsa_tok *tok = load_deepseek();
    corpus c = load_corpus();
    size_t ng;
    cJSON **g = read_jsonl("tokenizer/golden_deepseek_v3.jsonl", &ng);
    pthread_t th[4];
    thread_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (thread_arg){tok, &c, g, i, 0};
        pthread_create(&th[i], NULL, encode_thread, &args[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        cr_expect_eq(args[i].bad, 0, "thread %d: %zu mismatches", i, args[i].bad);
    }
    free_jsonl(g, ng);
    free_corpus(&c);
    dsa_tok_destroy(tok);
}

Test(tokenizer, deepseek_specials)
{
    dsa_tok *tok = load_deepseek();
    const char *s = "<｜begin▁of▁sentence｜>hi<｜User｜>x<｜Assistant｜><｜end▁of▁sentence｜>";
    int32_t *ids;
    size_t n;
    cr_assert_eq(dsa_tok_encode(tok, s, strlen(s), 0, &ids, &n), DSA_OK);
    cr_assert_eq(ids[0], 0);
    cr_assert_eq(ids[n - 1], 1);
    char *text;
    size_t tl;
    cr_assert_eq(dsa_tok_decode(tok, ids, n, 1, &text, &tl), DSA_OK);
    cr_assert_str_eq(text, "hi<｜User｜>x<｜Assistant｜>");
    free(text);
    free(ids);
    cr_assert_eq(dsa_tok_encode(tok, "", 0, 0, &ids, &n), DSA_OK);
    cr_assert_eq(n, 0);
    free(ids);
    cr_assert_eq(dsa_tok_encode(tok, "", 0, 1, &ids, &n), DSA_OK);
    cr_assert_eq(n, 1);
    cr_assert_eq(ids[0], 0);
    free(ids);
    dsa_tok_destroy(tok);
}

Test(tokenizer, deepseek_bad_utf8)
{
    dsa_tok *tok = load_deepseek();
    static const char *bad[] = {
        "\x80", "abc\xff", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
        "ok \xe4\xb8", "\xf0\x9f\x98", "\xc3", "a\xc3(b", "\xfe\xfe",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int32_t *ids = (int32_t *)1;
        size_t n = 99;
        dsa_err err = dsa_tok_encode(tok, bad[i], strlen(bad[i]), 0, &ids, &n);
        cr_assert_eq(err, DSA_UTF8, "case %zu: got %s", i, dsa_strerror(err));
        cr_assert_null(ids);
        cr_assert_eq(n, 0);
        cr_assert(strstr(dsa_errmsg(), "UTF-8"), "%s", dsa_errmsg());
    }
    /* ids with no tokenizer entry (V3's vocabulary has 129,280 rows, its
     * tokenizer 128,815 entries) decode to nothing, as tokenizers does;
     * a negative id is an error */
    int32_t *hello = NULL;
    size_t n_hello = 0;
    cr_assert_eq(dsa_tok_encode(tok, "Hello world", 11, 0, &hello, &n_hello), DSA_OK);
    cr_assert_geq(n_hello, 2);
    int32_t mixed[] = {129000, hello[0], 1 << 29, hello[1], 129279};
    char *text;
    size_t tl;
    cr_assert_eq(dsa_tok_decode(tok, mixed, 5, 0, &text, &tl), DSA_OK);
    char *want;
    size_t wl;
    cr_assert_eq(dsa_tok_decode(tok, hello, 2, 0, &want, &wl), DSA_OK);
    cr_assert(tl == wl && !memcmp(text, want, wl), "got \"%s\", want \"%s\"", text, want);
    free(text);
    int32_t gap = 129000;
    cr_assert_eq(dsa_tok_decode(tok, &gap, 1, 1, &text, &tl), DSA_OK);
    cr_assert_eq(tl, 0);
    cr_assert_str_eq(text, "");
    free(text);
    int32_t id = -1;
    cr_assert_eq(dsa_tok_decode(tok, &id, 1, 0, &text, &tl), DSA_RANGE);
    dsa_tok_stream s;
    dsa_tok_stream_init(&s, tok, 0);
    const char *d;
    size_t dl;
    char got[256];
    size_t gl = 0;
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(dsa_tok_stream_feed(&s, mixed[i], &d, &dl), DSA_OK, "id %d", mixed[i]);
        memcpy(got + gl, d, dl);
        gl += dl;
    }
    cr_assert_eq(dsa_tok_stream_flush(&s, &d, &dl), DSA_OK);
    memcpy(got + gl, d, dl);
    gl += dl;
    cr_assert(gl == wl && !memcmp(got, want, wl), "stream got \"%.*s\"", (int)gl, got);
    cr_assert_eq(dsa_tok_stream_feed(&s, -5, &d, &dl), DSA_RANGE);
    dsa_tok_stream_deinit(&s);
    free(want);
    free(hello);
    dsa_tok_destroy(tok);
}

/* ---- small tokenizers ---------------------------------------------------- */

static void check_mini(const char *name)
{
    char rel[128];
    snprintf(rel, sizeof rel, "tokenizer/mini_%s.json", name);
    dsa_tok *tok = load_data(rel);
    corpus c = load_corpus();
    size_t ng, no;
    snprintf(rel, sizeof rel, "tokenizer/golden_mini_%s.jsonl", name);
    cJSON **g = read_jsonl(rel, &ng);
    char *opath = dsa_test_data_path("tokenizer/mini_order.json");
    char *obuf = dsa_test_read_file(opath, &no);
    cJSON *order = cJSON_Parse(obuf);
    free(obuf);
    free(opath);
    cr_assert_eq((size_t)cJSON_GetArraySize(order), ng);
    size_t bad = 0, bad_dec = 0, k = 0;
    const cJSON *o;
    cJSON_ArrayForEach(o, order) {
        size_t i = (size_t)o->valuedouble, n, at;
        int32_t *ids;
        cr_assert_eq(dsa_tok_encode(tok, c.text[i], c.len[i], 1, &ids, &n), DSA_OK);
        if (!ids_equal(cJSON_GetObjectItem(g[k], "ids"), ids, n, &at) && bad++ < 5)
            cr_log_error("%s: string %zu: ids differ at %zu: \"%.60s\"", name, i, at, c.text[i]);
        for (int skip = 0; skip < 2; skip++) {
            char *text;
            size_t tl;
            cr_assert_eq(dsa_tok_decode(tok, ids, n, skip, &text, &tl), DSA_OK);
            const char *want = cJSON_GetObjectItem(g[k], skip ? "skip" : "dec")->valuestring;
            if ((tl != strlen(want) || memcmp(text, want, tl)) && bad_dec++ < 5)
                cr_log_error("%s: string %zu: decode(skip=%d) \"%.60s\" != \"%.60s\"", name, i,
                             skip, text, want);
            free(text);
            check_stream(tok, ids, n, skip);
        }
        free(ids);
        k++;
    }
    cr_expect_eq(bad, 0, "%s: %zu of %zu strings encode differently", name, bad, ng);
    cr_expect_eq(bad_dec, 0, "%s: %zu decodes differ", name, bad_dec);
    cJSON_Delete(order);
    free_jsonl(g, ng);
    free_corpus(&c);
    dsa_tok_destroy(tok);
}

Test(tokenizer, mini_gpt2, .timeout = 120) { check_mini("gpt2"); }
Test(tokenizer, mini_split, .timeout = 120) { check_mini("split"); }
Test(tokenizer, mini_chars, .timeout = 120) { check_mini("chars"); }

/* ---- malformed files ----------------------------------------------------- */

static const char base_json[] =
    "{\"version\":\"1.0\",\"added_tokens\":[{\"id\":5,\"content\":\"<s>\",\"special\":true}],"
    "\"normalizer\":null,"
    "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":["
    "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\s+\"},\"behavior\":\"Isolated\",\"invert\":false},"
    "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":false}]},"
    "\"post_processor\":null,\"decoder\":{\"type\":\"ByteLevel\"},"
    "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,\"Ġ\":3,\"abab\":4},"
    "\"merges\":[\"a b\",[\"ab\",\"ab\"]]}}";

/* Loads base_json edited by `edit` (a cJSON path operation) and expects
 * `err` with `field` in the message. */
typedef void (*edit_fn)(cJSON *root);

static void expect_bad(edit_fn edit, dsa_err want, const char *field)
{
    cJSON *root = cJSON_Parse(base_json);
    cr_assert(root);
    if (edit)
        edit(root);
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    dsa_tok *tok = (dsa_tok *)1;
    dsa_err err = dsa_tok_load_mem(s, strlen(s), NULL, 0, &tok);
    free(s);
    cr_assert_eq(err, want, "want %s, got %s (%s)", dsa_strerror(want), dsa_strerror(err),
                 dsa_errmsg());
    cr_assert_null(tok);
    cr_assert(strstr(dsa_errmsg(), "tokenizer.json"), "message: %s", dsa_errmsg());
    cr_assert(strstr(dsa_errmsg(), field), "message '%s' lacks '%s'", dsa_errmsg(), field);
}

#define MODEL(r) cJSON_GetObjectItem(r, "model")
#define PRE(r, i) cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "pre_tokenizer"), "pretokenizers"), i)
static void e_no_model(cJSON *r) { cJSON_DeleteItemFromObject(r, "model"); }
static void e_model_type(cJSON *r) { cJSON_ReplaceItemInObject(MODEL(r), "type", cJSON_CreateString("WordPiece")); }
static void e_no_vocab(cJSON *r) { cJSON_DeleteItemFromObject(MODEL(r), "vocab"); }
static void e_vocab_str(cJSON *r) { cJSON_ReplaceItemInObject(MODEL(r), "vocab", cJSON_CreateString("x")); }
static void e_vocab_id(cJSON *r) { cJSON_ReplaceItemInObject(cJSON_GetObjectItem(MODEL(r), "vocab"), "a", cJSON_CreateNumber(-3)); }
static void e_vocab_dup(cJSON *r) { cJSON_ReplaceItemInObject(cJSON_GetObjectItem(MODEL(r), "vocab"), "a", cJSON_CreateNumber(1)); }
static void e_no_merges(cJSON *r) { cJSON_DeleteItemFromObject(MODEL(r), "merges"); }
static void e_merges_obj(cJSON *r) { cJSON_ReplaceItemInObject(MODEL(r), "merges", cJSON_CreateObject()); }
static void e_merge_unknown(cJSON *r) { cJSON_AddItemToArray(cJSON_GetObjectItem(MODEL(r), "merges"), cJSON_CreateString("a zz")); }
static void e_merge_nospace(cJSON *r) { cJSON_AddItemToArray(cJSON_GetObjectItem(MODEL(r), "merges"), cJSON_CreateString("ab")); }
static void e_merge_num(cJSON *r) { cJSON_AddItemToArray(cJSON_GetObjectItem(MODEL(r), "merges"), cJSON_CreateNumber(3)); }
static void e_merge_result(cJSON *r) { cJSON_AddItemToArray(cJSON_GetObjectItem(MODEL(r), "merges"), cJSON_CreateString("b a")); }
static void e_byte_fallback(cJSON *r) { cJSON_AddItemToObject(MODEL(r), "byte_fallback", cJSON_CreateTrue()); }
static void e_added_obj(cJSON *r) { cJSON_ReplaceItemInObject(r, "added_tokens", cJSON_CreateObject()); }
static void e_added_noid(cJSON *r) { cJSON_DeleteItemFromObject(cJSON_GetArrayItem(cJSON_GetObjectItem(r, "added_tokens"), 0), "id"); }
static void e_added_content(cJSON *r) { cJSON_ReplaceItemInObject(cJSON_GetArrayItem(cJSON_GetObjectItem(r, "added_tokens"), 0), "content", cJSON_CreateString("")); }
static void e_added_flag(cJSON *r) { cJSON_AddItemToObject(cJSON_GetArrayItem(cJSON_GetObjectItem(r, "added_tokens"), 0), "lstrip", cJSON_CreateString("yes")); }
static void e_normalizer(cJSON *r) { cJSON *n = cJSON_CreateObject(); cJSON_AddStringToObject(n, "type", "NFKC"); cJSON_ReplaceItemInObject(r, "normalizer", n); }
static void e_norm_seq(cJSON *r) { cJSON *n = cJSON_CreateObject(); cJSON_AddStringToObject(n, "type", "Sequence"); cJSON_ReplaceItemInObject(r, "normalizer", n); }
static void e_regex(cJSON *r) { cJSON_ReplaceItemInObject(cJSON_GetObjectItem(PRE(r, 0), "pattern"), "Regex", cJSON_CreateString("(unclosed")); }
static void e_pattern(cJSON *r) { cJSON_DeleteItemFromObject(PRE(r, 0), "pattern"); }
static void e_behavior(cJSON *r) { cJSON_ReplaceItemInObject(PRE(r, 0), "behavior", cJSON_CreateString("Sideways")); }
static void e_pretok_type(cJSON *r) { cJSON_ReplaceItemInObject(PRE(r, 0), "type", cJSON_CreateString("Whitespace")); }
static void e_pretok_list(cJSON *r) { cJSON_ReplaceItemInObject(cJSON_GetObjectItem(r, "pre_tokenizer"), "pretokenizers", cJSON_CreateNumber(1)); }
static void e_bytelevel_first(cJSON *r) { cJSON *a = cJSON_GetObjectItem(cJSON_GetObjectItem(r, "pre_tokenizer"), "pretokenizers"); cJSON_AddItemToArray(a, cJSON_Duplicate(cJSON_GetArrayItem(a, 0), 1)); }
static void e_decoder(cJSON *r) { cJSON_ReplaceItemInObject(cJSON_GetObjectItem(r, "decoder"), "type", cJSON_CreateString("WordPiece")); }
static void e_post(cJSON *r) { cJSON *p = cJSON_CreateObject(); cJSON_AddStringToObject(p, "type", "TemplateProcessing"); cJSON_AddItemToObject(p, "single", cJSON_CreateString("x")); cJSON_ReplaceItemInObject(r, "post_processor", p); }
static void e_post_type(cJSON *r) { cJSON *p = cJSON_CreateObject(); cJSON_AddStringToObject(p, "type", "Magic"); cJSON_ReplaceItemInObject(r, "post_processor", p); }

Test(tokenizer, malformed)
{
    dsa_tok *tok = NULL;
    cr_assert_eq(dsa_tok_load_mem(base_json, strlen(base_json), NULL, 0, &tok), DSA_OK, "%s",
                 dsa_errmsg());
    int32_t *ids;
    size_t n;
    cr_assert_eq(dsa_tok_encode(tok, "abab ab<s>", 10, 0, &ids, &n), DSA_OK);
    cr_assert_eq(n, 4);
    cr_assert(ids[0] == 4 && ids[1] == 3 && ids[2] == 2 && ids[3] == 5);
    free(ids);
    dsa_tok_destroy(tok);

    expect_bad(e_no_model, DSA_FORMAT, "'model'");
    expect_bad(e_model_type, DSA_UNSUPPORTED, "model.type");
    expect_bad(e_no_vocab, DSA_FORMAT, "model.vocab");
    expect_bad(e_vocab_str, DSA_FORMAT, "model.vocab");
    expect_bad(e_vocab_id, DSA_FORMAT, "model.vocab.a");
    expect_bad(e_vocab_dup, DSA_FORMAT, "duplicate id");
    expect_bad(e_no_merges, DSA_FORMAT, "model.merges");
    expect_bad(e_merges_obj, DSA_FORMAT, "'model.merges': expected an array");
    expect_bad(e_merge_unknown, DSA_FORMAT, "model.merges[2]");
    expect_bad(e_merge_nospace, DSA_FORMAT, "model.merges[2]");
    expect_bad(e_merge_num, DSA_FORMAT, "model.merges[2]");
    expect_bad(e_merge_result, DSA_FORMAT, "merged token not in vocab");
    expect_bad(e_byte_fallback, DSA_UNSUPPORTED, "model.byte_fallback");
    expect_bad(e_added_obj, DSA_FORMAT, "added_tokens");
    expect_bad(e_added_noid, DSA_FORMAT, "added_tokens[0].id");
    expect_bad(e_added_content, DSA_FORMAT, "added_tokens[0].content");
    expect_bad(e_added_flag, DSA_FORMAT, "added_tokens[0].lstrip");
    expect_bad(e_normalizer, DSA_UNSUPPORTED, "normalizer");
    expect_bad(e_norm_seq, DSA_FORMAT, "normalizer.normalizers");
    expect_bad(e_regex, DSA_FORMAT, "pre_tokenizer.pretokenizers[0].pattern.Regex");
    expect_bad(e_pattern, DSA_FORMAT, "pre_tokenizer.pretokenizers[0].pattern");
    expect_bad(e_behavior, DSA_FORMAT, "pre_tokenizer.pretokenizers[0].behavior");
    expect_bad(e_pretok_type, DSA_UNSUPPORTED, "pre_tokenizer.pretokenizers[0]");
    expect_bad(e_pretok_list, DSA_FORMAT, "pre_tokenizer.pretokenizers");
    expect_bad(e_bytelevel_first, DSA_UNSUPPORTED, "ByteLevel must be the last");
    expect_bad(e_decoder, DSA_UNSUPPORTED, "decoder.type");
    expect_bad(e_post, DSA_FORMAT, "post_processor.single");
    expect_bad(e_post_type, DSA_UNSUPPORTED, "post_processor");

    /* Not JSON, not an object, truncated. */
    cr_assert_eq(dsa_tok_load_mem("{", 1, NULL, 0, &tok), DSA_FORMAT);
    cr_assert(strstr(dsa_errmsg(), "tokenizer.json: not valid JSON"));
    cr_assert_eq(dsa_tok_load_mem("[1]", 3, NULL, 0, &tok), DSA_FORMAT);
    cr_assert_eq(dsa_tok_load_mem(base_json, strlen(base_json) / 2, NULL, 0, &tok), DSA_FORMAT);

    /* tokenizer_config.json problems. */
    static const char *cfgs[][2] = {
        {"{\"bos_token\": 3}", "bos_token"},
        {"{\"bos_token\": \"<nope>\"}", "bos_token"},
        {"{\"add_bos_token\": \"yes\"}", "add_bos_token"},
        {"{\"add_bos_token\": true}", "bos_token"},
        {"{\"chat_template\": 7}", "chat_template"},
        {"{\"chat_template\": [{\"name\": \"default\"}]}", "chat_template"},
        {"not json", "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof cfgs / sizeof *cfgs; i++) {
        dsa_err err = dsa_tok_load_mem(base_json, strlen(base_json), cfgs[i][0],
                                       strlen(cfgs[i][0]), &tok);
        cr_assert_eq(err, DSA_FORMAT, "config %zu: %s", i, dsa_errmsg());
        cr_assert(strstr(dsa_errmsg(), "tokenizer_config.json") && strstr(dsa_errmsg(), cfgs[i][1]),
                  "config %zu: %s", i, dsa_errmsg());
    }
    const char *cfg = "{\"bos_token\": {\"content\": \"<s>\"}, \"eos_token\": \"ab\","
                      "\"add_bos_token\": true, \"add_eos_token\": true,"
                      "\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"T\"},"
                      "{\"name\": \"default\", \"template\": \"D\"}]}";
    cr_assert_eq(dsa_tok_load_mem(base_json, strlen(base_json), cfg, strlen(cfg), &tok), DSA_OK,
                 "%s", dsa_errmsg());
    cr_assert_str_eq(dsa_tok_chat_template(tok), "D");
    cr_assert_eq(dsa_tok_encode(tok, "b", 1, 1, &ids, &n), DSA_OK);
    cr_assert(n == 3 && ids[0] == 5 && ids[1] == 1 && ids[2] == 2);
    free(ids);
    dsa_tok_destroy(tok);

    /* Files. */
    cr_assert_eq(dsa_tok_load("/nonexistent-dir", &tok), DSA_IO);
    cr_assert(strstr(dsa_errmsg(), "/nonexistent-dir/tokenizer.json"));
}
