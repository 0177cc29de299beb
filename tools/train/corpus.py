#!/usr/bin/env python3
"""Deterministic synthetic R1-style chat corpus for the tiny trained model.

Every example is a (prompt, completion) pair of text, rendered exactly as
dsa-head renders the conversation: problems through DeepSeek-R1's chat
template (common/chat.c, render()), tool conversations through vLLM's
DeepSeek-V3 tool chat template (common/chat.c, render_tools()), which is
what the server uses whenever a request carries `tools`. The completion is
what the model must generate: the working inside <think>...</think>, then
the answer, then EOS (or the DeepSeek tool-call block).

Tasks (all answers exactly checkable, see `check` in eval.py):
  add    a + b, 1-2 digits, column working with carries (fixed-width lines)
  word   a word problem that is an addition or a subtraction
  days   days between two dates of the same month (subtraction with borrow)
  unit   unit conversions (km->m, h->min, ...), one multiplication
  sort   sort 3-4 distinct numbers below 100, by ranks
  count  count a letter in a word, letter by letter
  tool   weather / currency tool call, tool result, final answer (2 turns)

The split is by seed: the training corpus uses seed 1, the held-out
evaluation seed 2 (any other seed gives another held-out set); a problem
that appears in the training set is dropped from held-out sets.

Usage: corpus.py --seed 1 --n 100000 --out corpus.jsonl
"""
import argparse
import json
import random

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
USER = "<｜User｜>"
ASSISTANT = "<｜Assistant｜>"
CALLS_BEGIN = "<｜tool▁calls▁begin｜>"
CALLS_END = "<｜tool▁calls▁end｜>"
CALL_BEGIN = "<｜tool▁call▁begin｜>"
CALL_END = "<｜tool▁call▁end｜>"
SEP = "<｜tool▁sep｜>"
OUTPUTS_BEGIN = "<｜tool▁outputs▁begin｜>"
OUTPUTS_END = "<｜tool▁outputs▁end｜>"
OUTPUT_BEGIN = "<｜tool▁output▁begin｜>"
OUTPUT_END = "<｜tool▁output▁end｜>"

SYSTEM = "You are a helpful assistant."

# ---- rendering (mirrors common/chat.c) ------------------------------------


def render_r1(messages):
    """R1 template with add_generation_prompt for a conversation of system
    and user turns (what the problems use)."""
    out = BOS + "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    for m in messages:
        if m["role"] == "user":
            out += USER + m["content"]
    return out + ASSISTANT + "<think>\n"


def pyjson(v):
    return json.dumps(v, ensure_ascii=False)


TOOLS_HEAD = ("    \n\n# Tools\n\nYou may call one or more functions to assist with "
              "the user query.\n\nYou are provided with function signatures within "
              "<tools></tools> XML tags:\n<tools>")
TOOLS_TAIL = ("    \n</tools>\n\n"
              "\n\n    For function call returns, you should first print " + CALLS_BEGIN +
              "\n\n    For each function call, you should return object like:\n"
              "\n    " + CALL_BEGIN + "function" + SEP + "<function_name>\n```json\n"
              "<function_arguments_in_json_format>\n```" + CALL_END +
              "\n\n    At the end of function call returns, you should print " +
              CALLS_END + EOS)


def put_tool(t):
    fn = t["function"]
    return ('{"type": "function", "function": {"name": ' + pyjson(fn["name"]) +
            ', "description": ' + pyjson(fn.get("description")) +
            ', "parameters": ' + pyjson(fn.get("parameters")) + "}}")


