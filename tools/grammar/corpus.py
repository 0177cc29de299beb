"""The structured-output corpus: schemas, regexes and choices, each with
valid documents.  Shared by oracle.py (golden masks from xgrammar) and the
generation check.  Every document is validated here (jsonschema / re)."""
import json

S = []  # (name, kind, text, [docs])


class Raw(str):
    """A document given as JSON text (its whitespace matters)."""


def schema(name, sch, *docs):
    S.append((name, "schema", json.dumps(sch), [d if isinstance(d, Raw) else json.dumps(d, ensure_ascii=False)
                                                for d in docs]))


def regex(name, rx, *docs):
    S.append((name, "regex", rx, list(docs)))


obj = lambda props, req=None, **kw: dict(type="object", properties=props,
                                         required=list(props) if req is None else req, **kw)
STR, INT, NUM, BOOL, NULL = ({"type": t} for t in ("string", "integer", "number", "boolean", "null"))

schema("str", STR, "hello world", "", "with \"quote\" and \\ and \u00e9\u4e2d\U0001F600")
schema("str_esc", STR, "tab\tnewline\nuni\u0001")
schema("int", INT, 0, -12, 123456789)
schema("num", NUM, 3.25, -1.5, 1e10, 7, Raw("1.5E-3"))
schema("bool", BOOL, True, False)
schema("null", NULL, None)
schema("enum_str", {"enum": ["red", "green", "blue"]}, "red", "blue")
schema("enum_mixed", {"enum": ["a", 1, None, True]}, "a", 1, None)
schema("const", {"const": "fixed"}, "fixed")
schema("obj1", obj({"name": STR}), {"name": "Ada"}, Raw('{ "name" : "x" }'), Raw('{\n\t"name":"y"\n}'))
schema("obj_person", obj({"name": STR, "age": INT, "email": STR}),
       {"name": "Ada Lovelace", "age": 36, "email": "ada@example.com"})
schema("obj_optional", obj({"a": STR, "b": INT, "c": BOOL}, ["a"]),
       {"a": "x"}, {"a": "x", "c": True}, {"a": "x", "b": 2, "c": False})
schema("obj_all_optional", obj({"a": INT, "b": INT}, []), {}, {"b": 1}, {"a": 1, "b": 2})
schema("obj_nested", obj({"user": obj({"id": INT, "tags": {"type": "array", "items": STR}}),
                          "ok": BOOL}),
       {"user": {"id": 7, "tags": ["a", "b"]}, "ok": True}, {"user": {"id": 1, "tags": []}, "ok": False})
schema("arr_int", {"type": "array", "items": INT}, [1, 2, 3], [], [-5])
schema("arr_min_max", {"type": "array", "items": NUM, "minItems": 1, "maxItems": 3}, [1.5], [1, 2, 3])
schema("arr_exact", {"type": "array", "items": BOOL, "minItems": 2, "maxItems": 2}, [True, False])
schema("arr_obj", {"type": "array", "items": obj({"x": INT, "y": INT})},
       [{"x": 1, "y": 2}, {"x": 3, "y": 4}])
schema("arr_arr", {"type": "array", "items": {"type": "array", "items": INT}}, [[1, 2], [], [3]])
schema("anyof", {"anyOf": [STR, INT]}, "s", 5)
schema("oneof_obj", {"oneOf": [obj({"kind": {"const": "a"}, "v": INT}), obj({"kind": {"const": "b"}, "w": STR})]},
       {"kind": "a", "v": 1}, {"kind": "b", "w": "z"})
