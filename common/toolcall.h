/* toolcall.h - parses DeepSeek-V3/R1 tool-call tokens into OpenAI
 * tool_calls, streaming.
 *
 * The model writes calls as (special tokens shown literally)
 *
 *   <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n
 *   ```json\nARGS\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>...
 *   <｜tool▁call▁end｜><｜tool▁calls▁end｜>
 *
 * Feed the (content part of the) detokenised output in pieces split at any
 * byte; each call returns the plain-content delta and the calls started in
 * it, and the totals are the same for every split.  A call starts (is
 * handed on, with id and name) once its name line is complete, and its
 * arguments then grow as they are generated, as vLLM streams them: the text
 * inside the ```json fence (or the whole body when there is no fence),
 * trimmed of surrounding whitespace; what has been handed on is always a
 * prefix of the final arguments.  At "<｜tool▁call▁end｜>" the arguments are
 * complete; they are passed on as a string without JSON validation, as
 * OpenAI does.  Parsing is lenient: whitespace between calls is skipped, a
 * missing "<｜tool▁calls▁end｜>" at the end of output is accepted.  A call
 * cut short (by the next marker or the end of output) after its name line
 * stays a call with the arguments handed on ("{}" when none).  Anything
 * else malformed (stray text in the call section, a body without
 * "<｜tool▁sep｜>" or name) is passed through as plain content, raw text
 * and markers included; never an error.
 *
 * Call ids are "<id_prefix><n>" with n counting from 0 across the output, so
 * they are deterministic (the prefix should make them unique per request).
 *
 * Not thread-safe; one parser per request. */
#ifndef DSA_COMMON_TOOLCALL_H
#define DSA_COMMON_TOOLCALL_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "common/chat.h"
#include "common/error.h"

typedef struct dsa_toolcall {
    char *id;        /* "<id_prefix><n>" */
    char *name;      /* function name */
    char *arguments; /* JSON text, as the model wrote it (so far) */
    size_t n_arguments;
} dsa_toolcall;

/* This call's output.  content is owned by the parser and valid until its
 * next feed/finish/deinit (never NULL); the calls started are
 * p->calls[i_first .. i_first + n_new).  The last call's arguments may
 * still grow while p->open. */
typedef struct dsa_toolcall_delta {
    const char *content;
    size_t n_content;
    size_t i_first;
    size_t n_new;
} dsa_toolcall_delta;

typedef struct dsa_toolcall_parser {
    char *id_prefix;
    int state;               /* toolcall.c's TC_* */
    size_t n_section_calls;  /* calls completed in the current section */
    int open;                /* the last call is started, its end not seen */
    size_t name_end;         /* open: where its name line ends in body */
    dsa_chat_buf pending;    /* input not yet decided */
    dsa_chat_buf raw;        /* section text since the last complete call */
    dsa_chat_buf body;       /* the current call's body so far */
    dsa_chat_buf content;    /* this call's content delta */
    dsa_toolcall *calls;     /* every call parsed so far (owned) */
    size_t n_calls;
    size_t cap_calls;
} dsa_toolcall_parser;

/* On caller storage; id_prefix NULL means "call_".  DSA_NOMEM only. */
dsa_err dsa_toolcall_init(dsa_toolcall_parser *p, const char *id_prefix);
void dsa_toolcall_deinit(dsa_toolcall_parser *p);

dsa_err dsa_toolcall_feed(dsa_toolcall_parser *p, const char *data, size_t n,
                          dsa_toolcall_delta *out);
/* End of output: flushes what was held back; not fed again afterwards. */
dsa_err dsa_toolcall_finish(dsa_toolcall_parser *p, dsa_toolcall_delta *out);

/* OpenAI's tool_calls array for calls[0..n): [{id, type:"function",
 * function:{name, arguments}}].  *out is owned by the caller
 * (cJSON_Delete). */
dsa_err dsa_toolcall_to_json(const dsa_toolcall *calls, size_t n,
                             cJSON **out);

#endif
