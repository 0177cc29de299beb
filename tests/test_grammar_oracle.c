/* test_grammar_oracle.c - the grammar engine's token masks against
 * xgrammar's (tests/data/grammar/golden.jsonl, written by
 * tools/grammar/oracle.py from PyPI xgrammar with the real DeepSeek-V3
 * tokenizer at 129,280 ids): at every position of every corpus document
 * the allowed-id set (count and checksum, ids when few) must be equal.
 * Compiled with xgrammar_utf8 for that comparison; the server's strict
 * UTF-8 grammar must allow a subset, the rest being tokens whose bytes are
 * not well-formed UTF-8 (docs/perf/structured.md). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/grammar.h"
#include "common/tokenizer.h"

#define VOCAB 129280

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f, "open %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    cr_assert(buf && fread(buf, 1, (size_t)len, f) == (size_t)len);
    buf[len] = 0;
    fclose(f);
    *n = (size_t)len;
    return buf;
}

static uint64_t splitmix(uint64_t i)
{
    uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* 1 when b[0..n) is well-formed UTF-8 up to a possibly cut last character. */
static int utf8_prefix(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = b[i], need, lo = 0x80, hi = 0xBF;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) need = 1;
        else if (c == 0xE0) { need = 2; lo = 0xA0; }
        else if (c == 0xED) { need = 2; hi = 0x9F; }
        else if (c >= 0xE1 && c <= 0xEF) need = 2;
        else if (c == 0xF0) { need = 3; lo = 0x90; }
        else if (c == 0xF4) { need = 3; hi = 0x8F; }
        else if (c >= 0xF1 && c <= 0xF3) need = 3;
        else return 0;
        for (unsigned k = 1; k <= need; k++) {
            if (i + k >= n)
                return 1;
            unsigned d = b[i + k];
            if (d < (k == 1 ? lo : 0x80) || d > (k == 1 ? hi : 0xBF))
                return 0;
        }
        i += need + 1;
    }
    return 1;
}

static dsa_gram_kind kind_of(const char *k)
{
    return !strcmp(k, "schema") ? DSA_GRAM_JSON_SCHEMA : !strcmp(k, "regex") ? DSA_GRAM_REGEX :
           !strcmp(k, "choice") ? DSA_GRAM_CHOICE : !strcmp(k, "ebnf") ? DSA_GRAM_EBNF
                                                                          : DSA_GRAM_JSON_OBJECT;
}

