/* test_model_graph_dist.c - decode graphs with the collectives inside, at
 * TP=2 x PP=2, without a GPU: four threads each hold one shard of the tiny
 * golden model (tp_rank, stage) on a recording backend (rec_backend.h) and
 * a thread communicator whose ops are "graph safe" as NCCL's are: each op
 * is queued in stream order through rec_call, so while a rank captures,
 * its all-reduces, all-gathers and the PP hand-off are recorded into the
 * graph and run at each replay.  Checked on every rank: decode steps are
 * captured and replayed, no host call happens inside a capture, the logits
 * of the last stage equal the single-rank CPU model's, and a backend that
 * drops its graphs (a scratch reallocation on CUDA) makes every rank
 * capture again with the results unchanged. */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/rec_backend.h"
#include "tests/support.h"
#include "worker/comm.h"
#include "worker/loader.h"
#include "worker/model.h"

enum { TP = 2, PP = 2, NR = TP * PP, N_BLOCKS = 64, BLOCK = 4, BPS = 16, NSEQ = 3,
       STEPS = 8, DROP_AT = 5 };

/* ---- The thread communicator ---------------------------------------------- */

typedef struct tc_shared {
    pthread_barrier_t tp_bar[PP];   /* the two ranks of a stage */
    pthread_barrier_t pp_bar[TP];   /* the two stages of a tp_rank */
    const void *slot[NR];           /* what each rank publishes */
    float *tmp[NR];
} tc_shared;

typedef struct tc {
    dsa_comm base;
    tc_shared *sh;
    rec_backend *rb;                /* this rank's backend: ops go in stream order */
    int rank;
} tc;

typedef struct tc_arg {
    tc *c;
    void *buf;
    const void *in;
    int64_t n;
    size_t bytes;
    int kind;                       /* 0 all-reduce, 1 all-gather, 2 send, 3 recv */
} tc_arg;

static dsa_err tc_run(void *a_)
{
    tc_arg *a = a_;
    tc *c = a->c;
    tc_shared *sh = c->sh;
    int st = c->base.stage, tr = c->base.tp_rank;
    pthread_barrier_t *tb = &sh->tp_bar[st], *pb = &sh->pp_bar[tr];
    switch (a->kind) {
    case 0: { /* F32 sum over the stage's ranks, in rank order on every rank */
        sh->slot[c->rank] = a->buf;
        pthread_barrier_wait(tb);
        float *out = sh->tmp[c->rank];
        for (int64_t i = 0; i < a->n; i++) {
            float v = 0;
            for (int r = 0; r < TP; r++)
                v += ((const float *)sh->slot[st * TP + r])[i];
            out[i] = v;
        }
        pthread_barrier_wait(tb);
        memcpy(a->buf, out, (size_t)a->n * sizeof(float));
        pthread_barrier_wait(tb);
        return DSA_OK;
    }
    case 1:
        sh->slot[c->rank] = a->in;
        pthread_barrier_wait(tb);
        for (int r = 0; r < TP; r++)
            memcpy((char *)a->buf + (size_t)r * a->bytes, sh->slot[st * TP + r], a->bytes);
        pthread_barrier_wait(tb);
        return DSA_OK;
    case 2:
        sh->slot[c->rank] = a->in;
        pthread_barrier_wait(pb);
        pthread_barrier_wait(pb); /* the receiver copied */
        return DSA_OK;
    default:
        pthread_barrier_wait(pb);
        memcpy(a->buf, sh->slot[(st - 1) * TP + tr], a->bytes);
        pthread_barrier_wait(pb);
        return DSA_OK;
    }
}

static dsa_err tc_queue(tc *c, tc_arg a)
{
    a.c = c;
    return rec_call(c->rb, tc_run, &a, sizeof a);
}

static dsa_err tc_all_reduce(dsa_comm *c_, void *buf, int64_t n, dsa_dtype dt)
{
    tc *c = (tc *)c_;
    cr_assert_eq(dt, DSA_DTYPE_F32);
    c_->stats.n_allreduce++;
    return tc_queue(c, (tc_arg){.buf = buf, .n = n, .kind = 0});
}

static dsa_err tc_all_gather(dsa_comm *c_, void *out, const void *in, int64_t n, dsa_dtype dt)
{
    c_->stats.n_allgather++;
    return tc_queue((tc *)c_, (tc_arg){.buf = out, .in = in, .n = n,
                                       .bytes = (size_t)n * dsa_dtype_size(dt), .kind = 1});
}

static dsa_err tc_send(dsa_comm *c_, const void *buf, size_t bytes)
{
    c_->stats.n_p2p++;
    return tc_queue((tc *)c_, (tc_arg){.in = buf, .bytes = bytes, .kind = 2});
}