def render_tools(messages, tools):
    """vLLM's DeepSeek-V3 tool template as common/chat.c render_tools()
    writes it, with add_generation_prompt."""
    out = "\n\n" + BOS + "\n"
    out += "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    out += TOOLS_HEAD
    for t in tools:
        out += "\n" + put_tool(t)
    out += TOOLS_TAIL
    is_first = is_tool = is_last_user = False
    is_output_first = True
    for m in messages:
        r = m["role"]
        if r == "user":
            is_tool = is_first = False
            is_last_user = True
            out += USER + m["content"] + ASSISTANT
        elif r == "assistant":
            is_last_user = False
            if m.get("tool_calls"):
                if is_tool:
                    out += " " * 12 + OUTPUTS_END
                is_first = is_tool = False
                is_output_first = True
                for c in m["tool_calls"]:
                    if not is_first:
                        out += " " * 20 + (m.get("content") or "") + CALLS_BEGIN + CALL_BEGIN
                        is_first = True
                    else:
                        out += " " * 16 + "\n" + CALL_BEGIN
                    args = json.loads(c["function"]["arguments"] or "{}")
                    out += ("function" + SEP + c["function"]["name"] + "\n```json\n" +
                            pyjson(args) + "\n```" + CALL_END)
                out += " " * 8 + CALLS_END + EOS
            else:
                out += " " * 12 + (OUTPUTS_END if is_tool else "") + m["content"] + EOS
                is_tool = False
        elif r == "tool":
            is_last_user = False
            is_tool = True
            out += (" " * 12 + (OUTPUTS_BEGIN + OUTPUT_BEGIN if is_output_first
                                else "\n" + OUTPUT_BEGIN))
            is_output_first = False
            out += m["content"] + OUTPUT_END
    if is_tool:
        out += "    " + OUTPUTS_END + "\n"
    out += "\n"
    if not is_last_user and not is_tool:
        out += "    " + ASSISTANT + "\n"
    return out


def completion(think, answer):
    return think + "\n</think>\n\n" + answer + EOS


# A number the model computes (a sum, a difference, a product) is written
# digit by digit: SPLIT between two digits makes the training tokenise
# them as separate tokens (train.encode_completions), although "78" alone
# is one token. The model then writes "7", "8", each read off one column
# line, instead of joining two digits into one number token, which is
# what the fifth model got wrong (docs/training.md). SPLIT is not text:
# plain() removes it from everything but the training completions, and
# the detokenised answer is the same string either way.
SPLIT = "\u2063"


def digits(x):
    return SPLIT.join(str(x))


def plain(s):
    return s.replace(SPLIT, "")


# ---- tasks ----------------------------------------------------------------


def pad2(x):
    return f"{x:02d}"


def add_working(a, b):
    """Column addition in fixed-width lines (operands of at most 2 digits),
    so that every digit the model writes sits at the same distance from the
    digits it is computed from (every number below 100 is one token, see
    tokenizer.py, so each line has the same number of tokens):
        02+75         the operands, padded to 2 digits
        2+5+0=07      ones: digit + digit + carry in = carry out, digit
        0+7+0=07      tens
        77            the result, digit by digit (SPLIT)"""
    A, B = pad2(a), pad2(b)
    lines, c, ds = [f"{A}+{B}"], 0, ""
    for i in (1, 0):
        s = int(A[i]) + int(B[i]) + c
        lines.append(f"{A[i]}+{B[i]}+{c}={s:02d}")
        c, d = divmod(s, 10)
        ds = str(d) + ds
    assert int(f"{c}{ds}") == a + b
    lines.append(digits(a + b))
    return lines


def sub_working(a, b):
    """Column subtraction a - b (a >= b, at most 2 digits) in fixed-width
    lines, like add_working:
        95-58
        5-8-0=17      ones: digit - digit - borrow in = borrow out, digit
        9-5-1=03      tens
        37            the result, digit by digit (SPLIT)
    Returns (lines, the result without leading zeros)."""
    A, B = pad2(a), pad2(b)
    lines, bw, ds = [f"{A}-{B}"], 0, ""
    for i in (1, 0):
        t = int(A[i]) - int(B[i]) - bw
        nb = 1 if t < 0 else 0
        lines.append(f"{A[i]}-{B[i]}-{bw}={nb}{t + 10 * nb}")
        bw = nb
        ds = str(t + 10 * nb) + ds
    assert bw == 0
    res = str(int(ds))
    assert int(res) == a - b
    lines.append(digits(res))
    return lines, res


