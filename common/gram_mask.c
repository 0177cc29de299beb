/* gram_mask.c - the vocabulary trie and the per-step token mask.
 *
 * The vocabulary's token byte strings are sorted, so every trie node covers
 * a contiguous run of them.  For a grammar position p (a byte class at the
 * top of a stack) the tokens are classified once, by walking the trie from
 * the stack that holds p alone: accepted (its bytes stay inside p's frame,
 * or leave it exactly at the end), rejected, or uncertain: the bytes leave
 * the frame at offset k, and what follows depends on the frames below.
 * At run time the mask of a state is the union over its stacks of the
 * accepted set of the top position plus the uncertain tokens whose
 * remaining bytes the rest of that stack accepts; whole-state masks are
 * also cached (direct mapped). */
#include <stdlib.h>
#include <string.h>

#include "common/gram_internal.h"
#include "common/tokenizer.h"

#define MASK_CACHE 64

struct gram_pos_info {
    uint32_t *acc_bits; /* accepted set as a bitmap (dense) ... */
    int32_t *acc_ids;   /* ... or as ids (sparse) */
    int32_t n_acc;
    /* pop edges: trie nodes whose parent's bytes can leave the frame and
     * whose own byte may follow it; the tokens at and below them are
     * decided against the rest of the stack at run time by walking that
     * subtree (pruned where it dies) */
    int32_t *pops;
    int32_t n_pops, cap_pops;
    int shared; /* owned by the vocabulary's share table, not the grammar */
};

static void pos_info_release(gram_pos_info *p)
{
    if (!p)
        return;
    free(p->acc_bits);
    free(p->acc_ids);
    free(p->pops);
    free(p);
}

void gram_pos_info_free(gram_pos_info *p)
{
    if (!p || p->shared)
        return;
    free(p->acc_bits);
    free(p->acc_ids);
    free(p->pops);
    free(p);
}

/* Classifications shared between grammars.  A position's classification
 * depends only on the part of the grammar reachable from it inside its
 * frame and on the bytes that may follow the frame, so it is keyed by
 * that, serialised with rules renumbered in the order reached (a JSON
 * string's body is the same key in every schema).  Entries live as long
 * as the vocabulary; past SHARE_MAX, or for a key over KEY_MAX bytes, a
 * grammar keeps its own. */
#define SHARE_SLOTS 8192 /* open addressing, a power of two */
#define SHARE_MAX 2048   /* entries (a dense one holds a 16 KiB bitmap) */
#define KEY_MAX (64 << 10)

typedef struct share_slot {
    uint64_t hash;
    uint8_t *key; /* NULL: empty */
    size_t len;
    gram_pos_info *pi;
} share_slot;

struct gram_pos_share {
    pthread_mutex_t lock;
    int lock_ok;
    share_slot *slot;
    int n;
};

/* ---- vocabulary ---- */
static int cmp_tok(const void *a, const void *b, void *ctx)
{
    const dsa_gram_vocab *v = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    uint32_t n = v->len[x] < v->len[y] ? v->len[x] : v->len[y];
    int c = memcmp(v->bytes[x], v->bytes[y], n);
    if (c)
        return c;
    if (v->len[x] != v->len[y])
        return v->len[x] < v->len[y] ? -1 : 1;
    return x < y ? -1 : 1;
}

static int32_t trie_add(dsa_gram_vocab *v, uint8_t byte, int32_t lo)
{
    gram_trie_node *t = &v->trie[v->n_trie];
    t->child = t->sibling = -1;
    t->byte = byte;
    t->tok_lo = lo;
    return (int32_t)v->n_trie++;
}

/* Builds node `node` (depth d) over sorted[lo, hi) whose tokens share d
 * bytes.  Recursion depth is the longest token (bounded by the vocab). */
