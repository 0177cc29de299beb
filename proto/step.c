/* step.c - encode/decode of StepPlan and StepResult frames (see step.h),
 * built from proto/wire.h's field writer and reader. */
#include "proto/step.h"

#include "proto/control.h"
#include "proto/wire.h"

#include <stdlib.h>
#include <string.h>

#define HEADER_BYTES DSA_FRAME_HEADER_BYTES
/* Sanity bounds on decoded counts, well above anything a head sends. */
#define MAX_SEQS (1 << 20)
#define MAX_ITEMS (1 << 26)

/* Reads a count and checks that count * min_bytes more bytes can follow. */
static int32_t r_count(dsa_wire_r *r, size_t max, size_t min_bytes)
{
    uint32_t n = dsa_wire_get_u32(r);
    if (n > max || (min_bytes && (size_t)n > r->left / min_bytes))
        r->bad = 1;
    return r->bad ? 0 : (int32_t)n;
}

static void w_ids(dsa_wire_w *w, int32_t n, const int32_t *ids)
{
    dsa_wire_put_u32(w, (uint32_t)n);
    for (int32_t j = 0; j < n; j++)
        dsa_wire_put_u32(w, (uint32_t)ids[j]);
}

/* Reads a count and that many int32 into a malloc'd *ids (NULL when 0);
 * -1 on allocation failure. */
static int r_ids(dsa_wire_r *r, int32_t *n, int32_t **ids)
{
    *n = r_count(r, MAX_ITEMS, 4);
    if (*n && !(*ids = malloc((size_t)*n * 4)))
        return -1;
    for (int32_t j = 0; j < *n; j++)
        (*ids)[j] = (int32_t)dsa_wire_get_u32(r);
    return 0;
}

static void w_header(dsa_wire_w *w, dsa_msg_type type)
{
    dsa_wire_put_u32(w, DSA_PROTO_MAGIC);
    dsa_wire_put_u16(w, DSA_PROTO_VERSION);
    dsa_wire_put_u16(w, (uint16_t)type);
    dsa_wire_put_u32(w, 0); /* body length, patched by w_finish */
}

static dsa_err w_finish(dsa_wire_w *w, uint8_t **buf, size_t *len)
{
    if (w->oom || w->len - HEADER_BYTES > UINT32_MAX) {
        free(w->data);
        return dsa_fail(DSA_NOMEM, "step message encoding");
    }
    uint32_t body = (uint32_t)(w->len - HEADER_BYTES);
    for (int i = 0; i < 4; i++)
        w->data[8 + i] = (uint8_t)(body >> (8 * i));
    *buf = w->data;
    *len = w->len;
    return DSA_OK;
}

/* Checks the frame header (dsa_frame_peek) and the message type, and
 * leaves r at the start of the body. */
static dsa_err r_header(dsa_wire_r *r, dsa_msg_type type)
{
    int t;
    if (dsa_frame_peek(r->p, r->left, &t))
        return dsa_fail(DSA_FORMAT, "step message: %s", dsa_errmsg());
    if (t != (int)type)
        return dsa_fail(DSA_FORMAT, "step message: type %d, expected %u", t, (unsigned)type);
    dsa_wire_take(r, HEADER_BYTES);
    return DSA_OK;
}

