/* pyjson.c - Python-style JSON text (see pyjson.h). */
#include "common/pyjson.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void dsa_pyjson_float(char out[40], double v)
{
    if (isnan(v) || isinf(v)) {
        strcpy(out, isnan(v) ? "nan" : v > 0 ? "inf" : "-inf");
        return;
    }
    char e[32];
    int prec = 0;
    for (; prec < 17; prec++) {
        snprintf(e, sizeof e, "%.*e", prec, v);
        if (strtod(e, NULL) == v)
            break;
    }
    int exp10 = atoi(strchr(e, 'e') + 1);
    if (exp10 >= -4 && exp10 < 16) { /* repr's fixed notation */
        snprintf(out, 40, "%.*f", prec - exp10 > 0 ? prec - exp10 : 0, v);
        if (!strchr(out, '.'))
            strcat(out, ".0");
        return;
    }
    *strchr(e, 'e') = '\0'; /* "1.5e+20", "1e-05": at least two exponent digits */
    snprintf(out, 40, "%.30se%c%02d", e, exp10 < 0 ? '-' : '+', abs(exp10) % 1000);
}

dsa_err dsa_pyjson_put_string(dsa_chat_buf *b, const char *s, size_t n)
{
    dsa_err err = dsa_chat_buf_append(b, "\"", 1);
    size_t run = 0; /* bytes copied as they are, pending */
    for (size_t i = 0; i < n && !err; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\n' ? "\\n"
                          : c == '\r' ? "\\r" : c == '\t' ? "\\t" : c == '\b' ? "\\b"
                          : c == '\f' ? "\\f" : NULL;
        if (!esc && c >= 0x20)
            continue;
        char u[8];
        if (!esc) {
            snprintf(u, sizeof u, "\\u%04x", c);
            esc = u;
        }
        err = dsa_chat_buf_append(b, s + run, i - run);
        if (!err)
            err = dsa_chat_buf_puts(b, esc);
        run = i + 1;
    }
    if (!err)
        err = dsa_chat_buf_append(b, s + run, n - run);
    if (!err)
        err = dsa_chat_buf_append(b, "\"", 1);
    return err;
}

static dsa_err put_number(dsa_chat_buf *b, double v)
{
    char s[40];
    if (v == floor(v) && fabs(v) < 1e17)
        snprintf(s, sizeof s, "%.0f", v);
    else
        dsa_pyjson_float(s, v);
    return dsa_chat_buf_puts(b, s);
}

dsa_err dsa_pyjson_put(dsa_chat_buf *b, const cJSON *v)
{
    dsa_err err = DSA_OK;
    if (cJSON_IsNull(v) || !v)
        return dsa_chat_buf_puts(b, "null");
    if (cJSON_IsTrue(v))
        return dsa_chat_buf_puts(b, "true");
    if (cJSON_IsFalse(v))
        return dsa_chat_buf_puts(b, "false");
    if (cJSON_IsNumber(v))
        return put_number(b, v->valuedouble);
    if (cJSON_IsString(v))
        return dsa_pyjson_put_string(b, v->valuestring, strlen(v->valuestring));
    int obj = cJSON_IsObject(v);
    if (!obj && !cJSON_IsArray(v))
        return dsa_chat_buf_puts(b, "null"); /* raw/invalid: not from a parse */
    err = dsa_chat_buf_puts(b, obj ? "{" : "[");
    const cJSON *c;
    int first = 1;
    cJSON_ArrayForEach(c, v) {
        if (err)
            break;
        if (!first)
            err = dsa_chat_buf_puts(b, ", ");
        first = 0;
        if (!err && obj && !(err = dsa_pyjson_put_string(b, c->string, strlen(c->string))))
            err = dsa_chat_buf_puts(b, ": ");
        if (!err)
            err = dsa_pyjson_put(b, c);
    }
    if (!err)
        err = dsa_chat_buf_puts(b, obj ? "}" : "]");
    return err;
}
