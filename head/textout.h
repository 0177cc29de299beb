/* textout.h - turns one choice's sampled tokens into text deltas: the
 * streaming detokenizer, stop strings matched across token boundaries
 * (the stop string and what follows are never emitted) and, for R1 chat,
 * the reasoning/content split (common/reasoning.h).
 *
 * Text that might be the start of a stop string is held back until the
 * next token decides.  Owned by the engine thread, one per choice. */
#ifndef DSA_HEAD_TEXTOUT_H
#define DSA_HEAD_TEXTOUT_H

#include <stdint.h>

#include "common/reasoning.h"
#include "common/tokenizer.h"
#include "head/api.h"

typedef struct dsa_textout {
    const dsa_tok *tok;             /* borrowed; NULL: no text */
    dsa_tok_stream ts;
    char *const *stop;              /* borrowed [n_stop] */
    int n_stop;
    dsa_jbuf held;                  /* decoded, not yet emitted */
    int split;                      /* R1 reasoning split active */
    dsa_reason rs;
    int stopped;
    int include_stop;               /* include_stop_str_in_output: the matched
                                     * stop string is emitted, what follows is not */
    int stop_index;                 /* with stopped: which stop string matched */
} dsa_textout;

/* reasoning_flags < 0: no reasoning split; else DSA_REASON_* flags. */
void dsa_textout_init(dsa_textout *t, const dsa_tok *tok, int skip_special, char *const *stop,
                      int n_stop, int reasoning_flags);
void dsa_textout_deinit(dsa_textout *t);

/* Feeds one token; appends what may be emitted to content/reasoning.
 * Sets t->stopped when a stop string matched (the caller finishes the
 * choice with "stop").  DSA_RANGE for an id the tokenizer lacks. */
dsa_err dsa_textout_feed(dsa_textout *t, int32_t id, dsa_jbuf *content, dsa_jbuf *reasoning);
/* End of output (EOS or length): emits everything held back. */
dsa_err dsa_textout_finish(dsa_textout *t, dsa_jbuf *content, dsa_jbuf *reasoning);

/* Pure helper for tests: in text[0..n), the offset of the earliest stop
 * string (*match = 1), or else the length that is safe to emit because no
 * stop string can begin in it (*match = 0). */
size_t dsa_textout_scan(const char *text, size_t n, char *const *stop, int n_stop, int *match);

#endif
