#!/usr/bin/env python3
"""chat_golden.py - golden prompts for the C chat-template renderer.

Renders OpenAI-style `messages` arrays with Hugging Face transformers'
apply_chat_template(tokenize=False) for three templates:

  v3: the chat_template of tests/data/deepseek-v3-tokenizer/
      tokenizer_config.json (the real DeepSeek-V3 tokenizer config);
  r1: tests/data/chat/r1_chat_template.jinja (DeepSeek-R1, see README there);
  r1_distill: tests/data/chat/r1_distill_chat_template.jinja (the
      DeepSeek-R1-Distill checkpoints);

both with add_generation_prompt false and true, and writes
tests/data/chat/conversations.json:

  {"templates": {...}, "conversations": [
     {"name": ..., "messages": [...OpenAI shape...],
      "expected": {"v3": {"false": str, "true": str}, "r1": {...}}}]}

The C renderer accepts OpenAI messages and normalises them before rendering
exactly as normalise() below does (text parts joined with "\n"; an assistant
message with tool calls and null/absent/"" content gets content None; an
empty or null tool_calls list is dropped; a tool call without "type" gets
"function"), so the expected strings are apply_chat_template(normalise(m)).

Usage: python3 tools/golden/chat_golden.py [--tokenizer DIR] [--out PATH]
Needs: pip install transformers jinja2 (tokenizers comes with transformers).
"""
import argparse
import copy
import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))


def normalise(messages):
    """The C renderer's normalisation of an OpenAI messages array."""
    out = []
    for m in messages:
        m = copy.deepcopy(m)
        c = m.get("content")
        if isinstance(c, list):
            m["content"] = "\n".join(p["text"] for p in c)
        if m["role"] == "assistant":
            tcs = m.get("tool_calls")
            if tcs:
                if m.get("content") in (None, ""):
                    m["content"] = None
                m["tool_calls"] = [
                    {"type": t.get("type", "function"),
                     "function": {"name": t["function"]["name"],
                                  "arguments": t["function"]["arguments"]}}
                    for t in tcs]
            else:
                m.pop("tool_calls", None)
        out.append(m)
    return out


# ---------------------------------------------------------------------------
# Conversations.

def tc(name, args, cid="call_0", typ="function"):
    d = {"id": cid, "function": {"name": name, "arguments": args}}
    if typ is not None:
        d["type"] = typ
    return d


S = lambda c: {"role": "system", "content": c}
U = lambda c: {"role": "user", "content": c}
A = lambda c: {"role": "assistant", "content": c}
T = lambda c, i="call_0": {"role": "tool", "tool_call_id": i, "content": c}


def ATC(calls, content=None):
    return {"role": "assistant", "content": content, "tool_calls": calls}


W1 = tc("get_weather", '{"city": "Paris"}', "call_a")
W2 = tc("get_weather", '{"city": "Tokyo", "unit": "c"}', "call_b")
S1 = tc("search", '{"q": "DeepSeek \\"V3\\" MoE", "n": 3}', "call_c")


