#!/usr/bin/env python3
"""Fast greedy exact-match check in Python (no server): for ablations and
for watching a run. Held-out problems as eval.py picks them (seed 2, minus
the training corpus). The model is a training state (--run: train.py's
state.pt, in float32, or through FP8 rounding with --fp8) or a converted
checkpoint (--model: read back exactly as golden.py does, main model only).

A problem is right when the completion's answer (after </think>) equals
the expected text; a tool conversation when both assistant turns equal the
corpus's completions (the call block and the final answer).

Usage: quick.py (--run DIR --tokenizer DIR | --model DIR) [--problems 100] [--tools 20]
                [--json OUT]
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
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))


@torch.no_grad()
def greedy(lm, ids, max_new, eos=1):
    x = torch.tensor([ids])
    out = lm.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=max_new,
                      do_sample=False, eos_token_id=eos, pad_token_id=eos, use_cache=True)
    return out[0, len(ids):].tolist()


def load_state(run, fp8):
    with open(os.path.join(run, "log.json")) as f:
        cfgd = json.load(f)["config"]
    keep = {k: cfgd[k] for k in M.DEFAULT if k in cfgd}
    net = M.TinyV3(M.make_config(cfgd["vocab_size"], **keep))
    sd = torch.load(os.path.join(run, "state.pt"))
    if fp8:
        sd = {k: (M.fake_fp8(v) if M.is_fp8_param(k) else v) for k, v in sd.items()}
    net.load_state_dict(sd)
    lm = net.lm.eval()
    lm.config.use_cache = True
    return lm


def load_checkpoint(model_dir):
    """The checkpoint's main model in transformers, as golden.py builds it."""
    sys.path.insert(0, os.path.join(HERE, "..", "golden"))
    import make_golden as G
    with open(os.path.join(model_dir, "config.json")) as f:
        cj = json.load(f)
    n = cj["num_hidden_layers"]
    exact = {k: v for k, v in G.read_dequantised(model_dir).items()
             if not k.startswith(f"model.layers.{n}.")}
    cfg = dict(cj, yarn=None, dtype="fp8", name="quick")
    hc = DeepseekV3Config.from_pretrained(model_dir)
    if hasattr(hc, "quantization_config"):
        del hc.quantization_config
    hc.use_cache = True
    lm = DeepseekV3ForCausalLM(hc).to(torch.float32).eval()
    lm.load_state_dict(G.hf_state_dict(cfg, exact), strict=True)
    return lm


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--run", help="train.py's output directory (state.pt, log.json)")
    g.add_argument("--model", help="a converted checkpoint directory")
    ap.add_argument("--tokenizer", help="the tokenizer directory of --run")
    ap.add_argument("--problems", type=int, default=100)
    ap.add_argument("--tools", type=int, default=20)
    ap.add_argument("--train-n", type=int, default=100000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--fp8", action="store_true")
    ap.add_argument("--show", type=int, default=5, help="failures printed")
    ap.add_argument("--json", help="write every problem's answer here")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.model:
        tok = Tokenizer.from_file(os.path.join(a.model, "tokenizer.json"))
        lm = load_checkpoint(a.model)
    else:
        tok = Tokenizer.from_file(os.path.join(a.tokenizer, "tokenizer.json"))
        lm = load_state(a.run, a.fp8)
    probs, tools = corpus.held_out(2, a.problems, a.tools, 1, a.train_n)
    t0 = time.time()
    by, fails, rows = {}, [], []

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
        rows.append({"question": p["question"], "content": got, "ok": ok})
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
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1, ensure_ascii=False)
    for q, t in fails[:a.show]:
        print("FAIL", json.dumps(q), json.dumps(t)[:300])


if __name__ == "__main__":
    sys.exit(main())
