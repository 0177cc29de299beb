/* gram_match.c - the pushdown matcher over bytes, run as a lazily built
 * automaton.
 *
 * A stack node is (position, next node): the element the stack waits on
 * and the frame below it; nodes are hash-consed, so equal stacks share one
 * id and a stack is one int.  A position that has reached the end of its
 * alternative is never stored: it is the node below (a tail call), which
 * keeps right recursion (x*) from growing the stack.  A state is the sorted
 * set of the stacks the input so far can be in, interned to an int; state
 * 0 is the empty set (dead) and GRAM_NIL in a set means the root rule is
 * complete.  Transitions (state, byte) -> state are memoised in a hash
 * table.  Everything here runs with g->lock held. */
#include <stdlib.h>
#include <string.h>

#include "common/gram_internal.h"

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

/* ---- nodes ---- */
static dsa_err node_tab_grow(dsa_gram *g)
{
    size_t cap = g->node_tab_cap ? g->node_tab_cap * 2 : 1024;
    uint64_t *t = malloc(cap * sizeof *t);
    if (!t)
        return DSA_NOMEM;
    memset(t, 0, cap * sizeof *t);
    for (int n = 0; n < g->n_nodes; n++) {
        uint64_t h = mix((uint64_t)(uint32_t)g->node_pos[n] << 32 | (uint32_t)g->node_next[n]);
        size_t i = h & (cap - 1);
        while (t[i])
            i = (i + 1) & (cap - 1);
        t[i] = (uint64_t)n + 1;
    }
    free(g->node_tab);
    g->node_tab = t;
    g->node_tab_cap = cap;
    return DSA_OK;
}

static dsa_err node_intern(dsa_gram *g, int32_t pos, int32_t next, int32_t *out)
{
    if ((size_t)(g->n_nodes + 1) * 2 > g->node_tab_cap) {
        dsa_err err = node_tab_grow(g);
        if (err)
            return err;
    }
    uint64_t h = mix((uint64_t)(uint32_t)pos << 32 | (uint32_t)next);
    size_t i = h & (g->node_tab_cap - 1);
    for (; g->node_tab[i]; i = (i + 1) & (g->node_tab_cap - 1)) {
        int32_t n = (int32_t)(g->node_tab[i] - 1);
        if (g->node_pos[n] == pos && g->node_next[n] == next) {
            *out = n;
            return DSA_OK;
        }
    }
    if (g->n_nodes >= GRAM_NODES_MAX)
        return dsa_fail(DSA_RANGE, "the grammar's matcher outgrew its memory bound");
    if (g->n_nodes == g->cap_nodes) {
        int cap = g->cap_nodes ? g->cap_nodes * 2 : 1024;
        int32_t *p = realloc(g->node_pos, (size_t)cap * sizeof *p);
        if (p)
            g->node_pos = p;
        int32_t *q = realloc(g->node_next, (size_t)cap * sizeof *q);
        if (q)
            g->node_next = q;
        int32_t *r = realloc(g->node_pop, (size_t)cap * sizeof *r);
        if (r)
            g->node_pop = r;
        if (!p || !q || !r)
            return DSA_NOMEM;
        g->cap_nodes = cap;
    }
    int32_t n = g->n_nodes++;
    g->node_pos[n] = pos;
    g->node_next[n] = next;
    g->node_pop[n] = -1;
    g->node_tab[i] = (uint64_t)n + 1;
    *out = n;
    return DSA_OK;
}

/* ---- closure: the stacks reached from (pos, next) without input ---- */
static dsa_err scratch_push(dsa_gram *g, int32_t n)
{
    if (g->n_scratch == g->cap_scratch) {
        int cap = g->cap_scratch ? g->cap_scratch * 2 : 256;
        int32_t *s = realloc(g->scratch, (size_t)cap * sizeof *s);
        if (!s)
            return DSA_NOMEM;
        g->scratch = s;
        g->cap_scratch = cap;
    }
    if (g->n_scratch >= GRAM_STACKS_MAX * 4)
        return dsa_fail(DSA_RANGE, "the grammar is too ambiguous (over %d parses at once)",
                        GRAM_STACKS_MAX);
    g->scratch[g->n_scratch++] = n;
    return DSA_OK;
}

