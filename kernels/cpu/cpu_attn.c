/* cpu_attn.c - absorbed MLA attention over the paged latent cache
 * (backend.h dsa_mla_attn_params, MODEL_SPEC.md §3).
 *
 * One work item is (token, group of up to ATTN_HEADS heads): the token's
 * cache entries are visited in chunks of ATTN_CHUNK, every head of the group
 * scores the chunk while it is in L1/L2, and an online softmax (running max
 * and sum, rescaling the 512-wide accumulator when the max grows) folds the
 * chunk into the output.  The cache is read once per (token, group). */
#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu_internal.h"

#ifdef __AVX512F__
#include <immintrin.h>
#endif

#define ATTN_HEADS 8
#define ATTN_CHUNK 32

typedef struct attn_job {
    dsa_cpu_backend *be;
    const dsa_mla_attn_params *p;
    int64_t n_groups;
    _Atomic int err;
} attn_job;

/* acc[h, :] += sum_jj pr[h][jj] * kv[jj][:] for nh heads over R columns:
 * 4 heads x 64 columns of accumulators stay in registers over the chunk. */
static void pv_accumulate(float *acc, int64_t nh, int64_t R, const float *const *kv, int64_t nj,
                          float pr[ATTN_HEADS][ATTN_CHUNK])
{
    int64_t c = 0;
#ifdef __AVX512F__
    for (; c + 64 <= R; c += 64)
        for (int64_t h0 = 0; h0 < nh; h0 += 4) {
            int hn = nh - h0 < 4 ? (int)(nh - h0) : 4;
            __m512 a[4][4];
            for (int h = 0; h < hn; h++)
                for (int v = 0; v < 4; v++)
                    a[h][v] = _mm512_loadu_ps(acc + (h0 + h) * R + c + 16 * v);
            for (int64_t jj = 0; jj < nj; jj++) {
                const float *k = kv[jj] + c;
                __m512 k0 = _mm512_loadu_ps(k), k1 = _mm512_loadu_ps(k + 16);
                __m512 k2 = _mm512_loadu_ps(k + 32), k3 = _mm512_loadu_ps(k + 48);
                for (int h = 0; h < hn; h++) {
                    __m512 pv = _mm512_set1_ps(pr[h0 + h][jj]);
                    a[h][0] = _mm512_fmadd_ps(pv, k0, a[h][0]);
                    a[h][1] = _mm512_fmadd_ps(pv, k1, a[h][1]);
                    a[h][2] = _mm512_fmadd_ps(pv, k2, a[h][2]);
                    a[h][3] = _mm512_fmadd_ps(pv, k3, a[h][3]);
                }
            }
            for (int h = 0; h < hn; h++)
                for (int v = 0; v < 4; v++)
                    _mm512_storeu_ps(acc + (h0 + h) * R + c + 16 * v, a[h][v]);
        }
#endif
    for (int64_t h = 0; h < nh; h++)
        for (int64_t jj = 0; jj < nj; jj++)
            for (int64_t i = c; i < R; i++)
                acc[h * R + i] += pr[h][jj] * kv[jj][i];
}

static void attn_item(const dsa_mla_attn_params *p, int64_t t, int64_t h0, int64_t nh,
                      float *acc /* [nh, R] */)
{
    const dsa_kv_layer *c = p->cache;
    int64_t R = p->kv_rank, P = p->rope_dim;
    int64_t s = p->seq[t], n_ctx = (int64_t)p->pos[t] + 1;
    const int32_t *bt = p->block_tables + s * p->ld_block_table;
    float mx[ATTN_HEADS], l[ATTN_HEADS], sc[ATTN_HEADS][ATTN_CHUNK];
    const float *kv[ATTN_CHUNK], *kp[ATTN_CHUNK];
    const float *ql = (const float *)p->q_lat + (t * p->n_heads + h0) * R;
    const float *qp = (const float *)p->q_pe + t * p->ld_qpe_token + h0 * p->ld_qpe_head;
    for (int64_t h = 0; h < nh; h++) {
        mx[h] = -INFINITY;
        l[h] = 0.0f;
    }
    memset(acc, 0, (size_t)(nh * R) * sizeof(float));
    for (int64_t j0 = 0; j0 < n_ctx; j0 += ATTN_CHUNK) {
        int64_t nj = n_ctx - j0 < ATTN_CHUNK ? n_ctx - j0 : ATTN_CHUNK;
        for (int64_t jj = 0; jj < nj; jj++) {
            int64_t j = j0 + jj;
            int64_t slot = (int64_t)bt[j / c->block_size] * c->block_size + j % c->block_size;
            kv[jj] = (const float *)c->data + slot * c->width;
            kp[jj] = kv[jj] + R;
        }
        /* Scores: tiles of 4 entries x 4 heads, latent and rope parts. */
        for (int64_t j4 = 0; j4 < nj; j4 += 4) {
            int nr = nj - j4 < 4 ? (int)(nj - j4) : 4;
            for (int64_t h4 = 0; h4 < nh; h4 += 4) {
                int mb = nh - h4 < 4 ? (int)(nh - h4) : 4;
                float a[4][4], b[4][4];
                dsa_cpu_dot_tile(kv + j4, nr, ql + h4 * R, R, mb, R, a);
                dsa_cpu_dot_tile(kp + j4, nr, qp + h4 * p->ld_qpe_head, p->ld_qpe_head, mb, P, b);
                for (int r = 0; r < nr; r++)
                    for (int h = 0; h < mb; h++)
                        sc[h4 + h][j4 + r] = p->scale * (a[r][h] + b[r][h]);
            }
        }
        /* Online softmax: rescale when the running max grows. */
        for (int64_t h = 0; h < nh; h++)
            dsa_cpu_softmax_chunk(sc[h], nj, &mx[h], &l[h], acc + h * R, R);
        pv_accumulate(acc, nh, R, kv, nj, sc);
    }
    for (int64_t h = 0; h < nh; h++) {
        float *o = (float *)p->out + (t * p->n_heads + h0 + h) * R;
        float inv = 1.0f / l[h];
        for (int64_t i = 0; i < R; i++)
            o[i] = acc[h * R + i] * inv;
    }
}

static void attn_range(void *ctx, int64_t b, int64_t e, int tid)
{
    attn_job *j = ctx;
    const dsa_mla_attn_params *p = j->p;
    float *acc = dsa_cpu_scratch_get(&j->be->scratch[tid], DSA_CPU_SCR_TMP,
                                     (size_t)(ATTN_HEADS * p->kv_rank));
    if (!acc) {
        dsa_cpu_err_set(&j->err, DSA_NOMEM);
        return;
    }
    for (int64_t it = b; it < e; it++) {
        int64_t t = it / j->n_groups, g = it % j->n_groups;
        int64_t h0 = g * ATTN_HEADS;
        int64_t nh = p->n_heads - h0 < ATTN_HEADS ? p->n_heads - h0 : ATTN_HEADS;
        attn_item(p, t, h0, nh, acc);
    }
}

dsa_err dsa_cpu_mla_attn(dsa_backend *be_, const dsa_mla_attn_params *p)
{
    dsa_cpu_backend *be = dsa_cpu_be(be_);
    attn_job j = {.be = be, .p = p, .n_groups = (p->n_heads + ATTN_HEADS - 1) / ATTN_HEADS};
    atomic_init(&j.err, DSA_OK);
    dsa_cpu_parallel_for(be, p->n_tokens * j.n_groups, 1, attn_range, &j);
    return (dsa_err)atomic_load(&j.err);
}
