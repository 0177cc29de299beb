/* chat.h - DeepSeek-V3 / DeepSeek-R1 chat templates rendered in C.
 *
 * The server does not run Jinja.  It recognises the checkpoint's
 * chat_template (tokenizer_config.json) as one of the two templates it
 * renders natively, or refuses to start, and renders an OpenAI `messages`
 * array to exactly the text transformers' apply_chat_template produces with
 * that template (tests/test_chat.c checks this byte for byte against
 * tests/data/chat/conversations.json).
 *
 * Before rendering, messages are normalised the way the golden script does
 * (tools/golden/chat_golden.py, normalise()): a content list of
 * {type:"text", text} parts is joined with "\n"; an assistant message with a
 * non-empty tool_calls list and null, absent or "" content renders as the
 * templates' `content is none` tool-call turn; a null or empty tool_calls
 * list counts as absent; a tool call without "type" is a "function" call.
 * Everything the templates do after that is reproduced, quirks included:
 * system messages are hoisted and joined with "\n\n"; the "first tool call"
 * flag is never reset, so a later tool-call turn starts with "\n"; V3 drops
 * tool calls of an assistant message that also has content; R1 keeps only
 * the text after the last "</think>" of earlier plain assistant turns.
 *
 * This header also holds two small helpers shared by reasoning.c and
 * toolcall.c: a growable byte buffer and a UTF-8 boundary check. */
#ifndef DSA_COMMON_CHAT_H
#define DSA_COMMON_CHAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "common/error.h"

typedef enum dsa_chat_variant {
    DSA_CHAT_V3, /* deepseek-ai/DeepSeek-V3 tokenizer_config.json */
    DSA_CHAT_R1, /* DeepSeek-R1, generation prompt "<｜Assistant｜><think>\n" */
    DSA_CHAT_R1_DISTILL, /* DeepSeek-R1-Distill-Qwen/Llama: V3's template with
                            the last system message only, R1's </think>
                            split and R1's generation prompt */
    DSA_CHAT_VARIANT_COUNT
} dsa_chat_variant;

/* 1 when the variant's generation prompt opens a <think> block, so the
 * answer is split into reasoning_content and content. */
static inline int dsa_chat_variant_reasons(dsa_chat_variant v)
{
    return v == DSA_CHAT_R1 || v == DSA_CHAT_R1_DISTILL;
}

/* "deepseek-v3", "deepseek-r1" or "deepseek-r1-distill"; "unknown" for
 * anything else. */
const char *dsa_chat_variant_name(dsa_chat_variant v);

/* Parses an override option value: "v3"/"deepseek-v3", "r1"/"deepseek-r1"
 * or "r1-distill"/"deepseek-r1-distill" (case-insensitive).  DSA_INVAL with a message listing the accepted names
 * otherwise. */
dsa_err dsa_chat_variant_from_name(const char *name, dsa_chat_variant *out);

/* Recognises a chat_template string.  The template is reduced to a
 * canonical form (whitespace inside {{ }} / {% %} tags dropped, string
 * literal escapes decoded, comments removed; text outside tags kept byte for
 * byte) and its 64-bit FNV-1a hash compared with the known templates', so
 * reformatting that cannot change the output is tolerated and anything that
 * can is not.  Unknown templates fail with DSA_UNSUPPORTED and a message
 * saying so and how to override. */
dsa_err dsa_chat_detect(const char *tmpl, dsa_chat_variant *out);

/* The variant to serve: `override` NULL, "" or "auto" means detect from
 * `tmpl` (DSA_NOTFOUND when tmpl is NULL too); otherwise the named variant,
 * whatever the template says. */
dsa_err dsa_chat_select(const char *tmpl, const char *override,
                        dsa_chat_variant *out);

/* Canonical-form hash used by dsa_chat_detect (exposed for tests/tools). */
uint64_t dsa_chat_template_hash(const char *tmpl);

/* Renders `messages` (a cJSON array in OpenAI's shape, borrowed) to the
 * prompt text.  bos_token is the literal BOS text ("<｜begin▁of▁sentence｜>";
 * NULL means ""). On success *out is a NUL-terminated malloc'd string owned
 * by the caller (free()).  A malformed array fails with DSA_INVAL and a
 * message naming the field, e.g. "messages[2].content: must be a string or
 * an array of text parts" (meant for an HTTP 400). */
dsa_err dsa_chat_render(dsa_chat_variant v, const cJSON *messages,
                        bool add_generation_prompt, const char *bos_token,
                        char **out);

/* Renders a chat with tool definitions.  With `tools` (an OpenAI tools
 * array, borrowed) NULL or empty this is dsa_chat_render.  Otherwise, since
 * the DeepSeek-V3/R1 templates do not show tools to the model, the whole
 * conversation is rendered as vLLM's examples/tool_chat_template_deepseekv3
 * .jinja renders it (for both variants; byte for byte, its stray spaces
 * and newlines included; tests/data/chat/tools_conversations.json): the
 * system prompt, a "# Tools" section with each tool as vLLM's
 * ChatCompletionToolsParam.model_dump() through `tojson` (common/pyjson.h),
 * then the turns, history tool calls with their arguments re-serialised
 * from JSON as vLLM does (a call's arguments must then be valid JSON: else
 * DSA_INVAL naming the field). */
dsa_err dsa_chat_render_tools(dsa_chat_variant v, const cJSON *messages, const cJSON *tools,
                              bool add_generation_prompt, const char *bos_token, char **out);
/* continue_final_message (vLLM, via transformers' apply_chat_template):
 * cuts `text`, rendered from `messages` without the generation prompt, in
 * place right after the last occurrence of the final message's text
 * (stripped of surrounding whitespace; of a content list, the last part
 * with text), so the model continues that message instead of a closed
 * turn.  DSA_INVAL with a message when there is no text to continue or it
 * does not appear in the rendering. */
dsa_err dsa_chat_continue_final(const cJSON *messages, char *text);

/* ---- helpers shared by the chat modules -------------------------------- */

/* A growable byte string, always NUL-terminated once anything was
 * appended.  Zero-initialise; dsa_chat_buf_deinit frees. */
typedef struct dsa_chat_buf {
    char *data;
    size_t len;
    size_t cap;
} dsa_chat_buf;

dsa_err dsa_chat_buf_append(dsa_chat_buf *b, const char *s, size_t n);
dsa_err dsa_chat_buf_puts(dsa_chat_buf *b, const char *s);
/* Drops the first n bytes. */
void dsa_chat_buf_consume(dsa_chat_buf *b, size_t n);
void dsa_chat_buf_deinit(dsa_chat_buf *b);

/* Length of the longest prefix of s[0..n) that does not end inside a UTF-8
 * multi-byte sequence, so that streamed deltas stay whole characters.
 * Bytes that cannot start or continue a sequence are passed through. */
size_t dsa_chat_utf8_complete(const char *s, size_t n);

#endif
