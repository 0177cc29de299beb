/* loader_fuse.c - weights that read the same input made one weight at load
 * (loader.h dsa_weights_pair): q_a_proj | kv_a_proj_with_mqa, and the
 * gate_proj | up_proj slices of the dense MLP and the shared expert, so
 * each pair is one GEMM launch over the activations instead of two.
 *
 * The copy is a new stored tensor.  For FP8 its rows sit where their block
 * scales stay valid: a part whose slice starts at stored row r0 starts at
 * row r0 % br of its block, and the next part's first block follows the
 * previous part's last; the block scales are copied row of blocks by row
 * of blocks.  Other dtypes are packed back to back.  TP slices are taken
 * as they are (each rank fuses its own gate and up slices). */
#include <stdlib.h>
#include <string.h>

#include "worker/loader_internal.h"

static int64_t round_up(int64_t x, int64_t m)
{
    return (x + m - 1) / m * m;
}

static int fusable(const dsa_weight *a, const dsa_weight *b)
{
    if (!a->data || !b->data || a->dtype != b->dtype || a->cols != b->cols ||
        a->col0 != 0 || b->col0 != 0)
        return 0;
    switch (a->dtype) {
    case DSA_DTYPE_F32:
    case DSA_DTYPE_F16:
    case DSA_DTYPE_BF16:
        return 1;
    case DSA_DTYPE_F8_E4M3:
        return a->scale && b->scale && a->block_rows == b->block_rows &&
               a->block_cols == b->block_cols && a->block_rows > 0 && a->block_cols > 0;
    default:
        return 0; /* AWQ int4: packed by column groups, run apart */
    }
}

/* Copies part x (nr rows) to rows [at, at + nr) of the copy and, for FP8,
 * its blocks of scales to the copy's block rows from at / br on. */
static void copy_part(const dsa_weight *x, char *data, float *scale, int64_t at, int64_t scale_ld)
{
    size_t es = dsa_dtype_size(x->dtype);
    size_t row = (size_t)x->cols * es;
    for (int64_t i = 0; i < x->rows; i++)
        memcpy(data + (size_t)(at + i) * row, (const char *)x->data + (size_t)(i * x->ld) * es,
               row);
    if (x->dtype != DSA_DTYPE_F8_E4M3)
        return;
    int64_t br = x->block_rows;
    int64_t first = x->row0 / br, last = (x->row0 + x->rows - 1) / br;
    for (int64_t k = first; k <= last; k++)
        memcpy(scale + (at / br + k - first) * scale_ld, x->scale + k * x->scale_ld,
               (size_t)scale_ld * sizeof(float));
}

dsa_err dsa_loader_pair_make(const dsa_weight *a, const dsa_weight *b, dsa_weights_pair *p)
{
    memset(p, 0, sizeof *p);
    p->off_b = a->rows;
    p->width = a->rows + b->rows;
    if (!fusable(a, b))
        return DSA_OK;
    int f8 = a->dtype == DSA_DTYPE_F8_E4M3;
    int64_t br = f8 ? a->block_rows : 1, cols = a->cols;
    int64_t at_a = a->row0 % br;                             /* a's first row in the copy */
    int64_t at_b = round_up(at_a + a->rows, br) + b->row0 % br;  /* b's */
    int64_t rows = at_b + b->rows;                           /* the copy's stored rows */
    size_t es = dsa_dtype_size(a->dtype);
    int64_t scale_ld = f8 ? (cols + a->block_cols - 1) / a->block_cols : 0;
    size_t bytes = ((size_t)(rows * cols) * es + 63) & ~(size_t)63;
    p->owned = aligned_alloc(64, bytes);
    if (!p->owned)
        return dsa_fail(DSA_NOMEM, "fused weight of %lld x %lld", (long long)rows,
                        (long long)cols);
    memset(p->owned, 0, bytes);
    if (f8) {
        p->scale_owned = calloc((size_t)(round_up(rows, br) / br * scale_ld), sizeof(float));
        if (!p->scale_owned) {
            free(p->owned);
            p->owned = NULL;
            return dsa_fail(DSA_NOMEM, "fused weight scales");
        }
    }
    copy_part(a, p->owned, p->scale_owned, at_a, scale_ld);
    copy_part(b, p->owned, p->scale_owned, at_b, scale_ld);
    p->off_b = at_b - at_a;
    p->width = rows - at_a;
    p->w = (dsa_weight){.dtype = a->dtype, .rows = p->width, .cols = cols, .ld = cols,
                        .data = (const char *)p->owned + (size_t)(at_a * cols) * es,
                        .row0 = at_a};
    if (f8) {
        p->w.scale = p->scale_owned;
        p->w.scale_ld = scale_ld;
        p->w.block_rows = a->block_rows;
        p->w.block_cols = a->block_cols;
    }
    return DSA_OK;
}

static void pair_free(dsa_weights_pair *p)
{
    free(p->owned);
    free(p->scale_owned);
    memset(p, 0, sizeof *p);
}

dsa_err dsa_loader_fuse_layer(dsa_layer_weights *lw)
{
    dsa_err err;
    if (lw->q_a.data && (err = dsa_loader_pair_make(&lw->q_a, &lw->kv_a, &lw->qkv_a)))
        goto fail;
    if (lw->gate.data && (err = dsa_loader_pair_make(&lw->gate, &lw->up, &lw->gate_up)))
        goto fail;
    if (lw->shared_inter > 0 &&
        (err = dsa_loader_pair_make(&lw->shared.gate, &lw->shared.up, &lw->shared_gate_up)))
        goto fail;
    return DSA_OK;
fail:
    dsa_loader_fuse_free(lw);
    return err;
}

void dsa_loader_fuse_free(dsa_layer_weights *lw)
{
    pair_free(&lw->qkv_a);
    pair_free(&lw->gate_up);
    pair_free(&lw->shared_gate_up);
}
