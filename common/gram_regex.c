/* gram_regex.c - regular expressions (the subset JSON Schema patterns and
 * vLLM's guided_regex use: literals, classes, escapes \d \w \s and their
 * negations, '.', groups (capturing, non-capturing, named), alternation,
 * * + ? {n} {n,} {n,m} with lazy/possessive suffixes ignored, ^ and $ at
 * the ends) into a grammar expression matched over the whole output.
 * Back-references, look-around and word boundaries have no grammar and are
 * refused.  No backtracking happens anywhere, so no pattern is
 * catastrophic; size is bounded by the lowering's element limit. */
#include <stdlib.h>
#include <string.h>

#include "common/gram_internal.h"

typedef struct rx {
    gx_arena *a;
    const uint8_t *s;
    size_t n, i;
    int depth;
} rx;

static dsa_err rx_err(const rx *p, dsa_err code, const char *what)
{
    return dsa_fail(code, "invalid regex at offset %zu: %s", p->i, what);
}

/* Decodes one UTF-8 code point; 0 on malformed input. */
static int rx_utf8(rx *p, uint32_t *cp)
{
    uint8_t c = p->s[p->i];
    int n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 :
            (c & 0xF8) == 0xF0 ? 4 : 0;
    if (!n || p->i + (size_t)n > p->n)
        return 0;
    uint32_t v = n == 1 ? c : c & (0x7F >> n);
    for (int k = 1; k < n; k++) {
        uint8_t d = p->s[p->i + (size_t)k];
        if ((d & 0xC0) != 0x80)
            return 0;
        v = v << 6 | (d & 63);
    }
    p->i += (size_t)n;
    *cp = v;
    return 1;
}

static const uint32_t R_DIGIT[] = {'0', '9'};
static const uint32_t R_WORD[] = {'0', '9', 'A', 'Z', '_', '_', 'a', 'z'};
static const uint32_t R_SPACE[] = {'\t', '\r', ' ', ' '};

static int hexval(uint8_t c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
           c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Class escape after '\': fills *ranges (static) / *neg for \d\w\s, or a
 * single code point.  Returns 1 for a set, 0 for a code point, -1 error. */
static int rx_escape(rx *p, const uint32_t **set, int *n_set, int *neg, uint32_t *cp,
                     dsa_err *err)
{
    if (p->i >= p->n) {
        *err = rx_err(p, DSA_FORMAT, "trailing backslash");
        return -1;
    }
    uint8_t c = p->s[p->i++];
    *neg = c == 'D' || c == 'W' || c == 'S';
    switch (c) {
    case 'd': case 'D': *set = R_DIGIT; *n_set = 1; return 1;
    case 'w': case 'W': *set = R_WORD; *n_set = 4; return 1;
    case 's': case 'S': *set = R_SPACE; *n_set = 2; return 1;
    case 'n': *cp = '\n'; return 0;
    case 't': *cp = '\t'; return 0;
    case 'r': *cp = '\r'; return 0;
    case 'f': *cp = '\f'; return 0;
    case 'v': *cp = '\v'; return 0;
    case '0': *cp = 0; return 0;
    case 'x': case 'u': {
        int digits = c == 'x' ? 2 : 4;
        uint32_t v = 0;
        if (p->i < p->n && p->s[p->i] == '{') { /* \x{...} / \u{...} */
            p->i++;
            digits = 0;
            while (p->i < p->n && p->s[p->i] != '}' && digits < 7) {
                int h = hexval(p->s[p->i++]);
                if (h < 0)
                    break;
                v = v << 4 | (uint32_t)h;
                digits++;
            }
            if (p->i >= p->n || p->s[p->i] != '}' || !digits || v > 0x10FFFF) {
                *err = rx_err(p, DSA_FORMAT, "bad \\x{...} escape");
                return -1;
            }
            p->i++;
        } else {
            for (int k = 0; k < digits; k++) {
                int h = p->i < p->n ? hexval(p->s[p->i]) : -1;
                if (h < 0) {
                    *err = rx_err(p, DSA_FORMAT, "bad hex escape");
                    return -1;
                }
                v = v << 4 | (uint32_t)h;
                p->i++;
            }
        }
        *cp = v;
        return 0;
    }
    case 'b': case 'B': case 'A': case 'z': case 'Z': case 'G':
        *err = rx_err(p, DSA_UNSUPPORTED, "anchors and word boundaries inside a pattern are "
                      "not supported");
        return -1;
    default:
        if (c >= '1' && c <= '9') {
            *err = rx_err(p, DSA_UNSUPPORTED, "back-references are not supported");
            return -1;
        }
        if (c >= 0x80) {
            p->i--;
            if (!rx_utf8(p, cp)) {
                *err = rx_err(p, DSA_FORMAT, "invalid UTF-8");
                return -1;
            }
            return 0;
        }
        *cp = c;
        return 0;
    }
}

/* Complement of a small sorted range list into out (room for n+1 pairs). */
static int complement(const uint32_t *r, int n, uint32_t *out)
{
    int k = 0;
    uint32_t next = 0;
    for (int i = 0; i < n; i++) {
        if (r[2 * i] > next) {
            out[2 * k] = next;
            out[2 * k + 1] = r[2 * i] - 1;
            k++;
        }
        next = r[2 * i + 1] + 1;
    }
    out[2 * k] = next;
    out[2 * k + 1] = 0x10FFFF;
    return k + 1;
}

typedef struct rlist {
    uint32_t *v;
    int n, cap;
} rlist;

static int rlist_add(rlist *l, uint32_t lo, uint32_t hi)
{
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 16;
        uint32_t *v = realloc(l->v, (size_t)cap * 2 * sizeof *v);
        if (!v)
            return -1;
        l->v = v;
        l->cap = cap;
    }
    l->v[2 * l->n] = lo;
    l->v[2 * l->n + 1] = hi;
    l->n++;
    return 0;
}

