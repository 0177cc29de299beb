/* grammar.h - grammar-constrained decoding: compiles a JSON schema, a
 * regular expression, a choice list or JSON mode into one byte-level
 * context-free grammar, matches it with a pushdown automaton over bytes
 * and yields, at each step, the bitmask of vocabulary ids whose bytes keep
 * the output a prefix of the language.
 *
 * Representation: rules whose alternatives are sequences of byte classes
 * (256-bit sets) and rule references.  Character classes over code points
 * are lowered to UTF-8 byte sequences, so a token that ends inside a
 * character is allowed exactly when its bytes can still complete one.
 *
 * Matching: a stack is a hash-consed list of grammar positions, a matcher
 * state the set of stacks the input so far can be in (interned to an int),
 * and transitions state x byte are memoised, so the grammar runs as a
 * lazily built automaton.  The mask of a state is the union over its
 * stacks; for the top position of a stack the tokens that stay inside its
 * own frame are classified once per position (accepted / rejected) and
 * only the tokens that can leave the frame are walked against the rest of
 * the stack at run time (the adaptive token-mask cache idea).
 *
 * Threads: a compiled dsa_gram may be shared; its memo tables are locked,
 * so any number of threads may step and fill masks at once.  Memory is
 * bounded (DSA_RANGE once a grammar's memo outgrows its limit).
 *
 * Errors: compiling fails with DSA_FORMAT (malformed schema, regex or
 * grammar), DSA_UNSUPPORTED (a feature outside the supported subset) or
 * DSA_RANGE (a grammar beyond the size/depth bounds); dsa_errmsg() says
 * which field or construct. */
#ifndef DSA_COMMON_GRAMMAR_H
#define DSA_COMMON_GRAMMAR_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

struct dsa_tok;

/* The vocabulary as the grammar sees it: each id's bytes, in a trie; it
 * also keeps the token classifications of grammar positions that the
 * grammars compiled against it share (bounded, under its own lock), so it
 * must outlive them. */
typedef struct dsa_gram_vocab dsa_gram_vocab;

typedef struct dsa_gram_vocab_params {
    const struct dsa_tok *tok; /* borrowed during create only */
    size_t n_vocab;            /* mask width (the model's vocab_size >= tok's ids) */
    const int32_t *stop_ids;   /* allowed when the grammar is complete */
    size_t n_stop_ids;
    /* 0 (the server): added tokens (BOS, tool-call markers, ...) never
     * match grammar text, so a constrained output holds no control token.
     * 1: they match by their content, as in xgrammar (the oracle test). */
    int added_as_text;
} dsa_gram_vocab_params;

dsa_err dsa_gram_vocab_create(const dsa_gram_vocab_params *p, dsa_gram_vocab **out);
void dsa_gram_vocab_destroy(dsa_gram_vocab *v);
size_t dsa_gram_vocab_n(const dsa_gram_vocab *v);
/* Number of uint32 words of a mask: (n_vocab + 31) / 32. */
size_t dsa_gram_mask_words(const dsa_gram_vocab *v);

typedef enum dsa_gram_kind {
    DSA_GRAM_JSON_SCHEMA, /* text: a JSON schema */
    DSA_GRAM_JSON_OBJECT, /* JSON mode: any JSON object (text unused) */
    DSA_GRAM_REGEX,       /* text: a regular expression, matched in full */
    DSA_GRAM_CHOICE,      /* text: a JSON array of strings */
    DSA_GRAM_EBNF,        /* text: a GBNF grammar with a root rule */
    /* text: forced tool calls in DeepSeek's format, as JSON:
     * {"tools":[{"name":N,"parameters":SCHEMA}...], "parallel":BOOL,
     *  "markers":{"calls_begin":ID,"calls_end":ID,"call_begin":ID,
     *             "call_end":ID,"sep":ID}} (ids of the added tokens) */
    DSA_GRAM_TOOLS,
} dsa_gram_kind;

typedef struct dsa_gram_params {
    dsa_gram_kind kind;
    const char *text;
    size_t len;
    const dsa_gram_vocab *vocab; /* borrowed; must outlive the grammar */
    /* JSON schema: allow any whitespace between tokens (vLLM's default);
     * 0 writes the compact separators ", " and ": " only. */
    int any_whitespace;
    /* 0 (the server): a negated class takes only well-formed UTF-8.
     * 1: any lead byte with its count of continuation bytes (C0/C1 and
     * F5-F7 leads, overlongs, surrogates), as xgrammar's matcher does; such
     * output detokenizes to U+FFFD, so only the oracle test uses it. */
    int xgrammar_utf8;
} dsa_gram_params;

typedef struct dsa_gram dsa_gram;

/* A new grammar holds one reference. */
dsa_err dsa_gram_compile(const dsa_gram_params *p, dsa_gram **out);
/* Reference counting (any thread): destroy drops one reference and frees
 * the grammar with the last; NULL is a no-op. */
dsa_gram *dsa_gram_retain(dsa_gram *g);
void dsa_gram_destroy(dsa_gram *g);

/* A bounded LRU cache of compiled grammars keyed by (kind, text), shared
 * by threads (locked).  get returns a retained grammar (compiled on a miss,
 * on the calling thread; the lock is not held while compiling). */
typedef struct dsa_gram_cache dsa_gram_cache;
dsa_err dsa_gram_cache_create(const dsa_gram_vocab *v, int capacity, dsa_gram_cache **out);
void dsa_gram_cache_destroy(dsa_gram_cache *c);
dsa_err dsa_gram_cache_get(dsa_gram_cache *c, dsa_gram_kind kind, const char *text, size_t len,
                           int any_whitespace, dsa_gram **out);
/* Lookups and misses since creation (tests, metrics). */
void dsa_gram_cache_stats(dsa_gram_cache *c, int64_t *hits, int64_t *misses);

/* The state before any output. */
int32_t dsa_gram_start(const dsa_gram *g);
/* Advances *state by the bytes of token id; DSA_INVAL when the token is not
 * allowed there (the state is left unchanged), DSA_RANGE when the memo is
 * full.  A stop id is allowed only in a complete state and keeps it. */
dsa_err dsa_gram_accept_token(dsa_gram *g, int32_t *state, int32_t id);
/* Advances by raw bytes (tests; the tool-call grammar's forced text). */
dsa_err dsa_gram_accept_bytes(dsa_gram *g, int32_t *state, const char *s, size_t n);
/* 1 when the output so far is a complete sentence (stop tokens allowed). */
int dsa_gram_is_complete(dsa_gram *g, int32_t state);
/* 1 when nothing but a stop token can follow. */
int dsa_gram_is_terminated(dsa_gram *g, int32_t state);
/* Writes the allowed-id bitmask of state (bit i of word i/32 = id i). */
dsa_err dsa_gram_fill_mask(dsa_gram *g, int32_t state, uint32_t *mask);

/* Token classification (the adaptive token-mask cache) happens when the
 * grammar is compiled, up to a bound of work (a huge grammar classifies
 * the rest lazily, at the first mask that needs it): the positions
 * resolved at compile (classified, or found classified by an earlier
 * grammar) and those resolved later by a mask.  Tests and benchmarks. */
void dsa_gram_classify_stats(dsa_gram *g, int64_t *ahead, int64_t *lazily);

/* Rules as GBNF text (debugging and tests); caller frees. */
char *dsa_gram_dump(const dsa_gram *g);

#endif