static dsa_err tc_recv(dsa_comm *c_, void *buf, size_t bytes)
{
    c_->stats.n_p2p++;
    return tc_queue((tc *)c_, (tc_arg){.buf = buf, .bytes = bytes, .kind = 3});
}

static void tc_destroy(dsa_comm *c)
{
    (void)c;
}

static const dsa_comm_ops tc_ops = {.name = "threads", .all_reduce_sum = tc_all_reduce,
                                    .all_gather = tc_all_gather, .send_next = tc_send,
                                    .recv_prev = tc_recv, .destroy = tc_destroy};

/* ---- The ranks -------------------------------------------------------------- */

typedef struct rank_ctx {
    int rank;
    tc comm;
    rec_backend *rb;
    dsa_weights *w;
    dsa_model *m;
    float *logits;              /* [STEPS + 1][NSEQ, V] on the last stage */
    dsa_model_graph_stats st_before_drop, st;
    int n_refused;
    dsa_err err;
    char msg[256];
} rank_ctx;

static int64_t V;
static pthread_barrier_t all_bar;

/* The batches every rank runs: a prefill of NSEQ sequences of different
 * lengths (one eager step), then STEPS pure decode steps of all of them. */
static void batch_of(int step, int32_t *tok, int32_t *pos, int32_t *seq, int32_t *bt,
                     int32_t *rows, dsa_batch *b)
{
    static const int plen[NSEQ] = {5, 9, 3};
    int64_t T = 0;
    for (int i = 0; i < NSEQ; i++) {
        for (int j = 0; j < BPS; j++)
            bt[i * BPS + j] = i * BPS + j;
        if (step == 0) {
            for (int j = 0; j < plen[i]; j++, T++)
                tok[T] = (int32_t)((j * 37 + 11 * i + 5) % V), pos[T] = j, seq[T] = i;
            rows[i] = (int32_t)T - 1;
        } else {
            tok[T] = (int32_t)((step * 7 + i * 3 + 1) % V);
            pos[T] = plen[i] + step - 1;
            seq[T] = i;
            rows[i] = (int32_t)T++;
        }
    }
    *b = (dsa_batch){.n_tokens = T, .tokens = tok, .pos = pos, .seq = seq, .n_seqs = NSEQ,
                     .block_tables = bt, .n_logits = NSEQ, .logit_rows = rows};
}

static void *rank_main(void *arg)
{
    rank_ctx *r = arg;
    int stage = r->rank / TP, tp_rank = r->rank % TP;
    int32_t tok[64], pos[64], seq[64], bt[NSEQ * BPS], rows[NSEQ];
    for (int step = 0; step <= STEPS && !r->err; step++) {
        if (step == DROP_AT) {
            /* every rank's backend drops its graphs, as CUDA on a scratch
             * reallocation: each bucket must be captured again */
            dsa_model_graph_stats_get(r->m, &r->st_before_drop);
            rec_drop_graphs(r->rb);
        }
        dsa_batch b;
        batch_of(step, tok, pos, seq, bt, rows, &b);
        float *out = r->w->has_head ? r->logits + (int64_t)step * NSEQ * V : NULL;
        r->err = dsa_model_forward(r->m, &b, out);
        if (r->err)
            snprintf(r->msg, sizeof r->msg, "rank %d (stage %d tp %d) step %d: %s", r->rank,
                     stage, tp_rank, step, dsa_errmsg());
        pthread_barrier_wait(&all_bar);
    }
    dsa_model_graph_stats_get(r->m, &r->st);
    r->n_refused = r->rb->n_refused;
    return NULL;
}