static dsa_err rx_class(rx *p, gx **out)
{
    rlist l = {0};
    dsa_err err = DSA_OK;
    int negate = 0, first = 1;
    if (p->i < p->n && p->s[p->i] == '^') {
        negate = 1;
        p->i++;
    }
    for (;;) {
        if (p->i >= p->n) {
            err = rx_err(p, DSA_FORMAT, "unterminated character class");
            goto out;
        }
        if (p->s[p->i] == ']' && !first) {
            p->i++;
            break;
        }
        first = 0;
        uint32_t lo, hi;
        if (p->s[p->i] == '\\') {
            p->i++;
            const uint32_t *set;
            int n_set, neg;
            int k = rx_escape(p, &set, &n_set, &neg, &lo, &err);
            if (k < 0)
                goto out;
            if (k == 1) {
                uint32_t tmp[10];
                if (neg) {
                    n_set = complement(set, n_set, tmp);
                    set = tmp;
                }
                for (int j = 0; j < n_set; j++)
                    if (rlist_add(&l, set[2 * j], set[2 * j + 1])) {
                        err = DSA_NOMEM;
                        goto out;
                    }
                continue;
            }
        } else if (!rx_utf8(p, &lo)) {
            err = rx_err(p, DSA_FORMAT, "invalid UTF-8");
            goto out;
        }
        hi = lo;
        if (p->i + 1 < p->n && p->s[p->i] == '-' && p->s[p->i + 1] != ']') {
            p->i++;
            if (p->s[p->i] == '\\') {
                p->i++;
                const uint32_t *set;
                int n_set, neg;
                int k = rx_escape(p, &set, &n_set, &neg, &hi, &err);
                if (k < 0)
                    goto out;
                if (k == 1) {
                    err = rx_err(p, DSA_FORMAT, "a class escape cannot end a range");
                    goto out;
                }
            } else if (!rx_utf8(p, &hi)) {
                err = rx_err(p, DSA_FORMAT, "invalid UTF-8");
                goto out;
            }
            if (hi < lo) {
                err = rx_err(p, DSA_FORMAT, "range out of order in character class");
                goto out;
            }
        }
        if (rlist_add(&l, lo, hi)) {
            err = DSA_NOMEM;
            goto out;
        }
    }
    *out = gx_class(p->a, l.v ? l.v : (uint32_t[]){0, 0}, l.n, negate);
    if (!*out)
        err = DSA_NOMEM;
out:
    free(l.v);
    return err;
}

static dsa_err rx_alt(rx *p, gx **out);

