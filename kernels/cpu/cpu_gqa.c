/* cpu_gqa.c - paged grouped-query attention (backend.h dsa_gqa_attn_params)
 * and the bias add of the dense architectures.
 *
 * One work item is (token, kv head): the query heads sharing that kv head
 * (n_heads / n_kv_heads of them, taken up to GQA_HEADS at a time) score
 * each chunk of GQA_CHUNK cache entries together while the keys are in
 * cache, and an online softmax (running max and sum, rescaling the
 * accumulators when the max grows) folds the chunk's values into the
 * outputs, so every key and value is read once per (token, kv head). */
#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu_internal.h"

#define GQA_HEADS 8
#define GQA_CHUNK 32

typedef struct gqa_job {
    dsa_cpu_backend *be;
    const dsa_gqa_attn_params *p;
    _Atomic int err;
} gqa_job;

/* Query heads h0..h0+nh-1 of token t (all on kv head g); acc [nh, hd]. */
static void gqa_heads(const dsa_gqa_attn_params *p, int64_t t, int64_t g, int64_t h0,
                     int64_t nh, float *acc)
{
    const dsa_kv_layer *c = p->cache;
    int64_t hd = p->head_dim, kvw = p->n_kv_heads * hd;
    int64_t s = p->seq[t], n_ctx = (int64_t)p->pos[t] + 1;
    const int32_t *bt = p->block_tables + s * p->ld_block_table;
    const float *q = (const float *)p->q + t * p->ld_q + h0 * hd;
    float mx[GQA_HEADS], l[GQA_HEADS], sc[GQA_HEADS][GQA_CHUNK];
    const float *k[GQA_CHUNK], *v[GQA_CHUNK];
    for (int64_t h = 0; h < nh; h++) {
        mx[h] = -INFINITY;
        l[h] = 0.0f;
    }
    memset(acc, 0, (size_t)(nh * hd) * sizeof(float));
    for (int64_t j0 = 0; j0 < n_ctx; j0 += GQA_CHUNK) {
        int64_t nj = n_ctx - j0 < GQA_CHUNK ? n_ctx - j0 : GQA_CHUNK;
        for (int64_t jj = 0; jj < nj; jj++) {
            int64_t j = j0 + jj;
            int64_t slot = (int64_t)bt[j / c->block_size] * c->block_size + j % c->block_size;
            k[jj] = (const float *)c->data + slot * c->width + g * hd;
            v[jj] = k[jj] + kvw;
        }
        /* scores in tiles of 4 keys x 4 heads */
        for (int64_t j4 = 0; j4 < nj; j4 += 4) {
            int nr = nj - j4 < 4 ? (int)(nj - j4) : 4;
            for (int64_t h4 = 0; h4 < nh; h4 += 4) {
                int mb = nh - h4 < 4 ? (int)(nh - h4) : 4;
                float a[4][4];
                dsa_cpu_dot_tile(k + j4, nr, q + h4 * hd, hd, mb, hd, a);
                for (int r = 0; r < nr; r++)
                    for (int h = 0; h < mb; h++)
                        sc[h4 + h][j4 + r] = p->scale * a[r][h];
            }
        }
        for (int64_t h = 0; h < nh; h++) {
            dsa_cpu_softmax_chunk(sc[h], nj, &mx[h], &l[h], acc + h * hd, hd);
            for (int64_t jj = 0; jj < nj; jj++)
                dsa_cpu_axpy(acc + h * hd, sc[h][jj], v[jj], hd);
        }
    }
    for (int64_t h = 0; h < nh; h++) {
        float *o = (float *)p->out + (t * p->n_heads + h0 + h) * hd;
        float inv = 1.0f / l[h];
        for (int64_t i = 0; i < hd; i++)
            o[i] = acc[h * hd + i] * inv;
    }
}

static void gqa_range(void *ctx, int64_t b, int64_t e, int tid)
{
    gqa_job *j = ctx;
    const dsa_gqa_attn_params *p = j->p;
    int64_t group = p->n_heads / p->n_kv_heads;
    float *acc = dsa_cpu_scratch_get(&j->be->scratch[tid], DSA_CPU_SCR_TMP,
                                     (size_t)(GQA_HEADS * p->head_dim));
    if (!acc) {
        dsa_cpu_err_set(&j->err, DSA_NOMEM);
        return;
    }
    for (int64_t it = b; it < e; it++) {
        int64_t t = it / p->n_kv_heads, g = it % p->n_kv_heads;
        for (int64_t h0 = 0; h0 < group; h0 += GQA_HEADS) {
            int64_t nh = group - h0 < GQA_HEADS ? group - h0 : GQA_HEADS;
            gqa_heads(p, t, g, g * group + h0, nh, acc);
        }
    }
}

dsa_err dsa_cpu_gqa_attn(dsa_backend *be_, const dsa_gqa_attn_params *p)
{
    dsa_cpu_backend *be = dsa_cpu_be(be_);
    gqa_job j = {.be = be, .p = p};
    atomic_init(&j.err, DSA_OK);
    dsa_cpu_parallel_for(be, p->n_tokens * p->n_kv_heads, 1, gqa_range, &j);
    return (dsa_err)atomic_load(&j.err);
}

dsa_err dsa_cpu_bias_add(dsa_backend *be_, const dsa_bias_add_params *p)
{
    (void)be_;
    for (int64_t i = 0; i < p->dim; i++) {
        float b = dsa_weight_get(p->bias, 0, i);
        for (int64_t t = 0; t < p->n_rows; t++)
            ((float *)p->x)[t * p->ld + i] += b;
    }
    return DSA_OK;
}
