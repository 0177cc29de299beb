/* cpu_sample.c - token sampling from logits (backend.h dsa_sample_params).
 *
 * Per row: temperature <= 0 is greedy (argmax, lowest index on ties).
 * Otherwise, with e_i = exp((l_i - l_max) / T) (unnormalised softmax):
 *   1. top-k: keep the k largest logits (ties: lowest index);
 *   2. top-p: over the probabilities renormalised after top-k, keep the
 *      smallest prefix (sorted by probability, then index) whose mass
 *      reaches top_p, at least one token;
 *   3. min-p: drop tokens with p < min_p * p_max;
 *   4. renormalise and draw u in [0,1) from splitmix64 of (seed, step).
 * Only the candidates are sorted: top-k uses a k-heap; top-p alone first
 * gathers the tokens above a probability cut that already hold enough
 * mass (lowering the cut until they do).  exp runs vectorised (a
 * polynomial of about 2 ulp, plenty for a probability).  out_logprobs is
 * the T = 1 log-softmax of the chosen token. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_internal.h"

#ifdef __AVX512F__
#include <immintrin.h>
#endif

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* Uniform double in [0, 1), a function of (seed, step) only. */
static double sample_uniform(uint64_t seed, uint64_t step)
{
    uint64_t z = splitmix64(splitmix64(seed) ^ step);
    return (double)(z >> 11) * 0x1.0p-53;
}

typedef struct cand {
    float l;        /* raw logit */
    int32_t id;
} cand;

/* Sort order: logit descending, then id ascending. */
static int cand_cmp(const void *a_, const void *b_)
{
    const cand *a = a_, *b = b_;
    if (a->l != b->l)
        return a->l > b->l ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

/* a ranks below b (heap root is the worst kept candidate). */
static inline int cand_worse(const cand *a, const cand *b)
{
    return a->l < b->l || (a->l == b->l && a->id > b->id);
}

static void heap_sift(cand *h, int64_t n, int64_t i)
{
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= n)
            return;
        if (c + 1 < n && cand_worse(&h[c + 1], &h[c]))
            c++;
        if (!cand_worse(&h[c], &h[i]))
            return;
        cand t = h[c];
        h[c] = h[i];
        h[i] = t;
        i = c;
    }
}

#ifdef __AVX512F__
/* e^x for F32 lanes: x = n ln2 + r, |r| <= ln2/2, degree-6 polynomial,
 * 2^n applied by scalef (underflows cleanly to 0); about 2 ulp. */
static inline __m512 exp512(__m512 x)
{
    x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
    x = _mm512_min_ps(x, _mm512_set1_ps(88.7f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504089f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), r);
    __m512 y = _mm512_set1_ps(1.0f / 720.0f);
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.0f / 120.0f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.0f / 24.0f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.0f / 6.0f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(0.5f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.0f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(y, n);
}
#endif

static float row_max(const float *l, int64_t V)
{
    int64_t i = 0;
    float m = l[0];
#ifdef __AVX512F__
    __m512 mv = _mm512_set1_ps(l[0]);
    for (; i + 16 <= V; i += 16)
        mv = _mm512_max_ps(mv, _mm512_loadu_ps(l + i));
    m = _mm512_reduce_max_ps(mv);
#endif
    for (; i < V; i++)
        m = l[i] > m ? l[i] : m;
    return m;
}

static int32_t argmax_row(const float *l, int64_t V)
{
    float m = row_max(l, V);
    for (int64_t i = 0; i < V; i++)
        if (l[i] == m)
            return (int32_t)i;
    return 0; /* all NaN */
}

/* e[i] = exp((l[i] - lmax) * invT); returns the sum in double. */
static double exp_row(const float *l, int64_t V, float lmax, float invT, float *e)
{
    double z = 0.0;
    int64_t i = 0;
#ifdef __AVX512F__
    __m512 mv = _mm512_set1_ps(lmax), tv = _mm512_set1_ps(invT);
    for (; i + 256 <= V; i += 256) {
        __m512 acc = _mm512_setzero_ps();
        for (int64_t k = i; k < i + 256; k += 16) {
            __m512 v = exp512(_mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(l + k), mv), tv));
            if (e)
                _mm512_storeu_ps(e + k, v);
            acc = _mm512_add_ps(acc, v);
        }
        z += (double)_mm512_reduce_add_ps(acc);
    }
#endif
    for (; i < V; i++) {
        float v = expf((l[i] - lmax) * invT);
        if (e)
            e[i] = v;
        z += v;
    }
    return z;
}

/* The last candidate of the smallest prefix (in cand_cmp order) whose mass
 * reaches target, found by quickselect on mass: O(n) expected, and only
 * the final small range is sorted.  c is reordered. */
