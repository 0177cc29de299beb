/* sched.c - continuous batching with chunked prefill, prefix caching and
 * preemption by recompute (see sched.h). */
#include "head/sched.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

static void q_push(dsa_sched_queue *q, dsa_sched_seq *s)
{
    s->next = NULL;
    s->prev = q->tail;
    if (q->tail)
        q->tail->next = s;
    else
        q->head = s;
    q->tail = s;
    q->n++;
}

static void q_push_front(dsa_sched_queue *q, dsa_sched_seq *s)
{
    s->prev = NULL;
    s->next = q->head;
    if (q->head)
        q->head->prev = s;
    else
        q->tail = s;
    q->head = s;
    q->n++;
}

static void q_unlink(dsa_sched_queue *q, dsa_sched_seq *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        q->head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    else
        q->tail = s->prev;
    s->next = s->prev = NULL;
    q->n--;
}

dsa_err dsa_sched_init(dsa_sched *s, const dsa_sched_params *p)
{
    memset(s, 0, sizeof *s);
    s->p = *p;
    if (p->n_blocks < 1 || p->block_size < 1 || p->max_num_seqs < 1 ||
        p->max_num_batched_tokens < 1)
        return dsa_fail(DSA_INVAL, "scheduler: blocks, block size, max seqs and token budget "
                        "must be positive");
    dsa_blocks_params bp = {.n_blocks = p->n_blocks, .block_size = p->block_size,
                            .caching = !p->disable_prefix_caching};
    return dsa_blocks_init(&s->bm, &bp);
}

static void batch_deinit(dsa_sched_batch *b)
{
    free(b->plan.seqs);
    free(b->planned);
    free(b->finished);
    memset(b, 0, sizeof *b);
}

void dsa_sched_deinit(dsa_sched *s)
{
    dsa_blocks_deinit(&s->bm);
    batch_deinit(&s->batch);
    free(s->finished);
    memset(s, 0, sizeof *s);
}

dsa_err dsa_sched_seq_init(dsa_sched_seq *q, uint64_t id, const int32_t *prompt,
                           int32_t n_prompt, int32_t max_new, const dsa_sampling *sp)
{
    memset(q, 0, sizeof *q);
    q->id = id;
    q->n_prompt = q->n_tokens = n_prompt;
    q->n_max = n_prompt + max_new;
    q->cap_tokens = q->n_max > 0 ? q->n_max : 1;
    q->sp = *sp;
    q->tokens = malloc((size_t)q->cap_tokens * sizeof *q->tokens);
    if (!q->tokens)
        return dsa_fail(DSA_NOMEM, "sequence tokens");
    memcpy(q->tokens, prompt, (size_t)n_prompt * sizeof *prompt);
    return DSA_OK;
}

void dsa_sched_seq_deinit(dsa_sched_seq *q)
{
    free(q->tokens);
    free(q->blocks);
    free(q->hashes);
    q->tokens = q->blocks = NULL;
    q->hashes = NULL;
}

int64_t dsa_sched_blocks_for(const dsa_sched *s, int64_t n_tokens)
{
    return (n_tokens + s->p.block_size - 1) / s->p.block_size;
}

dsa_err dsa_sched_add(dsa_sched *s, dsa_sched_seq *q)
{
    int64_t need = dsa_sched_blocks_for(s, q->n_max);
    if (need > s->p.n_blocks)
        return dsa_fail(DSA_RANGE, "sequence needs %lld KV blocks, the cache holds %lld",
                        (long long)need, (long long)s->p.n_blocks);
    if (need < 1)
        need = 1;
    if (!q->blocks) {
        q->blocks = malloc((size_t)need * sizeof *q->blocks);
        q->hashes = malloc((size_t)need * sizeof *q->hashes);
        if (!q->blocks || !q->hashes)
            return dsa_fail(DSA_NOMEM, "block table");
        q->cap_blocks = (int32_t)need;
    }
    q->state = DSA_SEQ_WAITING;
    q_push(&s->waiting, q);
    return DSA_OK;
}

