/* test_fi_mla_plan.cu - the FlashInfer MLA work partition (kernels/cuda/
 * fi_mla_plan.h) checked on the CPU, no device needed: the same item
 * functions the device planner runs, with serial scans, on batches like the
 * model's (decode at contexts 1..32768, mixed lengths, prefill chunks, 16,
 * 20 and 128 heads, 132 / 7 / 1 CTAs).  Each plan is checked twice:
 *   - its structure: capacities hold, CTA ranges tile the work list, every
 *     (token, tile) has chunks that cover [0, kv_len) exactly once, partial
 *     rows are in range and disjoint, at most one merge entry per CTA;
 *   - what the Hopper kernel computes from it, emulated in double as
 *     mla_hopper.cuh reads the plan (per work item: softmax over
 *     [kv_start, kv_end) through kv_indices, output normalised with its
 *     log-sum-exp, to final_o or to partial row partial_indptr + local
 *     row; then every CTA's merge entry) against direct attention per
 *     (token, head): each final row written exactly once and equal.
 * Head dims are small (8 + 4): the plan does not depend on them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "kernels/cuda/fi_mla_plan.h"

#define D_V 8
#define D_K 12

#include "tests/check_count.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_u64(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng;
}
static double uni(void)
{
    return (double)(next_u64() >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

typedef struct plan_case {
    const char *name;
    int n_heads, n_cta, bs;
    std::vector<int> seq, pos;  /* per token */
    int n_seqs;
} plan_case;

/* The device planner's steps with serial scans (fi_mla.cu's kernel). */
static void plan_host(const plan_case &c, int64_t ld_bt, fi_mla_plan *pl, int64_t *n_work_out,
                      int64_t *n_prow_out, int64_t *n_merge_out, int *limit_out)
{
    int n_tokens = (int)c.pos.size(), n_tiles = (c.n_heads + FI_TILE_Q - 1) / FI_TILE_Q;
    int n_items = n_tokens * n_tiles;
    int64_t total = 0;
    for (int t = 0; t < n_tokens; t++)
        total += ((int64_t)c.pos[t] + 1) * n_tiles;
    int limit = fi_plan_kv_limit((total + c.n_cta - 1) / c.n_cta);
    std::vector<int64_t> w(n_items), p(n_items), m(n_items);
    for (int i = 0; i < n_items; i++)
        fi_plan_item_counts(c.pos[i / n_tiles] + 1, fi_plan_rows(c.n_heads, i % n_tiles), limit,
                            &w[i], &p[i], &m[i]);
    int64_t sw = 0, sp = 0, sm = 0;
    for (int i = 0; i < n_items; i++) {
        int64_t a = w[i], b = p[i], d = m[i];
        w[i] = sw, p[i] = sp, m[i] = sm;
        sw += a, sp += b, sm += d;
    }
    for (int cc = 0; cc <= c.n_cta; cc++)
        pl->work_indptr[cc] = (int32_t)fi_plan_work_begin(cc, sw, c.n_cta);
    for (int cc = (int)sm; cc < c.n_cta; cc++)
        pl->m_start[cc] = pl->m_end[cc] = pl->m_pstart[cc] = pl->m_pend[cc] = pl->m_stride[cc] = 0;
    for (int i = 0; i < n_items; i++) {
        int t = i / n_tiles;
        fi_plan_item_emit(pl, t, i % n_tiles, c.n_heads, c.pos[t] + 1,
                          (int32_t)(c.seq[t] * ld_bt), limit, sw, c.n_cta, w[i], p[i], m[i]);
    }
    *n_work_out = sw, *n_prow_out = sp, *n_merge_out = sm, *limit_out = limit;
}