Test(grammar_oracle, masks_equal_xgrammar, .timeout = 600)
{
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/deepseek-v3-tokenizer", getenv("DSA_TEST_DATA"));
    dsa_tok *tok;
    cr_assert_eq(dsa_tok_load(dir, &tok), DSA_OK, "%s", dsa_errmsg());
    int32_t eos = dsa_tok_eos_id(tok);
    dsa_gram_vocab *v;
    dsa_gram_vocab_params vp = {.tok = tok, .n_vocab = VOCAB, .stop_ids = &eos, .n_stop_ids = 1,
                              .added_as_text = 1};
    cr_assert_eq(dsa_gram_vocab_create(&vp, &v), DSA_OK);
    size_t nw = dsa_gram_mask_words(v), n;
    uint32_t *mask = malloc(nw * sizeof *mask), *strict = malloc(nw * sizeof *strict);
    int n_strict_only = 0, n_lenient_only = 0;
    snprintf(path, sizeof path, "%s/grammar/golden.jsonl", getenv("DSA_TEST_DATA"));
    char *text = slurp(path, &n);
    int n_docs = 0, n_pos = 0, n_bad = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        cJSON *c = cJSON_Parse(line);
        cr_assert(c);
        const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
        const char *t = cJSON_GetObjectItem(c, "text")->valuestring;
        dsa_gram_params gp = {.kind = kind_of(cJSON_GetObjectItem(c, "kind")->valuestring),
                              .text = t, .len = strlen(t), .vocab = v, .any_whitespace = 1};
        dsa_gram *g, *gs;
        cr_assert_eq(dsa_gram_compile(&gp, &gs), DSA_OK, "%s: %s", name, dsa_errmsg());
        gp.xgrammar_utf8 = 1;
        cr_assert_eq(dsa_gram_compile(&gp, &g), DSA_OK, "%s: %s", name, dsa_errmsg());
        int32_t st = dsa_gram_start(g), sst = dsa_gram_start(gs);
        const cJSON *ids = cJSON_GetObjectItem(c, "ids"), *masks = cJSON_GetObjectItem(c, "masks");
        int i = 0;
        for (const cJSON *m = masks->child; m; m = m->next, i++) {
            cr_assert_eq(dsa_gram_fill_mask(g, st, mask), DSA_OK);
            cr_assert_eq(dsa_gram_fill_mask(gs, sst, strict), DSA_OK);
            for (size_t w = 0; w < nw; w++) {
                n_strict_only += __builtin_popcount(strict[w] & ~mask[w]);
                for (uint32_t b = mask[w] & ~strict[w]; b; b &= b - 1) {
                    int32_t id = (int32_t)(w * 32 + (size_t)__builtin_ctz(b));
                    size_t len;
                    const char *bytes = dsa_tok_token_bytes(tok, id, &len);
                    cr_assert(bytes && !utf8_prefix((const uint8_t *)bytes, len),
                              "%s: strict UTF-8 refuses token %d, which is well-formed", name, id);
                    n_lenient_only++;
                }
            }
            int cnt = 0;
            uint64_t h = 0;
            for (size_t w = 0; w < nw; w++) {
                cnt += __builtin_popcount(mask[w]);
                h += (uint64_t)mask[w] * splitmix(w);
            }
            char hs[17];
            snprintf(hs, sizeof hs, "%016llx", (unsigned long long)h);
            int want = cJSON_GetArrayItem(m, 0)->valueint;
            if (cnt != want || strcmp(hs, cJSON_GetArrayItem(m, 1)->valuestring)) {
                if (n_bad++ < 20) {
                    fprintf(stderr, "%s doc %d pos %d: %d allowed, xgrammar %d\n", name, n_docs, i,
                            cnt, want);
                    const cJSON *l = cJSON_GetArrayItem(m, 2);
                    for (const cJSON *x = l ? l->child : NULL; x; x = x->next)
                        if (!(mask[x->valueint >> 5] >> (x->valueint & 31) & 1))
                            fprintf(stderr, "  xgrammar allows %d, we do not\n", x->valueint);
                    if (cnt <= 64)
                        for (size_t w = 0; w < nw; w++)
                            for (uint32_t b = mask[w]; b; b &= b - 1)
                                fprintf(stderr, "  we allow %zu\n", w * 32 + (size_t)__builtin_ctz(b));
                }
            }
            n_pos++;
            const cJSON *id = cJSON_GetArrayItem(ids, i);
            if (id) {
                cr_assert_eq(dsa_gram_accept_token(g, &st, id->valueint), DSA_OK,
                             "%s: token %d at %d refused", name, id->valueint, i);
                cr_assert_eq(dsa_gram_accept_token(gs, &sst, id->valueint), DSA_OK);
            }
        }
        cr_assert(dsa_gram_is_complete(g, st), "%s: document not complete", name);
        dsa_gram_destroy(g);
        dsa_gram_destroy(gs);
        cJSON_Delete(c);
        n_docs++;
    }
    fprintf(stderr, "grammar oracle: %d documents, %d positions, %d differ; strict UTF-8 "
            "leaves out %d malformed-UTF-8 token slots\n", n_docs, n_pos, n_bad, n_lenient_only);
    cr_expect_eq(n_strict_only, 0);
    cr_assert_geq(n_docs, 100);
    cr_expect_eq(n_bad, 0, "%d positions differ from xgrammar", n_bad);
    free(text);
    free(mask);
    free(strict);
    dsa_gram_vocab_destroy(v);
    dsa_tok_destroy(tok);
}
