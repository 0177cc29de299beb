/* dist_logits.c - rank 0 of a multi-rank test job: plays the head over the
 * MPI transport, runs a fixed workload through the TP x PP workers and
 * checks their logits against the single-rank in-process worker.
 *
 *   mpirun -np 1 dist_logits --model DIR --dump F : -np N dsa-worker
 *          --model DIR --tp T --dump-logits F --block-size 4 ...
 *
 * Workload: two micro-batches of two sequences (prompts of 5, 9, 3 and 12
 * tokens), both kept in flight every step (so PP=2 stages overlap), a
 * prefill then --decode greedy decode steps; one sequence has a presence
 * penalty (sampling state on the sampling rank), one a logit bias, one an
 * allowed-token set; every prefill asks for prompt logprobs (top 3).
 * After shutdown the same plans run through one in-process worker and the
 * logits the sampling rank dumped are compared (max |a - b| / max |b| per
 * row <= --tol), as are the sampled tokens and the prompt logprobs (ids,
 * ranks, logprobs within --tol absolute).  --loop-seconds S instead repeats the workload for S
 * seconds without checking (the fault tests kill a worker meanwhile).
 * --masks 1: the first sequence of each micro-batch samples under a grammar
 * mask (ids divisible by 3) that follows its plan in a StepMasks frame
 * (masks_later); --masks 2 never sends those frames (the job must fail). */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/options.h"
#include "proto/mpi_transport.h"
#include "worker/step.h"

#define N_MB 2
#define SEQS_PER_MB 2
#define N_SEQS (N_MB * SEQS_PER_MB)
#define BLOCK_SIZE 4
#define BLOCKS_PER_SEQ 8
#define MAX_PLANS 64

typedef struct opts {
    const char *model, *dump, *ready_file;
    long long decode, masks;
    double tol, loop_seconds, step_timeout, hello_timeout, preflight_timeout;
} opts;

#define O(f) offsetof(opts, f)
static const dsa_option options[] = {
    {"model", DSA_OPT_STRING, O(model), 0, 0, NULL, "DIR", "checkpoint directory", 1},
    {"dump", DSA_OPT_STRING, O(dump), 0, 0, NULL, "FILE",
     "logits file the sampling worker writes (--dump-logits)", 0},
    {"ready-file", DSA_OPT_STRING, O(ready_file), 0, 0, NULL, "FILE",
     "created once every worker said Hello", 0},
    {"decode", DSA_OPT_INT, O(decode), 0, 16, "3", "N", "decode steps after the prefill", 0},
    {"masks", DSA_OPT_INT, O(masks), 0, 2, "0", "N",
     "1: grammar masks after the plans; 2: announced and never sent", 0},
    {"tol", DSA_OPT_DOUBLE, O(tol), 0, 1, "1e-5", "X", "relative logit tolerance", 0},
    {"loop-seconds", DSA_OPT_DOUBLE, O(loop_seconds), 0, 3600, "0", "S",
     "repeat the workload this long, no checks", 0},
    {"step-timeout", DSA_OPT_DOUBLE, O(step_timeout), 0.1, 3600, "30", "S",
     "bound on one step's result", 0},
    {"hello-timeout", DSA_OPT_DOUBLE, O(hello_timeout), 0.1, 3600, "60", "S",
     "bound on the workers' start-up", 0},
    {"preflight-timeout", DSA_OPT_DOUBLE, O(preflight_timeout), 0.1, 3600, "20", "S",
     "bound on MPI start-up", 0},
};
#undef O
#define N_OPTIONS (int)(sizeof options / sizeof options[0])

static const int prompt_len[N_SEQS] = {5, 9, 3, 12};

/* One recorded plan (deep copy: tokens and blocks point into it). */
typedef struct rec_plan {
    dsa_step_plan plan;
    dsa_step_seq seqs[SEQS_PER_MB];
    int32_t tokens[SEQS_PER_MB][16];
    int32_t blocks[SEQS_PER_MB][BLOCKS_PER_SEQ];
    uint64_t finished[SEQS_PER_MB];
    int32_t sampled[SEQS_PER_MB];
    dsa_prompt_lp plps[SEQS_PER_MB][16];  /* the distributed run's prompt logprobs */
    int n_plps[SEQS_PER_MB];
} rec_plan;

static int32_t allowed_ids[256];        /* even ids, see build_plan */
static int32_t bias_id = 5;
static uint32_t mask3[64];              /* ids divisible by 3, see build_plan */
static float bias_value = 3.0f;

typedef struct seq_run {
    uint64_t id;
    int32_t len;      /* tokens in the cache after the last step */
    int32_t last;     /* last sampled token */
} seq_run;

