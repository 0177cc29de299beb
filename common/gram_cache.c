/* gram_cache.c - a bounded LRU of compiled grammars (grammar.h).  A
 * request for a grammar another thread is compiling compiles it again
 * (the first one stored wins); compiling never holds the lock. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/gram_internal.h"

typedef struct entry {
    dsa_gram_kind kind;
    int any_ws;
    char *text;
    size_t len;
    dsa_gram *g;        /* one reference held by the cache */
    uint64_t used;      /* LRU clock */
} entry;

struct dsa_gram_cache {
    pthread_mutex_t lock;
    const dsa_gram_vocab *vocab;
    entry *e;
    int n, cap;
    uint64_t clock;
    int64_t hits, misses;
};

dsa_err dsa_gram_cache_create(const dsa_gram_vocab *v, int capacity, dsa_gram_cache **out)
{
    dsa_gram_cache *c = calloc(1, sizeof *c);
    if (!c || !(c->e = calloc((size_t)(capacity > 0 ? capacity : 1), sizeof *c->e))) {
        free(c);
        return DSA_NOMEM;
    }
    c->cap = capacity > 0 ? capacity : 1;
    c->vocab = v;
    pthread_mutex_init(&c->lock, NULL);
    *out = c;
    return DSA_OK;
}

void dsa_gram_cache_destroy(dsa_gram_cache *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->n; i++) {
        free(c->e[i].text);
        dsa_gram_destroy(c->e[i].g);
    }
    free(c->e);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static entry *find(dsa_gram_cache *c, dsa_gram_kind kind, const char *text, size_t len,
                   int any_ws)
{
    for (int i = 0; i < c->n; i++)
        if (c->e[i].kind == kind && c->e[i].any_ws == any_ws && c->e[i].len == len &&
            !memcmp(c->e[i].text, text, len))
            return &c->e[i];
    return NULL;
}

dsa_err dsa_gram_cache_get(dsa_gram_cache *c, dsa_gram_kind kind, const char *text, size_t len,
                           int any_ws, dsa_gram **out)
{
    pthread_mutex_lock(&c->lock);
    entry *e = find(c, kind, text, len, any_ws);
    if (e) {
        e->used = ++c->clock;
        c->hits++;
        *out = dsa_gram_retain(e->g);
        pthread_mutex_unlock(&c->lock);
        return DSA_OK;
    }
    c->misses++;
    pthread_mutex_unlock(&c->lock);
    dsa_gram_params p = {.kind = kind, .text = text, .len = len, .vocab = c->vocab,
                         .any_whitespace = any_ws};
    dsa_gram *g;
    dsa_err err = dsa_gram_compile(&p, &g);
    if (err)
        return err;
    char *copy = malloc(len + 1);
    if (!copy) {
        *out = g; /* usable, just not cached */
        return DSA_OK;
    }
    memcpy(copy, text, len);
    copy[len] = 0;
    pthread_mutex_lock(&c->lock);
    if ((e = find(c, kind, text, len, any_ws))) { /* compiled meanwhile elsewhere */
        free(copy);
    } else {
        if (c->n == c->cap) { /* evict the least recently used */
            int v = 0;
            for (int i = 1; i < c->n; i++)
                if (c->e[i].used < c->e[v].used)
                    v = i;
            free(c->e[v].text);
            dsa_gram_destroy(c->e[v].g);
            c->e[v] = c->e[--c->n];
        }
        e = &c->e[c->n++];
        *e = (entry){.kind = kind, .any_ws = any_ws, .text = copy, .len = len, .g = dsa_gram_retain(g)};
    }
    e->used = ++c->clock;
    pthread_mutex_unlock(&c->lock);
    *out = g;
    return DSA_OK;
}

void dsa_gram_cache_stats(dsa_gram_cache *c, int64_t *hits, int64_t *misses)
{
    pthread_mutex_lock(&c->lock);
    *hits = c->hits;
    *misses = c->misses;
    pthread_mutex_unlock(&c->lock);
}