schema("type_list", {"type": ["string", "null"]}, "x", None)
schema("nullable_prop", obj({"x": {"anyOf": [INT, NULL]}}), {"x": None}, {"x": 3})
schema("pattern", {"type": "string", "pattern": "^[a-z]+-[0-9]{2,4}$"}, "abc-12", "z-9999")
schema("pattern_prop", obj({"code": {"type": "string", "pattern": "[A-Z]{3}"}, "n": INT}), {"code": "ABC", "n": 1})
schema("minlen", {"type": "string", "minLength": 2, "maxLength": 5}, "ab", "abcde")
schema("minlen_only", {"type": "string", "minLength": 3}, "abc", "a long string here")
schema("date", {"type": "string", "format": "date"}, "2024-02-29")
schema("datetime", {"type": "string", "format": "date-time"}, "2024-02-29T12:30:59Z", "2024-01-01T00:00:00.123+02:00")
schema("time", {"type": "string", "format": "time"}, "23:59:60Z")
schema("uuid", {"type": "string", "format": "uuid"}, "123e4567-e89b-12d3-a456-426614174000")
FMT = lambda f: {"type": "string", "format": f}
schema("email", FMT("email"), "ada.lovelace+tag@example.co.uk", "x_y@a-b.org", "z@h")
schema("ipv4", FMT("ipv4"), "192.168.0.1", "255.255.255.255", "8.8.4.4")
schema("ipv6", FMT("ipv6"), "2001:db8::1", "::ffff:10.0.0.1", "fe80:0:0:0:0:0:0:1", "::")
schema("hostname", FMT("hostname"), "api.example.com", "localhost")
schema("uri", FMT("uri"), "https://user@example.com:8080/a/b?q=1&r=%20#frag", "urn:isbn:0451450523")
schema("uri_reference", FMT("uri-reference"), "../a/b?x=1", "//host/p#f")
schema("uri_template", FMT("uri-template"), "https://x.org/{user}/repos{?page,per_page}", "{+path:3}/x")
schema("duration", FMT("duration"), "P3Y6M4DT12H30M5S", "PT20M", "P2W")
# json-pointer and relative-json-pointer are not here: xgrammar's classes for them
# take raw '"', backslashes, controls and lone UTF-8 continuation bytes
# (docs/perf/structured.md); test_grammar_schema checks their language.
schema("formats_obj", obj({"ip": FMT("ipv4"), "host": FMT("hostname"), "mail": FMT("email"),
                           "site": FMT("uri")}),
       {"ip": "10.0.0.7", "host": "db1.internal", "mail": "ops@example.com", "site": "http://db1.internal:5432/"})
schema("prefix_items", {"type": "array", "prefixItems": [INT, {"enum": ["a", "b"]}, BOOL]}, [3, "b", False])
schema("prefix_items_more", {"type": "array", "prefixItems": [STR], "items": NUM, "minItems": 2, "maxItems": 4},
       ["x", 1.5, 2], ["y", -3])
schema("prefix_items_any", {"type": "array", "prefixItems": [NULL, True], "items": True}, [None, {"k": [1]}, "z"])
schema("any", {}, {"a": [1, 2.5, "x", None, True, {"b": {}}]}, [1, "two"], "str", 3)
schema("any_object", {"type": "object"}, {"k": "v", "n": [1, {"m": None}]}, {})
schema("any_array", {"type": "array"}, [1, "a", [True]], [])
schema("addl_true", obj({"a": NULL}, additionalProperties=True), {"a": None, "extra": 1})
schema("addl_schema", obj({"a": INT}, [], additionalProperties=INT), {"a": 1, "b": 2}, {"z": 3})
schema("addl_false", obj({"a": INT}, additionalProperties=False), {"a": 1})
schema("ref_defs", {"$defs": {"pt": obj({"x": NUM, "y": NUM})}, "type": "object",
                    "properties": {"a": {"$ref": "#/$defs/pt"}, "b": {"$ref": "#/$defs/pt"}}, "required": ["a", "b"]},
       {"a": {"x": 1, "y": 2}, "b": {"x": 0.5, "y": -1}})
schema("ref_recursive", {"$defs": {"n": obj({"v": INT, "next": {"anyOf": [{"$ref": "#/$defs/n"}, NULL]}})},
                         "$ref": "#/$defs/n"},
       {"v": 1, "next": {"v": 2, "next": None}})
schema("tree", {"$defs": {"t": obj({"name": STR, "children": {"type": "array", "items": {"$ref": "#/$defs/t"}}})},
                "$ref": "#/$defs/t"},
       {"name": "root", "children": [{"name": "a", "children": []}, {"name": "b", "children": [{"name": "c", "children": []}]}]})
schema("definitions", {"definitions": {"c": {"enum": ["x", "y"]}}, "type": "array", "items": {"$ref": "#/definitions/c"}}, ["x", "y", "x"])
schema("pydantic_like", {"title": "Weather", "type": "object", "properties": {
    "city": {"title": "City", "type": "string"}, "temp_c": {"title": "Temp C", "type": "number"},
    "conditions": {"title": "Conditions", "type": "array", "items": {"type": "string"}},
    "alert": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}},
    "required": ["city", "temp_c", "conditions", "alert"], "additionalProperties": False},
    {"city": "Paris", "temp_c": 21.5, "conditions": ["sunny", "windy"], "alert": None})