def handwritten():
    c = []
    add = lambda name, msgs: c.append((name, msgs))
    add("user_only", [U("Hello")])
    add("system_user", [S("You are a helpful assistant."), U("Hi!")])
    add("two_systems", [S("Rule one."), S("Rule two."), U("Go")])
    add("three_systems_split", [S("A"), U("q1"), S("B"), A("a1"), S("C"),
                                U("q2")])
    add("system_only", [S("Only a system prompt.")])
    add("multi_turn", [S("sys"), U("q1"), A("a1"), U("q2"), A("a2"),
                       U("q3")])
    add("assistant_last", [U("q"), A("answer")])
    add("empty_strings", [S(""), U(""), A(""), U("")])
    add("newlines_unicode", [U("línea 1\n\nlínea 2 — 中文 🙂\t"),
                             A("Ответ\r\n"), U("  spaced  ")])
    add("special_token_text", [U("literal <｜User｜> and <think> tags"),
                               A("<｜Assistant｜>echo")])
    add("r1_reasoning_history", [U("2+2?"),
                                 A("<think>\nsimple\n</think>\n\n4"),
                                 U("and 3+3?")])
    add("r1_reasoning_no_open", [U("q"), A("thinking...\n</think>\n\nfinal"),
                                 U("next")])
    add("r1_two_think_ends", [U("q"), A("a</think>b</think>c"), U("n")])
    add("r1_think_end_only", [U("q"), A("</think>"), U("n")])
    add("r1_reasoning_multi", [S("s"), U("q1"), A("<think>r1</think>a1"),
                               U("q2"), A("<think>r2</think>\n\na2"),
                               U("q3")])
    add("tool_single", [U("Weather in Paris?"), ATC([W1]),
                        T('{"temp": 21}', "call_a")])
    add("tool_single_answer", [U("Weather in Paris?"), ATC([W1]),
                               T('{"temp": 21}', "call_a"),
                               A("It is 21 degrees.")])
    add("tool_two_calls", [S("tools"), U("Paris and Tokyo?"),
                           ATC([W1, W2]), T("21", "call_a"),
                           T("17", "call_b")])
    add("tool_two_calls_answer", [U("Paris and Tokyo?"), ATC([W1, W2]),
                                  T("21", "call_a"), T("17", "call_b"),
                                  A("21 and 17."), U("thanks")])
    add("tool_three_calls", [U("all"), ATC([W1, W2, S1]), T("1"), T("2"),
                             T("3"), A("done")])
    add("tool_two_rounds", [U("q"), ATC([W1]), T("r1", "call_a"),
                            A("first"), U("again"), ATC([W2]),
                            T("r2", "call_b"), A("second")])
    add("tool_two_rounds_multi", [U("q"), ATC([W1, W2]), T("x"), T("y"),
                                  A("ok"), U("more"), ATC([S1, W1]),
                                  T("z"), T("w")])
    add("tool_chained_no_answer", [U("q"), ATC([W1]), T("r1"), ATC([W2]),
                                   T("r2")])
    add("tool_output_then_user", [U("q"), ATC([W1]), T("r"), U("ignore")])
    add("tool_empty_content_string", [U("q"),
                                      ATC([W1], content=""), T("r"),
                                      A("fine")])
    add("tool_with_content", [U("q"),
                              ATC([W1], content="Let me check."),
                              T("r"), A("done")])
    add("tool_with_content_two", [U("q"),
                                  ATC([W1, W2], content="Checking both."),
                                  T("a"), T("b")])
    add("tool_type_missing", [U("q"), ATC([tc("f", "{}", typ=None)]),
                              T("ok")])
    add("tool_args_multiline", [U("q"),
                                ATC([tc("write", '{\n  "path": "a.txt",\n'
                                        '  "text": "x\\ny"\n}')]),
                                T("written")])
    add("tool_args_empty", [U("q"), ATC([tc("now", "")]), T("12:00")])
    add("tool_output_first", [T("orphan output"), U("q")])
    add("tool_outputs_only", [S("s"), T("a"), T("b")])
    add("tool_reasoning_after", [U("q"), ATC([W1]), T("21"),
                                 A("<think>so 21</think>It is 21."),
                                 U("ok")])
    add("tool_null_list", [U("q"), {"role": "assistant", "content": "plain",
                                    "tool_calls": None}, U("q2")])
    add("tool_empty_list", [U("q"), {"role": "assistant", "content": "p",
                                     "tool_calls": []}])
    add("content_parts", [S([{"type": "text", "text": "sys part"}]),
                          U([{"type": "text", "text": "part one"},
                             {"type": "text", "text": "part two"}]),
                          A([{"type": "text", "text": "ans"}]),
                          U([])])
    add("content_parts_tool", [U("q"), ATC([W1]),
                               T([{"type": "text", "text": "tool part"}])])
    add("long_text", [S("x" * 3000), U("y " * 1000)])
    add("extra_fields", [{"role": "user", "content": "q", "name": "bob"},
                         {"role": "assistant", "content": "a",
                          "reasoning_content": "hidden"}, U("q2")])
    return c


