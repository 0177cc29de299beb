/* test_step_sample.c - sampling on the backend (worker/step_sample.c)
 * against the host path (worker/step.c), both on the CPU backend: two
 * workers over tests/data/golden/tiny-mtp run the same plans in lockstep
 * (each sequence fed the tokens the host path sampled) and every result
 * must be the same: sampled ids, accepted drafts, logprobs and top-k,
 * prompt logprobs, the MTP's next drafts.  The sequences cover the
 * sampling mixes: greedy, seeded temperature with top-k/top-p, min-p,
 * repetition/presence/frequency penalties (one of them verifying drafts,
 * so the drafts before a row count as generated), logit bias with
 * allowed ids and min_tokens bans, a grammar mask, logprobs of 0..20,
 * prompt logprobs over a chunked prompt; a penalised sequence finishes and
 * a new one takes its count slot (which must start clean). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "tests/support.h"
#include "worker/step.h"

#define N_SIM 8
#define CAP 64
#define BPS 16

typedef struct sim {
    dsa_step_seq s;           /* the sampling fields; tokens etc. set per step */
    int32_t toks[CAP + 8];    /* prompt, then the generated tokens */
    int32_t n, n_prompt, pos, chunk;
    int32_t drafts[DSA_SPEC_TOKENS_MAX], n_drafts;
    int32_t feed[CAP + 8];
    int32_t blocks[BPS];
    int active;
    int fixed_drafts;         /* each decode step verifies drafts X, X, X new, biased +100 */
    int32_t x_id;
    float x_bias;
} sim;

static dsa_worker_step *worker(int sampling)
{
    char *dir = dsa_test_data_path("golden/tiny-mtp");
    dsa_worker_step_params p = {.model_dir = dir, .n_threads = 1, .block_size = 4,
                                .max_model_len = CAP, .n_blocks = N_SIM * BPS,
                                .spec_tokens = 2, .sampling = sampling};
    dsa_worker_step *ws = NULL;
    dsa_log_setup(DSA_LOG_WARN, 0);
    cr_assert_eq(dsa_worker_step_create(&p, &ws), DSA_OK, "%s", dsa_errmsg());
    free(dir);
    return ws;
}

static void same_tok(int i, const char *what, int32_t ta, int32_t tb, float la, float lb,
                     int32_t na, int32_t nb, const int32_t *ia, const int32_t *ib,
                     const float *pa, const float *pb)
{
    cr_expect_eq(ta, tb, "seq %d %s: token %d (host) vs %d (backend)", i, what, ta, tb);
    cr_expect(fabsf(la - lb) <= 1e-6f, "seq %d %s: logprob %g vs %g", i, what, la, lb);
    cr_expect_eq(na, nb, "seq %d %s: %d vs %d top logprobs", i, what, na, nb);
    for (int j = 0; j < na && j < nb; j++) {
        cr_expect_eq(ia[j], ib[j], "seq %d %s: top %d id %d vs %d", i, what, j, ia[j], ib[j]);
        cr_expect(fabsf(pa[j] - pb[j]) <= 1e-6f, "seq %d %s: top %d %g vs %g", i, what, j,
                  pa[j], pb[j]);
    }
}

static void same_out(int i, const dsa_step_out *a, const dsa_step_out *b)
{
    same_tok(i, "token", a->token, b->token, a->logprob, b->logprob, a->n_top, b->n_top,
             a->top_ids, b->top_ids, a->top_logprobs, b->top_logprobs);
    cr_expect_eq(a->n_extra, b->n_extra, "seq %d: %d vs %d accepted drafts", i, a->n_extra,
                 b->n_extra);
    for (int j = 0; j < a->n_extra && j < b->n_extra; j++)
        same_tok(i, "accepted", a->extra[j].token, b->extra[j].token, a->extra[j].logprob,
                 b->extra[j].logprob, a->extra[j].n_top, b->extra[j].n_top,
                 a->extra[j].top_ids, b->extra[j].top_ids, a->extra[j].top_logprobs,
                 b->extra[j].top_logprobs);
    cr_expect_eq(a->n_prompt_lps, b->n_prompt_lps, "seq %d: prompt logprobs %d vs %d", i,
                 a->n_prompt_lps, b->n_prompt_lps);
    for (int j = 0; j < a->n_prompt_lps && j < b->n_prompt_lps; j++) {
        const dsa_prompt_lp *x = &a->prompt_lps[j], *y = &b->prompt_lps[j];
        cr_expect(x->pos == y->pos && x->rank == y->rank, "seq %d prompt %d: pos/rank", i, j);
        same_tok(i, "prompt", x->token, y->token, x->logprob, y->logprob, x->n_top, y->n_top,
                 x->top_ids, y->top_ids, x->top_logprobs, y->top_logprobs);
    }
    cr_expect_eq(a->n_drafts, b->n_drafts, "seq %d: %d vs %d drafts", i, a->n_drafts,
                 b->n_drafts);
    for (int j = 0; j < a->n_drafts && j < b->n_drafts; j++)
        cr_expect_eq(a->drafts[j], b->drafts[j], "seq %d: draft %d", i, j);
}

