/* step.c - executes StepPlans on one rank holding the whole model (see
 * step.h).  Penalties and logprobs are computed on the host from the
 * forward pass's F32 logits; the grammar bitmask, the logit controls
 * (allowed ids, min_tokens bans, bias) and the choice of token run on the
 * backend (mask, logit_ctl, then sample) so a sequence samples the same
 * way as dsa-generate, except that a row with penalties takes its controls
 * on the host first (vLLM's order: controls, then penalties).  Logprobs,
 * prompt logprobs included, are of the raw logits (vLLM's default logprobs
 * mode) with the grammar mask applied: penalties and controls act on a
 * copy.
 *
 * The forward pass returns logit rows in this order: one per sampling
 * sequence (plan order), then one per prompt position whose successor's
 * logprob a sequence asked for (plan order, position order). */
#include "worker/lm_head.h"
#include "worker/step.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "worker/comm.h"
#include "worker/model.h"
#include "worker/mtp.h"
#include "worker/step_int.h"
#ifdef DSA_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

/* CUDA: device memory kept out of the KV budget for the forward pass's
 * scratch (activations, logits, cuBLASLt workspace grow lazily). */
#define CUDA_SCRATCH_RESERVE ((size_t)1 << 30)

static tok_count *count_slot(seq_state *s, int32_t id)
{
    uint32_t h = (uint32_t)id * 2654435761u;
    for (uint32_t i = 0;; i++) {
        tok_count *c = &s->map[(h + i) & (s->cap - 1)];
        if (c->id == id || c->id == -1)
            return c;
    }
}

static dsa_err count_add(seq_state *s, int32_t id, int prompt)
{
    if (!s->map || (s->used + 1) * 2 > s->cap) {
        uint32_t cap = s->cap ? s->cap * 2 : 64;
        tok_count *old = s->map, *nm = malloc(cap * sizeof *nm);
        if (!nm)
            return dsa_fail(DSA_NOMEM, "penalty token counts");
        for (uint32_t i = 0; i < cap; i++)
            nm[i] = (tok_count){.id = -1};
        uint32_t old_cap = s->cap;
        s->map = nm;
        s->cap = cap;
        for (uint32_t i = 0; i < old_cap; i++)
            if (old[i].id != -1)
                *count_slot(s, old[i].id) = old[i];
        free(old);
    }
    tok_count *c = count_slot(s, id);
    if (c->id == -1) {
        *c = (tok_count){.id = id};
        s->used++;
    }
    if (prompt)
        c->in_prompt = 1;
    else
        c->n_out++;
    return DSA_OK;
}

static int has_penalty(const dsa_sampling *sp)
{
    return sp->presence_penalty != 0 || sp->frequency_penalty != 0 ||
           (sp->repetition_penalty != 1 && sp->repetition_penalty > 0);
}

seq_state *dsa_worker_state_get(dsa_worker_step *ws, uint64_t id)
{
    for (int i = 0; i < ws->n_seqs; i++)
        if (ws->seqs[i].seq_id == id)
            return &ws->seqs[i];
    if (ws->n_seqs == ws->cap_seqs) {
        int cap = ws->cap_seqs ? ws->cap_seqs * 2 : 16;
        seq_state *n = realloc(ws->seqs, (size_t)cap * sizeof *n);
        if (!n)
            return NULL;
        ws->seqs = n;
        ws->cap_seqs = cap;
    }
    seq_state *s = &ws->seqs[ws->n_seqs++];
    *s = (seq_state){.seq_id = id};
    return s;
}

static void state_drop(dsa_worker_step *ws, uint64_t id)
{
    for (int i = 0; i < ws->n_seqs; i++)
        if (ws->seqs[i].seq_id == id) {
            free(ws->seqs[i].map);
            dsa_worker_dev_slot_release(ws, &ws->seqs[i]);
            ws->seqs[i] = ws->seqs[--ws->n_seqs];
            return;
        }
}

static int grow(void **p, int64_t *cap, int64_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    int64_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *n = realloc(*p, (size_t)c * elem);
    if (!n)
        return -1;
    *p = n;
    *cap = c;
    return 0;
}

