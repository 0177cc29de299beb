#!/usr/bin/env python3
"""Exact-match evaluation of a served model through the real server and the
official `openai` client (greedy, temperature 0).

Held-out problems come from corpus.py with another seed than training (2 by
default) and leave out every problem of the training corpus (regenerated
from its seed and size). For each problem the response must have non-empty
`reasoning_content` and `content` equal to the expected answer text. For
each tool conversation: turn 1 must come back as `tool_calls` (finish
reason "tool_calls") naming the right function with JSON arguments equal to
the expected ones; turn 2 sends that call and the tool's result back and
the answer must equal the expected text.

The server is either running (--base-url) or started here (--server, a
shell command line in which {port_file} is replaced by a file the server
writes its port to, e.g. "dsa-head --model DIR --port 0 --port-file
{port_file}", or an mpirun line); it is stopped with SIGTERM at the end.

--per-kind N adds N problems of every task kind drawn from the task's own
generator, seen in training or not (corpus.per_kind; seed --seed), scored
the same way and reported apart as "per_kind": the held-out set weights
the kinds by the corpus mix and by how many problems of a kind training
left unseen, so it holds almost no unit conversions.

Usage: eval.py (--base-url URL | --server CMD) [--problems 500] [--tools 100]
               [--per-kind N] [--min-accuracy A] [--min-format F] [--json OUT]
Exit status 1 when an accuracy is below --min-accuracy, or the share of
answers with reasoning split off / of tool calls that parse below
--min-format.
"""
import argparse
import concurrent.futures as cf
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import openai

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import corpus  # noqa: E402


held_out = corpus.held_out


def ask_problem(client, model, p, max_tokens):
    r = client.chat.completions.create(
        model=model, temperature=0, max_tokens=max_tokens,
        messages=[{"role": "system", "content": corpus.SYSTEM},
                  {"role": "user", "content": p["question"]}])
    m = r.choices[0].message
    reasoning = getattr(m, "reasoning_content", None) or (m.model_extra or {}).get(
        "reasoning_content")
    content = m.content or ""
    ok = content == p["content"]
    split = bool(reasoning) and "<think>" not in content and "</think>" not in content
    return {"kind": p["kind"], "ok": ok, "split": split, "question": p["question"],
            "expected": p["content"], "content": content, "reasoning": reasoning,
            "tokens": r.usage.completion_tokens}


def ask_tool(client, model, p, max_tokens):
    msgs = [{"role": "system", "content": corpus.SYSTEM},
            {"role": "user", "content": p["user"]}]
    r1 = client.chat.completions.create(model=model, temperature=0, max_tokens=max_tokens,
                                        messages=msgs, tools=p["tools"])
    m1 = r1.choices[0].message
    out = {"kind": "tool", "user": p["user"], "expected": p["final"], "call_ok": False,
           "answer_ok": False, "parsed": False,
           "finish_reason": r1.choices[0].finish_reason, "tokens": r1.usage.completion_tokens}
    calls = m1.tool_calls or []
    out["calls"] = [(c.function.name, c.function.arguments) for c in calls]
    reasoning1 = getattr(m1, "reasoning_content", None) or (m1.model_extra or {}).get(
        "reasoning_content")
    if len(calls) != 1:
        return out
    c = calls[0]
    try:
        args = json.loads(c.function.arguments)
    except ValueError:
        return out
    # the call survived the round trip: one call naming an offered function,
    # arguments a JSON object, finish reason "tool_calls", reasoning split off
    out["parsed"] = (isinstance(args, dict) and r1.choices[0].finish_reason == "tool_calls" and
                     c.function.name in [t["function"]["name"] for t in p["tools"]] and
                     bool(reasoning1))
    out["call_ok"] = (c.function.name == p["call_name"] and args == p["call_args"] and
                      r1.choices[0].finish_reason == "tool_calls" and bool(reasoning1))
    msgs.append({"role": "assistant", "content": m1.content or "",
                 "tool_calls": [{"id": c.id, "type": "function",
                                 "function": {"name": c.function.name,
                                              "arguments": c.function.arguments}}]})
    msgs.append({"role": "tool", "tool_call_id": c.id, "content": p["result"]})
    r2 = client.chat.completions.create(model=model, temperature=0, max_tokens=max_tokens,
                                        messages=msgs, tools=p["tools"])
    m2 = r2.choices[0].message
    reasoning2 = getattr(m2, "reasoning_content", None) or (m2.model_extra or {}).get(
        "reasoning_content")
    out["content"] = m2.content
    out["answer_ok"] = m2.content == p["final"] and bool(reasoning2)
    out["tokens"] += r2.usage.completion_tokens
    return out


