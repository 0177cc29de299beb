/* cpu_penalty.c - the sampling state ops of the CPU backend (backend.h
 * "Sampling state on the backend"): token counts, penalties and logprobs,
 * row by row through the references in backend.c.  They are what the CUDA
 * kernels (cuda_penalty.cu, cuda_logprobs.cu) are checked against, and
 * what the worker's device path runs on the CPU. */
#include <string.h>

#include "kernels/cpu/cpu_internal.h"

dsa_err dsa_cpu_count_add(dsa_backend *be, const dsa_count_add_params *p)
{
    (void)be;
    const dsa_token_counts *c = p->counts;
    if (p->reset)
        for (int64_t i = 0; i < p->n; i++) {
            memset(c->out + (int64_t)p->slots[i] * c->vocab, 0,
                   (size_t)c->vocab * sizeof *c->out);
            memset(c->prompt + (int64_t)p->slots[i] * c->prompt_ld, 0,
                   (size_t)c->prompt_ld * sizeof *c->prompt);
        }
    if (p->reset && !p->ids)
        return DSA_OK;
    for (int64_t i = 0; i < p->n; i++) {
        int64_t s = p->slots[i], v = p->ids[i];
        if (s < 0 || s >= c->n_slots || v < 0 || v >= c->vocab)
            return dsa_fail(DSA_RANGE, "count_add: slot %lld id %lld", (long long)s,
                            (long long)v);
        if (p->prompt) {
            c->prompt[s * c->prompt_ld + (v >> 5)] |= 1u << (v & 31);
        } else {
            uint16_t *n = &c->out[s * c->vocab + v];
            *n += *n < UINT16_MAX;
        }
    }
    return DSA_OK;
}

dsa_err dsa_cpu_penalties(dsa_backend *be, const dsa_penalty_params *p)
{
    (void)be;
    const dsa_token_counts *c = p->counts;
    for (int64_t r = 0; r < p->n_rows; r++) {
        const dsa_penalty_row *pr = &p->rows[r];
        if (pr->slot < 0)
            continue;
        if (pr->slot >= c->n_slots)
            return dsa_fail(DSA_RANGE, "penalties: slot %d of %lld", pr->slot,
                            (long long)c->n_slots);
        dsa_penalty_row_apply(p->logits + r * p->vocab, p->vocab, pr,
                              c->out + (int64_t)pr->slot * c->vocab,
                              c->prompt + (int64_t)pr->slot * c->prompt_ld);
    }
    return DSA_OK;
}

dsa_err dsa_cpu_logprobs(dsa_backend *be, const dsa_logprobs_params *p)
{
    (void)be;
    for (int64_t r = 0; r < p->n_rows; r++)
        p->out_n_top[r] = dsa_logprobs_row(p->logits + r * p->vocab, p->vocab, p->ids[r],
                                           p->k[r], &p->out_logprob[r],
                                           p->out_rank ? &p->out_rank[r] : NULL,
                                           p->out_top_ids + r * p->k_max,
                                           p->out_top_logprobs + r * p->k_max);
    return DSA_OK;
}
