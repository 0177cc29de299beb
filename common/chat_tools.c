/* chat_tools.c - tool definitions in the prompt: vLLM's DeepSeek-V3 tool
 * chat template (examples/tool_chat_template_deepseekv3.jinja), which
 * dsa-head renders whenever a request carries `tools`, transcribed over
 * chat.c's normalised messages. */
#include "common/chat_int.h"
#include "common/pyjson.h"

#include <string.h>

/* ---- tool definitions: vLLM's DeepSeek-V3 tool chat template ---------- */

/* The lines of examples/tool_chat_template_deepseekv3.jinja (vLLM) as
 * transformers renders them (trim_blocks, lstrip_blocks): the indentation
 * in front of {{ }} output and the newlines after it are kept, so the
 * prompt carries the same spaces and newlines vLLM's does. */
#define TT_TOOLS_HEAD                                                        \
    "    \n\n# Tools\n\nYou may call one or more functions to assist with "  \
    "the user query.\n\nYou are provided with function signatures within "   \
    "<tools></tools> XML tags:\n<tools>"
#define TT_TOOLS_TAIL                                                        \
    "    \n</tools>\n\n"                                                     \
    "\n\n    For function call returns, you should first print "            \
    TOK_CALLS_BEGIN                                                          \
    "\n\n    For each function call, you should return object like:\n"      \
    "\n    " TOK_CALL_BEGIN "function" TOK_SEP "<function_name>\n```json\n" \
    "<function_arguments_in_json_format>\n```" TOK_CALL_END                  \
    "\n\n    At the end of function call returns, you should print "        \
    TOK_CALLS_END TOK_EOS
#define TT_IND4 "    "
#define TT_IND8 "        "
#define TT_IND12 "            "
#define TT_IND16 "                "
#define TT_IND20 "                    "

#define PUT(s) do { if ((err = dsa_chat_buf_puts(b, (s)))) return err; } while (0)

/* ", key: value" for every field of obj not named in skip, in request
 * order, as `tojson` writes them. */
static dsa_err put_other_fields(dsa_chat_buf *b, const cJSON *obj, const char *const *skip,
                                size_t n_skip)
{
    dsa_err err;
    const cJSON *c;
    cJSON_ArrayForEach(c, obj) {
        size_t k = 0;
        while (k < n_skip && strcmp(c->string, skip[k]))
            k++;
        if (k < n_skip)
            continue;
        PUT(", ");
        if ((err = dsa_pyjson_put_string(b, c->string, strlen(c->string))))
            return err;
        PUT(": ");
        if ((err = dsa_pyjson_put(b, c)))
            return err;
    }
    return DSA_OK;
}

/* One tool as vLLM hands it to the template (ChatCompletionToolsParam
 * .model_dump()): type, then function {name, description, parameters,
 * other fields in request order} (null when absent), then the tool's other
 * fields; written by `tojson`. */
static dsa_err put_tool(dsa_chat_buf *b, const cJSON *t, size_t i)
{
    dsa_err err;
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
    if (!cJSON_IsObject(t) || !cJSON_IsObject(fn) || !cJSON_IsString(name))
        return dsa_fail(DSA_INVAL, "tools[%zu]: must be {\"type\": \"function\", "
                                   "\"function\": {\"name\": ...}}", i);
    static const char *const known[] = {"name", "description", "parameters"};
    PUT("{\"type\": \"function\", \"function\": {");
    for (size_t k = 0; k < 3; k++) {
        PUT(k ? ", \"" : "\"");
        PUT(known[k]);
        PUT("\": ");
        if ((err = dsa_pyjson_put(b, cJSON_GetObjectItemCaseSensitive(fn, known[k]))))
            return err;
    }
    static const char *const outer[] = {"type", "function"};
    if ((err = put_other_fields(b, fn, known, 3)))
        return err;
    PUT("}");
    if ((err = put_other_fields(b, t, outer, 2)))
        return err;
    PUT("}");
    return DSA_OK;
}

