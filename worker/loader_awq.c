/* loader_awq.c - AWQ int4 linears (quantization_config quant_method awq,
 * version gemm) as dsa_weight descriptors; see backend.h for the layout.
 *
 * A linear `P.weight` of R outputs and C inputs is stored as P.qweight
 * int32 [C, R/8], P.qzeros int32 [C/g, R/8] and P.scales F16 [C/g, R].
 * TP slices stay views of the mapping: an output-row slice must start and
 * end on a word (8 outputs), an input-column slice (row-parallel o_proj /
 * down_proj) on a group; anything else is refused with the tensor named. */
#include <stdio.h>
#include <string.h>

#include "worker/loader_internal.h"

int dsa_loader_awq_wanted(const dsa_config *cfg, const char *name)
{
    size_t n = strlen(name);
    if (!cfg->awq || n < 8 || strcmp(name + n - 7, ".weight") != 0)
        return 0;
    char base[512];
    snprintf(base, sizeof base, "%.*s", (int)(n - 7), name);
    return dsa_config_awq_quantised(cfg, base);
}

static dsa_err awq_tensor(dsa_load_ctx *c, const char *base, const char *suffix, dsa_dtype dt,
                          int64_t d0, int64_t d1, const dsa_st_tensor **out)
{
    char name[600];
    snprintf(name, sizeof name, "%s.%s", base, suffix);
    const dsa_st_tensor *t = dsa_st_model_find(c->w->st, name);
    if (!t)
        return dsa_fail(DSA_NOTFOUND, "%s: missing tensor '%s' (AWQ quantised by "
                        "quantization_config)", c->w->dir, name);
    if (t->dtype != dt || t->ndim != 2 || t->shape[0] != d0 || t->shape[1] != d1)
        return dsa_fail(DSA_SHAPE, "%s: tensor '%s': expected %s [%lld, %lld]", c->w->dir, name,
                        dsa_dtype_name(dt), (long long)d0, (long long)d1);
    *out = t;
    return DSA_OK;
}

dsa_err dsa_loader_awq_slice(dsa_load_ctx *c, const char *name, int64_t rows, int64_t cols,
                             int64_t r0, int64_t nr, int64_t c0, int64_t nc, dsa_weight *w)
{
    int64_t g = c->cfg->awq_group;
    char base[512];
    snprintf(base, sizeof base, "%.*s", (int)(strlen(name) - 7), name);
    if (rows % 8 || cols % g)
        return dsa_fail(DSA_SHAPE, "%s: AWQ linear '%s' is [%lld, %lld]: outputs must be a "
                        "multiple of 8 and inputs of group_size %lld", c->w->dir, base,
                        (long long)rows, (long long)cols, (long long)g);
    if (r0 % 8 || nr % 8 || c0 % g || nc % g)
        return dsa_fail(DSA_UNSUPPORTED, "%s: AWQ linear '%s': this tensor-parallel slice "
                        "(rows %lld+%lld, columns %lld+%lld) does not fall on 8-output words "
                        "and %lld-input groups", c->w->dir, base, (long long)r0, (long long)nr,
                        (long long)c0, (long long)nc, (long long)g);
    const dsa_st_tensor *q, *z, *s;
    dsa_err err;
    if ((err = awq_tensor(c, base, "qweight", DSA_DTYPE_I32, cols, rows / 8, &q)) ||
        (err = awq_tensor(c, base, "qzeros", DSA_DTYPE_I32, cols / g, rows / 8, &z)) ||
        (err = awq_tensor(c, base, "scales", DSA_DTYPE_F16, cols / g, rows, &s)))
        return err;
    memset(w, 0, sizeof *w);
    w->dtype = DSA_DTYPE_I32;
    w->rows = nr;
    w->cols = nc;
    w->ld = rows / 8;
    w->row0 = r0;
    w->col0 = c0;
    w->data = q->data;
    w->awq_zeros = z->data;
    w->awq_scales = s->data;
    w->awq_group = g;
    c->w->bytes += (uint64_t)(nr * nc / 2 + nr * (nc / g) * 2 + nr * (nc / g) / 2);
    return DSA_OK;
}

uint64_t dsa_loader_awq_touch(const dsa_weight *w)
{
    size_t bytes = (size_t)w->rows / 2;
    const unsigned char *first =
        (const unsigned char *)((const int32_t *)w->data + w->col0 * w->ld + w->row0 / 8);
    size_t span = w->cols > 0 ? (size_t)(w->cols - 1) * (size_t)w->ld * 4 + bytes : 0;
    if (dsa_loader_prefault(first, span, (size_t)w->cols * bytes) == 0)
        return (uint64_t)w->rows * (uint64_t)w->cols / 2;
    volatile unsigned char sink = 0;
    for (int64_t n = w->col0; n < w->col0 + w->cols; n++) {
        const unsigned char *row =
            (const unsigned char *)((const int32_t *)w->data + n * w->ld + w->row0 / 8);
        for (size_t off = 0; off < bytes; off += 4096)
            sink ^= row[off];
    }
    (void)sink;
    return (uint64_t)w->rows * (uint64_t)w->cols / 2;
}