Test(model_graph_dist, tp2_pp2_decode_graphs_hold_the_collectives, .timeout = 120)
{
    char *dir = dsa_test_golden_dir("f32");
    cr_assert_not_null(dir);
    /* the single-rank reference on the plain CPU backend */
    dsa_weights *wref;
    dsa_backend *cpu;
    dsa_model *ref;
    cr_assert_eq(dsa_weights_load(dir, NULL, &wref), DSA_OK, "%s", dsa_errmsg());
    cr_assert_eq(dsa_backend_cpu_create(1, &cpu), DSA_OK);
    dsa_model_params mp = {.n_blocks = N_BLOCKS, .block_size = BLOCK, .max_blocks_per_seq = BPS};
    cr_assert_eq(dsa_model_create(cpu, wref, &mp, &ref), DSA_OK, "%s", dsa_errmsg());
    V = wref->cfg.vocab_size;
    int L = wref->cfg.n_layers;
    cr_assert_geq(L, 2);
    float *want = malloc((size_t)((STEPS + 1) * NSEQ * V) * sizeof(float));
    for (int step = 0; step <= STEPS; step++) {
        int32_t tok[64], pos[64], seq[64], bt[NSEQ * BPS], rows[NSEQ];
        dsa_batch b;
        batch_of(step, tok, pos, seq, bt, rows, &b);
        cr_assert_eq(dsa_model_forward(ref, &b, want + (int64_t)step * NSEQ * V), DSA_OK, "%s",
                     dsa_errmsg());
    }

    static tc_shared sh;
    memset(&sh, 0, sizeof sh);
    for (int i = 0; i < PP; i++)
        pthread_barrier_init(&sh.tp_bar[i], NULL, TP);
    for (int i = 0; i < TP; i++)
        pthread_barrier_init(&sh.pp_bar[i], NULL, PP);
    pthread_barrier_init(&all_bar, NULL, NR);
    static rank_ctx rk[NR];
    memset(rk, 0, sizeof rk);
    for (int r = 0; r < NR; r++) {
        int stage = r / TP, tp_rank = r % TP;
        rank_ctx *x = &rk[r];
        x->rank = r;
        dsa_shard shard = {.tp_rank = tp_rank, .tp_size = TP,
                           .layer_begin = stage * L / PP, .layer_end = (stage + 1) * L / PP};
        cr_assert_eq(dsa_weights_load(dir, &shard, &x->w), DSA_OK, "%s", dsa_errmsg());
        x->rb = rec_create();
        cr_assert_eq(dsa_weights_prepare(x->w, &x->rb->base), DSA_OK, "%s", dsa_errmsg());
        sh.tmp[r] = malloc((size_t)(64 * 64 + 64 * V) * sizeof(float));
        x->comm = (tc){.base = {.ops = &tc_ops, .tp_rank = tp_rank, .tp_size = TP,
                                .stage = stage, .n_stages = PP, .graph_safe = 1},
                       .sh = &sh, .rb = x->rb, .rank = r};
        dsa_model_params p = mp;
        p.comm = &x->comm.base;
        cr_assert_eq(dsa_model_create(&x->rb->base, x->w, &p, &x->m), DSA_OK, "rank %d: %s", r,
                     dsa_errmsg());
        if (x->w->has_head)
            x->logits = malloc((size_t)((STEPS + 1) * NSEQ * V) * sizeof(float));
    }
    pthread_t th[NR];
    for (int r = 0; r < NR; r++)
        cr_assert_eq(pthread_create(&th[r], NULL, rank_main, &rk[r]), 0);
    for (int r = 0; r < NR; r++)
        pthread_join(th[r], NULL);

    for (int r = 0; r < NR; r++) {
        rank_ctx *x = &rk[r];
        cr_assert_eq(x->err, DSA_OK, "%s", x->msg);
        /* step 0 prefill (eager, no graph), step 1 the bucket's eager
         * warm-up, then capture + replay; after the drop one recapture */
        cr_expect_eq(x->st.n_eager, 1, "rank %d: %lld eager decode steps", r,
                     (long long)x->st.n_eager);
        cr_expect_eq(x->st_before_drop.n_captured, 1, "rank %d", r);
        cr_expect_eq(x->st.n_captured, 2, "rank %d: %lld captures", r, (long long)x->st.n_captured);
        cr_expect_eq(x->st.n_dropped, 1, "rank %d", r);
        cr_expect_eq(x->st.n_replayed, STEPS - 1, "rank %d: %lld replays", r,
                     (long long)x->st.n_replayed);
        cr_expect_eq(x->st.n_fallbacks, 0, "rank %d", r);
        cr_expect_eq(x->n_refused, 0, "rank %d: host calls inside a capture", r);
        cr_expect_gt(x->rb->n_replayed_ops, 0);
        if (!x->w->has_head)
            continue;
        double worst = 0, scale = 0;
        int64_t n = (int64_t)(STEPS + 1) * NSEQ * V;
        for (int64_t i = 0; i < n; i++)
            scale = fmax(scale, fabs(want[i]));
        for (int64_t i = 0; i < n; i++)
            worst = fmax(worst, fabs((double)x->logits[i] - want[i]) / scale);
        cr_expect_lt(worst, 1e-5, "rank %d: logits differ from one rank's by %g", r, worst);
    }
    /* the collectives ran inside replays: the TP groups all-reduced */
    cr_expect_gt(rk[0].comm.base.stats.n_allreduce, 0);

    for (int r = 0; r < NR; r++) {
        dsa_model_destroy(rk[r].m);
        dsa_weights_release(rk[r].w, &rk[r].rb->base);
        dsa_weights_free(rk[r].w);
        dsa_backend_destroy(&rk[r].rb->base);
        free(rk[r].logits);
        free(sh.tmp[r]);
    }
    for (int i = 0; i < PP; i++)
        pthread_barrier_destroy(&sh.tp_bar[i]);
    for (int i = 0; i < TP; i++)
        pthread_barrier_destroy(&sh.pp_bar[i]);
    pthread_barrier_destroy(&all_bar);
    dsa_model_destroy(ref);
    dsa_backend_destroy(cpu);
    dsa_weights_free(wref);
    free(want);
    free(dir);
}
