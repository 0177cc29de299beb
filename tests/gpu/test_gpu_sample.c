/* test_gpu_sample.c - the sampler on FlashInfer's filters (kernels/cuda/
 * fi_sample.cu + cuda_sample.cu's draw; part of parity group "sample") at
 * DeepSeek-V3's vocabulary, 129,280, with batch 1 and 64:
 *   - greedy rows give argmax of the logits, the lowest index on ties;
 *   - batch invariance: every row of a mixed batch of 64 (greedy, top-k,
 *     top-p, min-p, their mix, no filter; distinct seeds and steps) gives
 *     the same id when the batch is permuted and when the row runs alone
 *     (batch 1): the draw depends on (seed, step) only;
 *   - distribution: one row's logits drawn 4096 times (64 rows x 64
 *     launches, seeds 0..4095) under top-k, top-p, min-p and all three,
 *     compared by chi-square with the filtered distribution as
 *     cpu_sample.c defines it (computed here in double: sort by logit then
 *     id, top-k, top-p over the renormalised rest, min-p against the top
 *     token); a drawn token the reference excludes fails at once.  The CPU
 *     backend's own draws are checked against the same distribution (so a
 *     wrong oracle fails too), and so are our old kernel's
 *     (DSA_CUDA_SAMPLER=own, the side-by-side).
 * The logits have 40 peaks (distinct values in [8, 12]) over a tail in
 * [-4, 0], so no filter boundary is tied and the reference is exact; each
 * case prints the op's time per launch. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tests/gpu/gpu_harness.h"

#define SV 129280
#define SB 64
#define N_PEAK 40
#define N_REP 64    /* launches of SB rows: 4096 draws per case */
#define N_CPU 16    /* CPU backend: 1024 draws per case */

static void sv_die(dsa_err err, const char *what)
{
    if (err) {
        fprintf(stderr, "FATAL: %s: %s (%s)\n", what, dsa_strerror(err), dsa_errmsg());
        exit(1);
    }
}

static double sv_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sv_sample(dsa_backend *be, const void *logits, const dsa_sample_row *rows,
                      int64_t n, int32_t *ids)
{
    dsa_sample_params p = {.out_ids = ids, .logits = logits, .rows = rows, .n_rows = n,
                           .vocab = SV};
    sv_die(be->ops->sample(be, &p), "sample");
}

/* A row: tail in [-4, 0], N_PEAK peaks at distinct values in [8, 12] at
 * random distinct positions. */
static void sv_row(gh *h, float *l)
{
    for (int64_t i = 0; i < SV; i++)
        l[i] = 2.0f * gh_uniform(h) - 2.0f;
    for (int j = 0; j < N_PEAK; j++) {
        int64_t at;
        do
            at = (int64_t)(gh_next(h) % SV);
        while (l[at] >= 8.0f);
        l[at] = 8.0f + 4.0f * (float)j / N_PEAK + 0.01f * (gh_uniform(h) + 1.0f);
    }
}

typedef struct sv_ref_c {
    float l;
    int32_t id;
} sv_ref_c;