def rand_num(rng, max_digits):
    nd = rng.randint(1, max_digits)
    return rng.randint(0 if nd == 1 else 10 ** (nd - 1), 10 ** nd - 1)


ADD_DIGITS = 2   # operands of 1..ADD_DIGITS digits


def task_add(rng):
    a, b = rand_num(rng, ADD_DIGITS), rand_num(rng, ADD_DIGITS)
    q = rng.choice([f"What is {a} + {b}?", f"Compute {a} + {b}.",
                    f"Add {a} and {b}.", f"What is the sum of {a} and {b}?"])
    think = f"{a} + {b}\n" + "\n".join(add_working(a, b))
    return q, think, f"{a} + {b} = {digits(a + b)}.", str(a + b)


NAMES = ["Anna", "Ben", "Carla", "David", "Emma", "Felix", "Grace", "Hugo",
         "Iris", "Jack", "Kate", "Leo", "Mia", "Noah", "Olga", "Paul"]
THINGS = ["apples", "books", "coins", "stamps", "marbles", "cards", "pencils",
          "shells", "stickers", "cookies"]


def task_word(rng):
    n, t = rng.choice(NAMES), rng.choice(THINGS)
    if rng.random() < 0.5:
        a, b = rand_num(rng, 2), rand_num(rng, 2)
        q = rng.choice([f"{n} has {a} {t} and gets {b} more. How many {t} does {n} have now?",
                        f"{n} had {a} {t}. A friend gave {n} {b} more. How many {t} does {n} have?"])
        think = f"{n} {t}: {a} + {b}\n" + "\n".join(add_working(a, b))
        return q, think, f"{n} has {digits(a + b)} {t}.", str(a + b)
    a = rand_num(rng, 2)
    b = rng.randint(0, a)
    q = rng.choice([f"{n} has {a} {t} and gives away {b}. How many {t} are left?",
                    f"{n} had {a} {t} and lost {b} of them. How many {t} are left?"])
    lines, res = sub_working(a, b)
    think = f"{n} {t}: {a} - {b}\n" + "\n".join(lines)
    return q, think, f"{digits(res)} {t} are left.", res


MONTHS = [("January", 31), ("February", 28), ("March", 31), ("April", 30),
          ("May", 31), ("June", 30), ("July", 31), ("August", 31),
          ("September", 30), ("October", 31), ("November", 30), ("December", 31)]


def task_days(rng):
    m, nd = rng.choice(MONTHS)
    a = rng.randint(1, nd - 1)
    b = rng.randint(a + 1, nd)
    q = rng.choice([f"How many days are there from {m} {a} to {m} {b}?",
                    f"How many days is it from {m} {a} to {m} {b}?"])
    lines, res = sub_working(b, a)
    think = f"{m}: {b} - {a}\n" + "\n".join(lines)
    return q, think, f"{digits(res)} day{'' if res == '1' else 's'}.", res


UNITS = [  # (from, to, factor, max quantity)
    ("kilometers", "meters", 1000, 99), ("meters", "centimeters", 100, 99),
    ("centimeters", "millimeters", 10, 99), ("kilograms", "grams", 1000, 99),
    ("liters", "milliliters", 1000, 99), ("hours", "minutes", 60, 12),
    ("minutes", "seconds", 60, 12), ("days", "hours", 24, 9),
    ("weeks", "days", 7, 12), ("feet", "inches", 12, 9), ("dozens", "items", 12, 9),
]


