/* chat_int.h - what chat.c (the models' templates) and chat_tools.c
 * (vLLM's DeepSeek-V3 tool template) share: the special tokens as the
 * templates write them, and the normalised messages. */
#ifndef DSA_COMMON_CHAT_INT_H
#define DSA_COMMON_CHAT_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "common/chat.h"

/* Special tokens, as they appear in the templates. */
#define TOK_USER "<｜User｜>"
#define TOK_ASSISTANT "<｜Assistant｜>"
#define TOK_EOS "<｜end▁of▁sentence｜>"
#define TOK_CALLS_BEGIN "<｜tool▁calls▁begin｜>"
#define TOK_CALLS_END "<｜tool▁calls▁end｜>"
#define TOK_CALL_BEGIN "<｜tool▁call▁begin｜>"
#define TOK_CALL_END "<｜tool▁call▁end｜>"
#define TOK_SEP "<｜tool▁sep｜>"
#define TOK_OUTPUTS_BEGIN "<｜tool▁outputs▁begin｜>"
#define TOK_OUTPUTS_END "<｜tool▁outputs▁end｜>"
#define TOK_OUTPUT_BEGIN "<｜tool▁output▁begin｜>"
#define TOK_OUTPUT_END "<｜tool▁output▁end｜>"

enum chat_role { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT, ROLE_TOOL };

typedef struct chat_call {
    const char *type; /* "function" */
    const char *name;
    const char *arguments;
} chat_call;

typedef struct chat_msg {
    enum chat_role role;
    const char *content; /* NULL: the templates' `content is none` */
    char *owned;         /* joined content parts; content points here */
    chat_call *calls;    /* NULL when the message has no tool calls */
    size_t n_calls;
} chat_msg;

/* chat_tools.c: the normalised messages ms[0..n) with the tool definitions
 * `tools` (a non-empty array) through vLLM's DeepSeek-V3 tool template. */
dsa_err dsa_chat_render_tool_template(const chat_msg *ms, size_t n, const cJSON *tools,
                                      bool add_generation_prompt, const char *bos,
                                      dsa_chat_buf *b);

#endif
