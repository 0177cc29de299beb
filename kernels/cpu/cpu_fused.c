/* cpu_fused.c - the CPU references of the ops that fuse what the model
 * would otherwise run as several (backend.h): the TP vocabulary gather, and
 * the activation quantisation an rmsnorm does for the FP8 linear after it
 * (the CPU linear itself computes in F32 and never reads it). */
#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu_internal.h"

dsa_err dsa_cpu_vocab_gather(dsa_backend *be, const dsa_vocab_gather_params *p)
{
    (void)be;
    for (int64_t r = 0; r < p->n_parts; r++) {
        int64_t begin = r * p->ld;
        int64_t n = begin + p->ld <= p->vocab ? p->ld : p->vocab - begin;
        for (int64_t i = 0; i < p->n_rows && n > 0; i++)
            memcpy(p->out + i * p->vocab + begin, p->in + (r * p->n_rows + i) * p->ld,
                   (size_t)n * sizeof(float));
    }
    return DSA_OK;
}

void dsa_cpu_quant_row(uint8_t *q, float *scale, const float *x, int64_t n)
{
    for (int64_t b = 0; b * 128 < n; b++) {
        int64_t j0 = b * 128, j1 = j0 + 128 < n ? j0 + 128 : n;
        float amax = 0.0f;
        for (int64_t j = j0; j < j1; j++)
            amax = fmaxf(amax, fabsf(x[j]));
        float sc = fmaxf(amax, 1e-4f) / 448.0f;
        for (int64_t j = j0; j < j1; j++)
            q[j] = dsa_f32_to_e4m3(x[j] / sc);
        scale[b] = sc;
    }
}
