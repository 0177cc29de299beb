#!/usr/bin/env python3
"""Golden logits of DeepSeek-V3's MTP module (tests/data/golden/<name>/mtp.json
+ mtp_logits.bin, read by tests/test_mtp.c).

The reference is the training tool's module (tools/train/model.py, class
MTP): transformers' DeepseekV3ForCausalLM gives h, the final hidden state
after the final norm, and at every position i < T-1
    x = eh_proj([enorm(embed(t_{i+1})) ; hnorm(h_i)])
    x = DeepseekV3DecoderLayer(x) (causal, positions 0..T-2)
    logits_i = shared_head.head(shared_head.norm(x))
float32 on the CPU, fed the checkpoint's exact values (make_golden's
read_dequantised).  The tokens are `prompt` followed by the main model's
greedy continuation, so the MTP sees the states it sees while decoding.

Usage: mtp_golden.py --model DIR --out DIR [--prompt-from golden.json | --seed N]
       (run with the tools/train/venv.sh environment)
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM
from transformers.masking_utils import create_causal_mask

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "train"))
import make_golden as G  # noqa: E402
from model import MTP  # noqa: E402  (tools/train/model.py)

GEN_TOKENS = 16


def hf_config(model_dir):
    hc = DeepseekV3Config.from_pretrained(model_dir)
    if hasattr(hc, "quantization_config"):
        del hc.quantization_config
    hc._attn_implementation = "eager"
    return hc


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--prompt-from", help="golden.json whose first prompt to use")
    ap.add_argument("--seed", type=int, default=0, help="random prompt of 12 ids")
    a = ap.parse_args()
    torch.set_num_threads(1)
    with open(os.path.join(a.model, "config.json")) as f:
        cj = json.load(f)
    N = cj["num_hidden_layers"]
    assert cj.get("num_nextn_predict_layers", 0) >= 1, "no MTP layer in the checkpoint"
    exact = G.read_dequantised(a.model)
    main_t = {k: v for k, v in exact.items() if not k.startswith(f"model.layers.{N}.")}
    cfg = dict(cj)
    cfg.update(yarn=None)
    hc = hf_config(a.model)
    model = DeepseekV3ForCausalLM(hc).to(torch.float32).eval()
    model.load_state_dict(G.hf_state_dict(cfg, main_t), strict=True)
    G.check_hf_semantics(cfg, model)

    # the MTP layer: DeepSeek's names -> model.py's module (experts fused as
    # transformers 5 stores them, through make_golden's mapping)
    cfg_mtp = dict(cfg)
    cfg_mtp["num_hidden_layers"] = N + 1
    fused = G.hf_state_dict(cfg_mtp, exact)
    p = f"model.layers.{N}."
    mtp = MTP(hc).to(torch.float32).eval()
    sd = {"enorm.weight": fused[p + "enorm.weight"], "hnorm.weight": fused[p + "hnorm.weight"],
          "eh_proj.weight": fused[p + "eh_proj.weight"],
          "norm.weight": fused[p + "shared_head.norm.weight"]}
    skip = ("enorm.", "hnorm.", "eh_proj.", "shared_head.", "embed_tokens.")
    for k, v in fused.items():
        if k.startswith(p) and not k[len(p):].startswith(skip):
            sd["layer." + k[len(p):]] = v
    mtp.load_state_dict(sd, strict=True)
    embed = fused[p + "embed_tokens.weight"]
    head = fused[p + "shared_head.head.weight"]

    if a.prompt_from:
        with open(a.prompt_from) as f:
            prompt = json.load(f)["sequences"][0]["prompt"]
    else:
        g = np.random.default_rng(a.seed)
        prompt = [int(x) for x in g.integers(3, cj["vocab_size"], 12)]
    ids = list(prompt)
    for _ in range(GEN_TOKENS):
        ids.append(int(torch.argmax(model(torch.tensor([ids])).logits[0, -1])))

    T = len(ids)
    t = torch.tensor([ids])
    h = model.model(input_ids=t).last_hidden_state          # after the final norm
    emb = torch.nn.functional.embedding(t[:, 1:], embed)     # t_{i+1}
    x = mtp.eh_proj(torch.cat([mtp.enorm(emb), mtp.hnorm(h[:, :-1])], -1))
    pos = torch.arange(T - 1).unsqueeze(0)
    mask = create_causal_mask(config=hc, inputs_embeds=x,
                              attention_mask=torch.ones(1, T - 1, dtype=torch.long),
                              past_key_values=None, position_ids=pos)
    pe = model.model.rotary_emb(x, pos)
    x = mtp.layer(x, attention_mask=mask, position_ids=pos, position_embeddings=pe)
    if isinstance(x, tuple):
        x = x[0]
    logits = (mtp.norm(x) @ head.t())[0].float().numpy().astype("<f4")

    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "mtp_logits.bin"), "wb") as f:
        f.write(np.ascontiguousarray(logits).tobytes())
    top = logits.argmax(-1)
    agree = float(np.mean(top[:-1] == np.array(ids[2:])))
    golden = {"model_dir": os.path.relpath(os.path.abspath(a.model), os.path.abspath(a.out)),
              "vocab_size": cj["vocab_size"], "tokens": ids, "n_prompt": len(prompt),
              "n_rows": int(logits.shape[0]),
              "mtp_top1_matches_next_next": agree,
              "note": "row i: MTP logits at position i (input t[i+1], scores t[i+2])"}
    with open(os.path.join(a.out, "mtp.json"), "w") as f:
        json.dump(golden, f, indent=1)
        f.write("\n")
    print(f"{a.out}: {T - 1} rows, MTP argmax == t[i+2] on {agree:.2f} of them")


if __name__ == "__main__":
    main()
