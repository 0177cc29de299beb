/* test_engine_mask.c - grammar masks filled on the engine's helper thread
 * during the forward pass (head/engine_mask.h) give exactly the outputs of
 * masks filled on the engine thread before each step: many constrained
 * requests (JSON schemas, JSON mode, a regex, a choice), greedy and sampled
 * with a seed, batched together, run through both engines on the golden
 * tiny model; the token ids and logprobs must match one for one, every
 * token must follow its grammar (the engine fails a request whose token
 * does not), and the overlapped engine must really have used its thread.
 * With speculative decoding (tiny-mtp, k = 2) the same requests give the
 * same tokens and logprobs as without drafts, both ways of filling the
 * masks, while drafts cut to the grammar are verified under one mask per
 * position.
 * The grammars use the real DeepSeek-V3 tokenizer; the tiny model's 256
 * logits are its first ids ("!".."~" and the other byte tokens). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/grammar.h"
#include "common/log.h"
#include "common/tokenizer.h"
#include "head/engine.h"
#include "tests/support.h"
#include "worker/step.h"

#define N_REQ 24
#define MAX_NEW 24

static const struct {
    dsa_gram_kind kind;
    const char *text;
} GRAMMARS[] = {
    {DSA_GRAM_JSON_SCHEMA, "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\","
                           "\"maxLength\":6},\"age\":{\"type\":\"integer\",\"minimum\":0,"
                           "\"maximum\":130}},\"required\":[\"name\",\"age\"],"
                           "\"additionalProperties\":false}"},
    {DSA_GRAM_JSON_SCHEMA, "{\"type\":\"array\",\"items\":{\"type\":\"integer\",\"minimum\":-50,"
                           "\"maximum\":50},\"minItems\":1,\"maxItems\":4}"},
    {DSA_GRAM_JSON_SCHEMA, "{\"type\":\"object\",\"properties\":{\"color\":{\"enum\":[\"red\","
                           "\"green\",\"blue\"]},\"ok\":{\"type\":\"boolean\"}},"
                           "\"required\":[\"color\",\"ok\"]}"},
    {DSA_GRAM_JSON_OBJECT, ""},
    {DSA_GRAM_REGEX, "[A-Z]{3}-[0-9]{2,4}( [a-z]+)*"},
    {DSA_GRAM_CHOICE, "[\"yes\",\"no\",\"maybe later\"]"},
};
#define N_GRAM ((int)(sizeof GRAMMARS / sizeof GRAMMARS[0]))

typedef struct out {
    int32_t ids[MAX_NEW + 1];
    float lps[MAX_NEW + 1];
    int n, status, done;
    char finish[16];
} out;

typedef struct run_cfg {
    const char *model; /* under tests/data */
    int spec_k;
    int mask_sync;
    uint64_t drafts, draft_tokens, accepted; /* out: the spec counters */
} run_cfg;

static dsa_worker_step *make_worker(const run_cfg *c)
{
    char *dir = dsa_test_data_path(c->model);
    dsa_worker_step_params p = {.model_dir = dir, .n_threads = 1, .block_size = 16,
                                .max_model_len = 128, .n_blocks = 64,
                                .spec_tokens = c->spec_k};
    dsa_worker_step *ws = NULL;
    cr_assert_eq(dsa_worker_step_create(&p, &ws), DSA_OK, "%s", dsa_errmsg());
    free(dir);
    return ws;
}

static void notify(void *user)
{
    (void)user; /* the test polls */
}

/* Runs the N_REQ requests on a fresh engine; returns the masks its helper
 * thread filled. */