/* The backend p->device names: "cpu", "cuda" or "cuda:N". */
static dsa_err backend_create(const dsa_worker_step_params *p, dsa_backend **be, int *on_cuda)
{
    const char *d = p->device && *p->device ? p->device : "cpu";
    *on_cuda = 0;
    if (!strcmp(d, "cpu")) {
        dsa_err err = dsa_backend_cpu_create(p->n_threads, be);
        if (!err)
            dsa_backend_cpu_set_int8_activations(*be, p->cpu_int8_act);
        return err;
    }
    if (p->cpu_int8_act)
        return dsa_fail(DSA_INVAL, "--cpu-int8-activations: the CPU backend's option, and device "
                        "is \"%s\"", d);
    if (strncmp(d, "cuda", 4) || (d[4] && d[4] != ':'))
        return dsa_fail(DSA_INVAL, "device \"%s\": expected cpu, cuda or cuda:N", d);
    int dev = 0;
    if (d[4] == ':') {
        char *end = NULL;
        long v = strtol(d + 5, &end, 10);
        if (end == d + 5 || *end || v < 0 || v > 1024)
            return dsa_fail(DSA_INVAL, "device \"%s\": expected cuda:N", d);
        dev = (int)v;
    }
#ifdef DSA_HAVE_CUDA
    double util = p->gpu_memory_utilization > 0 ? p->gpu_memory_utilization : 0.9;
    if (util > 1)
        return dsa_fail(DSA_RANGE, "GPU memory utilisation %g outside (0, 1]", util);
    int n = dsa_cuda_device_count();
    if (n == 0)
        return dsa_fail(DSA_NOTFOUND, "device %s: no CUDA device (or no driver) on this host", d);
    *on_cuda = 1;
    return dsa_backend_cuda_create(dev, util, be);
#else
    (void)dev;
    return dsa_fail(DSA_UNSUPPORTED, "device %s: built without CUDA (nvcc was not found when "
                    "this build was configured)", d);
#endif
}

/* KV bytes this rank may use: the CPU takes kv_cache_bytes; CUDA what its
 * memory share leaves, capped by kv_cache_bytes when that is set. */
static int64_t kv_budget(const dsa_worker_step *ws, const dsa_worker_step_params *p)
{
#ifdef DSA_HAVE_CUDA
    if (ws->on_cuda) {
        int64_t left = (int64_t)dsa_cuda_kv_bytes(ws->be, CUDA_SCRATCH_RESERVE);
        return p->kv_cache_bytes > 0 && p->kv_cache_bytes < left ? p->kv_cache_bytes : left;
    }
#endif
    return p->kv_cache_bytes;
}

static void *be_stream(const dsa_worker_step *ws)
{
#ifdef DSA_HAVE_CUDA
    if (ws->on_cuda)
        return dsa_cuda_stream(ws->be);
#endif
    return NULL;
}

/* The weights of p's shard (the whole model without one), with the MTP
 * module on the last stage when p asks for drafts. */
static dsa_err load(const dsa_worker_step_params *p, dsa_weights **w)
{
    if (p->spec_tokens <= 0)
        return dsa_weights_load(p->model_dir, p->shard, w);
    dsa_shard sh;
    if (p->shard) {
        sh = *p->shard;
    } else {
        char path[4096];
        dsa_config c;
        snprintf(path, sizeof path, "%s/config.json", p->model_dir);
        dsa_err err = dsa_config_load(path, &c);
        if (err)
            return err;
        sh = (dsa_shard){.tp_rank = 0, .tp_size = 1, .layer_begin = 0, .layer_end = c.n_layers};
    }
    sh.with_mtp = 1;
    return dsa_weights_load(p->model_dir, &sh, w);
}

