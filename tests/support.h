/* support.h - helpers shared by the Criterion tests: where the data is,
 * temporary directories, reading files. */
#ifndef DSA_TESTS_SUPPORT_H
#define DSA_TESTS_SUPPORT_H

#include <stddef.h>
#include <stdint.h>

/* Path of a file under tests/data (static buffer per call site is not
 * used: the result is malloc'd and owned by the caller). */
char *dsa_test_data_path(const char *rel);
/* 1 when the tests run under CI (CI=true). */
int dsa_test_in_ci(void);
/* Path of a program built in the build tree (e.g. "tools/dsa-mkmodel"). */
char *dsa_test_build_path(const char *rel);
/* Creates a fresh temporary directory; caller frees the string and may
 * remove the tree with dsa_test_rmtree. */
char *dsa_test_mkdtemp(void);
void dsa_test_rmtree(const char *path);
/* The first tests/data/golden/<config> directory whose golden.json has
 * "dtype": dtype ("f32", "bf16", "fp8"), malloc'd; NULL when none. */
char *dsa_test_golden_dir(const char *dtype);
/* Reads a whole file (NUL-terminated); NULL on failure. */
char *dsa_test_read_file(const char *path, size_t *len);
/* Writes bytes to a file; 0 on success. */
int dsa_test_write_file(const char *path, const void *data, size_t len);

/* ||a - b|| / ||b|| over n floats (||a - b|| when b is all zero); infinite
 * when a holds a NaN or an infinity. */
double dsa_test_rel_l2(const float *a, const float *b, int64_t n);

/* max_i |a[i] - b[i]| / max_i |b[i]| over n floats (the plain maximum
 * difference when b is all zero). */
double dsa_test_max_rel(const float *a, const float *b, int64_t n);

#endif
