/* bench_grammar.c - the grammar engine's compile time and per-token mask
 * time on the structured-output corpus (tests/data/grammar/golden.jsonl)
 * with the real DeepSeek-V3 tokenizer at 129,280 ids; the xgrammar side
 * of the same measurement is tools/grammar/bench_xgr.py, and
 * tools/grammar/bench.sh runs both in one go (docs/perf/structured.md).
 *
 *   bench_grammar TOKENIZER_DIR GOLDEN.jsonl [REPEAT]
 *
 * For each corpus case: compile (a fresh grammar, no cache), then walk its
 * documents filling the mask before every token.  "first" is the first
 * walk (positions classified lazily on first use), "warm" a repeat walk of
 * the same grammar (REPEAT times), as a served grammar sees it once the
 * LRU cache holds it.  Prints one JSON line per case and a summary. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "common/grammar.h"
#include "common/tokenizer.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct stats {
    double *v;
    size_t n, cap;
} stats;

static void push(stats *s, double x)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 1024;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
        if (!s->v)
            exit(1);
    }
    s->v[s->n++] = x;
}

static void report(const char *name, stats *s)
{
    qsort(s->v, s->n, sizeof *s->v, cmp_d);
    double sum = 0;
    for (size_t i = 0; i < s->n; i++)
        sum += s->v[i];
    printf("%-22s n=%6zu mean %9.1f us  p50 %9.1f us  p99 %9.1f us  max %9.1f us\n", name, s->n,
           s->n ? sum / (double)s->n * 1e6 : 0, s->n ? s->v[s->n / 2] * 1e6 : 0,
           s->n ? s->v[(size_t)((double)s->n * 0.99)] * 1e6 : 0,
           s->n ? s->v[s->n - 1] * 1e6 : 0);
}

static dsa_gram_kind kind_of(const char *k)
{
    return !strcmp(k, "schema") ? DSA_GRAM_JSON_SCHEMA : !strcmp(k, "regex") ? DSA_GRAM_REGEX :
           !strcmp(k, "choice") ? DSA_GRAM_CHOICE : !strcmp(k, "ebnf") ? DSA_GRAM_EBNF
                                                                          : DSA_GRAM_JSON_OBJECT;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s TOKENIZER_DIR GOLDEN.jsonl [REPEAT]\n", argv[0]);
        return 2;
    }
    int repeat = argc > 3 ? atoi(argv[3]) : 3;
    dsa_tok *tok;
    if (dsa_tok_load(argv[1], &tok)) {
        fprintf(stderr, "%s\n", dsa_errmsg());
        return 1;
    }
    int32_t eos = dsa_tok_eos_id(tok);
    dsa_gram_vocab_params vp = {.tok = tok, .n_vocab = 129280, .stop_ids = &eos,
                                .n_stop_ids = 1};
    dsa_gram_vocab *v;
    double t0 = now();
    if (dsa_gram_vocab_create(&vp, &v))
        return 1;
    printf("vocabulary trie: %.1f ms (once per tokenizer)\n", (now() - t0) * 1e3);
    FILE *f = fopen(argv[2], "r");
    if (!f)
        return 1;
    size_t nw = dsa_gram_mask_words(v);
    uint32_t *mask = malloc(nw * sizeof *mask);
    stats compile = {0}, first = {0}, warm = {0};
    char *line = NULL;
    size_t cap = 0;
    char last[256] = "";
    dsa_gram *g = NULL;
    cJSON *docs[64];
    int n_docs = 0;
    for (;;) {
        ssize_t n = getline(&line, &cap, f);
        cJSON *c = n > 0 ? cJSON_Parse(line) : NULL;
        const char *name = c ? cJSON_GetObjectItem(c, "name")->valuestring : "";
        if (g && strcmp(name, last)) { /* the previous case is complete: warm walks */
            for (int r = 0; r < repeat; r++)
                for (int d = 0; d < n_docs; d++) {
                    int32_t st = dsa_gram_start(g);
                    for (const cJSON *id = cJSON_GetObjectItem(docs[d], "ids")->child;; id = id->next) {
                        double a = now();
                        dsa_gram_fill_mask(g, st, mask);
                        push(&warm, now() - a);
                        if (!id)
                            break;
                        dsa_gram_accept_token(g, &st, id->valueint);
                    }
                }
            for (int d = 0; d < n_docs; d++)
                cJSON_Delete(docs[d]);
            n_docs = 0;
            dsa_gram_destroy(g);
            g = NULL;
        }
        if (!c)
            break;
        const char *t = cJSON_GetObjectItem(c, "text")->valuestring;
        if (!g) {
            dsa_gram_params gp = {.kind = kind_of(cJSON_GetObjectItem(c, "kind")->valuestring),
                                  .text = t, .len = strlen(t), .vocab = v, .any_whitespace = 1};
            double a = now();
            if (dsa_gram_compile(&gp, &g)) {
                fprintf(stderr, "%s: %s\n", name, dsa_errmsg());
                return 1;
            }
            push(&compile, now() - a);
            snprintf(last, sizeof last, "%s", name);
        }
        int32_t st = dsa_gram_start(g);
        for (const cJSON *id = cJSON_GetObjectItem(c, "ids")->child;; id = id->next) {
            double a = now();
            dsa_gram_fill_mask(g, st, mask);
            push(&first, now() - a);
            if (!id)
                break;
            dsa_gram_accept_token(g, &st, id->valueint);
        }
        if (n_docs < 64)
            docs[n_docs++] = c;
        else
            cJSON_Delete(c);
    }
    report("compile", &compile);
    report("mask (first walk)", &first);
    report("mask (warm)", &warm);
    free(line);
    free(mask);
    fclose(f);
    dsa_gram_vocab_destroy(v);
    dsa_tok_destroy(tok);
    return 0;
}
