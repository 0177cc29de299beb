/* fi_mla.h - MLA attention on FlashInfer's Hopper kernel (fi_mla.cu): which
 * shapes it takes, and the op.  cuda_mla_attn.cu dispatches to it and keeps
 * its own kernel for every other shape (the tiny test models). */
#ifndef DSA_KERNELS_CUDA_FI_MLA_H
#define DSA_KERNELS_CUDA_FI_MLA_H

#include "kernels/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Nonzero when p has FlashInfer's shape (kv_rank 512, rope 64, <= 128
 * heads, 16-byte aligned rows, cache < 2^32 elements). */
int dsa_fi_mla_applies(const dsa_mla_attn_params *p);
dsa_err dsa_fi_mla_attn(dsa_backend *be, const dsa_mla_attn_params *p);

#ifdef __cplusplus
}
#endif

#endif