static dsa_err closure(dsa_gram *g, int32_t pos, int32_t next, int depth)
{
    if (depth > GRAM_CLOSURE_DEPTH_MAX)
        return dsa_fail(DSA_RANGE, "the grammar is left-recursive or nests too deeply");
    for (;;) {
        const gelem *e = &g->el[pos];
        if (e->kind == GE_TERM) {
            int32_t n;
            dsa_err err = node_intern(g, pos, next, &n);
            return err ? err : scratch_push(g, n);
        }
        if (e->kind == GE_END) {
            if (next == GRAM_NIL)
                return scratch_push(g, GRAM_NIL);
            pos = g->node_pos[next];
            next = g->node_next[next];
            continue;
        }
        /* GE_REF: enter each alternative with the continuation below. */
        int32_t cont = next;
        if (g->el[pos + 1].kind != GE_END) {
            dsa_err err = node_intern(g, pos + 1, next, &cont);
            if (err)
                return err;
        }
        const gram_rule *r = &g->rules[e->arg];
        for (int i = 0; i < r->n_alts; i++) {
            dsa_err err = closure(g, r->alts[i], cont, depth + 1);
            if (err)
                return err;
        }
        return DSA_OK;
    }
}

/* ---- states ---- */
static uint64_t state_hash(const int32_t *v, int n)
{
    uint64_t h = 0x9e3779b97f4a7c15ull ^ (uint64_t)n;
    for (int i = 0; i < n; i++)
        h = mix(h ^ (uint32_t)v[i]);
    return h | 1;
}

