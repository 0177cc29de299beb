/* step_sample.c - the worker's sampling on the backend (step_int.h): the
 * logits of a step never leave the backend.  The forward pass leaves the
 * raw F32 logit rows in backend memory (dsa_batch.logits_on_backend; with
 * TP the gathered slices go there directly), and per step:
 *   1. the prompt tokens of this step's chunks set their prompt bits in the
 *      sequences' token-count slots (count_add, prompt);
 *   2. the grammar masks apply to the raw sampling rows in place (mask), so
 *      both the sampled id and the logprobs see them, as vLLM's;
 *   3. the raw rows are copied (backend to backend) to a work copy that
 *      takes the logit controls (logit_ctl), then the penalties
 *      (penalties: counts of the slot plus, on a row verifying drafts, the
 *      drafts before it), then is sampled (sample): the host gets the ids;
 *   4. logprobs of the chosen ids and prompt logprobs come from the raw
 *      rows (logprobs): the host gets only the k values asked for;
 *   5. the accepted ids bump their slots' counts (count_add).
 * vLLM's order is controls, then penalties; the host path (step.c) gives
 * rows with penalties their controls first and the others theirs after,
 * which is the same, as a row without penalties has nothing to commute
 * with.  Masks commute with both: -inf stays -inf under bias, bans and
 * penalties.  Results are those of the host path (test_step_sample.c runs
 * every sampling mix through both on the CPU backend). */
#include <stdlib.h>
#include <string.h>

#include "worker/step_int.h"

static int wants_penalty(const dsa_sampling *sp)
{
    return sp->presence_penalty != 0 || sp->frequency_penalty != 0 ||
           (sp->repetition_penalty != 1 && sp->repetition_penalty > 0);
}

int dsa_worker_dev_usable(const dsa_backend *be)
{
    const dsa_backend_ops *o = be->ops;
    return o->count_add && o->penalties && o->logprobs && o->logit_ctl && o->mask && o->sample;
}

void dsa_worker_dev_free(dsa_worker_step *ws)
{
    dsa_backend *be = ws->be;
    if (ws->dev_raw)
        be->ops->free(be, ws->dev_raw);
    if (ws->counts.out)
        be->ops->free(be, ws->counts.out);
    if (ws->counts.prompt)
        be->ops->free(be, ws->counts.prompt);
    free(ws->slot_used);
    free(ws->d_slots);
    free(ws->d_ids);
    free(ws->d_k);
    free(ws->d_lp);
    free(ws->d_rank);
    free(ws->d_ntop);
    free(ws->d_top_ids);
    free(ws->d_top_lps);
    free(ws->d_pen);
}

/* Raw logits for n rows in backend memory, and host arrays for n rows (and
 * n_ids count updates). */
dsa_err dsa_worker_dev_reserve(dsa_worker_step *ws, int64_t n, int64_t n_ids)
{
    dsa_backend *be = ws->be;
    int64_t V = ws->info.vocab_size, K = DSA_TOP_LOGPROBS_MAX;
    dsa_err err;
    if (n > ws->cap_raw) {
        if (ws->dev_raw)
            be->ops->free(be, ws->dev_raw);
        ws->dev_raw = NULL;
        ws->cap_raw = 0;
        if ((err = be->ops->alloc(be, (size_t)(n * V) * sizeof(float), (void **)&ws->dev_raw)))
            return err;
        ws->cap_raw = n;
        free(ws->d_k), free(ws->d_lp), free(ws->d_rank), free(ws->d_ntop);
        free(ws->d_top_ids), free(ws->d_top_lps), free(ws->d_pen);
        ws->d_k = malloc((size_t)n * sizeof *ws->d_k);
        ws->d_lp = malloc((size_t)n * sizeof *ws->d_lp);
        ws->d_rank = malloc((size_t)n * sizeof *ws->d_rank);
        ws->d_ntop = malloc((size_t)n * sizeof *ws->d_ntop);
        ws->d_top_ids = malloc((size_t)(n * K) * sizeof *ws->d_top_ids);
        ws->d_top_lps = malloc((size_t)(n * K) * sizeof *ws->d_top_lps);
        ws->d_pen = malloc((size_t)n * sizeof *ws->d_pen);
        if (!ws->d_k || !ws->d_lp || !ws->d_rank || !ws->d_ntop || !ws->d_top_ids ||
            !ws->d_top_lps || !ws->d_pen) {
            ws->cap_raw = 0; /* the next step allocates again */
            return dsa_fail(DSA_NOMEM, "sampling buffers");
        }
    }
    if (n_ids > ws->cap_ids) {
        int32_t *a = realloc(ws->d_slots, (size_t)n_ids * sizeof *a);
        if (a)
            ws->d_slots = a;
        int32_t *b = realloc(ws->d_ids, (size_t)n_ids * sizeof *b);
        if (b)
            ws->d_ids = b;
        if (!a || !b)
            return dsa_fail(DSA_NOMEM, "sampling buffers");
        ws->cap_ids = n_ids;
    }
    return DSA_OK;
}

