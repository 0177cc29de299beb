/* pyjson.h - JSON text as Python's json.dumps(x, ensure_ascii=False)
 * writes it, the form chat templates see through transformers' `tojson`
 * filter: ", " between items, ": " after keys, keys in input order,
 * non-ASCII characters as they are, control characters as \n, \t, ... or
 * \u00XX, floats as Python's repr.
 *
 * One difference cannot be helped: cJSON keeps every number as a double,
 * so an integral number is written as an integer ("1", where Python would
 * keep a float parsed from "1.0" as "1.0"). */
#ifndef DSA_COMMON_PYJSON_H
#define DSA_COMMON_PYJSON_H

#include <cjson/cJSON.h>

#include "common/chat.h"
#include "common/error.h"

/* Python's repr of a finite double ("0.025", "2.0", "1e-05", "1e+16"):
 * the shortest digits that read back to v.  "inf"/"nan" otherwise. */
void dsa_pyjson_float(char out[40], double v);

/* Appends json.dumps(v, ensure_ascii=False).  DSA_NOMEM only. */
dsa_err dsa_pyjson_put(dsa_chat_buf *b, const cJSON *v);
/* Appends a JSON string literal of s[0..n). */
dsa_err dsa_pyjson_put_string(dsa_chat_buf *b, const char *s, size_t n);

#endif
