/* test_gpu_fi.c - parity group "mla": absorbed MLA attention at V3/R1's
 * real shape on one TP=8 rank (16 heads, kv_rank 512, rope 64, BF16 cache
 * in blocks of 64), which the CUDA backend runs on FlashInfer's Hopper
 * kernel (kernels/cuda/fi_mla.cu): decode at contexts 1, 63, 4096 and
 * 32768 with batch 1 and 128, a batch of mixed lengths, causal prefill
 * chunks of 1, 500 and 8192 tokens, 128 heads (two head tiles) and block
 * size 16.  The CPU backend is the reference on a sample of the query
 * tokens (always the first and the last; the whole op runs on the GPU), and
 * every (token, head) row is compared on its own: the report gives the
 * worst row's relative L2 error, where it is, and how many rows exceed the
 * tolerance (one bad row fails the case).  The GPU output is poisoned (NaN)
 * first, so an unwritten row fails.  Each case also checks which kernel ran
 * (FlashInfer; ours under DSA_CUDA_MLA=portable) and prints the op's time.
 *
 * The sequences' block tables are rotations over one shared pool of random
 * cache blocks (as prefix sharing would make them), so 128 contexts of
 * 32768 entries need one 32768-entry cache, not 128.
 *
 * Group "prefill": the non-absorbed causal prefill kernel (fi_prefill.h,
 * FlashInfer's FA3: q/k 192, v 128, 16 heads) on prompts of 1, 500 and 8192
 * tokens and a ragged batch of chunks after cached context, against
 * attention computed here in double on sampled rows, per row. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/fi_prefill.h"
#include "tests/gpu/gpu_harness.h"

#define FI_H 16
#define FI_R 512
#define FI_P 64
#define FI_QK 192   /* q row per head: [nope 128 | rope 64]; q_pe inside it */
#define FI_REF_MAX 6

typedef struct fi_case {
    const char *name;
    int n_heads, bs;
    int n_seqs, ctx;    /* decode: n_seqs tokens, one per sequence */
    int mixed;          /* decode: lengths drawn from 1..ctx */
    int prefill;        /* > 0: one sequence of ctx, its last `prefill` positions */
} fi_case;

static void fi_die(dsa_err err, const char *what)
{
    if (err) {
        fprintf(stderr, "FATAL: %s: %s (%s)\n", what, dsa_strerror(err), dsa_errmsg());
        exit(1);
    }
}