static dsa_err rx_atom(rx *p, gx **out)
{
    uint8_t c = p->s[p->i];
    dsa_err err = DSA_OK;
    if (c == '(') {
        p->i++;
        if (p->i < p->n && p->s[p->i] == '?') {
            p->i++;
            if (p->i < p->n && p->s[p->i] == ':') {
                p->i++;
            } else if (p->i + 1 < p->n && (p->s[p->i] == 'P' || p->s[p->i] == '<') &&
                       p->s[p->i + (p->s[p->i] == 'P')] == '<' && p->s[p->i + 1] != '=' &&
                       p->s[p->i + 1] != '!') {
                while (p->i < p->n && p->s[p->i] != '>')
                    p->i++;
                if (p->i >= p->n)
                    return rx_err(p, DSA_FORMAT, "unterminated group name");
                p->i++;
            } else {
                return rx_err(p, DSA_UNSUPPORTED, "look-around and inline flags are not "
                              "supported");
            }
        }
        if (++p->depth > GRAM_DEPTH_MAX)
            return rx_err(p, DSA_RANGE, "groups nest too deeply");
        if ((err = rx_alt(p, out)))
            return err;
        p->depth--;
        if (p->i >= p->n || p->s[p->i] != ')')
            return rx_err(p, DSA_FORMAT, "missing ')'");
        p->i++;
        return DSA_OK;
    }
    if (c == '[') {
        p->i++;
        return rx_class(p, out);
    }
    if (c == '.') {
        p->i++;
        /* any character, newlines included, as xgrammar reads '.' */
        *out = gx_class(p->a, (uint32_t[]){0, 0x10FFFF}, 1, 0);
        return *out ? DSA_OK : DSA_NOMEM;
    }
    if (c == '*' || c == '+' || c == '?' || c == '{')
        return rx_err(p, DSA_FORMAT, "nothing to repeat");
    uint32_t cp;
    if (c == '\\') {
        p->i++;
        const uint32_t *set;
        int n_set, neg;
        int k = rx_escape(p, &set, &n_set, &neg, &cp, &err);
        if (k < 0)
            return err;
        if (k == 1) {
            *out = gx_class(p->a, set, n_set, neg);
            return *out ? DSA_OK : DSA_NOMEM;
        }
    } else if (!rx_utf8(p, &cp)) {
        return rx_err(p, DSA_FORMAT, "invalid UTF-8");
    }
    *out = gx_class(p->a, (uint32_t[]){cp, cp}, 1, 0);
    return *out ? DSA_OK : DSA_NOMEM;
}

static int rx_int(rx *p, int *v)
{
    int k = 0;
    long x = 0;
    while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') {
        x = x * 10 + (p->s[p->i++] - '0');
        if (x > 100000)
            x = 100000;
        k++;
    }
    *v = (int)x;
    return k;
}

static dsa_err rx_seq(rx *p, gx **out)
{
    gx_list l = {0};
    while (p->i < p->n && p->s[p->i] != '|' && p->s[p->i] != ')') {
        if (p->s[p->i] == '^' || p->s[p->i] == '$') {
            /* Anchors: the whole output is matched anyway; only allowed at
             * the start / end of the pattern. */
            if ((p->s[p->i] == '^' && p->i != 0) || (p->s[p->i] == '$' && p->i + 1 != p->n))
                return rx_err(p, DSA_UNSUPPORTED, "anchors inside a pattern are not "
                              "supported");
            p->i++;
            continue;
        }
        gx *x = NULL;
        dsa_err err = rx_atom(p, &x);
        if (err)
            return err;
        while (p->i < p->n) {
            uint8_t q = p->s[p->i];
            int min, max;
            if (q == '*') {
                min = 0, max = -1;
                p->i++;
            } else if (q == '+') {
                min = 1, max = -1;
                p->i++;
            } else if (q == '?') {
                min = 0, max = 1;
                p->i++;
            } else if (q == '{') {
                size_t save = p->i++;
                if (!rx_int(p, &min)) { /* a literal '{' */
                    p->i = save;
                    break;
                }
                max = min;
                if (p->i < p->n && p->s[p->i] == ',') {
                    p->i++;
                    if (!rx_int(p, &max))
                        max = -1;
                }
                if (p->i >= p->n || p->s[p->i] != '}')
                    return rx_err(p, DSA_FORMAT, "bad {n,m} repetition");
                p->i++;
                if (max >= 0 && max < min)
                    return rx_err(p, DSA_FORMAT, "repetition {n,m} with m < n");
            } else {
                break;
            }
            if (p->i < p->n && (p->s[p->i] == '?' || p->s[p->i] == '+'))
                p->i++; /* lazy / possessive: same language */
            x = gx_rep(p->a, x, min, max);
            if (!x)
                return DSA_NOMEM;
        }
        if (gx_list_push(p->a, &l, x))
            return DSA_NOMEM;
    }
    *out = l.n == 1 ? l.v[0] : gx_seq(p->a, l.v, l.n);
    return *out ? DSA_OK : DSA_NOMEM;
}

static dsa_err rx_alt(rx *p, gx **out)
{
    gx_list l = {0};
    for (;;) {
        gx *x = NULL;
        dsa_err err = rx_seq(p, &x);
        if (err)
            return err;
        if (gx_list_push(p->a, &l, x))
            return DSA_NOMEM;
        if (p->i < p->n && p->s[p->i] == '|') {
            p->i++;
            continue;
        }
        break;
    }
    *out = l.n == 1 ? l.v[0] : gx_alt(p->a, l.v, l.n);
    return *out ? DSA_OK : DSA_NOMEM;
}

dsa_err gram_from_regex(dsa_gram *g, gx_arena *a, const char *re, size_t len, gx **out)
{
    (void)g;
    rx p = {.a = a, .s = (const uint8_t *)re, .n = len};
    dsa_err err = rx_alt(&p, out);
    if (err)
        return err;
    if (p.i != p.n)
        return rx_err(&p, DSA_FORMAT, "unbalanced ')'");
    return DSA_OK;
}
