/* gram_build.c - the expression tree the front ends build, its lowering to
 * flat byte-level rules (code point classes become UTF-8 byte sequences,
 * repetitions become right-recursive rules), and dsa_gram_compile. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/gram_internal.h"

/* ---- arena ---- */
void *gx_alloc(gx_arena *a, size_t size)
{
    if (a->oom)
        return NULL;
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        void **b = realloc(a->blocks, cap * sizeof *b);
        if (!b) {
            a->oom = 1;
            return NULL;
        }
        a->blocks = b;
        a->cap = cap;
    }
    void *p = calloc(1, size ? size : 1);
    if (!p) {
        a->oom = 1;
        return NULL;
    }
    a->blocks[a->n++] = p;
    return p;
}

void gx_arena_free(gx_arena *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->blocks[i]);
    free(a->blocks);
    memset(a, 0, sizeof *a);
}

static gx *gx_new(gx_arena *a, gx_kind k)
{
    gx *x = gx_alloc(a, sizeof *x);
    if (x)
        x->kind = k;
    return x;
}

gx *gx_empty(gx_arena *a) { return gx_new(a, GX_EMPTY); }

gx *gx_bytes(gx_arena *a, const char *s, size_t n)
{
    gx *x = gx_new(a, GX_BYTES);
    char *b = gx_alloc(a, n + 1);
    if (!x || !b)
        return NULL;
    memcpy(b, s, n);
    x->bytes = b;
    x->len = n;
    return x;
}

gx *gx_str(gx_arena *a, const char *s) { return gx_bytes(a, s, strlen(s)); }