/* A free count slot for s (its counts cleared), the table grown when full. */
static dsa_err slot_take(dsa_worker_step *ws, seq_state *s)
{
    dsa_backend *be = ws->be;
    dsa_token_counts *c = &ws->counts;
    dsa_err err;
    int64_t slot = 0;
    while (slot < c->n_slots && ws->slot_used[slot])
        slot++;
    if (slot == c->n_slots) {
        int64_t n = c->n_slots ? 2 * c->n_slots : 16, V = ws->info.vocab_size;
        int64_t pld = (V + 31) / 32;
        dsa_token_counts nc = {.n_slots = n, .vocab = V, .prompt_ld = pld};
        uint8_t *used = realloc(ws->slot_used, (size_t)n);
        if (!used)
            return dsa_fail(DSA_NOMEM, "penalty slots");
        ws->slot_used = used;
        memset(used + c->n_slots, 0, (size_t)(n - c->n_slots));
        if ((err = be->ops->alloc(be, (size_t)(n * V) * sizeof(uint16_t), (void **)&nc.out)))
            return err;
        if ((err = be->ops->alloc(be, (size_t)(n * pld) * sizeof(uint32_t),
                                  (void **)&nc.prompt))) {
            be->ops->free(be, nc.out);
            return err;
        }
        if (c->n_slots &&
            ((err = be->ops->copy(be, nc.out, c->out,
                                  (size_t)(c->n_slots * V) * sizeof(uint16_t))) ||
             (err = be->ops->copy(be, nc.prompt, c->prompt,
                                  (size_t)(c->n_slots * pld) * sizeof(uint32_t))))) {
            be->ops->free(be, nc.out);
            be->ops->free(be, nc.prompt);
            return err;
        }
        if (c->out)
            be->ops->free(be, c->out);
        if (c->prompt)
            be->ops->free(be, c->prompt);
        *c = nc;
    }
    int32_t s32 = (int32_t)slot;
    dsa_count_add_params p = {.counts = c, .slots = &s32, .n = 1, .reset = 1};
    if ((err = be->ops->count_add(be, &p)))
        return err;
    ws->slot_used[slot] = 1;
    s->slot1 = s32 + 1;
    return DSA_OK;
}

void dsa_worker_dev_slot_release(dsa_worker_step *ws, seq_state *s)
{
    if (s->slot1 > 0 && s->slot1 <= ws->counts.n_slots)
        ws->slot_used[s->slot1 - 1] = 0;
    s->slot1 = 0;
}

dsa_err dsa_worker_dev_prompt_counts(dsa_worker_step *ws, const dsa_step_plan *plan)
{
    int64_t n = 0, V = ws->info.vocab_size;
    dsa_err err;
    for (int32_t i = 0; i < plan->n_seqs; i++) {
        const dsa_step_seq *s = &plan->seqs[i];
        if (!wants_penalty(&s->sp))
            continue;
        seq_state *st = dsa_worker_state_get(ws, s->seq_id);
        if (!st)
            return dsa_fail(DSA_NOMEM, "sequence state");
        if (!st->slot1 && (err = slot_take(ws, st)))
            return err;
        for (int32_t j = 0; j < s->n_tokens; j++)
            n += s->pos + j < s->n_prompt && s->tokens[j] >= 0 && s->tokens[j] < V;
    }
    if (!n)
        return DSA_OK;
    if ((err = dsa_worker_dev_reserve(ws, 0, n)))
        return err;
    int64_t k = 0;
    for (int32_t i = 0; i < plan->n_seqs; i++) {
        const dsa_step_seq *s = &plan->seqs[i];
        if (!wants_penalty(&s->sp))
            continue;
        int32_t slot = dsa_worker_state_get(ws, s->seq_id)->slot1 - 1;
        for (int32_t j = 0; j < s->n_tokens; j++)
            if (s->pos + j < s->n_prompt && s->tokens[j] >= 0 && s->tokens[j] < V) {
                ws->d_slots[k] = slot;
                ws->d_ids[k++] = s->tokens[j];
            }
    }
    dsa_count_add_params p = {.counts = &ws->counts, .slots = ws->d_slots, .ids = ws->d_ids,
                              .n = n, .prompt = 1};
    return ws->be->ops->count_add(ws->be, &p);
}

