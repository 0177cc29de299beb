/* gram_number.c - exact numeric ranges for JSON Schema's minimum, maximum,
 * exclusiveMinimum and exclusiveMaximum.
 *
 * Integers: the decimal strings of [lo, hi], digit range by digit range.
 * Numbers: "-"? I ("." F)? with I = 0 | [1-9][0-9]*, F any digits (no
 * exponent, as xgrammar writes a bounded number), whose value lies in the
 * range, built from the bounds' exact decimal expansions: a number is in
 * the range when its integer part is strictly between the bounds' integer
 * parts, or equal to one of them and its fraction digits compare as the
 * bound's do.  xgrammar 0.1.25 over-approximates both (see
 * docs/perf/structured.md); these languages are exact, so every output
 * validates. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/gram_internal.h"

static gx *cls1(gx_arena *a, uint32_t lo, uint32_t hi)
{
    return gx_class(a, (uint32_t[]){lo, hi}, 1, 0);
}

static gx *digits(gx_arena *a, int min) { return gx_rep(a, cls1(a, '0', '9'), min, -1); }

static gx *alts(gx_arena *a, gx_list *l)
{
    if (!l->n)
        return NULL; /* no string at all (callers treat NULL as empty) */
    return l->n == 1 ? l->v[0] : gx_alt(a, l->v, l->n);
}

/* ---- integers ---- */
/* All n-digit strings between a and b (same length, a <= b). */
static gx *range_same(gx_arena *ar, const char *a, const char *b, int n)
{
    if (n == 0)
        return gx_empty(ar);
    if (a[0] == b[0])
        return gx_seq2(ar, gx_bytes(ar, a, 1), range_same(ar, a + 1, b + 1, n - 1));
    char nines[24], zeros[24];
    memset(nines, '9', (size_t)n);
    memset(zeros, '0', (size_t)n);
    gx_list l = {0};
    int lo_full = !memcmp(a + 1, zeros, (size_t)n - 1);
    int hi_full = !memcmp(b + 1, nines, (size_t)n - 1);
    uint32_t mid_lo = (uint32_t)a[0] + !lo_full, mid_hi = (uint32_t)b[0] - !hi_full;
    if (!lo_full)
        gx_list_push(ar, &l, gx_seq2(ar, gx_bytes(ar, a, 1), range_same(ar, a + 1, nines, n - 1)));
    if (mid_lo <= mid_hi)
        gx_list_push(ar, &l, gx_seq2(ar, cls1(ar, mid_lo, mid_hi),
                                     gx_rep(ar, cls1(ar, '0', '9'), n - 1, n - 1)));
    if (!hi_full)
        gx_list_push(ar, &l, gx_seq2(ar, gx_bytes(ar, b, 1), range_same(ar, zeros, b + 1, n - 1)));
    return alts(ar, &l);
}

/* Non-negative integers in [lo, hi]; hi < 0: unbounded above. */
static gx *range_nonneg(gx_arena *ar, long long lo, long long hi)
{
    gx_list l = {0};
    char a[24], b[24];
    int dl = snprintf(a, sizeof a, "%lld", lo);
    int dh = hi < 0 ? dl : snprintf(b, sizeof b, "%lld", hi);
    for (int d = dl; d <= dh; d++) {
        long long p = 1;
        for (int k = 1; k < d; k++)
            p *= 10;
        long long x = d == dl ? lo : p, y = p * 10 - 1;
        if (hi >= 0 && d == dh)
            y = hi;
        snprintf(a, sizeof a, "%lld", x);
        snprintf(b, sizeof b, "%lld", y);
        gx_list_push(ar, &l, range_same(ar, a, b, d));
    }
    if (hi < 0) /* more digits than lo: [1-9][0-9]{dl,} */
        gx_list_push(ar, &l, gx_seq2(ar, cls1(ar, '1', '9'), digits(ar, dl)));
    return alts(ar, &l);
}

