/* json_in.c - strict JSON entry for request bodies (see json_in.h).
 *
 * One pass over the body before cJSON sees it, tracking whether it is
 * inside a string: a raw byte below 0x20 inside a string, bytes that are
 * not UTF-8 anywhere, or a control character other than JSON's four
 * whitespace bytes outside strings is refused as json.loads refuses it
 * ("Invalid control character", a decode error); `\u0000` escapes are
 * rewritten to the one marker byte (0xFF, never in UTF-8) in a copy.  After cJSON, anything but
 * whitespace after the value is refused ("Extra data"). */
#include "head/json_in.h"

#include <stdlib.h>
#include <string.h>

#include "head/api.h"

static int is_hex0(const char *p)
{
    return p[0] == '0' && p[1] == '0' && p[2] == '0' && p[3] == '0';
}

static int is_json_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Length of the UTF-8 sequence at p (n bytes left), 0 when invalid.  As
 * Python decodes a body for json.loads: UTF-8 with 'surrogatepass', so
 * encoded surrogates (ED A0..BF xx) pass. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    size_t need;
    unsigned lo = 0x80, hi = 0xBF;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        need = 1;
    else if (c >= 0xE0 && c <= 0xEF)
        need = 2, lo = c == 0xE0 ? 0xA0 : 0x80;
    else if (c >= 0xF0 && c <= 0xF4)
        need = 3, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else
        return 0;
    if (n < need + 1 || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t k = 2; k <= need; k++)
        if (p[k] < 0x80 || p[k] > 0xBF)
            return 0;
    return need + 1;
}

/* Checks body; counts the `\u0000` escapes (escape-aware: `\\u0000` is a
 * backslash and text). */
static dsa_err scan(const char *body, size_t len, int *n_nul, struct dsa_api_error *e)
{
    int in_str = 0;
    *n_nul = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)body[i];
        if (c >= 0x80) {
            size_t k = utf8_len((const unsigned char *)body + i, len - i);
            if (!k)
                return dsa_api_fail(e, 400, NULL, "request body is not valid UTF-8 (byte "
                                    "0x%02X at offset %zu)", c, i);
            i += k - 1;
            continue;
        }
        if (in_str) {
            if (c < 0x20)
                return dsa_api_fail(e, 400, NULL, "request body is not valid JSON: invalid "
                                    "control character at offset %zu", i);
            if (c == '"') {
                in_str = 0;
            } else if (c == '\\' && i + 1 < len) {
                if (body[i + 1] == 'u' && i + 6 <= len && is_hex0(body + i + 2)) {
                    (*n_nul)++;
                    i += 5;
                } else {
                    i++;
                }
            }
        } else if (c == '"') {
            in_str = 1;
        } else if (c < 0x20 && !is_json_space(c)) {
            return dsa_api_fail(e, 400, NULL, "request body is not valid JSON: invalid "
                                "control character at offset %zu", i);
        }
    }
    return DSA_OK;
}

/* A copy of body with each `\u0000` escape replaced by the marker byte. */
static char *mark_nuls(const char *body, size_t len, size_t *n_out)
{
    char *out = malloc(len + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    int in_str = 0;
    for (size_t i = 0; i < len; i++) {
        char c = body[i];
        if (in_str && c == '\\' && i + 1 < len) {
            if (body[i + 1] == 'u' && i + 6 <= len && is_hex0(body + i + 2)) {
                out[o++] = DSA_JSON_NUL;
                i += 5;
            } else {
                out[o++] = c;
                out[o++] = body[++i];
            }
            continue;
        }
        if (c == '"')
            in_str = !in_str;
        out[o++] = c;
    }
    out[o] = 0;
    *n_out = o;
    return out;
}

dsa_err dsa_json_in_parse(const char *body, size_t len, cJSON **root, int *n_nul,
                          struct dsa_api_error *e)
{
    *root = NULL;
    dsa_err err = scan(body, len, n_nul, e);
    if (err)
        return err;
    char *marked = NULL;
    if (*n_nul) {
        if (!(marked = mark_nuls(body, len, &len)))
            return dsa_api_fail(e, 500, NULL, "out of memory");
        body = marked;
    }
    const char *end = NULL;
    cJSON *v = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (!v) {
        free(marked);
        return dsa_api_fail(e, 400, NULL, "request body is not valid JSON");
    }
    for (const char *p = end; p < body + len; p++)
        if (!is_json_space((unsigned char)*p)) {
            size_t off = (size_t)(p - body);
            cJSON_Delete(v);
            free(marked);
            return dsa_api_fail(e, 400, NULL, "request body is not valid JSON: extra data "
                                "after the value at offset %zu", off);
        }
    free(marked);
    *root = v;
    return DSA_OK;
}

size_t dsa_json_nul_restore(char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] == DSA_JSON_NUL) {
            s[i] = 0;
            k++;
        }
    return k;
}