static double fi_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void fi_run_case(gh *h, const fi_case *c)
{
    int64_t H = c->n_heads, W = FI_R + FI_P, bs = c->bs;
    int n_seqs = c->prefill ? 1 : c->n_seqs;
    int64_t T = c->prefill ? c->prefill : c->n_seqs;
    int *len = malloc((size_t)n_seqs * sizeof *len);
    int max_len = 1;
    for (int s = 0; s < n_seqs; s++) {
        len[s] = c->mixed && s > 0 ? 1 + (int)(gh_next(h) % (uint64_t)c->ctx) : c->ctx;
        max_len = len[s] > max_len ? len[s] : max_len;
    }
    /* pool of random blocks; sequence s starts at block 7 s (mod pool) */
    int64_t mb = (max_len + bs - 1) / bs, n_blocks = mb + 61;
    int32_t *bt = malloc((size_t)(n_seqs * mb) * 4);
    for (int s = 0; s < n_seqs; s++)
        for (int64_t j = 0; j < mb; j++)
            bt[s * mb + j] = (int32_t)((7 * (int64_t)s + j) % n_blocks);
    float *cache = gh_rand(h, n_blocks * bs * W, 1.0f);
    dsa_kv_layer kg = {.n_blocks = n_blocks, .block_size = bs, .width = W}, kc = kg;
    kg.data = gh_act(h, h->gpu, cache, n_blocks * bs * W);
    kc.data = gh_act(h, h->cpu, cache, n_blocks * bs * W);
    free(cache);

    int32_t *seq = malloc((size_t)T * 4), *pos = malloc((size_t)T * 4);
    for (int64_t t = 0; t < T; t++) {
        seq[t] = c->prefill ? 0 : (int32_t)t;
        pos[t] = c->prefill ? (int32_t)(len[0] - c->prefill + t) : len[t] - 1;
    }
    float *ql = gh_rand(h, T * H * FI_R, 1.0f), *qr = gh_rand(h, T * H * FI_QK, 1.0f);
    void *gql = gh_act(h, h->gpu, ql, T * H * FI_R), *gqr = gh_act(h, h->gpu, qr, T * H * FI_QK);
    void *gsq = gh_bytes(h, h->gpu, seq, (size_t)T * 4), *gps = gh_bytes(h, h->gpu, pos, (size_t)T * 4);
    void *gbt = gh_bytes(h, h->gpu, bt, (size_t)(n_seqs * mb) * 4);
    float *zero = calloc((size_t)(T * H * FI_R), 4);
    void *go = gh_act(h, h->gpu, zero, T * H * FI_R);
    unsigned char *ff = malloc((size_t)(T * H * FI_R) * 2);
    memset(ff, 0xff, (size_t)(T * H * FI_R) * 2);
    fi_die(h->gpu->ops->upload(h->gpu, go, ff, (size_t)(T * H * FI_R) * 2), "poison");
    free(ff);
    float scale = 1.0f / sqrtf((float)FI_QK);
    dsa_mla_attn_params ag = {.out = go, .q_lat = gql, .q_pe = (uint16_t *)gqr + 128,
                              .ld_qpe_token = H * FI_QK, .ld_qpe_head = FI_QK, .cache = &kg,
                              .seq = gsq, .pos = gps, .block_tables = gbt, .ld_block_table = mb,
                              .n_tokens = T, .n_heads = H, .kv_rank = FI_R, .rope_dim = FI_P,
                              .scale = scale};
    fi_die(h->gpu->ops->mla_attn(h->gpu, &ag), "gpu mla_attn");
    fi_die(h->gpu->ops->sync(h->gpu), "sync");
    const char *path = dsa_cuda_last_attn_path(h->gpu);
    float *got = gh_get(h, h->gpu, go, T * H * FI_R);
    /* time: 5 more calls (same inputs, output rewritten) */
    double t0 = fi_now();
    for (int i = 0; i < 5; i++)
        fi_die(h->gpu->ops->mla_attn(h->gpu, &ag), "gpu mla_attn");
    fi_die(h->gpu->ops->sync(h->gpu), "sync");
    double us = (fi_now() - t0) / 5 * 1e6;

    /* reference tokens: first, last and evenly spaced between */
    int64_t n_ref = T < FI_REF_MAX ? T : FI_REF_MAX, ref_t[FI_REF_MAX];
    for (int64_t i = 0; i < n_ref; i++)
        ref_t[i] = n_ref == 1 ? 0 : i * (T - 1) / (n_ref - 1);
    int32_t rseq[FI_REF_MAX], rpos[FI_REF_MAX];
    float *rql = malloc((size_t)(n_ref * H * FI_R) * 4), *rqr = malloc((size_t)(n_ref * H * FI_QK) * 4);
    for (int64_t i = 0; i < n_ref; i++) {
        rseq[i] = seq[ref_t[i]], rpos[i] = pos[ref_t[i]];
        memcpy(rql + i * H * FI_R, ql + ref_t[i] * H * FI_R, (size_t)(H * FI_R) * 4);
        memcpy(rqr + i * H * FI_QK, qr + ref_t[i] * H * FI_QK, (size_t)(H * FI_QK) * 4);
    }
    void *cql = gh_act(h, h->cpu, rql, n_ref * H * FI_R), *cqr = gh_act(h, h->cpu, rqr, n_ref * H * FI_QK);
    void *csq = gh_bytes(h, h->cpu, rseq, (size_t)n_ref * 4), *cps = gh_bytes(h, h->cpu, rpos, (size_t)n_ref * 4);
    void *cbt = gh_bytes(h, h->cpu, bt, (size_t)(n_seqs * mb) * 4);
    void *co = gh_act(h, h->cpu, zero, n_ref * H * FI_R);
    dsa_mla_attn_params ac = ag;
    ac.out = co, ac.q_lat = cql, ac.q_pe = (float *)cqr + 128, ac.cache = &kc, ac.seq = csq;
    ac.pos = cps, ac.block_tables = cbt, ac.n_tokens = n_ref;
    fi_die(h->cpu->ops->mla_attn(h->cpu, &ac), "cpu mla_attn");
    float *ref = gh_get(h, h->cpu, co, n_ref * H * FI_R);

    /* per-row relative L2 error */
    double worst = 0;
    int64_t worst_t = -1, worst_h = -1, n_bad = 0;
    for (int64_t i = 0; i < n_ref; i++)
        for (int64_t hh = 0; hh < H; hh++) {
            const float *a = got + (ref_t[i] * H + hh) * FI_R, *b = ref + (i * H + hh) * FI_R;
            double num = 0, den = 0;
            for (int64_t j = 0; j < FI_R; j++) {
                double d = (double)a[j] - (double)b[j];
                num += d * d;
                den += (double)b[j] * b[j];
            }
            double e = sqrt(num / (den > 0 ? den : 1));
            if (!isfinite(e))
                e = INFINITY;
            if (!(e <= TOL_ATTN))
                n_bad++;
            if (!(e <= worst) || worst_t < 0)
                worst = e, worst_t = ref_t[i], worst_h = hh;
        }
    const char *env = getenv("DSA_CUDA_MLA");
    const char *want = env && !strcmp(env, "portable") ? "mla-portable" : "fi-mla-hopper";
    char shape[96], note[160];
    snprintf(shape, sizeof shape, "%s H=%lld bs=%lld T=%lld", c->name, (long long)H,
             (long long)bs, (long long)T);
    snprintf(note, sizeof note, "%s %.0fus worst row t=%lld h=%lld, %lld/%lld rows > tol", path,
             us, (long long)worst_t, (long long)worst_h, (long long)n_bad,
             (long long)(n_ref * H));
    gh_report(h, "mla_attn_real", shape, note, worst, TOL_ATTN,
              n_bad == 0 && !strcmp(path, want));

    free(got), free(ref), free(rql), free(rqr), free(ql), free(qr), free(zero);
    free(seq), free(pos), free(bt), free(len);
    void *gb[] = {kg.data, gql, gqr, gsq, gps, gbt, go};
    void *cb[] = {kc.data, cql, cqr, csq, cps, cbt, co};
    for (size_t i = 0; i < sizeof gb / sizeof gb[0]; i++)
        gh_free(h->gpu, gb[i]);
    for (size_t i = 0; i < sizeof cb / sizeof cb[0]; i++)
        gh_free(h->cpu, cb[i]);
}

