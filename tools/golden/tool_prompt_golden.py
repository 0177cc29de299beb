#!/usr/bin/env python3
"""tool_prompt_golden.py - golden prompts for chats with tool definitions.

The DeepSeek-V3/R1 chat templates do not show `tools` to the model; vLLM
users serve them with vLLM's tool chat template
examples/tool_chat_template_deepseekv3.jinja, and the C renderer
(common/chat.c, dsa_chat_render_tools) reproduces what that template
renders.  This script renders OpenAI-style conversations with tools through
the real template with transformers' renderer (render_jinja_template: the
sandboxed Jinja environment with trim_blocks and lstrip_blocks and the
`tojson` filter apply_chat_template uses) and writes
tests/data/chat/tools_conversations.json:

  {"template_sha256": ..., "bos_token": ..., "conversations": [
     {"name": ..., "messages": [...], "tools": [...],
      "expected": {"false": str, "true": str}}]}   (add_generation_prompt)

The template is not part of this repository.  Get it from the vLLM
repository (github.com/vllm-project/vllm, file
examples/tool_chat_template_deepseekv3.jinja; the golden data was made from
the version at commit 7531ada7db299214b688d5ea9a316572863edccf, 4,237
bytes, sha256 recorded in the output) and pass its path with --template.
Nothing is fetched by this script or by the tests.

Before rendering, the inputs are put in the shape vLLM hands the template
(vllm/entrypoints/chat_utils.py and serving_chat.py):
  - messages as tools/golden/chat_golden.py normalise() does (text parts
    joined with "\\n"; tool calls without "type" are "function"; an
    assistant tool-call turn with "" content has content None), then each
    history call's arguments string parsed into an object (json.loads; ""
    becomes {}), as vLLM's _postprocess_messages does;
  - tools as ChatCompletionToolsParam(...).model_dump(): {"type", "function":
    {"name", "description", "parameters", other fields}, other fields},
    absent description/parameters as None.

Usage: python3 tools/golden/tool_prompt_golden.py --template PATH [--out PATH]
Needs: pip install transformers jinja2.
"""
import argparse
import copy
import hashlib
import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
from chat_golden import normalise, tc, S, U, A, T, ATC  # noqa: E402

BOS = "<｜begin▁of▁sentence｜>"


def vllm_messages(messages):
    """normalise() plus vLLM's json.loads of history call arguments."""
    out = normalise(messages)
    for m in out:
        for call in m.get("tool_calls") or []:
            a = call["function"]["arguments"]
            call["function"]["arguments"] = json.loads(a) if a else {}
    return out


def vllm_tool(tool):
    """ChatCompletionToolsParam(**tool).model_dump()."""
    fn = tool["function"]
    dfn = {"name": fn["name"], "description": fn.get("description"),
           "parameters": fn.get("parameters")}
    for k, v in fn.items():
        if k not in dfn:
            dfn[k] = v
    d = {"type": "function", "function": dfn}
    for k, v in tool.items():
        if k not in ("type", "function"):
            d[k] = v
    return d


def render(template, messages, tools, add_generation_prompt):
    from transformers.utils.chat_template_utils import render_jinja_template
    out, _ = render_jinja_template(
        conversations=[messages], tools=tools, chat_template=template,
        add_generation_prompt=add_generation_prompt, bos_token=BOS)
    return out[0]


def fn(name, desc=None, params=None, **extra):
    f = {"name": name}
    if desc is not None:
        f["description"] = desc
    if params is not None:
        f["parameters"] = params
    f.update(extra)
    return {"type": "function", "function": f}


WEATHER = fn("get_weather", "Current weather in a city.",
             {"type": "object",
              "properties": {"city": {"type": "string", "description": "City name"},
                             "unit": {"type": "string", "enum": ["c", "f"]}},
              "required": ["city"]})
TIME = fn("get_time")
SEARCH = fn("search", "Búsqueda — web «search» with \"quotes\", \\ and\nnewlines\t🙂",
            {"type": "object",
             "properties": {"q": {"type": "string"},
                            "n": {"type": "integer", "minimum": 1, "maximum": 20,
                                  "default": 5},
                            "score": {"type": "number", "minimum": 0.25,
                                      "maximum": 1e-05, "default": 2.5e+20},
                            "safe": {"type": "boolean", "default": False},
                            "tags": {"type": "array", "items": {"type": "string"},
                                     "default": []},
                            "opts": {"type": "object", "default": {}},
                            "nothing": {"default": None}}},
            strict=True)
EXTRA = {"type": "function", "function": {"name": "extra", "parameters": {}},
         "x_meta": {"v": 1}}

