/* test_spec_dist.c - speculative sampling keeps the target distribution.
 *
 * On the random tests/data/golden/tiny-mtp checkpoint at temperature 1,
 * with allowed_token_ids narrowing the vocabulary to 8 ids (so drafts are
 * often right), N_SAMPLES independent sequences (one seed each) generate
 * two tokens after the same prompt twice over:
 *   without drafts: a prefill step samples y1, a decode step y2;
 *   with drafts:    the prefill step carries drafts (D, D) to verify
 *                   (D the most frequent y1 of the first run);
 *                   y1 comes from its first row; when y1 == D1 the draft
 *                   is accepted and y2 comes from the second row (with the
 *                   penalties counting D1 as generated), otherwise a plain
 *                   step samples y2.
 * The joint counts of (y1, y2) of the two runs (different seeds) are
 * compared by a chi-square test of homogeneity; p must exceed 0.01.  Two
 * configurations: plain temperature 1, and top_p 0.95 with frequency,
 * presence and repetition penalties.  The test also checks that drafts
 * were accepted often enough to matter. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "tests/support.h"
#include "worker/step.h"

#define N_SAMPLES 20000
#define BATCH 500
#define N_ALLOWED 8
#define BS 4
#define BLOCKS_PER_SEQ 4

static const int32_t prompt[] = {5, 9, 11, 13, 17};
#define N_PROMPT 5
static const int32_t allowed[N_ALLOWED] = {40, 41, 42, 43, 44, 45, 46, 47};

static dsa_worker_step *worker(int k)
{
    char *dir = dsa_test_data_path("golden/tiny-mtp");
    dsa_worker_step_params p = {.model_dir = dir, .n_threads = 1, .block_size = BS,
                                .max_model_len = BS * BLOCKS_PER_SEQ,
                                .n_blocks = BATCH * BLOCKS_PER_SEQ, .spec_tokens = k};
    dsa_worker_step *ws = NULL;
    dsa_log_setup(DSA_LOG_WARN, 0);
    cr_assert_eq(dsa_worker_step_create(&p, &ws), DSA_OK, "%s", dsa_errmsg());
    free(dir);
    return ws;
}

static int slot_of(int32_t id)
{
    for (int i = 0; i < N_ALLOWED; i++)
        if (allowed[i] == id)
            return i;
    cr_assert_fail("token %d outside allowed_token_ids", id);
    return 0;
}

/* Counts [N_ALLOWED * N_ALLOWED] of (y1, y2); seeds from seed0. */
static void sample(const dsa_sampling *sp0, int spec, const int32_t *drafts, uint64_t seed0,
                   uint64_t *counts, uint64_t *n_accepted)
{
    dsa_worker_step *ws = worker(spec ? 2 : 0);
    static int32_t toks[BATCH][8], blocks[BATCH][BLOCKS_PER_SEQ];
    static dsa_step_seq seqs[BATCH];
    static uint64_t finished[BATCH];
    static int32_t y1[BATCH];
    static int need2[BATCH];
    uint64_t step_id = 0;
    int n_fin = 0;
    for (int base = 0; base < N_SAMPLES; base += BATCH) {
        for (int i = 0; i < BATCH; i++) {
            memcpy(toks[i], prompt, sizeof prompt);
            toks[i][N_PROMPT] = drafts[0];
            toks[i][N_PROMPT + 1] = drafts[1];
            for (int b = 0; b < BLOCKS_PER_SEQ; b++)
                blocks[i][b] = i * BLOCKS_PER_SEQ + b;
            dsa_sampling sp = *sp0;
            sp.seed = seed0 + (uint64_t)(base + i);
            dsa_step_seq *q = &seqs[i];
            memset(q, 0, sizeof *q);
            q->seq_id = (uint64_t)(base + i) + 1;
            q->n_prompt = N_PROMPT;
            q->n_tokens = N_PROMPT + 2 * spec;
            q->tokens = toks[i];
            q->n_blocks = BLOCKS_PER_SEQ;
            q->blocks = blocks[i];
            q->sample = 1;
            q->sp = sp;
            q->n_allowed = N_ALLOWED;
            q->allowed = (int32_t *)allowed;
            q->next_token = -1;
            q->n_draft = 2 * spec;
            q->spec_k = spec ? 2 : 0;
        }
        dsa_step_plan p = {.step_id = ++step_id, .n_seqs = BATCH, .seqs = seqs,
                           .n_finished = n_fin, .finished = finished};
        dsa_step_result r;
        cr_assert_eq(dsa_worker_step_run(ws, &p, &r), DSA_OK);
        cr_assert_eq(r.status, DSA_OK, "%s", r.message);
        int n2 = 0;
        for (int i = 0; i < BATCH; i++) {
            y1[i] = r.seqs[i].token;
            need2[i] = r.seqs[i].n_extra == 0;
            if (!need2[i]) {
                counts[slot_of(y1[i]) * N_ALLOWED + slot_of(r.seqs[i].extra[0].token)]++;
                ++*n_accepted;
            }
            n2 += need2[i];
        }
        dsa_step_result_free(&r);
        /* a plain step for the sequences whose first draft was rejected */
        static dsa_step_seq s2[BATCH];
        int m = 0;
        for (int i = 0; i < BATCH; i++) {
            if (!need2[i])
                continue;
            toks[i][N_PROMPT] = y1[i];
            s2[m] = seqs[i];
            s2[m].pos = N_PROMPT;
            s2[m].n_tokens = 1;
            s2[m].tokens = toks[i] + N_PROMPT;
            s2[m].step = 1;
            s2[m].n_draft = 0;
            s2[m].spec_k = 0;
            m++;
        }
        for (int i = 0; i < BATCH; i++)
            finished[i] = seqs[i].seq_id;
        n_fin = BATCH;
        if (m == 0)
            continue;
        p = (dsa_step_plan){.step_id = ++step_id, .n_seqs = m, .seqs = s2};
        cr_assert_eq(dsa_worker_step_run(ws, &p, &r), DSA_OK);
        cr_assert_eq(r.status, DSA_OK, "%s", r.message);
        for (int q = 0, i = 0; i < BATCH; i++) {
            if (!need2[i])
                continue;
            counts[slot_of(y1[i]) * N_ALLOWED + slot_of(r.seqs[q].token)]++;
            q++;
        }
        dsa_step_result_free(&r);
        (void)n2;
    }
    dsa_worker_step_destroy(ws);
}

