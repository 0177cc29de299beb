#!/usr/bin/env python3
"""Fast greedy exact-match check of a training state in Python (no server):
for ablations and for watching a run. Held-out problems as eval.py picks
them (seed 2, minus the training corpus); the model runs in float32, or
through FP8 rounding with --fp8 (what the checkpoint serves).

A problem is right when the completion's answer (after </think>) equals
the expected text; a tool conversation when both assistant turns equal the
corpus's completions (the call block and the final answer).

Usage: quick.py --run DIR --tokenizer DIR [--problems 100] [--tools 20]
"""
import argparse
import json
import os
import sys
import time

import torch
from tokenizers import Tokenizer

import corpus
import model as M


@torch.no_grad()
def greedy(lm, ids, max_new, eos=1):
    x = torch.tensor([ids])
    out = lm.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=max_new,
                      do_sample=False, eos_token_id=eos, pad_token_id=eos, use_cache=True)
    return out[0, len(ids):].tolist()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--problems", type=int, default=100)
    ap.add_argument("--tools", type=int, default=20)
    ap.add_argument("--train-n", type=int, default=60000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--fp8", action="store_true")
    ap.add_argument("--show", type=int, default=5, help="failures printed")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    tok = Tokenizer.from_file(os.path.join(a.tokenizer, "tokenizer.json"))
    with open(os.path.join(a.run, "log.json")) as f:
        cfgd = json.load(f)["config"]
    keep = {k: cfgd[k] for k in M.DEFAULT if k in cfgd}
    cfg = M.make_config(cfgd["vocab_size"], **keep)
    net = M.TinyV3(cfg)
    sd = torch.load(os.path.join(a.run, "state.pt"))
    if a.fp8:
        sd = {k: (M.fake_fp8(v) if M.is_fp8_param(k) else v) for k, v in sd.items()}
    net.load_state_dict(sd)
    net.eval()
    lm = net.lm
    lm.config.use_cache = True
    probs, tools = corpus.held_out(2, a.problems, a.tools, 1, a.train_n)
    t0 = time.time()
    by, fails = {}, []

    def complete(prompt):
        ids = greedy(lm, tok.encode(prompt, add_special_tokens=False).ids, 160)
        return tok.decode(ids, skip_special_tokens=False)

    for p in probs:
        text = complete(p["prompt"])
        got = text.split("</think>\n\n", 1)[-1].replace(corpus.EOS, "")
        ok = got == p["content"]
        by.setdefault(p["kind"], [0, 0])
        by[p["kind"]][0] += ok
        by[p["kind"]][1] += 1
        if not ok:
            fails.append((p["question"], text))
    for p in tools:
        c1 = complete(p["prompt1"])
        c2 = complete(p["prompt2"])
        ok1 = c1 == p["completion1"]
        ok2 = c2 == p["completion2"]
        for k, ok in (("tool_call", ok1), ("tool_answer", ok2)):
            by.setdefault(k, [0, 0])
            by[k][0] += ok
            by[k][1] += 1
        if not (ok1 and ok2):
            fails.append((p["user"], c1 + " || " + c2))
    n_ok = sum(v[0] for k, v in by.items() if not k.startswith("tool"))
    print(json.dumps({"problems": len(probs), "accuracy": n_ok / max(1, len(probs)),
                      "by_kind": by, "seconds": round(time.time() - t0, 1)}))
    for q, t in fails[:a.show]:
        print("FAIL", json.dumps(q), json.dumps(t)[:300])


if __name__ == "__main__":
    sys.exit(main())