/* Prompt logprob entries from the raw rows after the L sampling rows. */
static dsa_err prompt_lps(dsa_worker_step *ws, const dsa_step_plan *plan, int64_t L,
                          int64_t LP, dsa_step_result *res)
{
    int64_t V = ws->info.vocab_size, K = DSA_TOP_LOGPROBS_MAX;
    if (LP == 0)
        return DSA_OK;
    int64_t lp = 0;
    for (int32_t i = 0; i < plan->n_seqs; i++) {
        const dsa_step_seq *s = &plan->seqs[i];
        for (int32_t j = 0; s->prompt_lps && j < s->n_tokens && s->pos + j + 1 < s->n_prompt;
             j++, lp++)
            ws->d_k[lp] = s->prompt_top < 0 ? 0 : s->prompt_top < K ? s->prompt_top : (int32_t)K;
    }
    dsa_logprobs_params p = {.out_logprob = ws->d_lp, .out_rank = ws->d_rank,
                             .out_n_top = ws->d_ntop, .out_top_ids = ws->d_top_ids,
                             .out_top_logprobs = ws->d_top_lps, .logits = ws->dev_raw + L * V,
                             .ids = ws->plp_target, .k = ws->d_k, .n_rows = LP, .vocab = V,
                             .k_max = (int32_t)K};
    dsa_err err = ws->be->ops->logprobs(ws->be, &p);
    if (err)
        return err;
    lp = 0;
    for (int32_t i = 0; i < plan->n_seqs; i++) {
        const dsa_step_seq *s = &plan->seqs[i];
        dsa_step_out *o = &res->seqs[i];
        int32_t n;
        dsa_err aerr = dsa_worker_prompt_lps_alloc(s, o, &n);
        if (aerr)
            return aerr;
        if (!n)
            continue;
        for (int32_t j = 0; j < n; j++, lp++) {
            dsa_prompt_lp *e = &o->prompt_lps[j];
            *e = (dsa_prompt_lp){.pos = s->pos + j + 1, .token = ws->plp_target[lp],
                                 .logprob = ws->d_lp[lp], .rank = ws->d_rank[lp],
                                 .n_top = ws->d_ntop[lp]};
            memcpy(e->top_ids, ws->d_top_ids + lp * K, (size_t)e->n_top * sizeof(int32_t));
            memcpy(e->top_logprobs, ws->d_top_lps + lp * K, (size_t)e->n_top * sizeof(float));
        }
    }
    return DSA_OK;
}

static void tok_fill(const dsa_worker_step *ws, int64_t row, float *lp, int32_t *n_top,
                     int32_t *top_ids, float *top_lps)
{
    int64_t K = DSA_TOP_LOGPROBS_MAX;
    *lp = ws->d_lp[row];
    *n_top = ws->d_ntop[row];
    memcpy(top_ids, ws->d_top_ids + row * K, (size_t)*n_top * sizeof(int32_t));
    memcpy(top_lps, ws->d_top_lps + row * K, (size_t)*n_top * sizeof(float));
}

