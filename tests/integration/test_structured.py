"""End-to-end tests of structured output (issue 16) with the official openai
client against dsa-head on loopback: response_format json_schema (strict)
and json_object, the SDK's parse() with a Pydantic model, vLLM's
guided_regex / guided_choice / structured_outputs, streamed and not; 1,000
sampled generations from the tiny model that must all parse and validate
(jsonschema); bad schemas and regexes answered with a 400 naming the field
within a bounded time, the server unaffected.  Run by
tests/integration/run_head_tests.sh (meson test 'head_structured')."""
import concurrent.futures
import copy
import json
import os
import re
import sys
import time
import unittest
from enum import Enum
from typing import List, Optional

import jsonschema
import openai
import pydantic

from test_head import Server, SCALE

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools",
                                "train"))
import corpus  # noqa: E402

# Schemas whose documents are short under a random model: strings bounded
# (enum, maxLength, pattern, format), integers bounded, arrays bounded.
SHORT = {"type": "string", "maxLength": 6}
SCHEMAS = [
    {"type": "object", "properties": {"name": SHORT, "age": {"type": "integer", "minimum": 0,
                                                             "maximum": 130}},
     "required": ["name", "age"], "additionalProperties": False},
    {"type": "object", "properties": {
        "color": {"enum": ["red", "green", "blue"]}, "ok": {"type": "boolean"},
        "note": {"anyOf": [SHORT, {"type": "null"}]}}, "required": ["color", "ok", "note"]},
    {"type": "array", "items": {"type": "integer", "minimum": -50, "maximum": 50},
     "minItems": 1, "maxItems": 4},
    {"type": "object", "properties": {
        "id": {"type": "string", "format": "uuid"},
        "day": {"type": "string", "format": "date"},
        "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 3}},
     "required": ["id", "day"]},
    {"$defs": {"node": {"type": "object", "properties": {
        "v": {"type": "integer", "minimum": 0, "maximum": 9},
        "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 1}},
        "required": ["v", "kids"]}}, "$ref": "#/$defs/node"},
    {"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{2}$"},
                                      "n": {"type": "integer", "minimum": 1, "maximum": 5}},
     "required": ["code"]},
    # number bounds, formats and prefixItems (xgrammar's features beyond the above)
    {"type": "object", "properties": {
        "t": {"type": "number", "minimum": -1.5, "exclusiveMaximum": 2.25},
        "ip": {"type": "string", "format": "ipv4"},
        "pair": {"type": "array", "prefixItems": [{"type": "integer", "minimum": 0, "maximum": 9},
                                                  {"enum": ["x", "y"]}]}},
     "required": ["t", "ip", "pair"]},
]


class Color(str, Enum):
    RED = "red"
    BLUE = "blue"


class Pet(pydantic.BaseModel):
    kind: Color
    legs: int = pydantic.Field(ge=0, le=8)
    name: str = pydantic.Field(max_length=5)
    tags: List[Color] = pydantic.Field(max_length=2)
    owner: Optional[bool]