static void trie_build(dsa_gram_vocab *v, int32_t node, uint32_t d, int32_t lo, int32_t hi)
{
    int32_t i = lo;
    while (i < hi && v->len[v->sorted[i]] == d)
        i++;
    v->trie[node].tok_lo = lo;
    v->trie[node].tok_hi = hi;
    v->trie[node].n_end = i - lo;
    int32_t prev = -1;
    while (i < hi) {
        uint8_t b = v->bytes[v->sorted[i]][d];
        int32_t j = i;
        while (j < hi && v->bytes[v->sorted[j]][d] == b)
            j++;
        int32_t c = trie_add(v, b, i);
        if (prev < 0)
            v->trie[node].child = c;
        else
            v->trie[prev].sibling = c;
        prev = c;
        trie_build(v, c, d + 1, i, j);
        i = j;
    }
}

static int is_stop(const dsa_gram_vocab_params *p, size_t id)
{
    for (size_t i = 0; i < p->n_stop_ids; i++)
        if ((size_t)p->stop_ids[i] == id)
            return 1;
    return 0;
}

/* What id's bytes are to the grammar: its text; for an added token without
 * added_as_text the marker gram_marker() (a grammar names it with
 * gx_marker); none for a stop id, and none for a text token holding the
 * marker lead byte 0xFF (only the raw byte token: 0xFF is never UTF-8). */
static const char *token_bytes(const dsa_gram_vocab_params *p, size_t id, size_t *len,
                               char marker[GRAM_MARKER_LEN])
{
    const char *b = dsa_tok_token_bytes(p->tok, (int32_t)id, len);
    if (!b || !*len || is_stop(p, id))
        return NULL;
    if (!p->added_as_text && dsa_tok_is_added(p->tok, (int32_t)id)) {
        gram_marker((int32_t)id, marker);
        *len = GRAM_MARKER_LEN;
        return marker;
    }
    if (!p->added_as_text && memchr(b, 0xFF, *len))
        return NULL;
    return b;
}

dsa_err dsa_gram_vocab_create(const dsa_gram_vocab_params *p, dsa_gram_vocab **out)
{
    *out = NULL;
    dsa_gram_vocab *v = calloc(1, sizeof *v);
    if (!v)
        return DSA_NOMEM;
    size_t n_ids = dsa_tok_n_vocab(p->tok);
    v->n_vocab = p->n_vocab > n_ids ? p->n_vocab : n_ids;
    v->n_words = (v->n_vocab + 31) / 32;
    v->bytes = calloc(v->n_vocab, sizeof *v->bytes);
    v->len = calloc(v->n_vocab, sizeof *v->len);
    v->sorted = malloc(v->n_vocab * sizeof *v->sorted);
    v->stop_ids = malloc((p->n_stop_ids + 1) * sizeof *v->stop_ids);
    if (!v->bytes || !v->len || !v->sorted || !v->stop_ids)
        goto nomem;
    if (p->n_stop_ids)
        memcpy(v->stop_ids, p->stop_ids, p->n_stop_ids * sizeof *v->stop_ids);
    v->n_stop = p->n_stop_ids;
    size_t total = 0;
    char mk[GRAM_MARKER_LEN];
    for (size_t id = 0; id < n_ids; id++) {
        size_t len;
        if (token_bytes(p, id, &len, mk))
            total += len;
    }
    v->blob = malloc(total + 1);
    v->trie = malloc((total + 1) * sizeof *v->trie);
    if (!v->blob || !v->trie)
        goto nomem;
    size_t off = 0;
    for (size_t id = 0; id < n_ids; id++) {
        size_t len;
        const char *b = token_bytes(p, id, &len, mk);
        if (!b)
            continue;
        memcpy(v->blob + off, b, len);
        v->bytes[id] = (const uint8_t *)v->blob + off;
        v->len[id] = (uint32_t)len;
        v->sorted[v->n_sorted++] = (int32_t)id;
        off += len;
    }
    v->share = calloc(1, sizeof *v->share);
    if (!v->share || !(v->share->slot = calloc(SHARE_SLOTS, sizeof *v->share->slot)))
        goto nomem;
    pthread_mutex_init(&v->share->lock, NULL);
    v->share->lock_ok = 1;
    qsort_r(v->sorted, v->n_sorted, sizeof *v->sorted, cmp_tok, v);
    trie_add(v, 0, 0);
    trie_build(v, 0, 0, 0, (int32_t)v->n_sorted);
    *out = v;
    return DSA_OK;
nomem:
    dsa_gram_vocab_destroy(v);
    return DSA_NOMEM;
}