/* A history call as the template writes it: vLLM turns the arguments
 * string into an object first (json.loads; "" is {}), `tojson` writes it
 * back. */
static dsa_err put_tool_call(dsa_chat_buf *b, const chat_call *c, size_t i, size_t k)
{
    dsa_err err;
    PUT(c->type);
    PUT(TOK_SEP);
    PUT(c->name);
    PUT("\n```json\n");
    if (!c->arguments[0]) {
        PUT("{}");
    } else {
        cJSON *args = cJSON_Parse(c->arguments);
        if (!args)
            return dsa_fail(DSA_INVAL, "messages[%zu].tool_calls[%zu].function.arguments: "
                                       "not valid JSON", i, k);
        err = dsa_pyjson_put(b, args);
        cJSON_Delete(args);
        if (err)
            return err;
    }
    PUT("\n```" TOK_CALL_END);
    return DSA_OK;
}

dsa_err dsa_chat_render_tool_template(const chat_msg *ms, size_t n, const cJSON *tools,
                                      bool add_generation_prompt, const char *bos,
                                      dsa_chat_buf *b)
{
    dsa_err err;
    /* namespace(is_first, is_tool, is_output_first, is_last_user) */
    bool is_first = false, is_tool = false, is_output_first = true, is_last_user = false;
    PUT("\n\n");
    PUT(bos ? bos : "");
    PUT("\n");
    bool first_sp = true;
    for (size_t i = 0; i < n; i++)
        if (ms[i].role == ROLE_SYSTEM) {
            if (!first_sp)
                PUT("\n\n");
            PUT(ms[i].content);
            first_sp = false;
        }
    PUT(TT_TOOLS_HEAD);
    size_t i_tool = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, tools) {
        PUT("\n");
        if ((err = put_tool(b, t, i_tool++)))
            return err;
    }
    PUT(TT_TOOLS_TAIL);
    for (size_t i = 0; i < n; i++) {
        const chat_msg *m = &ms[i];
        switch (m->role) {
        case ROLE_SYSTEM:
            break;
        case ROLE_USER:
            is_tool = is_first = false;
            is_last_user = true;
            PUT(TOK_USER);
            PUT(m->content);
            PUT(TOK_ASSISTANT);
            break;
        case ROLE_ASSISTANT:
            is_last_user = false;
            if (m->calls) {
                if (is_tool)
                    PUT(TT_IND12 TOK_OUTPUTS_END);
                is_first = is_tool = false;
                is_output_first = true;
                for (size_t k = 0; k < m->n_calls; k++) {
                    if (!is_first) {
                        PUT(TT_IND20);
                        if (m->content)
                            PUT(m->content);
                        PUT(TOK_CALLS_BEGIN TOK_CALL_BEGIN);
                        is_first = true;
                    } else {
                        PUT(TT_IND16 "\n" TOK_CALL_BEGIN);
                    }
                    if ((err = put_tool_call(b, &m->calls[k], i, k)))
                        return err;
                }
                PUT(TT_IND8 TOK_CALLS_END TOK_EOS);
            } else {
                PUT(TT_IND12);
                if (is_tool)
                    PUT(TOK_OUTPUTS_END);
                PUT(m->content);
                PUT(TOK_EOS);
                is_tool = false;
            }
            break;
        case ROLE_TOOL:
            is_last_user = false;
            is_tool = true;
            PUT(is_output_first ? TT_IND12 TOK_OUTPUTS_BEGIN TOK_OUTPUT_BEGIN
                                : TT_IND12 "\n" TOK_OUTPUT_BEGIN);
            is_output_first = false;
            PUT(m->content);
            PUT(TOK_OUTPUT_END);
            break;
        }
    }
    if (is_tool)
        PUT(TT_IND4 TOK_OUTPUTS_END "\n");
    PUT("\n");
    if (add_generation_prompt && !is_last_user && !is_tool)
        PUT(TT_IND4 TOK_ASSISTANT "\n");
    return DSA_OK;
}

#undef PUT