dsa_err dsa_worker_dev_sample(dsa_worker_step *ws, const dsa_step_plan *plan, int64_t L,
                              int64_t LP, dsa_step_result *res)
{
    dsa_backend *be = ws->be;
    int64_t V = ws->info.vocab_size, K = DSA_TOP_LOGPROBS_MAX;
    dsa_err err;
    if (ws->samples && (err = prompt_lps(ws, plan, L, LP, res)))
        return err;
    ws->n_last = 0; /* no host copy of the penalised rows on this path */
    if (L == 0)
        return DSA_OK;
    if (plan->mask_wait) /* the head may still be filling the masks */
        plan->mask_wait(plan->mask_user);
    int64_t n_masked = 0, n_ctl = 0, n_pen = 0, n_lp = 0;
    for (int64_t l = 0; l < L; l++) {
        const dsa_step_seq *s = &plan->seqs[ws->row_seq[l]];
        int32_t j = ws->row_j[l];
        /* a sequence verifying drafts has one mask per position (proto/step.h) */
        ws->masks[l] = (dsa_logit_mask){.bits = s->mask ? s->mask + (int64_t)j * s->n_mask : NULL,
                                        .n_words = s->mask ? s->n_mask : 0};
        n_masked += ws->masks[l].n_words > 0;
        int ban = s->step + (uint32_t)j < (uint32_t)s->min_tokens;
        ws->ctl[l] = (dsa_logit_ctl){.allowed = s->allowed, .n_allowed = s->n_allowed,
                                     .banned = s->banned, .n_banned = ban ? s->n_banned : 0,
                                     .bias_ids = s->bias_ids, .bias_values = s->bias_values,
                                     .n_bias = s->n_bias};
        n_ctl += s->n_allowed > 0 || ws->ctl[l].n_banned > 0 || s->n_bias > 0;
        ws->d_pen[l] = (dsa_penalty_row){.slot = -1};
        if (wants_penalty(&s->sp)) {
            seq_state *st = dsa_worker_state_get(ws, s->seq_id);
            if (!st)
                return dsa_fail(DSA_NOMEM, "sequence state");
            if (!st->slot1 && (err = slot_take(ws, st)))
                return err;
            ws->d_pen[l] = (dsa_penalty_row){
                .slot = st->slot1 - 1, .repetition = s->sp.repetition_penalty,
                .presence = s->sp.presence_penalty, .frequency = s->sp.frequency_penalty,
                .extra = s->tokens + s->n_tokens - s->n_draft, .n_extra = j};
            n_pen++;
        }
        ws->rows[l] = (dsa_sample_row){.temperature = s->sp.temperature, .top_p = s->sp.top_p,
                                       .min_p = s->sp.min_p, .top_k = s->sp.top_k,
                                       .seed = s->sp.seed, .step = s->step + (uint32_t)j};
        ws->d_k[l] = s->sp.n_logprobs > K ? (int32_t)K : s->sp.n_logprobs;
        n_lp += s->sp.n_logprobs >= 0;
    }
    if (n_masked) {
        dsa_logit_mask_params mp = {.logits = ws->dev_raw, .rows = ws->masks, .n_rows = L,
                                    .vocab = V};
        if ((err = be->ops->mask(be, &mp)))
            return err;
    }
    if ((err = be->ops->copy(be, ws->dev_logits, ws->dev_raw, (size_t)(L * V) * sizeof(float))))
        return err;
    if (n_ctl) {
        dsa_logit_ctl_params cp = {.logits = ws->dev_logits, .rows = ws->ctl, .n_rows = L,
                                   .vocab = V};
        if ((err = be->ops->logit_ctl(be, &cp)))
            return err;
    }
    if (n_pen) {
        dsa_penalty_params pp = {.logits = ws->dev_logits, .rows = ws->d_pen,
                                 .counts = &ws->counts, .n_rows = L, .vocab = V};
        if ((err = be->ops->penalties(be, &pp)))
            return err;
    }
    dsa_sample_params sp = {.out_ids = ws->ids, .logits = ws->dev_logits, .rows = ws->rows,
                            .n_rows = L, .vocab = V};
    if ((err = be->ops->sample(be, &sp)))
        return err;
    if (n_lp) {
        for (int64_t l = 0; l < L; l++)
            if (ws->d_k[l] < 0)
                ws->d_k[l] = 0; /* no logprobs asked: the op's row result is unused */
        dsa_logprobs_params lp = {.out_logprob = ws->d_lp, .out_n_top = ws->d_ntop,
                                  .out_top_ids = ws->d_top_ids,
                                  .out_top_logprobs = ws->d_top_lps, .logits = ws->dev_raw,
                                  .ids = ws->ids, .k = ws->d_k, .n_rows = L, .vocab = V,
                                  .k_max = (int32_t)K};
        if ((err = be->ops->logprobs(be, &lp)))
            return err;
    }
    int64_t n_add = 0;
    for (int64_t l = 0; l < L;) {
        int32_t i = ws->row_seq[l];
        const dsa_step_seq *s = &plan->seqs[i];
        dsa_step_out *o = &res->seqs[i];
        int32_t a;
        if ((err = dsa_worker_accept_drafts(s, ws->ids + l, o, &a)))
            return err;
        for (int32_t j = 0; j <= a; j++) {
            int32_t id = ws->ids[l + j];
            if (j == 0)
                o->token = id;
            else
                o->extra[j - 1].token = id;
            if (s->sp.n_logprobs >= 0) {
                if (j == 0)
                    tok_fill(ws, l, &o->logprob, &o->n_top, o->top_ids, o->top_logprobs);
                else
                    tok_fill(ws, l + j, &o->extra[j - 1].logprob, &o->extra[j - 1].n_top,
                             o->extra[j - 1].top_ids, o->extra[j - 1].top_logprobs);
            }
            if (ws->d_pen[l].slot >= 0) { /* reuses d_slots/d_ids (prompt counts are done) */
                ws->d_slots[n_add] = ws->d_pen[l].slot;
                ws->d_ids[n_add++] = id;
            }
        }
        l += 1 + s->n_draft;
    }
    if (n_add) {
        dsa_count_add_params cp = {.counts = &ws->counts, .slots = ws->d_slots,
                                   .ids = ws->d_ids, .n = n_add};
        if ((err = be->ops->count_add(be, &cp)))
            return err;
    }
    return DSA_OK;
}
