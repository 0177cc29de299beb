#!/usr/bin/env python3
"""Speculative decoding with DeepSeek's MTP module on the CPU backend
(docs/perf/mtp.md): for k = 0..3 drafts, one dsa-head each, the chat
questions below answered greedily at concurrency 1 and 8 with streaming;
reports per-request decode speed ((tokens - 1) / (last token time - first
token time), median over requests), the acceptance rate per draft position
and the mean accepted length ((drafts + accepted) / drafts: tokens a
verification step emits) from /metrics, and the CPU time per generated
token of dsa-head and of this client (/proc, process_time).  A benchmark, never a test:
numbers depend on the machine and its load.

Usage: mtp_bench.py --head build/head/dsa-head --model models/dsa-tiny-r1
       [--threads 1] [--max-tokens 200] [--ks 0,1,2,3] [--concs 1,8]
       [--rounds 1]   (tools/pyenv.sh venv)"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import openai
from prometheus_client.parser import text_string_to_metric_families

SYSTEM = "You are a helpful assistant."
QUESTIONS = ['How many times does the letter "e" appear in "engineer"?', "What is 58 + 67?",
             'How many times does the letter "h" appear in "sleeping"?', "What is 12 * 31?",
             'How many times does the letter "s" appear in "mississippi"?',
             "What is 1000 - 1?", 'How many times does the letter "r" appear in "error"?',
             "What is 77 + 45?"]


def start(a, k):
    d = tempfile.mkdtemp()
    pf = os.path.join(d, "port")
    args = [a.head, "--model", a.model, "--served-model-name", "m", "--port", "0",
            "--port-file", pf, "--threads",
            str(a.threads), "--log-format", "text", "--disable-log-requests"]
    if k:
        args += ["--speculative-config",
                 json.dumps({"method": "deepseek_mtp", "num_speculative_tokens": k})]
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not (os.path.exists(pf) and open(pf).read().strip()):
        if p.poll() is not None:
            raise SystemExit(f"dsa-head exited: {args}")
        time.sleep(0.1)
    port = int(open(pf).read())
    while True:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/health").status == 200:
                return p, port
        except Exception:
            time.sleep(0.1)


def cpu_s(pid):
    """CPU seconds (user + system) the process pid has used so far."""
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def metrics(port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[s.name + s.labels.get("position", "")] = s.value
    return out


def one(client, q, max_tokens):
    """Streams one answer; returns (tokens, seconds from first to last token)."""
    msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}]
    times, n = [], 0
    for ch in client.chat.completions.create(model="m", messages=msgs, temperature=0,
                                             max_tokens=max_tokens, stream=True,
                                             stream_options={"include_usage": True}):
        if ch.choices and (ch.choices[0].delta.content or
                           getattr(ch.choices[0].delta, "reasoning_content", None)):
            times.append(time.perf_counter())
        if ch.usage:
            n = ch.usage.completion_tokens
    return n, (times[-1] - times[0]) if len(times) > 1 else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--head", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-tokens", type=int, default=200)
    ap.add_argument("--ks", default="0,1,2,3")
    ap.add_argument("--concs", default="1,8", help="concurrencies to run, e.g. 1 for profiling")
    ap.add_argument("--rounds", type=int, default=1,
                    help="ask each concurrency's questions this many times (more requests "
                         "in each median on a noisy machine)")
    a = ap.parse_args()
    rows = []
    for k in [int(x) for x in a.ks.split(",")]:
        p, port = start(a, k)
        try:
            run_k(a, k, port, rows, p.pid)
        finally:
            p.terminate()
            p.wait(60)
    report(rows)


def run_k(a, k, port, rows, pid):
    if True:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x",
                               max_retries=0, timeout=600)
        one(client, QUESTIONS[0], 16)  # warm-up
        for conc in [int(x) for x in a.concs.split(",")]:
            m0 = metrics(port)
            c0, cc0 = cpu_s(pid), time.process_time()
            t0 = time.perf_counter()
            with ThreadPoolExecutor(conc) as ex:
                res = list(ex.map(lambda q: one(client, q, a.max_tokens),
                                  (QUESTIONS if conc > 1 else QUESTIONS[:4]) * a.rounds))
            wall = time.perf_counter() - t0
            c1, cc1 = cpu_s(pid), time.process_time()
            m1 = metrics(port)
            speeds = [(n - 1) / s for n, s in res if s > 0 and n > 1]
            d = lambda name: m1.get(name, 0) - m0.get(name, 0)
            drafts = d("vllm:spec_decode_num_drafts_total")
            acc = d("vllm:spec_decode_num_accepted_tokens_total")
            per_pos = [d(f"vllm:spec_decode_num_accepted_tokens_per_pos_total{j}") /
                       drafts if drafts else 0 for j in range(k)]
            row = {"k": k, "concurrency": conc, "requests": len(res),
                   "tokens": sum(n for n, _ in res),
                   "decode_tok_s_per_request_median": statistics.median(speeds),
                   "throughput_tok_s": sum(n for n, _ in res) / wall,
                   "acceptance_per_position": [round(x, 3) for x in per_pos],
                   "mean_accepted_length": round(1 + acc / drafts, 3) if drafts else 1.0,
                   # CPU time per generated token: dsa-head (all threads) and this client;
                   # steadier than wall time on a shared machine
                   "head_cpu_ms_per_token": round(1e3 * (c1 - c0) / sum(n for n, _ in res), 4),
                   "client_cpu_ms_per_token": round(1e3 * (cc1 - cc0) / sum(n for n, _ in res), 4)}
            rows.append(row)
            print(json.dumps(row), flush=True)


def report(rows):
    base = {r["concurrency"]: r["decode_tok_s_per_request_median"] for r in rows if r["k"] == 0}
    print("\n| k | concurrency | decode tok/s per request (median) | speed-up | "
          "acceptance per position | mean accepted length | throughput tok/s | "
          "head CPU ms/token | client CPU ms/token |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        sp = r["decode_tok_s_per_request_median"] / base[r["concurrency"]] \
            if r["concurrency"] in base else float("nan")
        print(f"| {r['k']} | {r['concurrency']} | {r['decode_tok_s_per_request_median']:.1f} | "
              f"{sp:.2f}x | {', '.join(f'{x:.2f}' for x in r['acceptance_per_position']) or '-'}"
              f" | {r['mean_accepted_length']:.2f} | {r['throughput_tok_s']:.1f} | "
              f"{r['head_cpu_ms_per_token']:.3f} | {r['client_cpu_ms_per_token']:.3f} |")


if __name__ == "__main__":
    main()
