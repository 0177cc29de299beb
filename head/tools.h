/* tools.h - OpenAI function calling for chat completions: the `tools`,
 * `tool_choice` and `parallel_tool_calls` request fields, and the per-choice
 * filter that turns DeepSeek tool-call tokens in the generated content into
 * OpenAI tool_calls (common/toolcall.h), as vLLM's DeepSeek-V3 tool parser
 * does.
 *
 * Validation follows vLLM's ChatCompletionRequest.check_tool_usage:
 * tool_choice defaults to "auto" when tools are given (else "none"); a
 * tool_choice other than "none" needs `tools`; a named tool_choice must name
 * one of them; "required" with an empty tools list means "none".
 *
 * "required" and a named tool_choice constrain decoding with a grammar of
 * DeepSeek's tool-call tokens whose arguments follow each tool's
 * parameters schema (dsa_tools_grammar); "auto" leaves the model free.
 * The `tools` are rendered into the prompt by common/chat.c as
 * vLLM's DeepSeek-V3 tool chat template does.
 *
 * Streamed calls go out as vLLM streams them: a first delta with the
 * call's index, id, type, name and the arguments so far (often ""), as
 * soon as its name line is complete, then deltas with fragments of its
 * arguments as they are generated (common/toolcall.h). */
#ifndef DSA_HEAD_TOOLS_H
#define DSA_HEAD_TOOLS_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "common/tokenizer.h"
#include "common/toolcall.h"
#include "head/api.h"

/* Reads tools / tool_choice / parallel_tool_calls of a chat request body
 * into r; DSA_INVAL with e naming the parameter when malformed. */
dsa_err dsa_tools_parse(const cJSON *root, dsa_api_request *r, dsa_api_error *e);

/* The grammar description that forces tool calls (tool_choice "required"
 * or named) in DeepSeek's format: common/grammar.h DSA_GRAM_TOOLS.
 * *text is malloc'd.  DSA_UNSUPPORTED when tok lacks the call tokens. */
dsa_err dsa_tools_grammar(const dsa_api_request *r, const dsa_tok *tok, char **text);

/* 1 when a chat request's output is to be parsed for tool calls. */
int dsa_tools_active(const dsa_api_request *r);

/* One choice's content filter.  Inactive, content passes through. */
typedef struct dsa_tools_out {
    int active;
    int single;                 /* parallel_tool_calls false: first call only */
    int finished;
    dsa_toolcall_parser p;
    dsa_chat_buf out;           /* this feed's content */
    size_t n_calls;             /* calls handed on (p.n_calls, or 1 if single) */
    size_t n_args_sent;         /* bytes of the last one's arguments handed on */
    dsa_api_tool_delta *deltas; /* this feed's call deltas */
    size_t cap_deltas;
} dsa_tools_out;

/* This feed's output, valid until the next feed/deinit: the content delta
 * and the call deltas (new calls and argument fragments, in order). */
typedef struct dsa_tools_delta {
    const char *content;
    size_t n_content;
    const dsa_api_tool_delta *calls;
    size_t n_calls;
} dsa_tools_delta;

/* id_prefix: the calls' ids are "<id_prefix><n>" (NULL: "call_"). */
dsa_err dsa_tools_out_init(dsa_tools_out *o, int active, int single, const char *id_prefix);
void dsa_tools_out_deinit(dsa_tools_out *o);
/* Feeds content s[0..n); final = end of output (flushes what was held
 * back; no feed after it).  DSA_NOMEM only. */
dsa_err dsa_tools_out_feed(dsa_tools_out *o, const char *s, size_t n, int final,
                           dsa_tools_delta *d);
/* The choice's finish_reason: "tool_calls" once any call was handed on,
 * else the engine's. */
const char *dsa_tools_out_finish_reason(const dsa_tools_out *o, const char *finish);

/* One engine event of a streamed choice as SSE chunks: a chunk with the
 * reasoning, content and logprobs (when any), one chunk per call delta,
 * then the finish chunk when finish_reason is set.  Completions go
 * through here too (their filter is inactive). */
typedef struct dsa_tools_sse_event {
    const dsa_api_resp_meta *meta;
    int index;                      /* the choice */
    const dsa_tools_delta *td;      /* content and calls (dsa_tools_out_feed) */
    const char *reasoning;
    size_t n_reasoning;
    const dsa_api_logprob *logprobs;
    int n_logprobs;
    size_t *text_offset;            /* completions: advanced by the logprobs'
                                     * token texts (characters) */
    const char *finish_reason;      /* NULL until the last event */
    int include_usage;
    int has_stop_token;             /* with finish_reason: vLLM's stop_reason */
    int32_t stop_token;
    const char *stop_str;
} dsa_tools_sse_event;

void dsa_tools_sse(dsa_jbuf *b, const dsa_tools_sse_event *ev);

/* A chunk's delta "tool_calls" array: [{index, [id, type,] function:
 * {[name,] arguments}}] (dsa_api_sse_chunk writes it). */
void dsa_tools_put_deltas(dsa_jbuf *b, const dsa_api_tool_delta *t, size_t n);

/* Non-streaming: parses a whole output text[0..n).  content receives the
 * plain content (text outside the calls); the calls are o->p.calls
 * [0..o->n_calls).  o must have been initialised; deinit it afterwards. */
dsa_err dsa_tools_out_parse_all(dsa_tools_out *o, const char *text, size_t n, dsa_jbuf *content);

#endif