void dsa_gram_vocab_destroy(dsa_gram_vocab *v)
{
    if (!v)
        return;
    free(v->bytes);
    free(v->len);
    free(v->sorted);
    free(v->blob);
    free(v->trie);
    free(v->stop_ids);
    if (v->share) {
        for (size_t i = 0; v->share->slot && i < SHARE_SLOTS; i++) {
            free(v->share->slot[i].key);
            pos_info_release(v->share->slot[i].pi);
        }
        free(v->share->slot);
        if (v->share->lock_ok)
            pthread_mutex_destroy(&v->share->lock);
        free(v->share);
    }
    free(v);
}

size_t dsa_gram_vocab_n(const dsa_gram_vocab *v) { return v->n_vocab; }
size_t dsa_gram_mask_words(const dsa_gram_vocab *v) { return v->n_words; }

/* ---- bytes that may follow a rule ---- */
/* A token leaves a position's frame when its rule completes; the next byte
 * is then one that may follow the rule somewhere in the grammar (LL(1)
 * FOLLOW over bytes).  Classification keeps only the trie edges past a
 * pop point whose byte is in that set: inside a string body the only one
 * is the closing quote.  An over-approximation is always correct, so a
 * grammar whose FIRST sets do not settle within FIRST_PASSES_MAX passes
 * gets every byte. */
#define FIRST_PASSES_MAX 64

static int bits_or(uint64_t *dst, const uint64_t *src)
{
    int changed = 0;
    for (int i = 0; i < 4; i++) {
        changed |= (src[i] & ~dst[i]) != 0;
        dst[i] |= src[i];
    }
    return changed;
}

/* FIRST of the elements from position p to the end of its alternative
 * into f; 1 when they can all match nothing. */
static int seq_first(const dsa_gram *g, int32_t p, const uint64_t (*first)[4],
                     const uint8_t *nul, uint64_t *f)
{
    for (;; p++) {
        const gelem *e = &g->el[p];
        if (e->kind == GE_END)
            return 1;
        if (e->kind == GE_TERM) {
            bits_or(f, g->cls[e->arg]);
            return 0;
        }
        bits_or(f, first[e->arg]);
        if (!nul[e->arg])
            return 0;
    }
}

