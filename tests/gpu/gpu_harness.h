/* gpu_harness.h - the parity suite's shared helpers: both backends, random
 * inputs rounded to BF16 (so CPU and GPU see identical values), weights in
 * every stored dtype prepared for each backend, comparison by normalised
 * error with a named tolerance, and a result table. */
#ifndef DSA_TESTS_GPU_HARNESS_H
#define DSA_TESTS_GPU_HARNESS_H

#include <stdint.h>
#include <stdio.h>

#include "kernels/backend.h"

/* Tolerances (relative L2 error ||gpu - cpu|| / ||cpu||):
 * - TOL_BF16: ops whose inputs/outputs are BF16 activations with F32
 *   inside (one BF16 rounding of the output, ~2^-9 relative per element);
 * - TOL_GEMM_BF16: linears and absorptions on BF16 activations with F32
 *   accumulation (dequantising kernel or cuBLASLt BF16);
 * - TOL_GEMM_FP8: linears on the cuBLASLt FP8 path, which quantises the
 *   activations to e4m3 per 1x128 block (3 mantissa bits: ~2-3% relative);
 * - TOL_ATTN: MLA attention (BF16 q and cache, F32 softmax);
 * - TOL_MOE: routed experts (BF16 x and intermediate h, F32 accumulation);
 * - TOL_MOE_FP8: routed experts on the CUTLASS path, which quantises both
 *   x and h to e4m3 per 1x128 block: two FP8 roundings in series, each
 *   ~2.5-3% relative, adding in quadrature to ~4%;
 * - TOL_MODEL: whole-model logits of the tiny checkpoints, BF16 activations
 *   through every layer against the CPU's F32;
 * - TOL_EXACT: results that must agree to F32 rounding (router weights,
 *   log-probabilities). */
#define TOL_BF16 1e-2
#define TOL_GEMM_BF16 1e-2
#define TOL_GEMM_FP8 6e-2
#define TOL_ATTN 2e-2
#define TOL_MOE 2e-2
#define TOL_MOE_FP8 8e-2
#define TOL_MODEL 5e-2
#define TOL_EXACT 1e-4

typedef struct gh {
    dsa_backend *cpu, *gpu;
    uint64_t rng;
    int n_pass, n_fail;
    FILE *json;         /* NULL or the results file */
    int json_first;
} gh;

uint64_t gh_next(gh *h);
float gh_uniform(gh *h);            /* [-1, 1) */
/* n values in [-amp, amp) rounded to BF16. */
float *gh_rand(gh *h, int64_t n, float amp);

/* Backend buffers holding host F32 values in each backend's act dtype. */
void *gh_act(gh *h, dsa_backend *be, const float *v, int64_t n);
void *gh_bytes(gh *h, dsa_backend *be, const void *v, size_t bytes);
/* Host F32 copy of n activations. */
float *gh_get(gh *h, dsa_backend *be, const void *p, int64_t n);
void gh_free(dsa_backend *be, void *p);

/* A stored weight [R, C] in dtype dt (FP8: random codes, scales spread over
 * 2^-9..2^-5) and a slice of it, described for the CPU (host memory) and
 * prepared for the GPU. */
typedef struct gh_weight {
    void *data;
    float *scale;
    dsa_weight cpu, gpu;
} gh_weight;
void gh_weight_make(gh *h, gh_weight *w, dsa_dtype dt, int64_t R, int64_t C, int64_t r0,
                    int64_t c0, int64_t rows, int64_t cols);
void gh_weight_free(gh *h, gh_weight *w);

/* Records one comparison: prints a table row, returns 1 when it passed. */
int gh_check(gh *h, const char *op, const char *shape, const char *note, const float *got,
             const float *ref, int64_t n, double tol);
/* Records a pass/fail with a measured value and a description. */
int gh_report(gh *h, const char *op, const char *shape, const char *note, double err, double tol,
              int pass);

/* The real-shape groups (test_gpu_real.c): "linear-real", "moe-real". */
void gh_group_linear_real(gh *h);
void gh_group_moe_real(gh *h);

/* The op suites (test_gpu_ops.c, test_gpu_model.c). */
void gh_suite_ops(gh *h);
void gh_suite_model(gh *h, const char *golden_root);
/* Group "mla": MLA attention at V3/R1's real shapes (test_gpu_fi.c). */
void gh_group_fi_mla(gh *h);
/* Group "prefill": FlashInfer's FA3 ragged causal prefill (test_gpu_fi.c). */
void gh_group_fi_prefill(gh *h);
void gh_suite_fused(gh *h); /* test_gpu_fused.c */
/* The sampler on FlashInfer's filters, part of group "sample" (test_gpu_sample.c). */
void gh_group_fi_sample(gh *h);

#endif
