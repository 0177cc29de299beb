/* gram_internal.h - shared by the grammar module's files: the expression
 * tree the front ends (schema, regex, choice, EBNF) build, the flat rule
 * tables it is lowered to, and the matcher's memo. */
#ifndef DSA_COMMON_GRAM_INTERNAL_H
#define DSA_COMMON_GRAM_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "common/grammar.h"

struct cJSON;

/* Bounds that keep a hostile schema or regex from eating the server. */
#define GRAM_ELEMS_MAX (1 << 20)      /* lowered grammar elements */
#define GRAM_DEPTH_MAX 200            /* schema/regex nesting */
#define GRAM_CLOSURE_DEPTH_MAX 4000   /* nested rule entries without input */
#define GRAM_STATES_MAX (1 << 20)     /* interned matcher states */
#define GRAM_NODES_MAX (1 << 22)      /* interned stack nodes */
#define GRAM_STACKS_MAX 4096          /* stacks in one state */
#define GRAM_DENSE_MAX 16384          /* states with a dense transition row (1 KiB each) */

/* ---- expression tree (front ends -> lowering) ---- */
typedef enum gx_kind { GX_EMPTY, GX_BYTES, GX_CLASS, GX_SEQ, GX_ALT, GX_REP, GX_REF } gx_kind;

typedef struct gx {
    gx_kind kind;
    int n;             /* SEQ/ALT: kids; CLASS: ranges */
    struct gx **kids;
    uint32_t *ranges;  /* CLASS: n [lo, hi] code point pairs, sorted, merged */
    char *bytes;       /* BYTES */
    size_t len;
    int min, max;      /* REP: max -1 = unbounded */
    int rule;          /* REF */
} gx;

/* Owns every gx and buffer it hands out (freed together). */
typedef struct gx_arena {
    void **blocks;
    size_t n, cap;
    int oom;
} gx_arena;

void *gx_alloc(gx_arena *a, size_t size); /* zeroed; NULL (and a->oom) on failure */
void gx_arena_free(gx_arena *a);
gx *gx_empty(gx_arena *a);
gx *gx_bytes(gx_arena *a, const char *s, size_t n);
gx *gx_str(gx_arena *a, const char *s);
/* ranges: n [lo,hi] pairs, any order; negate complements over all code
 * points (surrogates excluded). */
gx *gx_class(gx_arena *a, const uint32_t *ranges, int n, int negate);
gx *gx_seq(gx_arena *a, gx *const *kids, int n);
gx *gx_alt(gx_arena *a, gx *const *kids, int n);
gx *gx_seq2(gx_arena *a, gx *x, gx *y);
gx *gx_seq3(gx_arena *a, gx *x, gx *y, gx *z);
gx *gx_alt2(gx_arena *a, gx *x, gx *y);
gx *gx_rep(gx_arena *a, gx *x, int min, int max);
gx *gx_ref(gx_arena *a, int rule);
/* An added token (a tool-call marker) as the grammar sees it: 0xFF and the
 * id in 3 bytes; no text token holds 0xFF (gram_mask.c). */
#define GRAM_MARKER_LEN 4
static inline void gram_marker(int32_t id, char out[GRAM_MARKER_LEN])
{
    out[0] = (char)0xFF;
    out[1] = (char)(id >> 16 & 0xFF);
    out[2] = (char)(id >> 8 & 0xFF);
    out[3] = (char)(id & 0xFF);
}
gx *gx_marker(gx_arena *a, int32_t id);

/* Growable list of gx pointers. */
typedef struct gx_list {
    gx **v;
    int n, cap;
} gx_list;
int gx_list_push(gx_arena *a, gx_list *l, gx *x);

/* ---- lowered grammar ---- */
enum { GE_END, GE_TERM, GE_REF };
typedef struct gelem {
    uint8_t kind;
    int32_t arg; /* TERM: class index; REF: rule */
} gelem;

typedef struct gram_rule {
    int32_t *alts; /* start positions in el */
    int n_alts, cap_alts;
    gx *def;       /* set by the front end; lowered once */
    char *name;    /* for dumps */
} gram_rule;

typedef struct gram_pos_info gram_pos_info;

struct dsa_gram {
    _Atomic int refs;
    gelem *el;
    int n_el, cap_el;
    uint64_t (*cls)[4];
    int n_cls, cap_cls;
    gram_rule *rules;
    int n_rules, cap_rules;
    int root;
    int xgrammar_utf8;             /* dsa_gram_params.xgrammar_utf8 */
    int check_left_recursion;      /* user grammars: closure of every rule at compile */
    const dsa_gram_vocab *vocab;

