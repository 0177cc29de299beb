/* api.h - the OpenAI-compatible API's request parsing and validation and
 * its response, SSE and error formatting.  Pure functions over buffers, no
 * I/O, so tests/test_head_api.c checks them directly.
 *
 * Parsing follows OpenAI's (and vLLM's) field names and ranges: unknown
 * fields are ignored, a field of the wrong type or out of range is an HTTP
 * 400 whose error object names the parameter. */
#ifndef DSA_HEAD_API_H
#define DSA_HEAD_API_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "common/error.h"
#include "common/toolcall.h"

/* ---- a growable text buffer with JSON helpers ------------------------- */

typedef struct dsa_jbuf {
    char *data;     /* NUL-terminated once anything was appended */
    size_t len, cap;
    int oom;        /* an append failed; the content is truncated */
} dsa_jbuf;

void dsa_jbuf_put(dsa_jbuf *b, const char *s, size_t n);
void dsa_jbuf_puts(dsa_jbuf *b, const char *s);
void dsa_jbuf_printf(dsa_jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as a JSON string literal with quotes.  Invalid UTF-8 bytes
 * become U+FFFD so the output is always valid JSON. */
void dsa_jbuf_str(dsa_jbuf *b, const char *s, size_t n);
/* A float as JSON (non-finite values as -9999.0, as vLLM does). */
void dsa_jbuf_float(dsa_jbuf *b, double v);
void dsa_jbuf_reset(dsa_jbuf *b);
void dsa_jbuf_deinit(dsa_jbuf *b);

/* ---- errors -------------------------------------------------------------- */

typedef struct dsa_api_error {
    int status;             /* HTTP status */
    const char *type;       /* "invalid_request_error", ... */
    char param[64];         /* "" when none */
    char message[512];
} dsa_api_error;

/* Fills e and returns DSA_INVAL (status 400 unless set otherwise). */
dsa_err dsa_api_fail(dsa_api_error *e, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* {"error":{"message":..,"type":..,"param":..|null,"code":status}} */
void dsa_api_error_json(dsa_jbuf *b, const dsa_api_error *e);
/* The error type OpenAI uses for an HTTP status. */
const char *dsa_api_error_type(int status);

/* ---- requests ------------------------------------------------------------ */

typedef enum dsa_api_kind {
    DSA_API_CHAT,           /* POST /v1/chat/completions */
    DSA_API_COMPLETION,     /* POST /v1/completions */
    DSA_API_GENERATE,       /* POST /generate */
} dsa_api_kind;

typedef struct dsa_api_prompt {
    char *text;             /* a text prompt (NUL-terminated), or NULL */
    size_t n_text;
    int32_t *ids;           /* a token-id prompt, or NULL */
    int32_t n_ids;
} dsa_api_prompt;

/* tool_choice (head/tools.h); NONE also when no tools are given. */
typedef enum dsa_api_tool_choice {
    DSA_API_TOOL_NONE,
    DSA_API_TOOL_AUTO,
    DSA_API_TOOL_REQUIRED,
    DSA_API_TOOL_NAMED,
} dsa_api_tool_choice;

#define DSA_API_MAX_STOP 16
#define DSA_API_MAX_N 16
#define DSA_API_MAX_PROMPTS 64
#define DSA_API_MAX_REQUEST_ID 256

typedef struct dsa_api_request {
    dsa_api_kind kind;
    char *model;            /* NULL when absent */
    cJSON *messages;        /* chat: the messages array, owned */
    dsa_api_prompt *prompts;/* completions: [n_prompts] */
    int n_prompts;
    int64_t max_tokens;     /* -1: not given */
    double temperature;     /* < 0: not given (the model's default) */
    double top_p;           /* < 0: not given */
    double min_p;
    int64_t top_k;          /* -1 and 0 disable */
    int has_seed;
    uint64_t seed;
    char *stop[DSA_API_MAX_STOP];
    int n_stop;
    int stream, include_usage;
    int n;
    double presence_penalty, frequency_penalty, repetition_penalty;
    int logprobs;           /* logprobs requested */
    int top_logprobs;       /* alternatives per token (0..20) */
    int ignore_eos;
    int skip_special_tokens;
    int echo;               /* prompt text (and logprobs) first; chat: dsa_api_chat_echo */
    int add_generation_prompt;
    int n_tools;            /* chat: length of `tools` (validated) */
    cJSON *tools;           /* chat: `tools` when not empty, owned */
    dsa_api_tool_choice tool_choice;
    char *tool_named;       /* tool_choice NAMED: the function's name, owned */
    int parallel_tool_calls;
    /* vLLM's extra parameters (head/api_params.c) */
    int has_top_k, has_min_p, has_repetition_penalty; /* given, not defaulted */
    int include_stop_str_in_output;
    int has_truncate;       /* truncate_prompt_tokens given */
    int64_t truncate_prompt_tokens; /* -1: max_model_len; keep the last k tokens */
    int continue_final_message;
    int add_special_tokens; /* default: completions 1, chat 0 (as vLLM) */
    int return_tokens_as_token_ids;
    char *request_id;       /* the body's request_id, NULL when absent */
    char *ignored;          /* fields no parameter of the API names, "a, b"; for the log */
    /* `\u0000` escapes in the body: text prompts have their NUL bytes back
     * (n_text counts them); the strings of messages still carry the
     * DSA_JSON_NUL marker (head/json_in.h) for the caller to restore in the
     * rendered prompt */
    int n_nul;
    /* Sampler-side parameters (head/api_logits.c).  Ids are checked against
     * the vocabulary by dsa_api_check_vocab once it is known. */
    int32_t *stop_token_ids;    /* [n_stop_token_ids] */
    int n_stop_token_ids;
    int64_t min_tokens;
    int32_t *bias_ids;          /* logit_bias, sorted by id, unique */
    float *bias_values;         /* clamped to [-100, 100] */
    int n_bias;
    int32_t *allowed_ids;       /* allowed_token_ids sorted, unique; NULL: not given */
    int n_allowed;
    int prompt_logprobs;        /* -1: none; 0..20 (echo with logprobs sets it) */
    /* structured output (head/api_struct.c): gram_kind 0 none, else a
     * dsa_gram_kind + 1 with its text (schema JSON, regex, choice JSON) */
    int gram_kind;
    char *gram_text;        /* owned */
    size_t gram_len;
    char gram_param[64];    /* the request field it came from (400s name it) */
    int gram_compact;       /* structured_outputs.disable_any_whitespace */
} dsa_api_request;

/* Parses a JSON body.  On failure returns DSA_INVAL (or DSA_NOMEM) and
 * fills e; req is left empty.  dsa_api_request_free releases it. */
dsa_err dsa_api_parse(dsa_api_kind kind, const char *body, size_t len, dsa_api_request *req,
                      dsa_api_error *e);
void dsa_api_request_free(dsa_api_request *req);

/* vLLM's extra parameters and the OpenAI ones vLLM ignores: each applied
 * as vLLM applies it or refused with a 400 naming it (docs/api-parameters.md
 * holds the table).  Called by dsa_api_parse after the core fields. */
dsa_err dsa_api_parse_params(const cJSON *root, dsa_api_request *r, dsa_api_error *e);
/* The structured-output fields (api_struct.c), called by parse_params. */
dsa_err dsa_api_parse_structured(const cJSON *root, dsa_api_request *r, dsa_api_error *e);

/* Characters (Unicode code points; each invalid UTF-8 byte counts as the
 * one U+FFFD it is sent as) in s[0..n): the unit of completions'
 * text_offset, as Python's len() counts in vLLM. */
size_t dsa_api_text_chars(const char *s, size_t n);
/* head/api_logits.c: parses stop_token_ids, min_tokens, logit_bias,
 * allowed_token_ids, prompt_logprobs and echo into r (vLLM's checks); called
 * by dsa_api_parse once the common fields are in. */
dsa_err dsa_api_parse_logits(const cJSON *root, dsa_api_request *r, dsa_api_error *e);
/* echo on chat (vLLM): the text the reply starts with, the last message's
 * content (its text parts joined by newlines) when that message has the
 * reply's role (assistant with a generation prompt, else its own); appended
 * to out, nothing when echo is off or the roles differ. */
dsa_err dsa_api_chat_echo(const dsa_api_request *r, dsa_jbuf *out);
/* 400 naming the parameter when an id of logit_bias or allowed_token_ids
 * lies outside [0, vocab) (vLLM's out-of-vocabulary check). */
dsa_err dsa_api_check_vocab(const dsa_api_request *r, int64_t vocab, dsa_api_error *e);

/* /tokenize {prompt | messages, add_special_tokens} and /detokenize
 * {tokens}.  messages is owned by the caller afterwards (cJSON_Delete). */
typedef struct dsa_api_tokenize {
    char *prompt;           /* malloc'd or NULL; may hold NUL bytes */
    size_t n_prompt;
    cJSON *messages;        /* or the chat messages (see dsa_api_request.n_nul) */
    cJSON *tools;           /* with messages: `tools` when not empty */
    int n_nul;
    int add_special_tokens;
    int add_generation_prompt;
    int32_t *ids;           /* detokenize: [n_ids] */
    int32_t n_ids;
} dsa_api_tokenize;

dsa_err dsa_api_parse_tokenize(const char *body, size_t len, int detokenize,
                               dsa_api_tokenize *t, dsa_api_error *e);
void dsa_api_tokenize_free(dsa_api_tokenize *t);

/* ---- responses -------------------------------------------------------- */

/* One token's logprob entry for formatting (token text borrowed). */
typedef struct dsa_api_logprob {
    int none;               /* echo: the first prompt token, logprob null */
    const char *text;
    size_t n_text;
    float logprob;
    int n_top;
    const char *top_text[20];
    size_t top_n_text[20];
    float top_logprob[20];
} dsa_api_logprob;

typedef struct dsa_api_usage {
    int64_t prompt_tokens, completion_tokens;
} dsa_api_usage;

/* Fields shared by every chunk and response of one request. */
typedef struct dsa_api_resp_meta {
    dsa_api_kind kind;
    const char *id;         /* "chatcmpl-..." / "cmpl-..." */
    int64_t created;        /* unix seconds */
    const char *model;
} dsa_api_resp_meta;

/* One streamed tool-call delta, as vLLM streams calls: the call's first
 * carries its id, type and name (and "arguments", possibly ""); the next
 * ones only fragments of its arguments.  Clients concatenate the
 * fragments per index. */
typedef struct dsa_api_tool_delta {
    size_t index;           /* the call's index in the choice's tool_calls */
    const char *id, *name;  /* first delta of the call only, else NULL */
    const char *arguments;  /* fragment [n_arguments] */
    size_t n_arguments;
} dsa_api_tool_delta;

/* One streamed delta of one choice.  role: first chat chunk only;
 * finish_reason NULL until the last; logprobs NULL or [n_logprobs]. */
typedef struct dsa_api_delta {
    int index;
    const char *role;
    const char *content;
    size_t n_content;
    const char *reasoning;
    size_t n_reasoning;
    const char *finish_reason;
    const dsa_api_logprob *logprobs;
    int n_logprobs;
    size_t text_offset;     /* completions logprobs: offset of this delta */
    const dsa_api_tool_delta *tool_deltas; /* chat: [n_tool_deltas] */
    size_t n_tool_deltas;
    /* with finish_reason: vLLM's stop_reason (see dsa_api_choice) */
    int has_stop_token;
    int32_t stop_token;
    const char *stop_str;
} dsa_api_delta;

/* "data: {chunk}\n\n" for one delta (chat.completion.chunk or
 * text_completion).  usage != NULL adds a "usage" field (null otherwise
 * when include_usage is set, as OpenAI does). */
void dsa_api_sse_chunk(dsa_jbuf *b, const dsa_api_resp_meta *m, const dsa_api_delta *d,
                       int include_usage);
/* The final usage-only chunk: choices [] and usage. */
void dsa_api_sse_usage(dsa_jbuf *b, const dsa_api_resp_meta *m, const dsa_api_usage *u);
/* "data: [DONE]\n\n" */
void dsa_api_sse_done(dsa_jbuf *b);
/* "event: error\ndata: {error object}\n\n"-style error inside a stream
 * (OpenAI's clients read `data: {"error": ...}`). */
void dsa_api_sse_error(dsa_jbuf *b, const dsa_api_error *e);

/* A complete non-streaming choice. */
typedef struct dsa_api_choice {
    const char *text;
    size_t n_text;
    const char *reasoning;  /* chat, R1: NULL when none */
    size_t n_reasoning;
    const char *finish_reason;
    const dsa_api_logprob *logprobs;
    int n_logprobs;
    int has_logprobs;
    /* chat: the parsed tool calls; with any, an empty text is "content":
     * null.  "tool_calls" is always written ([] when none), as vLLM does. */
    const dsa_toolcall *tool_calls;
    size_t n_tool_calls;
    /* vLLM's stop_reason: the stop token id (has_stop_token), the stop
     * string (stop_str), else null (EOS, length). */
    int has_stop_token;
    int32_t stop_token;
    const char *stop_str;
    /* prompt_logprobs (NULL: not asked, written as null): the rendered
     * JSON array; chat writes the first choice's at the top level, as vLLM
     * does. */
    const char *prompt_logprobs;
} dsa_api_choice;

/* One prompt position for prompt_logprobs: the prompt token and the top
 * ids with their logprobs and ranks (texts borrowed). */
typedef struct dsa_api_prompt_lp {
    int32_t token;
    float logprob;
    int32_t rank;
    const char *text;
    size_t n_text;
    int n_top;
    int32_t top_ids[20];
    float top_logprob[20];
    const char *top_text[20];
    size_t top_n_text[20];
} dsa_api_prompt_lp;

/* vLLM's prompt_logprobs array: null for the first prompt token, then per
 * position {"id": {"logprob", "rank", "decoded_token"}, ...}, the prompt
 * token first and the top ids after it (ranks 1..k), each id once.  lp
 * holds positions 1..n. */
void dsa_api_prompt_logprobs_json(dsa_jbuf *b, const dsa_api_prompt_lp *lp, int n);

void dsa_api_response(dsa_jbuf *b, const dsa_api_resp_meta *m, const dsa_api_choice *c,
                      int n_choices, const dsa_api_usage *u);

/* Constant-time comparison of a presented Bearer token with every
 * configured key; 1 when one matches.  header is the Authorization value
 * ("Bearer K"), may be NULL. */
int dsa_api_auth_check(const char *header, size_t n_header, const char *const *keys,
                       int n_keys);

#endif