static int sv_cmp(const void *a_, const void *b_)
{
    const sv_ref_c *a = a_, *b = b_;
    if (a->l != b->l)
        return a->l > b->l ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

/* prob[SV]: cpu_sample.c's filtered distribution of row r over l. */
static void sv_reference(const float *l, const dsa_sample_row *r, double *prob)
{
    sv_ref_c *c = malloc(sizeof *c * SV);
    for (int64_t i = 0; i < SV; i++)
        c[i] = (sv_ref_c){l[i], (int32_t)i};
    qsort(c, SV, sizeof *c, sv_cmp);
    double *e = malloc(sizeof *e * SV);
    for (int64_t i = 0; i < SV; i++)
        e[i] = exp(((double)c[i].l - c[0].l) / r->temperature);
    int64_t n = r->top_k > 0 && r->top_k < SV ? r->top_k : SV;
    double z = 0.0;
    for (int64_t i = 0; i < n; i++)
        z += e[i];
    if (r->top_p < 1.0f) {
        double cum = 0.0;
        for (int64_t i = 0; i < n; i++) {
            cum += e[i];
            if (cum >= (double)r->top_p * z) {
                n = i + 1;
                break;
            }
        }
    }
    if (r->min_p > 0.0f) {
        int64_t i = 1;
        while (i < n && e[i] >= (double)r->min_p * e[0])
            i++;
        n = i;
    }
    memset(prob, 0, sizeof *prob * SV);
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += e[i];
    for (int64_t i = 0; i < n; i++)
        prob[c[i].id] = e[i] / s;
    free(c);
    free(e);
}

/* Pearson's chi-square of counts against prob (bins with expectation < 5
 * pooled into one); *outside gets the draws the reference gives 0. */
static double sv_chi2(const int32_t *ids, int64_t n, const double *prob, int *df,
                      int64_t *outside)
{
    double *cnt = calloc(SV, sizeof *cnt);
    *outside = 0;
    for (int64_t i = 0; i < n; i++) {
        cnt[ids[i]] += 1.0;
        *outside += prob[ids[i]] <= 0.0;
    }
    double chi = 0.0, pool_o = 0.0, pool_e = 0.0;
    int bins = 0;
    for (int64_t v = 0; v < SV; v++) {
        double ex = prob[v] * (double)n;
        if (ex <= 0.0)
            continue;
        if (ex < 5.0) {
            pool_o += cnt[v], pool_e += ex;
            continue;
        }
        chi += (cnt[v] - ex) * (cnt[v] - ex) / ex;
        bins++;
    }
    if (pool_e > 0.0)
        chi += (pool_o - pool_e) * (pool_o - pool_e) / pool_e, bins++;
    *df = bins > 1 ? bins - 1 : 1;
    free(cnt);
    return chi;
}

/* The chi-square value exceeded with probability 1e-4 (Wilson-Hilferty). */
static double sv_chi2_crit(int df)
{
    double k = 2.0 / (9.0 * df);
    double t = 1.0 - k + 3.719 * sqrt(k);
    return df * t * t * t;
}

static void sv_greedy(gh *h, const float *l, void *gl, int64_t n)
{
    dsa_sample_row rows[SB];
    int32_t ids[SB];
    for (int64_t r = 0; r < n; r++)
        rows[r] = (dsa_sample_row){.temperature = 0.0f, .top_p = 0.5f, .top_k = 3,
                                   .seed = (uint64_t)r, .step = 1};
    sv_sample(h->gpu, gl, rows, n, ids);
    int bad = 0;
    for (int64_t r = 0; r < n; r++) {
        const float *x = l + r * SV;
        int32_t best = 0;
        for (int64_t i = 1; i < SV; i++)
            if (x[i] > x[best])
                best = (int32_t)i;
        bad += ids[r] != best;
    }
    char shape[48], note[48];
    snprintf(shape, sizeof shape, "greedy B=%lld V=%d", (long long)n, SV);
    snprintf(note, sizeof note, "%d rows not argmax", bad);
    gh_report(h, "sample-fi", shape, note, bad, 0, bad == 0);
}

/* Every row of a mixed batch: the same id permuted and alone. */
static void sv_invariance(gh *h, const float *l)
{
    dsa_sample_row rows[SB], prow[SB];
    int perm[SB];
    for (int r = 0; r < SB; r++) {
        dsa_sample_row s = {.temperature = 0.9f, .top_p = 1.0f, .seed = 77 + 13 * (uint64_t)r,
                            .step = (uint64_t)r % 5};
        switch (r % 6) {
        case 0: s.temperature = 0.0f; break;
        case 1: s.top_k = 20; break;
        case 2: s.top_p = 0.8f; break;
        case 3: s.min_p = 0.05f; break;
        case 4: s.top_k = 30, s.top_p = 0.9f, s.min_p = 0.02f, s.temperature = 0.7f; break;
        default: s.temperature = 1.3f; break;
        }
        rows[r] = s;
        perm[r] = r;
    }
    for (int r = SB - 1; r > 0; r--) {
        int j = (int)(gh_next(h) % (uint64_t)(r + 1)), t = perm[r];
        perm[r] = perm[j], perm[j] = t;
    }
    float *pl = malloc(sizeof(float) * SB * SV);
    for (int r = 0; r < SB; r++) {
        prow[r] = rows[perm[r]];
        memcpy(pl + (int64_t)r * SV, l + (int64_t)perm[r] * SV, sizeof(float) * SV);
    }
    void *gl = gh_bytes(h, h->gpu, l, sizeof(float) * SB * SV);
    void *gp = gh_bytes(h, h->gpu, pl, sizeof(float) * SB * SV);
    int32_t a[SB], b[SB], one;
    sv_sample(h->gpu, gl, rows, SB, a);
    sv_sample(h->gpu, gp, prow, SB, b);
    int moved = 0, alone = 0;
    for (int r = 0; r < SB; r++)
        moved += b[r] != a[perm[r]];
    gh_free(h->gpu, gp);
    for (int r = 0; r < SB; r += 3) {
        void *g1 = gh_bytes(h, h->gpu, l + (int64_t)r * SV, sizeof(float) * SV);
        sv_sample(h->gpu, g1, &rows[r], 1, &one);
        alone += one != a[r];
        gh_free(h->gpu, g1);
    }
    char note[64];
    snprintf(note, sizeof note, "permuted differ %d, alone differ %d", moved, alone);
    gh_report(h, "sample-fi", "batch invariance B=64,1 V=129280", note, moved + alone, 0,
              moved == 0 && alone == 0);
    gh_free(h->gpu, gl);
    free(pl);
}

/* n_rep launches of SB copies of row l under r (seeds 0..), then
 * chi-square against the reference; which: label of the sampler. */
static void sv_dist(gh *h, dsa_backend *be, const char *which, const char *cname,
                    const float *l, const dsa_sample_row *r, const double *prob, int n_rep,
                    int quick)
{
    float *rep = malloc(sizeof(float) * SB * SV);
    for (int i = 0; i < SB; i++)
        memcpy(rep + (int64_t)i * SV, l, sizeof(float) * SV);
    void *bl = gh_bytes(h, be, rep, sizeof(float) * SB * SV);
    int64_t n = (int64_t)n_rep * SB;
    int32_t *ids = malloc(sizeof(int32_t) * n);
    dsa_sample_row rows[SB];
    double t0 = sv_now();
    for (int k = 0; k < n_rep; k++) {
        for (int i = 0; i < SB; i++) {
            rows[i] = *r;
            rows[i].seed = (uint64_t)(k * SB + i);
            rows[i].step = 3;
        }
        sv_sample(be, bl, rows, SB, ids + (int64_t)k * SB);
    }
    double ms = (sv_now() - t0) * 1e3 / n_rep;
    int df;
    int64_t outside;
    double chi = sv_chi2(ids, n, prob, &df, &outside);
    double crit = sv_chi2_crit(df);
    char shape[64], note[96];
    snprintf(shape, sizeof shape, "%s %s B=64", which, cname);
    snprintf(note, sizeof note, "n=%lld df=%d crit=%.1f out=%lld %.2fms", (long long)n, df, crit,
             (long long)outside, ms);
    if (quick)  /* still: no draw outside the reference's support */
        gh_report(h, "sample-dist", shape, note, (double)outside, 0, outside == 0);
    else
        gh_report(h, "sample-dist", shape, note, chi, crit, outside == 0 && chi <= crit);
    free(ids);
    free(rep);
    gh_free(be, bl);
}

void gh_group_fi_sample(gh *h)
{
    float *l = malloc(sizeof(float) * SB * SV);
    for (int r = 0; r < SB; r++)
        sv_row(h, l + (int64_t)r * SV);
    /* a tie for the maximum in row 0: the lower index must win */
    int32_t hi = 0, lo = -1;
    for (int64_t i = 1; i < SV; i++)
        if (l[i] > l[hi])
            hi = (int32_t)i;
    for (int64_t i = 0; i < hi && lo < 0; i++)
        if (l[i] < 8.0f)
            lo = (int32_t)i;
    if (lo >= 0)
        l[lo] = l[hi];
    void *gl = gh_bytes(h, h->gpu, l, sizeof(float) * SB * SV);
    sv_greedy(h, l, gl, 1);
    sv_greedy(h, l, gl, SB);
    gh_free(h->gpu, gl);
    sv_invariance(h, l);

    static const struct {
        const char *name;
        dsa_sample_row r;
    } cases[] = {
        {"top_k=20", {.temperature = 0.8f, .top_p = 1.0f, .top_k = 20}},
        {"top_p=0.7", {.temperature = 1.0f, .top_p = 0.7f}},
        {"min_p=0.05", {.temperature = 1.0f, .top_p = 1.0f, .min_p = 0.05f}},
        {"k30,p0.8,m0.02", {.temperature = 0.7f, .top_p = 0.8f, .min_p = 0.02f, .top_k = 30}},
    };
    /* under compute-sanitizer (tools/gpu/check.sh) one launch per case: the
     * kernels' memory accesses are what is checked there, the chi-square
     * has too few draws to mean anything and is not reported */
    int quick = getenv("DSA_GPU_SAMPLE_QUICK") != NULL;
    double *prob = malloc(sizeof *prob * SV);
    const float *row = l + SV; /* row 1: no tie */
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        sv_reference(row, &cases[c].r, prob);
        unsetenv("DSA_CUDA_SAMPLER");
        sv_dist(h, h->gpu, "fi", cases[c].name, row, &cases[c].r, prob, quick ? 1 : N_REP, quick);
        setenv("DSA_CUDA_SAMPLER", "own", 1);
        sv_dist(h, h->gpu, "own", cases[c].name, row, &cases[c].r, prob, quick ? 1 : N_REP,
                quick);
        unsetenv("DSA_CUDA_SAMPLER");
        if (!quick)
            sv_dist(h, h->cpu, "cpu", cases[c].name, row, &cases[c].r, prob, N_CPU, 0);
    }
    free(prob);
    free(l);
}
