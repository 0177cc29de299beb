/* step_spec.c - the MTP drafts of a step (see step_int.h and proto/step.h
 * "Speculative decoding").
 *
 * After the main model verified a sequence's chunk, its accepted positions
 * i are known together with the token after each, t_{i+1} (the chunk's
 * next token, or for the last accepted position the token just sampled),
 * so the MTP module writes its cache entries for exactly those positions
 * and, from the last one, proposes the first draft (its argmax, as vLLM's
 * MTP proposer).  Draft j > 1 runs the module again one position further,
 * on its own output state and draft j - 1; those cache entries are
 * overwritten by the next step, which recomputes the positions with the
 * tokens that were accepted.  A chain stops where the sequence's block
 * table ends (the head gives it room for k - 1 positions past the
 * verified ones).
 *
 * When the step samples on the backend (dev_sampling) the module's logits
 * stay there too and each draft is the backend's greedy sample of its row
 * (argmax, lowest id on ties, as argmax_row): only the ids come back, not
 * B x V floats per pass.
 *
 * Also here, shared by the host and the backend sampling paths: which
 * drafts the sampled ids accept, and the room for prompt logprobs. */
#include "worker/step_int.h"

#include <stdlib.h>
#include <string.h>

static int32_t argmax_row(const float *x, int64_t n)
{
    int32_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best])
            best = (int32_t)i;
    return best;
}

static dsa_err reserve(dsa_worker_step *ws, int64_t rows, int32_t n_seqs)
{
    int64_t V = ws->info.vocab_size;
    if (rows > ws->cap_spec) {
        int64_t c = rows > 64 ? rows : 64;
        int32_t **a[] = {&ws->m_tokens, &ws->m_pos, &ws->m_seq, &ws->m_hrows, &ws->m_lrows,
                         &ws->m_owner};
        for (size_t i = 0; i < sizeof a / sizeof a[0]; i++) {
            int32_t *n = realloc(*a[i], (size_t)c * sizeof(int32_t));
            if (!n)
                return dsa_fail(DSA_NOMEM, "MTP batch");
            *a[i] = n;
        }
        ws->cap_spec = c;
    }
    if (n_seqs > ws->cap_mseqs) {
        int32_t *f = realloc(ws->m_first, (size_t)n_seqs * sizeof *f);
        if (!f)
            return dsa_fail(DSA_NOMEM, "MTP batch");
        ws->m_first = f;
        int32_t *ids = realloc(ws->m_ids, (size_t)n_seqs * sizeof *ids);
        if (ids)
            ws->m_ids = ids;
        dsa_sample_row *rw = realloc(ws->m_rows, (size_t)n_seqs * sizeof *rw);
        if (rw)
            ws->m_rows = rw;
        if (!ids || !rw)
            return dsa_fail(DSA_NOMEM, "MTP drafts");
        for (int32_t i = 0; i < n_seqs; i++)
            ws->m_rows[i] = (dsa_sample_row){.temperature = 0, .top_p = 1};
        if (ws->dev_sampling) {
            dsa_backend *be = ws->be;
            if (ws->m_dev_logits)
                be->ops->free(be, ws->m_dev_logits);
            ws->m_dev_logits = NULL;
            dsa_err err = be->ops->alloc(be, (size_t)n_seqs * (size_t)V * sizeof(float),
                                         (void **)&ws->m_dev_logits);
            if (err)
                return err;
        } else {
            float *l = realloc(ws->m_logits, (size_t)n_seqs * (size_t)V * sizeof *l);
            if (!l)
                return dsa_fail(DSA_NOMEM, "MTP logits");
            ws->m_logits = l;
        }
        ws->cap_mseqs = n_seqs;
    }
    return DSA_OK;
}

/* The MTP module's logits for the batch mb, and the n_logits drafts (their
 * argmax) into ws->m_ids: on the backend with dev_sampling, else on the
 * host. */