static void build_plan(rec_plan *rp, uint64_t step_id, int mb, seq_run *runs, int decode,
                       uint64_t round, int64_t V, const uint64_t *finish, int n_finish,
                       int masks)
{
    memset(rp, 0, sizeof *rp);
    rp->plan.step_id = step_id;
    rp->plan.n_seqs = SEQS_PER_MB;
    rp->plan.seqs = rp->seqs;
    for (int j = 0; j < SEQS_PER_MB; j++) {
        int s = mb * SEQS_PER_MB + j;
        seq_run *r = &runs[s];
        dsa_step_seq *q = &rp->seqs[j];
        q->seq_id = r->id;
        q->n_prompt = prompt_len[s];
        q->tokens = rp->tokens[j];
        if (!decode) {
            q->pos = 0;
            q->n_tokens = prompt_len[s];
            for (int t = 0; t < prompt_len[s]; t++)
                q->tokens[t] = (int32_t)(3 + (round * 131 + s * 977 + t * 7919) % (V - 3));
        } else {
            q->pos = r->len;
            q->n_tokens = 1;
            q->tokens[0] = r->last;
        }
        q->blocks = rp->blocks[j];
        q->n_blocks = BLOCKS_PER_SEQ;
        for (int b = 0; b < BLOCKS_PER_SEQ; b++)
            q->blocks[b] = s * BLOCKS_PER_SEQ + b;
        q->sample = 1;
        q->step = (uint32_t)(r->len - prompt_len[s] + (decode ? 1 : 0));
        q->sp = (dsa_sampling){.temperature = 0, .top_p = 1, .top_k = 0, .seed = 7,
                               .repetition_penalty = 1, .n_logprobs = 3,
                               .presence_penalty = s == 1 ? 0.5f : 0};
        q->prompt_lps = !decode;
        q->prompt_top = 3;
        q->next_token = -1;
        if (s == 2 && bias_id < V) {
            q->n_bias = 1;
            q->bias_ids = &bias_id;
            q->bias_values = &bias_value;
        }
        if (masks && j == 0 && V <= 64 * 32) {
            for (int64_t id = 0; id < V; id += 3)
                mask3[id >> 5] |= 1u << (id & 31);
            q->n_mask = (int32_t)((V + 31) / 32);
            q->mask = mask3;
            rp->plan.masks_later = 1;
        }
        if (s == 3) {
            for (int i = 0; i < 256; i++)
                allowed_ids[i] = 2 * i;
            q->allowed = allowed_ids;
            while (q->n_allowed < 256 && allowed_ids[q->n_allowed] < V)
                q->n_allowed++;
        }
    }
    for (int i = 0; i < n_finish && i < SEQS_PER_MB; i++)
        rp->finished[i] = finish[i];
    rp->plan.n_finished = n_finish;
    rp->plan.finished = rp->finished;
}

static double row_rel(const float *a, const float *b, int64_t n)
{
    double d = 0, m = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        d = e > d ? e : d;
        m = fabs((double)b[i]) > m ? fabs((double)b[i]) : m;
    }
    return m > 0 ? d / m : d;
}

/* The distributed run's prompt logprobs (got) against the single rank's;
 * 0: equal (logprobs within tol). */
static int check_plps(int plan, int row, const dsa_step_out *want, const dsa_prompt_lp *got,
                      int n_got, double tol)
{
    if (want->n_prompt_lps != n_got) {
        fprintf(stderr, "plan %d row %d: %d prompt logprobs, single rank %d\n", plan, row,
                n_got, want->n_prompt_lps);
        return 1;
    }
    for (int k = 0; k < n_got; k++) {
        const dsa_prompt_lp *a = &got[k], *b = &want->prompt_lps[k];
        int same = a->pos == b->pos && a->token == b->token && a->rank == b->rank &&
                   a->n_top == b->n_top && fabs(a->logprob - b->logprob) <= tol;
        for (int j = 0; same && j < a->n_top; j++)
            same = a->top_ids[j] == b->top_ids[j] &&
                   fabs(a->top_logprobs[j] - b->top_logprobs[j]) <= tol;
        if (!same) {
            fprintf(stderr, "plan %d row %d: prompt logprob %d (pos %d token %d %.6f rank %d) "
                    "vs single rank (pos %d token %d %.6f rank %d)\n", plan, row, k, a->pos,
                    a->token, a->logprob, a->rank, b->pos, b->token, b->logprob, b->rank);
            return 1;
        }
    }
    return 0;
}

/* The recorded plans through one in-process worker, compared with the
 * dumped logits and the distributed run's tokens.  0: all equal. */
