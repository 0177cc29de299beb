/* tools.c - tools / tool_choice validation and the tool-call content filter
 * (see tools.h). */
#include "head/tools.h"

#include <stdlib.h>
#include <string.h>

/* ---- request fields ------------------------------------------------------- */

static dsa_err parse_tool_list(const cJSON *tools, dsa_api_request *r, dsa_api_error *e)
{
    if (!cJSON_IsArray(tools))
        return dsa_api_fail(e, 400, "tools", "'tools' must be an array of function tools");
    int i = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, tools) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(t, "type");
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
        if (!cJSON_IsObject(t))
            return dsa_api_fail(e, 400, "tools", "tools[%d] must be an object", i);
        if (type && !cJSON_IsNull(type) &&
            (!cJSON_IsString(type) || strcmp(type->valuestring, "function")))
            return dsa_api_fail(e, 400, "tools", "tools[%d].type must be \"function\"", i);
        if (!cJSON_IsObject(fn))
            return dsa_api_fail(e, 400, "tools", "tools[%d].function must be an object", i);
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        const cJSON *desc = cJSON_GetObjectItemCaseSensitive(fn, "description");
        const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
        const cJSON *strict = cJSON_GetObjectItemCaseSensitive(fn, "strict");
        if (!cJSON_IsString(name) || !name->valuestring[0])
            return dsa_api_fail(e, 400, "tools",
                                "tools[%d].function.name must be a non-empty string", i);
        if (desc && !cJSON_IsNull(desc) && !cJSON_IsString(desc))
            return dsa_api_fail(e, 400, "tools",
                                "tools[%d].function.description must be a string", i);
        if (params && !cJSON_IsNull(params) && !cJSON_IsObject(params))
            return dsa_api_fail(e, 400, "tools",
                                "tools[%d].function.parameters must be an object", i);
        if (strict && !cJSON_IsNull(strict) && !cJSON_IsBool(strict))
            return dsa_api_fail(e, 400, "tools",
                                "tools[%d].function.strict must be a boolean", i);
        i++;
    }
    r->n_tools = i;
    return DSA_OK;
}

static int has_tool(const cJSON *tools, const char *name)
{
    const cJSON *t;
    cJSON_ArrayForEach(t, tools) {
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(fn, "name");
        if (cJSON_IsString(n) && !strcmp(n->valuestring, name))
            return 1;
    }
    return 0;
}

#define NAMED_USAGE "tool_choice must be \"none\", \"auto\", \"required\" or " \
                    "{\"type\": \"function\", \"function\": {\"name\": \"my_function\"}}"

dsa_err dsa_tools_parse(const cJSON *root, dsa_api_request *r, dsa_api_error *e)
{
    dsa_err err;
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(root, "tools");
    const cJSON *choice = cJSON_GetObjectItemCaseSensitive(root, "tool_choice");
    const cJSON *par = cJSON_GetObjectItemCaseSensitive(root, "parallel_tool_calls");
    int has_tools = tools && !cJSON_IsNull(tools);
    r->parallel_tool_calls = 1;
    if (par && !cJSON_IsNull(par)) {
        if (!cJSON_IsBool(par))
            return dsa_api_fail(e, 400, "parallel_tool_calls",
                                "'parallel_tool_calls' must be a boolean");
        r->parallel_tool_calls = cJSON_IsTrue(par);
    }
    if (has_tools && (err = parse_tool_list(tools, r, e)))
        return err;
    /* kept for the prompt (dsa_chat_render_tools), whatever tool_choice */
    if (r->n_tools > 0 && !(r->tools = cJSON_Duplicate(tools, 1)))
        return DSA_NOMEM;
    r->tool_choice = has_tools && r->n_tools > 0 ? DSA_API_TOOL_AUTO : DSA_API_TOOL_NONE;
    if (!choice || cJSON_IsNull(choice))
        return DSA_OK;
    if (cJSON_IsString(choice)) {
        const char *s = choice->valuestring;
        if (!strcmp(s, "none")) {
            r->tool_choice = DSA_API_TOOL_NONE;
            return DSA_OK;
        }
        if (strcmp(s, "auto") && strcmp(s, "required"))
            return dsa_api_fail(e, 400, "tool_choice", "invalid 'tool_choice' \"%.64s\": "
                                NAMED_USAGE, s);
    } else if (cJSON_IsObject(choice)) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(choice, "type");
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(choice, "function");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        if ((type && !cJSON_IsNull(type) &&
             (!cJSON_IsString(type) || strcmp(type->valuestring, "function"))) ||
            !cJSON_IsObject(fn) || !cJSON_IsString(name) || !name->valuestring[0])
            return dsa_api_fail(e, 400, "tool_choice", "invalid 'tool_choice': " NAMED_USAGE);
    } else {
        return dsa_api_fail(e, 400, "tool_choice", "'tool_choice' must be a string or an "
                            "object: " NAMED_USAGE);
    }
    if (!has_tools)
        return dsa_api_fail(e, 400, "tool_choice",
                            "when using 'tool_choice', 'tools' must be set");
    if (cJSON_IsString(choice)) {
        /* "required" with an empty list means "none", as vLLM has it */
        if (r->n_tools == 0)
            r->tool_choice = DSA_API_TOOL_NONE;
        else
            r->tool_choice = strcmp(choice->valuestring, "auto") ? DSA_API_TOOL_REQUIRED
                                                                 : DSA_API_TOOL_AUTO;
        return DSA_OK;
    }
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(choice, "function");
    const char *name = cJSON_GetObjectItemCaseSensitive(fn, "name")->valuestring;
    if (!has_tool(tools, name))
        return dsa_api_fail(e, 400, "tool_choice", "the tool \"%.64s\" named in 'tool_choice' "
                            "is not one of the 'tools'", name);
    r->tool_choice = DSA_API_TOOL_NAMED;
    return (r->tool_named = strdup(name)) ? DSA_OK : DSA_NOMEM;
}