def start_server(cmd, timeout):
    tmp = tempfile.mkdtemp(prefix="dsa-eval-")
    port_file = os.path.join(tmp, "port")
    log = open(os.path.join(tmp, "server.log"), "w")
    proc = subprocess.Popen(cmd.replace("{port_file}", port_file), shell=True,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    t0 = time.time()
    while time.time() - t0 < timeout:
        if os.path.exists(port_file):
            port = open(port_file).read().strip()
            if port:
                return proc, f"http://127.0.0.1:{port}/v1", os.path.join(tmp, "server.log")
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    log.close()
    sys.stderr.write(open(os.path.join(tmp, "server.log")).read()[-3000:])
    raise SystemExit("eval: the server did not start")


def wait_ready(client, timeout, model):
    """The port is open before the weights are loaded (503 until then)."""
    t0 = time.time()
    while True:
        try:
            listed = client.models.list().data
            return model or listed[0].id
        except (openai.APIStatusError, openai.APIConnectionError):
            if time.time() - t0 > timeout:
                raise
            time.sleep(0.5)


def stop_server(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return proc.returncode


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--base-url")
    g.add_argument("--server", help="command line starting the server; {port_file} is replaced")
    ap.add_argument("--model", default=None, help="served model name (default: the first listed)")
    ap.add_argument("--problems", type=int, default=500)
    ap.add_argument("--tools", type=int, default=100)
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--per-kind", type=int, default=0,
                    help="also this many problems of every task kind, seen in training or "
                         "not, reported apart")
    ap.add_argument("--train-seed", type=int, default=1)
    ap.add_argument("--train-n", type=int, default=100000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--min-accuracy", type=float, default=0.0,
                    help="least exact-match accuracy of problems and of tool conversations")
    ap.add_argument("--min-tool-accuracy", type=float, default=None,
                    help="least exact-match accuracy of tool calls and of the answers after "
                         "them (default: --min-accuracy)")
    ap.add_argument("--min-format", type=float, default=0.0,
                    help="least share of answers with reasoning split off and of tool calls "
                         "that parse")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--expect", help="results (--json) of an earlier run: the share of "
                                     "answers equal to it must be >= --min-same")
    ap.add_argument("--min-same", type=float, default=0.95)
    ap.add_argument("--start-timeout", type=float, default=120)
    a = ap.parse_args()

    probs, tools = held_out(a.seed, a.problems, a.tools, a.train_seed, a.train_n)
    kprobs = corpus.per_kind(a.seed, a.per_kind) if a.per_kind > 0 else []
    proc = None
    base = a.base_url
    if a.server:
        proc, base, server_log = start_server(a.server, a.start_timeout)
    rc = 0
    try:
        client = openai.OpenAI(base_url=base, api_key=os.environ.get("DSA_API_KEY", "none"),
                               timeout=600, max_retries=0)
        model = wait_ready(client, a.start_timeout, a.model)
        t0 = time.time()
        with cf.ThreadPoolExecutor(a.concurrency) as ex:
            fp = [ex.submit(ask_problem, client, model, p, a.max_tokens) for p in probs]
            ft = [ex.submit(ask_tool, client, model, p, a.max_tokens) for p in tools]
            fk = [ex.submit(ask_problem, client, model, p, a.max_tokens) for p in kprobs]
            rp = [f.result() for f in fp]
            rt = [f.result() for f in ft]
            rk = [f.result() for f in fk]
        wall = time.time() - t0
    finally:
        if proc is not None:
            code = stop_server(proc)
            if code not in (0, -signal.SIGTERM, 143):
                print(f"eval: the server exited {code}; log {server_log}", file=sys.stderr)
                rc = 1
    kinds = sorted({r["kind"] for r in rp})
    summary = {
        "problems": len(rp),
        "accuracy": sum(r["ok"] for r in rp) / max(1, len(rp)),
        "reasoning_split": sum(r["split"] for r in rp) / max(1, len(rp)),
        "by_kind": {k: [sum(r["ok"] for r in rp if r["kind"] == k),
                        sum(1 for r in rp if r["kind"] == k)] for k in kinds},
        "tool_conversations": len(rt),
        "tool_call_parsed": sum(r["parsed"] for r in rt) / max(1, len(rt)),
        "tool_call_accuracy": sum(r["call_ok"] for r in rt) / max(1, len(rt)),
        "tool_answer_accuracy": sum(r["answer_ok"] for r in rt) / max(1, len(rt)),
        "completion_tokens": sum(r["tokens"] for r in rp + rt + rk),
        "wall_seconds": round(wall, 1),
    }
    if rk:
        summary["per_kind"] = {k: [sum(r["ok"] for r in rk if r["kind"] == k),
                                   sum(1 for r in rk if r["kind"] == k)]
                               for k in corpus.TASKS}
        summary["per_kind_accuracy"] = sum(r["ok"] for r in rk) / len(rk)
    if a.expect:
        with open(a.expect) as f:
            exp = json.load(f)
        ep = {r["question"]: (r["content"], r["reasoning"]) for r in exp["problems"]}
        # a tool question repeats with other tool results: keyed by both
        et = {(r["user"], r.get("expected")): (r["calls"], r.get("content"))
              for r in exp["tools"]}
        same = [ep.get(r["question"]) == (r["content"], r["reasoning"]) for r in rp] + \
            [et.get((r["user"], r["expected"])) == ([list(c) for c in r["calls"]], r.get("content"))
             for r in rt]
        summary["same_as_expected"] = sum(same) / max(1, len(same))
    fails = [r for r in rp if not r["ok"]][:10] + \
        [r for r in rt if not (r["call_ok"] and r["answer_ok"])][:10] + \
        [r for r in rk if not r["ok"]][:10]
    print(json.dumps(summary, indent=1))
    for f in fails:
        print("FAIL", json.dumps(f, ensure_ascii=False)[:600])
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"summary": summary, "problems": rp, "tools": rt, "per_kind": rk}, f,
                      indent=1, ensure_ascii=False)
    if a.expect and summary["same_as_expected"] < a.min_same:
        print(f"eval: {summary['same_as_expected']:.3f} of the answers equal {a.expect}'s "
              f"< {a.min_same}", file=sys.stderr)
        rc = 1
    tool_least = a.min_accuracy if a.min_tool_accuracy is None else a.min_tool_accuracy
    for key, least in (("accuracy", a.min_accuracy), ("reasoning_split", a.min_format),
                       ("tool_call_parsed", a.min_format), ("tool_call_accuracy", tool_least),
                       ("tool_answer_accuracy", tool_least)):
        n = summary["problems"] if key in ("accuracy", "reasoning_split") else len(rt)
        if n and summary[key] < least:
            print(f"eval: {key} {summary[key]:.3f} < {least}", file=sys.stderr)
            rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