dsa_err dsa_worker_step_create(const dsa_worker_step_params *p, dsa_worker_step **out)
{
    dsa_err err;
    *out = NULL;
    dsa_worker_step *ws = calloc(1, sizeof *ws);
    if (!ws)
        return dsa_fail(DSA_NOMEM, "worker");
    if ((err = backend_create(p, &ws->be, &ws->on_cuda)) || (err = load(p, &ws->w)))
        goto fail;
    if ((err = dsa_weights_lm_head_apply(ws->w, p->lm_head_quant)))
        goto fail;
    if ((err = dsa_weights_prepare(ws->w, ws->be)))
        goto fail;
    ws->prepared = 1;
    const dsa_config *c = &ws->w->cfg;
    int64_t bs = p->block_size > 0 ? p->block_size : 64;
    int64_t len = p->max_model_len > 0 ? p->max_model_len : c->max_position_embeddings;
    if (len > dsa_config_max_len(c)) {
        /* vLLM refuses this too (unless VLLM_ALLOW_LONG_MAX_MODEL_LEN) */
        err = dsa_fail(DSA_RANGE, "User-specified max_model_len (%lld) is greater than the "
                       "derived max_model_len (%lld) of %s/config.json", (long long)len,
                       (long long)dsa_config_max_len(c), p->model_dir);
        goto fail;
    }
    int64_t bps = (len + bs - 1) / bs;
    int64_t n_blocks = p->n_blocks, budget = 0;
    if (n_blocks <= 0) {
        /* act_size: 4 bytes per cached value on the CPU, 2 (BF16) on CUDA. */
        int64_t bb = dsa_model_block_bytes(c, ws->w->shard.layer_end - ws->w->shard.layer_begin +
                                           ws->w->has_mtp, bs, ws->be->act_size);
        budget = kv_budget(ws, p);
        n_blocks = bb > 0 ? budget / bb : 0;
        int64_t need = bps * (p->max_num_seqs > 0 ? p->max_num_seqs : 1);
        if (n_blocks > need)
            n_blocks = need;
    }
    /* The distributed start-up agrees on the fewest blocks of any rank, so
     * a short rank fails the same check as every other. */
    dsa_comm *comm = p->comm, *made = NULL;
    if (p->prepare) {
        if ((err = p->prepare(p->prepare_user, be_stream(ws), &n_blocks, &made)))
            goto fail;
        if (made)
            comm = made;
    }
    if (n_blocks < bps) {
        err = dsa_fail(DSA_RANGE, "KV cache budget of %lld bytes on %s holds %lld blocks (the "
                       "fewest of any rank); one sequence of %lld tokens needs %lld",
                       (long long)budget, ws->on_cuda ? "cuda" : "cpu", (long long)n_blocks,
                       (long long)len, (long long)bps);
        goto fail;
    }
    dsa_model_params mp = {.n_blocks = n_blocks, .block_size = bs, .max_blocks_per_seq = bps,
                           .comm = comm};
    ws->samples = ws->w->has_head && (!comm || comm->tp_rank == 0);
    /* DSA_SAMPLING=backend|host overrides AUTO (tests run whole suites
     * through either path with it) */
    int mode = p->sampling;
    const char *env = getenv("DSA_SAMPLING");
    if (mode == DSA_SAMPLING_AUTO && env && *env)
        mode = !strcmp(env, "backend") ? DSA_SAMPLING_BACKEND
               : !strcmp(env, "host")  ? DSA_SAMPLING_HOST
                                       : DSA_SAMPLING_AUTO;
    ws->dev_sampling = mode == DSA_SAMPLING_BACKEND || (mode == DSA_SAMPLING_AUTO && ws->on_cuda);
    if (ws->dev_sampling && !dsa_worker_dev_usable(ws->be)) {
        err = dsa_fail(DSA_UNSUPPORTED, "backend %s cannot sample on itself (no penalty, "
                       "count or logprob ops)", ws->be->ops->name);
        goto fail;
    }
    if ((err = dsa_model_create(ws->be, ws->w, &mp, &ws->m)) ||
        (ws->w->has_mtp && (err = dsa_mtp_create(ws->be, ws->w, &mp, &ws->mtp))))
        goto fail;
    ws->info = (dsa_worker_info){.n_blocks = n_blocks, .block_size = bs,
                                 .max_blocks_per_seq = bps, .vocab_size = c->vocab_size,
                                 .max_position_embeddings = c->max_position_embeddings,
                                 .eos_token_id = c->eos_token_id,
                                 .bos_token_id = c->bos_token_id};
    *out = ws;
    return DSA_OK;
fail:
    dsa_worker_step_destroy(ws);
    return err;
}

void dsa_worker_step_destroy(dsa_worker_step *ws)
{
    if (!ws)
        return;
    for (int i = 0; i < ws->n_seqs; i++)
        free(ws->seqs[i].map);
    free(ws->seqs);
    dsa_worker_dev_free(ws);
    if (ws->dev_logits)
        ws->be->ops->free(ws->be, ws->dev_logits);
    if (ws->m_dev_logits)
        ws->be->ops->free(ws->be, ws->m_dev_logits);
    dsa_mtp_destroy(ws->mtp);
    dsa_model_destroy(ws->m);
    if (ws->prepared)
        dsa_weights_release(ws->w, ws->be);
    dsa_weights_free(ws->w);
    dsa_backend_destroy(ws->be);
    free(ws->tokens);
    free(ws->pos);
    free(ws->seq);
    free(ws->bt);
    free(ws->logit_rows);
    free(ws->logits);
    free(ws->work);
    free(ws->plp_target);
    free(ws->ctl);
    free(ws->masks);
    free(ws->rows);
    free(ws->ids);
    free(ws->row_seq);
    free(ws->row_j);
    free(ws->m_tokens);
    free(ws->m_pos);
    free(ws->m_seq);
    free(ws->m_hrows);
    free(ws->m_lrows);
    free(ws->m_owner);
    free(ws->m_first);
    free(ws->m_logits);
    free(ws->m_rows);
    free(ws->m_ids);
    free(ws);
}