static dsa_err follow_build(dsa_gram *g)
{
    int nr = g->n_rules;
    dsa_err err = DSA_NOMEM;
    uint8_t *nul = calloc((size_t)nr + 1, 1), *queued = calloc((size_t)nr + 1, 1);
    uint64_t(*first)[4] = calloc((size_t)nr + 1, sizeof *first);
    int32_t *n_out = calloc((size_t)nr + 2, sizeof *n_out), *edge = NULL, *work = NULL;
    g->el_rule = malloc(((size_t)g->n_el + 1) * sizeof *g->el_rule);
    g->follow = calloc((size_t)nr + 1, sizeof *g->follow);
    if (!nul || !queued || !first || !n_out || !g->el_rule || !g->follow)
        goto out;
    for (int r = 0; r < nr; r++)
        for (int i = 0; i < g->rules[r].n_alts; i++)
            for (int32_t p = g->rules[r].alts[i];; p++) {
                g->el_rule[p] = r;
                if (g->el[p].kind == GE_END)
                    break;
            }
    int changed = 1, passes = 0;
    for (; changed && passes < FIRST_PASSES_MAX; passes++) {
        changed = 0;
        for (int r = nr - 1; r >= 0; r--) /* deferred rules come after their users */
            for (int i = 0; i < g->rules[r].n_alts; i++) {
                uint64_t f[4] = {0};
                int empty = seq_first(g, g->rules[r].alts[i], (const uint64_t(*)[4])first, nul, f);
                changed |= bits_or(first[r], f);
                if (empty && !nul[r])
                    nul[r] = changed = 1;
            }
    }
    if (changed) {
        memset(g->follow, 0xFF, (size_t)nr * sizeof *g->follow);
        err = DSA_OK;
        goto out;
    }
    /* FOLLOW(q) holds FIRST of what follows each reference to q, and
     * FOLLOW(A) where that is nullable (an edge A -> q, propagated below). */
    size_t n_edges = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int32_t p = 0; p < g->n_el; p++) {
            if (g->el[p].kind != GE_REF)
                continue;
            int32_t q = g->el[p].arg, a = g->el_rule[p];
            uint64_t f[4] = {0};
            int empty = seq_first(g, p + 1, (const uint64_t(*)[4])first, nul, f);
            if (pass == 0) {
                bits_or(g->follow[q], f);
                if (empty)
                    n_out[a + 1]++, n_edges++;
            } else if (empty) {
                edge[n_out[a]++] = q;
            }
        }
        if (pass == 0) {
            for (int r = 0; r < nr; r++)
                n_out[r + 1] += n_out[r];
            edge = malloc((n_edges + 1) * sizeof *edge);
            work = malloc(((size_t)nr + 1) * sizeof *work);
            if (!edge || !work)
                goto out;
        }
    }
    /* n_out[a] is now the end of a's edges; its start is n_out[a - 1]. */
    int n_work = 0;
    for (int r = 0; r < nr; r++)
        work[n_work++] = r, queued[r] = 1;
    while (n_work) {
        int a = work[--n_work];
        queued[a] = 0;
        for (int32_t k = a ? n_out[a - 1] : 0; k < n_out[a]; k++) {
            int32_t q = edge[k];
            if (bits_or(g->follow[q], g->follow[a]) && !queued[q])
                work[n_work++] = q, queued[q] = 1;
        }
    }
    err = DSA_OK;
out:
    if (err) {
        free(g->el_rule);
        free(g->follow);
        g->el_rule = NULL;
        g->follow = NULL;
    }
    free(nul);
    free(queued);
    free(first);
    free(n_out);
    free(edge);
    free(work);
    return err;
}

/* ---- classification of one position ---- */
typedef struct classify {
    dsa_gram *g;
    const dsa_gram_vocab *v;
    gram_pos_info *pi;
    uint32_t *acc; /* bitmap while classifying */
    const uint64_t *follow; /* bytes that may follow the position's rule */
    int64_t n_nodes;        /* trie nodes walked */
    dsa_err err;
} classify;

static void add_pop(classify *c, int32_t tn)
{
    gram_pos_info *pi = c->pi;
    if (pi->n_pops == pi->cap_pops) {
        int cap = pi->cap_pops ? pi->cap_pops * 2 : 64;
        int32_t *p = realloc(pi->pops, (size_t)cap * sizeof *p);
        if (!p) {
            c->err = DSA_NOMEM;
            return;
        }
        pi->pops = p;
        pi->cap_pops = cap;
    }
    pi->pops[pi->n_pops++] = tn;
}

/* Walks the trie below tn in state (the stack holding the position
 * alone): tokens ending at a live node are accepted; when state has left
 * the frame (out: it holds GRAM_NIL), each child whose byte may follow the
 * frame is a pop edge. */
static void dfs(classify *c, int32_t tn, int32_t state, int out)
{
    const gram_trie_node *t = &c->v->trie[tn];
    c->n_nodes++;
    for (int32_t i = t->tok_lo; i < t->tok_lo + t->n_end; i++) {
        int32_t id = c->v->sorted[i];
        c->acc[id >> 5] |= 1u << (id & 31);
        c->pi->n_acc++;
    }
    for (int32_t ch = t->child; ch >= 0 && !c->err; ch = c->v->trie[ch].sibling) {
        uint8_t b = c->v->trie[ch].byte;
        if (out && (c->follow[b >> 6] >> (b & 63) & 1))
            add_pop(c, ch);
        int32_t s2;
        if ((c->err = gram_step_fast(c->g, state, b, &s2)))
            return;
        if (s2 != GRAM_DEAD)
            dfs(c, ch, s2, c->g->st_nodes[s2][0] == GRAM_NIL);
    }
}

