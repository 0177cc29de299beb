/* test_fi_sample_plan.c - the host side of sampling on FlashInfer's filters
 * (kernels/cuda/fi_sample_plan.h), no device needed: the sampler switch,
 * the per-row arguments each kind of row gets, which stages a batch
 * launches, and the scratch layout (aligned, disjoint, planes only where a
 * stage needs them).  The kernels themselves are checked on a device by the
 * parity group "sample" (tests/gpu/test_gpu_sample.c). */
#include <criterion/criterion.h>
#include <math.h>

#include "kernels/cuda/fi_sample_plan.h"

#define V 129280

Test(fi_sample_plan, sampler_switch_is_own_only_when_asked)
{
    cr_expect(!dsa_fi_sampler_own(NULL));
    cr_expect(!dsa_fi_sampler_own(""));
    cr_expect(!dsa_fi_sampler_own("flashinfer"));
    cr_expect(!dsa_fi_sampler_own("owner"));
    cr_expect(dsa_fi_sampler_own("own"));
}

Test(fi_sample_plan, row_arguments_turn_off_what_the_row_does_not_use)
{
    float t, p;
    int32_t k;
    /* greedy: an unfiltered temperature-1 row */
    dsa_sample_row g = {.temperature = 0.0f, .top_p = 0.5f, .top_k = 3, .min_p = 0.1f};
    cr_expect(dsa_fi_sample_greedy(&g, V));
    dsa_fi_sample_row_args(&g, V, &t, &k, &p);
    cr_expect(t == 1.0f && k == V && p == 1.0f);
    g.temperature = -1.0f;
    cr_expect(dsa_fi_sample_greedy(&g, V));
    g.temperature = NAN;
    cr_expect(dsa_fi_sample_greedy(&g, V));
    /* vocabulary of one: greedy whatever the temperature */
    dsa_sample_row one = {.temperature = 0.7f, .top_p = 1.0f};
    cr_expect(dsa_fi_sample_greedy(&one, 1));
    /* filters off: k = vocab, p = 1 */
    dsa_sample_row r = {.temperature = 0.7f, .top_p = 1.0f, .top_k = 0};
    cr_expect(!dsa_fi_sample_greedy(&r, V));
    dsa_fi_sample_row_args(&r, V, &t, &k, &p);
    cr_expect(t == 0.7f && k == V && p == 1.0f);
    r.top_k = -1, r.top_p = 1.5f;
    dsa_fi_sample_row_args(&r, V, &t, &k, &p);
    cr_expect(k == V && p == 1.0f);
    r.top_k = V + 5;
    dsa_fi_sample_row_args(&r, V, &t, &k, &p);
    cr_expect(k == V);
    /* filters on: passed through */
    r.top_k = 40, r.top_p = 0.9f;
    dsa_fi_sample_row_args(&r, V, &t, &k, &p);
    cr_expect(k == 40 && p == 0.9f);
    r.top_k = 1;
    dsa_fi_sample_row_args(&r, V, &t, &k, &p);
    cr_expect(k == 1);
}

Test(fi_sample_plan, stages_are_launched_only_when_a_sampled_row_uses_them)
{
    dsa_sample_row rows[4] = {
        {.temperature = 0.0f, .top_p = 0.5f, .top_k = 3},  /* greedy: its filters do not count */
        {.temperature = 1.0f, .top_p = 1.0f},
        {.temperature = 0.5f, .top_p = 1.0f, .min_p = 0.1f},
        {.temperature = 0.5f, .top_p = 1.0f, .top_k = V},
    };
    dsa_fi_sample_stages s = dsa_fi_sample_stages_of(rows, 4, V);
    cr_expect(s.n_sampled == 3 && !s.top_k && !s.top_p);
    s = dsa_fi_sample_stages_of(rows, 1, V);
    cr_expect(s.n_sampled == 0 && !s.top_k && !s.top_p);
    rows[1].top_k = 50;
    s = dsa_fi_sample_stages_of(rows, 4, V);
    cr_expect(s.top_k && !s.top_p);
    rows[2].top_p = 0.8f;
    s = dsa_fi_sample_stages_of(rows, 4, V);
    cr_expect(s.top_k && s.top_p && s.n_sampled == 3);
}

static void check_layout(const dsa_fi_sample_layout *L, int64_t n, int64_t vocab,
                         const dsa_fi_sample_stages *s, size_t states_bytes)
{
    size_t off[] = {L->rows, L->temperature, L->top_k, L->top_p, L->ids, L->logprobs,
                    L->row_states, L->masked, L->probs};
    size_t len[] = {(size_t)n * sizeof(dsa_sample_row), (size_t)n * 4, (size_t)n * 4,
                    (size_t)n * 4, (size_t)n * 4, (size_t)n * 4,
                    s->top_k ? states_bytes : 0,
                    s->top_k ? (size_t)(n * vocab) * 4 : 0,
                    s->n_sampled ? (size_t)(n * vocab) * 4 : 0};
    for (int i = 0; i < 9; i++) {
        cr_expect(off[i] % 256 == 0, "piece %d at %zu", i, off[i]);
        cr_expect(off[i] + len[i] <= L->total, "piece %d past the end", i);
        if (i > 0)
            cr_expect(off[i - 1] + len[i - 1] <= off[i], "piece %d overlaps %d", i - 1, i);
    }
    /* the host stages [0, ids) to the device and reads ids and logprobs
     * back from a pinned buffer of `probs` bytes */
    cr_expect(L->ids <= L->probs && L->logprobs + (size_t)n * 4 <= L->probs);
}

Test(fi_sample_plan, layout_is_aligned_disjoint_and_sized_by_the_stages)
{
    size_t sb = 3120; /* any RadixRowState size */
    int64_t shapes[][2] = {{1, V}, {64, V}, {7, 1000}, {3, 1}};
    for (int i = 0; i < 4; i++) {
        int64_t n = shapes[i][0], vocab = shapes[i][1];
        dsa_fi_sample_stages none = {0, 0, 0}, soft = {n, 0, 1}, all = {n, 1, 1};
        dsa_fi_sample_layout a = dsa_fi_sample_layout_of(n, vocab, &none, 132, sb);
        dsa_fi_sample_layout b = dsa_fi_sample_layout_of(n, vocab, &soft, 132, sb);
        dsa_fi_sample_layout c = dsa_fi_sample_layout_of(n, vocab, &all, 132, sb);
        check_layout(&a, n, vocab, &none, 132 * sb);
        check_layout(&b, n, vocab, &soft, 132 * sb);
        check_layout(&c, n, vocab, &all, 132 * sb);
        cr_expect(a.total == a.probs, "all greedy: no planes");
        cr_expect(b.masked == b.probs && b.row_states == b.masked, "no top-k: no mask plane");
        cr_expect(c.total >= 2 * (size_t)(n * vocab) * 4 + 132 * sb);
    }
}