static void run_case(const plan_case &c)
{
    int n_tokens = (int)c.pos.size(), H = c.n_heads, bs = c.bs;
    int n_tiles = (H + FI_TILE_Q - 1) / FI_TILE_Q, n_items = n_tokens * n_tiles;
    int max_len = 1;
    for (int t = 0; t < n_tokens; t++)
        max_len = c.pos[t] + 1 > max_len ? c.pos[t] + 1 : max_len;
    int64_t mb = (max_len + bs - 1) / bs, n_blocks = mb + 13;
    std::vector<int32_t> bt((size_t)(c.n_seqs * mb));
    for (int s = 0; s < c.n_seqs; s++)
        for (int64_t j = 0; j < mb; j++)
            bt[s * mb + j] = (int32_t)((5 * s + 3 * j) % n_blocks);   /* scattered, shared */

    int64_t wmax = fi_plan_work_max(n_items, c.n_cta), pmax = fi_plan_prow_max(n_items, c.n_cta);
    std::vector<int32_t> arr(8 * wmax + (c.n_cta + 1) + 5 * c.n_cta, 0x7eadbeef);
    fi_mla_plan pl;
    int32_t *a = arr.data();
    pl.q_indptr = a, pl.kv_indptr = a + wmax, pl.partial_indptr = a + 2 * wmax;
    pl.q_len = a + 3 * wmax, pl.kv_len = a + 4 * wmax, pl.q_start = a + 5 * wmax;
    pl.kv_start = a + 6 * wmax, pl.kv_end = a + 7 * wmax, pl.work_indptr = a + 8 * wmax;
    pl.m_start = pl.work_indptr + c.n_cta + 1, pl.m_end = pl.m_start + c.n_cta;
    pl.m_pstart = pl.m_end + c.n_cta, pl.m_pend = pl.m_pstart + c.n_cta;
    pl.m_stride = pl.m_pend + c.n_cta;
    int64_t n_work, n_prow, n_merge;
    int limit;
    plan_host(c, mb, &pl, &n_work, &n_prow, &n_merge, &limit);

    /* structure */
    CHECK(n_work <= wmax, "%s: %lld work items > capacity %lld", c.name, (long long)n_work,
          (long long)wmax);
    CHECK(n_prow <= pmax, "%s: %lld partial rows > capacity %lld", c.name, (long long)n_prow,
          (long long)pmax);
    CHECK(n_merge <= c.n_cta, "%s: %lld merge entries > %d CTAs", c.name, (long long)n_merge,
          c.n_cta);
    CHECK(pl.work_indptr[0] == 0 && pl.work_indptr[c.n_cta] == n_work, "%s: work_indptr ends",
          c.name);
    for (int cc = 0; cc < c.n_cta; cc++)
        CHECK(pl.work_indptr[cc] <= pl.work_indptr[cc + 1], "%s: work_indptr not monotone",
              c.name);
    std::vector<int64_t> covered((size_t)n_items, 0);
    std::vector<char> prow_used((size_t)(n_prow > 0 ? n_prow : 1), 0);
    for (int64_t w = 0; w < n_work; w++) {
        int t = pl.q_indptr[w], tile = pl.q_start[w] / FI_TILE_Q;
        CHECK(t >= 0 && t < n_tokens && pl.q_start[w] % FI_TILE_Q == 0 && tile < n_tiles,
              "%s: item %lld names token %d tile start %d", c.name, (long long)w, t,
              pl.q_start[w]);
        CHECK(pl.q_len[w] == 1 && pl.kv_len[w] == c.pos[t] + 1 &&
                  pl.kv_indptr[w] == c.seq[t] * mb,
              "%s: item %lld lengths", c.name, (long long)w);
        CHECK(0 <= pl.kv_start[w] && pl.kv_start[w] < pl.kv_end[w] &&
                  pl.kv_end[w] <= pl.kv_len[w] && pl.kv_end[w] - pl.kv_start[w] <= limit,
              "%s: item %lld kv [%d, %d) of %d", c.name, (long long)w, pl.kv_start[w],
              pl.kv_end[w], pl.kv_len[w]);
        covered[t * n_tiles + tile] += pl.kv_end[w] - pl.kv_start[w];
        if (pl.partial_indptr[w] >= 0) {
            int rows = fi_plan_rows(H, tile);
            CHECK(pl.partial_indptr[w] + rows <= n_prow, "%s: partial rows out of range", c.name);
            for (int r = 0; r < rows; r++) {
                CHECK(!prow_used[pl.partial_indptr[w] + r], "%s: partial row %d twice", c.name,
                      pl.partial_indptr[w] + r);
                prow_used[pl.partial_indptr[w] + r] = 1;
            }
        }
    }
    for (int i = 0; i < n_items; i++)
        CHECK(covered[i] == c.pos[i / n_tiles] + 1, "%s: item %d covers %lld of %d", c.name, i,
              (long long)covered[i], c.pos[i / n_tiles] + 1);

    /* the kernel's arithmetic on this plan, emulated */
    std::vector<double> cache((size_t)(n_blocks * bs * D_K)), q((size_t)n_tokens * H * D_K);
    for (auto &v : cache)
        v = uni();
    for (auto &v : q)
        v = 2 * uni();
    auto slot = [&](int64_t kv_first, int64_t j) {
        return (int64_t)bt[kv_first + j / bs] * bs + j % bs;
    };
    /* softmax(q . k) v over [j0, j1): o (normalised) and lse */
    auto attend = [&](int t, int hh, int64_t kv_first, int j0, int j1, double *o, double *lse) {
        const double *qq = &q[((size_t)t * H + hh) * D_K];
        double mx = -INFINITY;
        std::vector<double> s(j1 - j0);
        for (int j = j0; j < j1; j++) {
            const double *k = &cache[slot(kv_first, j) * D_K];
            double d = 0;
            for (int e = 0; e < D_K; e++)
                d += qq[e] * k[e];
            s[j - j0] = d;
            mx = d > mx ? d : mx;
        }
        double z = 0;
        for (int e = 0; e < D_V; e++)
            o[e] = 0;
        for (int j = j0; j < j1; j++) {
            double p = exp(s[j - j0] - mx);
            z += p;
            const double *v = &cache[slot(kv_first, j) * D_K];
            for (int e = 0; e < D_V; e++)
                o[e] += p * v[e];
        }
        for (int e = 0; e < D_V; e++)
            o[e] /= z;
        *lse = mx + log(z);
    };
    std::vector<double> fin((size_t)n_tokens * H * D_V, NAN), part((size_t)(n_prow + 1) * D_V);
    std::vector<double> plse((size_t)(n_prow + 1));
    std::vector<int> writes((size_t)n_tokens * H, 0);
    for (int cta = 0; cta < c.n_cta; cta++)
        for (int64_t w = pl.work_indptr[cta]; w < pl.work_indptr[cta + 1]; w++) {
            int t = pl.q_indptr[w];
            for (int local = 0; local < FI_TILE_Q; local++) {
                int packed = pl.q_start[w] + local;
                if (packed / H >= pl.q_len[w])     /* q_idx < q_len */
                    break;
                int hh = packed % H;
                double o[D_V], lse;
                attend(t + packed / H, hh, pl.kv_indptr[w], pl.kv_start[w], pl.kv_end[w], o,
                       &lse);
                if (pl.partial_indptr[w] < 0) {
                    memcpy(&fin[((size_t)t * H + hh) * D_V], o, sizeof o);
                    writes[t * H + hh]++;
                } else {
                    memcpy(&part[(size_t)(pl.partial_indptr[w] + local) * D_V], o, sizeof o);
                    plse[pl.partial_indptr[w] + local] = lse;
                }
            }
        }
    for (int cta = 0; cta < c.n_cta; cta++) {
        int len = pl.m_end[cta] - pl.m_start[cta];
        for (int l = 0; l < len; l++) {
            int packed = pl.m_start[cta] + l;
            double mx = -INFINITY, z = 0, o[D_V] = {0};
            for (int64_t pr = pl.m_pstart[cta] + l; pr < pl.m_pend[cta]; pr += pl.m_stride[cta])
                mx = plse[pr] > mx ? plse[pr] : mx;
            for (int64_t pr = pl.m_pstart[cta] + l; pr < pl.m_pend[cta]; pr += pl.m_stride[cta]) {
                double wgt = exp(plse[pr] - mx);
                z += wgt;
                for (int e = 0; e < D_V; e++)
                    o[e] += wgt * part[pr * D_V + e];
            }
            for (int e = 0; e < D_V; e++)
                fin[(size_t)packed * D_V + e] = o[e] / z;
            writes[packed]++;
        }
    }
    double worst = 0;
    for (int t = 0; t < n_tokens; t++)
        for (int hh = 0; hh < H; hh++) {
            CHECK(writes[t * H + hh] == 1, "%s: row (t %d, h %d) written %d times", c.name, t, hh,
                  writes[t * H + hh]);
            double o[D_V], lse;
            attend(t, hh, (int64_t)c.seq[t] * mb, 0, c.pos[t] + 1, o, &lse);
            for (int e = 0; e < D_V; e++) {
                double d = fabs(fin[((size_t)t * H + hh) * D_V + e] - o[e]);
                worst = d > worst || d != d ? d : worst;
            }
        }
    CHECK(worst < 1e-9, "%s: emulated output differs from attention by %g", c.name, worst);
    printf("ok   %-28s tokens %5d heads %3d ctas %3d: limit %5d, %5lld items, %4lld partial "
           "rows, %3lld merge CTAs\n",
           c.name, n_tokens, H, c.n_cta, limit, (long long)n_work, (long long)n_prow,
           (long long)n_merge);
}