def task_unit(rng):
    src, dst, f, mx = rng.choice(UNITS)
    x = rng.randint(1, mx)
    q = rng.choice([f"How many {dst} are in {x} {src}?", f"Convert {x} {src} to {dst}."])
    if f in (10, 100, 1000):
        zeros = len(str(f)) - 1
        think = (f"1 {src[:-1]} is {f} {dst}, so multiply by {f}.\n"
                 f"Multiplying by {f} appends {zeros} zero{'s' if zeros > 1 else ''}: "
                 f"{x} {'0' * zeros} = {digits(x * f)}")
    else:
        think = (f"1 {src[:-1]} is {f} {dst}, so multiply by {f}.\n"
                 f"{x} × {f} = {digits(x * f)}")
    return q, think, f"{x} {src} is {digits(x * f)} {dst}.", str(x * f)


def sort_working(xs):
    """Sorting by ranks in fixed-width lines (every number below 100 is one
    token). Line i restates the numbers rotated left by i, so that the
    i-th comes first; then, for each of the others, y if it is smaller
    than the first, n if not; then the count of y, the first number's
    rank. The last line lists the numbers by rank:
        37 2 53 71 | y n n = 1
        2 53 71 37 | n n n = 0
        53 71 37 2 | n y y = 2
        71 37 2 53 | y y y = 3
        2 37 53 71
    Every y/n compares two number tokens at fixed distances and no line
    depends on an earlier line's result (the fifth model's running
    minimum compared number tokens badly and carried its errors on); the
    numbers are distinct (task_sort)."""
    rot, lines = list(xs), []
    for _ in xs:
        marks = ["y" if x < rot[0] else "n" for x in rot[1:]]
        lines.append(f"{' '.join(map(str, rot))} | {' '.join(marks)} = {marks.count('y')}")
        rot = rot[1:] + rot[:1]
    lines.append(" ".join(map(str, sorted(xs))))
    return lines


def task_sort(rng):
    k = rng.randint(3, 4)
    xs = rng.sample(range(100), k)
    q = rng.choice([f"Sort these numbers from smallest to largest: {', '.join(map(str, xs))}.",
                    f"Put in increasing order: {', '.join(map(str, xs))}."])
    ans = ", ".join(map(str, sorted(xs)))
    return q, "\n".join(sort_working(xs)), ans + ".", ans


WORDS = ["banana", "strawberry", "apple", "cherry", "letter", "balloon", "coffee",
         "pepper", "mississippi", "bookkeeper", "committee", "address", "success",
         "butterfly", "giraffe", "elephant", "umbrella", "tomorrow", "necessary",
         "different", "programming", "assessment", "sleeping", "summer", "mirror",
         "parallel", "possession", "engineer", "reference", "occurrence", "kitten",
         "rabbit", "puzzle", "window", "garden", "pizza", "hello", "yellow",
         "bottle", "cookie", "noodle", "moon", "river", "level", "banner",
         "dinner", "mammal", "zebra", "orange", "potato"]


def task_count(rng):
    w = rng.choice(WORDS)
    c = rng.choice(sorted(set(w))) if rng.random() < 0.85 else rng.choice("abcdefghijklmnoprstuwy")
    q = rng.choice([f'How many times does the letter "{c}" appear in "{w}"?',
                    f'Count the letter "{c}" in the word "{w}".'])
    n, lines = 0, [f"{w} spelled: {' '.join(w)}"]
    for ch in w:
        if ch == c:
            n += 1
            lines.append(f"{ch} yes {n}")
        else:
            lines.append(f"{ch} no {n}")
    return q, "\n".join(lines), f'"{c}" appears {n} time{"" if n == 1 else "s"} in "{w}".', str(n)


CITIES = ["Paris", "London", "Tokyo", "Berlin", "Madrid", "Rome", "Lisbon",
          "Vienna", "Prague", "Dublin", "Oslo", "Cairo", "Lima", "Seoul",
          "Sydney", "Toronto", "Boston", "Denver", "Chicago", "Miami",
          "Mumbai", "Delhi", "Nairobi", "Athens", "Warsaw", "Zurich",
          "Geneva", "Munich", "Milan", "Kyoto"]
