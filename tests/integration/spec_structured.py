#!/usr/bin/env python3
"""Speculative decoding with a grammar (issue 17 with issue 16), the
official openai client against the real server on loopback, model
models/dsa-tiny-r1:

 - constrained requests (json_schema after the reasoning, json_schema,
   regex and choice from the first token on /v1/completions with the think
   block closed in the prompt, greedy and seeded sampled; a forced tool
   call and the json_schema after the reasoning, greedy) answered byte for byte the same without drafts and with
   num_speculative_tokens k = 1 and 3, and under mpirun (TP=2 x PP=2, k =
   2), every output valid;
 - the spec-decode counters after the requests whose grammar applies from
   the first token show drafts proposed and accepted: constrained output
   is drafted and verified under the grammar's masks (before, a request
   with a grammar got no drafts).

Usage: spec_structured.py BUILD_DIR SOURCE_DIR"""
import copy
import json
import os
import re
import shutil
import sys

import jsonschema

import spec_e2e
from spec_e2e import Server

SCHEMA = {"type": "object", "properties": {
    "answer": {"type": "string", "maxLength": 12},
    "n": {"type": "integer", "minimum": 0, "maximum": 999}},
    "required": ["answer", "n"], "additionalProperties": False}
REGEX = r"[0-9]{1,4}( apples| pears)?"
CHOICES = ["yes", "no", "maybe not"]
# the tool as the model was trained on it (tools/train/corpus.py; without
# its descriptions the shipped model ends its reasoning after one sentence,
# before "</think>", so no grammar applies), plus a maxLength for the grammar
sys.path.insert(0, os.path.join(spec_e2e.SRC, "tools", "train"))
import corpus  # noqa: E402

TOOLS = [copy.deepcopy(corpus.TOOL_WEATHER)]
TOOLS[0]["function"]["parameters"]["properties"]["city"]["maxLength"] = 10
HEAD = ("<\uff5cbegin\u2581of\u2581sentence\uff5c>You are a helpful assistant."
        "<\uff5cUser\uff5c>%s<\uff5cAssistant\uff5c><think>\n%s</think>")
COMPACT = {"disable_any_whitespace": True}
# held-out problems whose recorded greedy answer closes its reasoning (a
# question the model was not trained on may end before "</think>", and then
# no grammar ever applies)
with open(os.path.join(spec_e2e.SRC, "tests", "data", "trained", "sample_answers.json")) as f:
    QUESTIONS = [p["question"] for p in json.load(f)["problems"]
                 if p["split"] and p["reasoning"]][:4]


def chat(c, q, **kw):
    r = c.chat.completions.create(model="dsa-tiny-r1", max_tokens=400, messages=[
        {"role": "system", "content": spec_e2e.SYSTEM}, {"role": "user", "content": q}], **kw)
    return r.choices[0]


def first_token_requests(c, reasonings):
    """Completions whose grammar applies from the first generated token."""
    out = []
    for i, q in enumerate(QUESTIONS):
        prompt = HEAD % (q, reasonings[i])
        for kind, extra in (("json", {"guided_json": SCHEMA, "structured_outputs": COMPACT}),
                            ("regex", {"guided_regex": REGEX}),
                            ("choice", {"guided_choice": CHOICES})):
            for seed in (None, 7):
                kw = dict(temperature=0) if seed is None else dict(temperature=0.9, seed=seed,
                                                                   top_p=0.95)
                r = c.completions.create(model="dsa-tiny-r1", prompt=prompt, max_tokens=120,
                                         extra_body=extra, **kw)
                t = r.choices[0].text
                assert r.choices[0].finish_reason == "stop", (kind, t)
                if kind == "json":
                    jsonschema.validate(json.loads(t), SCHEMA)
                elif kind == "regex":
                    assert re.fullmatch(REGEX, t), t
                else:
                    assert t in CHOICES, t
                out.append((kind, seed, t))
    return out


def after_reasoning_requests(c):
    out = []
    rf = {"type": "json_schema", "json_schema": {"name": "a", "schema": SCHEMA, "strict": True}}
    # greedy only: a sampled reasoning may end the answer before "</think>"
    for q in QUESTIONS:
        ch = chat(c, q, response_format=rf, extra_body={"structured_outputs": COMPACT},
                  temperature=0)
        assert ch.finish_reason == "stop", ch.message
        jsonschema.validate(json.loads(ch.message.content), SCHEMA)
        out.append((ch.message.content, ch.message.model_extra.get("reasoning_content")))
    tc = {"type": "function", "function": {"name": "get_weather"}}
    for choice in ("required", tc):
        ch = chat(c, "What is the weather in Paris?", temperature=0, tools=TOOLS,
                  tool_choice=choice)
        assert ch.finish_reason == "tool_calls", ch.message
        calls = [(t.function.name, t.function.arguments) for t in ch.message.tool_calls]
        assert [n for n, _ in calls] == ["get_weather"], calls
        jsonschema.validate(json.loads(calls[0][1]), TOOLS[0]["function"]["parameters"])
        out.append(calls)
    return out


def run(server, reasonings):
    first = first_token_requests(server.client, reasonings)
    m = server.metrics()
    rest = after_reasoning_requests(server.client)
    return first, rest, m


def main():
    failures = 0
    base = Server()
    # the greedy reasoning of each question, closed in the prompts above
    reasonings = [chat(base.client, q, temperature=0).message.model_extra["reasoning_content"]
                  for q in QUESTIONS]
    want = run(base, reasonings)[:2]
    base.close()
    layouts = [(f"k={k}", k, None) for k in (1, 3)]
    if shutil.which("mpirun") and os.access(spec_e2e.WORKER, os.X_OK):
        layouts.append(("mpirun TP=2 x PP=2 k=2", 2, True))
    elif os.environ.get("CI") == "true":
        raise SystemExit("mpirun or dsa-worker missing under CI")
    else:
        print("spec_structured: no mpirun or dsa-worker: the TP=2 x PP=2 part is skipped")
    for name, k, mpi in layouts:
        spec = json.dumps({"method": "deepseek_mtp", "num_speculative_tokens": k})
        s = Server("--speculative-config", spec,
                   workers=["--speculative-config", spec] if mpi else None)
        first, rest, m = run(s, reasonings)
        s.close()
        for label, a, b in (("first-token", want[0], first), ("after reasoning", want[1], rest)):
            for i, (x, y) in enumerate(zip(a, b)):
                if x != y:
                    failures += 1
                    print(f"{name} {label} request {i}: differs\n  without: {x}\n  with:    {y}")
        drafts = m["vllm:spec_decode_num_drafts_total"]
        acc = m["vllm:spec_decode_num_accepted_tokens_total"]
        print(f"{name}: constrained from the first token: {drafts:.0f} drafts, "
              f"{m['vllm:spec_decode_num_draft_tokens_total']:.0f} draft tokens, "
              f"{acc:.0f} accepted")
        assert drafts > 0 and acc > 0, f"{name}: no drafts or none accepted under a grammar"
    if failures:
        print(f"{failures} constrained answers differ")
        return 1
    print("spec_structured: all constrained answers equal and valid with and without drafts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
