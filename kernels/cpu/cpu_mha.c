/* cpu_mha.c - non-absorbed causal prefill attention (backend.h
 * dsa_mha_prefill_params): the reference the CUDA op (FlashInfer FA3,
 * cuda_mha_prefill.cu) is checked against, and the path a test turns on to
 * prove the non-absorbed form equals absorbed MLA.
 *
 * One work item is (query row, head): scores over the row's causal span
 * into a per-thread buffer, an exact two-pass softmax, then the weighted
 * sum of v.  Each item reads only its own inputs, so a row's result does
 * not depend on what else is in the batch. */
#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu_internal.h"

typedef struct mha_job {
    dsa_cpu_backend *be;
    const dsa_mha_prefill_params *p;
    int64_t kv_max;
    _Atomic int err;
} mha_job;

/* The chunk holding query row r: the last s with qo_indptr[s] <= r. */
static int64_t chunk_of(const dsa_mha_prefill_params *p, int64_t r)
{
    int64_t lo = 0, hi = p->n_seqs - 1;
    while (lo < hi) {
        int64_t mid = (lo + hi + 1) / 2;
        if (p->qo_indptr[mid] <= r)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

static void mha_item(const dsa_mha_prefill_params *p, int64_t r, int64_t h, float *sc)
{
    int64_t s = chunk_of(p, r);
    int64_t qo_len = p->qo_indptr[s + 1] - p->qo_indptr[s];
    int64_t kv0 = p->kv_indptr[s], kv_len = p->kv_indptr[s + 1] - kv0;
    int64_t n = (r - p->qo_indptr[s]) + kv_len - qo_len + 1; /* keys 0..n-1 */
    int64_t N = p->nope_dim, P = p->rope_dim, V = p->v_dim;
    const float *q = (const float *)p->q + r * p->ld_q_token + h * p->ld_q_head;
    float mx = -INFINITY;
    for (int64_t j = 0; j < n; j++) {
        const float *kn = (const float *)p->k_nope + (kv0 + j) * p->ld_k_token + h * p->ld_k_head;
        const float *kp = (const float *)p->k_pe + (kv0 + j) * p->ld_kpe;
        float d = 0.0f;
        for (int64_t i = 0; i < N; i++)
            d += q[i] * kn[i];
        for (int64_t i = 0; i < P; i++)
            d += q[N + i] * kp[i];
        sc[j] = p->scale * d;
        mx = sc[j] > mx ? sc[j] : mx;
    }
    float sum = 0.0f;
    for (int64_t j = 0; j < n; j++) {
        sc[j] = expf(sc[j] - mx);
        sum += sc[j];
    }
    float *o = (float *)p->out + (r * p->n_heads + h) * V;
    memset(o, 0, (size_t)V * sizeof *o);
    for (int64_t j = 0; j < n; j++) {
        const float *v = (const float *)p->v + (kv0 + j) * p->ld_v_token + h * p->ld_v_head;
        for (int64_t i = 0; i < V; i++)
            o[i] += sc[j] * v[i];
    }
    float inv = 1.0f / sum;
    for (int64_t i = 0; i < V; i++)
        o[i] *= inv;
}

static void mha_range(void *ctx, int64_t b, int64_t e, int tid)
{
    mha_job *j = ctx;
    float *sc = dsa_cpu_scratch_get(&j->be->scratch[tid], DSA_CPU_SCR_TMP, (size_t)j->kv_max);
    if (!sc) {
        dsa_cpu_err_set(&j->err, DSA_NOMEM);
        return;
    }
    for (int64_t it = b; it < e; it++)
        mha_item(j->p, it / j->p->n_heads, it % j->p->n_heads, sc);
}

dsa_err dsa_cpu_mha_prefill(dsa_backend *be_, const dsa_mha_prefill_params *p)
{
    dsa_cpu_backend *be = dsa_cpu_be(be_);
    if (p->n_seqs <= 0 || p->n_q <= 0)
        return DSA_OK;
    mha_job j = {.be = be, .p = p};
    for (int64_t s = 0; s < p->n_seqs; s++) {
        int64_t n = p->kv_indptr[s + 1] - p->kv_indptr[s];
        j.kv_max = n > j.kv_max ? n : j.kv_max;
    }
    atomic_init(&j.err, DSA_OK);
    dsa_cpu_parallel_for(be, p->n_q * p->n_heads, 4, mha_range, &j);
    return (dsa_err)atomic_load(&j.err);
}
