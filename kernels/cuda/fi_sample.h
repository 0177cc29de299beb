/* fi_sample.h - the filter stages of sampling on FlashInfer's kernels
 * (fi_sample.cu): top-k on the logits, softmax with temperature, top-p
 * renormalisation.  cuda_sample.cu launches them, then draws each row with
 * its own kernel from (seed, step) (fi_sample_plan.h says why). */
#ifndef DSA_KERNELS_CUDA_FI_SAMPLE_H
#define DSA_KERNELS_CUDA_FI_SAMPLE_H

#include "kernels/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* All pointers are device memory; rows are [n_rows, vocab] F32. */
typedef struct dsa_fi_sample_filter_params {
    float *probs;               /* [n_rows, vocab] out: filtered, renormalised */
    float *masked;              /* [n_rows, vocab] scratch: top-k masked logits (top_k set) */
    void *row_states;           /* [n_row_states] FlashInfer RadixRowState (top_k set) */
    const float *logits;        /* [n_rows, vocab] in, unchanged */
    float *temperature;         /* [n_rows] > 0 */
    int32_t *top_k;             /* [n_rows] in [1, vocab]; vocab = off */
    float *top_p;               /* [n_rows] in (0, 1]; 1 = off */
    int64_t n_rows, vocab, n_row_states;
    int use_top_k, use_top_p;   /* launch the stage (some row has it on) */
    void *stream;               /* cudaStream_t */
} dsa_fi_sample_filter_params;

/* sizeof FlashInfer's RadixRowState (one per CTA group of the top-k kernel). */
size_t dsa_fi_sample_row_state_bytes(void);
/* Queues the stages on p->stream: 1 to 4 launches whatever the batch (a
 * memset of the row states, top-k, softmax, top-p). */
dsa_err dsa_fi_sample_filter(const dsa_fi_sample_filter_params *p);

#ifdef __cplusplus
}
#endif

#endif