/* The forced-call grammar's description (common/grammar.h
 * DSA_GRAM_TOOLS): the tools allowed (the named one, or all), their
 * parameter schemas and the ids of DeepSeek's tool-call tokens. */
dsa_err dsa_tools_grammar(const dsa_api_request *r, const dsa_tok *tok, char **text)
{
    static const char *const marks[][2] = {
        {"calls_begin", "<｜tool▁calls▁begin｜>"},
        {"calls_end", "<｜tool▁calls▁end｜>"},
        {"call_begin", "<｜tool▁call▁begin｜>"},
        {"call_end", "<｜tool▁call▁end｜>"},
        {"sep", "<｜tool▁sep｜>"},
    };
    *text = NULL;
    cJSON *root = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(root, "tools");
    cJSON *mk = cJSON_AddObjectToObject(root, "markers");
    if (!root || !list || !mk)
        goto nomem;
    cJSON_AddBoolToObject(root, "parallel", r->tool_choice == DSA_API_TOOL_REQUIRED &&
                                                r->parallel_tool_calls);
    for (size_t i = 0; i < sizeof marks / sizeof marks[0]; i++) {
        int32_t id = tok ? dsa_tok_token_to_id(tok, marks[i][1], strlen(marks[i][1])) : -1;
        if (id < 0 || !dsa_tok_is_added(tok, id)) {
            cJSON_Delete(root);
            return dsa_fail(DSA_UNSUPPORTED, "the tokenizer has no %s tool-call token",
                            marks[i][0]);
        }
        cJSON_AddNumberToObject(mk, marks[i][0], id);
    }
    const cJSON *t;
    cJSON_ArrayForEach(t, r->tools) {
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
        if (r->tool_choice == DSA_API_TOOL_NAMED && strcmp(name->valuestring, r->tool_named))
            continue;
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(list, o) ||
            !cJSON_AddStringToObject(o, "name", name->valuestring))
            goto nomem;
        if (params && !cJSON_IsNull(params) &&
            !cJSON_AddItemToObject(o, "parameters", cJSON_Duplicate(params, 1)))
            goto nomem;
    }
    *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return *text ? DSA_OK : DSA_NOMEM;
nomem:
    cJSON_Delete(root);
    return DSA_NOMEM;
}

int dsa_tools_active(const dsa_api_request *r)
{
    return r->kind == DSA_API_CHAT && r->tool_choice != DSA_API_TOOL_NONE && r->n_tools > 0;
}

/* ---- the content filter --------------------------------------------------- */

dsa_err dsa_tools_out_init(dsa_tools_out *o, int active, int single, const char *id_prefix)
{
    memset(o, 0, sizeof *o);
    o->active = active;
    o->single = single;
    return active ? dsa_toolcall_init(&o->p, id_prefix) : DSA_OK;
}

void dsa_tools_out_deinit(dsa_tools_out *o)
{
    if (o->active)
        dsa_toolcall_deinit(&o->p);
    dsa_chat_buf_deinit(&o->out);
    free(o->deltas);
    memset(o, 0, sizeof *o);
}

/* The deltas of the calls since the last feed: the rest of the last call
 * handed on (its arguments grow while it is open), then the new ones.
 * parallel_tool_calls false: the first call only. */
static dsa_err call_deltas(dsa_tools_out *o, dsa_tools_delta *d)
{
    size_t end = o->p.n_calls;
    if (o->single && end > 1)
        end = 1;
    size_t first = o->n_calls ? o->n_calls - 1 : 0;
    if (end - first > o->cap_deltas) {
        size_t cap = end - first + 4;
        dsa_api_tool_delta *nd = realloc(o->deltas, cap * sizeof *nd);
        if (!nd)
            return dsa_fail(DSA_NOMEM, "tools: out of memory");
        o->deltas = nd;
        o->cap_deltas = cap;
    }
    size_t n = 0;
    for (size_t i = first; i < end; i++) {
        const dsa_toolcall *c = &o->p.calls[i];
        int fresh = i >= o->n_calls;
        size_t from = fresh ? 0 : o->n_args_sent;
        if (!fresh && c->n_arguments <= from)
            continue;
        o->deltas[n++] = (dsa_api_tool_delta){
            .index = i, .id = fresh ? c->id : NULL, .name = fresh ? c->name : NULL,
            .arguments = c->arguments + from, .n_arguments = c->n_arguments - from};
        o->n_args_sent = c->n_arguments;
    }
    if (end > o->n_calls)
        o->n_calls = end;
    d->calls = o->deltas;
    d->n_calls = n;
    return DSA_OK;
}