static dsa_err mtp_drafts(dsa_worker_step *ws, dsa_mtp_batch *mb)
{
    int64_t V = ws->info.vocab_size, n = mb->n_logits;
    mb->logits_on_backend = ws->dev_sampling;
    dsa_err err = dsa_mtp_forward(ws->mtp, mb, ws->dev_sampling ? ws->m_dev_logits : ws->m_logits);
    if (err || n == 0)
        return err;
    if (!ws->dev_sampling) {
        for (int64_t q = 0; q < n; q++)
            ws->m_ids[q] = argmax_row(ws->m_logits + q * V, V);
        return DSA_OK;
    }
    dsa_sample_params sp = {.out_ids = ws->m_ids, .logits = ws->m_dev_logits, .rows = ws->m_rows,
                            .n_rows = n, .vocab = V};
    return ws->be->ops->sample(ws->be, &sp);
}

dsa_err dsa_worker_spec_draft(dsa_worker_step *ws, const dsa_step_plan *plan,
                              const int32_t *accepted, const int32_t *last,
                              dsa_step_result *res)
{
    int64_t V = ws->info.vocab_size, bs = ws->info.block_size;
    int32_t n = plan->n_seqs, k_max = 0;
    int64_t rows = 0;
    for (int32_t i = 0; i < n; i++) {
        const dsa_step_seq *s = &plan->seqs[i];
        rows += s->spec_k > 0 ? s->n_tokens : 0;
        k_max = s->spec_k > k_max ? s->spec_k : k_max;
    }
    if (rows == 0)
        return DSA_OK;
    dsa_err err = reserve(ws, rows > n ? rows : n, n);
    if (err)
        return err;

    /* Pass 1: the accepted positions of every chunk. */
    int64_t r = 0, t0 = 0, n_logits = 0;
    for (int32_t i = 0; i < n; i++) {
        const dsa_step_seq *s = &plan->seqs[i];
        int64_t first = t0;
        t0 += s->n_tokens;
        ws->m_first[i] = -1;
        if (s->spec_k <= 0)
            continue;
        int32_t v, after;
        if (s->sample) {
            v = s->n_tokens - s->n_draft + accepted[i];
            after = last[i];
        } else {
            v = s->n_tokens;
            after = s->next_token;
        }
        if (after < 0 || after >= V)
            v--; /* the token after the chunk is unknown: its last position waits */
        for (int32_t j = 0; j < v; j++, r++) {
            ws->m_tokens[r] = j + 1 < v || after < 0 || after >= V ? s->tokens[j + 1] : after;
            ws->m_pos[r] = s->pos + j;
            ws->m_seq[r] = i;
            ws->m_hrows[r] = (int32_t)(first + j);
        }
        if (s->sample && v > 0 && after >= 0 && after < V) {
            ws->m_lrows[n_logits] = (int32_t)(r - 1);
            ws->m_owner[n_logits++] = i;
            ws->m_first[i] = (int32_t)(r - 1); /* the row the chain continues from */
        }
    }
    if (r == 0)
        return DSA_OK;
    dsa_mtp_batch mb = {.n_tokens = r, .tokens = ws->m_tokens, .pos = ws->m_pos,
                        .seq = ws->m_seq, .n_seqs = n, .block_tables = ws->bt,
                        .h = dsa_model_hidden(ws->m), .h_is_main = 1, .h_rows = ws->m_hrows,
                        .n_logits = n_logits, .logit_rows = ws->m_lrows};
    if ((err = mtp_drafts(ws, &mb)))
        return err;
    for (int64_t q = 0; q < n_logits; q++) {
        dsa_step_out *o = &res->seqs[ws->m_owner[q]];
        o->drafts[0] = ws->m_ids[q];
        o->n_drafts = 1;
    }

    /* Passes 2..k: one position further per chain, on the module's own
     * output.  m_first[i] is the previous pass's row of sequence i. */
    for (int32_t c = 1; c < k_max; c++) {
        int64_t m = 0;
        for (int32_t i = 0; i < n; i++) {
            const dsa_step_seq *s = &plan->seqs[i];
            dsa_step_out *o = &res->seqs[i];
            if (ws->m_first[i] < 0 || s->spec_k <= c || o->n_drafts != c)
                continue;
            int32_t p = ws->m_pos[ws->m_first[i]] + 1;
            if (p >= (int64_t)s->n_blocks * bs)
                continue; /* no block for it: the chain ends */
            ws->m_hrows[m] = ws->m_first[i];
            ws->m_owner[m] = i;
            m++;
        }
        if (m == 0)
            break;
        /* the previous pass's positions are read above before being replaced */
        for (int64_t q = 0; q < m; q++) {
            int32_t i = ws->m_owner[q];
            ws->m_pos[q] = ws->m_pos[ws->m_hrows[q]] + 1;
            ws->m_first[i] = (int32_t)q;
            /* the module's output row of that position (pass 1 ran its
             * layer on the logit rows only) */
            ws->m_hrows[q] = dsa_mtp_hidden_row(ws->mtp, ws->m_hrows[q]);
        }
        for (int64_t q = 0; q < m; q++) {
            int32_t i = ws->m_owner[q];
            ws->m_tokens[q] = res->seqs[i].drafts[c - 1];
            ws->m_seq[q] = i;
            ws->m_lrows[q] = (int32_t)q;
        }
        mb = (dsa_mtp_batch){.n_tokens = m, .tokens = ws->m_tokens, .pos = ws->m_pos,
                             .seq = ws->m_seq, .n_seqs = n, .block_tables = ws->bt,
                             .h = dsa_mtp_hidden(ws->mtp), .h_is_main = 0,
                             .h_rows = ws->m_hrows, .n_logits = m, .logit_rows = ws->m_lrows};
        if ((err = mtp_drafts(ws, &mb)))
            return err;
        for (int64_t q = 0; q < m; q++) {
            dsa_step_out *o = &res->seqs[ws->m_owner[q]];
            o->drafts[o->n_drafts++] = ws->m_ids[q];
        }
    }
    return DSA_OK;
}