gx *gram_int_range(gx_arena *a, int has_lo, long long lo, int has_hi, long long hi)
{
    gx_list l = {0};
    if (!has_lo || lo < 0) { /* negatives: "-" then magnitudes in [max(1,-hi), -lo] */
        long long mlo = has_hi && hi < 0 ? -hi : 1;
        long long mhi = has_lo ? -lo : -1;
        gx_list_push(a, &l, gx_seq2(a, gx_str(a, "-"), range_nonneg(a, mlo, mhi)));
    }
    if (!has_hi || hi >= 0)
        gx_list_push(a, &l, range_nonneg(a, has_lo && lo > 0 ? lo : 0, has_hi ? hi : -1));
    return alts(a, &l);
}

/* ---- numbers ---- */
/* A bound's magnitude: integer digits (no leading zeros, "0" for none)
 * and fraction digits (no trailing zeros, "" for none). */
typedef struct dec {
    char ip[24];
    char fp[48];
} dec;

/* The shortest decimal that reads back as d (|d| <= 1e15, |d| >= 1e-30
 * or 0), as a plain magnitude. */
static int dec_of(double d, dec *out)
{
    char buf[64];
    d = fabs(d);
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, sizeof buf, "%.*e", p - 1, d);
        if (strtod(buf, NULL) == d)
            break;
    }
    /* buf: D[.DDD]e[+-]XX */
    char mant[24];
    int nm = 0, e = 0;
    const char *c = buf;
    for (; *c && *c != 'e'; c++)
        if (*c >= '0' && *c <= '9')
            mant[nm++] = *c;
    if (*c == 'e')
        e = atoi(c + 1);
    mant[nm] = 0;
    if (e > 15 || e < -30)
        return -1;
    /* the value is 0.mant x 10^(e+1) */
    int point = e + 1, ni = 0, nf = 0;
    for (int i = 0; i < point; i++)
        out->ip[ni++] = i < nm ? mant[i] : '0';
    for (int i = point; i < 0; i++)
        out->fp[nf++] = '0';
    for (int i = point > 0 ? point : 0; i < nm; i++)
        out->fp[nf++] = mant[i];
    while (nf && out->fp[nf - 1] == '0')
        nf--;
    out->fp[nf] = 0;
    int skip = 0;
    while (skip < ni - 1 && out->ip[skip] == '0')
        skip++;
    memmove(out->ip, out->ip + skip, (size_t)(ni - skip));
    ni -= skip;
    if (!ni)
        out->ip[ni++] = '0';
    out->ip[ni] = 0;
    return 0;
}

/* Digit strings D (at least one digit when need) with lo <= 0.D <= hi as
 * decimal fractions: lo/hi are fraction digits (no trailing zeros, ""
 * zero), hi NULL unbounded; *_inc say whether equality is allowed. */
static gx *frac_digits(gx_arena *a, const char *lo, int lo_inc, const char *hi, int hi_inc,
                       int need)
{
    if (!*lo && !hi) { /* anything, or anything above zero */
        if (lo_inc)
            return digits(a, need);
        return gx_seq3(a, digits(a, 0), cls1(a, '1', '9'), digits(a, 0)); /* 0*[1-9]\d* */
    }
    if (hi && !*hi) { /* at most zero: only zeros, when both ends allow zero */
        if (*lo || !lo_inc || !hi_inc)
            return NULL;
        return gx_rep(a, gx_str(a, "0"), need, -1);
    }
    gx_list l = {0};
    int end_ok = !*lo && lo_inc && (!hi || *hi || hi_inc);
    if (!need && end_ok)
        gx_list_push(a, &l, gx_empty(a));
    uint32_t l0 = *lo ? (uint32_t)*lo : '0';
    uint32_t h0 = hi ? (uint32_t)*hi : '9' + 1;
    const char *lo1 = *lo ? lo + 1 : "";
    if (l0 + 1 <= (h0 > '9' ? '9' : h0 - 1))
        gx_list_push(a, &l, gx_seq2(a, cls1(a, l0 + 1, h0 > '9' ? '9' : h0 - 1), digits(a, 0)));
    gx *x;
    if (l0 < h0 && (x = frac_digits(a, lo1, lo_inc, NULL, 0, 0)))
        gx_list_push(a, &l, gx_seq2(a, cls1(a, l0, l0), x));
    if (hi && h0 > l0 && (x = frac_digits(a, "", 1, hi + 1, hi_inc, 0)))
        gx_list_push(a, &l, gx_seq2(a, cls1(a, h0, h0), x));
    if (hi && h0 == l0 && (x = frac_digits(a, lo1, lo_inc, hi + 1, hi_inc, 0)))
        gx_list_push(a, &l, gx_seq2(a, cls1(a, l0, l0), x));
    return alts(a, &l);
}

