/* fi_mla_plan.h - the work partition for FlashInfer's Hopper MLA kernel
 * (fi_mla.cu), as __host__ __device__ pieces: the device planner kernel
 * runs them per (token, head tile) item between block-wide scans, and the
 * CPU test (tests/test_fi_mla_plan.cu) runs the same pieces with serial
 * scans and checks the plan against the kernel's contract.
 *
 * The plan (the arrays of flashinfer::MLAParams, cluster size 1, grid
 * (1, n_cta)): work item w is (q_indptr: token, kv_indptr: first entry of
 * the token's page list in kv_indices, partial_indptr: first partial row or
 * -1, q_len 1, kv_len, q_start: the tile's first packed row (token-local
 * packed row = head), kv_start, kv_end); CTA c runs items
 * work_indptr[c] .. work_indptr[c + 1] - 1, then, after a grid barrier,
 * merges packed rows m_start[c] .. m_end[c] - 1 from the partial rows
 * m_pstart[c] + local + k * m_stride[c] < m_pend[c].
 *
 * C++ only (nvcc); included by .cu files. */
#ifndef DSA_KERNELS_CUDA_FI_MLA_PLAN_H
#define DSA_KERNELS_CUDA_FI_MLA_PLAN_H

#include <stdint.h>

#define FI_TILE_Q 64
#define FI_HD __host__ __device__ __forceinline__

typedef struct fi_mla_plan {
    int32_t *q_indptr, *kv_indptr, *partial_indptr, *q_len, *kv_len, *q_start, *kv_start,
        *kv_end;                                   /* [n_work_max] */
    int32_t *work_indptr;                          /* [n_cta + 1] */
    int32_t *m_start, *m_end, *m_pstart, *m_pend, *m_stride; /* [n_cta] merge CTAs */
} fi_mla_plan;

/* Capacity for n_items (token, tile) items on n_cta CTAs.  kv_limit >= the
 * average kv per CTA, so the chunks number <= n_cta + n_items, and the
 * partial rows <= 64 per chunk. */
FI_HD int64_t fi_plan_work_max(int64_t n_items, int n_cta)
{
    return n_cta + n_items;
}
FI_HD int64_t fi_plan_prow_max(int64_t n_items, int n_cta)
{
    return (int64_t)FI_TILE_Q * (n_cta + n_items);
}

/* MLAPlan's kv chunk length for an average of avg entries per CTA. */
FI_HD int fi_plan_kv_limit(int64_t avg)
{
    if (avg <= 8)
        return 32;
    if (avg <= 16)
        return 64;
    if (avg <= 32)
        return 128;
    if (avg <= 64)
        return 192;
    return (int)((avg + 255) / 256 * 256);
}

/* Rows of tile `tile` of n_heads heads. */
FI_HD int fi_plan_rows(int n_heads, int tile)
{
    int r = n_heads - tile * FI_TILE_Q;
    return r < FI_TILE_Q ? r : FI_TILE_Q;
}

/* An item's counts: kv chunks, partial rows, merge CTAs.  A tile longer
 * than the limit is split; floor(kv_len / limit) merge CTAs share its rows
 * (<= n_cta over all items, since limit >= total kv / n_cta). */
FI_HD void fi_plan_item_counts(int kv_len, int rows, int limit, int64_t *chunks, int64_t *prows,
                               int64_t *merges)
{
    int64_t n = (kv_len + limit - 1) / limit;
    int split = kv_len > limit;
    *chunks = n;
    *prows = split ? n * rows : 0;
    if (split) {
        int m = kv_len / limit;
        int rc = (rows + m - 1) / m;
        *merges = (rows + rc - 1) / rc;
    } else {
        *merges = 0;
    }
}

/* Work items go round robin: item w to CTA w % n_cta, which runs
 * q + (c < r) items (q, r = n_work / n_cta, n_work % n_cta). */
FI_HD int64_t fi_plan_work_begin(int64_t c, int64_t n_work, int n_cta)
{
    int64_t q = n_work / n_cta, r = n_work % n_cta;
    return c * q + (c < r ? c : r);
}
FI_HD int64_t fi_plan_work_slot(int64_t w, int64_t n_work, int n_cta)
{
    return fi_plan_work_begin(w % n_cta, n_work, n_cta) + w / n_cta;
}

/* Writes item (t, tile)'s work items and merge entries: w0, p0, m0 are its
 * first work item, partial row and merge CTA (exclusive scans of the
 * counts); kv_first = seq[t] * ld_block_table. */
FI_HD void fi_plan_item_emit(const fi_mla_plan *pl, int t, int tile, int n_heads, int kv_len,
                             int32_t kv_first, int limit, int64_t n_work, int n_cta, int64_t w0,
                             int64_t p0, int64_t m0)
{
    int rows = fi_plan_rows(n_heads, tile);
    int64_t chunks, prows, merges;
    fi_plan_item_counts(kv_len, rows, limit, &chunks, &prows, &merges);
    int split = prows > 0;
    for (int64_t k = 0; k < chunks; k++) {
        int64_t s = fi_plan_work_slot(w0 + k, n_work, n_cta);
        int64_t end = (k + 1) * limit;
        pl->q_indptr[s] = t;
        pl->kv_indptr[s] = kv_first;
        pl->partial_indptr[s] = split ? (int32_t)(p0 + k * rows) : -1;
        pl->q_len[s] = 1;
        pl->kv_len[s] = kv_len;
        pl->q_start[s] = tile * FI_TILE_Q;
        pl->kv_start[s] = (int32_t)(k * limit);
        pl->kv_end[s] = (int32_t)(end < kv_len ? end : kv_len);
    }
    if (!split)
        return;
    int m = kv_len / limit;
    int rc = (rows + m - 1) / m;
    int32_t base = t * n_heads + tile * FI_TILE_Q;
    for (int off = 0; off < rows; off += rc, m0++) {
        pl->m_start[m0] = base + off;
        pl->m_end[m0] = base + (off + rc < rows ? off + rc : rows);
        pl->m_pstart[m0] = (int32_t)(p0 + off);
        pl->m_pend[m0] = (int32_t)(p0 + chunks * rows);
        pl->m_stride[m0] = rows;
    }
}

#endif
