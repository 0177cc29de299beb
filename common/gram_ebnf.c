/* gram_ebnf.c - GBNF grammars (vLLM's guided_grammar in xgrammar's EBNF
 * dialect): rules `name ::= expr`, a rule named `root`, alternatives `|`,
 * sequences, groups `( )`, strings "..." and character classes [...] with
 * \n \t \r \\ \" \] \xHH \uHHHH escapes, repetition * + ? {m} {m,} {m,n},
 * comments from '#' to the end of the line.  Lookahead assertions and
 * Lark syntax are refused.  Left recursion is found at compile time (the
 * matcher's closure of every rule) and refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/gram_internal.h"

typedef struct ep {
    dsa_gram *g;
    gx_arena *a;
    const char *s;
    size_t n, i;
    int depth;
    /* rule names -> ids */
    char **names;
    int *ids, *defined;
    int n_names, cap_names;
} ep;

static dsa_err ep_err(const ep *p, dsa_err code, const char *what)
{
    int line = 1;
    for (size_t k = 0; k < p->i && k < p->n; k++)
        line += p->s[k] == '\n';
    return dsa_fail(code, "grammar line %d: %s", line, what);
}

static void skip_ws(ep *p)
{
    while (p->i < p->n) {
        char c = p->s[p->i];
        if (c == '#') {
            while (p->i < p->n && p->s[p->i] != '\n')
                p->i++;
        } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            p->i++;
        } else {
            break;
        }
    }
}

static int name_char(char c, int first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
           (!first && ((c >= '0' && c <= '9') || c == '-' || c == '.'));
}

static size_t name_len(const ep *p, size_t at)
{
    size_t k = at;
    if (k >= p->n || !name_char(p->s[k], 1))
        return 0;
    while (k < p->n && name_char(p->s[k], 0))
        k++;
    return k - at;
}

/* 1 when a rule definition `name ::=` starts at the cursor. */
static int at_rule_start(ep *p)
{
    size_t k = name_len(p, p->i);
    if (!k)
        return 0;
    size_t j = p->i + k;
    while (j < p->n && (p->s[j] == ' ' || p->s[j] == '\t'))
        j++;
    return j + 3 <= p->n && !memcmp(p->s + j, "::=", 3);
}

static int rule_id(ep *p, const char *name, size_t len, int define)
{
    for (int k = 0; k < p->n_names; k++)
        if (strlen(p->names[k]) == len && !memcmp(p->names[k], name, len)) {
            if (define)
                p->defined[k]++;
            return p->ids[k];
        }
    if (p->n_names == p->cap_names) {
        int cap = p->cap_names ? p->cap_names * 2 : 16;
        char **a = gx_alloc(p->a, (size_t)cap * sizeof *a);
        int *b = gx_alloc(p->a, (size_t)cap * sizeof *b), *c = gx_alloc(p->a, (size_t)cap * sizeof *c);
        if (!a || !b || !c)
            return -1;
        if (p->n_names) {
            memcpy(a, p->names, (size_t)p->n_names * sizeof *a);
            memcpy(b, p->ids, (size_t)p->n_names * sizeof *b);
            memcpy(c, p->defined, (size_t)p->n_names * sizeof *c);
        }
        p->names = a, p->ids = b, p->defined = c, p->cap_names = cap;
    }
    char *copy = gx_alloc(p->a, len + 1);
    if (!copy)
        return -1;
    memcpy(copy, name, len);
    int id = gram_rule_new(p->g, copy);
    if (id < 0)
        return -1;
    p->names[p->n_names] = copy;
    p->ids[p->n_names] = id;
    p->defined[p->n_names++] = define;
    return id;
}