def random_conversations(n, seed):
    rng = random.Random(seed)
    words = ["alpha", "beta", "γάμμα", "δ", "中文", "emoji🙂", "\n", "  ",
             "</think>", "<think>", "json", "```", "{}", "\"q\"", "\\n", "x"]

    def text():
        return "".join(rng.choice(words) + rng.choice(["", " ", "\n"])
                       for _ in range(rng.randint(0, 6)))

    out = []
    for i in range(n):
        msgs = []
        for _ in range(rng.randint(1, 9)):
            r = rng.random()
            if r < 0.12:
                msgs.append(S(text()))
            elif r < 0.45:
                msgs.append(U(text()))
            elif r < 0.7:
                msgs.append(A(text()))
            elif r < 0.85:
                calls = [tc(rng.choice(["f", "get_x", "búsqueda"]),
                            json.dumps({"k": text()}, ensure_ascii=False),
                            "call_%d" % j)
                         for j in range(rng.randint(1, 3))]
                content = rng.choice([None, None, "", text()])
                msgs.append(ATC(calls, content))
            else:
                msgs.append(T(text()))
        out.append(("random_%02d" % i, msgs))
    return out


# ---------------------------------------------------------------------------

def render(tok, messages, template, add_generation_prompt):
    """apply_chat_template(tokenize=False) without its None-dropping step.

    transformers 5 drops every message key whose value is None before
    rendering; both DeepSeek templates test `message['content'] is none` to
    render an assistant tool-call turn, so with that step a tool-call
    message cannot be rendered at all (UndefinedError).  This calls the
    renderer apply_chat_template uses (same sandboxed Jinja environment,
    same special-token variables), on the messages as given; main()
    checks it against apply_chat_template for every message list that has
    no None values."""
    from transformers.utils.chat_template_utils import render_jinja_template
    out, _ = render_jinja_template(
        conversations=[messages], chat_template=template,
        add_generation_prompt=add_generation_prompt,
        **tok.special_tokens_map)
    return out[0]


def load_tokenizer(path):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", default=os.path.join(
        ROOT, "tests", "data", "deepseek-v3-tokenizer"))
    ap.add_argument("--out", default=os.path.join(
        ROOT, "tests", "data", "chat", "conversations.json"))
    ap.add_argument("--random", type=int, default=40)
    args = ap.parse_args()

    tok = load_tokenizer(args.tokenizer)
    v3 = tok.chat_template
    with open(os.path.join(ROOT, "tests", "data", "chat",
                           "r1_chat_template.jinja"), encoding="utf-8") as f:
        r1 = f.read()
    with open(os.path.join(ROOT, "tests", "data", "chat",
                           "r1_distill_chat_template.jinja"), encoding="utf-8") as f:
        r1_distill = f.read()
    templates = {"v3": v3, "r1": r1, "r1_distill": r1_distill}

    convs = handwritten() + random_conversations(args.random, 1234)
    out = []
    for name, msgs in convs:
        norm = normalise(msgs)
        exp = {}
        has_none = any(v is None for m in norm for v in m.values())
        for tname, tpl in templates.items():
            exp[tname] = {}
            for agp in (False, True):
                s = render(tok, norm, tpl, agp)
                if not has_none:
                    # The public entry point must agree where it applies.
                    ref = tok.apply_chat_template(norm, chat_template=tpl,
                                                  tokenize=False,
                                                  add_generation_prompt=agp)
                    assert s == ref, (name, tname, agp)
                exp[tname]["true" if agp else "false"] = s
        out.append({"name": name, "messages": msgs, "expected": exp})

    import transformers
    doc = {"generator": "tools/golden/chat_golden.py",
           "transformers": transformers.__version__,
           "bos_token": tok.bos_token,
           "conversations": out}
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print("wrote %d conversations to %s" % (len(out), args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