CONDITIONS = ["sunny", "cloudy", "rainy", "windy", "snowy", "foggy"]
CURRENCIES = ["USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD", "SEK"]

TOOL_WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "City name"}},
        "required": ["city"]}}}
TOOL_FX = {"type": "function", "function": {
    "name": "convert_currency", "description": "Convert an amount between currencies.",
    "parameters": {"type": "object", "properties": {
        "amount": {"type": "integer"}, "from": {"type": "string"},
        "to": {"type": "string"}}, "required": ["amount", "from", "to"]}}}


def tool_conversation(rng):
    """Returns a dict: tools, user, call (name, arguments dict), result
    (tool output text), final (expected final answer text), and the
    completions of both assistant turns."""
    kind = rng.choice(["weather", "fx"])
    tools = [TOOL_WEATHER, TOOL_FX] if rng.random() < 0.5 else (
        [TOOL_WEATHER] if kind == "weather" else [TOOL_FX])
    if rng.random() < 0.5:
        tools = tools[::-1]
    if kind == "weather":
        city = rng.choice(CITIES)
        user = rng.choice([f"What is the weather in {city}?",
                           f"How is the weather in {city} right now?"])
        args = {"city": city}
        t, cond = rng.randint(-9, 39), rng.choice(CONDITIONS)
        result = pyjson({"city": city, "temperature_c": t, "condition": cond})
        think1 = f"The user wants the weather in {city}. I will call get_weather with city {city}."
        think2 = f"The tool says {t} degrees and {cond} in {city}."
        final = f"It is {t} °C and {cond} in {city}."
        name = "get_weather"
    else:
        amount = rng.randint(1, 999)
        src, dst = rng.sample(CURRENCIES, 2)
        user = rng.choice([f"How much is {amount} {src} in {dst}?",
                           f"Convert {amount} {src} to {dst}."])
        args = {"amount": amount, "from": src, "to": dst}
        res = rng.randint(1, 1999)
        result = pyjson({"amount": res, "currency": dst})
        think1 = (f"The user wants {amount} {src} in {dst}. I will call convert_currency "
                  f"with amount {amount}, from {src}, to {dst}.")
        think2 = f"The tool says {res} {dst}."
        final = f"{amount} {src} is {res} {dst}."
        name = "convert_currency"
    arg_text = pyjson(args)
    call_block = (CALLS_BEGIN + CALL_BEGIN + "function" + SEP + name + "\n```json\n" +
                  arg_text + "\n```" + CALL_END + CALLS_END + EOS)
    msgs1 = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
    call = {"id": "call_0", "type": "function",
            "function": {"name": name, "arguments": arg_text}}
    msgs2 = msgs1 + [{"role": "assistant", "content": "", "tool_calls": [call]},
                     {"role": "tool", "tool_call_id": "call_0", "content": result}]
    return {
        "tools": tools, "user": user, "call_name": name, "call_args": args,
        "result": result, "final": final,
        "prompt1": render_tools(msgs1, tools),
        "completion1": "<think>\n" + think1 + "\n</think>\n\n" + call_block,
        "prompt2": render_tools(msgs2, tools),
        "completion2": "<think>\n" + think2 + "\n</think>\n\n" + final + EOS,
    }


def task_copy(rng):
    """Copy warm-up: repeat a list of the items the real tasks copy from the
    question (numbers, names, things, words, letters, cities, currency
    codes). Not in TASKS: `--copy N` appends N of these to a training
    corpus (their own random stream, so held-out sets stay as they are)."""
    pools = [lambda: str(rand_num(rng, 4)), lambda: rng.choice(NAMES),
             lambda: rng.choice(THINGS), lambda: rng.choice(WORDS),
             lambda: f'"{rng.choice("abcdefghijklmnopqrstuvwxyz")}"',
             lambda: rng.choice(CITIES), lambda: rng.choice(CURRENCIES)]
    # numbers only: the digits are what the tasks miss; 3 and 4 digits as
    # often as 2 (a tool's amounts run to 1999 and are 2-3 tokens, and six of
    # the sixth model's seven tool failures copied one wrong)
    if rng.random() < 0.5:
        items = [str(rand_num(rng, rng.choice((2, 3, 4)))) for _ in range(rng.randint(2, 5))]
    else:
        items = [rng.choice(pools)() for _ in range(rng.randint(2, 5))]
    text = rng.choice([", ", " "]).join(items)
    q = rng.choice([f"Repeat: {text}", f"Say again: {text}", f"Copy this: {text}"])
    return q, text, text, text


