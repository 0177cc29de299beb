/* test_comm_pick.c - which all-reduce a TP group takes (worker/comm.h
 * dsa_comm_ar_oneshot): the one-shot kernel for decode sizes inside a node
 * when the whole group agreed at setup, NCCL otherwise. */
#include <criterion/criterion.h>

#include "worker/comm.h"

enum { D = 7168 }; /* DeepSeek-V3 hidden size: one token's residual row */

Test(comm_pick, decode_sizes_go_one_shot)
{
    dsa_comm_ar_caps c = {.n_ranks = 8, .bytes_max = 256 * 1024};
    cr_expect(dsa_comm_ar_oneshot(&c, D, DSA_DTYPE_BF16), "batch 1");
    cr_expect(dsa_comm_ar_oneshot(&c, 18 * D, DSA_DTYPE_BF16), "batch 18: 252 KiB");
    cr_expect_not(dsa_comm_ar_oneshot(&c, 19 * D, DSA_DTYPE_BF16), "batch 19: 266 KiB, NCCL");
    cr_expect(dsa_comm_ar_oneshot(&c, 9 * D, DSA_DTYPE_F32), "F32, 252 KiB");
    cr_expect_not(dsa_comm_ar_oneshot(&c, 10 * D, DSA_DTYPE_F32), "F32, 280 KiB");
    cr_expect(dsa_comm_ar_oneshot(&c, 64 * 1024, DSA_DTYPE_F32), "exactly the limit");
    cr_expect_not(dsa_comm_ar_oneshot(&c, 64 * 1024 + 4, DSA_DTYPE_F32), "one vector past it");
}

Test(comm_pick, nccl_for_the_rest)
{
    dsa_comm_ar_caps c = {.n_ranks = 4, .bytes_max = 256 * 1024};
    cr_expect_not(dsa_comm_ar_oneshot(&c, 7, DSA_DTYPE_BF16), "not whole 16-byte vectors");
    cr_expect_not(dsa_comm_ar_oneshot(&c, 0, DSA_DTYPE_BF16), "empty");
    cr_expect_not(dsa_comm_ar_oneshot(&c, 64, DSA_DTYPE_I32), "not an activation dtype");
    cr_expect_not(dsa_comm_ar_oneshot(&c, 64, DSA_DTYPE_F16), "F16: the kernel sums BF16/F32");
    dsa_comm_ar_caps off = {.n_ranks = 4, .bytes_max = 0};
    cr_expect_not(dsa_comm_ar_oneshot(&off, D, DSA_DTYPE_BF16), "group did not agree");
    dsa_comm_ar_caps one = {.n_ranks = 1, .bytes_max = 256 * 1024};
    cr_expect_not(dsa_comm_ar_oneshot(&one, D, DSA_DTYPE_BF16), "a single rank");
    cr_expect_not(dsa_comm_ar_oneshot(NULL, D, DSA_DTYPE_BF16), "no caps (MPI communicator)");
}
