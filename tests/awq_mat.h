/* awq_mat.h - random AutoAWQ int4 matrices for the AWQ kernel tests
 * (test_awq.c, test_awq_int8.c): packed qweight/qzeros/scales as the
 * checkpoints store them, with an independent F32 dequantisation. */
#ifndef DSA_TESTS_AWQ_MAT_H
#define DSA_TESTS_AWQ_MAT_H

#include <stdint.h>

#include "kernels/backend.h"

/* A fixed linear congruential stream (seed 12345 per test program). */
uint32_t awq_rnd(void);
float awq_rndf(void);   /* uniform in [-1, 1] */

/* AutoAWQ's interleave: nibble k of a packed word holds output
 * word * 8 + awq_order[k]. */
extern const int awq_order[8];

typedef struct awq_mat {
    int64_t R, C, g;
    int32_t *q, *z;
    uint16_t *s;
    float *ref; /* [R, C] dequantised independently */
} awq_mat;

/* R outputs x C inputs, group g; R % 8 == 0 and C % g == 0. */
void awq_make(awq_mat *a, int64_t R, int64_t C, int64_t g);
void awq_free(awq_mat *a);
/* The weight view of rows [r0, r0 + nr) and columns [c0, c0 + nc). */
dsa_weight awq_view(const awq_mat *a, int64_t r0, int64_t nr, int64_t c0, int64_t nc);

#endif