W1 = tc("get_weather", '{"city": "Paris"}', "call_a")
W2 = tc("get_weather", '{"city":"Tokyo","unit":"c"}', "call_b")
S1 = tc("search", '{ "q" : "DeepSeek \\"V3\\" MoE", "n": 3, "score": 0.5 }', "call_c")
E0 = tc("get_time", "", "call_d")


def handwritten():
    c = []
    add = lambda name, tools, msgs: c.append((name, tools, msgs))
    add("one_tool_user", [WEATHER], [U("Weather in Paris?")])
    add("no_description", [TIME], [U("What time is it?")])
    add("system_tools", [WEATHER, TIME], [S("You are helpful."), U("Hi")])
    add("two_systems", [TIME], [S("Rule one."), U("q"), S("Rule two.")])
    add("escapes_unicode_numbers", [SEARCH], [U("find")])
    add("extra_fields", [EXTRA, TIME], [U("x")])
    add("call_then_output", [WEATHER], [U("Weather?"), ATC([W1]),
                                        T('{"temp": 21}', "call_a")])
    add("call_output_answer", [WEATHER], [U("Weather?"), ATC([W1]), T("21", "call_a"),
                                          A("It is 21."), U("thanks")])
    add("two_calls_two_outputs", [WEATHER, SEARCH],
        [S("s"), U("Paris and Tokyo?"), ATC([W1, W2]), T("21"), T("17")])
    add("args_respaced_and_empty", [SEARCH, TIME], [U("q"), ATC([S1, E0]), T("a"),
                                                   T("b"), A("done")])
    add("content_with_calls", [WEATHER], [U("q"), ATC([W1], content="Let me check."),
                                          T("r"), A("ok")])
    add("two_rounds", [WEATHER], [U("q"), ATC([W1]), T("r1"), A("first"), U("again"),
                                  ATC([W2, W1]), T("r2"), T("r3"), A("second")])
    add("chained_calls", [WEATHER], [U("q"), ATC([W1]), T("r1"), ATC([W2]), T("r2")])
    add("assistant_last", [TIME], [U("q"), A("answer")])
    add("tool_output_first", [TIME], [T("orphan"), U("q")])
    add("content_parts", [TIME], [S([{"type": "text", "text": "sys"}]),
                                  U([{"type": "text", "text": "a"},
                                     {"type": "text", "text": "b"}])])
    return c


def random_conversations(n, seed):
    rng = random.Random(seed)
    words = ["alpha", "β", "中文", "🙂", "\n", "  ", "```", "{}", "\"q\"", "\\n", "x"]

    def text():
        return "".join(rng.choice(words) + rng.choice(["", " ", "\n"])
                       for _ in range(rng.randint(0, 5)))

    out = []
    for i in range(n):
        tools = rng.sample([WEATHER, TIME, SEARCH, EXTRA], rng.randint(1, 4))
        msgs = []
        for _ in range(rng.randint(1, 8)):
            r = rng.random()
            if r < 0.1:
                msgs.append(S(text()))
            elif r < 0.4:
                msgs.append(U(text()))
            elif r < 0.6:
                msgs.append(A(text()))
            elif r < 0.8:
                calls = [tc(rng.choice(["f", "get_x", "búsqueda"]),
                            json.dumps({"k": text(), "n": rng.randint(-5, 5)},
                                       ensure_ascii=rng.random() < 0.5),
                            "call_%d" % j)
                         for j in range(rng.randint(1, 3))]
                msgs.append(ATC(calls, rng.choice([None, "", text()])))
            else:
                msgs.append(T(text()))
        out.append(("random_%02d" % i, tools, msgs))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--template", required=True,
                    help="vLLM's examples/tool_chat_template_deepseekv3.jinja")
    ap.add_argument("--out", default=os.path.join(
        ROOT, "tests", "data", "chat", "tools_conversations.json"))
    ap.add_argument("--random", type=int, default=30)
    args = ap.parse_args()
    with open(args.template, encoding="utf-8") as f:
        template = f.read()

    out = []
    for name, tools, msgs in handwritten() + random_conversations(args.random, 4321):
        m = vllm_messages(copy.deepcopy(msgs))
        t = [vllm_tool(x) for x in tools]
        exp = {("true" if agp else "false"): render(template, m, t, agp)
               for agp in (False, True)}
        out.append({"name": name, "messages": msgs, "tools": tools, "expected": exp})

    import transformers
    doc = {"generator": "tools/golden/tool_prompt_golden.py",
           "template": "vllm examples/tool_chat_template_deepseekv3.jinja",
           "template_sha256": hashlib.sha256(template.encode()).hexdigest(),
           "transformers": transformers.__version__,
           "bos_token": BOS,
           "conversations": out}
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print("wrote %d conversations to %s" % (len(out), args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
