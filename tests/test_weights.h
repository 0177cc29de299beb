/* test_weights.h - random inputs and stored weight tensors for the
 * kernel tests (test_cpu_ops.c, test_cpu_linear.c): every dtype the
 * backend reads, FP8 e4m3 with 128x128 block scales, and dsa_weight views
 * of a tensor or of a slice of it. */
#ifndef DSA_TESTS_TEST_WEIGHTS_H
#define DSA_TESTS_TEST_WEIGHTS_H

#include <stdint.h>

#include "kernels/backend.h"

/* splitmix64: the next 64 random bits of the stream *s. */
uint64_t dsa_test_rng_next(uint64_t *s);
/* Uniform in [-1, 1). */
float dsa_test_rng_f(uint64_t *s);

/* A stored [R, C] tensor of dtype dt (FP8: scale holds its 128x128 block
 * scales, else NULL). */
typedef struct dsa_test_tw {
    void *data;
    float *scale;
    dsa_dtype dt;
    int64_t R, C;
} dsa_test_tw;

/* Random values in [-1, 1) rounded to dt; FP8: random non-NaN codes and
 * block scales in [0.5, 2.5) / 256.  Asserts on allocation failure. */
void dsa_test_tw_make(dsa_test_tw *t, dsa_dtype dt, int64_t R, int64_t C, uint64_t *s);
void dsa_test_tw_free(dsa_test_tw *t);
/* The [rows, cols] block at (r0, c0), as a shard of it is loaded. */
dsa_weight dsa_test_tw_slice(const dsa_test_tw *t, int64_t r0, int64_t c0, int64_t rows,
                             int64_t cols);
dsa_weight dsa_test_tw_full(const dsa_test_tw *t);

#endif
