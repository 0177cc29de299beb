/* fi_mla.cu - absorbed MLA attention (backend.h dsa_mla_attn_params) on
 * FlashInfer's Hopper paged MLA kernel (flashinfer/attention/mla_hopper.cuh,
 * FlashInfer 0.7.4): one instantiation, BF16 q/cache/out, head_dim_ckv 512,
 * head_dim_kpe 64, no mask (every token is its own query row, see below).
 *
 * Cache.  Our latent cache keeps one slot per entry, [c_kv (512) | k_pe
 * (64) | pad to width], slot = page * block_size + offset.  The kernel takes
 * c_kv and k_pe as two planes with their own page and row strides, so both
 * are views of the same slab: ckv = data, kpe = data + 512, row stride =
 * width, page stride = block_size * width (rows are 16-byte aligned when
 * width is a multiple of 8, which the entry checks).  Its page list for a
 * work item is kv_indices[kv_indptr ...]; with kv_indices = our
 * block_tables, a sequence's list starts at seq * ld_block_table.
 *
 * Plan.  FlashInfer's MLAPlan (scheduler.cuh) partitions the work on the
 * host from host copies of the lengths.  Our op's lengths live on the device
 * (pos[t] + 1, written by the worker before the step) and the op must be
 * recordable in a CUDA graph, so the partition is computed on the device by
 * our own one-block kernel, fi_mla_plan_kernel, queued right before the
 * attention kernel: it is recorded in the graph with it and is exact on
 * every replay.  It follows MLAPlan's scheme with cluster size 1:
 *   - each token t is a request of one query row (q_len 1, kv_len pos+1),
 *     its n_heads heads packed into tiles of 64 rows (n_heads <= 64: one);
 *   - kv_limit = MLAPlan's rounding of ceil(total kv / n_sm); a tile with
 *     kv_len > kv_limit is split into ceil(kv_len / kv_limit) chunks whose
 *     partial outputs go to the float workspace and are merged in the
 *     kernel's second phase by floor(kv_len / kv_limit) merge CTAs, each a
 *     range of the tile's rows (<= n_sm merge CTAs in all, as in MLAPlan);
 *   - work item w goes to CTA w mod n_sm (items are at most kv_limit long,
 *     so round robin balances within one item per CTA).
 * The workspace sizes depend only on n_tokens and n_sm (fi_mla_plan.h's
 * bounds), so a graph bucket allocates them when it is recorded. */
#include <flashinfer/attention/mla_hopper.cuh>

#include <cstring>

#include "kernels/cuda/cuda_internal.h"
#include "kernels/cuda/fi_mla.h"
#include "kernels/cuda/fi_mla_plan.h"

typedef __nv_bfloat16 fi_bf16;
typedef flashinfer::MLAParams<fi_bf16, fi_bf16, fi_bf16, int32_t> fi_mla_params;

#define FI_CKV 512
#define FI_KPE 64
#define FI_PLAN_THREADS 1024

typedef struct fi_plan_args {
    fi_mla_plan pl;
    const int32_t *seq, *pos;
    int64_t ld_block_table;
    int n_tokens, n_heads, n_tiles, n_cta;
} fi_plan_args;

/* In-place exclusive scan of v[0..n) by the block; returns the total.
 * Thread i sums a contiguous run, thread 0 scans the 1024 run sums. */
static __device__ int64_t fi_block_scan(int64_t *v, int n, int64_t *carry)
{
    int per = (n + FI_PLAN_THREADS - 1) / FI_PLAN_THREADS;
    int b = threadIdx.x * per, e = min(n, b + per);
    int64_t s = 0;
    for (int i = b; i < e; i++)
        s += v[i];
    carry[threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        int64_t acc = 0;
        for (int i = 0; i < FI_PLAN_THREADS; i++) {
            int64_t c = carry[i];
            carry[i] = acc;
            acc += c;
        }
        carry[FI_PLAN_THREADS] = acc;
    }
    __syncthreads();
    int64_t acc = carry[threadIdx.x];
    for (int i = b; i < e; i++) {
        int64_t c = v[i];
        v[i] = acc;
        acc += c;
    }
    int64_t total = carry[FI_PLAN_THREADS];
    __syncthreads();
    return total;
}

/* One block: counts per (token, tile) item, three scans, then each item
 * writes its work items and merge entries (fi_mla_plan.h).  scratch:
 * 3 * n_items int64. */