static int check_reference(const opts *o, rec_plan *plans, int n_plans, int64_t n_blocks)
{
    dsa_worker_step_params sp = {.model_dir = o->model, .n_threads = 1,
                                 .block_size = BLOCK_SIZE,
                                 .max_model_len = BLOCK_SIZE * BLOCKS_PER_SEQ,
                                 .n_blocks = n_blocks};
    dsa_worker_step *ws = NULL;
    if (dsa_worker_step_create(&sp, &ws)) {
        fprintf(stderr, "reference worker: %s\n", dsa_errmsg());
        return 1;
    }
    dsa_worker_info info;
    dsa_worker_step_info(ws, &info);
    int64_t V = info.vocab_size;
    FILE *f = fopen(o->dump, "rb");
    float *got = malloc((size_t)(SEQS_PER_MB * V) * sizeof *got);
    int bad = !f || !got;
    double worst = 0;
    for (int i = 0; i < n_plans && !bad; i++) {
        dsa_step_result res;
        if (dsa_worker_step_run(ws, &plans[i].plan, &res) || res.status) {
            fprintf(stderr, "reference step %d: %s\n", i, res.message);
            bad = 1;
            break;
        }
        int64_t rows = 0;
        const float *want = dsa_worker_step_logits(ws, &rows);
        if (rows != SEQS_PER_MB ||
            fread(got, sizeof(float), (size_t)(rows * V), f) != (size_t)(rows * V)) {
            fprintf(stderr, "plan %d: the dump holds fewer logits than %lld rows\n", i,
                    (long long)rows);
            bad = 1;
        }
        for (int64_t r = 0; r < rows && !bad; r++) {
            double rel = row_rel(got + r * V, want + r * V, V);
            worst = rel > worst ? rel : worst;
            if (!(rel <= o->tol)) {
                fprintf(stderr, "plan %d row %lld: relative logit error %.3g > %.3g\n", i,
                        (long long)r, rel, o->tol);
                bad = 1;
            }
            if (res.seqs[r].token != plans[i].sampled[r]) {
                fprintf(stderr, "plan %d row %lld: token %d, single rank %d\n", i,
                        (long long)r, plans[i].sampled[r], res.seqs[r].token);
                bad = 1;
            }
            bad |= check_plps(i, (int)r, &res.seqs[r], plans[i].plps[r], plans[i].n_plps[r],
                              o->tol);
        }
        dsa_step_result_free(&res);
    }
    if (!bad && f && fgetc(f) != EOF) {
        fprintf(stderr, "the dump holds more logits than the plans asked for\n");
        bad = 1;
    }
    printf("dist_logits: %d plans, worst relative logit error %.3g (tolerance %.3g): %s\n",
           n_plans, worst, o->tol, bad ? "FAIL" : "ok");
    if (f)
        fclose(f);
    free(got);
    dsa_worker_step_destroy(ws);
    return bad;
}

