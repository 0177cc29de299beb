/* lm_head.h - the dtype lm_head runs in (--lm-head-dtype on dsa-worker and
 * dsa-head).  "auto" (the default) keeps the checkpoint's head (BF16 for
 * DeepSeek-V3/R1, F16 for AWQ checkpoints); "fp8" replaces this rank's
 * slice, after loading and before the backend takes the weights, by an FP8
 * e4m3 copy with 128 x 128 block scales: half the bytes of the largest
 * read of a decode step, at the cost of logits that differ from the
 * checkpoint's by the quantisation error, which is logged at start-up;
 * "int8" the same with an int8 copy, one scale per row (CPU backend). */
#ifndef DSA_WORKER_LM_HEAD_H
#define DSA_WORKER_LM_HEAD_H

#include "worker/loader.h"

typedef enum dsa_lm_head_dtype {
    DSA_LM_HEAD_AUTO = 0,
    DSA_LM_HEAD_FP8,
    DSA_LM_HEAD_INT8,
} dsa_lm_head_dtype;

/* "auto" (or NULL), "fp8" and "int8"; anything else is DSA_INVAL naming the
 * option. */
dsa_err dsa_lm_head_dtype_parse(const char *s, dsa_lm_head_dtype *out);

/* Replaces w->lm_head (last stage only) by an FP8 copy owned by w, and logs
 * the copy's logit error against the original on a few hidden states. */
dsa_err dsa_weights_lm_head_fp8(dsa_weights *w);

/* The same with an int8 copy (one F32 scale per vocab row, dtype I8): the
 * CPU backend runs it as int8 x int8 dot products on activations quantised
 * per block of 32 (kernels/cpu/cpu_awq_int8.c); other backends refuse I8. */
dsa_err dsa_weights_lm_head_int8(dsa_weights *w);

/* The copy a dsa_lm_head_dtype asks for (auto: none). */
dsa_err dsa_weights_lm_head_apply(dsa_weights *w, int dtype);

#endif