static void note_finished(dsa_sched *s, uint64_t id)
{
    if (s->n_finished == s->cap_finished) {
        int32_t cap = s->cap_finished ? s->cap_finished * 2 : 16;
        uint64_t *n = realloc(s->finished, (size_t)cap * sizeof *n);
        if (!n)
            return; /* the worker keeps a little state; harmless */
        s->finished = n;
        s->cap_finished = cap;
    }
    s->finished[s->n_finished++] = id;
}

/* Releases a sequence's blocks, last first: its tail blocks then reach the
 * LRU list first and are evicted before its prefix. */
static void release_blocks(dsa_sched *s, dsa_sched_seq *q)
{
    for (int32_t i = q->n_blocks - 1; i >= 0; i--)
        dsa_blocks_release(&s->bm, q->blocks[i]);
    q->n_blocks = q->n_hashed = 0;
    q->n_computed = 0;
}

void dsa_sched_remove(dsa_sched *s, dsa_sched_seq *q)
{
    assert(!q->in_flight);
    if (q->state == DSA_SEQ_WAITING) {
        q_unlink(&s->waiting, q);
        if (q->n_preempted)
            note_finished(s, q->id); /* the workers hold its sampler state */
    } else if (q->state == DSA_SEQ_RUNNING) {
        q_unlink(&s->running, q);
        release_blocks(s, q);
        note_finished(s, q->id);
    }
    q->state = DSA_SEQ_DONE;
}

/* Sends a running sequence back to the front of the waiting queue. */
static void preempt(dsa_sched *s, dsa_sched_seq *q)
{
    q_unlink(&s->running, q);
    release_blocks(s, q);
    q->state = DSA_SEQ_WAITING;
    q->n_draft = 0; /* the recomputed prefill proposes new ones */
    q->n_preempted++;
    q_push_front(&s->waiting, q);
    s->st.preemptions++;
}

/* The newest running sequence other than q that is not in flight. */
static dsa_sched_seq *victim(dsa_sched *s, const dsa_sched_seq *q)
{
    for (dsa_sched_seq *v = s->running.tail; v; v = v->prev)
        if (v != q && !v->in_flight)
            return v;
    return NULL;
}

/* Gives q blocks for n_tokens, preempting newer sequences when allowed.
 * Returns 0 when the blocks cannot be had. */
static int grow_blocks(dsa_sched *s, dsa_sched_seq *q, int64_t n_tokens, int may_preempt)
{
    int64_t need = dsa_sched_blocks_for(s, n_tokens);
    assert(need <= q->cap_blocks);
    while (q->n_blocks < need) {
        int32_t id = dsa_blocks_alloc(&s->bm);
        if (id >= 0) {
            q->blocks[q->n_blocks++] = id;
            continue;
        }
        dsa_sched_seq *v = may_preempt ? victim(s, q) : NULL;
        if (!v)
            return 0;
        preempt(s, v);
    }
    return 1;
}

/* Blocks for the MTP's draft chain past a sampling chunk of n tokens (k - 1
 * positions after the last verified one), when free blocks allow: without
 * them the chain is shorter, nothing else changes. */
static void spec_room(dsa_sched *s, dsa_sched_seq *q, int32_t n)
{
    if (q->spec_k < 2)
        return;
    int64_t want = (int64_t)q->n_computed + n + q->spec_k - 1;
    if (want > (int64_t)q->cap_blocks * s->p.block_size)
        want = (int64_t)q->cap_blocks * s->p.block_size;
    grow_blocks(s, q, want, 0);
}