typedef struct keybuf {
    uint8_t *v;
    size_t n, cap;
    int bad; /* too long or out of memory */
} keybuf;

static void key_put(keybuf *k, const void *p, size_t n)
{
    if (k->bad || k->n + n > KEY_MAX) {
        k->bad = 1;
        return;
    }
    if (k->n + n > k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 1024;
        while (cap < k->n + n)
            cap *= 2;
        uint8_t *v = realloc(k->v, cap);
        if (!v) {
            k->bad = 1;
            return;
        }
        k->v = v;
        k->cap = cap;
    }
    memcpy(k->v + k->n, p, n);
    k->n += n;
}

/* Serialises the elements from p to the end of its alternative; rules
 * referenced get numbers in the order reached and join queue. */
static void key_alt(dsa_gram *g, keybuf *k, int32_t p, int32_t *queue, int32_t *n_queue)
{
    for (;; p++) {
        const gelem *e = &g->el[p];
        key_put(k, &e->kind, 1);
        if (e->kind == GE_END)
            return;
        if (e->kind == GE_TERM) {
            key_put(k, g->cls[e->arg], 32);
            continue;
        }
        if (g->key_local[e->arg] < 0) {
            g->key_local[e->arg] = *n_queue;
            queue[(*n_queue)++] = e->arg;
        }
        key_put(k, &g->key_local[e->arg], sizeof(int32_t));
    }
}

/* The structural key of position pos (NULL when it is not shared); *len
 * is its length, or how far it got. */
static uint8_t *pos_key(dsa_gram *g, int32_t pos, size_t *len)
{
    if (!g->key_local) {
        g->key_local = malloc(((size_t)g->n_rules + 1) * sizeof *g->key_local);
        if (!g->key_local)
            return NULL;
        memset(g->key_local, 0xFF, ((size_t)g->n_rules + 1) * sizeof *g->key_local);
    }
    keybuf k = {0};
    int32_t *queue = malloc(((size_t)g->n_rules + 1) * sizeof *queue), n_queue = 0;
    if (!queue)
        return NULL;
    key_put(&k, g->follow[g->el_rule[pos]], 32);
    key_alt(g, &k, pos, queue, &n_queue);
    for (int32_t i = 0; i < n_queue && !k.bad; i++) {
        const gram_rule *r = &g->rules[queue[i]];
        key_put(&k, &r->n_alts, sizeof r->n_alts);
        for (int a = 0; a < r->n_alts && !k.bad; a++)
            key_alt(g, &k, r->alts[a], queue, &n_queue);
    }
    for (int32_t i = 0; i < n_queue; i++)
        g->key_local[queue[i]] = -1;
    free(queue);
    *len = k.n; /* also when too long: the bytes written are work done */
    if (k.bad) {
        free(k.v);
        return NULL;
    }
    return k.v;
}