dsa_err dsa_step_plan_encode(const dsa_step_plan *p, uint8_t **buf, size_t *len)
{
    dsa_wire_w w = {0};
    w_header(&w, DSA_MSG_STEP_PLAN);
    dsa_wire_put_u64(&w, p->step_id);
    dsa_wire_put_u32(&w, (uint32_t)(p->masks_later != 0));
    dsa_wire_put_u32(&w, (uint32_t)p->n_seqs);
    for (int32_t i = 0; i < p->n_seqs; i++) {
        const dsa_step_seq *s = &p->seqs[i];
        dsa_wire_put_u64(&w, s->seq_id);
        dsa_wire_put_u32(&w, (uint32_t)s->pos);
        dsa_wire_put_u32(&w, (uint32_t)s->n_prompt);
        dsa_wire_put_u32(&w, (uint32_t)s->sample);
        dsa_wire_put_u32(&w, s->step);
        dsa_wire_put_f32(&w, s->sp.temperature);
        dsa_wire_put_f32(&w, s->sp.top_p);
        dsa_wire_put_f32(&w, s->sp.min_p);
        dsa_wire_put_u32(&w, (uint32_t)s->sp.top_k);
        dsa_wire_put_u64(&w, s->sp.seed);
        dsa_wire_put_f32(&w, s->sp.presence_penalty);
        dsa_wire_put_f32(&w, s->sp.frequency_penalty);
        dsa_wire_put_f32(&w, s->sp.repetition_penalty);
        dsa_wire_put_u32(&w, (uint32_t)s->sp.n_logprobs);
        dsa_wire_put_u32(&w, (uint32_t)s->n_tokens);
        for (int32_t j = 0; j < s->n_tokens; j++)
            dsa_wire_put_u32(&w, (uint32_t)s->tokens[j]);
        dsa_wire_put_u32(&w, (uint32_t)s->n_blocks);
        for (int32_t j = 0; j < s->n_blocks; j++)
            dsa_wire_put_u32(&w, (uint32_t)s->blocks[j]);
        w_ids(&w, s->n_allowed, s->allowed);
        dsa_wire_put_u32(&w, (uint32_t)s->min_tokens);
        w_ids(&w, s->n_banned, s->banned);
        w_ids(&w, s->n_bias, s->bias_ids);
        for (int32_t j = 0; j < s->n_bias; j++)
            dsa_wire_put_f32(&w, s->bias_values[j]);
        dsa_wire_put_u32(&w, (uint32_t)s->prompt_lps);
        dsa_wire_put_u32(&w, (uint32_t)s->prompt_top);
        dsa_wire_put_u32(&w, (uint32_t)s->next_token);
        dsa_wire_put_u32(&w, (uint32_t)s->n_draft);
        dsa_wire_put_u32(&w, (uint32_t)s->spec_k);
        dsa_wire_put_u32(&w, (uint32_t)s->n_mask);
        int64_t n_words = p->masks_later ? 0 : dsa_step_seq_mask_words(s);
        for (int64_t j = 0; j < n_words; j++)
            dsa_wire_put_u32(&w, s->mask[j]);
    }
    dsa_wire_put_u32(&w, (uint32_t)p->n_finished);
    for (int32_t i = 0; i < p->n_finished; i++)
        dsa_wire_put_u64(&w, p->finished[i]);
    return w_finish(&w, buf, len);
}

void dsa_step_plan_free(dsa_step_plan *p)
{
    if (!p)
        return;
    for (int32_t i = 0; p->seqs && i < p->n_seqs; i++) {
        free(p->seqs[i].tokens);
        free(p->seqs[i].blocks);
        free(p->seqs[i].allowed);
        free(p->seqs[i].banned);
        free(p->seqs[i].bias_ids);
        free(p->seqs[i].bias_values);
        free(p->seqs[i].mask);
    }
    free(p->seqs);
    free(p->finished);
    memset(p, 0, sizeof *p);
}