/* The MTP's drafts for the sequences that want them. */
dsa_err dsa_worker_spec_finish(dsa_worker_step *ws, const dsa_step_plan *plan,
                               dsa_step_result *res)
{
    int32_t n = plan->n_seqs;
    int32_t *acc = malloc((size_t)n * sizeof *acc), *last = malloc((size_t)n * sizeof *last);
    dsa_err err = DSA_OK;
    if (!acc || !last) {
        err = dsa_fail(DSA_NOMEM, "drafts");
        goto out;
    }
    for (int32_t i = 0; i < n; i++) {
        const dsa_step_out *o = &res->seqs[i];
        acc[i] = o->n_extra;
        last[i] = o->n_extra > 0 ? o->extra[o->n_extra - 1].token : o->token;
    }
    err = dsa_worker_spec_draft(ws, plan, acc, last, res);
out:
    free(acc);
    free(last);
    return err;
}

/* The drafts of s that the sampled ids (ids[0..n_draft], the row of each
 * verified position) confirm: the longest prefix of them equal to the id
 * sampled before it.  *a_out of them are accepted; o->extra gets room for
 * the tokens after the first (o->token). */
dsa_err dsa_worker_accept_drafts(const dsa_step_seq *s, const int32_t *ids, dsa_step_out *o,
                                 int32_t *a_out)
{
    const int32_t *drafts = s->tokens + s->n_tokens - s->n_draft;
    int32_t a = 0;
    while (a < s->n_draft && ids[a] == drafts[a])
        a++;
    *a_out = 0;
    if (a > 0 && !(o->extra = calloc((size_t)a, sizeof *o->extra)))
        return dsa_fail(DSA_NOMEM, "accepted tokens");
    o->n_extra = a;
    *a_out = a;
    return DSA_OK;
}

/* The prompt positions of s whose logprobs this step scores (those of its
 * tokens that have a next prompt token: *n_out of them), with room for
 * their entries in o->prompt_lps. */
dsa_err dsa_worker_prompt_lps_alloc(const dsa_step_seq *s, dsa_step_out *o, int32_t *n_out)
{
    int32_t n = 0;
    while (s->prompt_lps && n < s->n_tokens && s->pos + n + 1 < s->n_prompt)
        n++;
    *n_out = 0;
    if (n && !(o->prompt_lps = calloc((size_t)n, sizeof *o->prompt_lps)))
        return dsa_fail(DSA_NOMEM, "prompt logprobs");
    o->n_prompt_lps = n;
    *n_out = n;
    return DSA_OK;
}