void dsa_worker_step_info(const dsa_worker_step *ws, dsa_worker_info *info)
{
    *info = ws->info;
}

/* vLLM's penalties: repetition divides positive logits (multiplies
 * negative ones) of tokens seen in prompt or output; frequency subtracts
 * per generated occurrence, presence once per generated token. */
static void apply_penalties(const seq_state *s, const dsa_sampling *sp, float *logits)
{
    if (!s->map)
        return;
    float rp = sp->repetition_penalty > 0 ? sp->repetition_penalty : 1;
    for (uint32_t i = 0; i < s->cap; i++) {
        const tok_count *c = &s->map[i];
        if (c->id < 0)
            continue;
        float *l = &logits[c->id];
        if (rp != 1)
            *l = *l > 0 ? *l / rp : *l * rp;
        if (c->n_out) {
            *l -= sp->frequency_penalty * (float)c->n_out;
            *l -= sp->presence_penalty;
        }
    }
}

/* vLLM's prompt logprob entry for `token` at position pos from the logits
 * of position pos - 1; rank = 1 + the ids with a strictly larger logit. */
static void prompt_entry(const float *logits, int64_t V, int32_t pos, int32_t token, int k,
                         dsa_prompt_lp *e)
{
    e->pos = pos;
    e->token = token;
    e->n_top = dsa_logprobs_row(logits, V, token, k, &e->logprob, &e->rank, e->top_ids,
                                e->top_logprobs);
}

/* 1 when the plan asks for any logit control on s's row sampling token
 * number `step`. */
static int ctl_of(const dsa_step_seq *s, uint32_t step, dsa_logit_ctl *c)
{
    int ban = step < (uint32_t)s->min_tokens;
    *c = (dsa_logit_ctl){.allowed = s->allowed, .n_allowed = s->n_allowed,
                         .banned = s->banned, .n_banned = ban ? s->n_banned : 0,
                         .bias_ids = s->bias_ids, .bias_values = s->bias_values,
                         .n_bias = s->n_bias};
    return c->n_allowed > 0 || c->n_banned > 0 || c->n_bias > 0;
}

/* Plan ids a worker must not index with: outside [0, V). */
static int ids_ok(const int32_t *ids, int32_t n, int64_t V)
{
    for (int32_t j = 0; j < n; j++)
        if (ids[j] < 0 || ids[j] >= V)
            return 0;
    return 1;
}

static void step_fail(dsa_step_result *res, dsa_err err)
{
    char msg[sizeof res->message];
    snprintf(msg, sizeof msg, "%s", dsa_errmsg());
    uint64_t id = res->step_id;
    dsa_step_result_free(res);
    res->step_id = id;
    res->status = err;
    memcpy(res->message, msg, sizeof msg);
}

/* The prompt logprob entries of the plan's sequences from the raw logit
 * rows after the L sampling rows (ws->plp_target says what each scores). */
static dsa_err prompt_logprobs(dsa_worker_step *ws, const dsa_step_plan *plan, int64_t L,
                               dsa_step_result *res)
{
    int64_t V = ws->info.vocab_size, lp = 0;
    for (int32_t i = 0; i < plan->n_seqs; i++) {
        const dsa_step_seq *s = &plan->seqs[i];
        dsa_step_out *o = &res->seqs[i];
        int32_t n;
        dsa_err aerr = dsa_worker_prompt_lps_alloc(s, o, &n);
        if (aerr)
            return aerr;
        if (!n)
            continue;
        for (int32_t j = 0; j < n; j++, lp++)
            prompt_entry(ws->logits + (L + lp) * V, V, s->pos + j + 1, ws->plp_target[lp],
                         s->prompt_top, &o->prompt_lps[j]);
    }
    return DSA_OK;
}

/* The counts penalties see at verification row j of a sequence: its own
 * plus drafts[0..j-1] generated (vLLM applies penalties to draft positions
 * as if the drafts before them were output).  Applied after
 * apply_penalties: each draft id's logit is recomputed from `pre`, its
 * value before the penalties. */
