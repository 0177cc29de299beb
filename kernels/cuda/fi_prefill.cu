/* fi_prefill.cu - causal ragged prefill attention (fi_prefill.h) on
 * FlashInfer 0.7.4's Hopper FA3 kernel (flashinfer/attention/hopper/
 * prefill_sm90.cuh): one instantiation, BF16, head_dim_qk 192, head_dim_vo
 * 128, causal, no sliding window, the persistent tile scheduler (grid = one
 * CTA per SM, each walking its list of (head, sequence, 128-row query tile)
 * work items).
 *
 * The work list.  FlashInfer's PrefillSM90Plan builds it on the host from
 * host copies of the indptrs; ours are in device memory, so a one-block
 * planner kernel builds it on the stream: sequence s has
 * ceil(qo_len / 128) tiles, each tile one item per head, items numbered
 * sequence by sequence with each sequence's tiles from the last (the
 * longest causal span) to the first, and item w goes to CTA w mod n_sm.
 * No KV splitting and no merge: FA3 prefill walks a tile's whole causal
 * span.  The workspace is sized by n_heads * (ceil(n_q / 128) + n_seqs)
 * items. */
#include <flashinfer/attention/hopper/attention_updater.cuh>
#include <flashinfer/attention/hopper/variant_helper.cuh>
#include <flashinfer/attention/hopper/variants.cuh>
#include <flashinfer/cutlass_utils.cuh>
#include <flashinfer/layout.cuh>
#include <flashinfer/math.cuh>
#include <flashinfer/attention/hopper/prefill_sm90.cuh>

#include "kernels/cuda/cuda_internal.h"
#include "kernels/cuda/fi_prefill.h"
#include "kernels/cuda/fi_prefill_plan.h"

#define FP_PLAN_THREADS 1024

typedef cutlass::bfloat16_t fp_bf16;

/* The fields FlashInfer's ragged prefill reads (its Params concept). */
struct fp_params {
    using DTypeQ = fp_bf16;
    using DTypeKV = fp_bf16;
    using DTypeO = fp_bf16;
    using IdType = int32_t;
    DTypeQ *q_ptr;
    DTypeKV *k_ptr;
    DTypeKV *v_ptr;
    DTypeO *o_ptr;
    float *lse_ptr;
    IdType *qo_tile_indices, *qo_indptr, *kv_indptr, *qo_lens, *kv_lens, *head_indices,
        *work_indptr, *batch_indices;
    struct AdditionalParams {
        float sm_scale;
    } additional_params;
    int64_t q_stride_n, k_stride_n, v_stride_n, o_stride_n;
    int64_t q_stride_h, k_stride_h, v_stride_h, o_stride_h;
    int64_t nnz_qo, nnz_kv;
    int head_dim, num_qo_heads, num_kv_heads, group_size, window_left;
    bool causal;
};

/* scratch: n_seqs + 1 int32, the sequences' first tile (exclusive scan). */
static __global__ void __launch_bounds__(FP_PLAN_THREADS)
    fp_plan_kernel(fp_plan pl, const int32_t *qo_indptr, const int32_t *kv_indptr, int n_seqs,
                   int n_heads, int n_cta, int32_t *tile0)
{
    __shared__ int64_t carry[FP_PLAN_THREADS + 1];
    /* tiles per sequence, scanned: thread i owns a contiguous run */
    int per = (n_seqs + FP_PLAN_THREADS - 1) / FP_PLAN_THREADS;
    int b = threadIdx.x * per, e = min(n_seqs, b + per);
    int64_t s = 0;
    for (int i = b; i < e; i++)
        s += fp_plan_tiles(qo_indptr[i + 1] - qo_indptr[i]);
    carry[threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        int64_t acc = 0;
        for (int i = 0; i < FP_PLAN_THREADS; i++) {
            int64_t c = carry[i];
            carry[i] = acc;
            acc += c;
        }
        carry[FP_PLAN_THREADS] = acc;
    }
    __syncthreads();
    int64_t acc = carry[threadIdx.x];
    for (int i = b; i < e; i++) {
        tile0[i] = (int32_t)acc;
        acc += fp_plan_tiles(qo_indptr[i + 1] - qo_indptr[i]);
    }
    int64_t n_tiles = carry[FP_PLAN_THREADS];
    if (threadIdx.x == 0)
        tile0[n_seqs] = (int32_t)n_tiles;
    __syncthreads();
    int64_t n_work = n_tiles * n_heads;
    for (int c = threadIdx.x; c <= n_cta; c += FP_PLAN_THREADS)
        pl.work_indptr[c] = (int32_t)fp_plan_work_begin(c, n_work, n_cta);
    for (int64_t w = threadIdx.x; w < n_work; w += FP_PLAN_THREADS)
        fp_plan_item_emit(&pl, w, qo_indptr, kv_indptr, tile0, n_seqs, n_heads, n_work, n_cta);
}