/* Upper tail of chi-square with k degrees of freedom (regularised upper
 * incomplete gamma Q(k/2, x/2), series and continued fraction as in
 * Numerical Recipes' gammq). */
static double chi2_sf(double x, double k)
{
    double a = k / 2, z = x / 2;
    if (z <= 0)
        return 1;
    double lg = lgamma(a);
    if (z < a + 1) {
        double sum = 1 / a, term = sum;
        for (int n = 1; n < 1000; n++) {
            term *= z / (a + n);
            sum += term;
            if (term < sum * 1e-15)
                break;
        }
        return 1 - sum * exp(-z + a * log(z) - lg);
    }
    double b = z + 1 - a, c = 1e300, d = 1 / b, h = d;
    for (int i = 1; i < 1000; i++) {
        double an = -i * (i - a);
        b += 2;
        d = an * d + b;
        if (fabs(d) < 1e-300)
            d = 1e-300;
        c = b + an / c;
        if (fabs(c) < 1e-300)
            c = 1e-300;
        d = 1 / d;
        double del = d * c;
        h *= del;
        if (fabs(del - 1) < 1e-15)
            break;
    }
    return exp(-z + a * log(z) - lg) * h;
}

static void compare(const dsa_sampling *sp, const char *what)
{
    static uint64_t a[N_ALLOWED * N_ALLOWED], b[N_ALLOWED * N_ALLOWED];
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);
    uint64_t acc_a = 0, acc_b = 0;
    int32_t drafts[2] = {allowed[0], allowed[1]};
    sample(sp, 0, drafts, 1, a, &acc_a);
    /* drafts: the likeliest y1 twice, so that the second row samples right
     * after an accepted draft that its penalties must count */
    int best = 0;
    for (int c = 0; c < N_ALLOWED * N_ALLOWED; c++)
        if (a[c] > a[best])
            best = c;
    drafts[0] = drafts[1] = allowed[best / N_ALLOWED];
    sample(sp, 1, drafts, 1000003, b, &acc_b);
    /* chi-square of homogeneity over cells with enough expected counts */
    double chi = 0, na = 0, nb = 0;
    for (int c = 0; c < N_ALLOWED * N_ALLOWED; c++) {
        na += (double)a[c];
        nb += (double)b[c];
    }
    cr_assert_eq(na, N_SAMPLES);
    cr_assert_eq(nb, N_SAMPLES);
    int cells = 0;
    double rest_a = 0, rest_b = 0;
    for (int c = 0; c < N_ALLOWED * N_ALLOWED; c++) {
        double t = (double)a[c] + (double)b[c];
        if (t < 10) { /* pooled */
            rest_a += (double)a[c];
            rest_b += (double)b[c];
            continue;
        }
        double ea = t * na / (na + nb), eb = t * nb / (na + nb);
        chi += (a[c] - ea) * (a[c] - ea) / ea + (b[c] - eb) * (b[c] - eb) / eb;
        cells++;
    }
    if (rest_a + rest_b >= 10) {
        double t = rest_a + rest_b, ea = t * na / (na + nb), eb = t * nb / (na + nb);
        chi += (rest_a - ea) * (rest_a - ea) / ea + (rest_b - eb) * (rest_b - eb) / eb;
        cells++;
    }
    double p = chi2_sf(chi, cells - 1);
    cr_log_info("%s: %d cells, chi2 %.1f, p %.3f; drafts accepted in %.1f%% of %d sequences",
                what, cells, chi, p, 100.0 * (double)acc_b / N_SAMPLES, N_SAMPLES);
    cr_assert(cells >= 4, "%s: only %d cells", what, cells);
    cr_assert(acc_b > N_SAMPLES / 20, "%s: drafts accepted %llu times only", what,
              (unsigned long long)acc_b);
    cr_assert(p > 0.01, "%s: chi2 %.1f over %d cells, p = %.4g", what, chi, cells, p);
}

Test(spec_dist, temperature_1, .timeout = 600)
{
    /* the chi-square tail itself: P(chi2_1 > 3.841) = 0.05, P(chi2_10 > 23.21) = 0.01 */
    cr_assert(fabs(chi2_sf(3.841, 1) - 0.05) < 1e-3);
    cr_assert(fabs(chi2_sf(23.21, 10) - 0.01) < 1e-3);
    dsa_sampling sp = {.temperature = 1, .top_p = 1, .n_logprobs = -1,
                       .repetition_penalty = 1};
    compare(&sp, "temperature 1");
}

Test(spec_dist, top_p_and_penalties, .timeout = 600)
{
    dsa_sampling sp = {.temperature = 1, .top_p = 0.95f, .n_logprobs = -1,
                       .repetition_penalty = 1.3f, .frequency_penalty = 1.0f,
                       .presence_penalty = 0.5f};
    compare(&sp, "top_p 0.95 + penalties");
}