static int hexv(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
           c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* One character of a string or class (escapes decoded); 0 on error. */
static int ep_char(ep *p, uint32_t *cp)
{
    if (p->i >= p->n)
        return 0;
    unsigned char c = (unsigned char)p->s[p->i];
    if (c == '\\') {
        if (++p->i >= p->n)
            return 0;
        char e = p->s[p->i++];
        int digits = e == 'x' ? 2 : e == 'u' ? 4 : e == 'U' ? 8 : 0;
        if (digits) {
            uint32_t v = 0;
            for (int k = 0; k < digits; k++) {
                int h = p->i < p->n ? hexv(p->s[p->i]) : -1;
                if (h < 0)
                    return 0;
                v = v << 4 | (uint32_t)h;
                p->i++;
            }
            *cp = v;
            return v <= 0x10FFFF;
        }
        switch (e) {
        case 'n': *cp = '\n'; return 1;
        case 't': *cp = '\t'; return 1;
        case 'r': *cp = '\r'; return 1;
        case '0': *cp = 0; return 1;
        default: *cp = (unsigned char)e; return 1; /* \\ \" \] \- \[ ... */
        }
    }
    int len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 :
              (c & 0xF8) == 0xF0 ? 4 : 0;
    if (!len || p->i + (size_t)len > p->n)
        return 0;
    uint32_t v = len == 1 ? c : c & (0x7F >> len);
    for (int k = 1; k < len; k++)
        v = v << 6 | ((unsigned char)p->s[p->i + (size_t)k] & 63);
    p->i += (size_t)len;
    *cp = v;
    return 1;
}

static dsa_err ep_alt(ep *p, gx **out);

static dsa_err ep_primary(ep *p, gx **out)
{
    char c = p->s[p->i];
    if (c == '"') {
        p->i++;
        char buf[4096];
        size_t k = 0;
        gx_list parts = {0};
        while (p->i < p->n && p->s[p->i] != '"') {
            uint32_t cp;
            if (!ep_char(p, &cp))
                return ep_err(p, DSA_FORMAT, "bad character or escape in a string");
            if (k + 4 > sizeof buf) {
                if (gx_list_push(p->a, &parts, gx_bytes(p->a, buf, k)))
                    return DSA_NOMEM;
                k = 0;
            }
            if (cp < 0x80) buf[k++] = (char)cp;
            else if (cp < 0x800) { buf[k++] = (char)(0xC0 | cp >> 6); buf[k++] = (char)(0x80 | (cp & 63)); }
            else if (cp < 0x10000) { buf[k++] = (char)(0xE0 | cp >> 12); buf[k++] = (char)(0x80 | (cp >> 6 & 63)); buf[k++] = (char)(0x80 | (cp & 63)); }
            else { buf[k++] = (char)(0xF0 | cp >> 18); buf[k++] = (char)(0x80 | (cp >> 12 & 63)); buf[k++] = (char)(0x80 | (cp >> 6 & 63)); buf[k++] = (char)(0x80 | (cp & 63)); }
        }
        if (p->i >= p->n)
            return ep_err(p, DSA_FORMAT, "unterminated string");
        p->i++;
        if (gx_list_push(p->a, &parts, gx_bytes(p->a, buf, k)))
            return DSA_NOMEM;
        *out = parts.n == 1 ? parts.v[0] : gx_seq(p->a, parts.v, parts.n);
        return *out ? DSA_OK : DSA_NOMEM;
    }
    if (c == '[') {
        p->i++;
        int neg = p->i < p->n && p->s[p->i] == '^';
        p->i += (size_t)neg;
        uint32_t *r = NULL;
        int nr = 0, cap = 0;
        while (p->i < p->n && p->s[p->i] != ']') {
            uint32_t lo, hi;
            if (!ep_char(p, &lo)) {
                free(r);
                return ep_err(p, DSA_FORMAT, "bad character in a class");
            }
            hi = lo;
            if (p->i + 1 < p->n && p->s[p->i] == '-' && p->s[p->i + 1] != ']') {
                p->i++;
                if (!ep_char(p, &hi) || hi < lo) {
                    free(r);
                    return ep_err(p, DSA_FORMAT, "bad range in a class");
                }
            }
            if (nr == cap) {
                cap = cap ? cap * 2 : 16;
                uint32_t *t = realloc(r, (size_t)cap * 2 * sizeof *t);
                if (!t) {
                    free(r);
                    return DSA_NOMEM;
                }
                r = t;
            }
            r[2 * nr] = lo;
            r[2 * nr + 1] = hi;
            nr++;
        }
        if (p->i >= p->n) {
            free(r);
            return ep_err(p, DSA_FORMAT, "unterminated character class");
        }
        p->i++;
        *out = gx_class(p->a, r ? r : (uint32_t[]){0, 0}, nr, neg);
        free(r);
        return *out ? DSA_OK : DSA_NOMEM;
    }
    if (c == '(') {
        p->i++;
        if (p->i < p->n && p->s[p->i] == '=')
            return ep_err(p, DSA_UNSUPPORTED, "lookahead assertions are not supported");
        if (++p->depth > GRAM_DEPTH_MAX)
            return ep_err(p, DSA_RANGE, "groups nest too deeply");
        dsa_err err = ep_alt(p, out);
        if (err)
            return err;
        p->depth--;
        skip_ws(p);
        if (p->i >= p->n || p->s[p->i] != ')')
            return ep_err(p, DSA_FORMAT, "missing ')'");
        p->i++;
        return DSA_OK;
    }
    size_t k = name_len(p, p->i);
    if (k) {
        int id = rule_id(p, p->s + p->i, k, 0);
        if (id < 0)
            return DSA_NOMEM;
        p->i += k;
        *out = gx_ref(p->a, id);
        return *out ? DSA_OK : DSA_NOMEM;
    }
    return ep_err(p, DSA_FORMAT, "expected a string, a class, a group or a rule name");
}

static int ep_int(ep *p, int *v)
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

static dsa_err ep_seq(ep *p, gx **out)
{
    gx_list l = {0};
    for (;;) {
        skip_ws(p);
        if (p->i >= p->n || p->s[p->i] == '|' || p->s[p->i] == ')' || at_rule_start(p))
            break;
        gx *x = NULL;
        dsa_err err = ep_primary(p, &x);
        if (err)
            return err;
        for (;;) {
            if (p->i >= p->n)
                break;
            char q = p->s[p->i];
            int min, max;
            if (q == '*') min = 0, max = -1;
            else if (q == '+') min = 1, max = -1;
            else if (q == '?') min = 0, max = 1;
            else if (q == '{') {
                p->i++;
                skip_ws(p);
                if (!ep_int(p, &min))
                    return ep_err(p, DSA_FORMAT, "bad {m,n} repetition");
                skip_ws(p);
                max = min;
                if (p->i < p->n && p->s[p->i] == ',') {
                    p->i++;
                    skip_ws(p);
                    if (!ep_int(p, &max))
                        max = -1;
                    skip_ws(p);
                }
                if (p->i >= p->n || p->s[p->i] != '}' || (max >= 0 && max < min))
                    return ep_err(p, DSA_FORMAT, "bad {m,n} repetition");
                /* the '}' is consumed below */
            } else {
                break;
            }
            p->i++;
            if (!(x = gx_rep(p->a, x, min, max)))
                return DSA_NOMEM;
        }
        if (gx_list_push(p->a, &l, x))
            return DSA_NOMEM;
    }
    *out = l.n == 1 ? l.v[0] : gx_seq(p->a, l.v, l.n);
    return *out ? DSA_OK : DSA_NOMEM;
}

static dsa_err ep_alt(ep *p, gx **out)
{
    gx_list l = {0};
    for (;;) {
        gx *x = NULL;
        dsa_err err = ep_seq(p, &x);
        if (err)
            return err;
        if (gx_list_push(p->a, &l, x))
            return DSA_NOMEM;
        skip_ws(p);
        if (p->i < p->n && p->s[p->i] == '|') {
            p->i++;
            continue;
        }
        break;
    }
    *out = l.n == 1 ? l.v[0] : gx_alt(p->a, l.v, l.n);
    return *out ? DSA_OK : DSA_NOMEM;
}

dsa_err gram_from_ebnf(dsa_gram *g, gx_arena *a, const char *text, size_t len)
{
    ep p = {.g = g, .a = a, .s = text, .n = len};
    for (;;) {
        skip_ws(&p);
        if (p.i >= p.n)
            break;
        if (!at_rule_start(&p))
            return ep_err(&p, DSA_FORMAT, "expected a rule 'name ::= ...' (GBNF)");
        size_t k = name_len(&p, p.i);
        int id = rule_id(&p, p.s + p.i, k, 1);
        if (id < 0)
            return DSA_NOMEM;
        for (int j = 0; j < p.n_names; j++)
            if (p.ids[j] == id && p.defined[j] > 1)
                return ep_err(&p, DSA_FORMAT, "a rule is defined twice");
        p.i += k;
        while (p.s[p.i] != ':') /* at_rule_start saw blanks, then "::=" */
            p.i++;
        p.i += 3;
        gx *x = NULL;
        dsa_err err = ep_alt(&p, &x);
        if (err)
            return err;
        g->rules[id].def = x;
    }
    g->root = -1;
    for (int j = 0; j < p.n_names; j++) {
        if (!p.defined[j])
            return dsa_fail(DSA_FORMAT, "grammar: rule '%s' is used but not defined",
                            p.names[j]);
        if (!strcmp(p.names[j], "root"))
            g->root = p.ids[j];
    }
    if (g->root < 0)
        return dsa_fail(DSA_FORMAT, "grammar: no 'root' rule");
    g->check_left_recursion = 1;
    return DSA_OK;
}