static void penalise_drafts(seq_state *s, const dsa_sampling *sp, float *lg, const float *pre,
                            const int32_t *drafts, int32_t j)
{
    float rp = sp->repetition_penalty > 0 ? sp->repetition_penalty : 1;
    for (int32_t a = 0; a < j; a++) {
        int32_t id = drafts[a], dup = 0;
        for (int32_t b = 0; b < a; b++)
            dup |= drafts[b] == id;
        if (dup)
            continue;
        uint32_t n = 0;
        for (int32_t b = 0; b < j; b++)
            n += drafts[b] == id;
        tok_count *c = s->map ? count_slot(s, id) : NULL;
        if (c && c->id == id)
            n += c->n_out;
        float l = pre[a];
        if (rp != 1)
            l = l > 0 ? l / rp : l * rp;
        l -= sp->frequency_penalty * (float)n;
        l -= sp->presence_penalty;
        lg[id] = l;
    }
}

/* Fills the logprob fields of one generated token from its raw row. */
static void tok_logprobs(const float *raw, int64_t V, int32_t id, int32_t n_logprobs,
                         float *lp, int32_t *n_top, int32_t *top_ids, float *top_lps)
{
    *n_top = dsa_logprobs_row(raw, V, id, n_logprobs > DSA_TOP_LOGPROBS_MAX ? DSA_TOP_LOGPROBS_MAX
                                                                             : n_logprobs,
                              lp, NULL, top_ids, top_lps);
}

/* Samples the L rows (ws->row_seq / row_j say whose) and writes each
 * sequence's generated tokens into res: the first row's token, then, for
 * a sequence verifying drafts, one more per draft accepted (draft j is
 * accepted when the token sampled at row j equals it; the token sampled
 * at the first row that differs, or after the last draft, ends the run).
 * Sampling a row from the target distribution and comparing it with a
 * greedy draft is rejection sampling for a one-hot draft distribution:
 * the draft is kept with probability p(draft), and otherwise the token is
 * distributed as p without the draft, renormalised, so the output follows
 * the target distribution exactly; at temperature 0 it is the argmax, the
 * token a step without drafts would choose. */
static dsa_err sample_rows(dsa_worker_step *ws, const dsa_step_plan *plan, int64_t L,
                           dsa_step_result *res)
{
    int64_t V = ws->info.vocab_size;
    dsa_err err;
    ws->n_last = L;
    /* Grammar masks: vLLM applies the bitmask before its sampler, so the
     * sampled id and the logprobs both see it.  The backend's mask op runs
     * on the uploaded logits (on the GPU, the device copy: the host never
     * masks the row it samples); the host rows that logprobs read get the
     * same mask below.  The controls and penalties applied in between
     * commute with it: -inf stays -inf under bias, bans and penalties. */
    if (plan->mask_wait && (err = plan->mask_wait(plan->mask_user))) /* masks may lag */
        return err;
    int64_t n_masked = 0, n_ctl = 0;
    for (int64_t l = 0; l < L; l++) {
        const dsa_step_seq *s = &plan->seqs[ws->row_seq[l]];
        /* a sequence verifying drafts has one mask per position (proto/step.h) */
        ws->masks[l] = (dsa_logit_mask){
            .bits = s->mask ? s->mask + (int64_t)ws->row_j[l] * s->n_mask : NULL,
            .n_words = s->mask ? s->n_mask : 0};
        n_masked += ws->masks[l].n_words > 0;
    }
    memcpy(ws->work, ws->logits, (size_t)(L * V) * sizeof(float));
    for (int64_t l = 0; l < L; l++) {
        const dsa_step_seq *s = &plan->seqs[ws->row_seq[l]];
        int32_t j = ws->row_j[l];
        const int32_t *drafts = s->tokens + s->n_tokens - s->n_draft;
        float *lg = ws->work + l * V;
        int ctl = ctl_of(s, s->step + (uint32_t)j, &ws->ctl[l]);
        if (has_penalty(&s->sp)) {
            /* vLLM applies the controls before the penalties (a repetition
             * penalty scales a biased logit): such rows take both here */
            if (ctl) {
                dsa_logit_ctl_row(lg, V, &ws->ctl[l]);
                ws->ctl[l] = (dsa_logit_ctl){0};
                ctl = 0;
            }
            float pre[DSA_SPEC_TOKENS_MAX];
            for (int32_t a = 0; a < j; a++)
                pre[a] = lg[drafts[a]];
            seq_state *st = dsa_worker_state_get(ws, s->seq_id);
            if (!st)
                return dsa_fail(DSA_NOMEM, "sequence state");
            apply_penalties(st, &s->sp, lg);
            penalise_drafts(st, &s->sp, lg, pre, drafts, j);
        }
        n_ctl += ctl;
        ws->rows[l] = (dsa_sample_row){.temperature = s->sp.temperature, .top_p = s->sp.top_p,
                                       .min_p = s->sp.min_p, .top_k = s->sp.top_k,
                                       .seed = s->sp.seed, .step = s->step + (uint32_t)j};
    }
    if ((err = ws->be->ops->upload(ws->be, ws->dev_logits, ws->work,
                                   (size_t)(L * V) * sizeof(float))))
        return err;
    if (n_masked) {
        dsa_logit_mask_params mp = {.logits = ws->dev_logits, .rows = ws->masks, .n_rows = L,
                                    .vocab = V};
        if (!ws->be->ops->mask)
            return dsa_fail(DSA_UNSUPPORTED, "backend %s has no grammar mask op",
                            ws->be->ops->name);
        if ((err = ws->be->ops->mask(ws->be, &mp)))
            return err;
    }
    if (n_ctl) {
        dsa_logit_ctl_params cp = {.logits = ws->dev_logits, .rows = ws->ctl, .n_rows = L,
                                   .vocab = V};
        if (!ws->be->ops->logit_ctl)
            return dsa_fail(DSA_UNSUPPORTED, "backend %s has no logit controls",
                            ws->be->ops->name);
        if ((err = ws->be->ops->logit_ctl(ws->be, &cp)))
            return err;
    }
    dsa_sample_params sp = {.out_ids = ws->ids, .logits = ws->dev_logits, .rows = ws->rows,
                            .n_rows = L, .vocab = V};
    if ((err = ws->be->ops->sample(ws->be, &sp)))
        return err;
    for (int64_t l = 0; l < L;) {
        int32_t i = ws->row_seq[l];
        const dsa_step_seq *s = &plan->seqs[i];
        dsa_step_out *o = &res->seqs[i];
        int32_t a;
        if ((err = dsa_worker_accept_drafts(s, ws->ids + l, o, &a)))
            return err;
        for (int32_t j = 0; j <= a; j++) {
            int32_t id = ws->ids[l + j];
            float *raw = ws->logits + (l + j) * V;
            if (j == 0)
                o->token = id;
            else
                o->extra[j - 1].token = id;
            if (s->sp.n_logprobs >= 0) {
                dsa_logit_mask_row(raw, V, &ws->masks[l + j]);
                if (j == 0)
                    tok_logprobs(raw, V, id, s->sp.n_logprobs, &o->logprob, &o->n_top,
                                 o->top_ids, o->top_logprobs);
                else
                    tok_logprobs(raw, V, id, s->sp.n_logprobs, &o->extra[j - 1].logprob,
                                 &o->extra[j - 1].n_top, o->extra[j - 1].top_ids,
                                 o->extra[j - 1].top_logprobs);
            }
            if (has_penalty(&s->sp) &&
                (err = count_add(dsa_worker_state_get(ws, s->seq_id), id, 0)))
                return err;
        }
        l += 1 + s->n_draft;
    }
    return DSA_OK;
}