class Structured(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server("--served-model-name", "tiny", "--max-num-seqs", "64")
        cls.c = cls.srv.client

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def chat(self, **kw):
        return self.c.chat.completions.create(model="tiny", messages=[
            {"role": "user", "content": "Answer in JSON."}], **kw)

    def test_json_schema_strict_chat_streamed_and_not(self):
        schema = SCHEMAS[0]
        rf = {"type": "json_schema", "json_schema": {"name": "person", "schema": schema,
                                                     "strict": True}}
        for seed in range(4):
            r = self.chat(response_format=rf, max_tokens=300, seed=seed,
                          extra_body={"structured_outputs": {"disable_any_whitespace": True}})
            self.assertEqual(r.choices[0].finish_reason, "stop", r.choices[0].message.content)
            jsonschema.validate(json.loads(r.choices[0].message.content), schema)
            parts, finish = [], None
            for ch in self.chat(response_format=rf, max_tokens=300, seed=seed, stream=True,
                                extra_body={"structured_outputs":
                                            {"disable_any_whitespace": True}}):
                if ch.choices and ch.choices[0].delta.content:
                    parts.append(ch.choices[0].delta.content)
                if ch.choices and ch.choices[0].finish_reason:
                    finish = ch.choices[0].finish_reason
            # the same seed samples the same tokens streamed or not
            self.assertEqual("".join(parts), r.choices[0].message.content)
            self.assertEqual(finish, "stop")

    def test_parse_with_pydantic(self):
        for seed in range(3):
            r = self.c.beta.chat.completions.parse(
                model="tiny", messages=[{"role": "user", "content": "A pet."}],
                response_format=Pet, max_tokens=400, seed=seed,
                extra_body={"structured_outputs": {"disable_any_whitespace": True}})
            msg = r.choices[0].message
            self.assertEqual(r.choices[0].finish_reason, "stop", msg.content)
            self.assertIsInstance(msg.parsed, Pet)
            self.assertLessEqual(len(msg.parsed.name), 5)

    def test_regex_choice_and_json_object(self):
        rx = r"(cat|dog)s? [0-9]{2,3}(\.[0-9])?"
        for seed in range(5):
            r = self.c.completions.create(model="tiny", prompt="pet:", max_tokens=30, seed=seed,
                                          extra_body={"guided_regex": rx})
            self.assertEqual(r.choices[0].finish_reason, "stop")
            self.assertRegex(r.choices[0].text, "^" + rx + "$")
        r = self.c.completions.create(model="tiny", prompt="sum:", max_tokens=40, seed=2,
                                      extra_body={"guided_grammar":
                                                  'root ::= num ("+" num){1,3}\n'
                                                  'num ::= [1-9] [0-9]?'})
        self.assertEqual(r.choices[0].finish_reason, "stop")
        self.assertRegex(r.choices[0].text, r"^[1-9][0-9]?(\+[1-9][0-9]?){1,3}$")
        seen = set()
        for seed in range(12):
            r = self.c.completions.create(model="tiny", prompt="?", max_tokens=10, seed=seed,
                                          temperature=2.0,
                                          extra_body={"structured_outputs":
                                                      {"choice": ["yes", "no", "maybe"]}})
            seen.add(r.choices[0].text)
        self.assertLessEqual(seen, {"yes", "no", "maybe"})
        self.assertGreater(len(seen), 1)
        # JSON mode: an object; a random model rarely closes its strings, so
        # the budget may cut it ("length"), and then what came is a prefix
        r = self.chat(response_format={"type": "json_object"}, max_tokens=20, seed=1)
        text = r.choices[0].message.content
        self.assertTrue(text.startswith("{"), text)
        if r.choices[0].finish_reason == "stop":
            self.assertIsInstance(json.loads(text), dict)
        else:
            self.assertEqual(r.choices[0].finish_reason, "length")
            self.assertEqual(r.usage.completion_tokens, 20)

    def test_length_cuts_a_constrained_output(self):
        r = self.chat(response_format={"type": "json_schema", "json_schema": {
            "name": "x", "schema": {"type": "array", "items": {"type": "integer"},
                                    "minItems": 50}}}, max_tokens=5)
        self.assertEqual(r.choices[0].finish_reason, "length")
        self.assertTrue(r.choices[0].message.content.startswith("["))

    def test_thousand_generations_validate(self):
        """1,000 sampled generations over the schemas, each parsed and
        validated; any failure is a grammar bug."""
        n_per, jobs = 16, []
        for i, schema in enumerate(SCHEMAS):
            for k in range(1000 // (n_per * len(SCHEMAS)) + 1):
                jobs.append((schema, i * 1000 + k))
        done, failures = 0, []

        def run(job):
            schema, seed = job
            r = self.c.completions.create(
                model="tiny", prompt="json:", n=n_per, max_tokens=400, seed=seed,
                temperature=1.0, extra_body={"guided_json": schema, "structured_outputs":
                                             {"disable_any_whitespace": True}})
            out = []
            for ch in r.choices:
                try:
                    self.assertEqual(ch.finish_reason, "stop")
                    jsonschema.validate(json.loads(ch.text), schema)
                    out.append(None)
                except Exception as e:  # collected, reported below
                    out.append("%s: %r" % (e, ch.text[:200]))
            return out

        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            for res in ex.map(run, jobs):
                done += len(res)
                failures += [f for f in res if f]
        self.assertGreaterEqual(done, 1000)
        self.assertEqual(failures, [], "%d of %d failed" % (len(failures), done))

    TOOLS = [
        {"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object", "properties": {"city": {"enum": ["Paris", "Oslo"]},
                                             "days": {"type": "integer", "minimum": 1,
                                                      "maximum": 7}},
            "required": ["city", "days"]}}},
        {"type": "function", "function": {"name": "set_alarm", "parameters": {
            "type": "object", "properties": {"hour": {"type": "integer", "minimum": 0,
                                                      "maximum": 23},
                                             "label": {"type": "string", "maxLength": 4}},
            "required": ["hour"], "additionalProperties": False}}},
    ]

    def check_calls(self, calls, names):
        self.assertGreaterEqual(len(calls), 1)
        for c in calls:
            self.assertIn(c.function.name, names)
            schema = next(t["function"]["parameters"] for t in self.TOOLS
                          if t["function"]["name"] == c.function.name)
            jsonschema.validate(json.loads(c.function.arguments), schema)

    def test_forced_tool_calls(self):
        """tool_choice "required" and a named function: the output is a call
        (DeepSeek's tool-call tokens under a grammar) whose arguments follow
        the tool's schema, streamed and not; "auto" stays free."""
        msgs = [{"role": "user", "content": "Weather in Oslo?"}]
        named = {"type": "function", "function": {"name": "set_alarm"}}
        for seed in range(4):
            for choice, names in (("required", {"get_weather", "set_alarm"}),
                                  (named, {"set_alarm"})):
                kw = dict(model="tiny", messages=msgs, tools=self.TOOLS, tool_choice=choice,
                          max_tokens=300, seed=seed, parallel_tool_calls=False,
                          extra_body={"structured_outputs": {"disable_any_whitespace": True}})
                r = self.c.chat.completions.create(**kw)
                self.check_calls(r.choices[0].message.tool_calls, names)
                self.assertEqual(len(r.choices[0].message.tool_calls), 1)
                calls = {}
                for ch in self.c.chat.completions.create(stream=True, **kw):
                    for d in (ch.choices[0].delta.tool_calls or []) if ch.choices else []:
                        e = calls.setdefault(d.index, {"name": "", "args": ""})
                        e["name"] += d.function.name or ""
                        e["args"] += d.function.arguments or ""
                self.assertEqual([(c["name"], c["args"]) for c in calls.values()],
                                 [(c.function.name, c.function.arguments)
                                  for c in r.choices[0].message.tool_calls])
        # a forced call cannot be combined with another constraint
        with self.assertRaises(openai.BadRequestError) as cm:
            self.c.chat.completions.create(model="tiny", messages=msgs, tools=self.TOOLS,
                                           tool_choice="required", max_tokens=5,
                                           response_format={"type": "json_object"})
        self.assertEqual(cm.exception.body["param"], "tool_choice")
        # a tool whose parameters the engine cannot take: 400 naming tool_choice
        bad = [{"type": "function", "function": {"name": "f", "parameters": {
            "type": "object", "properties": {"x": {"not": {}}}}}}]
        with self.assertRaises(openai.BadRequestError) as cm:
            self.c.chat.completions.create(model="tiny", messages=msgs, tools=bad,
                                           tool_choice="required", max_tokens=5)
        self.assertIn("'not'", cm.exception.body["message"])

    def refused(self, param, t_max=None, **extra):
        t0 = time.time()
        with self.assertRaises(openai.BadRequestError) as cm:
            self.c.completions.create(model="tiny", prompt="x", max_tokens=4, extra_body=extra)
        dt = time.time() - t0
        self.assertEqual(cm.exception.body["param"], param, cm.exception.body)
        if t_max:
            self.assertLess(dt, t_max * SCALE, "took %.1fs" % dt)
        return cm.exception.body["message"]

    def test_bad_input_is_a_400_in_bounded_time(self):
        self.assertIn("not valid JSON", self.refused("guided_json", guided_json="{bad"))
        self.assertIn("'not'", self.refused("guided_json", guided_json={"not": {"type": "string"}}))
        self.assertIn("format", self.refused("guided_json",
                                              guided_json={"type": "string", "format": "ipv9"}))
        self.refused("guided_json", guided_json={"$ref": "#/$defs/none"})
        self.refused("guided_json", guided_json={"type": "object", "required": ["x"]})
        self.assertIn("regex", self.refused("guided_regex", guided_regex="(ab"))
        self.refused("guided_regex", guided_regex=r"(a)\1")
        self.refused("guided_regex", guided_regex="(?=a)b")
        self.refused("guided_regex", guided_regex="a{100000}")
        # deep nesting: refused, not a stack overflow
        deep = {"type": "integer"}
        for _ in range(300):  # cJSON itself stops at 1000 levels
            deep = {"type": "array", "items": deep}
        self.assertIn("deeper", self.refused("guided_json", t_max=10, guided_json=deep))
        deep_rx = "(" * 5000 + "a" + ")" * 5000
        self.refused("guided_regex", t_max=10, guided_regex=deep_rx)
        # a 1 MB schema: answered (compiled or refused) within a bound
        props = {"p%05d_%s" % (i, "x" * 20): {"type": "integer"} for i in range(25000)}
        big = {"type": "object", "properties": props, "required": []}
        self.assertGreater(len(json.dumps(big)), 1 << 20)
        t0 = time.time()
        try:
            self.c.completions.create(model="tiny", prompt="x", max_tokens=2,
                                      extra_body={"guided_json": big})
        except openai.BadRequestError as e:
            self.assertEqual(e.body["param"], "guided_json")
        self.assertLess(time.time() - t0, 60 * SCALE)
        # "catastrophic" backtracking patterns are plain automata here
        r = self.c.completions.create(model="tiny", prompt="x", max_tokens=8, seed=3,
                                      extra_body={"guided_regex": "(a+)+b"})
        self.assertRegex(r.choices[0].text, "^a*b?$")
        # the server is unaffected
        self.assertEqual(self.srv.health(), 200)
        r = self.c.completions.create(model="tiny", prompt="x", max_tokens=3)
        self.assertEqual(len(r.choices), 1)