static uint64_t key_hash(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* The slot holding key, or the empty slot where it would go. */
static share_slot *share_slot_of(struct gram_pos_share *s, const uint8_t *key, size_t len,
                                 uint64_t h)
{
    for (size_t i = h & (SHARE_SLOTS - 1);; i = (i + 1) & (SHARE_SLOTS - 1)) {
        share_slot *sl = &s->slot[i];
        if (!sl->key || (sl->hash == h && sl->len == len && !memcmp(sl->key, key, len)))
            return sl;
    }
}

static dsa_err pos_classify(dsa_gram *g, int32_t pos, gram_pos_info **out);

static dsa_err pos_info_get(dsa_gram *g, int32_t pos, gram_pos_info **out)
{
    if (g->pos_info[pos]) {
        *out = g->pos_info[pos];
        return DSA_OK;
    }
    if (!g->follow) {
        dsa_err err = follow_build(g);
        if (err)
            return err;
    }
    struct gram_pos_share *s = g->vocab->share;
    size_t len = 0;
    uint8_t *key = pos_key(g, pos, &len);
    uint64_t h = key ? key_hash(key, len) : 0;
    g->classify_work += (int64_t)len / 8;
    if (g->compiled)
        g->n_lazy++;
    if (key) {
        pthread_mutex_lock(&s->lock);
        share_slot *sl = share_slot_of(s, key, len, h);
        gram_pos_info *pi = sl->key ? sl->pi : NULL;
        pthread_mutex_unlock(&s->lock);
        if (pi) {
            free(key);
            g->pos_info[pos] = *out = pi;
            return DSA_OK;
        }
    }
    gram_pos_info *pi = NULL;
    dsa_err err = pos_classify(g, pos, &pi);
    if (err || !key) { /* a key over KEY_MAX: the grammar keeps its own */
        free(key);
        if (!err)
            g->pos_info[pos] = *out = pi;
        return err;
    }
    pthread_mutex_lock(&s->lock);
    share_slot *sl = share_slot_of(s, key, len, h);
    if (sl->key) { /* another grammar classified it meanwhile */
        gram_pos_info_free(pi);
        pi = sl->pi;
        free(key);
    } else if (s->n < SHARE_MAX) {
        *sl = (share_slot){h, key, len, pi};
        pi->shared = 1;
        s->n++;
    } else {
        free(key);
    }
    pthread_mutex_unlock(&s->lock);
    g->pos_info[pos] = *out = pi;
    return DSA_OK;
}

/* Classifies position pos on its own (the walk from the stack holding it
 * alone). */
static dsa_err pos_classify(dsa_gram *g, int32_t pos, gram_pos_info **out)
{
    const dsa_gram_vocab *v = g->vocab;
    classify c = {.g = g, .v = v, .follow = g->follow[g->el_rule[pos]]};
    c.pi = calloc(1, sizeof *c.pi);
    c.acc = calloc(v->n_words, sizeof *c.acc);
    int32_t s0;
    dsa_err err = !c.pi || !c.acc ? DSA_NOMEM : gram_single(g, pos, &s0);
    if (!err) {
        dfs(&c, 0, s0, 0);
        err = c.err;
        g->classify_work += c.n_nodes;
    }
    if (err)
        goto fail;
    gram_pos_info *pi = c.pi;
    if ((size_t)pi->n_acc * 32 > v->n_vocab) {
        pi->acc_bits = c.acc;
        c.acc = NULL;
    } else {
        pi->acc_ids = malloc(((size_t)pi->n_acc + 1) * sizeof *pi->acc_ids);
        if (!pi->acc_ids) {
            err = DSA_NOMEM;
            goto fail;
        }
        int32_t k = 0;
        for (size_t w = 0; w < v->n_words; w++)
            for (uint32_t b = c.acc[w]; b; b &= b - 1)
                pi->acc_ids[k++] = (int32_t)(w * 32 + (size_t)__builtin_ctz(b));
    }
    free(c.acc);
    *out = pi;
    return DSA_OK;
fail:
    free(c.acc);
    gram_pos_info_free(c.pi);
    return err;
}

/* Classifies the grammar's positions in order until the work spent
 * (trie nodes walked plus key bytes / 8) passes budget; the rest stay lazy.
 * g is not shared yet.  A failure (the memo's bounds) only ends it early:
 * the first mask that needs the position meets it again. */
void gram_classify_ahead(dsa_gram *g, int64_t budget)
{
    pthread_mutex_lock(&g->lock);
    for (int32_t p = 0; p < g->n_el && g->classify_work < budget; p++) {
        gram_pos_info *pi;
        if (g->el[p].kind != GE_TERM || g->pos_info[p])
            continue;
        if (pos_info_get(g, p, &pi))
            break;
        g->n_ahead++;
    }
    g->compiled = 1;
    pthread_mutex_unlock(&g->lock);
}

void dsa_gram_classify_stats(dsa_gram *g, int64_t *ahead, int64_t *lazily)
{
    pthread_mutex_lock(&g->lock);
    *ahead = g->n_ahead;
    *lazily = g->n_lazy;
    pthread_mutex_unlock(&g->lock);
}

/* ---- masks ---- */
/* Marks the tokens below tn that state (the stack's rest) accepts. */
static dsa_err walk_below(dsa_gram *g, int32_t tn, int32_t state, uint32_t *mask)
{
    const dsa_gram_vocab *v = g->vocab;
    for (int32_t ch = v->trie[tn].child; ch >= 0; ch = v->trie[ch].sibling) {
        const gram_trie_node *k = &v->trie[ch];
        int32_t s2;
        dsa_err err = gram_step_fast(g, state, k->byte, &s2);
        if (err)
            return err;
        if (s2 == GRAM_DEAD)
            continue;
        for (int32_t i = k->tok_lo; i < k->tok_lo + k->n_end; i++)
            mask[v->sorted[i] >> 5] |= 1u << (v->sorted[i] & 31);
        if (k->child >= 0 && (err = walk_below(g, ch, s2, mask)))
            return err;
    }
    return DSA_OK;
}

static dsa_err node_mask(dsa_gram *g, int32_t node, uint32_t *mask)
{
    const dsa_gram_vocab *v = g->vocab;
    gram_pos_info *pi = NULL;
    dsa_err err = pos_info_get(g, g->node_pos[node], &pi);
    if (err)
        return err;
    if (pi->acc_bits)
        for (size_t w = 0; w < v->n_words; w++)
            mask[w] |= pi->acc_bits[w];
    else
        for (int32_t i = 0; i < pi->n_acc; i++)
            mask[pi->acc_ids[i] >> 5] |= 1u << (pi->acc_ids[i] & 31);
    int32_t below = g->node_next[node];
    if (!pi->n_pops || below == GRAM_NIL) /* nothing may follow the root */
        return DSA_OK;
    int32_t ps;
    if ((err = gram_pop_state(g, below, &ps)))
        return err;
    for (int32_t i = 0; i < pi->n_pops && !err; i++) {
        const gram_trie_node *k = &v->trie[pi->pops[i]];
        int32_t s2;
        if ((err = gram_step_fast(g, ps, k->byte, &s2)) || s2 == GRAM_DEAD)
            continue;
        for (int32_t j = k->tok_lo; j < k->tok_lo + k->n_end; j++)
            mask[v->sorted[j] >> 5] |= 1u << (v->sorted[j] & 31);
        if (k->child >= 0)
            err = walk_below(g, pi->pops[i], s2, mask);
    }
    return err;
}

dsa_err dsa_gram_fill_mask(dsa_gram *g, int32_t state, uint32_t *mask)
{
    const dsa_gram_vocab *v = g->vocab;
    dsa_err err = DSA_OK;
    pthread_mutex_lock(&g->lock);
    if (!g->mc_state) {
        g->mc_state = malloc(MASK_CACHE * sizeof *g->mc_state);
        g->mc_mask = malloc(MASK_CACHE * v->n_words * sizeof *g->mc_mask);
        if (!g->mc_state || !g->mc_mask) {
            free(g->mc_state);
            g->mc_state = NULL;
            err = DSA_NOMEM;
            goto out;
        }
        for (int i = 0; i < MASK_CACHE; i++)
            g->mc_state[i] = -1;
    }
    uint32_t *slot = g->mc_mask + (size_t)(state % MASK_CACHE) * v->n_words;
    if (g->mc_state[state % MASK_CACHE] == state) {
        memcpy(mask, slot, v->n_words * sizeof *mask);
        goto out;
    }
    memset(mask, 0, v->n_words * sizeof *mask);
    if (state != GRAM_DEAD) {
        /* The state's node list is immutable once interned. */
        const int32_t *nodes = g->st_nodes[state];
        int n = g->st_n[state];
        for (int k = 0; k < n && !err; k++) {
            if (nodes[k] == GRAM_NIL) {
                for (size_t i = 0; i < v->n_stop; i++)
                    mask[v->stop_ids[i] >> 5] |= 1u << (v->stop_ids[i] & 31);
                continue;
            }
            err = node_mask(g, nodes[k], mask);
        }
    }
    if (!err) {
        memcpy(slot, mask, v->n_words * sizeof *mask);
        g->mc_state[state % MASK_CACHE] = state;
    }
out:
    pthread_mutex_unlock(&g->lock);
    return err;
}
