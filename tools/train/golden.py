#!/usr/bin/env python3
"""Golden logits of the trained checkpoint (tests/data/golden/dsa-tiny-r1):
what transformers' DeepseekV3ForCausalLM computes for the committed
checkpoint, in the format of tools/golden/make_golden.py (golden.json +
logits.bin, read by tests/test_golden.c), with `model_dir` pointing at the
checkpoint instead of a copy of it.

The reference is float32 on the CPU, fed the checkpoint's exact values read
back from the files (BF16 widened, FP8 dequantised as q * weight_scale_inv
per 128x128 block); transformers ignores the MTP layer, and so must the C
engine. The prompts are real chat prompts (R1 template) of held-out
problems, so the greedy tokens are the model's working; the script also
checks make_golden's independent float64 implementation of MODEL_SPEC
against transformers on them, and records the smallest greedy and router
margins.

Usage: golden.py --model models/dsa-tiny-r1 --out tests/data/golden/dsa-tiny-r1
"""
import argparse
import json
import math
import os
import platform
import sys

import numpy as np
import safetensors
import safetensors.torch
import torch
import transformers
from tokenizers import Tokenizer
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "golden"))
sys.path.insert(0, HERE)
import make_golden as G  # noqa: E402
import corpus  # noqa: E402

GEN_TOKENS = 24
QUESTIONS = ["What is 58 + 67?", 'How many times does the letter "e" appear in "engineer"?']


def read_exact(model_dir):
    return G.read_dequantised(model_dir)


class Probe(G.RouterProbe):
    """make_golden's router probe (smallest gap at every group and expert
    cut), also counting the biased scores <= 0 it would otherwise report as
    a gap of -1: trained correction biases go negative, which only matters
    to implementations that mask dropped groups with 0 instead of -inf
    (MODEL_SPEC section 5; transformers 5 and this engine use -inf)."""

    def __init__(self, model, cfg):
        super().__init__(model, cfg)
        self.n_nonpositive = 0

    def hook(self, mod, inputs, output):
        x = inputs[0].reshape(-1, mod.hidden_dim).float()
        sc = torch.sigmoid(x @ mod.weight.float().t()) + mod.e_score_correction_bias
        self.n_nonpositive += int((sc <= 0).sum())
        saved = mod.e_score_correction_bias.clone()
        # the gaps do not change when every biased score moves by the same amount
        mod.e_score_correction_bias += 2.0
        try:
            super().hook(mod, inputs, output)
        finally:
            mod.e_score_correction_bias.copy_(saved)


@torch.no_grad()
def run(model, prompt):
    ids = list(prompt)
    for _ in range(GEN_TOKENS):
        ids.append(int(torch.argmax(model(torch.tensor([ids])).logits[0, -1])))
    greedy = ids[len(prompt):]
    full = model(torch.tensor([ids])).logits[0].float()
    margin = math.inf
    for t in range(GEN_TOKENS):
        top2 = torch.topk(full[len(prompt) - 1 + t], 2)
        assert int(top2.indices[0]) == greedy[t]
        margin = min(margin, float(top2.values[0] - top2.values[1]))
    return greedy, full.numpy().astype("<f4"), margin


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(1)
    with open(os.path.join(a.model, "config.json")) as f:
        cj = json.load(f)
    N = cj["num_hidden_layers"]
    exact = {k: v for k, v in read_exact(a.model).items()
             if not k.startswith(f"model.layers.{N}.")}
    cfg = {k: cj[k] for k in cj}
    cfg.update(yarn=None, dtype="fp8", name="dsa-tiny-r1")
    hc = DeepseekV3Config.from_pretrained(a.model)
    if hasattr(hc, "quantization_config"):
        del hc.quantization_config
    hc._attn_implementation = "eager"
    model = DeepseekV3ForCausalLM(hc).to(torch.float32).eval()
    model.load_state_dict(G.hf_state_dict(cfg, exact), strict=True)
    G.check_hf_semantics(cfg, model)

    tok = Tokenizer.from_file(os.path.join(a.model, "tokenizer.json"))
    prompts = [tok.encode(corpus.render_r1([{"role": "system", "content": corpus.SYSTEM},
                                            {"role": "user", "content": q}]),
                          add_special_tokens=False).ids for q in QUESTIONS]
    probe = Probe(model, cfg)
    results = [run(model, p) for p in prompts]
    probe.close()
    spec = max(float(np.abs(G.spec_logits(cfg, exact, p + g).numpy() - l).max())
               for p, (g, l, _) in zip(prompts, results))
    assert spec < 1e-3, f"transformers differs from MODEL_SPEC by {spec}"

    os.makedirs(a.out, exist_ok=True)
    seqs, offset = [], 0
    with open(os.path.join(a.out, "logits.bin"), "wb") as f:
        for p, (greedy, logits, margin) in zip(prompts, results):
            f.write(np.ascontiguousarray(logits).tobytes())
            seqs.append({"prompt": p, "greedy": greedy, "n_rows": logits.shape[0],
                         "logits_offset": offset, "min_margin": margin,
                         "text": tok.decode(greedy, skip_special_tokens=False)})
            offset += logits.size
    golden = {
        "name": "dsa-tiny-r1", "dtype": "fp8", "vocab_size": cj["vocab_size"],
        "model_dir": os.path.relpath(os.path.abspath(a.model), os.path.abspath(a.out)),
        "questions": QUESTIONS, "tolerance_note": G.TOLERANCE_NOTE,
        "router_min_margin": probe.min_gap,
        "router_nonpositive_biased_scores": probe.n_nonpositive, "spec_reference_max_abs_diff": spec,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__,
                     "safetensors": safetensors.__version__, "numpy": np.__version__},
        "sequences": seqs,
    }
    with open(os.path.join(a.out, "golden.json"), "w") as f:
        json.dump(golden, f, indent=2, ensure_ascii=False)
        f.write("\n")
    print(f"{a.out}: margins {[round(s['min_margin'], 3) for s in seqs]}, router gap "
          f"{probe.min_gap:.3g}, spec diff {spec:.2e}")
    for s in seqs:
        print(repr(s["text"]))


if __name__ == "__main__":
    main()