static dsa_err st_tab_grow(dsa_gram *g)
{
    size_t cap = g->st_tab_cap ? g->st_tab_cap * 2 : 1024;
    uint64_t *t = calloc(cap, sizeof *t);
    if (!t)
        return DSA_NOMEM;
    for (int s = 1; s < g->n_states; s++) {
        uint64_t h = state_hash(g->st_nodes[s], g->st_n[s]);
        size_t i = h & (cap - 1);
        while (t[i])
            i = (i + 1) & (cap - 1);
        t[i] = (h & ~0xffffffffull) | (uint32_t)s;
    }
    free(g->st_tab);
    g->st_tab = t;
    g->st_tab_cap = cap;
    return DSA_OK;
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

/* Interns the set in g->scratch (sorted and deduplicated here). */
static dsa_err state_intern(dsa_gram *g, int32_t *out)
{
    int n = g->n_scratch;
    int32_t *v = g->scratch;
    if (!n) {
        *out = GRAM_DEAD;
        return DSA_OK;
    }
    qsort(v, (size_t)n, sizeof *v, cmp_i32);
    int m = 1;
    for (int i = 1; i < n; i++)
        if (v[i] != v[m - 1])
            v[m++] = v[i];
    if (m > GRAM_STACKS_MAX)
        return dsa_fail(DSA_RANGE, "the grammar is too ambiguous (over %d parses at once)",
                        GRAM_STACKS_MAX);
    if ((size_t)(g->n_states + 1) * 2 > g->st_tab_cap) {
        dsa_err err = st_tab_grow(g);
        if (err)
            return err;
    }
    uint64_t h = state_hash(v, m);
    size_t i = h & (g->st_tab_cap - 1);
    for (; g->st_tab[i]; i = (i + 1) & (g->st_tab_cap - 1)) {
        uint64_t t = g->st_tab[i];
        int32_t s = (int32_t)(uint32_t)t;
        if ((t & ~0xffffffffull) == (h & ~0xffffffffull) && g->st_n[s] == m &&
            !memcmp(g->st_nodes[s], v, (size_t)m * sizeof *v)) {
            *out = s;
            return DSA_OK;
        }
    }
    if (g->n_states >= GRAM_STATES_MAX)
        return dsa_fail(DSA_RANGE, "the grammar's matcher outgrew its memory bound");
    if (g->n_states == g->cap_states) {
        int cap = g->cap_states * 2;
        int32_t **a = realloc(g->st_nodes, (size_t)cap * sizeof *a);
        if (a)
            g->st_nodes = a;
        int32_t *b = realloc(g->st_n, (size_t)cap * sizeof *b);
        if (b)
            g->st_n = b;
        int32_t **d = realloc(g->tr_dense, (size_t)cap * sizeof *d);
        if (d) {
            memset(d + g->cap_states, 0, (size_t)(cap - g->cap_states) * sizeof *d);
            g->tr_dense = d;
        }
        if (!a || !b || !d)
            return DSA_NOMEM;
        g->cap_states = cap;
    }
    int32_t *copy = malloc((size_t)m * sizeof *copy);
    if (!copy)
        return DSA_NOMEM;
    memcpy(copy, v, (size_t)m * sizeof *v);
    int32_t s = g->n_states++;
    g->st_nodes[s] = copy;
    g->st_n[s] = m;
    g->st_tab[i] = (h & ~0xffffffffull) | (uint32_t)s;
    *out = s;
    return DSA_OK;
}

/* ---- transitions ---- */
static dsa_err tr_grow(dsa_gram *g)
{
    size_t cap = g->tr_tab_cap ? g->tr_tab_cap * 2 : 4096;
    uint64_t *t = calloc(cap, sizeof *t);
    if (!t)
        return DSA_NOMEM;
    for (size_t j = 0; j < g->tr_tab_cap; j++) {
        uint64_t e = g->tr_tab[j];
        if (!e)
            continue;
        size_t i = mix(e >> 32) & (cap - 1);
        while (t[i])
            i = (i + 1) & (cap - 1);
        t[i] = e;
    }
    free(g->tr_tab);
    g->tr_tab = t;
    g->tr_tab_cap = cap;
    return DSA_OK;
}

/* Entry: key (state << 8 | byte) + 1 in the high 32 bits... states fit 24
 * bits (GRAM_STATES_MAX), so key < 2^32; target in the low 32 bits. */
dsa_err gram_step(dsa_gram *g, int32_t state, uint8_t byte, int32_t *out)
{
    if (state == GRAM_DEAD) {
        *out = GRAM_DEAD;
        return DSA_OK;
    }
    int32_t *row = state < g->cap_states ? g->tr_dense[state] : NULL;
    if (row && row[byte] >= 0) {
        *out = row[byte];
        return DSA_OK;
    }
    uint64_t key = ((uint64_t)state << 8 | byte) + 1;
    size_t i = mix(key) & (g->tr_tab_cap - 1);
    for (; g->tr_tab[i]; i = (i + 1) & (g->tr_tab_cap - 1))
        if (g->tr_tab[i] >> 32 == key) {
            *out = (int32_t)(uint32_t)g->tr_tab[i];
            if (row)
                row[byte] = *out;
            return DSA_OK;
        }
    g->n_scratch = 0;
    const int32_t *v = g->st_nodes[state];
    int n = g->st_n[state];
    for (int k = 0; k < n; k++) {
        if (v[k] == GRAM_NIL)
            continue;
        /* st_nodes may move while closures intern states: re-read. */
        int32_t pos = g->node_pos[v[k]];
        const uint64_t *c = g->cls[g->el[pos].arg];
        if (!(c[byte >> 6] >> (byte & 63) & 1))
            continue;
        dsa_err err = closure(g, pos + 1, g->node_next[v[k]], 0);
        if (err)
            return err;
    }
    dsa_err err = state_intern(g, out);
    if (err)
        return err;
    if ((g->tr_n + 1) * 2 > g->tr_tab_cap && (err = tr_grow(g)))
        return err;
    i = mix(key) & (g->tr_tab_cap - 1);
    while (g->tr_tab[i])
        i = (i + 1) & (g->tr_tab_cap - 1);
    g->tr_tab[i] = key << 32 | (uint32_t)*out;
    g->tr_n++;
    /* a state stepped from gets a dense row while there is room */
    if (!g->tr_dense[state] && g->n_dense < GRAM_DENSE_MAX &&
        (g->tr_dense[state] = malloc(256 * sizeof(int32_t)))) {
        memset(g->tr_dense[state], 0xff, 256 * sizeof(int32_t));
        g->n_dense++;
    }
    if (g->tr_dense[state])
        g->tr_dense[state][byte] = *out;
    return DSA_OK;
}

dsa_err gram_single(dsa_gram *g, int32_t pos, int32_t *out)
{
    int32_t n;
    dsa_err err = node_intern(g, pos, GRAM_NIL, &n);
    if (err)
        return err;
    g->n_scratch = 0;
    if ((err = scratch_push(g, n)))
        return err;
    return state_intern(g, out);
}

dsa_err gram_pop_state(dsa_gram *g, int32_t node, int32_t *out)
{
    if (g->node_pop[node] >= 0) {
        *out = g->node_pop[node];
        return DSA_OK;
    }
    g->n_scratch = 0;
    dsa_err err = closure(g, g->node_pos[node], g->node_next[node], 0);
    if (!err)
        err = state_intern(g, out);
    if (!err)
        g->node_pop[node] = *out;
    return err;
}

dsa_err gram_match_init(dsa_gram *g)
{
    g->cap_states = 256;
    g->st_nodes = calloc((size_t)g->cap_states, sizeof *g->st_nodes);
    g->st_n = calloc((size_t)g->cap_states, sizeof *g->st_n);
    g->tr_dense = calloc((size_t)g->cap_states, sizeof *g->tr_dense);
    g->pos_info = calloc((size_t)g->n_el + 1, sizeof *g->pos_info);
    if (!g->st_nodes || !g->st_n || !g->pos_info || !g->tr_dense)
        return DSA_NOMEM;
    g->n_states = 1; /* 0: dead */
    dsa_err err = st_tab_grow(g);
    if (!err)
        err = tr_grow(g);
    if (err)
        return err;
    /* a left-recursive rule never finishes its closure: refuse it now */
    for (int k = 0; g->check_left_recursion && k < g->n_rules; k++)
        for (int i = 0; i < g->rules[k].n_alts; i++) {
            g->n_scratch = 0;
            if ((err = closure(g, g->rules[k].alts[i], GRAM_NIL, 0)))
                return err == DSA_RANGE ? dsa_fail(DSA_FORMAT, "grammar: rule '%s' is left-"
                                                   "recursive (or nests too deeply)",
                                                   g->rules[k].name) : err;
        }
    g->n_scratch = 0;
    const gram_rule *r = &g->rules[g->root];
    for (int i = 0; i < r->n_alts; i++)
        if ((err = closure(g, r->alts[i], GRAM_NIL, 0)))
            return err;
    return state_intern(g, &g->start);
}

void gram_match_free(dsa_gram *g)
{
    for (int s = 0; s < g->n_states; s++) {
        free(g->st_nodes[s]);
        if (g->tr_dense)
            free(g->tr_dense[s]);
    }
    free(g->tr_dense);
    if (g->pos_info)
        for (int p = 0; p <= g->n_el; p++)
            gram_pos_info_free(g->pos_info[p]);
    free(g->pos_info);
    free(g->el_rule);
    free(g->follow);
    free(g->key_local);
    free(g->st_nodes);
    free(g->st_n);
    free(g->st_tab);
    free(g->tr_tab);
    free(g->node_pos);
    free(g->node_next);
    free(g->node_pop);
    free(g->node_tab);
    free(g->scratch);
    free(g->mc_state);
    free(g->mc_mask);
}

/* ---- public stepping ---- */
int32_t dsa_gram_start(const dsa_gram *g) { return g->start; }

static int has_nil(const dsa_gram *g, int32_t s)
{
    return s != GRAM_DEAD && g->st_nodes[s][0] == GRAM_NIL;
}

int dsa_gram_is_complete(dsa_gram *g, int32_t state)
{
    pthread_mutex_lock(&g->lock);
    int r = has_nil(g, state);
    pthread_mutex_unlock(&g->lock);
    return r;
}

int dsa_gram_is_terminated(dsa_gram *g, int32_t state)
{
    pthread_mutex_lock(&g->lock);
    int r = has_nil(g, state) && g->st_n[state] == 1;
    pthread_mutex_unlock(&g->lock);
    return r;
}

static dsa_err walk(dsa_gram *g, int32_t *state, const uint8_t *s, size_t n)
{
    int32_t st = *state;
    for (size_t i = 0; i < n && st != GRAM_DEAD; i++) {
        dsa_err err = gram_step(g, st, s[i], &st);
        if (err)
            return err;
    }
    if (st == GRAM_DEAD)
        return DSA_INVAL;
    *state = st;
    return DSA_OK;
}

dsa_err dsa_gram_accept_bytes(dsa_gram *g, int32_t *state, const char *s, size_t n)
{
    pthread_mutex_lock(&g->lock);
    dsa_err err = walk(g, state, (const uint8_t *)s, n);
    pthread_mutex_unlock(&g->lock);
    return err;
}

dsa_err dsa_gram_accept_token(dsa_gram *g, int32_t *state, int32_t id)
{
    const dsa_gram_vocab *v = g->vocab;
    if (id < 0 || (size_t)id >= v->n_vocab)
        return DSA_INVAL;
    dsa_err err = DSA_INVAL;
    pthread_mutex_lock(&g->lock);
    for (size_t i = 0; i < v->n_stop; i++)
        if (v->stop_ids[i] == id) {
            err = has_nil(g, *state) ? DSA_OK : DSA_INVAL;
            goto out;
        }
    if (v->bytes[id] && v->len[id])
        err = walk(g, state, v->bytes[id], v->len[id]);
out:
    pthread_mutex_unlock(&g->lock);
    return err;
}
