/* tok_decode.c - ids to text, one-shot and streaming.
 *
 * Each id's decoder output was computed at load (tok->decoded): raw bytes
 * for byte-level tokens, the content for added tokens.  Decoding
 * concatenates them (joined by spaces when the file has no decoder, as
 * tokenizers does) and repairs invalid UTF-8 as Rust's from_utf8_lossy
 * does: each maximal invalid subpart becomes one U+FFFD.  The streaming
 * detokenizer runs the same repair but holds back a trailing sequence that
 * may still complete, so its deltas sum to the one-shot result.
 *
 * An id with no entry in the tokenizer (a model vocabulary larger than the
 * tokenizer's, as DeepSeek-V3's 129,280 rows against 128,815 entries)
 * decodes to nothing, as tokenizers' decode does (id_to_token gives None
 * and the piece is dropped); only a negative id is an error. */
#include <stdlib.h>
#include <string.h>

#include "common/tok_internal.h"

static const char fffd[3] = {(char)0xEF, (char)0xBF, (char)0xBD};

size_t tok_utf8_lossy(const unsigned char *in, size_t n, int final, char *out, size_t *n_out)
{
    size_t i = 0, o = *n_out;
    while (i < n) {
        unsigned c = in[i];
        if (c < 0x80) {
            out[o++] = (char)c;
            i++;
            continue;
        }
        size_t need;
        unsigned lo, hi;
        if (!tok_utf8_lead(c, &need, &lo, &hi)) {
            memcpy(out + o, fffd, 3);
            o += 3;
            i++;
            continue;
        }
        /* Length of the valid prefix of this sequence. */
        size_t k = 1;
        while (k <= need && i + k < n) {
            unsigned b = in[i + k];
            unsigned l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
            if (b < l || b > h)
                break;
            k++;
        }
        if (k == need + 1) {
            memcpy(out + o, in + i, k);
            o += k;
            i += k;
        } else if (i + k == n && !final) {
            break; /* may still complete */
        } else {
            memcpy(out + o, fffd, 3);
            o += 3;
            i += k;
        }
    }
    *n_out = o;
    return i;
}

static int tok_has_entry(const dsa_tok *t, int32_t id)
{
    return id >= 0 && (size_t)id < t->n_ids && t->present[id];
}

dsa_err dsa_tok_decode(const dsa_tok *t, const int32_t *ids, size_t n_ids, int skip_special,
                       char **text, size_t *len)
{
    *text = NULL;
    if (len)
        *len = 0;
    size_t total = 0;
    for (size_t i = 0; i < n_ids; i++) {
        int32_t id = ids[i];
        if (id < 0)
            return dsa_fail(DSA_RANGE, "tokenizer: decode: id %d at position %zu is negative",
                            id, i);
        if (tok_has_entry(t, id))
            total += t->decoded[id].len + 1;
    }
    unsigned char *raw = malloc(total + 1);
    char *out = malloc(3 * total + 1);
    if (!raw || !out) {
        free(raw);
        free(out);
        return dsa_fail(DSA_NOMEM, "tokenizer: decode of %zu ids", n_ids);
    }
    size_t n = 0, kept = 0;
    for (size_t i = 0; i < n_ids; i++) {
        int32_t id = ids[i];
        if (!tok_has_entry(t, id) || (skip_special && t->is_special[id]))
            continue;
        if (t->decoder == TOK_DEC_NONE && kept++)
            raw[n++] = ' ';
        memcpy(raw + n, t->arena + t->decoded[id].off, t->decoded[id].len);
        n += t->decoded[id].len;
    }
    size_t o = 0;
    tok_utf8_lossy(raw, n, 1, out, &o);
    out[o] = 0;
    free(raw);
    *text = out;
    if (len)
        *len = o;
    return DSA_OK;
}

void dsa_tok_stream_init(dsa_tok_stream *s, const dsa_tok *tok, int skip_special)
{
    memset(s, 0, sizeof *s);
    s->tok = tok;
    s->skip_special = skip_special;
}

void dsa_tok_stream_deinit(dsa_tok_stream *s)
{
    free(s->buf);
    s->buf = NULL;
    s->cap = 0;
}

static dsa_err stream_reserve(dsa_tok_stream *s, size_t need)
{
    if (need <= s->cap)
        return DSA_OK;
    size_t cap = s->cap ? s->cap : 256;
    while (cap < need)
        cap *= 2;
    char *b = realloc(s->buf, cap);
    if (!b)
        return dsa_fail(DSA_NOMEM, "tokenizer: stream buffer");
    s->buf = b;
    s->cap = cap;
    return DSA_OK;
}

/* The buffer holds the input (held bytes + token) in its upper part and
 * the output below it: output never overtakes input since every input
 * byte yields at most 3 output bytes and the input starts at 3*len. */
dsa_err dsa_tok_stream_feed(dsa_tok_stream *s, int32_t id, const char **delta, size_t *n_delta)
{
    const dsa_tok *t = s->tok;
    *delta = "";
    *n_delta = 0;
    if (id < 0)
        return dsa_fail(DSA_RANGE, "tokenizer: stream: id %d is negative", id);
    if (!tok_has_entry(t, id) || (s->skip_special && t->is_special[id]))
        return DSA_OK;
    int join = t->decoder == TOK_DEC_NONE && s->n_fed > 0;
    size_t in_len = s->n_held + (size_t)join + t->decoded[id].len;
    dsa_err err = stream_reserve(s, 4 * in_len + 4);
    if (err)
        return err;
    unsigned char *in = (unsigned char *)s->buf + 3 * in_len + 3;
    memcpy(in, s->held, s->n_held);
    if (join)
        in[s->n_held] = ' ';
    memcpy(in + s->n_held + join, t->arena + t->decoded[id].off, t->decoded[id].len);
    s->n_fed++;
    size_t o = 0;
    size_t used = tok_utf8_lossy(in, in_len, 0, s->buf, &o);
    s->n_held = in_len - used;
    memmove(s->held, in + used, s->n_held);
    *delta = s->buf;
    *n_delta = o;
    return DSA_OK;
}

dsa_err dsa_tok_stream_flush(dsa_tok_stream *s, const char **delta, size_t *n_delta)
{
    *delta = "";
    *n_delta = 0;
    dsa_err err = stream_reserve(s, 16);
    if (err)
        return err;
    unsigned char in[4];
    memcpy(in, s->held, s->n_held);
    size_t o = 0;
    tok_utf8_lossy(in, s->n_held, 1, s->buf, &o);
    s->n_held = 0;
    *delta = s->buf;
    *n_delta = o;
    return DSA_OK;
}
