/* fi_sample_plan.h - the host side of sampling on FlashInfer's filters
 * (fi_sample.cu, cuda_sample.cu): which sampler runs, the per-row arguments
 * FlashInfer's kernels take, which filter stages a batch needs, and where
 * each piece sits in the op's one scratch buffer.  Plain C with no CUDA in
 * it, so tests/test_fi_sample_plan.c checks it on the CPU.
 *
 * Per row (backend.h dsa_sample_row; the CPU reference is cpu_sample.c):
 *   - greedy rows (temperature <= 0, or vocab 1) take argmax of the raw
 *     logits in the draw kernel; for the filter stages they are an
 *     unfiltered temperature-1 row whose result nobody reads;
 *   - top_k <= 0 or >= vocab is off: FlashInfer's top-k mask copies a row
 *     whose k >= vocab, so the row gets k = vocab;
 *   - top_p >= 1 is off: FlashInfer's top-p renorm only renormalises a row
 *     with p >= 1, so the row gets 1;
 *   - min_p is applied by our draw kernel (FlashInfer has no min-p
 *     renormalisation, only a min-p sampler with its own Philox draw). */
#ifndef DSA_KERNELS_CUDA_FI_SAMPLE_PLAN_H
#define DSA_KERNELS_CUDA_FI_SAMPLE_PLAN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels/backend.h"

/* Nonzero when DSA_CUDA_SAMPLER's value asks for our own kernel ("own");
 * unset or anything else runs FlashInfer's filters. */
static inline int dsa_fi_sampler_own(const char *env)
{
    return env && strcmp(env, "own") == 0;
}

static inline int dsa_fi_sample_greedy(const dsa_sample_row *r, int64_t vocab)
{
    return !(r->temperature > 0.0f) || vocab == 1;
}

/* FlashInfer's arguments of one row. */
static inline void dsa_fi_sample_row_args(const dsa_sample_row *r, int64_t vocab,
                                          float *temperature, int32_t *top_k, float *top_p)
{
    int greedy = dsa_fi_sample_greedy(r, vocab);
    *temperature = greedy ? 1.0f : r->temperature;
    *top_k = (greedy || r->top_k <= 0 || r->top_k >= vocab) ? (int32_t)vocab : r->top_k;
    *top_p = (greedy || !(r->top_p < 1.0f)) ? 1.0f : r->top_p;
}

/* The stages a batch needs: a stage no row uses is not launched (the op
 * runs eagerly, outside the captured decode graph, so the launch sequence
 * may depend on the batch).  n_sampled counts the non-greedy rows; with
 * none, no filter runs and the draw kernel only takes argmax. */
typedef struct dsa_fi_sample_stages {
    int64_t n_sampled;
    int top_k, top_p;
} dsa_fi_sample_stages;

static inline dsa_fi_sample_stages dsa_fi_sample_stages_of(const dsa_sample_row *rows,
                                                           int64_t n_rows, int64_t vocab)
{
    dsa_fi_sample_stages s = {0, 0, 0};
    for (int64_t i = 0; i < n_rows; i++) {
        float t, p;
        int32_t k;
        if (dsa_fi_sample_greedy(&rows[i], vocab))
            continue;
        dsa_fi_sample_row_args(&rows[i], vocab, &t, &k, &p);
        s.n_sampled++;
        s.top_k |= k < vocab;
        s.top_p |= p < 1.0f;
    }
    return s;
}

/* Byte offsets in the op's scratch buffer (each 256-aligned): the rows as
 * given, FlashInfer's per-row arrays, the ids and logprobs the host reads
 * back, the top-k kernel's per-CTA-group states, the masked logits (only
 * when a row has top-k) and the probabilities. */
typedef struct dsa_fi_sample_layout {
    size_t rows, temperature, top_k, top_p, ids, logprobs, row_states, masked, probs, total;
} dsa_fi_sample_layout;

static inline size_t dsa_fi_sample_align(size_t b)
{
    return (b + 255) & ~(size_t)255;
}

/* n_row_states: FlashInfer's top-k launches at most one CTA group per SM,
 * so the SM count; row_state_bytes: sizeof its RadixRowState. */
static inline dsa_fi_sample_layout dsa_fi_sample_layout_of(int64_t n_rows, int64_t vocab,
                                                           const dsa_fi_sample_stages *s,
                                                           int64_t n_row_states,
                                                           size_t row_state_bytes)
{
    dsa_fi_sample_layout L;
    size_t n = (size_t)n_rows, at = 0;
    size_t plane = s->n_sampled ? n * (size_t)vocab * sizeof(float) : 0;
    L.rows = at, at += dsa_fi_sample_align(n * sizeof(dsa_sample_row));
    L.temperature = at, at += dsa_fi_sample_align(n * sizeof(float));
    L.top_k = at, at += dsa_fi_sample_align(n * sizeof(int32_t));
    L.top_p = at, at += dsa_fi_sample_align(n * sizeof(float));
    L.ids = at, at += dsa_fi_sample_align(n * sizeof(int32_t));
    L.logprobs = at, at += dsa_fi_sample_align(n * sizeof(float));
    L.row_states = at;
    at += s->top_k ? dsa_fi_sample_align((size_t)n_row_states * row_state_bytes) : 0;
    L.masked = at, at += s->top_k ? dsa_fi_sample_align(plane) : 0;
    L.probs = at, at += dsa_fi_sample_align(plane);
    L.total = at;
    return L;
}

#endif