/* Plans n tokens of q, the last nd of them drafts to verify. */
static void plan_add(dsa_sched *s, dsa_sched_batch *b, dsa_sched_seq *q, int32_t n, int32_t nd)
{
    int32_t i = b->plan.n_seqs++;
    int sample = q->n_computed + n - nd == q->n_tokens;
    if (sample)
        spec_room(s, q, n);
    q->n_scheduled = n;
    q->in_flight = 1;
    b->planned[i] = q;
    b->plan.seqs[i] = (dsa_step_seq){
        .seq_id = q->id, .pos = q->n_computed, .n_prompt = q->n_prompt, .n_tokens = n,
        .tokens = q->tokens + q->n_computed, .n_blocks = q->n_blocks, .blocks = q->blocks,
        .sample = sample, .step = (uint32_t)q->n_generated, .sp = q->sp,
        .next_token = q->n_computed + n < q->n_tokens ? q->tokens[q->n_computed + n] : -1,
        .n_draft = nd, .spec_k = q->spec_k};
    if (q->ctl) {
        dsa_step_seq *d = &b->plan.seqs[i];
        const dsa_step_seq *c = q->ctl;
        d->n_allowed = c->n_allowed;
        d->allowed = c->allowed;
        d->min_tokens = c->min_tokens;
        d->n_banned = c->n_banned;
        d->banned = c->banned;
        d->n_bias = c->n_bias;
        d->bias_ids = c->bias_ids;
        d->bias_values = c->bias_values;
        d->prompt_lps = c->prompt_lps;
        d->prompt_top = c->prompt_top;
    }
    int32_t end = q->n_computed + n < q->n_prompt ? q->n_computed + n : q->n_prompt;
    if (end > q->n_computed)
        s->st.prompt_computed += (uint64_t)(end - q->n_computed);
    s->st.tokens_computed += (uint64_t)n;
}

/* Plans n tokens of running sequence q; on a block shortage preempts newer
 * sequences, else q itself.  Returns the tokens planned (0 or n). */
static int32_t plan_running(dsa_sched *s, dsa_sched_batch *b, dsa_sched_seq *q, int32_t n,
                            int32_t nd)
{
    if (!grow_blocks(s, q, (int64_t)q->n_computed + n, 1)) {
        preempt(s, q);
        return 0;
    }
    plan_add(s, b, q, n, nd);
    return n;
}

/* Drafts q verifies in its next decode: its proposals, as many as its
 * output can still take after the token they follow (so a max_tokens cut
 * never falls inside a planned run) and the step's token budget allows.
 * The drafts are written after q's tokens, where the plan reads them. */
static int32_t drafts_take(dsa_sched_seq *q, int64_t budget)
{
    int32_t nd = q->n_draft, room = q->n_max - q->n_tokens - 1;
    if (nd > room)
        nd = room;
    if (nd > budget - 1)
        nd = (int32_t)(budget - 1);
    if (nd < 0)
        nd = 0;
    for (int32_t j = 0; j < nd; j++)
        q->tokens[q->n_tokens + j] = q->drafts[j];
    return nd;
}

static int wants_plp(const dsa_sched_seq *q)
{
    return q->ctl && q->ctl->prompt_lps;
}

/* A chunk of n tokens, shortened for a sequence asking prompt logprobs. */
static int32_t chunk_len(const dsa_sched_seq *q, int32_t n)
{
    return wants_plp(q) && n > DSA_SCHED_PLP_CHUNK ? DSA_SCHED_PLP_CHUNK : n;
}

static int has_rep_penalty(const dsa_sampling *sp)
{
    return sp->repetition_penalty != 1 && sp->repetition_penalty > 0;
}

/* Finds the cached full blocks at the start of q's tokens, keeping at
 * least one token to compute; their ids go to q->blocks and keys to
 * q->hashes (not referenced yet).  Returns how many. */
static int32_t prefix_lookup(dsa_sched *s, dsa_sched_seq *q)
{
    if (s->p.disable_prefix_caching || (has_rep_penalty(&q->sp) && !q->n_preempted) ||
        wants_plp(q))
        return 0;
    int64_t bs = s->p.block_size;
    int32_t n_full = (int32_t)((q->n_tokens - 1) / bs), n = 0;
    uint64_t parent = s->p.hash_seed;
    for (; n < n_full; n++) {
        const int32_t *t = q->tokens + n * bs;
        uint64_t h = dsa_blocks_hash(parent, t, bs);
        int32_t id = dsa_blocks_lookup(&s->bm, parent, h, t);
        if (id < 0)
            break;
        q->blocks[n] = id;
        q->hashes[n] = h;
        parent = h;
    }
    return n;
}