/* The plan entry of sim x for this step (x->s filled in). */
static void plan_seq(sim *x)
{
    dsa_step_seq *s = &x->s;
    s->pos = x->pos;
    s->n_prompt = x->n_prompt;
    s->n_blocks = BPS;
    s->blocks = x->blocks;
    s->n_draft = 0;
    if (x->pos < x->n_prompt) {
        int32_t c = x->n_prompt - x->pos < x->chunk ? x->n_prompt - x->pos : x->chunk;
        s->tokens = x->toks + x->pos;
        s->n_tokens = c;
        s->sample = x->pos + c == x->n_prompt;
        s->next_token = x->pos + c < x->n_prompt ? x->toks[x->pos + c] : -1;
        return;
    }
    /* decode: the last generated token, then the drafts to verify */
    if (x->fixed_drafts) {
        x->x_id = (int32_t)((300 + 13 * (int64_t)x->s.step) % 512);
        x->x_bias = 100;
        s->n_bias = 1, s->bias_ids = &x->x_id, s->bias_values = &x->x_bias;
        x->n_drafts = 2;
        x->drafts[0] = x->drafts[1] = x->x_id;
    }
    x->feed[0] = x->toks[x->pos];
    memcpy(x->feed + 1, x->drafts, (size_t)x->n_drafts * sizeof(int32_t));
    s->tokens = x->feed;
    s->n_tokens = 1 + x->n_drafts;
    s->n_draft = x->n_drafts;
    s->sample = 1;
    s->next_token = -1;
}

/* Advances x by the host path's result: the generated tokens (accepted
 * drafts, then one more) follow the real tokens of the chunk; pos is the
 * index of the next token to feed, the last generated one. */
static void advance(sim *x, const dsa_step_out *o)
{
    int32_t base = x->pos + x->s.n_tokens - x->s.n_draft;
    if (!x->s.sample) {
        x->pos = base;
        return;
    }
    x->toks[base] = o->token;
    for (int j = 0; j < o->n_extra; j++)
        x->toks[base + 1 + j] = o->extra[j].token;
    x->pos = base + o->n_extra;
    x->n = x->pos + 1;
    x->s.step += 1 + (uint32_t)o->n_extra;
    x->n_drafts = o->n_drafts;
    memcpy(x->drafts, o->drafts, sizeof x->drafts);
}

