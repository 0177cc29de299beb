/* gram_format.c - the JSON Schema string formats xgrammar 0.1.25 knows
 * beyond date, time, date-time and uuid (gram_schema.c builds those):
 * email, ipv4, ipv6, hostname, uri, uri-reference, uri-template, duration,
 * json-pointer and relative-json-pointer.  Each is a regular expression
 * over the string's JSON text (between the quotes), compiled by
 * gram_regex.c, and describes the same language as xgrammar's rule for it
 * (RFC 5321/5322, 2673, 3986, 1123, 6570, 3339 appendix A, 6901), except
 * where xgrammar's would let a document stop being JSON: an email's quoted
 * local part takes only JSON escapes after a backslash, and a JSON
 * pointer's characters exclude controls, '"' and '\' (written raw they end
 * or break the string).  docs/perf/structured.md lists the differences. */
#include <string.h>

#include "common/gram_internal.h"

#define HEX "[0-9a-fA-F]"
#define PCT "%" HEX HEX
/* unreserved / sub-delims plus what each URI part adds */
#define PCHAR "([A-Za-z0-9_.~!$&'()*+,;=:@-]|" PCT ")"
#define QF "([A-Za-z0-9_.~!$&'()*+,;=:@/?-]|" PCT ")*"
#define USERINFO "([A-Za-z0-9_.~!$&'()*+,;=:-]|" PCT ")*"
#define HOST "([A-Za-z0-9_.~!$&'()*+,;=-]|" PCT ")*"
#define AUTHORITY "(" USERINFO "@)?" HOST "(:[0-9]*)?"
#define QUERY_FRAGMENT "(\\?" QF ")?(#" QF ")?"
#define PATH_ABEMPTY "(/" PCHAR "*)*"

/* IPv4 dotted quad as the two xgrammar rules spell a byte (ipv4 itself,
 * and the tail of an IPv4-mapped IPv6 address) */
#define DECBYTE "(25[0-5]|2[0-4][0-9]|[01]?[0-9]?[0-9])"
#define V4 "((25[0-5]|(2[0-4]|1?[0-9])?[0-9])\\.){3}(25[0-5]|(2[0-4]|1?[0-9])?[0-9])"
#define H4 HEX "{1,4}"

#define DUR_TIME "T([0-9]+S|[0-9]+M([0-9]+S)?|[0-9]+H([0-9]+M([0-9]+S)?)?)"
#define DUR_DATE "([0-9]+D|[0-9]+M([0-9]+D)?|[0-9]+Y([0-9]+M([0-9]+D)?)?)"

/* a reference token of a JSON pointer: '~' only as ~0 / ~1 */
#define PTR_TOKENS "(/([^\\x00-\\x1f\"\\\\/~]|~[01])*)*"

#define ATEXT "[A-Za-z0-9_!#$%&'*+/=?^`{|}~-]"
#define VARCHAR "([A-Za-z0-9_]|" PCT ")"
#define VARSPEC VARCHAR "(\\.?" VARCHAR ")*(:[1-9][0-9]?[0-9]?[0-9]?|\\*)?"

static const struct {
    const char *name;
    const char *re;
} formats[] = {
    {"email",
     /* dot-atom or a quoted string (written \"...\" inside the JSON
      * string), then a domain whose labels after the first have two
      * characters or more */
     "(" ATEXT "+(\\." ATEXT "+)*"
     "|\\\\\"([\\x20\\x21\\x23-\\x5b\\x5d-\\x7e]|\\\\[\"\\\\/bfnrt])*\\\\\")"
     "@[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\\.[A-Za-z0-9][-A-Za-z0-9]*[A-Za-z0-9])*"},
    {"ipv4", "(" DECBYTE "\\.){3}" DECBYTE},
    {"ipv6",
     "(" H4 ":){7}" H4
     "|(" H4 ":){1,7}:"
     "|(" H4 ":){1,6}:" H4
     "|(" H4 ":){1,5}(:" H4 "){1,2}"
     "|(" H4 ":){1,4}(:" H4 "){1,3}"
     "|(" H4 ":){1,3}(:" H4 "){1,4}"
     "|(" H4 ":){1,2}(:" H4 "){1,5}"
     "|" H4 ":(:" H4 "){1,6}"
     "|:((:" H4 "){1,7}|:)"
     "|::(ffff(:0{1,4})?:)?" V4
     "|(" H4 ":){1,4}:" V4},
    {"hostname", "[a-z0-9]([a-z0-9-]*[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*"},
    {"uri",
     "[a-zA-Z][a-zA-Z+.-]*:(//" AUTHORITY PATH_ABEMPTY "|/?(" PCHAR "+(/" PCHAR "*)*)?)"
     QUERY_FRAGMENT},
    {"uri-reference",
     "(//" AUTHORITY PATH_ABEMPTY "|/(" PCHAR "+(/" PCHAR "*)*)?"
     "|([A-Za-z0-9_.~!$&'()*+,;=@-]|" PCT ")+(/" PCHAR "*)*)?" QUERY_FRAGMENT},
    {"uri-template",
     "([\\x21\\x23\\x24\\x26\\x28-\\x3b\\x3d\\x3f-\\x5b\\x5d\\x5f\\x61-\\x7a\\x7e]|" PCT
     "|\\{[+#./;?&=,!@|]?" VARSPEC "(," VARSPEC ")*\\})*"},
    {"duration", "P(" DUR_DATE "(" DUR_TIME ")?|" DUR_TIME "|[0-9]+W)"},
    {"json-pointer", PTR_TOKENS},
    {"relative-json-pointer", "(0|[1-9][0-9]*)(#|" PTR_TOKENS ")"},
};

dsa_err gram_format(dsa_gram *g, gx_arena *a, const char *name, gx **out)
{
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++)
        if (!strcmp(formats[i].name, name))
            return gram_from_regex(g, a, formats[i].re, strlen(formats[i].re), out);
    return dsa_fail(DSA_UNSUPPORTED, "string format '%s' is not supported (date, time, "
                    "date-time, uuid, email, ipv4, ipv6, hostname, uri, uri-reference, "
                    "uri-template, duration, json-pointer, relative-json-pointer are)", name);
}