/* Tries to move the oldest waiting sequence into the running set with its
 * first chunk.  Returns the tokens planned, 0 when it must wait. */
static int32_t admit(dsa_sched *s, dsa_sched_batch *b, dsa_sched_seq *q, int64_t budget)
{
    int64_t bs = s->p.block_size;
    int32_t n_hit = prefix_lookup(s, q);
    int64_t hit_idle = 0; /* hits now on the LRU list: taking them uses up availability */
    for (int32_t i = 0; i < n_hit; i++)
        hit_idle += s->bm.b[q->blocks[i]].ref == 0;
    int32_t n_cached = (int32_t)(n_hit * bs);
    int32_t left = q->n_tokens - n_cached;
    int32_t n = chunk_len(q, left < budget ? left : (int32_t)budget);
    int64_t need = dsa_sched_blocks_for(s, (int64_t)n_cached + n) - n_hit;
    if (need > dsa_blocks_available(&s->bm) - hit_idle)
        return 0;
    if (!s->p.disable_prefix_caching) {
        s->st.prefix_queries += (uint64_t)q->n_tokens;
        s->st.prefix_hits += (uint64_t)n_cached;
    }
    for (int32_t i = 0; i < n_hit; i++)
        dsa_blocks_ref(&s->bm, q->blocks[i]);
    q->n_blocks = q->n_hashed = n_hit;
    q->n_computed = n_cached;
    q_unlink(&s->waiting, q);
    q_push(&s->running, q);
    q->state = DSA_SEQ_RUNNING;
    int ok = grow_blocks(s, q, (int64_t)n_cached + n, 0);
    assert(ok);
    (void)ok;
    plan_add(s, b, q, n, 0);
    return n;
}

static int batch_reserve(dsa_sched *s, dsa_sched_batch *b)
{
    int32_t cap = (int32_t)s->p.max_num_seqs;
    if (b->cap < cap) {
        free(b->plan.seqs);
        free(b->planned);
        b->plan.seqs = calloc((size_t)cap, sizeof *b->plan.seqs);
        b->planned = calloc((size_t)cap, sizeof *b->planned);
        if (!b->plan.seqs || !b->planned) {
            b->cap = 0;
            return -1;
        }
        b->cap = cap;
    }
    /* the batch takes the finished ids */
    if (s->n_finished > b->cap_finished) {
        uint64_t *f = realloc(b->finished, (size_t)s->n_finished * sizeof *f);
        if (!f)
            return -1;
        b->finished = f;
        b->cap_finished = s->n_finished;
    }
    if (s->n_finished)
        memcpy(b->finished, s->finished, (size_t)s->n_finished * sizeof *b->finished);
    b->plan.n_finished = s->n_finished;
    b->plan.finished = b->finished;
    s->n_finished = 0;
    return 0;
}