int main(int argc, char **argv)
{
    opts o = {0};
    int help = 0;
    if (dsa_options_parse(options, N_OPTIONS, &o, argc, argv, &help)) {
        fprintf(stderr, "dist_logits: %s\n", dsa_errmsg());
        return 2;
    }
    if (help) {
        dsa_options_usage(stdout, "dist_logits", "Multi-rank logits test (rank 0).", options,
                          N_OPTIONS);
        return 0;
    }
    dsa_mpi_env env;
    if (dsa_mpi_init(&argc, &argv, o.preflight_timeout, &env))
        dsa_mpi_abort(&env, 2, "start-up: %s", dsa_errmsg());
    if (env.rank != 0)
        dsa_mpi_abort(&env, 2, "dist_logits must be rank 0");
    dsa_transport *t = NULL;
    dsa_mpi_transport_params tp = {.hello_timeout_s = o.hello_timeout,
                                   .step_timeout_s = o.step_timeout};
    if (dsa_mpi_transport_create(&env, &tp, &t))
        dsa_mpi_abort(&env, 2, "%s", dsa_errmsg());
    double t_ready = dsa_time_now() - env.t_start;
    int n_hellos = 0;
    const dsa_hello *hs = dsa_mpi_transport_hellos(t, &n_hellos);
    for (int i = 0; i < n_hellos; i++)
        printf("rank %d (%s): stage %d/%d tp %d/%d layers [%d, %d) weights %.3f MB rss %.1f MB "
               "ready %.2f s\n", hs[i].rank, hs[i].host, hs[i].stage, hs[i].n_stages,
               hs[i].tp_rank, hs[i].tp_size, hs[i].layer_begin, hs[i].layer_end,
               hs[i].weight_bytes / 1e6, hs[i].rss_bytes / 1e6, hs[i].ready_s);
    printf("job ready in %.2f s (%d workers)\n", t_ready, n_hellos);
    if (dsa_mpi_transport_ping(t, o.step_timeout))
        dsa_mpi_abort(&env, 2, "ping: %s", dsa_errmsg());
    if (o.ready_file) {
        FILE *rf = fopen(o.ready_file, "w");
        if (rf)
            fclose(rf);
    }
    fflush(stdout);

    int64_t V = t->info.vocab_size;
    if (t->info.n_blocks < N_SEQS * BLOCKS_PER_SEQ)
        dsa_mpi_abort(&env, 2, "the workers hold %lld KV blocks, the test needs %d",
                      (long long)t->info.n_blocks, N_SEQS * BLOCKS_PER_SEQ);
    rec_plan *plans = calloc(MAX_PLANS, sizeof *plans);
    seq_run runs[N_SEQS];
    int n_plans = 0;
    uint64_t step_id = 0, round = 0;
    double t0 = dsa_time_now(), t_steps = 0;
    int n_steps = 0;
    uint64_t finish[N_SEQS];
    do {
        for (int s = 0; s < N_SEQS; s++) {
            finish[s] = round ? runs[s].id : 0;
            runs[s] = (seq_run){.id = round * 100 + (uint64_t)s + 1};
        }
        for (int k = 0; k <= o.decode; k++) {
            double ts = dsa_time_now();
            rec_plan *rp[N_MB];
            rec_plan scratch[N_MB];
            for (int mb = 0; mb < N_MB; mb++) {
                rp[mb] = o.loop_seconds > 0 || n_plans >= MAX_PLANS ? &scratch[mb]
                                                                     : &plans[n_plans++];
                build_plan(rp[mb], ++step_id, mb, runs, k > 0, round, V,
                           k == 0 ? finish + mb * SEQS_PER_MB : NULL,
                           k == 0 && round ? SEQS_PER_MB : 0, (int)o.masks);
                /* both micro-batches in flight before the first result */
                if (dsa_mpi_transport_submit(t, &rp[mb]->plan))
                    dsa_mpi_abort(&env, 3, "submit: %s", dsa_errmsg());
                if (o.masks == 1 && dsa_mpi_transport_send_masks(t, &rp[mb]->plan))
                    dsa_mpi_abort(&env, 3, "masks: %s", dsa_errmsg());
            }
            for (int mb = 0; mb < N_MB; mb++) {
                dsa_step_result res;
                if (dsa_mpi_transport_collect(t, &res))
                    dsa_mpi_abort(&env, 3, "%s", dsa_errmsg());
                if (res.status || res.n_seqs != SEQS_PER_MB)
                    dsa_mpi_abort(&env, 3, "step %llu failed: %s",
                                  (unsigned long long)res.step_id, res.message);
                for (int j = 0; j < SEQS_PER_MB; j++) {
                    seq_run *r = &runs[mb * SEQS_PER_MB + j];
                    r->len = rp[mb]->seqs[j].pos + rp[mb]->seqs[j].n_tokens;
                    r->last = res.seqs[j].token;
                    rp[mb]->sampled[j] = res.seqs[j].token;
                    int np = res.seqs[j].n_prompt_lps;
                    if (np > 16 || (rp[mb]->seqs[j].prompt_lps &&
                                    np != rp[mb]->seqs[j].n_prompt - 1))
                        dsa_mpi_abort(&env, 3, "step %llu: %d prompt logprobs",
                                      (unsigned long long)res.step_id, np);
                    rp[mb]->n_plps[j] = np;
                    if (np)
                        memcpy(rp[mb]->plps[j], res.seqs[j].prompt_lps,
                               (size_t)np * sizeof *res.seqs[j].prompt_lps);
                    if (r->last < 0 || r->last >= V || (o.masks && j == 0 && r->last % 3))
                        dsa_mpi_abort(&env, 3, "step %llu: token %d",
                                      (unsigned long long)res.step_id, r->last);
                }
                dsa_step_result_free(&res);
            }
            t_steps += dsa_time_now() - ts;
            n_steps++;
        }
        round++;
    } while (o.loop_seconds > 0 && dsa_time_now() - t0 < o.loop_seconds);
    printf("%d steps of %d micro-batches: %.2f ms per step (wall, both in flight)\n", n_steps,
           N_MB, 1e3 * t_steps / n_steps);
    if (o.masks)
        printf("%lld StepMasks frames sent after their plans\n",
               (long long)dsa_mpi_transport_n_masks_sent(t));
    int64_t n_blocks = t->info.n_blocks;
    dsa_transport_destroy(t);
    int bad = 0;
    if (o.dump && o.loop_seconds <= 0)
        bad = check_reference(&o, plans, n_plans, n_blocks);
    free(plans);
    MPI_Finalize();
    fflush(stdout);
    return bad;
}
