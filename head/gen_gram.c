/* gen_gram.c - structured output for a generation request: the grammar
 * of its response_format / guided_* / structured_outputs field or of a
 * forced tool_choice, compiled through the head's LRU cache (on the
 * thread pool, as tokenizing is), and handed to each choice's engine
 * request with its own matcher state and mask buffer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "head/server_int.h"

/* Compiles (or finds in the cache) the request's grammar; on the thread
 * pool, as tokenizing is.  0 when there is none or it compiled. */
int dsa_gen_compile_grammar(gen *g)
{
    dsa_api_request *a = &g->api;
    int forced = dsa_tools_active(a) && (a->tool_choice == DSA_API_TOOL_REQUIRED ||
                                         a->tool_choice == DSA_API_TOOL_NAMED);
    if (forced && !a->gram_kind) { /* tool_choice: a grammar of the call tokens */
        char *text = NULL;
        dsa_err err = dsa_tools_grammar(a, g->h->tok, &text);
        if (err) {
            g->failed = 1;
            dsa_api_fail(&g->err, err == DSA_NOMEM ? 500 : 400, "tool_choice", "%s",
                         dsa_errmsg());
            return 1;
        }
        a->gram_kind = DSA_GRAM_TOOLS + 1;
        a->gram_text = text;
        a->gram_len = strlen(text);
        snprintf(a->gram_param, sizeof a->gram_param, "tools");
    } else if (forced) {
        g->failed = 1;
        dsa_api_fail(&g->err, 400, "tool_choice", "a forced tool_choice cannot be combined "
                     "with structured output ('%s')", a->gram_param);
        return 1;
    }
    if (!a->gram_kind)
        return 0;
    g->failed = 1;
    if (!g->h->gcache) {
        dsa_api_fail(&g->err, 400, a->gram_param, "structured output needs the model's "
                     "tokenizer.json");
        return 1;
    }
    dsa_err err = dsa_gram_cache_get(g->h->gcache, (dsa_gram_kind)(a->gram_kind - 1),
                                     a->gram_text ? a->gram_text : "", a->gram_len,
                                     !a->gram_compact, &g->gram);
    if (err) {
        dsa_api_fail(&g->err, err == DSA_NOMEM ? 500 : 400, a->gram_param, "%s", dsa_errmsg());
        return 1;
    }
    g->failed = 0;
    return 0;
}

/* vLLM with a reasoning parser (the R1 template here) applies the grammar
 * only once the reasoning has ended: it has ended in the prompt when the
 * last think token of the prompt is "</think>"; otherwise the grammar
 * waits for the first "</think>" token sampled and starts at the token
 * after it.  This holds on every endpoint, as vLLM's structured-output
 * manager knows nothing of them.  -1: the grammar applies from the start. */
static int32_t reasoning_end_id(const gen *g, const dsa_engine_req *er)
{
    const dsa_tok *tok = g->h->tok;
    if (!g->h->has_chat || g->h->variant != DSA_CHAT_R1 || !tok)
        return -1;
    int32_t open = dsa_tok_token_to_id(tok, "<think>", strlen("<think>"));
    int32_t close = dsa_tok_token_to_id(tok, "</think>", strlen("</think>"));
    if (open < 0 || close < 0)
        return -1;
    for (int32_t i = er->n_prompt - 1; i >= 0; i--) {
        if (er->prompt[i] == open)
            return close;
        if (er->prompt[i] == close)
            return -1;
    }
    return close;
}

void dsa_gen_attach_grammar(gen *g, dsa_engine_req *er)
{
    if (!g->gram)
        return;
    er->gram_wait_id = reasoning_end_id(g, er);
    er->gram = dsa_gram_retain(g->gram);
    er->gram_state = dsa_gram_start(g->gram);
    er->gram_words = (int32_t)dsa_gram_mask_words(g->h->gvocab);
    if (!(er->gram_mask = malloc((size_t)er->gram_words * sizeof *er->gram_mask)))
        er->gram_words = -1; /* the request fails at its first token */
}