dsa_err dsa_worker_step_run(dsa_worker_step *ws, const dsa_step_plan *plan,
                            dsa_step_result *res)
{
    dsa_err err = DSA_OK;
    memset(res, 0, sizeof *res);
    res->step_id = plan->step_id;
    for (int32_t i = 0; i < plan->n_finished; i++)
        state_drop(ws, plan->finished[i]);
    if (plan->n_seqs == 0)
        return DSA_OK;
    int64_t V = ws->info.vocab_size, bps = ws->info.max_blocks_per_seq;
    int64_t T = 0, L = 0, LP = 0;
    for (int32_t i = 0; i < plan->n_seqs; i++) {
        const dsa_step_seq *s = &plan->seqs[i];
        if (s->n_tokens < 1 || s->n_blocks > bps || s->n_blocks < 0) {
            step_fail(res, dsa_fail(DSA_RANGE, "sequence %llu: %d tokens, %d blocks (max %lld)",
                                    (unsigned long long)s->seq_id, s->n_tokens, s->n_blocks,
                                    (long long)bps));
            return DSA_OK;
        }
        if (!ids_ok(s->allowed, s->n_allowed, V) || !ids_ok(s->banned, s->n_banned, V) ||
            !ids_ok(s->bias_ids, s->n_bias, V) ||
            ((s->prompt_lps || s->spec_k) && !ids_ok(s->tokens, s->n_tokens, V)) ||
            (s->prompt_lps && s->pos + s->n_tokens < s->n_prompt &&
             !ids_ok(&s->next_token, 1, V))) {
            step_fail(res, dsa_fail(DSA_RANGE, "sequence %llu: a token id outside the "
                                    "vocabulary of %lld", (unsigned long long)s->seq_id,
                                    (long long)V));
            return DSA_OK;
        }
        if (s->n_draft < 0 || s->n_draft > DSA_SPEC_TOKENS_MAX || s->n_draft >= s->n_tokens ||
            (s->n_draft && !s->sample) || s->spec_k < 0 ||
            s->spec_k > DSA_SPEC_TOKENS_MAX || (s->spec_k && !ws->mtp && ws->samples)) {
            step_fail(res, dsa_fail(DSA_INVAL, "sequence %llu: %d draft tokens, %d wanted (%s)",
                                    (unsigned long long)s->seq_id, s->n_draft, s->spec_k,
                                    ws->mtp || !ws->samples ? "drafts need a sampled row"
                                                            : "this worker has no MTP module"));
            return DSA_OK;
        }
        T += s->n_tokens;
        L += s->sample ? 1 + s->n_draft : 0;
        if (s->prompt_lps) {
            int64_t last = s->pos + s->n_tokens < s->n_prompt - 1 ? s->pos + s->n_tokens
                                                                  : s->n_prompt - 1;
            LP += last > s->pos ? last - s->pos : 0;
        }
    }
    res->seqs = calloc((size_t)plan->n_seqs, sizeof *res->seqs);
    if (!res->seqs || grow((void **)&ws->tokens, &ws->cap_tokens, T, 4) ||
        !(ws->pos = realloc(ws->pos, (size_t)ws->cap_tokens * 4)) ||
        !(ws->seq = realloc(ws->seq, (size_t)ws->cap_tokens * 4)) ||
        grow((void **)&ws->bt, &ws->cap_bt, plan->n_seqs * bps, 4) ||
        grow((void **)&ws->logit_rows, &ws->cap_rows, L + LP, 4) ||
        !(ws->rows = realloc(ws->rows, (size_t)ws->cap_rows * sizeof *ws->rows)) ||
        !(ws->ctl = realloc(ws->ctl, (size_t)ws->cap_rows * sizeof *ws->ctl)) ||
        !(ws->masks = realloc(ws->masks, (size_t)ws->cap_rows * sizeof *ws->masks)) ||
        !(ws->ids = realloc(ws->ids, (size_t)ws->cap_rows * sizeof *ws->ids)) ||
        !(ws->row_seq = realloc(ws->row_seq, (size_t)ws->cap_rows * sizeof *ws->row_seq)) ||
        !(ws->row_j = realloc(ws->row_j, (size_t)ws->cap_rows * sizeof *ws->row_j)) ||
        grow((void **)&ws->plp_target, &ws->cap_plp, LP, 4))
        return dsa_fail(DSA_NOMEM, "step buffers");
    if (ws->dev_sampling) {
        if ((err = dsa_worker_dev_reserve(ws, L + LP, L))) {
            if (err == DSA_NOMEM)
                return err;
            step_fail(res, err);
            return DSA_OK;
        }
    } else if (L + LP > ws->cap_logits) {
        free(ws->logits);
        ws->cap_logits = 0;
        if (!(ws->logits = malloc((size_t)((L + LP) * V) * sizeof(float))))
            return dsa_fail(DSA_NOMEM, "logits");
        ws->cap_logits = L + LP;
    }
    if (L > ws->cap_work) {
        free(ws->work);
        ws->work = NULL;
        if (ws->dev_logits)
            ws->be->ops->free(ws->be, ws->dev_logits);
        ws->dev_logits = NULL;
        ws->cap_work = 0;
        if (!ws->dev_sampling && !(ws->work = malloc((size_t)(L * V) * sizeof(float))))
            return dsa_fail(DSA_NOMEM, "logits");
        if ((err = ws->be->ops->alloc(ws->be, (size_t)(L * V) * sizeof(float),
                                      (void **)&ws->dev_logits))) {
            step_fail(res, err);
            return DSA_OK;
        }
        ws->cap_work = L;
    }
    int64_t t = 0, l = 0;
    for (int32_t i = 0; i < plan->n_seqs; i++) {
        const dsa_step_seq *s = &plan->seqs[i];
        seq_state *st = dsa_worker_state_get(ws, s->seq_id);
        if (!st)
            return dsa_fail(DSA_NOMEM, "sequence state");
        for (int32_t j = 0; j < s->n_tokens; j++, t++) {
            ws->tokens[t] = s->tokens[j];
            ws->pos[t] = s->pos + j;
            ws->seq[t] = i;
            if (s->pos + j < s->n_prompt && has_penalty(&s->sp) && !ws->dev_sampling &&
                s->tokens[j] >= 0 && s->tokens[j] < V && (err = count_add(st, s->tokens[j], 1)))
                return err;
        }
        int32_t *bt = ws->bt + (int64_t)i * bps;
        memcpy(bt, s->blocks, (size_t)s->n_blocks * 4);
        for (int64_t j = s->n_blocks; j < bps; j++)
            bt[j] = 0;
        /* a speculative sequence samples its last n_draft + 1 positions */
        for (int32_t j = 0; s->sample && j <= s->n_draft; j++, l++) {
            ws->logit_rows[l] = (int32_t)(t - 1 - s->n_draft + j);
            ws->row_seq[l] = i;
            ws->row_j[l] = j;
        }
        res->seqs[i] = (dsa_step_out){.seq_id = s->seq_id, .token = -1};
    }
    res->n_seqs = plan->n_seqs;
    /* prompt rows: token j of the chunk scores the prompt token after it */
    int64_t lp = 0;
    t = 0;
    for (int32_t i = 0; i < plan->n_seqs; i++) {
        const dsa_step_seq *s = &plan->seqs[i];
        for (int32_t j = 0; s->prompt_lps && j < s->n_tokens && s->pos + j + 1 < s->n_prompt;
             j++) {
            ws->logit_rows[L + lp] = (int32_t)(t + j);
            ws->plp_target[lp++] = j + 1 < s->n_tokens ? s->tokens[j + 1] : s->next_token;
        }
        t += s->n_tokens;
    }
    dsa_batch b = {.n_tokens = T, .tokens = ws->tokens, .pos = ws->pos, .seq = ws->seq,
                   .n_seqs = plan->n_seqs, .block_tables = ws->bt, .n_logits = L + LP,
                   .logit_rows = ws->logit_rows, .logits_on_backend = ws->dev_sampling};
    ws->n_last = 0;
    if ((err = dsa_model_forward(ws->m, &b, ws->dev_sampling ? ws->dev_raw : ws->logits))) {
        step_fail(res, err);
        return DSA_OK;
    }
    /* With drafts every TP rank of the last stage samples too (the same
     * gathered logits and plan give the same tokens), so that all of them
     * run the MTP's collectives on the same accepted positions; only the
     * rank that samples reports (ws->samples). */
    if (!ws->samples && !(ws->mtp && ws->w->has_head))
        return DSA_OK;
    if (ws->dev_sampling) {
        if ((err = dsa_worker_dev_prompt_counts(ws, plan)) ||
            (err = dsa_worker_dev_sample(ws, plan, L, LP, res))) {
            if (err == DSA_NOMEM)
                return err;
            step_fail(res, err);
            return DSA_OK;
        }
    } else if (ws->samples && (err = prompt_logprobs(ws, plan, L, res))) {
        step_fail(res, err);
        return DSA_OK;
    }
    if (!ws->dev_sampling && L > 0 && (err = sample_rows(ws, plan, L, res))) {
        if (err == DSA_NOMEM)
            return err;
        step_fail(res, err);
        return DSA_OK;
    }
    if (ws->mtp && (err = dsa_worker_spec_finish(ws, plan, res))) {
        if (err == DSA_NOMEM)
            return err;
        step_fail(res, err);
    }
    return DSA_OK;
}