int dsa_sched_schedule_batch(dsa_sched *s, dsa_sched_batch *b)
{
    b->plan.n_seqs = 0;
    b->plan.n_finished = 0;
    if (batch_reserve(s, b))
        return 0;
    b->plan.step_id = ++s->step_id;
    int64_t budget = s->p.max_num_batched_tokens;
    int32_t cap = b->limit > 0 && b->limit < b->cap ? b->limit : b->cap;
    uint64_t preempted_before = s->st.preemptions;
    /* 1: decodes of running sequences, oldest first */
    for (dsa_sched_seq *q = s->running.head, *next; q && budget > 0 && b->plan.n_seqs < cap;
         q = next) {
        next = q->next;
        if (q->in_flight || q->n_tokens - q->n_computed != 1)
            continue;
        int32_t nd = drafts_take(q, budget);
        if (!plan_running(s, b, q, 1 + nd, nd))
            break; /* q gave way itself: every other one is in flight */
        budget -= 1 + nd;
        next = q->next; /* a victim may have been q's successor */
    }
    /* 2: prefill chunks of running sequences */
    for (dsa_sched_seq *q = s->running.head, *next; q && budget > 0 && b->plan.n_seqs < cap;
         q = next) {
        next = q->next;
        int32_t left = q->n_tokens - q->n_computed;
        if (q->in_flight || left < 1)
            continue;
        int32_t n = chunk_len(q, left < budget ? left : (int32_t)budget);
        if (!plan_running(s, b, q, n, 0))
            break;
        budget -= n;
        next = q->next;
    }
    /* 3: waiting sequences in order; none overtakes the oldest.  Not in a
     * step that preempted: the blocks just freed belong to the running. */
    while (s->waiting.head && budget > 0 && s->running.n < s->p.max_num_seqs &&
           b->plan.n_seqs < cap && s->st.preemptions == preempted_before) {
        int32_t n = admit(s, b, s->waiting.head, budget);
        if (!n)
            break;
        budget -= n;
    }
    return b->plan.n_seqs;
}

dsa_err dsa_sched_commit_batch(dsa_sched *s, dsa_sched_batch *b, const dsa_step_result *r)
{
    int64_t bs = s->p.block_size;
    b->plan.n_finished = 0;
    for (int32_t i = 0; i < b->plan.n_seqs; i++) {
        dsa_sched_seq *q = b->planned[i];
        q->in_flight = 0;
        int32_t nd = b->plan.seqs[i].n_draft;
        const dsa_step_out *o = r && i < r->n_seqs ? &r->seqs[i] : NULL;
        int32_t tok = o ? o->token : -1;
        int32_t acc = o && tok >= 0 ? o->n_extra : 0;
        if (acc > nd)
            acc = nd; /* a worker never accepts more; the head trusts no more */
        if (r)
            q->n_computed += q->n_scheduled - nd + acc;
        q->n_scheduled = 0;
        q->n_draft = 0;
        if (!r)
            continue;
        if (tok >= 0 && b->plan.seqs[i].sample) {
            for (int32_t j = 0; j <= acc && q->n_tokens < q->cap_tokens; j++) {
                q->tokens[q->n_tokens++] = j == 0 ? tok : o->extra[j - 1].token;
                q->n_generated++;
            }
            int32_t n = o->n_drafts < q->spec_k ? o->n_drafts : q->spec_k;
            for (int32_t j = 0; j < n; j++)
                q->drafts[j] = o->drafts[j];
            q->n_draft = n > 0 ? n : 0;
        }
        if (s->p.disable_prefix_caching)
            continue;
        /* publish the blocks this step filled */
        int32_t n_full = (int32_t)(q->n_computed / bs);
        for (int32_t k = q->n_hashed; k < n_full; k++) {
            uint64_t parent = k ? q->hashes[k - 1] : s->p.hash_seed;
            const int32_t *t = q->tokens + k * bs;
            q->hashes[k] = dsa_blocks_hash(parent, t, bs);
            dsa_blocks_publish(&s->bm, q->blocks[k], parent, q->hashes[k], t);
        }
        if (n_full > q->n_hashed)
            q->n_hashed = n_full;
    }
    return DSA_OK;
}

int dsa_sched_schedule(dsa_sched *s)
{
    int n = dsa_sched_schedule_batch(s, &s->batch);
    s->plan = s->batch.plan;
    s->planned = s->batch.planned;
    return n;
}

dsa_err dsa_sched_commit(dsa_sched *s, const dsa_step_result *r)
{
    dsa_err err = dsa_sched_commit_batch(s, &s->batch, r);
    s->plan = s->batch.plan;
    return err;
}

double dsa_sched_kv_usage(const dsa_sched *s)
{
    return s->p.n_blocks ? (double)dsa_blocks_used(&s->bm) / (double)s->p.n_blocks : 0;
}