static __global__ void __launch_bounds__(FI_PLAN_THREADS)
    fi_mla_plan_kernel(fi_plan_args a, int64_t *scratch)
{
    __shared__ int64_t carry[FI_PLAN_THREADS + 1];
    __shared__ unsigned long long kv_total;
    int n_items = a.n_tokens * a.n_tiles;
    int64_t *w_off = scratch, *p_off = scratch + n_items, *m_off = scratch + 2 * n_items;

    if (threadIdx.x == 0)
        kv_total = 0;
    __syncthreads();
    int64_t part = 0;
    for (int i = threadIdx.x; i < a.n_tokens; i += FI_PLAN_THREADS)
        part += (int64_t)a.pos[i] + 1;
    atomicAdd(&kv_total, (unsigned long long)(part * a.n_tiles));
    __syncthreads();
    int64_t avg = ((int64_t)kv_total + a.n_cta - 1) / a.n_cta;
    int limit = fi_plan_kv_limit(avg);

    for (int i = threadIdx.x; i < n_items; i += FI_PLAN_THREADS) {
        int t = i / a.n_tiles, tile = i % a.n_tiles;
        fi_plan_item_counts(a.pos[t] + 1, fi_plan_rows(a.n_heads, tile), limit, &w_off[i],
                            &p_off[i], &m_off[i]);
    }
    __syncthreads();
    int64_t n_work = fi_block_scan(w_off, n_items, carry);
    fi_block_scan(p_off, n_items, carry);
    int64_t n_merge = fi_block_scan(m_off, n_items, carry);

    for (int c = threadIdx.x; c <= a.n_cta; c += FI_PLAN_THREADS)
        a.pl.work_indptr[c] = (int32_t)fi_plan_work_begin(c, n_work, a.n_cta);
    for (int c = threadIdx.x + (int)n_merge; c < a.n_cta; c += FI_PLAN_THREADS)
        a.pl.m_start[c] = a.pl.m_end[c] = a.pl.m_pstart[c] = a.pl.m_pend[c] =
            a.pl.m_stride[c] = 0;
    for (int i = threadIdx.x; i < n_items; i += FI_PLAN_THREADS) {
        int t = i / a.n_tiles, tile = i % a.n_tiles;
        fi_plan_item_emit(&a.pl, t, tile, a.n_heads, a.pos[t] + 1,
                          (int32_t)(a.seq[t] * a.ld_block_table), limit, n_work, a.n_cta,
                          w_off[i], p_off[i], m_off[i]);
    }
}

extern "C" int dsa_fi_mla_applies(const dsa_mla_attn_params *p)
{
    const dsa_kv_layer *c = p->cache;
    return p->kv_rank == FI_CKV && p->rope_dim == FI_KPE && c->width >= FI_CKV + FI_KPE &&
           c->width % 8 == 0 && p->ld_qpe_head % 8 == 0 && p->ld_qpe_token % 8 == 0 &&
           ((uintptr_t)c->data | (uintptr_t)p->q_lat | (uintptr_t)p->q_pe |
            (uintptr_t)p->out) % 16 == 0 &&
           c->n_blocks * c->block_size * c->width < ((int64_t)1 << 32) &&
           p->n_tokens * p->n_heads * FI_CKV < ((int64_t)1 << 31) && p->n_heads <= 128;
}

/* The workspaces are sized by fi_mla_plan.h's bounds for n_tokens, so a
 * graph bucket grows them once, when it is recorded. */