TASKS = {"add": (task_add, 3), "word": (task_word, 2), "days": (task_days, 1),
         "unit": (task_unit, 1), "sort": (task_sort, 2), "count": (task_count, 2)}
TOOL_WEIGHT = 1  # tool conversations per 11 problems


def problem(rng):
    names = list(TASKS) + ["tool"]
    w = [TASKS[n][1] for n in TASKS] + [TOOL_WEIGHT]
    kind = rng.choices(names, weights=w)[0]
    if kind == "tool":
        return kind, tool_conversation(rng)
    return kind, task_problem(kind, rng)


def task_problem(kind, rng):
    """One problem of a task kind, as the corpus and the evaluation hold it."""
    q, think, content, answer = TASKS[kind][0](rng)
    return {"question": q, "think": plain(think), "content": plain(content),
            "answer": answer,
            "prompt": render_r1([{"role": "system", "content": SYSTEM},
                                 {"role": "user", "content": q}]),
            "completion": completion(think, content)}


def generate(seed, n, exclude=None):
    rng = random.Random(seed)
    out, seen = [], set()
    while len(out) < n:
        kind, p = problem(rng)
        key = p.get("prompt") or p["prompt1"] + p["result"]
        if exclude and key in exclude:
            continue
        if exclude is not None and key in seen:
            continue
        seen.add(key)
        p["kind"] = kind
        out.append(p)
    return out


def keys(rows):
    return {p.get("prompt") or p["prompt1"] + p["result"] for p in rows}


def held_out(seed, n_problems, n_tools, train_seed, train_n):
    """The first n_problems problems and n_tools tool conversations of the
    corpus of `seed` that are not in the training corpus (train_seed, train_n)."""
    train = keys(generate(train_seed, train_n))
    probs, tools = [], []
    for p in generate(seed, 4 * (n_problems + n_tools) + 100, exclude=train):
        if p["kind"] == "tool":
            if len(tools) < n_tools:
                tools.append(p)
        elif len(probs) < n_problems:
            probs.append(p)
        if len(probs) == n_problems and len(tools) == n_tools:
            break
    return probs, tools


def per_kind(seed, n):
    """n problems of every task kind, drawn from the task's own generator
    whether or not the training corpus holds them: what a user asks, at
    equal weight per kind (held_out weights the kinds by the corpus mix and
    by how many of a kind's problems training left unseen: few unit
    conversions are)."""
    rows = []
    for i, kind in enumerate(TASKS):
        rng = random.Random(seed * 100 + i)
        rows += [dict(task_problem(kind, rng), kind=kind) for _ in range(n)]
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--n", type=int, default=100000)
    ap.add_argument("--exclude", help="a training corpus whose problems are left out")
    ap.add_argument("--copy", type=int, default=0,
                    help="append this many copy warm-up examples (task_copy)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    exclude = None
    if a.exclude:
        with open(a.exclude) as f:
            exclude = keys(json.loads(line) for line in f)
    rows = generate(a.seed, a.n, exclude)
    crng = random.Random(a.seed + 1000)
    for _ in range(a.copy):
        q, think, content, answer = task_copy(crng)
        rows.append({"question": q, "think": think, "content": content, "answer": answer,
                     "prompt": render_r1([{"role": "system", "content": SYSTEM},
                                          {"role": "user", "content": q}]),
                     "completion": completion(think, content), "kind": "copy"})
    with open(a.out, "w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