dsa_err dsa_step_plan_decode(const uint8_t *buf, size_t len, dsa_step_plan *p)
{
    memset(p, 0, sizeof *p);
    dsa_wire_r r = {buf, len, 0};
    dsa_err err = r_header(&r, DSA_MSG_STEP_PLAN);
    if (err)
        return err;
    p->step_id = dsa_wire_get_u64(&r);
    p->masks_later = (int32_t)dsa_wire_get_u32(&r);
    if (p->masks_later != 0 && p->masks_later != 1)
        r.bad = 1;
    int32_t n = r_count(&r, MAX_SEQS, 100);
    if (n && !(p->seqs = calloc((size_t)n, sizeof *p->seqs)))
        return dsa_fail(DSA_NOMEM, "step plan: %d sequences", n);
    p->n_seqs = n;
    for (int32_t i = 0; i < n && !r.bad; i++) {
        dsa_step_seq *s = &p->seqs[i];
        s->seq_id = dsa_wire_get_u64(&r);
        s->pos = (int32_t)dsa_wire_get_u32(&r);
        s->n_prompt = (int32_t)dsa_wire_get_u32(&r);
        s->sample = (int32_t)dsa_wire_get_u32(&r);
        s->step = dsa_wire_get_u32(&r);
        s->sp.temperature = dsa_wire_get_f32(&r);
        s->sp.top_p = dsa_wire_get_f32(&r);
        s->sp.min_p = dsa_wire_get_f32(&r);
        s->sp.top_k = (int32_t)dsa_wire_get_u32(&r);
        s->sp.seed = dsa_wire_get_u64(&r);
        s->sp.presence_penalty = dsa_wire_get_f32(&r);
        s->sp.frequency_penalty = dsa_wire_get_f32(&r);
        s->sp.repetition_penalty = dsa_wire_get_f32(&r);
        s->sp.n_logprobs = (int32_t)dsa_wire_get_u32(&r);
        s->n_tokens = r_count(&r, MAX_ITEMS, 4);
        if (s->n_tokens && !(s->tokens = malloc((size_t)s->n_tokens * 4))) {
            err = dsa_fail(DSA_NOMEM, "step plan tokens");
            goto fail;
        }
        for (int32_t j = 0; j < s->n_tokens; j++)
            s->tokens[j] = (int32_t)dsa_wire_get_u32(&r);
        s->n_blocks = r_count(&r, MAX_ITEMS, 4);
        if (s->n_blocks && !(s->blocks = malloc((size_t)s->n_blocks * 4))) {
            err = dsa_fail(DSA_NOMEM, "step plan blocks");
            goto fail;
        }
        for (int32_t j = 0; j < s->n_blocks; j++)
            s->blocks[j] = (int32_t)dsa_wire_get_u32(&r);
        if (r_ids(&r, &s->n_allowed, &s->allowed))
            goto nomem;
        s->min_tokens = (int32_t)dsa_wire_get_u32(&r);
        if (r_ids(&r, &s->n_banned, &s->banned) || r_ids(&r, &s->n_bias, &s->bias_ids))
            goto nomem;
        if (s->n_bias && (size_t)s->n_bias > r.left / 4)
            r.bad = 1;
        if (!r.bad && s->n_bias && !(s->bias_values = malloc((size_t)s->n_bias * 4)))
            goto nomem;
        for (int32_t j = 0; !r.bad && j < s->n_bias; j++)
            s->bias_values[j] = dsa_wire_get_f32(&r);
        s->prompt_lps = (int32_t)dsa_wire_get_u32(&r);
        s->prompt_top = (int32_t)dsa_wire_get_u32(&r);
        s->next_token = (int32_t)dsa_wire_get_u32(&r);
        s->n_draft = (int32_t)dsa_wire_get_u32(&r);
        s->spec_k = (int32_t)dsa_wire_get_u32(&r);
        if (s->n_draft < 0 || s->n_draft > DSA_SPEC_TOKENS_MAX || s->spec_k < 0 ||
            s->spec_k > DSA_SPEC_TOKENS_MAX)
            r.bad = 1;
        s->n_mask = r_count(&r, MAX_ITEMS, p->masks_later ? 0 : 4);
        int64_t n_words = r.bad || p->masks_later ? 0 : dsa_step_seq_mask_words(s);
        if ((size_t)n_words > r.left / 4) {
            r.bad = 1;
            n_words = s->n_mask = 0;
        }
        if (n_words && !(s->mask = malloc((size_t)n_words * 4))) {
            err = dsa_fail(DSA_NOMEM, "step plan mask");
            goto fail;
        }
        for (int64_t j = 0; j < n_words; j++)
            s->mask[j] = dsa_wire_get_u32(&r);
        if (s->pos < 0 || s->n_prompt < 0 || (s->sample != 0 && s->sample != 1) ||
            s->sp.n_logprobs > DSA_TOP_LOGPROBS_MAX || s->min_tokens < 0 ||
            (s->prompt_lps != 0 && s->prompt_lps != 1) || s->prompt_top < 0 ||
            s->prompt_top > DSA_TOP_LOGPROBS_MAX)
            r.bad = 1;
    }
    int32_t nf = r_count(&r, MAX_ITEMS, 8);
    if (nf && !(p->finished = malloc((size_t)nf * 8))) {
        err = dsa_fail(DSA_NOMEM, "step plan finished ids");
        goto fail;
    }
    p->n_finished = nf;
    for (int32_t i = 0; i < nf; i++)
        p->finished[i] = dsa_wire_get_u64(&r);
    if (r.bad || r.left) {
        err = dsa_fail(DSA_FORMAT, "step plan: truncated or malformed body");
        goto fail;
    }
    return DSA_OK;
nomem:
    err = dsa_fail(DSA_NOMEM, "step plan logit controls");
fail:
    dsa_step_plan_free(p);
    return err;
}

