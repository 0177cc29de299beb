/* test_proto.c - StepPlan/StepResult encode/decode: round trips,
 * truncation at every byte, and garbage. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "proto/step.h"

static int32_t allowed[] = {3, 9, 100}, banned[] = {1, 77}, bias_ids[] = {4, 50};
static float bias_values[] = {-100.0f, 2.5f};
static uint32_t gram_mask[] = {0x80000001u, 0, 0xdeadbeefu}; /* a grammar bitmask */
/* a sequence with 2 drafts: one 2-word mask per verified position */
static uint32_t spec_mask[] = {1u, 2u, 3u, 4u, 0xfeedf00du, 6u};

static dsa_step_plan sample_plan(int32_t *toks, int32_t *blocks, uint64_t *fin)
{
    static dsa_step_seq seqs[2];
    seqs[0] = (dsa_step_seq){.seq_id = 7, .pos = 0, .n_prompt = 3, .n_tokens = 3,
                             .tokens = toks, .n_blocks = 1, .blocks = blocks, .sample = 1,
                             .step = 0,
                             .sp = {.temperature = 0.7f, .top_p = 0.9f, .min_p = 0.05f,
                                    .top_k = 40, .seed = 0x123456789abcdefULL,
                                    .presence_penalty = 0.5f, .frequency_penalty = -0.25f,
                                    .repetition_penalty = 1.1f, .n_logprobs = 5},
                             .n_draft = 2, .spec_k = 3, .n_mask = 2, .mask = spec_mask};
    seqs[1] = (dsa_step_seq){.seq_id = 9, .pos = 17, .n_prompt = 4, .n_tokens = 1,
                             .tokens = toks + 3, .n_blocks = 2, .blocks = blocks + 1,
                             .sample = 1, .step = 13, .sp = {.n_logprobs = -1},
                             .n_allowed = 3, .allowed = allowed, .min_tokens = 5,
                             .n_banned = 2, .banned = banned, .n_bias = 2,
                             .bias_ids = bias_ids, .bias_values = bias_values,
                             .prompt_lps = 1, .prompt_top = 4, .next_token = 1234,
                             .n_mask = 3, .mask = gram_mask};
    return (dsa_step_plan){.step_id = 42, .n_seqs = 2, .seqs = seqs, .n_finished = 2,
                           .finished = fin};
}

Test(proto, plan_round_trip)
{
    int32_t toks[] = {5, 6, 7, 8};
    int32_t blocks[] = {3, 4, 5};
    uint64_t fin[] = {1, 2};
    dsa_step_plan p = sample_plan(toks, blocks, fin), q;
    uint8_t *buf;
    size_t len;
    cr_assert_eq(dsa_step_plan_encode(&p, &buf, &len), DSA_OK);
    cr_assert_eq(dsa_step_plan_decode(buf, len, &q), DSA_OK);
    cr_assert_eq(q.step_id, 42);
    cr_assert_eq(q.n_seqs, 2);
    cr_assert_eq(q.n_finished, 2);
    cr_assert_eq(q.finished[1], 2);
    for (int i = 0; i < 2; i++) {
        const dsa_step_seq *a = &p.seqs[i], *b = &q.seqs[i];
        cr_assert_eq(a->seq_id, b->seq_id);
        cr_assert_eq(a->pos, b->pos);
        cr_assert_eq(a->n_prompt, b->n_prompt);
        cr_assert_eq(a->n_tokens, b->n_tokens);
        cr_assert_eq(memcmp(a->tokens, b->tokens, (size_t)a->n_tokens * 4), 0);
        cr_assert_eq(a->n_blocks, b->n_blocks);
        cr_assert_eq(memcmp(a->blocks, b->blocks, (size_t)a->n_blocks * 4), 0);
        cr_assert_eq(a->sample, b->sample);
        cr_assert_eq(a->step, b->step);
        cr_assert_eq(memcmp(&a->sp, &b->sp, sizeof a->sp), 0);
        cr_assert_eq(a->n_allowed, b->n_allowed);
        cr_assert_eq(a->min_tokens, b->min_tokens);
        cr_assert_eq(a->n_banned, b->n_banned);
        cr_assert_eq(a->n_bias, b->n_bias);
        if (a->n_allowed) /* empty lists decode to NULL */
            cr_assert_eq(memcmp(a->allowed, b->allowed, (size_t)a->n_allowed * 4), 0);
        if (a->n_banned)
            cr_assert_eq(memcmp(a->banned, b->banned, (size_t)a->n_banned * 4), 0);
        if (a->n_bias) {
            cr_assert_eq(memcmp(a->bias_ids, b->bias_ids, (size_t)a->n_bias * 4), 0);
            cr_assert_eq(memcmp(a->bias_values, b->bias_values, (size_t)a->n_bias * 4), 0);
        }
        cr_assert_eq(a->prompt_lps, b->prompt_lps);
        cr_assert_eq(a->prompt_top, b->prompt_top);
        cr_assert_eq(a->next_token, b->next_token);
        cr_assert_eq(a->n_mask, b->n_mask);
        if (a->n_mask)
            cr_assert_eq(memcmp(a->mask, b->mask, (size_t)dsa_step_seq_mask_words(a) * 4), 0);
        cr_assert_eq(a->n_draft, b->n_draft);
        cr_assert_eq(a->spec_k, b->spec_k);
    }
    cr_assert_eq(dsa_step_seq_mask_words(&q.seqs[0]), 6);
    cr_assert_eq(q.seqs[0].mask[4], 0xfeedf00du);
    cr_assert_eq(dsa_step_seq_mask_words(&q.seqs[1]), 3);
    cr_assert_null(q.seqs[0].allowed);
    cr_assert_eq(q.seqs[1].allowed[2], 100);
    cr_assert_float_eq(q.seqs[1].bias_values[0], -100.0f, 0);
    dsa_step_plan_free(&q);
    free(buf);
}