schema("event", obj({"title": STR, "date": {"type": "string", "format": "date"},
                     "attendees": {"type": "array", "items": obj({"name": STR, "role": {"enum": ["host", "guest"]}}), "minItems": 1}}),
       {"title": "Launch", "date": "2025-06-01", "attendees": [{"name": "Bo", "role": "host"}]})
schema("deep", obj({"a": obj({"b": obj({"c": obj({"d": obj({"e": INT})})})})}),
       {"a": {"b": {"c": {"d": {"e": 5}}}}})
schema("unicode_keys", obj({"名前": STR, "âge": INT}), {"名前": "太郎", "âge": 20})
schema("bool_or_num_arr", {"type": "array", "items": {"anyOf": [BOOL, NUM]}, "maxItems": 4}, [True, 1.5, False])
schema("strict_openai", {"type": "object", "properties": {"steps": {"type": "array", "items": obj({"explanation": STR, "output": STR})},
                                                          "final_answer": STR}, "required": ["steps", "final_answer"], "additionalProperties": False},
       {"steps": [{"explanation": "add", "output": "2"}], "final_answer": "2"})
schema("enum_unicode", {"enum": ["café", "naïve", "日本"]}, "café", "日本")
schema("allof1", {"allOf": [obj({"q": STR})]}, {"q": "a"})
schema("const_obj", {"const": {"a": [1, 2]}}, Raw('{"a":[1,2]}'))
regex("rx_digits", r"\d+", "12345", "0")
regex("rx_phone", r"\(\d{3}\) \d{3}-\d{4}", "(555) 123-4567")
regex("rx_email", r"[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}", "john.doe@example.com")
regex("rx_alt", r"(cat|dog|bird)s?", "cats", "bird")
regex("rx_negdot", r"a[^\n]c[^\n]*z", "abcz", "a\u00e9c\u4e2d xyz")
regex("rx_class_neg", r"[^aeiou\s]{3,6}", "xyzw", "bcd")
regex("rx_ip", r"((25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(25[0-5]|2[0-4]\d|1?\d?\d)", "192.168.1.255", "8.8.8.8")
regex("rx_word", r"\w+( \w+)*", "hello big world")
regex("rx_unicode", r"(αβγ|中文)+ ?", "αβγ", "中文αβγ ")
regex("rx_hex", r"0x[0-9A-Fa-f]{1,8}", "0xDEADbeef")
regex("rx_json_like", r'\{"k": "[a-z]*"\}', '{"k": "abc"}')
regex("rx_opt", r"colou?r(ed)?", "color", "coloured")
regex("rx_lazy", r"a+?b*?c", "aaabbc")
regex("rx_escape", r"\.\*\+\?\[\]\\/", ".*+?[]\\/")
def ebnf(name, text, *docs):
    S.append((name, "ebnf", text, list(docs)))


ebnf("ebnf_arith", """root ::= expr
expr ::= term ("+" term)*
term ::= factor ("*" factor)*
factor ::= [0-9]+ | "(" expr ")"
""", "1+2*3", "(4+5)*67")
ebnf("ebnf_list", """# a list of quoted words
root ::= "[" ws (item (ws "," ws item)*)? ws "]"
item ::= "\\"" [a-z]{1,8} "\\""
ws ::= [ \\t\\n]*
""", '["ab", "cde"]', "[]", '[ "x" ]')
ebnf("ebnf_unicode", """root ::= greet " " name "!"
greet ::= "héllo" | "こんにちは"
name ::= [A-Z] [^ !\\n]{0,6}
""", "héllo Ada!", "こんにちは Zoë!")
ebnf("ebnf_kv", """root ::= pair ("; " pair){0,2}
pair ::= key "=" value
key ::= [a-z_]+
value ::= [0-9]+ | "true" | "false"
""", "a=1", "x=true; y_z=42; q=false")
S.append(("choice", "choice", json.dumps(["yes", "no", "maybe", "n/a"]), ["yes", "maybe", "n/a"]))
S.append(("choice_unicode", "choice", json.dumps(["été", "hiver"]), ["été"]))
S.append(("json_object", "json_object", "", [json.dumps({"a": 1, "b": [True, None]}), '{ }']))


def check():
    import re
    import jsonschema
    for name, kind, text, docs in S:
        for d in docs:
            if kind == "schema":
                jsonschema.validate(json.loads(d), json.loads(text))
            elif kind == "regex":
                assert re.fullmatch(text, d), (name, d)
            elif kind == "ebnf":
                pass  # xgrammar accepting every token of the document is the check
            elif kind == "choice":
                assert d in json.loads(text)
            else:
                assert isinstance(json.loads(d), dict)