static int fp_aligned(const void *p, int64_t a, int64_t b)
{
    return (uintptr_t)p % 16 == 0 && a % 8 == 0 && b % 8 == 0;
}

extern "C" dsa_err dsa_fi_prefill(dsa_backend *be_, const dsa_fi_prefill_params *p)
{
    dsa_cuda_backend *be = dsa_cuda_be(be_);
    if (p->n_seqs <= 0 || p->n_q <= 0)
        return DSA_OK;
    if (!fp_aligned(p->out, p->ld_o_token, p->ld_o_head) ||
        !fp_aligned(p->q, p->ld_q_token, p->ld_q_head) ||
        !fp_aligned(p->k, p->ld_k_token, p->ld_k_head) ||
        !fp_aligned(p->v, p->ld_v_token, p->ld_v_head) || p->n_heads > 65535 ||
        p->n_q > INT32_MAX / 2 || p->n_kv > INT32_MAX / 2 || p->n_seqs > INT32_MAX / 2)
        return dsa_fail(DSA_UNSUPPORTED, "fi prefill: unaligned rows or sizes out of range");
    int n_cta = be->n_sm;
    int64_t n_work = fp_plan_work_max(p->n_q, p->n_seqs, p->n_heads);
    size_t bytes = (size_t)(7 * n_work + (n_cta + 1) + (p->n_seqs + 1)) * sizeof(int32_t);
    void *ws;
    dsa_err err;
    if ((err = dsa_cuda_scratch(be, DSA_CUDA_SCR_FI_PLAN, bytes, &ws)))
        return err;
    int32_t *w = (int32_t *)ws;
    fp_plan pl = {w, w + n_work, w + 2 * n_work, w + 3 * n_work, w + 4 * n_work,
                  w + 5 * n_work, w + 6 * n_work, w + 7 * n_work};
    fp_plan_kernel<<<1, FP_PLAN_THREADS, 0, be->stream>>>(
        pl, p->qo_indptr, p->kv_indptr, (int)p->n_seqs, (int)p->n_heads, n_cta,
        pl.work_indptr + n_cta + 1);
    if ((err = DSA_CUDA_LAUNCHED()))
        return err;

    fp_params fp;
    memset((void *)&fp, 0, sizeof fp);
    fp.q_ptr = (fp_bf16 *)p->q;
    fp.k_ptr = (fp_bf16 *)p->k;
    fp.v_ptr = (fp_bf16 *)p->v;
    fp.o_ptr = (fp_bf16 *)p->out;
    fp.lse_ptr = nullptr;
    fp.qo_tile_indices = pl.tile;
    fp.qo_indptr = pl.qo_indptr;
    fp.kv_indptr = pl.kv_indptr;
    fp.qo_lens = pl.qo_len;
    fp.kv_lens = pl.kv_len;
    fp.head_indices = pl.head;
    fp.work_indptr = pl.work_indptr;
    fp.batch_indices = pl.batch;
    fp.additional_params.sm_scale = p->scale;
    fp.q_stride_n = p->ld_q_token;
    fp.q_stride_h = p->ld_q_head;
    fp.k_stride_n = p->ld_k_token;
    fp.k_stride_h = p->ld_k_head;
    fp.v_stride_n = p->ld_v_token;
    fp.v_stride_h = p->ld_v_head;
    fp.o_stride_n = p->ld_o_token;
    fp.o_stride_h = p->ld_o_head;
    fp.nnz_qo = p->n_q;
    fp.nnz_kv = p->n_kv;
    fp.head_dim = DSA_FI_PREFILL_QK;
    fp.num_qo_heads = (int)p->n_heads;
    fp.num_kv_heads = (int)p->n_heads;
    fp.group_size = 1;
    fp.window_left = -1;
    fp.causal = true;
    cudaError_t e = flashinfer::BatchPrefillWithRaggedKVCacheDispatched<
        DSA_FI_PREFILL_QK, DSA_FI_PREFILL_VO, flashinfer::MaskMode::kCausal,
        /*LEFT_SLIDING_WINDOW=*/false, /*SAME_SCHEDULE_FOR_ALL_HEADS=*/false,
        flashinfer::StandardAttention>(fp, /*enable_pdl=*/false, be->stream);
    return dsa_cuda_err(e, "BatchPrefillWithRaggedKVCacheDispatched", __FILE__, __LINE__);
}