static int cmp_range(const void *p, const void *q)
{
    const uint32_t *x = p, *y = q;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

gx *gx_class(gx_arena *a, const uint32_t *ranges, int n, int negate)
{
    gx *x = gx_new(a, GX_CLASS);
    uint32_t *r = gx_alloc(a, (size_t)(2 * n + 4) * 2 * sizeof *r);
    uint32_t *t = gx_alloc(a, (size_t)(2 * n + 4) * 2 * sizeof *t);
    if (!x || !r || !t)
        return NULL;
    memcpy(r, ranges, (size_t)n * 2 * sizeof *r);
    qsort(r, (size_t)n, 2 * sizeof *r, cmp_range);
    int m = 0; /* merge */
    for (int i = 0; i < n; i++) {
        uint32_t lo = r[2 * i], hi = r[2 * i + 1];
        if (hi > 0x10FFFF)
            hi = 0x10FFFF;
        if (lo > hi)
            continue;
        if (m && lo <= t[2 * m - 1] + 1) {
            if (hi > t[2 * m - 1])
                t[2 * m - 1] = hi;
        } else {
            t[2 * m] = lo;
            t[2 * m + 1] = hi;
            m++;
        }
    }
    if (negate) {
        int k = 0;
        uint32_t next = 0;
        for (int i = 0; i < m; i++) {
            if (t[2 * i] > next) {
                r[2 * k] = next;
                r[2 * k + 1] = t[2 * i] - 1;
                k++;
            }
            next = t[2 * i + 1] + 1;
        }
        if (next <= 0x10FFFF) {
            r[2 * k] = next;
            r[2 * k + 1] = 0x10FFFF;
            k++;
        }
        memcpy(t, r, (size_t)k * 2 * sizeof *t);
        m = k;
    }
    /* Surrogates are not characters: cut D800-DFFF out. */
    int k = 0;
    for (int i = 0; i < m; i++) {
        uint32_t lo = t[2 * i], hi = t[2 * i + 1];
        if (lo < 0xD800 && hi >= 0xD800) {
            r[2 * k] = lo;
            r[2 * k + 1] = 0xD7FF;
            k++;
            lo = 0xE000;
        }
        if (lo >= 0xD800 && lo <= 0xDFFF)
            lo = 0xE000;
        if (lo <= hi) {
            r[2 * k] = lo;
            r[2 * k + 1] = hi;
            k++;
        }
    }
    x->ranges = r;
    x->n = k;
    return x;
}

gx *gx_seq(gx_arena *a, gx *const *kids, int n)
{
    gx *x = gx_new(a, GX_SEQ);
    gx **k = gx_alloc(a, (size_t)(n ? n : 1) * sizeof *k);
    if (!x || !k)
        return NULL;
    for (int i = 0; i < n; i++)
        if (!(k[i] = kids[i]))
            return NULL;
    x->kids = k;
    x->n = n;
    return x;
}

gx *gx_alt(gx_arena *a, gx *const *kids, int n)
{
    gx *x = gx_seq(a, kids, n);
    if (x)
        x->kind = GX_ALT;
    return x;
}

gx *gx_seq2(gx_arena *a, gx *x, gx *y) { return gx_seq(a, (gx *[]){x, y}, 2); }
gx *gx_seq3(gx_arena *a, gx *x, gx *y, gx *z) { return gx_seq(a, (gx *[]){x, y, z}, 3); }
gx *gx_alt2(gx_arena *a, gx *x, gx *y) { return gx_alt(a, (gx *[]){x, y}, 2); }

gx *gx_rep(gx_arena *a, gx *x, int min, int max)
{
    gx *r = gx_new(a, GX_REP);
    if (!r || !x)
        return NULL;
    r->kids = gx_alloc(a, sizeof *r->kids);
    if (!r->kids)
        return NULL;
    r->kids[0] = x;
    r->n = 1;
    r->min = min;
    r->max = max;
    return r;
}

gx *gx_marker(gx_arena *a, int32_t id)
{
    char m[GRAM_MARKER_LEN];
    gram_marker(id, m);
    return gx_bytes(a, m, GRAM_MARKER_LEN);
}

gx *gx_ref(gx_arena *a, int rule)
{
    gx *x = gx_new(a, GX_REF);
    if (x)
        x->rule = rule;
    return x;
}

int gx_list_push(gx_arena *a, gx_list *l, gx *x)
{
    if (!x)
        return -1;
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 8;
        gx **v = gx_alloc(a, (size_t)cap * sizeof *v);
        if (!v)
            return -1;
        if (l->n)
            memcpy(v, l->v, (size_t)l->n * sizeof *v);
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = x;
    return 0;
}

/* ---- lowering ---- */
int gram_rule_new(dsa_gram *g, const char *name)
{
    if (g->n_rules == g->cap_rules) {
        int cap = g->cap_rules ? g->cap_rules * 2 : 32;
        gram_rule *r = realloc(g->rules, (size_t)cap * sizeof *r);
        if (!r)
            return -1;
        g->rules = r;
        g->cap_rules = cap;
    }
    gram_rule *r = &g->rules[g->n_rules];
    memset(r, 0, sizeof *r);
    r->name = strdup(name ? name : "r");
    if (!r->name)
        return -1;
    return g->n_rules++;
}

/* Elements of the alternative being lowered. */
typedef struct evec {
    gelem *v;
    int n, cap;
} evec;

static dsa_err evec_push(evec *e, uint8_t kind, int32_t arg)
{
    if (e->n == e->cap) {
        int cap = e->cap ? e->cap * 2 : 16;
        gelem *v = realloc(e->v, (size_t)cap * sizeof *v);
        if (!v)
            return DSA_NOMEM;
        e->v = v;
        e->cap = cap;
    }
    e->v[e->n++] = (gelem){kind, arg};
    return DSA_OK;
}

static int class_add(dsa_gram *g, const uint64_t bits[4])
{
    for (int i = g->n_cls - 1; i >= 0 && i >= g->n_cls - 64; i--)
        if (!memcmp(g->cls[i], bits, 32))
            return i;
    if (g->n_cls == g->cap_cls) {
        int cap = g->cap_cls ? g->cap_cls * 2 : 64;
        uint64_t(*c)[4] = realloc(g->cls, (size_t)cap * sizeof *c);
        if (!c)
            return -1;
        g->cls = c;
        g->cap_cls = cap;
    }
    memcpy(g->cls[g->n_cls], bits, 32);
    return g->n_cls++;
}

static dsa_err push_range(dsa_gram *g, evec *e, unsigned lo, unsigned hi)
{
    uint64_t bits[4] = {0};
    for (unsigned b = lo; b <= hi; b++)
        bits[b >> 6] |= 1ull << (b & 63);
    int c = class_add(g, bits);
    return c < 0 ? DSA_NOMEM : evec_push(e, GE_TERM, c);
}

/* Appends alternative e (plus END) to rule r. */
static dsa_err rule_add_alt(dsa_gram *g, int r, const evec *e)
{
    if (g->n_el + e->n + 1 > GRAM_ELEMS_MAX)
        return dsa_fail(DSA_RANGE, "the grammar is too large (over %d elements)",
                        GRAM_ELEMS_MAX);
    if (g->n_el + e->n + 1 > g->cap_el) {
        int cap = g->cap_el ? g->cap_el : 256;
        while (cap < g->n_el + e->n + 1)
            cap *= 2;
        gelem *v = realloc(g->el, (size_t)cap * sizeof *v);
        if (!v)
            return DSA_NOMEM;
        g->el = v;
        g->cap_el = cap;
    }
    gram_rule *R = &g->rules[r];
    if (R->n_alts == R->cap_alts) {
        int cap = R->cap_alts ? R->cap_alts * 2 : 4;
        int32_t *a = realloc(R->alts, (size_t)cap * sizeof *a);
        if (!a)
            return DSA_NOMEM;
        R->alts = a;
        R->cap_alts = cap;
    }
    R->alts[R->n_alts++] = g->n_el;
    if (e->n) /* an empty alternative has no vector */
        memcpy(g->el + g->n_el, e->v, (size_t)e->n * sizeof *e->v);
    g->n_el += e->n;
    g->el[g->n_el++] = (gelem){GE_END, 0};
    return DSA_OK;
}

/* Appends to alternative e a reference to rule tail (none when < 0). */
static dsa_err alt_end(dsa_gram *g, int r, evec *e, int tail)
{
    dsa_err err = tail >= 0 ? evec_push(e, GE_REF, tail) : DSA_OK;
    return err ? err : rule_add_alt(g, r, e);
}

static int utf8_len(uint32_t c) { return c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4; }

static void utf8_enc(uint32_t c, uint8_t *b)
{
    switch (utf8_len(c)) {
    case 1: b[0] = (uint8_t)c; break;
    case 2: b[0] = (uint8_t)(0xC0 | c >> 6); b[1] = (uint8_t)(0x80 | (c & 63)); break;
    case 3:
        b[0] = (uint8_t)(0xE0 | c >> 12);
        b[1] = (uint8_t)(0x80 | (c >> 6 & 63));
        b[2] = (uint8_t)(0x80 | (c & 63));
        break;
    default:
        b[0] = (uint8_t)(0xF0 | c >> 18);
        b[1] = (uint8_t)(0x80 | (c >> 12 & 63));
        b[2] = (uint8_t)(0x80 | (c >> 6 & 63));
        b[3] = (uint8_t)(0x80 | (c & 63));
    }
}

/* Adds to rule r one alternative per UTF-8 byte-range sequence covering
 * [lo, hi] (same encoded length), splitting where continuation bytes stop
 * spanning their full range. */
static dsa_err utf8_split(dsa_gram *g, int r, uint32_t lo, uint32_t hi, int tail)
{
    int n = utf8_len(lo);
    for (int i = 1; i < n; i++) {
        uint32_t m = (1u << (6 * i)) - 1;
        if ((lo & ~m) != (hi & ~m)) {
            if (lo & m) {
                dsa_err err = utf8_split(g, r, lo, lo | m, tail);
                return err ? err : utf8_split(g, r, (lo | m) + 1, hi, tail);
            }
            if ((hi & m) != m) {
                dsa_err err = utf8_split(g, r, lo, (hi & ~m) - 1, tail);
                return err ? err : utf8_split(g, r, hi & ~m, hi, tail);
            }
        }
    }
    uint8_t a[4], b[4];
    utf8_enc(lo, a);
    utf8_enc(hi, b);
    evec e = {0};
    dsa_err err = DSA_OK;
    for (int i = 0; i < n && !err; i++)
        err = push_range(g, &e, a[i], b[i]);
    if (!err)
        err = alt_end(g, r, &e, tail);
    free(e.v);
    return err;
}

static dsa_err lower_class_alts(dsa_gram *g, const gx *x, int r, int tail);

/* A class with non-ASCII characters becomes a rule of its UTF-8 byte
 * sequences; an ASCII class is one element. */
static dsa_err lower_class(dsa_gram *g, const gx *x, evec *e)
{
    uint64_t ascii[4] = {0};
    int multi = 0;
    for (int i = 0; i < x->n; i++) {
        uint32_t lo = x->ranges[2 * i], hi = x->ranges[2 * i + 1];
        for (uint32_t c = lo; c <= hi && c < 0x80; c++)
            ascii[c >> 6] |= 1ull << (c & 63);
        if (hi >= 0x80)
            multi = 1;
    }
    if (!multi) {
        int c = class_add(g, ascii);
        return c < 0 ? DSA_NOMEM : evec_push(e, GE_TERM, c);
    }
    int r = gram_rule_new(g, "char");
    if (r < 0)
        return DSA_NOMEM;
    dsa_err err = lower_class_alts(g, x, r, -1);
    g->rules[r].def = (gx *)x; /* marks it lowered */
    return err ? err : evec_push(e, GE_REF, r);
}

/* Adds class x to rule r as one alternative per byte sequence, each
 * followed by a reference to rule tail when tail >= 0. */
static dsa_err lower_class_alts(dsa_gram *g, const gx *x, int r, int tail)
{
    uint64_t ascii[4] = {0};
    for (int i = 0; i < x->n; i++)
        for (uint32_t c = x->ranges[2 * i]; c <= x->ranges[2 * i + 1] && c < 0x80; c++)
            ascii[c >> 6] |= 1ull << (c & 63);
    dsa_err err = DSA_OK;
    if (ascii[0] | ascii[1]) {
        int c = class_add(g, ascii);
        evec a = {0};
        err = c < 0 ? DSA_NOMEM : evec_push(&a, GE_TERM, c);
        if (!err)
            err = alt_end(g, r, &a, tail);
        free(a.v);
    }
    /* xgrammar_utf8: a class holding every non-ASCII character (a negated
     * class) takes any lead byte with its count of continuation bytes, as
     * xgrammar's matcher does (C0/C1 and F5-F7 leads, overlongs and
     * surrogates included). */
    int all_hi = 0, all_lo = 0;
    for (int i = 0; i < x->n; i++) {
        all_lo |= x->ranges[2 * i] <= 0x80 && x->ranges[2 * i + 1] >= 0xD7FF;
        all_hi |= x->ranges[2 * i] <= 0xE000 && x->ranges[2 * i + 1] == 0x10FFFF;
    }
    if (g->xgrammar_utf8 && all_lo && all_hi) {
        static const uint8_t lead[3][2] = {{0xC0, 0xDF}, {0xE0, 0xEF}, {0xF0, 0xF7}};
        for (int k = 0; k < 3 && !err; k++) {
            evec a = {0};
            err = push_range(g, &a, lead[k][0], lead[k][1]);
            for (int j = 0; j <= k && !err; j++)
                err = push_range(g, &a, 0x80, 0xBF);
            if (!err)
                err = alt_end(g, r, &a, tail);
            free(a.v);
        }
        return err;
    }
    static const uint32_t bound[] = {0x80, 0x800, 0x10000, 0x110000};
    for (int i = 0; i < x->n && !err; i++) {
        uint32_t lo = x->ranges[2 * i] < 0x80 ? 0x80 : x->ranges[2 * i];
        uint32_t hi = x->ranges[2 * i + 1];
        for (int k = 0; k < 3 && lo <= hi && !err; k++) {
            if (lo >= bound[k + 1])
                continue;
            uint32_t top = hi < bound[k + 1] ? hi : bound[k + 1] - 1;
            err = utf8_split(g, r, lo, top, tail);
            lo = top + 1;
        }
    }
    return err;
}

static dsa_err lower_into(dsa_gram *g, gx_arena *a, const gx *x, evec *e, int depth);

/* A fresh rule whose alternatives are lowered later from def. */
static dsa_err defer_rule(dsa_gram *g, gx *def, const char *name, evec *e)
{
    int r = gram_rule_new(g, name);
    if (r < 0)
        return DSA_NOMEM;
    g->rules[r].def = def;
    return evec_push(e, GE_REF, r);
}

/* Whether kid is, or has as an alternative, a class with non-ASCII
 * characters (which would otherwise be a rule of its own). */
static int star_has_class(const gx *kid)
{
    int n = kid->kind == GX_ALT ? kid->n : 1;
    for (int i = 0; i < n; i++) {
        const gx *k = kid->kind == GX_ALT ? kid->kids[i] : kid;
        if (k->kind == GX_CLASS && k->n && k->ranges[2 * k->n - 1] >= 0x80)
            return 1;
    }
    return 0;
}

/* kid* as one self-looping rule R ::= k_1 R | ... | k_n R | "" with kid's
 * alternatives and a class's byte sequences as R's own alternatives: a
 * string body is then one frame, left only where the string may end, so
 * a position inside it accepts the tokens that stay in the string rather
 * than leaving a one-character frame after every character
 * (docs/perf/structured.md, Speed). */
static dsa_err lower_star_flat(dsa_gram *g, gx_arena *a, const gx *kid, evec *e, int depth)
{
    int r = gram_rule_new(g, "star");
    if (r < 0)
        return DSA_NOMEM;
    int n = kid->kind == GX_ALT ? kid->n : 1;
    dsa_err err = DSA_OK;
    for (int i = 0; i < n && !err; i++) {
        const gx *k = kid->kind == GX_ALT ? kid->kids[i] : kid;
        if (k->kind == GX_CLASS) {
            err = lower_class_alts(g, k, r, r);
            continue;
        }
        evec b = {0};
        err = lower_into(g, a, k, &b, depth + 1);
        if (!err)
            err = alt_end(g, r, &b, r);
        free(b.v);
    }
    evec none = {0};
    if (!err)
        err = rule_add_alt(g, r, &none);
    g->rules[r].def = (gx *)kid; /* lowered */
    return err ? err : evec_push(e, GE_REF, r);
}

static dsa_err lower_rep(dsa_gram *g, gx_arena *a, const gx *x, evec *e, int depth)
{
    gx *kid = x->kids[0];
    dsa_err err = DSA_OK;
    if (x->min > 10000 || x->max > 10000)
        return dsa_fail(DSA_RANGE, "a repetition bound over 10000");
    for (int i = 0; i < x->min && !err; i++)
        err = lower_into(g, a, kid, e, depth + 1);
    if (err || x->max == x->min)
        return err;
    if (x->max < 0 && star_has_class(kid))
        return lower_star_flat(g, a, kid, e, depth);
    if (x->max < 0) { /* R ::= kid R | "" */
        int r = gram_rule_new(g, "star");
        if (r < 0)
            return DSA_NOMEM;
        gx *def = gx_alt2(a, gx_seq2(a, kid, gx_ref(a, r)), gx_empty(a));
        if (!def)
            return DSA_NOMEM;
        g->rules[r].def = def;
        return evec_push(e, GE_REF, r);
    }
    /* R_1 ::= kid | "";  R_j ::= kid R_{j-1} | "" */
    gx *prev = NULL;
    for (int j = 1; j <= x->max - x->min; j++) {
        int r = gram_rule_new(g, "opt");
        if (r < 0)
            return DSA_NOMEM;
        gx *body = prev ? gx_seq2(a, kid, prev) : kid;
        gx *def = gx_alt2(a, body, gx_empty(a));
        if (!def)
            return DSA_NOMEM;
        g->rules[r].def = def;
        prev = gx_ref(a, r);
        if (!prev)
            return DSA_NOMEM;
    }
    return evec_push(e, GE_REF, prev->rule);
}

static dsa_err lower_into(dsa_gram *g, gx_arena *a, const gx *x, evec *e, int depth)
{
    dsa_err err = DSA_OK;
    if (depth > 10 * GRAM_DEPTH_MAX)
        return dsa_fail(DSA_RANGE, "the grammar nests too deeply");
    switch (x->kind) {
    case GX_EMPTY:
        return DSA_OK;
    case GX_BYTES:
        for (size_t i = 0; i < x->len && !err; i++)
            err = push_range(g, e, (uint8_t)x->bytes[i], (uint8_t)x->bytes[i]);
        return err;
    case GX_CLASS:
        return lower_class(g, x, e);
    case GX_SEQ:
        for (int i = 0; i < x->n && !err; i++)
            err = lower_into(g, a, x->kids[i], e, depth + 1);
        return err;
    case GX_ALT:
        if (x->n == 1)
            return lower_into(g, a, x->kids[0], e, depth + 1);
        return defer_rule(g, (gx *)x, "alt", e);
    case GX_REP:
        return lower_rep(g, a, x, e, depth);
    case GX_REF:
        return evec_push(e, GE_REF, x->rule);
    }
    return DSA_INTERNAL;
}

dsa_err gram_lower(dsa_gram *g, gx_arena *a)
{
    if (a->oom)
        return DSA_NOMEM;
    for (int r = 0; r < g->n_rules; r++) {
        gx *def = g->rules[r].def;
        if (g->rules[r].n_alts || (def && def->kind == GX_CLASS)) /* a char rule */
            continue;
        if (!def)
            return dsa_fail(DSA_FORMAT, "rule '%s' is not defined", g->rules[r].name);
        int n = def->kind == GX_ALT ? def->n : 1;
        for (int i = 0; i < n; i++) {
            evec e = {0};
            dsa_err err = lower_into(g, a, def->kind == GX_ALT ? def->kids[i] : def, &e, 0);
            if (!err)
                err = rule_add_alt(g, r, &e);
            free(e.v);
            if (err)
                return err;
        }
        if (a->oom)
            return DSA_NOMEM;
    }
    return DSA_OK;
}

/* ---- public ---- */
dsa_err dsa_gram_compile(const dsa_gram_params *p, dsa_gram **out)
{
    *out = NULL;
    dsa_gram *g = calloc(1, sizeof *g);
    if (!g)
        return DSA_NOMEM;
    gx_arena a = {0};
    dsa_err err;
    g->vocab = p->vocab;
    g->xgrammar_utf8 = p->xgrammar_utf8;
    g->refs = 1;
    pthread_mutex_init(&g->lock, NULL);
    switch (p->kind) {
    case DSA_GRAM_JSON_SCHEMA:
        err = gram_from_schema(g, &a, p->text, p->len, p->any_whitespace);
        break;
    case DSA_GRAM_JSON_OBJECT:
        err = gram_json_object(g, &a, p->any_whitespace);
        break;
    case DSA_GRAM_REGEX: {
        gx *x = NULL;
        err = gram_from_regex(g, &a, p->text, p->len, &x);
        if (!err) {
            g->root = gram_rule_new(g, "root");
            if (g->root < 0)
                err = DSA_NOMEM;
            else
                g->rules[g->root].def = x;
        }
        break;
    }
    case DSA_GRAM_CHOICE:
        err = gram_from_choice(g, &a, p->text, p->len);
        break;
    case DSA_GRAM_EBNF:
        err = gram_from_ebnf(g, &a, p->text, p->len);
        break;
    case DSA_GRAM_TOOLS:
        err = gram_from_tools(g, &a, p->text, p->len, p->any_whitespace);
        break;
    default:
        err = dsa_fail(DSA_INVAL, "unknown grammar kind");
    }
    if (!err)
        err = gram_lower(g, &a);
    if (!err)
        err = gram_match_init(g);
    gx_arena_free(&a);
    if (!err)
        gram_classify_ahead(g, GRAM_CLASSIFY_BUDGET);
    for (int r = 0; r < g->n_rules; r++)
        g->rules[r].def = NULL;
    if (err)
        goto fail;
    *out = g;
    return DSA_OK;
fail:
    dsa_gram_destroy(g);
    return err;
}

dsa_gram *dsa_gram_retain(dsa_gram *g)
{
    if (g)
        atomic_fetch_add(&g->refs, 1);
    return g;
}

void dsa_gram_destroy(dsa_gram *g)
{
    if (!g || atomic_fetch_sub(&g->refs, 1) != 1)
        return;
    gram_match_free(g);
    for (int r = 0; r < g->n_rules; r++) {
        free(g->rules[r].alts);
        free(g->rules[r].name);
    }
    free(g->rules);
    free(g->el);
    free(g->cls);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

static void dump_class(FILE *f, const uint64_t *b)
{
    fputc('[', f);
    for (int c = 0; c < 256; c++) {
        if (!(b[c >> 6] >> (c & 63) & 1))
            continue;
        int d = c;
        while (d + 1 < 256 && (b[(d + 1) >> 6] >> ((d + 1) & 63) & 1))
            d++;
        if (c >= 0x21 && c < 0x7F && c != '\\' && c != ']' && c != '-')
            fputc(c, f);
        else
            fprintf(f, "\\x%02X", c);
        if (d > c) {
            fputc('-', f);
            if (d >= 0x21 && d < 0x7F && d != '\\' && d != ']' && d != '-')
                fputc(d, f);
            else
                fprintf(f, "\\x%02X", d);
        }
        c = d;
    }
    fputc(']', f);
}

char *dsa_gram_dump(const dsa_gram *g)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f)
        return NULL;
    for (int r = 0; r < g->n_rules; r++) {
        fprintf(f, "%s%d ::=", g->rules[r].name, r);
        for (int i = 0; i < g->rules[r].n_alts; i++) {
            fprintf(f, i ? " |" : "");
            for (int p = g->rules[r].alts[i]; g->el[p].kind != GE_END; p++) {
                fputc(' ', f);
                if (g->el[p].kind == GE_REF)
                    fprintf(f, "%s%d", g->rules[g->el[p].arg].name, g->el[p].arg);
                else
                    dump_class(f, g->cls[g->el[p].arg]);
            }
            if (g->el[g->rules[r].alts[i]].kind == GE_END)
                fprintf(f, " \"\"");
        }
        fputc('\n', f);
    }
    fclose(f);
    return buf;
}