R1_MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models",
                        "dsa-tiny-r1")
R1_SCHEMA = {"type": "object", "properties": {
    "answer": {"type": "string", "maxLength": 12},
    "n": {"type": "integer", "minimum": 0, "maximum": 999}},
    "required": ["answer", "n"], "additionalProperties": False}


class ReasoningThenStructured(unittest.TestCase):
    """The trained R1-style model (models/dsa-tiny-r1): as vLLM with a
    reasoning parser, the grammar applies only after "</think>", so the
    reasoning is free text and the content follows the schema."""

    @classmethod
    def setUpClass(cls):
        cls.srv = Server("--served-model-name", "r1", "--max-model-len", "1024",
                         model=R1_MODEL)
        cls.c = cls.srv.client
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data",
                               "trained", "sample_answers.json")) as f:
            probs = json.load(f)["problems"]
        # problems whose recorded greedy answer thinks first
        cls.questions = [p["question"] for p in probs if p["split"] and p["reasoning"]][:6]

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def ask(self, q, **kw):
        return self.c.chat.completions.create(
            model="r1", temperature=0, max_tokens=600, messages=[
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": q}], **kw)

    def test_reasoning_free_then_content_json(self):
        rf = {"type": "json_schema", "json_schema": {"name": "a", "schema": R1_SCHEMA,
                                                     "strict": True}}
        compact = {"structured_outputs": {"disable_any_whitespace": True}}
        self.assertGreaterEqual(len(self.questions), 6)
        for q in self.questions:
            free = self.ask(q).choices[0].message
            r = self.ask(q, response_format=rf, extra_body=compact)
            m = r.choices[0].message
            self.assertEqual(r.choices[0].finish_reason, "stop", (m.content, m.model_extra))
            reasoning = m.model_extra.get("reasoning_content")
            # greedy: the reasoning is the unconstrained model's, token for
            # token (no mask before "</think>"), and it is not JSON
            self.assertTrue(reasoning)
            self.assertEqual(reasoning, free.model_extra.get("reasoning_content"))
            self.assertNotEqual(reasoning[:1], "{")
            jsonschema.validate(json.loads(m.content), R1_SCHEMA)
            # streamed: the same split, the same text
            parts = {"reasoning_content": [], "content": []}
            finish = None
            for ch in self.ask(q, response_format=rf, extra_body=compact, stream=True):
                if not ch.choices:
                    continue
                d = ch.choices[0].delta
                parts["content"].append(d.content or "")
                parts["reasoning_content"].append(
                    (d.model_extra or {}).get("reasoning_content") or "")
                finish = ch.choices[0].finish_reason or finish
            self.assertEqual("".join(parts["reasoning_content"]), reasoning)
            self.assertEqual("".join(parts["content"]), m.content)
            self.assertEqual(finish, "stop")

    def test_forced_tool_call_after_reasoning(self):
        # the tool as the model was trained on it (tools/train/corpus.py;
        # without its descriptions the model ends its reasoning early, before
        # "</think>", and no grammar applies), plus a maxLength for the grammar
        tools = [copy.deepcopy(corpus.TOOL_WEATHER)]
        tools[0]["function"]["parameters"]["properties"]["city"]["maxLength"] = 10
        for tc in ("required", {"type": "function", "function": {"name": "get_weather"}}):
            r = self.ask("What is the weather in Paris?", tools=tools, tool_choice=tc)
            m = r.choices[0].message
            self.assertEqual(r.choices[0].finish_reason, "tool_calls", m)
            self.assertTrue(m.model_extra.get("reasoning_content"))
            self.assertEqual([c.function.name for c in m.tool_calls], ["get_weather"])
            jsonschema.validate(json.loads(m.tool_calls[0].function.arguments),
                                tools[0]["function"]["parameters"])

    def test_completions_grammar_after_think_end(self):
        """/v1/completions: the grammar waits for "</think>" unless the
        prompt's last think token already closed the block."""
        head = ("<\uff5cbegin\u2581of\u2581sentence\uff5c>You are a helpful assistant."
                "<\uff5cUser\uff5c>%s<\uff5cAssistant\uff5c><think>\n")
        extra = {"guided_json": R1_SCHEMA,
                 "structured_outputs": {"disable_any_whitespace": True}}
        for q in self.questions[:3]:
            r = self.c.completions.create(model="r1", prompt=head % q, max_tokens=600,
                                          temperature=0, extra_body=extra)
            text = r.choices[0].text
            self.assertEqual(r.choices[0].finish_reason, "stop", text)
            reasoning, sep, content = text.partition("</think>")
            self.assertEqual(sep, "</think>", text)
            self.assertTrue(reasoning.strip())
            jsonschema.validate(json.loads(content), R1_SCHEMA)
            # the think block closed in the prompt: JSON from the first token
            r = self.c.completions.create(model="r1", prompt=head % q + reasoning + "</think>",
                                          max_tokens=200, temperature=0, extra_body=extra)
            self.assertEqual(r.choices[0].finish_reason, "stop", r.choices[0].text)
            jsonschema.validate(json.loads(r.choices[0].text), R1_SCHEMA)


if __name__ == "__main__":
    unittest.main(verbosity=2)
