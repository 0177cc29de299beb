/* cuda_moe.h - what the routed-expert files share (cuda_moe.cu routes and
 * combines; cuda_moe_gemv.cu is the small-batch path; cutlass_moe.cu the
 * grouped FP8 GEMMs).  C declarations, included from nvcc units only.
 *
 * Rows of the MoE are the A = n_tokens * top_k assignments, permuted so that
 * expert e's rows are [off[e], off[e + 1]): row d is token tok[d]'s copy for
 * expert ex[d].  Everything below lives on the device and is written on the
 * backend's stream after routing: no host round trip, graph-capturable. */
#ifndef DSA_KERNELS_CUDA_MOE_H
#define DSA_KERNELS_CUDA_MOE_H

#include "kernels/cuda/cuda_internal.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Token counts at or under this take the fused FP8 GEMV over the selected
 * experts (cuda_moe_gemv.cu); above it the CUTLASS grouped GEMMs.  A fixed
 * default until a device measures the crossover (docs/perf/gpu-model.md):
 * at 16 tokens an expert sees ~0.5 rows on average, so a 128-row tensor-core
 * tile is almost all padding while the GEMV streams the same bytes. */
#define DSA_MOE_GEMV_TOKENS_MAX 16

/* The routed-expert permutation (cuda_moe.cu builds it). */
typedef struct dsa_moe_perm {
    const int32_t *off;     /* [E + 1] row offsets per expert */
    const int32_t *tok;     /* [A] token of row d */
    const int32_t *ex;      /* [A] expert of row d */
    const int32_t *act;     /* [E] experts with rows, in id order; n_act[0] of them */
    const int32_t *n_act;   /* [1] */
    int64_t n_experts, n_rows;
} dsa_moe_perm;

/* The FP8 paths need every expert's three weights FP8 e4m3 with 128x128
 * blocks, origin (0, 0), 16-byte aligned rows; dim and inter multiples of
 * 128 (cuda_moe.cu checks this on the host array). */

/* ---- Fused FP8 GEMV (cuda_moe_gemv.cu) ----------------------------------
 * h[d, :] = silu(x[tok[d]] Wg^T) * (x[tok[d]] Wu^T) (BF16, [A, inter]) and
 * y[d, :] = h[d] Wd^T (BF16, [A, dim]) for the active experts only, each
 * expert's weights read once for all of its rows (at most
 * DSA_MOE_GEMV_TOKENS_MAX). */
dsa_err dsa_cuda_moe_gemv(dsa_cuda_backend *be, const dsa_moe_perm *perm,
                          const dsa_cuda_w *table, const void *x, void *h, void *y,
                          int64_t dim, int64_t inter, int64_t n_act_max);

/* ---- CUTLASS grouped FP8 GEMM (cutlass_moe.cu) ----------------------------
 * One launch of D_g = (A_g * SFA_g) (B_g * SFB_g)^T, BF16 out, F32
 * accumulation, for the groups of one phase:
 *   phase GATE_UP: groups 2e (gate) and 2e + 1 (up) of expert e: A = the
 *     quantised x rows of e, D = columns [0, I) resp. [I, 2I) of hgu [A, 2I];
 *   phase DOWN: group e: A = quantised h rows of e, D = y [A, dim].
 * a: e4m3 [A, K] rows of stride K; sa: their 1x128 scales, per expert
 * M-major: sa[K/128 * off[e] + kb * n_e + r] for row off[e] + r (the layout
 * CUTLASS's blockwise kernel reads for 1-row granularity).  Weight scales
 * are read K-major; a weight whose scale_ld exceeds K/128 has its scales
 * packed into the scratch first.  Experts without rows are zero-size
 * problems.  The scratch holds the per-group arrays and the kernel's
 * workspace, sized by dsa_cutlass_moe_scratch_bytes for n_experts. */
enum { DSA_CUTLASS_MOE_GATE_UP = 0, DSA_CUTLASS_MOE_DOWN = 1 };

typedef struct dsa_cutlass_moe_params {
    void *d;                    /* BF16 [A, ld_d] */
    const uint8_t *a;           /* e4m3 [A, k] */
    const float *sa;            /* see above */
    const dsa_moe_perm *perm;
    const dsa_cuda_w *table;    /* [E][3] device: gate, up, down */
    int64_t n, k, ld_d;         /* per-group N (inter or dim), K (dim or inter) */
    int phase;
    void *scratch;              /* device, dsa_cutlass_moe_scratch_bytes */
} dsa_cutlass_moe_params;

size_t dsa_cutlass_moe_scratch_bytes(int64_t n_experts, int64_t dim, int64_t inter, int n_sm);
dsa_err dsa_cutlass_moe_run(dsa_cuda_backend *be, const dsa_cutlass_moe_params *p);

#ifdef __cplusplus
}
#endif

#endif