dsa_err dsa_step_masks_encode(const dsa_step_plan *p, uint8_t **buf, size_t *len)
{
    dsa_wire_w w = {0};
    w_header(&w, DSA_MSG_STEP_MASKS);
    dsa_wire_put_u64(&w, p->step_id);
    dsa_wire_put_u32(&w, (uint32_t)p->n_seqs);
    for (int32_t i = 0; i < p->n_seqs; i++) {
        const dsa_step_seq *s = &p->seqs[i];
        int64_t n_words = s->mask ? dsa_step_seq_mask_words(s) : 0;
        dsa_wire_put_u32(&w, (uint32_t)n_words);
        for (int64_t j = 0; j < n_words; j++)
            dsa_wire_put_u32(&w, s->mask[j]);
    }
    return w_finish(&w, buf, len);
}

dsa_err dsa_step_masks_decode(const uint8_t *buf, size_t len, dsa_step_plan *p)
{
    dsa_wire_r r = {buf, len, 0};
    dsa_err err = r_header(&r, DSA_MSG_STEP_MASKS);
    if (err)
        return err;
    uint64_t step_id = dsa_wire_get_u64(&r);
    int32_t n = r_count(&r, MAX_SEQS, 4);
    if (r.bad || step_id != p->step_id || n != p->n_seqs || !p->masks_later)
        return dsa_fail(DSA_FORMAT, "step masks of step %llu (%d sequences) for plan %llu "
                        "(%d sequences%s)", (unsigned long long)step_id, n,
                        (unsigned long long)p->step_id, p->n_seqs,
                        p->masks_later ? "" : ", masks in the plan");
    for (int32_t i = 0; i < n && !r.bad; i++) {
        dsa_step_seq *s = &p->seqs[i];
        int64_t n_words = (int64_t)dsa_wire_get_u32(&r);
        if (r.bad || s->mask || (n_words && n_words != dsa_step_seq_mask_words(s)) ||
            (size_t)n_words > r.left / 4)
            return dsa_fail(DSA_FORMAT, "step masks of step %llu: sequence %d has %lld words, "
                            "its plan %lld", (unsigned long long)step_id, i, (long long)n_words,
                            (long long)dsa_step_seq_mask_words(s));
        if (!n_words) {
            s->n_mask = 0;
            continue;
        }
        if (!(s->mask = malloc((size_t)n_words * 4)))
            return dsa_fail(DSA_NOMEM, "step masks");
        for (int64_t j = 0; j < n_words; j++)
            s->mask[j] = dsa_wire_get_u32(&r);
    }
    if (r.bad || r.left)
        return dsa_fail(DSA_FORMAT, "step masks: truncated or malformed body");
    return DSA_OK;
}

