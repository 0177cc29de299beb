#!/usr/bin/env python3
"""Writes a trained state (train.py's state.pt) as a DeepSeek-V3 checkpoint
in DeepSeek's published layout and format.

- every linear weight of attention, dense MLP, experts, shared experts and
  the MTP's eh_proj: FP8 e4m3 with an F32 `weight_scale_inv` per 128x128
  block (tools/golden/make_golden.py's quantise_fp8, the same rounding the
  golden checkpoints use);
- norms, embedding, lm_head, router weights (`mlp.gate.weight`): BF16;
  `e_score_correction_bias`: F32;
- per-expert tensors `mlp.experts.<e>.{gate,up,down}_proj.weight`;
- the MTP module at layer index num_hidden_layers with DeepSeek's names:
  embed_tokens (copy of the shared embedding), enorm, hnorm, eh_proj, the
  decoder layer's tensors, shared_head.norm, shared_head.head (copy of
  lm_head); config.json says num_nextn_predict_layers 1;
- shards balanced by bytes, model.safetensors.index.json, config.json,
  generation_config.json (R1's sampling defaults), tokenizer files.

Usage: convert.py --run RUN_DIR --tokenizer TOK_DIR --out MODEL_DIR [--shards 2]
"""
import argparse
import json
import os
import shutil
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "golden"))
import make_golden as G  # noqa: E402


def deepseek_tensors(sd, cfg):
    """state dict (train.py names, float32) -> list of units [(name, kind,
    tensor)] in DeepSeek's names and file order; kind as make_golden's plan."""
    N = cfg["num_hidden_layers"]
    E = cfg["n_routed_experts"]
    inter = cfg["moe_intermediate_size"]
    units = [[("model.embed_tokens.weight", "embed", sd["lm.model.embed_tokens.weight"])]]

    def layer(src, L, extra_front=()):
        p = f"model.layers.{L}."
        u = list(extra_front)
        for k, v in sd.items():
            if not k.startswith(src):
                continue
            rest = k[len(src):]
            if rest == "mlp.experts.gate_up_proj":
                for e in range(E):
                    u.append((p + f"mlp.experts.{e}.gate_proj.weight", "linear", v[e, :inter]))
                    u.append((p + f"mlp.experts.{e}.up_proj.weight", "linear", v[e, inter:]))
            elif rest == "mlp.experts.down_proj":
                for e in range(E):
                    u.append((p + f"mlp.experts.{e}.down_proj.weight", "linear", v[e]))
            elif rest.endswith("e_score_correction_bias"):
                u.append((p + rest, "bias", v))
            elif rest.endswith("mlp.gate.weight"):
                u.append((p + rest, "gate", v))
            elif "norm" in rest:
                u.append((p + rest, "norm", v))
            else:
                u.append((p + rest, "linear", v))
        return u

    for L in range(N):
        units.append(layer(f"lm.model.layers.{L}.", L))
    units.append([("model.norm.weight", "norm", sd["lm.model.norm.weight"]),
                  ("lm_head.weight", "head", sd["lm.lm_head.weight"])])
    p = f"model.layers.{N}."
    mtp_front = [
        (p + "embed_tokens.weight", "embed", sd["lm.model.embed_tokens.weight"]),
        (p + "enorm.weight", "norm", sd["mtp.enorm.weight"]),
        (p + "hnorm.weight", "norm", sd["mtp.hnorm.weight"]),
        (p + "eh_proj.weight", "linear", sd["mtp.eh_proj.weight"]),
    ]
    mtp = layer("mtp.layer.", N, mtp_front)
    mtp += [(p + "shared_head.norm.weight", "norm", sd["mtp.norm.weight"]),
            (p + "shared_head.head.weight", "head", sd["lm.lm_head.weight"])]
    units.append(mtp)
    return units


def store(units):
    """-> (stored units of (name, tensor) as written, exact: name -> float32
    value the checkpoint represents)."""
    stored, exact = [], {}
    for u in units:
        su = []
        for name, kind, w in u:
            w = w.float().contiguous()
            if kind == "bias":
                su.append((name, w))
                exact[name] = w
            elif kind == "linear":
                q, s, deq = G.quantise_fp8(w)
                su.append((name, q.contiguous()))
                su.append((name + "_scale_inv", s.contiguous()))
                exact[name] = deq
            else:
                b = w.to(torch.bfloat16).contiguous()
                su.append((name, b))
                exact[name] = b.float()
        stored.append(su)
    return stored, exact


def golden_cfg(hf, shards):
    """The dict make_golden's writers take."""
    keys = ["hidden_size", "num_hidden_layers", "first_k_dense_replace", "num_attention_heads",
            "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim",
            "intermediate_size", "moe_intermediate_size", "n_routed_experts",
            "num_experts_per_tok", "n_shared_experts", "n_group", "topk_group",
            "routed_scaling_factor", "norm_topk_prob", "vocab_size", "max_position_embeddings"]
    c = {k: hf[k] for k in keys}
    c.update(name="dsa-tiny-r1", dtype="fp8", shards=shards, yarn=None)
    return c


GENERATION_CONFIG = {"_from_model_config": True, "bos_token_id": 0, "eos_token_id": 1,
                     "do_sample": True, "temperature": 0.6, "top_p": 0.95,
                     "transformers_version": "4.46.3"}


def convert(run, tokenizer, out, shards):
    with open(os.path.join(run, "log.json")) as f:
        hf = json.load(f)["config"]
    sd = torch.load(os.path.join(run, "state.pt"))
    cfg = golden_cfg(hf, shards)
    stored, exact = store(deepseek_tensors(sd, cfg))
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    total = G.write_checkpoint(cfg, stored, out)
    with open(os.path.join(out, "config.json")) as f:
        c = json.load(f)
    c["num_nextn_predict_layers"] = 1
    c["torch_dtype"] = "bfloat16"
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(c, f, indent=2)
        f.write("\n")
    with open(os.path.join(out, "generation_config.json"), "w") as f:
        json.dump(GENERATION_CONFIG, f, indent=2)
        f.write("\n")
    for n in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(tokenizer, n), os.path.join(out, n))
    return cfg, exact, total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True, help="train.py's output directory")
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--shards", type=int, default=2)
    a = ap.parse_args()
    cfg, exact, total = convert(a.run, a.tokenizer, a.out, a.shards)
    size = sum(os.path.getsize(os.path.join(a.out, n)) for n in os.listdir(a.out))
    print(f"{a.out}: {len(exact)} tensors, {total} tensor bytes, {size} bytes on disk")


if __name__ == "__main__":
    main()