void gh_group_fi_mla(gh *h)
{
    static const fi_case cases[] = {
        {"decode ctx=1", FI_H, 64, 1, 1, 0, 0},
        {"decode ctx=63", FI_H, 64, 1, 63, 0, 0},
        {"decode ctx=4096", FI_H, 64, 1, 4096, 0, 0},
        {"decode ctx=32768", FI_H, 64, 1, 32768, 0, 0},
        {"decode ctx=1", FI_H, 64, 128, 1, 0, 0},
        {"decode ctx=63", FI_H, 64, 128, 63, 0, 0},
        {"decode ctx=4096", FI_H, 64, 128, 4096, 0, 0},
        {"decode ctx=32768", FI_H, 64, 128, 32768, 0, 0},
        {"decode mixed<=32768", FI_H, 64, 128, 32768, 1, 0},
        {"decode ctx=4096", 128, 64, 4, 4096, 0, 0},
        {"decode ctx=1000", FI_H, 16, 7, 1000, 0, 0},
        {"prefill 1", FI_H, 64, 0, 1, 0, 1},
        {"prefill 500", FI_H, 64, 0, 500, 0, 500},
        {"prefill 8192", FI_H, 64, 0, 8192, 0, 8192},
        {"chunk 500 @ctx 9000", FI_H, 64, 0, 9000, 0, 500},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        fi_run_case(h, &cases[i]);
}

/* ---- group "prefill": FA3 ragged causal prefill ---------------------------- */

typedef struct fp_case {
    const char *name;
    int n_seqs;
    int qo_len[4], kv_len[4];
} fp_case;

static void fp_run_case(gh *h, const fp_case *c)
{
    const int64_t H = 16, QK = DSA_FI_PREFILL_QK, VO = DSA_FI_PREFILL_VO;
    int32_t qo_ip[5] = {0}, kv_ip[5] = {0};
    for (int s = 0; s < c->n_seqs; s++) {
        qo_ip[s + 1] = qo_ip[s] + c->qo_len[s];
        kv_ip[s + 1] = kv_ip[s] + c->kv_len[s];
    }
    int64_t nq = qo_ip[c->n_seqs], nkv = kv_ip[c->n_seqs];
    float *q = gh_rand(h, nq * H * QK, 1.0f), *k = gh_rand(h, nkv * H * QK, 1.0f);
    float *v = gh_rand(h, nkv * H * VO, 1.0f);
    void *gq = gh_act(h, h->gpu, q, nq * H * QK), *gk = gh_act(h, h->gpu, k, nkv * H * QK);
    void *gv = gh_act(h, h->gpu, v, nkv * H * VO);
    void *gqi = gh_bytes(h, h->gpu, qo_ip, sizeof qo_ip), *gki = gh_bytes(h, h->gpu, kv_ip, sizeof kv_ip);
    float *zero = calloc((size_t)(nq * H * VO), 4);
    void *go = gh_act(h, h->gpu, zero, nq * H * VO);
    unsigned char *ff = malloc((size_t)(nq * H * VO) * 2);
    memset(ff, 0xff, (size_t)(nq * H * VO) * 2);
    fi_die(h->gpu->ops->upload(h->gpu, go, ff, (size_t)(nq * H * VO) * 2), "poison");
    free(ff);
    float scale = 1.0f / sqrtf((float)QK);
    dsa_fi_prefill_params p = {.out = go, .q = gq, .k = gk, .v = gv,
                               .ld_o_token = H * VO, .ld_o_head = VO,
                               .ld_q_token = H * QK, .ld_q_head = QK,
                               .ld_k_token = H * QK, .ld_k_head = QK,
                               .ld_v_token = H * VO, .ld_v_head = VO,
                               .qo_indptr = gqi, .kv_indptr = gki, .n_seqs = c->n_seqs,
                               .n_heads = H, .n_q = nq, .n_kv = nkv, .scale = scale};
    fi_die(dsa_fi_prefill(h->gpu, &p), "fi prefill");
    fi_die(h->gpu->ops->sync(h->gpu), "sync");
    float *got = gh_get(h, h->gpu, go, nq * H * VO);
    double t0 = fi_now();
    for (int i = 0; i < 5; i++)
        fi_die(dsa_fi_prefill(h->gpu, &p), "fi prefill");
    fi_die(h->gpu->ops->sync(h->gpu), "sync");
    double us = (fi_now() - t0) / 5 * 1e6;

    /* reference rows: per sequence its first, middle and last query row */
    double worst = 0;
    int64_t worst_r = -1, worst_h = -1, n_bad = 0, n_rows = 0;
    double *sc = malloc((size_t)nkv * sizeof *sc);
    for (int s = 0; s < c->n_seqs; s++) {
        int ql = c->qo_len[s], kl = c->kv_len[s];
        int rows[3] = {0, ql / 2, ql - 1};
        for (int ri = 0; ri < 3; ri++) {
            if (ri > 0 && rows[ri] == rows[ri - 1])
                continue;
            int64_t r = qo_ip[s] + rows[ri];
            int n_keys = rows[ri] + kl - ql + 1;
            for (int64_t hh = 0; hh < H; hh++) {
                const float *qq = q + (r * H + hh) * QK;
                double mx = -INFINITY;
                for (int j = 0; j < n_keys; j++) {
                    const float *kk = k + ((kv_ip[s] + j) * H + hh) * QK;
                    double d = 0;
                    for (int e = 0; e < QK; e++)
                        d += (double)qq[e] * kk[e];
                    sc[j] = d * scale;
                    mx = sc[j] > mx ? sc[j] : mx;
                }
                double o[DSA_FI_PREFILL_VO] = {0}, z = 0;
                for (int j = 0; j < n_keys; j++) {
                    double pj = exp(sc[j] - mx);
                    z += pj;
                    const float *vv = v + ((kv_ip[s] + j) * H + hh) * VO;
                    for (int e = 0; e < VO; e++)
                        o[e] += pj * vv[e];
                }
                double num = 0, den = 0;
                const float *a = got + (r * H + hh) * VO;
                for (int e = 0; e < VO; e++) {
                    double d = a[e] - o[e] / z;
                    num += d * d;
                    den += o[e] / z * (o[e] / z);
                }
                double err = sqrt(num / (den > 0 ? den : 1));
                if (!isfinite(err))
                    err = INFINITY;
                n_rows++;
                if (!(err <= TOL_ATTN))
                    n_bad++;
                if (!(err <= worst) || worst_r < 0)
                    worst = err, worst_r = r, worst_h = hh;
            }
        }
    }
    char shape[96], note[160];
    snprintf(shape, sizeof shape, "%s H=16 q=%lld kv=%lld", c->name, (long long)nq, (long long)nkv);
    snprintf(note, sizeof note, "%.0fus worst row r=%lld h=%lld, %lld/%lld rows > tol", us,
             (long long)worst_r, (long long)worst_h, (long long)n_bad, (long long)n_rows);
    gh_report(h, "fi_prefill", shape, note, worst, TOL_ATTN, n_bad == 0);
    free(sc), free(got), free(q), free(k), free(v), free(zero);
    void *gb[] = {gq, gk, gv, gqi, gki, go};
    for (size_t i = 0; i < sizeof gb / sizeof gb[0]; i++)
        gh_free(h->gpu, gb[i]);
}

void gh_group_fi_prefill(gh *h)
{
    static const fp_case cases[] = {
        {"prompt 1", 1, {1}, {1}},
        {"prompt 500", 1, {500}, {500}},
        {"prompt 8192", 1, {8192}, {8192}},
        {"chunks after context", 4, {300, 1, 129, 2048}, {1000, 77, 129, 6000}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        fp_run_case(h, &cases[i]);
}
