/* tokenizer.h - Hugging Face tokenizer.json (BPE) encoder and decoder.
 *
 * Loads a tokenizer.json with a BPE model (vocab, merges in "a b" or
 * ["a", "b"] form, added tokens with their special/lstrip/rstrip/
 * single_word/normalized flags), its normalizer (none or an empty
 * Sequence), pre-tokenizer (Sequence of Split and a final ByteLevel),
 * decoder (ByteLevel or none) and post-processor (ByteLevel,
 * TemplateProcessing, Roberta/Bert, Sequence), plus tokenizer_config.json
 * for bos/eos, add_bos_token/add_eos_token and the chat template string.
 * Split regexes are compiled with PCRE2 (UTF, Unicode properties, JIT)
 * exactly as written in the file.
 *
 * Encoding reproduces the `tokenizers` library: added tokens split the text
 * first (non-normalized ones, then normalized ones), each remaining piece
 * goes through the pre-tokenizer and each word through BPE merged by rank
 * with a heap (O(n log n) per word) behind a bounded, sharded word cache.
 *
 * Threads: a loaded dsa_tok is immutable except for its word cache, which
 * is locked per shard; any number of threads may encode and decode with the
 * same dsa_tok at once.  A dsa_tok_stream belongs to one thread.
 *
 * Errors: loading fails with DSA_IO (file), DSA_FORMAT (malformed JSON or
 * field; dsa_errmsg() names the file and field, e.g. "tokenizer.json: field
 * 'model.merges': expected an array") or DSA_UNSUPPORTED (a component this
 * module does not implement).  Encoding text that is not valid UTF-8
 * returns DSA_UTF8 (the head answers HTTP 400); decoding an id outside the
 * vocabulary returns DSA_RANGE. */
#ifndef DSA_COMMON_TOKENIZER_H
#define DSA_COMMON_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

typedef struct dsa_tok dsa_tok;

/* Loads dir/tokenizer.json and, when present, dir/tokenizer_config.json
 * (and dir/chat_template.jinja when the config carries no template). */
dsa_err dsa_tok_load(const char *dir, dsa_tok **out);
/* Same from explicit paths; config_path may be NULL. */
dsa_err dsa_tok_load_files(const char *json_path, const char *config_path,
                           dsa_tok **out);
/* Same from memory; config may be NULL.  The buffers need no NUL and are
 * not kept.  Error messages name "tokenizer.json"/"tokenizer_config.json". */
dsa_err dsa_tok_load_mem(const char *json, size_t json_len,
                         const char *config, size_t config_len, dsa_tok **out);
/* dsa_tok_destroy(NULL) is a no-op. */
void dsa_tok_destroy(dsa_tok *tok);

/* Encodes len bytes of UTF-8 text (no NUL needed).  With add_special the
 * post-processor's tokens are added: tokenizer_config's add_bos_token/
 * add_eos_token when present (as transformers' Llama tokenizers do),
 * otherwise the tokenizer.json post-processor's template.  *ids is
 * malloc'd (caller frees; NULL when *n_ids is 0).  DSA_UTF8 on invalid
 * UTF-8, with the byte offset in dsa_errmsg(). */
dsa_err dsa_tok_encode(const dsa_tok *tok, const char *text, size_t len,
                       int add_special, int32_t **ids, size_t *n_ids);

/* Decodes ids to UTF-8 text, NUL-terminated and malloc'd (caller frees).
 * Byte sequences that are not valid UTF-8 become U+FFFD as in Rust's
 * String::from_utf8_lossy.  With skip_special, special added tokens are
 * left out.  An id >= 0 with no entry decodes to nothing (as tokenizers
 * does: a model vocabulary may be larger); DSA_RANGE for a negative id. */
dsa_err dsa_tok_decode(const dsa_tok *tok, const int32_t *ids, size_t n_ids,
                       int skip_special, char **text, size_t *len);

/* Incremental detokenizer for streaming.  Feed ids one at a time; each feed
 * returns a delta of complete UTF-8 (a partial character at the end is held
 * back until its remaining bytes arrive); flush returns what is left (a
 * dangling partial character becomes U+FFFD).  The concatenated deltas equal
 * dsa_tok_decode() of the same ids.  Caller owns the struct: _init, then
 * _deinit to free.  Deltas point into the stream's buffer and are valid
 * until the next feed, flush or deinit. */
typedef struct dsa_tok_stream {
    const dsa_tok *tok;       /* borrowed */
    int skip_special;
    int n_fed;                /* tokens emitted so far (for joins) */
    unsigned char held[4];    /* trailing partial UTF-8 character */
    size_t n_held;
    char *buf;                /* delta storage, owned */
    size_t cap;
} dsa_tok_stream;

void dsa_tok_stream_init(dsa_tok_stream *s, const dsa_tok *tok, int skip_special);
dsa_err dsa_tok_stream_feed(dsa_tok_stream *s, int32_t id,
                            const char **delta, size_t *n_delta);
dsa_err dsa_tok_stream_flush(dsa_tok_stream *s, const char **delta, size_t *n_delta);
void dsa_tok_stream_deinit(dsa_tok_stream *s);

/* Lookups.  token_to_id takes the token as stored in the vocabulary
 * (byte-level form, e.g. "Ġthe") or an added token's content; -1 when
 * absent.  id_to_token returns the stored form (borrowed) or NULL. */
int32_t dsa_tok_token_to_id(const dsa_tok *tok, const char *token, size_t len);
const char *dsa_tok_id_to_token(const dsa_tok *tok, int32_t id, size_t *len);
/* The bytes the decoder emits for id alone (raw bytes for a byte-level
 * token, which may be part of a UTF-8 character; an added token's
 * content); borrowed.  NULL when the id is absent. */
const char *dsa_tok_token_bytes(const dsa_tok *tok, int32_t id, size_t *len);
/* 1 when id is an added token (special or not). */
int dsa_tok_is_added(const dsa_tok *tok, int32_t id);
/* 1 when id is an added token marked special (skipped by skip_special). */
int dsa_tok_is_special(const dsa_tok *tok, int32_t id);
/* One past the largest id (vocab and added tokens). */
size_t dsa_tok_n_vocab(const dsa_tok *tok);

/* From tokenizer_config.json (bos/eos fall back to -1/NULL when absent). */
int32_t dsa_tok_bos_id(const dsa_tok *tok);
int32_t dsa_tok_eos_id(const dsa_tok *tok);
const char *dsa_tok_bos_token(const dsa_tok *tok);
const char *dsa_tok_eos_token(const dsa_tok *tok);
int dsa_tok_add_bos(const dsa_tok *tok);
/* The Jinja chat template as loaded (not rendered), or NULL. */
const char *dsa_tok_chat_template(const dsa_tok *tok);

/* Checks that len bytes are valid UTF-8 (no overlongs, surrogates or code
 * points past U+10FFFF).  DSA_UTF8 with the offset otherwise. */
dsa_err dsa_tok_utf8_check(const char *text, size_t len);

#endif
