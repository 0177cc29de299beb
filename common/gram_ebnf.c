/* gram_ebnf.c - GBNF grammars (vLLM's guided_grammar). */
#include "common/gram_internal.h"

dsa_err gram_from_ebnf(dsa_gram *g, gx_arena *a, const char *text, size_t len)
{
    (void)g, (void)a, (void)text, (void)len;
    return dsa_fail(DSA_UNSUPPORTED, "grammars (EBNF/GBNF) are not supported yet");
}