const float *dsa_worker_step_logits(const dsa_worker_step *ws, int64_t *n_rows)
{
    *n_rows = ws->samples ? ws->n_last : 0;
    return ws->samples ? ws->work : NULL;
}

uint64_t dsa_worker_step_weight_bytes(const dsa_worker_step *ws)
{
    return ws->w->bytes;
}

/* ---- in-process transport ------------------------------------------------ */

typedef struct inproc {
    dsa_transport base;
    dsa_worker_step *ws;
} inproc;

static dsa_err inproc_step(dsa_transport *t, const dsa_step_plan *plan, dsa_step_result *res)
{
    return dsa_worker_step_run(((inproc *)t)->ws, plan, res);
}

static void inproc_destroy(dsa_transport *t)
{
    dsa_worker_step_destroy(((inproc *)t)->ws);
    free(t);
}

static const dsa_transport_ops inproc_ops = {
    .name = "in-process",
    .step = inproc_step,
    .destroy = inproc_destroy,
    .shares_plan = 1,
};

dsa_err dsa_worker_step_transport(dsa_worker_step *ws, dsa_transport **out)
{
    inproc *t = calloc(1, sizeof *t);
    if (!t)
        return dsa_fail(DSA_NOMEM, "transport");
    t->base.ops = &inproc_ops;
    t->ws = ws;
    dsa_worker_step_info(ws, &t->base.info);
    *out = &t->base;
    return DSA_OK;
}
