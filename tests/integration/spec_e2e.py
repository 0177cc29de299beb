#!/usr/bin/env python3
"""dsa-head --speculative-config end to end (issue 17), with the official
openai client against the real server on loopback:

 - the trained models/dsa-tiny-r1 served without drafts and with
   {"method": "deepseek_mtp", "num_speculative_tokens": k}, k = 1 and 3:
   the same 8 chat answers (4 at a time; greedy, one streamed with
   logprobs, one with logprobs, one cut by max_tokens, one by a stop
   string, one n = 2 seeded sampled with top_p and a penalty), byte for
   byte, token logprobs included; the streamed answer comes one chunk per
   token without drafts and, as vLLM streams, one chunk per step with them
   (fewer chunks than tokens);
 - the same under mpirun, dsa-head driving TP=2 x PP=2 dsa-worker ranks, all
   with num_speculative_tokens 2 (skipped without mpirun, except CI=true);
 - /metrics (parsed by prometheus_client) carries vLLM's spec-decode
   counters, consistent (per-position counts sum to the accepted tokens and
   never rise with the position) and non-zero;
 - bad --speculative-config values exit 2 with a message naming the field,
   and a checkpoint without an MTP layer fails start-up saying why.

Usage: spec_e2e.py BUILD_DIR SOURCE_DIR"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import openai
from prometheus_client.parser import text_string_to_metric_families

BUILD, SRC = sys.argv[1], sys.argv[2]
HEAD = os.path.join(BUILD, "head", "dsa-head")
WORKER = os.path.join(BUILD, "worker", "dsa-worker")
MPI_ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_mpi_yield_when_idle="1",
               OMPI_MCA_btl="self,vader", OMPI_MCA_btl_vader_single_copy_mechanism="none",
               OMPI_MCA_hwloc_base_binding_policy="none", OMPI_MCA_plm_rsh_agent="false",
               OMPI_MCA_rmaps_base_mapping_policy=":oversubscribe")
MODEL = os.path.join(SRC, "models", "dsa-tiny-r1")
SYSTEM = "You are a helpful assistant."
QUESTIONS = ['How many times does the letter "e" appear in "engineer"?', "What is 58 + 67?",
             "What is the weather in Rome?", 'Spell "sleeping".', "What is 12 * 3?",
             'How many times does the letter "s" appear in "mississippi"?',
             "Say hello.", "What is 1000 - 1?"]


class Server:
    def __init__(self, *args, workers=None):
        """workers: None (in-process), else extra dsa-worker arguments: the
        head under mpirun with TP=2 x PP=2 workers."""
        self.dir = tempfile.mkdtemp()
        pf = os.path.join(self.dir, "port")
        self.log = open(os.path.join(self.dir, "log"), "w+")
        cmd = [HEAD, "--model", MODEL, "--port", "0", "--port-file", pf, "--threads", "1",
               "--max-model-len", "1024", "--log-format", "text", "--disable-log-requests",
               *args]
        if workers is not None:
            cmd = ["mpirun", "--oversubscribe", "-np", "1", *cmd, "--block-size", "16",
                   ":", "-np", "4", WORKER, "--model", MODEL, "--tp", "2", "--threads", "1",
                   "--block-size", "16", "--max-model-len", "1024", "--num-blocks", "256",
                   "--max-num-seqs", "8", *workers]
        self.p = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                  env=MPI_ENV if workers is not None else None)
        t0 = time.time()
        while not os.path.exists(pf) or not open(pf).read().strip():
            if self.p.poll() is not None or time.time() - t0 > 180:
                self.log.seek(0)
                raise RuntimeError("server did not start: " + self.log.read()[-2000:])
            time.sleep(0.1)
        self.port = int(open(pf).read())
        while True:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health").status == 200:
                    break
            except Exception:
                pass
            if time.time() - t0 > 180:
                raise RuntimeError("server never healthy")
            time.sleep(0.1)
        self.client = openai.OpenAI(base_url=f"http://127.0.0.1:{self.port}/v1", api_key="x",
                                    max_retries=0, timeout=300)

    def metrics(self):
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics").read().decode()
        out = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                key = s.name + ("" if "position" not in s.labels
                                else "[" + s.labels["position"] + "]")
                out[key] = s.value
        return out

    def close(self):
        self.p.terminate()
        self.p.wait(60)
        self.log.close()


def ask(c, i):
    msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTIONS[i]}]
    kw = dict(model="dsa-tiny-r1", messages=msgs, temperature=0, max_tokens=160)
    if i == 2:
        kw["max_tokens"] = 37
    if i == 3:
        kw["stop"] = [" e"]
    if i == 1:
        kw.update(logprobs=True, top_logprobs=2)
    if i == 4:  # n = 2 sampled choices, seeded: the same with and without drafts
        kw.update(n=2, temperature=0.8, seed=5, top_p=0.95, frequency_penalty=0.3)
    if i == 5:
        text, lps, chunks = [], [], 0
        for ch in c.chat.completions.create(stream=True, logprobs=True, **kw):
            if ch.choices and ch.choices[0].delta.content:
                text.append(ch.choices[0].delta.content)
            if ch.choices and ch.choices[0].logprobs and ch.choices[0].logprobs.content:
                chunks += 1
                lps += [(t.token, round(t.logprob, 4)) for t in ch.choices[0].logprobs.content]
        # _chunks: chunks with tokens (not compared across servers)
        return {"content": "".join(text), "logprobs": lps, "_chunks": chunks}
    r = c.chat.completions.create(**kw)
    ch = r.choices[0]
    out = {"content": [c.message.content for c in r.choices], "finish": ch.finish_reason,
           "reasoning": getattr(ch.message, "reasoning_content", None),
           "usage": r.usage.completion_tokens}
    if ch.logprobs:
        out["logprobs"] = [(t.token, round(t.logprob, 4), [x.token for x in t.top_logprobs])
                           for t in ch.logprobs.content]
    return out


def answers(server):
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(4) as ex:
        return list(ex.map(lambda i: ask(server.client, i), range(len(QUESTIONS))))


def chunks_of(got):
    """The streamed answer's (chunks with tokens, tokens); the answers
    without the chunk count, to compare."""
    s = got[5]
    return (s.pop("_chunks"), len(s["logprobs"])), got


def start_fails(args, model, want):
    r = subprocess.run([HEAD, "--model", model, "--port", "0", *args], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode != 0, f"{args}: started"
    assert want in r.stderr + r.stdout, f"{args}: {r.stderr[-500:]}"


def main():
    failures = 0
    base = Server()
    (n_chunks, n_tok), want = chunks_of(answers(base))
    base.close()
    assert n_tok > 1 and n_chunks == n_tok, f"without drafts: {n_chunks} chunks, {n_tok} tokens"
    for k in (1, 3):
        s = Server("--speculative-config",
                   json.dumps({"method": "deepseek_mtp", "num_speculative_tokens": k}))
        (n_chunks, n_tok), got = chunks_of(answers(s))
        m = s.metrics()
        s.close()
        for i, (a, b) in enumerate(zip(want, got)):
            if a != b:
                failures += 1
                print(f"k={k} question {i}: differs\n  without: {a}\n  with:    {b}")
        print(f"k={k}: the streamed answer's {n_tok} tokens in {n_chunks} chunks")
        assert n_chunks < n_tok, f"k={k}: {n_chunks} chunks for {n_tok} tokens"
        drafts = m["vllm:spec_decode_num_drafts_total"]
        toks = m["vllm:spec_decode_num_draft_tokens_total"]
        acc = m["vllm:spec_decode_num_accepted_tokens_total"]
        pos = [m[f"vllm:spec_decode_num_accepted_tokens_per_pos_total[{j}]"] for j in range(k)]
        print(f"k={k}: {drafts:.0f} drafts, {toks:.0f} draft tokens, {acc:.0f} accepted, "
              f"per position {pos}, mean accepted length {1 + acc / max(drafts, 1):.2f}")
        assert drafts > 0 and acc > 0, "no drafts or none accepted"
        assert toks <= drafts * k and acc <= toks
        assert sum(pos) == acc and all(pos[j] <= pos[j - 1] for j in range(1, k))
    # TP=2 x PP=2 workers under mpirun, drafts on the head and the workers
    if shutil.which("mpirun") and os.access(WORKER, os.X_OK):
        spec = json.dumps({"method": "deepseek_mtp", "num_speculative_tokens": 2})
        s = Server("--speculative-config", spec, workers=["--speculative-config", spec])
        _, got = chunks_of(answers(s))
        m = s.metrics()
        s.close()
        for i, (a, b) in enumerate(zip(want, got)):
            if a != b:
                failures += 1
                print(f"mpirun TP=2 x PP=2 k=2 question {i}: differs\n  without: {a}\n"
                      f"  with:    {b}")
        acc = m["vllm:spec_decode_num_accepted_tokens_total"]
        print(f"mpirun TP=2 x PP=2 k=2: {m['vllm:spec_decode_num_drafts_total']:.0f} drafts, "
              f"{acc:.0f} accepted")
        assert acc > 0, "no draft accepted under mpirun"
    elif os.environ.get("CI") == "true":
        raise SystemExit("mpirun or dsa-worker missing under CI")
    else:
        print("spec_e2e: no mpirun or dsa-worker: the TP=2 x PP=2 part is skipped")
    start_fails(["--speculative-config", '{"method": "ngram", "num_speculative_tokens": 2}'],
                MODEL, "'method'")
    start_fails(["--speculative-config", '{"method": "deepseek_mtp", "num_speculative_tokens": 0}'],
                MODEL, "'num_speculative_tokens'")
    start_fails(["--speculative-config", '{"method": "deepseek_mtp", "prompt_lookup_max": 3}'],
                MODEL, "'prompt_lookup_max'")
    start_fails(["--speculative-config", "deepseek_mtp"], MODEL, "JSON object")
    start_fails(["--speculative-config", '{"method": "deepseek_mtp"}'],
                os.path.join(SRC, "tests", "data", "golden", "tiny-fp8"), "num_nextn_predict_layers")
    if failures:
        print(f"{failures} answers differ")
        return 1
    print("spec_e2e: all answers equal with and without drafts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