dsa_err dsa_step_result_encode(const dsa_step_result *res, uint8_t **buf, size_t *len)
{
    dsa_wire_w w = {0};
    w_header(&w, DSA_MSG_STEP_RESULT);
    dsa_wire_put_u64(&w, res->step_id);
    dsa_wire_put_u32(&w, (uint32_t)res->status);
    size_t n_msg = strnlen(res->message, sizeof res->message - 1);
    dsa_wire_put_u32(&w, (uint32_t)n_msg);
    dsa_wire_put(&w, res->message, n_msg);
    dsa_wire_put_u32(&w, (uint32_t)res->n_seqs);
    for (int32_t i = 0; i < res->n_seqs; i++) {
        const dsa_step_out *o = &res->seqs[i];
        dsa_wire_put_u64(&w, o->seq_id);
        dsa_wire_put_u32(&w, (uint32_t)o->token);
        dsa_wire_put_f32(&w, o->logprob);
        dsa_wire_put_u32(&w, (uint32_t)o->n_top);
        for (int32_t j = 0; j < o->n_top; j++) {
            dsa_wire_put_u32(&w, (uint32_t)o->top_ids[j]);
            dsa_wire_put_f32(&w, o->top_logprobs[j]);
        }
        dsa_wire_put_u32(&w, (uint32_t)o->n_prompt_lps);
        for (int32_t k = 0; k < o->n_prompt_lps; k++) {
            const dsa_prompt_lp *e = &o->prompt_lps[k];
            dsa_wire_put_u32(&w, (uint32_t)e->pos);
            dsa_wire_put_u32(&w, (uint32_t)e->token);
            dsa_wire_put_f32(&w, e->logprob);
            dsa_wire_put_u32(&w, (uint32_t)e->rank);
            dsa_wire_put_u32(&w, (uint32_t)e->n_top);
            for (int32_t j = 0; j < e->n_top; j++) {
                dsa_wire_put_u32(&w, (uint32_t)e->top_ids[j]);
                dsa_wire_put_f32(&w, e->top_logprobs[j]);
            }
        }
        dsa_wire_put_u32(&w, (uint32_t)o->n_extra);
        for (int32_t k = 0; k < o->n_extra; k++) {
            const dsa_step_tok *e = &o->extra[k];
            dsa_wire_put_u32(&w, (uint32_t)e->token);
            dsa_wire_put_f32(&w, e->logprob);
            dsa_wire_put_u32(&w, (uint32_t)e->n_top);
            for (int32_t j = 0; j < e->n_top; j++) {
                dsa_wire_put_u32(&w, (uint32_t)e->top_ids[j]);
                dsa_wire_put_f32(&w, e->top_logprobs[j]);
            }
        }
        dsa_wire_put_u32(&w, (uint32_t)o->n_drafts);
        for (int32_t k = 0; k < o->n_drafts; k++)
            dsa_wire_put_u32(&w, (uint32_t)o->drafts[k]);
    }
    return w_finish(&w, buf, len);
}

void dsa_step_result_free(dsa_step_result *r)
{
    if (!r)
        return;
    for (int32_t i = 0; r->seqs && i < r->n_seqs; i++) {
        free(r->seqs[i].prompt_lps);
        free(r->seqs[i].extra);
    }
    free(r->seqs);
    memset(r, 0, sizeof *r);
}