Test(proto, plan_truncated_and_garbage)
{
    int32_t toks[] = {5, 6, 7, 8};
    int32_t blocks[] = {3, 4, 5};
    uint64_t fin[] = {1, 2};
    dsa_step_plan p = sample_plan(toks, blocks, fin), q;
    uint8_t *buf;
    size_t len;
    cr_assert_eq(dsa_step_plan_encode(&p, &buf, &len), DSA_OK);
    for (size_t n = 0; n < len; n++) {
        /* a copy of exactly n bytes so ASan sees any over-read */
        uint8_t *t = malloc(n ? n : 1);
        memcpy(t, buf, n);
        cr_assert_eq(dsa_step_plan_decode(t, n, &q), DSA_FORMAT, "length %zu", n);
        free(t);
    }
    srand(1);
    for (int it = 0; it < 2000; it++) {
        uint8_t *t = malloc(len);
        memcpy(t, buf, len);
        t[rand() % len] ^= (uint8_t)(1 + rand() % 255);
        if (dsa_step_plan_decode(t, len, &q) == DSA_OK)
            dsa_step_plan_free(&q);
        free(t);
    }
    buf[0] ^= 1;
    cr_assert_eq(dsa_step_plan_decode(buf, len, &q), DSA_FORMAT);
    free(buf);
}

Test(proto, result_round_trip_and_truncation)
{
    dsa_prompt_lp plps[2] = {{.pos = 1, .token = 40, .logprob = -3.25f, .rank = 7, .n_top = 2,
                              .top_ids = {2, 3}, .top_logprobs = {-0.25f, -1.0f}},
                             {.pos = 2, .token = 41, .logprob = -0.5f, .rank = 1}};
    dsa_step_tok extra[2] = {{.token = 13, .logprob = -0.75f, .n_top = 1, .top_ids = {13},
                              .top_logprobs = {-0.75f}},
                             {.token = 14, .logprob = -2.0f}};
    dsa_step_out outs[2] = {{.seq_id = 7, .token = 11, .logprob = -0.5f, .n_top = 2,
                             .top_ids = {11, 12}, .top_logprobs = {-0.5f, -1.5f},
                             .n_extra = 2, .extra = extra, .n_drafts = 3,
                             .drafts = {97, 98, 99}},
                            {.seq_id = 9, .token = -1, .n_prompt_lps = 2,
                             .prompt_lps = plps}};
    dsa_step_result r = {.step_id = 5, .status = DSA_OK, .n_seqs = 2, .seqs = outs}, q;
    strcpy(r.message, "fine");
    uint8_t *buf;
    size_t len;
    cr_assert_eq(dsa_step_result_encode(&r, &buf, &len), DSA_OK);
    cr_assert_eq(dsa_step_result_decode(buf, len, &q), DSA_OK);
    cr_assert_eq(q.n_seqs, 2);
    cr_assert_str_eq(q.message, "fine");
    cr_assert_eq(q.seqs[0].top_ids[1], 12);
    cr_assert_float_eq(q.seqs[0].top_logprobs[1], -1.5f, 0);
    cr_assert_eq(q.seqs[1].token, -1);
    cr_assert_eq(q.seqs[0].n_prompt_lps, 0);
    cr_assert_null(q.seqs[0].prompt_lps);
    cr_assert_eq(q.seqs[1].n_prompt_lps, 2);
    cr_assert_eq(memcmp(q.seqs[1].prompt_lps, plps, sizeof plps), 0);
    cr_assert_eq(q.seqs[0].n_extra, 2);
    cr_assert_eq(memcmp(q.seqs[0].extra, extra, sizeof extra), 0);
    cr_assert_eq(q.seqs[0].n_drafts, 3);
    cr_assert_eq(q.seqs[0].drafts[2], 99);
    cr_assert_eq(q.seqs[1].n_extra, 0);
    cr_assert_null(q.seqs[1].extra);
    dsa_step_result_free(&q);
    for (size_t n = 0; n < len; n++) {
        uint8_t *t = malloc(n ? n : 1);
        memcpy(t, buf, n);
        cr_assert_eq(dsa_step_result_decode(t, n, &q), DSA_FORMAT, "length %zu", n);
        free(t);
    }
    free(buf);
}