Test(step_sample, backend_path_matches_the_host_path_for_every_sampling_mix, .timeout = 300)
{
    dsa_worker_step *host = worker(DSA_SAMPLING_HOST), *dev = worker(DSA_SAMPLING_BACKEND);
    dsa_worker_info info;
    dsa_worker_step_info(host, &info);
    int64_t V = info.vocab_size;
    int32_t W = (int32_t)((V + 31) / 32);
    uint32_t *mask = calloc((size_t)W, 4);
    for (int64_t v = 0; v < V; v++)
        if ((v * 7) % 3 == 0)
            mask[v >> 5] |= 1u << (v & 31);
    int32_t allowed[60], banned[2] = {10, 40}, bias_ids[3] = {10, 20, 30};
    float bias_values[3] = {3, -2, 5};
    for (int j = 0; j < 60; j++)
        allowed[j] = 2 * j;
    static sim sims[N_SIM];
    memset(sims, 0, sizeof sims);
    const dsa_sampling base = {.repetition_penalty = 1, .top_p = 1, .n_logprobs = -1};
    for (int i = 0; i < N_SIM; i++) {
        sim *x = &sims[i];
        x->s.seq_id = 100 + (uint64_t)i;
        x->s.sp = base;
        x->n_prompt = x->n = 5 + 3 * i % 11;
        x->chunk = 64;
        for (int j = 0; j < x->n_prompt; j++)
            x->toks[j] = (int32_t)((j * 31 + i * 17 + 3) % V);
        for (int j = 0; j < BPS; j++)
            x->blocks[j] = i * BPS + j;
        x->active = i < 7;

    }
    /* 0 greedy, logprobs 5, prompt logprobs over a chunked prompt */
    sims[0].s.sp.n_logprobs = 5, sims[0].s.prompt_lps = 1, sims[0].s.prompt_top = 3;
    sims[0].n_prompt = sims[0].n = 12, sims[0].chunk = 5;
    for (int j = 0; j < 12; j++)
        sims[0].toks[j] = (int32_t)((j * 13 + 1) % V);
    /* 1 seeded temperature, top-k and top-p */
    sims[1].s.sp = (dsa_sampling){.temperature = 0.8f, .seed = 11, .top_k = 20, .top_p = 0.9f,
                                  .repetition_penalty = 1, .n_logprobs = -1};
    /* 2 min-p with all three penalties, 20 logprobs; finishes mid-way */
    sims[2].s.sp = (dsa_sampling){.temperature = 1, .seed = 5, .min_p = 0.05f, .top_p = 1,
                                  .repetition_penalty = 1.3f, .presence_penalty = 0.5f,
                                  .frequency_penalty = 0.4f, .n_logprobs = 20};
    /* 3 greedy, allowed ids, min_tokens bans, bias; 2 logprobs */
    sims[3].s.sp.n_logprobs = 2;
    sims[3].s.n_allowed = 60, sims[3].s.allowed = allowed;
    sims[3].s.min_tokens = 3, sims[3].s.n_banned = 2, sims[3].s.banned = banned;
    sims[3].s.n_bias = 3, sims[3].s.bias_ids = bias_ids, sims[3].s.bias_values = bias_values;
    /* 4 seeded with penalties, verifying MTP drafts, prompt logprobs top 0 */
    sims[4].s.sp = (dsa_sampling){.temperature = 1.2f, .seed = 77, .top_p = 1,
                                  .repetition_penalty = 1.1f, .frequency_penalty = 0.9f,
                                  .n_logprobs = 1};
    sims[4].s.spec_k = 2, sims[4].s.prompt_lps = 1, sims[4].s.prompt_top = 0;
    /* 5 grammar mask, presence penalty */
    sims[5].s.sp = (dsa_sampling){.temperature = 0.7f, .seed = 3, .top_p = 1,
                                  .repetition_penalty = 1, .presence_penalty = 0.3f,
                                  .n_logprobs = 0};
    sims[5].s.mask = mask, sims[5].s.n_mask = W;
    /* 6 greedy, each decode step verifying drafts X, X of an id X not seen
     * before, with a +100 bias on X and a frequency penalty of 150: row 0
     * takes X (the first draft accepted), at row 1 that X counts as
     * generated and X is out (the second rejected), so every step reports
     * a row whose penalties saw a draft */
    cr_assert_geq(V, 512);
    sims[6].s.sp = (dsa_sampling){.repetition_penalty = 1.5f, .frequency_penalty = 150,
                                  .top_p = 1, .n_logprobs = 3};
    sims[6].fixed_drafts = 1;
    /* 7 starts when 2 finishes and takes its count slot */
    sims[7].s.sp = (dsa_sampling){.temperature = 0.9f, .seed = 9, .top_p = 1,
                                  .repetition_penalty = 2, .frequency_penalty = 1.5f,
                                  .n_logprobs = 4};

    int n_tokens_checked = 0, n_accepted = 0;
    for (int step = 0; step < 14; step++) {
        dsa_step_seq seqs[N_SIM];
        int idx[N_SIM], n = 0;
        uint64_t finished[1];
        dsa_step_plan plan = {.step_id = (uint64_t)step + 1, .seqs = seqs,
                              .finished = finished};
        if (step == 6) {
            sims[2].active = 0;
            finished[plan.n_finished++] = sims[2].s.seq_id;
            sims[7].active = 1;
        }
        for (int i = 0; i < N_SIM; i++) {
            sim *x = &sims[i];
            if (!x->active || x->pos + 1 + DSA_SPEC_TOKENS_MAX >= CAP)
                continue;
            plan_seq(x);
            idx[n] = i;
            seqs[n++] = x->s;
        }
        plan.n_seqs = n;
        dsa_step_result ra, rb;
        cr_assert_eq(dsa_worker_step_run(host, &plan, &ra), DSA_OK);
        cr_assert_eq(dsa_worker_step_run(dev, &plan, &rb), DSA_OK);
        cr_assert_eq(ra.status, DSA_OK, "host path: %s", ra.message);
        cr_assert_eq(rb.status, DSA_OK, "backend path: %s", rb.message);
        cr_assert_eq(ra.n_seqs, rb.n_seqs);
        for (int k = 0; k < n; k++) {
            same_out(idx[k], &ra.seqs[k], &rb.seqs[k]);
            n_tokens_checked += seqs[k].sample ? 1 + ra.seqs[k].n_extra : 0;
            n_accepted += ra.seqs[k].n_extra;
            advance(&sims[idx[k]], &ra.seqs[k]);
        }
        dsa_step_result_free(&ra);
        dsa_step_result_free(&rb);
    }
    cr_expect_gt(n_tokens_checked, 60, "only %d tokens compared", n_tokens_checked);
    cr_expect_gt(n_accepted, 5, "only %d drafts accepted", n_accepted);
    /* the host path keeps its penalised rows, the backend path none */
    int64_t rows = -1;
    cr_expect_not_null(dsa_worker_step_logits(host, &rows));
    cr_expect_gt(rows, 0);
    dsa_worker_step_logits(dev, &rows);
    cr_expect_eq(rows, 0);
    cr_log_info("%d tokens compared, %d drafts accepted", n_tokens_checked, n_accepted);
    free(mask);
    dsa_worker_step_destroy(host);
    dsa_worker_step_destroy(dev);
}