    /* matcher memo (gram_match.c), under lock */
    pthread_mutex_t lock;
    int32_t *node_pos, *node_next; /* node id -> (position, next node) */
    int32_t *node_pop;             /* state reached by popping into the node, -1 unknown */
    int n_nodes, cap_nodes;
    uint64_t *node_tab;            /* open addressing: (pos,next) -> node+1 */
    size_t node_tab_cap;
    int32_t **st_nodes;            /* state id -> sorted node ids (NIL = -1 first) */
    int32_t *st_n;
    int n_states, cap_states;
    uint64_t *st_tab;              /* hash -> state+1 (hash in high bits) */
    size_t st_tab_cap;
    uint64_t *tr_tab;              /* (state,byte) -> target+1 */
    int32_t **tr_dense;            /* per state: 256 targets (-1 unknown), the
                                    * first GRAM_DENSE_MAX states to step */
    int n_dense;
    size_t tr_tab_cap, tr_n;
    gram_pos_info **pos_info;      /* per element position, lazily */
    int32_t *el_rule;              /* element position -> its rule (gram_mask.c, lazily) */
    uint64_t (*follow)[4];         /* per rule: bytes that may follow it, with el_rule */
    int32_t *key_local;            /* rule -> number in a position's key, -1 (gram_mask.c) */
    int32_t start;
    /* classification ahead of the first mask (gram_classify_ahead) */
    int64_t classify_work;         /* trie nodes walked + key bytes / 8 */
    int64_t n_ahead, n_lazy;       /* positions resolved at compile / by masks */
    int compiled;                  /* set once the compile's share is done */
    /* whole-state mask cache (direct mapped) */
    int32_t *mc_state;
    uint32_t *mc_mask;
    /* scratch for closures */
    int32_t *scratch;
    int n_scratch, cap_scratch;
};

#define GRAM_NIL (-1)  /* the empty stack: the root rule is complete */
#define GRAM_DEAD 0    /* state 0: no stack survives */

/* Lowering (gram_build.c): defines rule `rule` as def. */
int gram_rule_new(dsa_gram *g, const char *name);
dsa_err gram_lower(dsa_gram *g, gx_arena *a);

/* Front ends: set g->root (and rule defs).  Errors via dsa_fail. */
dsa_err gram_from_schema(dsa_gram *g, gx_arena *a, const char *text, size_t len,
                         int any_ws);
dsa_err gram_json_object(dsa_gram *g, gx_arena *a, int any_ws);
dsa_err gram_from_regex(dsa_gram *g, gx_arena *a, const char *re, size_t len, gx **out);
dsa_err gram_from_choice(dsa_gram *g, gx_arena *a, const char *text, size_t len);
dsa_err gram_from_ebnf(dsa_gram *g, gx_arena *a, const char *text, size_t len);
dsa_err gram_from_tools(dsa_gram *g, gx_arena *a, const char *text, size_t len, int any_ws);
/* A string format of JSON Schema other than date/time/date-time/uuid
 * (gram_format.c): the string's text between the quotes. */
dsa_err gram_format(dsa_gram *g, gx_arena *a, const char *name, gx **out);
/* Exact numeric ranges (gram_number.c).  Integers: the decimal strings of
 * [lo, hi] (has_*: bounded on that side); NULL when empty or out of memory. */
gx *gram_int_range(gx_arena *a, int has_lo, long long lo, int has_hi, long long hi);
/* Numbers "-"? I ("." F)? with the value in the range (*_inc: bound
 * included); DSA_UNSUPPORTED for bounds beyond 1e15 or below 1e-30 in
 * magnitude, DSA_FORMAT when no number satisfies them. */
dsa_err gram_num_range(gx_arena *a, int has_lo, double lo, int lo_inc, int has_hi, double hi,
                       int hi_inc, gx **out);
/* A schema value inside another grammar (gram_schema.c), for tools. */
dsa_err gram_schema_value(dsa_gram *g, gx_arena *a, const struct cJSON *schema, int any_ws,
                          gx **out);

/* Matcher (gram_match.c), g->lock held. */
dsa_err gram_match_init(dsa_gram *g);
void gram_match_free(dsa_gram *g);
dsa_err gram_step(dsa_gram *g, int32_t state, uint8_t byte, int32_t *out);
/* gram_step's memoised case inline (the trie walks' inner loop): a state
 * with a dense row that already holds the byte's target. */
static inline dsa_err gram_step_fast(dsa_gram *g, int32_t state, uint8_t byte, int32_t *out)
{
    const int32_t *row = state != GRAM_DEAD && state < g->cap_states ? g->tr_dense[state] : NULL;
    if (row && row[byte] >= 0) {
        *out = row[byte];
        return DSA_OK;
    }
    return gram_step(g, state, byte, out);
}
dsa_err gram_single(dsa_gram *g, int32_t pos, int32_t *out);
dsa_err gram_pop_state(dsa_gram *g, int32_t node, int32_t *out);

/* Vocabulary (gram_mask.c). */
typedef struct gram_trie_node {
    int32_t child;    /* first child, -1 none */
    int32_t sibling;  /* next sibling, -1 none */
    int32_t tok_lo, tok_hi; /* subtree's tokens in sorted order [lo, hi) */
    int32_t n_end;    /* tokens ending here: sorted[tok_lo .. tok_lo+n_end) */
    uint8_t byte;
    uint8_t depth_lo; /* unused */
} gram_trie_node;

struct dsa_gram_vocab {
    size_t n_vocab, n_words;
    int32_t *sorted;        /* ids with bytes, sorted by bytes */
    size_t n_sorted;
    const uint8_t **bytes;  /* per id (NULL: never allowed) */
    uint32_t *len;
    char *blob;
    gram_trie_node *trie;   /* node 0 = root */
    size_t n_trie;
    int32_t *stop_ids;
    size_t n_stop;
    struct gram_pos_share *share; /* positions classified by any grammar (gram_mask.c) */
};

void gram_pos_info_free(gram_pos_info *p);
/* At compile: classify positions until the work passes budget. */
#define GRAM_CLASSIFY_BUDGET (1 << 19)
void gram_classify_ahead(dsa_gram *g, int64_t budget);

#endif