dsa_err dsa_tools_out_feed(dsa_tools_out *o, const char *s, size_t n, int final,
                           dsa_tools_delta *d)
{
    memset(d, 0, sizeof *d);
    d->content = "";
    if (!o->active) {
        d->content = s ? s : "";
        d->n_content = s ? n : 0;
        return DSA_OK;
    }
    if (o->finished)
        return DSA_OK;
    /* the parser's content is valid until its next feed or finish: the
     * two are gathered in o->out */
    o->out.len = 0;
    dsa_toolcall_delta td;
    dsa_err err = dsa_toolcall_feed(&o->p, s ? s : "", s ? n : 0, &td);
    if (!err)
        err = dsa_chat_buf_append(&o->out, td.content, td.n_content);
    if (!err && final) {
        o->finished = 1;
        if (!(err = dsa_toolcall_finish(&o->p, &td)))
            err = dsa_chat_buf_append(&o->out, td.content, td.n_content);
    }
    if (err)
        return err;
    d->content = o->out.data ? o->out.data : "";
    d->n_content = o->out.len;
    return call_deltas(o, d);
}

const char *dsa_tools_out_finish_reason(const dsa_tools_out *o, const char *finish)
{
    return o->n_calls > 0 ? "tool_calls" : finish;
}

void dsa_tools_put_deltas(dsa_jbuf *b, const dsa_api_tool_delta *t, size_t n)
{
    dsa_jbuf_puts(b, "[");
    for (size_t i = 0; i < n; i++) {
        dsa_jbuf_printf(b, "%s{\"index\":%zu,", i ? "," : "", t[i].index);
        if (t[i].id) {
            dsa_jbuf_puts(b, "\"id\":");
            dsa_jbuf_str(b, t[i].id, strlen(t[i].id));
            dsa_jbuf_puts(b, ",\"type\":\"function\",");
        }
        dsa_jbuf_puts(b, "\"function\":{");
        if (t[i].name) {
            dsa_jbuf_puts(b, "\"name\":");
            dsa_jbuf_str(b, t[i].name, strlen(t[i].name));
            dsa_jbuf_puts(b, ",");
        }
        dsa_jbuf_puts(b, "\"arguments\":");
        dsa_jbuf_str(b, t[i].arguments ? t[i].arguments : "", t[i].n_arguments);
        dsa_jbuf_puts(b, "}}");
    }
    dsa_jbuf_puts(b, "]");
}

void dsa_tools_sse(dsa_jbuf *b, const dsa_tools_sse_event *ev)
{
    const dsa_tools_delta *td = ev->td;
    if (td->n_content || ev->n_reasoning || ev->n_logprobs) {
        dsa_api_delta d = {.index = ev->index, .content = td->content,
                           .n_content = td->n_content, .reasoning = ev->reasoning,
                           .n_reasoning = ev->n_reasoning, .logprobs = ev->logprobs,
                           .n_logprobs = ev->n_logprobs, .text_offset = *ev->text_offset};
        dsa_api_sse_chunk(b, ev->meta, &d, ev->include_usage);
        /* by the tokens' texts, in characters: the offsets then equal the
         * non-streamed response's, however the content was held back */
        for (int i = 0; i < ev->n_logprobs; i++)
            *ev->text_offset += dsa_api_text_chars(ev->logprobs[i].text,
                                                   ev->logprobs[i].n_text);
    }
    for (size_t i = 0; i < td->n_calls; i++) {
        dsa_api_delta d = {.index = ev->index, .tool_deltas = td->calls + i, .n_tool_deltas = 1};
        dsa_api_sse_chunk(b, ev->meta, &d, ev->include_usage);
    }
    if (ev->finish_reason) {
        dsa_api_delta d = {.index = ev->index, .finish_reason = ev->finish_reason,
                           .has_stop_token = ev->has_stop_token,
                           .stop_token = ev->stop_token, .stop_str = ev->stop_str};
        dsa_api_sse_chunk(b, ev->meta, &d, ev->include_usage);
    }
}

dsa_err dsa_tools_out_parse_all(dsa_tools_out *o, const char *text, size_t n, dsa_jbuf *content)
{
    dsa_tools_delta d;
    dsa_err err = dsa_tools_out_feed(o, text, n, 1, &d);
    if (err)
        return err;
    dsa_jbuf_put(content, d.content, d.n_content);
    return content->oom ? DSA_NOMEM : DSA_OK;
}
