/* textout.c - detokenize, match stop strings, split reasoning (textout.h). */
#include "head/textout.h"

#include <string.h>

void dsa_textout_init(dsa_textout *t, const dsa_tok *tok, int skip_special, char *const *stop,
                      int n_stop, int reasoning_flags)
{
    memset(t, 0, sizeof *t);
    t->tok = tok;
    if (tok)
        dsa_tok_stream_init(&t->ts, tok, skip_special);
    t->stop = stop;
    t->n_stop = n_stop;
    if (reasoning_flags >= 0) {
        t->split = 1;
        dsa_reason_init(&t->rs, (unsigned)reasoning_flags);
    }
}

void dsa_textout_deinit(dsa_textout *t)
{
    if (t->tok)
        dsa_tok_stream_deinit(&t->ts);
    if (t->split)
        dsa_reason_deinit(&t->rs);
    dsa_jbuf_deinit(&t->held);
}

size_t dsa_textout_scan(const char *text, size_t n, char *const *stop, int n_stop, int *match)
{
    size_t best = n;
    *match = 0;
    for (int i = 0; i < n_stop; i++) {
        const char *p = memmem(text, n, stop[i], strlen(stop[i]));
        if (p && (size_t)(p - text) < best) {
            best = (size_t)(p - text);
            *match = 1;
        }
    }
    if (*match)
        return best;
    /* hold back the longest suffix that is a proper prefix of a stop */
    size_t safe = n;
    for (int i = 0; i < n_stop; i++) {
        size_t ls = strlen(stop[i]);
        size_t k = ls - 1 < n ? ls - 1 : n;
        for (; k > 0; k--)
            if (memcmp(text + n - k, stop[i], k) == 0)
                break;
        if (n - k < safe)
            safe = n - k;
    }
    return safe;
}

/* Length of the stop string that matched at s: of those starting there,
 * the first in the request's list, as vLLM's check takes them in order. */
static size_t stop_len_at(const dsa_textout *t, const char *s, size_t n)
{
    for (int i = 0; i < t->n_stop; i++) {
        size_t l = strlen(t->stop[i]);
        if (l <= n && !memcmp(s, t->stop[i], l))
            return l;
    }
    return 0;
}

static dsa_err emit(dsa_textout *t, const char *s, size_t n, dsa_jbuf *content,
                    dsa_jbuf *reasoning)
{
    if (!t->split) {
        dsa_jbuf_put(content, s, n);
        return content->oom ? DSA_NOMEM : DSA_OK;
    }
    dsa_reason_delta d;
    dsa_err err = dsa_reason_feed(&t->rs, s, n, &d);
    if (err)
        return err;
    dsa_jbuf_put(content, d.content, d.n_content);
    dsa_jbuf_put(reasoning, d.reasoning, d.n_reasoning);
    return content->oom || reasoning->oom ? DSA_NOMEM : DSA_OK;
}

static dsa_err push(dsa_textout *t, const char *s, size_t n, int final, dsa_jbuf *content,
                    dsa_jbuf *reasoning)
{
    dsa_jbuf_put(&t->held, s, n);
    if (t->held.oom)
        return DSA_NOMEM;
    int match;
    size_t safe = dsa_textout_scan(t->held.data ? t->held.data : "", t->held.len, t->stop,
                                   t->n_stop, &match);
    if (final && !match)
        safe = t->held.len;
    if (match && t->include_stop)
        safe += stop_len_at(t, t->held.data + safe, t->held.len - safe);
    dsa_err err = emit(t, t->held.data, safe, content, reasoning);
    if (match) {
        t->stopped = 1;
        /* the earliest match, the lowest index among equals (as scan) */
        for (int i = t->n_stop - 1; i >= 0; i--)
            if (t->held.len - safe >= strlen(t->stop[i]) &&
                !memcmp(t->held.data + safe, t->stop[i], strlen(t->stop[i])))
                t->stop_index = i;
        t->held.len = 0;
        return err;
    }
    memmove(t->held.data, t->held.data + safe, t->held.len - safe);
    t->held.len -= safe;
    return err;
}

dsa_err dsa_textout_feed(dsa_textout *t, int32_t id, dsa_jbuf *content, dsa_jbuf *reasoning)
{
    if (!t->tok || t->stopped)
        return DSA_OK;
    const char *d;
    size_t n;
    dsa_err err = dsa_tok_stream_feed(&t->ts, id, &d, &n);
    if (err)
        return err;
    return push(t, d, n, 0, content, reasoning);
}

dsa_err dsa_textout_finish(dsa_textout *t, dsa_jbuf *content, dsa_jbuf *reasoning)
{
    dsa_err err = DSA_OK;
    if (t->tok && !t->stopped) {
        const char *d;
        size_t n;
        if ((err = dsa_tok_stream_flush(&t->ts, &d, &n)) ||
            (err = push(t, d, n, 1, content, reasoning)))
            return err;
    }
    if (t->split) {
        dsa_reason_delta d;
        if ((err = dsa_reason_finish(&t->rs, &d)))
            return err;
        dsa_jbuf_put(content, d.content, d.n_content);
        dsa_jbuf_put(reasoning, d.reasoning, d.n_reasoning);
        if (content->oom || reasoning->oom)
            return DSA_NOMEM;
    }
    return DSA_OK;
}
