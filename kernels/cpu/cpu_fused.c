/* cpu_fused.c - the CPU references of the ops that fuse what the model
 * would otherwise run as several (backend.h): the TP vocabulary gather. */
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