static cand top_p_boundary(cand *c, int64_t n, const float *e, double target)
{
    int64_t lo = 0, hi = n;
    double acc = 0.0;
    while (hi - lo > 32) {
        int64_t mid = lo + (hi - lo) / 2;
        /* median of three as pivot, moved to hi - 1 */
        cand *a = &c[lo], *m = &c[mid], *z = &c[hi - 1], t;
        if (cand_worse(a, m)) { t = *a; *a = *m; *m = t; }
        if (cand_worse(m, z)) { t = *m; *m = *z; *z = t; }
        if (cand_worse(a, m)) { t = *a; *a = *m; *m = t; }
        t = *m; *m = c[hi - 1]; c[hi - 1] = t;
        cand pv = c[hi - 1];
        int64_t st = lo;
        double mass = 0.0;
        for (int64_t i = lo; i < hi - 1; i++)
            if (cand_worse(&pv, &c[i])) {
                t = c[i]; c[i] = c[st]; c[st] = t;
                mass += e[c[st].id];
                st++;
            }
        t = c[st]; c[st] = c[hi - 1]; c[hi - 1] = t;
        if (acc + mass >= target) {
            hi = st;
        } else if (acc + mass + e[c[st].id] >= target) {
            return c[st];
        } else {
            acc += mass + e[c[st].id];
            lo = st + 1;
        }
    }
    if (lo >= hi)
        return c[lo > 0 ? lo - 1 : 0];
    qsort(c + lo, (size_t)(hi - lo), sizeof *c, cand_cmp);
    for (int64_t i = lo; i < hi; i++) {
        acc += e[c[i].id];
        if (acc >= target)
            return c[i];
    }
    return c[hi - 1];
}

/* Samples one row; c ([V] candidates) and e ([V] floats) are scratch.
 * Returns the id; *z1 gets the T = 1 partition sum when it came for free
 * (temperature 1), else stays negative. */
static int32_t sample_row(const float *l, int64_t V, const dsa_sample_row *r, cand *c, float *e,
                          float lmax, double *z1)
{
    if (r->temperature <= 0.0f || V == 1)
        return argmax_row(l, V);
    float invT = 1.0f / r->temperature;
    int use_k = r->top_k > 0 && r->top_k < V;
    int use_p = r->top_p < 1.0f;
    int use_min = r->min_p > 0.0f;
    int64_t n = 0;
    double z_ref = 0.0; /* the mass top_p is a fraction of */
    double u = sample_uniform(r->seed, r->step);

    if (use_k) {
        int64_t k = r->top_k;
        for (int64_t i = 0; i < V; i++) {
#ifdef __AVX512F__
            /* Skip 16 logits at once when none beats the heap's worst. */
            if (n == k && (i & 15) == 0 && i + 16 <= V) {
                if (!_mm512_cmp_ps_mask(_mm512_loadu_ps(l + i), _mm512_set1_ps(c[0].l), _CMP_GT_OQ)) {
                    i += 15;
                    continue;
                }
            }
#endif
            cand x = {l[i], (int32_t)i};
            if (n < k) {
                int64_t j = n++;
                c[j] = x;
                while (j > 0 && cand_worse(&c[j], &c[(j - 1) / 2])) {
                    cand t = c[j];
                    c[j] = c[(j - 1) / 2];
                    c[(j - 1) / 2] = t;
                    j = (j - 1) / 2;
                }
            } else if (cand_worse(&c[0], &x)) {
                c[0] = x;
                heap_sift(c, n, 0);
            }
        }
        qsort(c, (size_t)n, sizeof *c, cand_cmp);
        for (int64_t i = 0; i < n; i++)
            z_ref += e[c[i].id] = expf((c[i].l - lmax) * invT);
    } else {
        double z = exp_row(l, V, lmax, invT, e);
        if (r->temperature == 1.0f)
            *z1 = z;
        z_ref = z;
        if (!use_p && !use_min) {
            /* No filter: draw over the whole vocabulary in index order. */
            double target = u * z, cum = 0.0;
            int64_t last = 0;
            for (int64_t i = 0; i < V; i++) {
                if (e[i] > 0.0f)
                    last = i;
                cum += e[i];
                if (target < cum)
                    return (int32_t)i;
            }
            return (int32_t)last;
        }
        /* Top-p boundary: gather e_i >= cut (lowering the cut until the
         * gathered prefix holds enough mass), then select by mass. */
        cand b = {0};
        if (use_p) {
            static const float cuts[] = {1e-3f, 1e-6f, 1e-10f, 0.0f};
            for (size_t ci = 0; ci < sizeof cuts / sizeof cuts[0]; ci++) {
                double mass = 0.0;
                n = 0;
                for (int64_t i = 0; i < V; i++) {
                    if (e[i] >= cuts[ci]) {
                        c[n].l = l[i];
                        c[n++].id = (int32_t)i;
                        mass += e[i];
                    }
                }
                if (mass >= (double)r->top_p * z || cuts[ci] <= 0.0f)
                    break;
            }
            b = top_p_boundary(c, n, e, (double)r->top_p * z);
        }
        /* Draw over the kept tokens in index order. */
        float lim = use_min ? r->min_p : 0.0f; /* e of the top token is exp(0) = 1 */
#define KEPT(i) ((!use_p || l[i] > b.l || (l[i] == b.l && (i) <= b.id)) && e[i] >= lim)
        double sum = 0.0;
        int64_t first = -1, last = -1;
        for (int64_t i = 0; i < V; i++)
            if (KEPT(i)) {
                sum += e[i];
                first = first < 0 ? i : first;
                last = i;
            }
        if (first < 0)
            return argmax_row(l, V);
        double target = u * sum, cum = 0.0;
        for (int64_t i = first; i <= last; i++)
            if (KEPT(i)) {
                cum += e[i];
                if (target < cum)
                    return (int32_t)i;
            }
        return (int32_t)last;
#undef KEPT
    }

    int64_t keep = n;
    if (use_p) {
        double target = (double)r->top_p * z_ref, cum = 0.0;
        for (int64_t i = 0; i < n; i++) {
            cum += e[c[i].id];
            if (cum >= target) {
                keep = i + 1;
                break;
            }
        }
    }
    if (use_min) {
        double lim = (double)r->min_p * e[c[0].id];
        int64_t i = 1;
        while (i < keep && e[c[i].id] >= lim)
            i++;
        keep = i;
    }
    if (keep < 1)
        keep = 1;
    double sum = 0.0;
    for (int64_t i = 0; i < keep; i++)
        sum += e[c[i].id];
    double target = u * sum, cum = 0.0;
    for (int64_t i = 0; i < keep; i++) {
        cum += e[c[i].id];
        if (target < cum)
            return c[i].id;
    }
    return c[keep - 1].id;
}