static int64_t run_engine(run_cfg *c, dsa_gram *const *grams, size_t n_words, out *o)
{
    dsa_transport *t;
    cr_assert_eq(dsa_worker_step_transport(make_worker(c), &t), DSA_OK);
    dsa_metrics m;
    dsa_metrics_init(&m, "tiny");
    dsa_engine_params p = {.transport = t, .metrics = &m, .max_num_seqs = 8,
                           .max_num_batched_tokens = 64, .eos_token_id = 1,
                           .notify = notify, .mask_sync = c->mask_sync,
                           .spec_k = c->spec_k};
    dsa_engine *e;
    cr_assert_eq(dsa_engine_create(&p, &e), DSA_OK);
    dsa_engine_req *rs[N_REQ];
    for (int i = 0; i < N_REQ; i++) {
        int32_t prompt[4] = {0, 3 + i % 7, 10 + i, 40 + i % 5};
        cr_assert_eq(dsa_engine_req_create(prompt, 4, &rs[i]), DSA_OK);
        dsa_engine_req *r = rs[i];
        r->max_new = MAX_NEW;
        /* even requests greedy, odd ones sampled with their own seed */
        r->sp = (dsa_sampling){.temperature = i % 2 ? 1.0f : 0.0f, .top_p = 1.0f,
                               .seed = 1000 + (uint64_t)i, .n_logprobs = 0,
                               .repetition_penalty = 1};
        r->want_logprobs = 1;
        r->t_arrival = dsa_time_now();
        dsa_gram *g = grams[i % N_GRAM];
        r->gram = dsa_gram_retain(g);
        r->gram_state = dsa_gram_start(g);
        r->gram_words = (int32_t)n_words;
        cr_assert(r->gram_mask = malloc(n_words * sizeof *r->gram_mask));
        memset(&o[i], 0, sizeof o[i]);
        dsa_engine_submit(e, r);
    }
    int finished = 0;
    double t0 = dsa_time_now();
    while (finished < N_REQ && dsa_time_now() - t0 < 60) {
        dsa_engine_event *ev = dsa_engine_poll(e);
        if (!ev)
            usleep(1000);
        while (ev) {
            dsa_engine_event *next = ev->next;
            int i = 0;
            while (i < N_REQ && rs[i] != ev->req)
                i++;
            cr_assert_lt(i, N_REQ);
            for (int k = 0; k < ev->n_lps && o[i].n <= MAX_NEW; k++) {
                o[i].ids[o[i].n] = ev->lps[k].id;
                o[i].lps[o[i].n++] = ev->lps[k].logprob;
            }
            if (ev->status)
                o[i].status = ev->status;
            if (ev->finish) {
                snprintf(o[i].finish, sizeof o[i].finish, "%s", ev->finish);
                finished++;
            }
            dsa_engine_event_free(ev);
            ev = next;
        }
    }
    cr_assert_eq(finished, N_REQ, "%d of %d requests finished", finished, N_REQ);
    int64_t n_over = dsa_engine_n_masks_overlapped(e);
    c->drafts = m.spec_drafts;
    c->draft_tokens = m.spec_draft_tokens;
    c->accepted = m.spec_accepted_tokens;
    for (int i = 0; i < N_REQ; i++)
        dsa_engine_req_release(rs[i]);
    dsa_engine_destroy(e);
    dsa_metrics_deinit(&m);
    dsa_transport_destroy(t);
    return n_over;
}

typedef struct gram_set {
    dsa_tok *tok;
    dsa_gram_vocab *voc;
    dsa_gram *g[N_GRAM];
    size_t n_words;
} gram_set;

static void grams_load(gram_set *gs)
{
    dsa_log_setup(DSA_LOG_WARN, 0);
    char *dir = dsa_test_data_path("deepseek-v3-tokenizer");
    cr_assert_eq(dsa_tok_load(dir, &gs->tok), DSA_OK, "%s", dsa_errmsg());
    free(dir);
    int32_t eos = 1;
    dsa_gram_vocab_params vp = {.tok = gs->tok, .n_vocab = 129280, .stop_ids = &eos,
                                .n_stop_ids = 1};
    cr_assert_eq(dsa_gram_vocab_create(&vp, &gs->voc), DSA_OK, "%s", dsa_errmsg());
    for (int g = 0; g < N_GRAM; g++) {
        dsa_gram_params gp = {.kind = GRAMMARS[g].kind, .text = GRAMMARS[g].text,
                              .len = strlen(GRAMMARS[g].text), .vocab = gs->voc,
                              .any_whitespace = 0};
        cr_assert_eq(dsa_gram_compile(&gp, &gs->g[g]), DSA_OK, "grammar %d: %s", g,
                     dsa_errmsg());
    }
    gs->n_words = dsa_gram_mask_words(gs->voc);
}