/* masks_later (protocol 6): the plan frame holds each sequence's n_mask
 * but no words, and is smaller by them; a StepMasks frame brings them to
 * the decoded plan; a frame of another step, a count that does not fit
 * the plan, truncation and a second delivery are refused. */
Test(proto, masks_after_the_plan)
{
    int32_t toks[] = {5, 6, 7, 8};
    int32_t blocks[] = {3, 4, 5};
    uint64_t fin[] = {1, 2};
    dsa_step_plan p = sample_plan(toks, blocks, fin), q;
    uint8_t *full, *buf, *mbuf;
    size_t full_len, len, mlen;
    cr_assert_eq(dsa_step_plan_encode(&p, &full, &full_len), DSA_OK);
    p.masks_later = 1;
    cr_assert_eq(dsa_step_plan_encode(&p, &buf, &len), DSA_OK);
    cr_assert_eq(len, full_len - (6 + 3) * 4);
    cr_assert_eq(dsa_step_masks_encode(&p, &mbuf, &mlen), DSA_OK);
    cr_assert_eq(dsa_step_plan_decode(buf, len, &q), DSA_OK);
    cr_assert_eq(q.masks_later, 1);
    cr_assert_eq(q.seqs[0].n_mask, 2);
    cr_assert_eq(q.seqs[1].n_mask, 3);
    cr_assert_null(q.seqs[0].mask);
    cr_assert_null(q.seqs[1].mask);
    /* every truncation of the masks frame fails and leaves no mask */
    for (size_t n = 0; n < mlen; n++) {
        uint8_t *t = malloc(n ? n : 1);
        memcpy(t, mbuf, n);
        dsa_step_plan c;
        cr_assert_eq(dsa_step_plan_decode(buf, len, &c), DSA_OK);
        cr_assert_neq(dsa_step_masks_decode(t, n, &c), DSA_OK, "length %zu", n);
        dsa_step_plan_free(&c);
        free(t);
    }
    /* another step's masks */
    dsa_step_plan other = p;
    other.step_id = 43;
    uint8_t *obuf;
    size_t olen;
    cr_assert_eq(dsa_step_masks_encode(&other, &obuf, &olen), DSA_OK);
    cr_assert_eq(dsa_step_masks_decode(obuf, olen, &q), DSA_FORMAT);
    free(obuf);
    cr_assert_eq(dsa_step_masks_decode(mbuf, mlen, &q), DSA_OK);
    cr_assert_eq(memcmp(q.seqs[0].mask, spec_mask, sizeof spec_mask), 0);
    cr_assert_eq(memcmp(q.seqs[1].mask, gram_mask, sizeof gram_mask), 0);
    cr_assert_eq(dsa_step_masks_decode(mbuf, mlen, &q), DSA_FORMAT); /* twice */
    dsa_step_plan_free(&q);
    /* a plan that carries its masks takes no StepMasks frame */
    cr_assert_eq(dsa_step_plan_decode(full, full_len, &q), DSA_OK);
    cr_assert_eq(q.masks_later, 0);
    cr_assert_eq(dsa_step_masks_decode(mbuf, mlen, &q), DSA_FORMAT);
    dsa_step_plan_free(&q);
    free(full);
    free(buf);
    free(mbuf);
}
