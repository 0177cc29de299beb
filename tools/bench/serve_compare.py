"""serve_compare.py - serving throughput of dsa-head and llama.cpp's
llama-server side by side (docs/perf/cpu.md, "Issue 22: serving against
llama-server"): both servers are started on loopback, then dsa-bench runs
the random dataset against each at every concurrency, engines interleaved
per concurrency, every timed run under `flock LOCK`, the 1-minute load
average noted before each run; at the end each server's peak resident set
(VmHWM) is read from /proc.

llama-server is not built or fetched here: pass the path of a binary built
beside the project (and its LD_LIBRARY_PATH in the environment).

Usage:
  python3 serve_compare.py --dsa-head build/head/dsa-head --model DIR \
      --llama-server /path/llama-server --gguf q8_0.gguf \
      --bench build/tools/dsa-bench [--threads 2 --concurrency 1,4,16 \
      --num-prompts 4,8,32 --input-len 128 --output-len 64 --out DIR]
Either engine may be left out (no --dsa-head, or no --llama-server).
"""
import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url, proc, timeout):
    """Polls url until it answers 200 (llama-server answers 503 while loading)."""
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise RuntimeError(f"{url} not ready within {timeout} s")


def vm_hwm_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def start(engine, a, port, log):
    ctx = a.max_conc * (a.input_len + a.output_len + 16)
    if engine == "dsa":
        cmd = [a.dsa_head, "--model", a.model, "--port", str(port), "--threads", str(a.threads),
               "--max-num-seqs", str(a.max_conc), "--max-model-len", str(a.input_len + a.output_len + 16),
               "--served-model-name", "m", "--disable-log-requests", "--log-level", "warn"]
        ready = f"http://127.0.0.1:{port}/health"
    else:
        # -c is the whole context, split evenly over the -np slots.
        cmd = [a.llama_server, "-m", a.gguf, "--port", str(port), "-t", str(a.threads),
               "-tb", str(a.threads), "-np", str(a.max_conc), "-c", str(ctx), "--cont-batching",
               "--no-webui", "-a", "m"] + a.llama_args
        ready = f"http://127.0.0.1:{port}/health"
    print("start:", " ".join(cmd), flush=True)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    wait_ready(ready, proc, a.ready_timeout)
    return proc


def bench(engine, port, conc, n, a):
    name = f"{engine}-c{conc}.json"
    cmd = ["flock", a.lock, a.bench, "--backend", "openai", "--port", str(port),
           "--served-model-name", "m", "--tokenizer", a.tokenizer, "--dataset-name", "random",
           "--random-input-len", str(a.input_len), "--random-output-len", str(a.output_len),
           "--ignore-eos", "--max-concurrency", str(conc), "--num-prompts", str(n),
           "--disable-tqdm", "--save-result", "--result-dir", a.out, "--result-filename", name,
           "--temperature", "0"]
    load = loadavg()
    t0 = time.time()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(a.out, name)) as f:
        r = json.load(f)
    return dict(engine=engine, concurrency=conc, prompts=n, load=load, wall_s=time.time() - t0,
                completed=r.get("completed"), output_tok_s=r.get("output_throughput"),
                tpot_ms=r.get("median_tpot_ms"), ttft_ms=r.get("median_ttft_ms"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dsa-head")
    ap.add_argument("--model", help="our checkpoint directory (also the tokenizer by default)")
    ap.add_argument("--llama-server")
    ap.add_argument("--gguf")
    ap.add_argument("--llama-args", nargs="*", default=[], help="extra llama-server arguments")
    ap.add_argument("--bench", default="build/tools/dsa-bench")
    ap.add_argument("--tokenizer")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--num-prompts", default="4,8,32")
    ap.add_argument("--input-len", type=int, default=128)
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument("--lock", default="/tmp/dsa-bench.lock",
                    help="each timed run holds this file's flock, so two benchmarks never overlap")
    ap.add_argument("--ready-timeout", type=float, default=600)
    ap.add_argument("--out", default="serve-compare")
    a = ap.parse_args()
    concs = [int(x) for x in a.concurrency.split(",")]
    ns = [int(x) for x in a.num_prompts.split(",")]
    if len(ns) != len(concs):
        sys.exit("--num-prompts needs one count per --concurrency")
    a.max_conc = max(concs)
    a.tokenizer = a.tokenizer or a.model
    engines = [e for e, on in (("dsa", a.dsa_head and a.model), ("llama", a.llama_server and a.gguf)) if on]
    if not engines or not a.tokenizer:
        sys.exit("give --dsa-head and --model, and/or --llama-server and --gguf (and --tokenizer)")
    os.makedirs(a.out, exist_ok=True)
    # SIGTERM (timeout(1), a killed job) must still stop the servers below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("serve_compare: terminated"))
    procs, ports, rows = {}, {}, []
    try:
        for e in engines:
            ports[e] = free_port()
            log = open(os.path.join(a.out, f"{e}-server.log"), "w")
            procs[e] = start(e, a, ports[e], log)
        for conc, n in zip(concs, ns):
            for e in engines:
                row = bench(e, ports[e], conc, n, a)
                rows.append(row)
                print(json.dumps(row), flush=True)
        for e in engines:
            rss = vm_hwm_mb(procs[e].pid)
            rows.append(dict(engine=e, peak_rss_mb=rss))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        for p in procs.values():
            p.terminate()
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        with open(os.path.join(a.out, "summary.json"), "w") as f:
            json.dump(rows, f, indent=1)
    print("| engine | concurrency | prompts | out tok/s | TPOT ms | TTFT ms | load |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if "concurrency" in r:
            print(f"| {r['engine']} | {r['concurrency']} | {r['prompts']} | {r['output_tok_s']:.2f} | "
                  f"{r['tpot_ms']:.0f} | {r['ttft_ms']:.0f} | {r['load']:.1f} |")
    for r in rows:
        if "peak_rss_mb" in r:
            print(f"peak RSS {r['engine']}: {r['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