/* ("." F)? with the fraction's value between lo and hi (as frac_digits). */
static gx *frac_part(gx_arena *a, const char *lo, int lo_inc, const char *hi, int hi_inc)
{
    gx_list l = {0};
    if (!*lo && lo_inc && (!hi || *hi || hi_inc))
        gx_list_push(a, &l, gx_empty(a));
    gx *f = frac_digits(a, lo, lo_inc, hi, hi_inc, 1);
    if (f)
        gx_list_push(a, &l, gx_seq2(a, gx_str(a, "."), f));
    return alts(a, &l);
}

/* Magnitudes I("."F)? between lo and hi (hi NULL: unbounded). */
static gx *magnitude(gx_arena *a, const dec *lo, int lo_inc, const dec *hi, int hi_inc)
{
    gx_list l = {0};
    long long ia = atoll(lo->ip), ib = hi ? atoll(hi->ip) : -1;
    gx *any_frac = gx_rep(a, gx_seq2(a, gx_str(a, "."), digits(a, 1)), 0, 1);
    gx *x;
    if (hi && ia == ib) {
        if ((x = frac_part(a, lo->fp, lo_inc, hi->fp, hi_inc)))
            gx_list_push(a, &l, gx_seq2(a, gx_str(a, lo->ip), x));
        return alts(a, &l);
    }
    if ((x = frac_part(a, lo->fp, lo_inc, NULL, 0)))
        gx_list_push(a, &l, gx_seq2(a, gx_str(a, lo->ip), x));
    if (!hi || ib - ia >= 2)
        gx_list_push(a, &l, gx_seq2(a, range_nonneg(a, ia + 1, hi ? ib - 1 : -1), any_frac));
    if (hi && (x = frac_part(a, "", 1, hi->fp, hi_inc)))
        gx_list_push(a, &l, gx_seq2(a, gx_str(a, hi->ip), x));
    return alts(a, &l);
}

dsa_err gram_num_range(gx_arena *a, int has_lo, double lo, int lo_inc, int has_hi, double hi,
                       int hi_inc, gx **out)
{
    dec dl = {"0", ""}, dh = {"0", ""}, zero = {"0", ""};
    if ((has_lo && dec_of(lo, &dl)) || (has_hi && dec_of(hi, &dh)))
        return dsa_fail(DSA_UNSUPPORTED, "number bounds beyond 1e15 or below 1e-30 in "
                        "magnitude are not supported");
    gx_list l = {0};
    gx *x;
    /* negatives: "-" then a magnitude m > 0 with -m in the range */
    if (!has_lo || lo < 0) {
        int neg_hi = has_hi && hi < 0;
        x = magnitude(a, neg_hi ? &dh : &zero, neg_hi ? hi_inc : 0, has_lo ? &dl : NULL, lo_inc);
        if (x)
            gx_list_push(a, &l, gx_seq2(a, gx_str(a, "-"), x));
    }
    if (!has_hi || hi > 0 || (hi == 0 && hi_inc)) {
        int pos_lo = has_lo && lo >= 0;
        x = magnitude(a, pos_lo ? &dl : &zero, pos_lo ? lo_inc : 1, has_hi ? &dh : NULL, hi_inc);
        if (x)
            gx_list_push(a, &l, x);
    }
    if (a->oom)
        return dsa_fail(DSA_NOMEM, "number range");
    if (!l.n)
        return dsa_fail(DSA_FORMAT, "no number satisfies the bounds");
    *out = alts(a, &l);
    return DSA_OK;
}
