/* fi_prefill_plan.h - the work list of FlashInfer's FA3 ragged prefill
 * (fi_prefill.cu) as __host__ __device__ pieces: the device planner runs
 * them after its scan of the sequences' tile counts, and the CPU test
 * (tests/test_fi_prefill_plan.cu) runs the same pieces with a serial scan.
 *
 * Item w (of n_tiles x n_heads) is tile g = w / n_heads of the tiles
 * numbered sequence by sequence (tile0[s] = the first of sequence s; within
 * a sequence from its last 128-row query tile to its first) and head
 * w % n_heads; it goes to CTA w mod n_cta, which runs its items in order
 * (the persistent scheduler's work_indptr ranges).  C++ only (nvcc). */
#ifndef DSA_KERNELS_CUDA_FI_PREFILL_PLAN_H
#define DSA_KERNELS_CUDA_FI_PREFILL_PLAN_H

#include <stdint.h>

#define FP_TILE_Q 128   /* FA3's query tile at head_dim_vo 128 */
#define FP_HD __host__ __device__ __forceinline__

typedef struct fp_plan {
    int32_t *tile, *qo_indptr, *kv_indptr, *qo_len, *kv_len, *head, *batch; /* [n_work_max] */
    int32_t *work_indptr;                                                    /* [n_cta + 1] */
} fp_plan;

/* Items for n_q query rows in n_seqs sequences: sum ceil(qo_len / 128)
 * <= n_q / 128 + n_seqs tiles, each once per head. */
FP_HD int64_t fp_plan_work_max(int64_t n_q, int64_t n_seqs, int64_t n_heads)
{
    return n_heads * ((n_q + FP_TILE_Q - 1) / FP_TILE_Q + n_seqs);
}

FP_HD int64_t fp_plan_tiles(int32_t qo_len)
{
    return (qo_len + FP_TILE_Q - 1) / FP_TILE_Q;
}

FP_HD int64_t fp_plan_work_begin(int64_t c, int64_t n_work, int n_cta)
{
    int64_t q = n_work / n_cta, r = n_work % n_cta;
    return c * q + (c < r ? c : r);
}

/* Writes item w; tile0: [n_seqs + 1] exclusive scan of the tile counts. */
FP_HD void fp_plan_item_emit(const fp_plan *pl, int64_t w, const int32_t *qo_indptr,
                             const int32_t *kv_indptr, const int32_t *tile0, int n_seqs,
                             int n_heads, int64_t n_work, int n_cta)
{
    int64_t g = w / n_heads;
    int h = (int)(w % n_heads);
    int lo = 0, hi = n_seqs - 1;   /* the last sequence whose first tile is <= g */
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (tile0[mid] <= g)
            lo = mid;
        else
            hi = mid - 1;
    }
    int32_t qo_len = qo_indptr[lo + 1] - qo_indptr[lo];
    int64_t slot = fp_plan_work_begin(w % n_cta, n_work, n_cta) + w / n_cta;
    pl->tile[slot] = (int32_t)(fp_plan_tiles(qo_len) - 1 - (g - tile0[lo]));
    pl->qo_indptr[slot] = qo_indptr[lo];
    pl->kv_indptr[slot] = kv_indptr[lo];
    pl->qo_len[slot] = qo_len;
    pl->kv_len[slot] = kv_indptr[lo + 1] - kv_indptr[lo];
    pl->head[slot] = h;
    pl->batch[slot] = lo;
}

#endif
