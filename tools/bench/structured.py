"""End-to-end decode speed of a constrained request against an unconstrained
one (docs/perf/structured.md): the real dsa-head on a checkpoint with the
DeepSeek-V3 vocabulary and tokenizer, one request at a time, greedy,
ignore_eos, the same prompt; runs alternate (none, json_schema, none, ...)
so that load from elsewhere on the machine hits both sides alike.

Decode speed of one request = (completion tokens - 1) / (time of the last
streamed token - time of the first), so prefill and connection set-up are
left out.  Prints per-mode medians and means and the slowdown; --json
writes every run.

--mpi N --worker build/worker/dsa-worker runs the head under mpirun with
N dsa-worker ranks (TP=N x PP=1: one batch in flight), as one oversubscribed
job on this machine.

Usage: python tools/bench/structured.py --head build/head/dsa-head \
           --model DIR [--rounds 8] [--max-tokens 128] [--json OUT] \
           [--mpi N --worker build/worker/dsa-worker]"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

import openai

# Documents that run past max_tokens: the constrained side never stops
# early, so both sides decode the same number of tokens.
SCHEMAS = {
    "object-long-string": {
        "type": "object",
        "properties": {"title": {"type": "string"},
                       "body": {"type": "string", "minLength": 2000}},
        "required": ["title", "body"], "additionalProperties": False},
    "array-of-objects": {
        "type": "array", "minItems": 100,
        "items": {"type": "object",
                  "properties": {"id": {"type": "integer"},
                                 "tag": {"enum": ["red", "green", "blue"]},
                                 "ok": {"type": "boolean"}},
                  "required": ["id", "tag", "ok"]}},
}
PROMPT = "Write a long JSON document about the weather in Lisbon."


def start(head, model, mpi=0, worker=None):
    tmp = tempfile.mkdtemp(prefix="dsa-bench-structured-")
    port_file = os.path.join(tmp, "port")
    log = open(os.path.join(tmp, "log"), "w")
    cmd = [head, "--model", model, "--port", "0", "--port-file", port_file,
           "--served-model-name", "bench"]
    env = None
    if mpi:
        # one machine, oversubscribed, shared memory (as tests/mpi/common.sh)
        env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                   OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_mpi_yield_when_idle="1",
                   OMPI_MCA_btl="self,vader", OMPI_MCA_btl_vader_single_copy_mechanism="none",
                   OMPI_MCA_hwloc_base_binding_policy="none", OMPI_MCA_plm_rsh_agent="false")
        common = ["--block-size", "16", "--max-model-len", "2048"]
        cmd = (["mpirun", "--oversubscribe", "-np", "1"] + cmd + common +
               ["--tensor-parallel-size", str(mpi), "--pipeline-parallel-size", "1",
                ":", "-np", str(mpi), worker, "--model", model, "--tp", str(mpi),
                "--threads", "1"] + common)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.time() + 600
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("dsa-head exited; log in " + log.name)
        if os.path.exists(port_file):
            txt = open(port_file).read().strip()
            if txt:
                c = openai.OpenAI(base_url=f"http://127.0.0.1:{txt}/v1", api_key="none",
                                  max_retries=0, timeout=600)
                try:
                    c.models.list()
                    return proc, c
                except (openai.APIConnectionError, openai.InternalServerError):
                    pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("dsa-head did not come up; log in " + log.name)


def one(c, max_tokens, schema):
    kw = {}
    if schema is not None:
        kw["response_format"] = {"type": "json_schema",
                                 "json_schema": {"name": "doc", "schema": schema}}
    stream = c.chat.completions.create(
        model="bench", messages=[{"role": "user", "content": PROMPT}], temperature=0,
        max_tokens=max_tokens, stream=True, stream_options={"include_usage": True},
        extra_body={"ignore_eos": True}, **kw)
    t_first = t_last = None
    n, text, finish = 0, "", None
    for ch in stream:
        now = time.perf_counter()
        if ch.usage:
            n = ch.usage.completion_tokens
        for choice in ch.choices:
            if choice.delta.content:
                text += choice.delta.content
                t_first = t_first or now
                t_last = now
            finish = choice.finish_reason or finish
    if finish != "length" or n != max_tokens:
        raise RuntimeError(f"run ended with {finish!r} after {n} tokens")
    return {"tokens": n, "decode_s": t_last - t_first,
            "tok_s": (n - 1) / (t_last - t_first), "text": text[:80]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--head", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--json")
    ap.add_argument("--mpi", type=int, default=0)
    ap.add_argument("--worker")
    ap.add_argument("--schemas", help="comma-separated names of SCHEMAS (default: all)")
    a = ap.parse_args()
    if a.schemas:
        for k in set(SCHEMAS) - set(a.schemas.split(",")):
            del SCHEMAS[k]
    proc, c = start(a.head, a.model, a.mpi, a.worker)
    runs = []
    try:
        one(c, 8, None)  # warm-up: page the weights in
        for name, schema in SCHEMAS.items():
            one(c, 8, schema)
        for r in range(a.rounds):
            for name, schema in [("none", None)] + list(SCHEMAS.items()):
                res = one(c, a.max_tokens, schema)
                res.update(round=r, mode=name)
                runs.append(res)
                print(f"round {r} {name:20s} {res['tok_s']:8.2f} tok/s", flush=True)
    finally:
        proc.terminate()
        proc.wait(30)
    base = statistics.median(x["tok_s"] for x in runs if x["mode"] == "none")
    print(f"\n{'mode':20s} {'median tok/s':>12s} {'mean tok/s':>10s} {'slowdown':>9s}")
    for name in ["none"] + list(SCHEMAS):
        v = [x["tok_s"] for x in runs if x["mode"] == name]
        med = statistics.median(v)
        print(f"{name:20s} {med:12.2f} {statistics.mean(v):10.2f} "
              f"{(1 - med / base) * 100:8.1f}%")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(runs, f, indent=1)


if __name__ == "__main__":
    main()
