/* json_in.h - a request body's JSON read as vLLM reads it (Python's
 * json.loads, strict), with cJSON underneath.
 *
 * cJSON is laxer than json.loads: it takes raw control characters inside
 * strings and ignores bytes after the value, which vLLM answers with 400;
 * and its strings are NUL-terminated, so a `\u0000` escape would cut the
 * string short.  dsa_json_in_parse refuses the first two (400) and decodes
 * every `\u0000` to the marker byte DSA_JSON_NUL (0xFF, which never occurs
 * in UTF-8; a body that is not UTF-8 is refused, as by vLLM), so strings
 * keep their full length; whoever needs the text as data (the tokenizer)
 * turns the markers back into NUL bytes with dsa_json_nul_restore. */
#ifndef DSA_HEAD_JSON_IN_H
#define DSA_HEAD_JSON_IN_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "common/error.h"

struct dsa_api_error;

#define DSA_JSON_NUL ((char)0xFF)

/* Parses body[0..len).  On success *root is the parsed value (caller
 * deletes it) and *n_nul the number of `\u0000` escapes it had.  DSA_INVAL
 * with e filled (400) when the body is not JSON as json.loads reads it;
 * DSA_NOMEM (e: 500). */
dsa_err dsa_json_in_parse(const char *body, size_t len, cJSON **root, int *n_nul,
                          struct dsa_api_error *e);

/* Turns the DSA_JSON_NUL markers of s[0..n) back into NUL bytes (in
 * place); returns how many. */
size_t dsa_json_nul_restore(char *s, size_t n);

#endif
