/* test_fi_prefill_plan.cu - the FA3 prefill work list (kernels/cuda/
 * fi_prefill_plan.h) checked on the CPU, no device needed: the item
 * function the device planner runs, after a serial scan of the tile
 * counts, on ragged batches (prompts of 1, 500 and 8192 tokens, chunks
 * after context, empty chunks, 16 and 128 heads, 132 and 3 CTAs).  Checks:
 * the list fits the capacity; the CTA ranges tile it; every (sequence,
 * 128-row tile, head) appears exactly once with its sequence's offsets and
 * lengths; each sequence's tiles come last tile first; and so every
 * (query row, head) is computed by exactly one work item. */
#include <stdio.h>
#include <stdlib.h>

#include <vector>

#include "kernels/cuda/fi_prefill_plan.h"

#include "tests/check_count.h"

static void run_case(const char *name, std::vector<int> qo, std::vector<int> kv, int H, int n_cta)
{
    int n = (int)qo.size();
    std::vector<int32_t> qi(n + 1, 0), ki(n + 1, 0), tile0(n + 1, 0);
    for (int s = 0; s < n; s++) {
        qi[s + 1] = qi[s] + qo[s];
        ki[s + 1] = ki[s] + kv[s];
        tile0[s + 1] = tile0[s] + (int32_t)fp_plan_tiles(qo[s]);
    }
    int64_t n_work = (int64_t)tile0[n] * H, cap = fp_plan_work_max(qi[n], n, H);
    CHECK(n_work <= cap, "%s: %lld items > capacity %lld", name, (long long)n_work,
          (long long)cap);
    std::vector<int32_t> a((size_t)(7 * cap + n_cta + 1), -7);
    fp_plan pl = {&a[0], &a[cap], &a[2 * cap], &a[3 * cap], &a[4 * cap], &a[5 * cap], &a[6 * cap],
                  &a[7 * cap]};
    for (int c = 0; c <= n_cta; c++)
        pl.work_indptr[c] = (int32_t)fp_plan_work_begin(c, n_work, n_cta);
    for (int64_t w = 0; w < n_work; w++)
        fp_plan_item_emit(&pl, w, qi.data(), ki.data(), tile0.data(), n, H, n_work, n_cta);

    CHECK(pl.work_indptr[0] == 0 && pl.work_indptr[n_cta] == n_work, "%s: work_indptr ends",
          name);
    for (int c = 0; c < n_cta; c++)
        CHECK(pl.work_indptr[c] <= pl.work_indptr[c + 1], "%s: work_indptr not monotone", name);
    std::vector<int> rows((size_t)qi[n] * H, 0);
    std::vector<int> last_tile((size_t)n * H, 1 << 30);
    for (int64_t w = 0; w < n_work; w++) {
        int s = pl.batch[w], h = pl.head[w], t = pl.tile[w];
        CHECK(s >= 0 && s < n && h >= 0 && h < H, "%s: item %lld names seq %d head %d", name,
              (long long)w, s, h);
        CHECK(pl.qo_indptr[w] == qi[s] && pl.kv_indptr[w] == ki[s] && pl.qo_len[w] == qo[s] &&
                  pl.kv_len[w] == kv[s],
              "%s: item %lld offsets/lengths of seq %d", name, (long long)w, s);
        CHECK(t >= 0 && t < fp_plan_tiles(qo[s]), "%s: item %lld tile %d of %lld", name,
              (long long)w, t, (long long)fp_plan_tiles(qo[s]));
        for (int r = t * FP_TILE_Q; r < qo[s] && r < (t + 1) * FP_TILE_Q; r++)
            rows[(size_t)(qi[s] + r) * H + h]++;
    }
    /* item order (before dealing to CTAs): a sequence's tiles last first */
    for (int64_t w = 0; w < n_work; w++) {
        int64_t slot = fp_plan_work_begin(w % n_cta, n_work, n_cta) + w / n_cta;
        int s = pl.batch[slot], h = pl.head[slot];
        CHECK(pl.tile[slot] < last_tile[(size_t)s * H + h], "%s: seq %d head %d tiles out of order",
              name, s, h);
        last_tile[(size_t)s * H + h] = pl.tile[slot];
    }
    for (size_t i = 0; i < rows.size(); i++)
        CHECK(rows[i] == 1, "%s: (row %zu, head %zu) computed %d times", name, i / H, i % H,
              rows[i]);
    printf("ok   %-24s seqs %3d rows %6d heads %3d ctas %3d: %6lld items\n", name, n, qi[n], H,
           n_cta, (long long)n_work);
}

int main(void)
{
    run_case("prompt 1", {1}, {1}, 16, 132);
    run_case("prompt 500", {500}, {500}, 16, 132);
    run_case("prompt 8192", {8192}, {8192}, 16, 132);
    run_case("chunks after context", {300, 1, 129, 2048}, {1000, 77, 129, 6000}, 16, 132);
    run_case("empty chunks between", {0, 128, 0, 257, 0}, {5, 128, 9, 300, 1}, 128, 3);
    run_case("many short prompts", std::vector<int>(300, 7), std::vector<int>(300, 7), 16, 132);
    printf("%s (%d failed)\n", n_fail ? "FAILED" : "all passed", n_fail);
    return n_fail ? 1 : 0;
}