static plan_case decode(const char *name, int H, int n_cta, int bs, int batch, int ctx, int mixed)
{
    plan_case c;
    c.name = name, c.n_heads = H, c.n_cta = n_cta, c.bs = bs, c.n_seqs = batch;
    for (int s = 0; s < batch; s++) {
        c.seq.push_back(s);
        c.pos.push_back(mixed ? (int)(next_u64() % (uint64_t)ctx) : ctx - 1);
    }
    return c;
}

static plan_case prefill(const char *name, int H, int n_cta, int bs, int ctx, int chunk)
{
    plan_case c;
    c.name = name, c.n_heads = H, c.n_cta = n_cta, c.bs = bs, c.n_seqs = 2;
    for (int i = 0; i < chunk; i++) {   /* a chunk of sequence 1, then one decode of 0 */
        c.seq.push_back(1);
        c.pos.push_back(ctx - chunk + i);
    }
    c.seq.push_back(0);
    c.pos.push_back(ctx / 3);
    return c;
}

int main(void)
{
    plan_case cases[] = {
        decode("decode b1 ctx1", 16, 132, 64, 1, 1, 0),
        decode("decode b1 ctx63", 16, 132, 64, 1, 63, 0),
        decode("decode b1 ctx4096", 16, 132, 64, 1, 4096, 0),
        decode("decode b1 ctx32768", 16, 132, 64, 1, 32768, 0),
        decode("decode b128 ctx1", 16, 132, 64, 128, 1, 0),
        decode("decode b128 ctx63", 16, 132, 64, 128, 63, 0),
        decode("decode b128 ctx4096", 16, 132, 64, 128, 4096, 0),
        decode("decode b128 mixed<=32768", 16, 132, 64, 128, 32768, 1),
        decode("decode b5 mixed, 128 heads", 128, 132, 64, 5, 3000, 1),
        decode("decode b9 mixed, 20 heads", 20, 7, 16, 9, 700, 1),
        decode("decode b3, 1 CTA", 16, 1, 64, 3, 900, 1),
        decode("decode b200 ctx1, 1 head", 1, 132, 1, 200, 5, 1),
        prefill("prefill 500", 16, 132, 64, 500, 500),
        prefill("chunk 300 @ctx 5000", 16, 132, 64, 5000, 300),
        prefill("prefill 64, 128 heads", 128, 132, 64, 64, 64),
    };
    for (auto &c : cases)
        run_case(c);
    printf("%s (%d failed)\n", n_fail ? "FAILED" : "all passed", n_fail);
    return n_fail ? 1 : 0;
}