typedef struct sample_job {
    dsa_cpu_backend *be;
    const dsa_sample_params *p;
    _Atomic int err;
} sample_job;

static void sample_range(void *ctx, int64_t b, int64_t e, int tid)
{
    sample_job *j = ctx;
    const dsa_sample_params *p = j->p;
    dsa_cpu_scratch *s = &j->be->scratch[tid];
    cand *c = (cand *)dsa_cpu_scratch_get(s, DSA_CPU_SCR_PANEL, (size_t)p->vocab * 2);
    float *ebuf = dsa_cpu_scratch_get(s, DSA_CPU_SCR_TMP, (size_t)p->vocab);
    if (!c || !ebuf) {
        dsa_cpu_err_set(&j->err, DSA_NOMEM);
        return;
    }
    for (int64_t r = b; r < e; r++) {
        const float *l = p->logits + r * p->vocab;
        float lmax = row_max(l, p->vocab);
        double z1 = -1.0;
        int32_t id = sample_row(l, p->vocab, &p->rows[r], c, ebuf, lmax, &z1);
        p->out_ids[r] = id;
        if (p->out_logprobs) {
            if (z1 < 0.0)
                z1 = exp_row(l, p->vocab, lmax, 1.0f, NULL);
            p->out_logprobs[r] = (float)((double)l[id] - (double)lmax - log(z1));
        }
    }
}

dsa_err dsa_cpu_sample(dsa_backend *be_, const dsa_sample_params *p)
{
    dsa_cpu_backend *be = dsa_cpu_be(be_);
    if (p->n_rows <= 0)
        return DSA_OK;
    if (p->vocab <= 0)
        return dsa_fail(DSA_INVAL, "sample: vocab %lld", (long long)p->vocab);
    sample_job j = {.be = be, .p = p};
    atomic_init(&j.err, DSA_OK);
    dsa_cpu_parallel_for(be, p->n_rows, 1, sample_range, &j);
    return (dsa_err)atomic_load(&j.err);
}

/* Logit controls (backend.h dsa_logit_ctl_params): the host reference,
 * one row at a time. */
dsa_err dsa_cpu_logit_ctl(dsa_backend *be, const dsa_logit_ctl_params *p)
{
    (void)be;
    for (int64_t r = 0; r < p->n_rows; r++)
        dsa_logit_ctl_row(p->logits + r * p->vocab, p->vocab, &p->rows[r]);
    return DSA_OK;
}

/* Structured-output masks (backend.h dsa_logit_mask_params): the host
 * reference, one row at a time. */
dsa_err dsa_cpu_mask(dsa_backend *be, const dsa_logit_mask_params *p)
{
    (void)be;
    if (p->n_rows > 0 && p->vocab <= 0)
        return dsa_fail(DSA_INVAL, "mask: vocab %lld", (long long)p->vocab);
    for (int64_t r = 0; r < p->n_rows; r++)
        dsa_logit_mask_row(p->logits + r * p->vocab, p->vocab, &p->rows[r]);
    return DSA_OK;
}