static void grams_free(gram_set *gs)
{
    for (int g = 0; g < N_GRAM; g++)
        dsa_gram_destroy(gs->g[g]);
    dsa_gram_vocab_destroy(gs->voc);
    dsa_tok_destroy(gs->tok);
}

/* a and b gave the same tokens and logprobs, each following its grammar;
 * returns the tokens. */
static int64_t same_outputs(const out *a, const out *b, dsa_gram *const *grams)
{
    int64_t n_tokens = 0;
    for (int i = 0; i < N_REQ; i++) {
        cr_assert_eq(a[i].status, 0, "request %d failed (first run)", i);
        cr_assert_eq(b[i].status, 0, "request %d failed (second run)", i);
        cr_assert_str_eq(a[i].finish, b[i].finish, "request %d", i);
        cr_assert_eq(a[i].n, b[i].n, "request %d", i);
        cr_assert_gt(a[i].n, 0);
        /* each output follows its grammar, replayed here from the start */
        dsa_gram *g = grams[i % N_GRAM];
        int32_t st = dsa_gram_start(g);
        for (int k = 0; k < a[i].n; k++) {
            cr_assert_eq(a[i].ids[k], b[i].ids[k], "request %d token %d", i, k);
            cr_assert_eq(a[i].lps[k], b[i].lps[k], "request %d token %d", i, k);
            cr_assert_eq(dsa_gram_accept_token(g, &st, a[i].ids[k]), DSA_OK,
                         "request %d token %d (%d)", i, k, a[i].ids[k]);
        }
        n_tokens += a[i].n;
    }
    return n_tokens;
}

Test(engine_mask, overlapped_equals_sequential)
{
    gram_set gs;
    grams_load(&gs);
    static out seq[N_REQ], ovl[N_REQ];
    run_cfg cs = {.model = "golden/tiny-f32", .mask_sync = 1};
    run_cfg co = {.model = "golden/tiny-f32", .mask_sync = 0};
    cr_assert_eq(run_engine(&cs, gs.g, gs.n_words, seq), 0);
    int64_t n_over = run_engine(&co, gs.g, gs.n_words, ovl);
    int64_t n_tokens = same_outputs(seq, ovl, gs.g), n_stop = 0;
    for (int i = 0; i < N_REQ; i++)
        n_stop += strcmp(seq[i].finish, "stop") == 0;
    /* every sampling step of every request had its mask filled by the
     * helper (the first token's step included) */
    cr_assert_eq(n_over, n_tokens, "%lld masks overlapped, %lld tokens", (long long)n_over,
                 (long long)n_tokens);
    cr_assert_gt(n_stop, 0, "no request completed its grammar");
    grams_free(&gs);
}

Test(engine_mask, drafts_under_a_grammar)
{
    gram_set gs;
    grams_load(&gs);
    static out plain[N_REQ], seq[N_REQ], ovl[N_REQ];
    run_cfg c0 = {.model = "golden/tiny-mtp", .mask_sync = 1};
    run_cfg cs = {.model = "golden/tiny-mtp", .spec_k = 2, .mask_sync = 1};
    run_cfg co = {.model = "golden/tiny-mtp", .spec_k = 2, .mask_sync = 0};
    run_engine(&c0, gs.g, gs.n_words, plain);
    run_engine(&cs, gs.g, gs.n_words, seq);
    int64_t n_over = run_engine(&co, gs.g, gs.n_words, ovl);
    same_outputs(plain, seq, gs.g);
    int64_t n_tokens = same_outputs(plain, ovl, gs.g);
    fprintf(stderr, "tiny-mtp k=2 under grammars: %llu drafts, %llu draft tokens, %llu "
            "accepted\n", (unsigned long long)co.drafts, (unsigned long long)co.draft_tokens,
            (unsigned long long)co.accepted);
    cr_assert_eq(c0.drafts, 0);
    cr_assert_eq(cs.drafts, co.drafts);
    cr_assert_gt(co.drafts, 0, "no draft survived the grammars");
    /* the helper filled one mask per verified position: more than tokens
     * when drafts were rejected, never fewer */
    cr_assert_geq(n_over, n_tokens);
    grams_free(&gs);
}
