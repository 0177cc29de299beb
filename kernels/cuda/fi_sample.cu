/* fi_sample.cu - the filter stages of sampling (fi_sample.h) on FlashInfer
 * 0.7.4's kernels, compiled ahead of time against the pinned headers:
 *   1. top-k: RadixTopKMaskLogitsMultiCTA (flashinfer/topk.cuh) sets every
 *      logit below the row's k-th largest to -inf; a row with k >= vocab is
 *      copied.  Several CTAs share a row when the vocabulary is large, so
 *      it keeps a RadixRowState per CTA group, zero before the launch (the
 *      kernel leaves them zero again; we clear them each call anyway, as
 *      the scratch buffer they live in is shared);
 *   2. softmax: OnlineSoftmax (flashinfer/sampling.cuh) of logits / T, per
 *      row temperature, into a buffer apart from its input (its split-vocab
 *      path keeps partial results in the output rows);
 *   3. top-p: TopPRenormProb (sampling.cuh), the deterministic ternary
 *      pivot search, in place: every prob not above the pivot becomes 0,
 *      the rest are divided by their sum; a row with p >= 1 is only
 *      renormalised.  (FlashInfer's own extension picks its radix
 *      "AirTopP" variant for vocabularies >= its bucket count; the pivot
 *      search needs no workspace and is deterministic.)
 * Boundaries differ from the CPU reference only at ties: both FlashInfer
 * filters keep every token equal to the pivot (top-k keeps logits >= the
 * k-th largest, so more than k when it is tied; top-p keeps the whole tied
 * group that reaches p), where cpu_sample.c cuts a tie by index. */
#include <flashinfer/sampling.cuh>
#include <flashinfer/topk.cuh>

#include "kernels/cuda/cuda_internal.h"
#include "kernels/cuda/fi_sample.h"

extern "C" size_t dsa_fi_sample_row_state_bytes(void)
{
    return sizeof(flashinfer::sampling::RadixRowState);
}

extern "C" dsa_err dsa_fi_sample_filter(const dsa_fi_sample_filter_params *p)
{
    cudaStream_t st = (cudaStream_t)p->stream;
    if (p->n_rows <= 0)
        return DSA_OK;
    if (p->vocab <= 0 || p->vocab > 0x7ffffff0 || p->n_rows > 0x7fffffff)
        return dsa_fail(DSA_INVAL, "fi sample: %lld rows of %lld", (long long)p->n_rows,
                        (long long)p->vocab);
    uint32_t n = (uint32_t)p->n_rows, V = (uint32_t)p->vocab;
    float *in = (float *)p->logits; /* FlashInfer's signatures are not const; read only */
    dsa_err err;
    if (p->use_top_k) {
        using flashinfer::sampling::RadixRowState;
        if ((err = DSA_CUDA_CHECK(cudaMemsetAsync(
                 p->row_states, 0, (size_t)p->n_row_states * sizeof(RadixRowState), st))))
            return err;
        cudaError_t e = flashinfer::sampling::RadixTopKMaskLogitsMultiCTA<float, int32_t>(
            in, p->masked, p->top_k, n, V, V, (RadixRowState *)p->row_states, st);
        if ((err = dsa_cuda_err(e, "RadixTopKMaskLogitsMultiCTA", __FILE__, __LINE__)))
            return err;
        in = p->masked;
    }
    cudaError_t e = flashinfer::sampling::OnlineSoftmax<float>(in, p->probs, n, V, p->temperature,
                                                                1.0f, NULL, 0, false, st);
    if ((err = dsa_cuda_err(e, "OnlineSoftmax", __FILE__, __LINE__)))
        return err;
    if (p->use_top_p) {
        e = flashinfer::sampling::TopPRenormProb<float>(p->probs, p->probs, p->top_p, n, 1.0f, V,
                                                        st);
        if ((err = dsa_cuda_err(e, "TopPRenormProb", __FILE__, __LINE__)))
            return err;
    }
    return DSA_OK;
}