extern "C" dsa_err dsa_fi_mla_attn(dsa_backend *be_, const dsa_mla_attn_params *p)
{
    dsa_cuda_backend *be = dsa_cuda_be(be_);
    int n_cta = be->n_sm;
    int64_t n_tiles = (p->n_heads + FI_TILE_Q - 1) / FI_TILE_Q;
    int64_t n_items = p->n_tokens * n_tiles;
    int64_t n_work = fi_plan_work_max(n_items, n_cta);
    int64_t n_prow = fi_plan_prow_max(n_items, n_cta);
    /* int workspace: 8 arrays of n_work, work_indptr n_cta + 1, 5 merge
     * arrays of n_cta; then 3 * n_items int64 of plan scratch. */
    int64_t n_int = 8 * n_work + (n_cta + 1) + 5 * n_cta;
    size_t int_bytes = ((size_t)n_int * 4 + 15) / 16 * 16;
    size_t scr_bytes = (size_t)(3 * n_items) * 8;
    size_t part_bytes = (size_t)n_prow * FI_CKV * sizeof(fi_bf16);
    size_t lse_bytes = (size_t)n_prow * sizeof(float);
    void *ws_int, *ws_f;
    dsa_err err;
    if ((err = dsa_cuda_scratch(be, DSA_CUDA_SCR_FI_PLAN, int_bytes + scr_bytes, &ws_int)) ||
        (err = dsa_cuda_scratch(be, DSA_CUDA_SCR_ATTN, part_bytes + lse_bytes, &ws_f)))
        return err;

    int32_t *w = (int32_t *)ws_int;
    fi_plan_args a;
    a.pl.q_indptr = w;
    a.pl.kv_indptr = w + n_work;
    a.pl.partial_indptr = w + 2 * n_work;
    a.pl.q_len = w + 3 * n_work;
    a.pl.kv_len = w + 4 * n_work;
    a.pl.q_start = w + 5 * n_work;
    a.pl.kv_start = w + 6 * n_work;
    a.pl.kv_end = w + 7 * n_work;
    a.pl.work_indptr = w + 8 * n_work;
    a.pl.m_start = a.pl.work_indptr + n_cta + 1;
    a.pl.m_end = a.pl.m_start + n_cta;
    a.pl.m_pstart = a.pl.m_end + n_cta;
    a.pl.m_pend = a.pl.m_pstart + n_cta;
    a.pl.m_stride = a.pl.m_pend + n_cta;
    a.seq = p->seq;
    a.pos = p->pos;
    a.ld_block_table = p->ld_block_table;
    a.n_tokens = (int)p->n_tokens;
    a.n_heads = (int)p->n_heads;
    a.n_tiles = (int)n_tiles;
    a.n_cta = n_cta;
    fi_mla_plan_kernel<<<1, FI_PLAN_THREADS, 0, be->stream>>>(
        a, (int64_t *)((char *)ws_int + int_bytes));
    if ((err = DSA_CUDA_LAUNCHED()))
        return err;

    const dsa_kv_layer *c = p->cache;
    fi_mla_params fp;
    memset((void *)&fp, 0, sizeof fp);
    fp.q_nope = (fi_bf16 *)p->q_lat;
    fp.q_pe = (fi_bf16 *)p->q_pe;
    fp.ckv = (fi_bf16 *)c->data;
    fp.kpe = (fi_bf16 *)c->data + FI_CKV;
    fp.partial_o = (fi_bf16 *)ws_f;
    fp.partial_lse = (float *)((char *)ws_f + part_bytes);
    fp.final_o = (fi_bf16 *)p->out;
    fp.final_lse = nullptr;
    fp.q_indptr = a.pl.q_indptr;
    fp.kv_indptr = a.pl.kv_indptr;
    fp.partial_indptr = a.pl.partial_indptr;
    fp.merge_packed_offset_start = a.pl.m_start;
    fp.merge_packed_offset_end = a.pl.m_end;
    fp.merge_partial_packed_offset_start = a.pl.m_pstart;
    fp.merge_partial_packed_offset_end = a.pl.m_pend;
    fp.merge_partial_stride = a.pl.m_stride;
    fp.kv_indices = (int32_t *)p->block_tables;
    fp.q_len = a.pl.q_len;
    fp.kv_len = a.pl.kv_len;
    fp.q_start = a.pl.q_start;
    fp.kv_start = a.pl.kv_start;
    fp.kv_end = a.pl.kv_end;
    fp.work_indptr = a.pl.work_indptr;
    fp.block_size = flashinfer::uint_fastdiv((uint32_t)c->block_size);
    fp.num_heads = flashinfer::uint_fastdiv((uint32_t)p->n_heads);
    fp.q_nope_stride_n = (uint32_t)(p->n_heads * FI_CKV);
    fp.q_nope_stride_h = FI_CKV;
    fp.q_pe_stride_n = (uint32_t)p->ld_qpe_token;
    fp.q_pe_stride_h = (uint32_t)p->ld_qpe_head;
    fp.ckv_stride_page = (uint32_t)(c->block_size * c->width);
    fp.ckv_stride_n = (uint32_t)c->width;
    fp.kpe_stride_page = (uint32_t)(c->block_size * c->width);
    fp.kpe_stride_n = (uint32_t)c->width;
    fp.o_stride_n = (uint32_t)(p->n_heads * FI_CKV);
    fp.o_stride_h = FI_CKV;
    fp.sm_scale = p->scale;
    fp.ckv_scale = 1.0f;
    fp.kpe_scale = 1.0f;
    fp.ckv_scale_arr = nullptr;
    fp.return_lse_base_on_e = false;
    /* Grid (1, n_sm): one CTA per SM, cooperative (the merge phase follows
     * a grid-wide barrier). */
    cudaError_t e = flashinfer::mla::BatchMLAPageAttentionHopper<flashinfer::MaskMode::kNone,
                                                                 FI_CKV, FI_KPE>(
        fp, 1, (uint32_t)n_cta, be->stream);
    return dsa_cuda_err(e, "BatchMLAPageAttentionHopper", __FILE__, __LINE__);
}