dsa_err dsa_step_result_decode(const uint8_t *buf, size_t len, dsa_step_result *res)
{
    memset(res, 0, sizeof *res);
    dsa_wire_r r = {buf, len, 0};
    dsa_err err = r_header(&r, DSA_MSG_STEP_RESULT);
    if (err)
        return err;
    res->step_id = dsa_wire_get_u64(&r);
    res->status = (int32_t)dsa_wire_get_u32(&r);
    uint32_t n_msg = dsa_wire_get_u32(&r);
    if (n_msg >= sizeof res->message)
        r.bad = 1;
    const uint8_t *msg = dsa_wire_take(&r, n_msg);
    if (msg)
        memcpy(res->message, msg, n_msg);
    int32_t n = r_count(&r, MAX_SEQS, 24);
    if (n && !(res->seqs = calloc((size_t)n, sizeof *res->seqs)))
        return dsa_fail(DSA_NOMEM, "step result: %d sequences", n);
    res->n_seqs = n;
    for (int32_t i = 0; i < n && !r.bad; i++) {
        dsa_step_out *o = &res->seqs[i];
        o->seq_id = dsa_wire_get_u64(&r);
        o->token = (int32_t)dsa_wire_get_u32(&r);
        o->logprob = dsa_wire_get_f32(&r);
        o->n_top = (int32_t)dsa_wire_get_u32(&r);
        if (o->n_top < 0 || o->n_top > DSA_TOP_LOGPROBS_MAX) {
            r.bad = 1;
            break;
        }
        for (int32_t j = 0; j < o->n_top; j++) {
            o->top_ids[j] = (int32_t)dsa_wire_get_u32(&r);
            o->top_logprobs[j] = dsa_wire_get_f32(&r);
        }
        int32_t np = r_count(&r, MAX_ITEMS, 20);
        if (np && !(o->prompt_lps = calloc((size_t)np, sizeof *o->prompt_lps))) {
            dsa_step_result_free(res);
            return dsa_fail(DSA_NOMEM, "step result: %d prompt logprobs", np);
        }
        o->n_prompt_lps = np;
        for (int32_t k = 0; k < np && !r.bad; k++) {
            dsa_prompt_lp *e = &o->prompt_lps[k];
            e->pos = (int32_t)dsa_wire_get_u32(&r);
            e->token = (int32_t)dsa_wire_get_u32(&r);
            e->logprob = dsa_wire_get_f32(&r);
            e->rank = (int32_t)dsa_wire_get_u32(&r);
            e->n_top = (int32_t)dsa_wire_get_u32(&r);
            if (e->n_top < 0 || e->n_top > DSA_TOP_LOGPROBS_MAX) {
                r.bad = 1;
                break;
            }
            for (int32_t j = 0; j < e->n_top; j++) {
                e->top_ids[j] = (int32_t)dsa_wire_get_u32(&r);
                e->top_logprobs[j] = dsa_wire_get_f32(&r);
            }
        }
        int32_t nx = r.bad ? 0 : r_count(&r, DSA_SPEC_TOKENS_MAX, 12);
        if (nx && !(o->extra = calloc((size_t)nx, sizeof *o->extra))) {
            dsa_step_result_free(res);
            return dsa_fail(DSA_NOMEM, "step result: %d accepted tokens", nx);
        }
        o->n_extra = nx;
        for (int32_t k = 0; k < nx && !r.bad; k++) {
            dsa_step_tok *e = &o->extra[k];
            e->token = (int32_t)dsa_wire_get_u32(&r);
            e->logprob = dsa_wire_get_f32(&r);
            e->n_top = (int32_t)dsa_wire_get_u32(&r);
            if (e->n_top < 0 || e->n_top > DSA_TOP_LOGPROBS_MAX) {
                r.bad = 1;
                break;
            }
            for (int32_t j = 0; j < e->n_top; j++) {
                e->top_ids[j] = (int32_t)dsa_wire_get_u32(&r);
                e->top_logprobs[j] = dsa_wire_get_f32(&r);
            }
        }
        o->n_drafts = r.bad ? 0 : r_count(&r, DSA_SPEC_TOKENS_MAX, 4);
        for (int32_t k = 0; k < o->n_drafts; k++)
            o->drafts[k] = (int32_t)dsa_wire_get_u32(&r);
    }
    if (res->status < 0 || res->status >= DSA_ERR_COUNT)
        r.bad = 1;
    if (r.bad || r.left) {
        dsa_step_result_free(res);
        return dsa_fail(DSA_FORMAT, "step result: truncated or malformed body");
    }
    return DSA_OK;
}
