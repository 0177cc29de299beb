/* check_count.h - a counting check for the standalone CPU tests of the GPU
 * planners (tests/test_fi_*_plan.cu): a failed condition prints where and
 * why, counts in n_fail and returns from the calling test function. */
#ifndef DSA_TESTS_CHECK_COUNT_H
#define DSA_TESTS_CHECK_COUNT_H

#include <stdio.h>

static int n_fail;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                            \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
            n_fail++;                                                                              \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#endif
