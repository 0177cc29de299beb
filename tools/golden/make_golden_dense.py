"""make_golden_dense.py - tiny Qwen2 / Llama checkpoints (the R1-Distill
architectures), optionally AWQ int4, and Hugging Face reference logits.

For every config in CONFIGS this writes tests/data/golden/<name>/ in the
layout make_golden.py uses (config.json, generation_config.json, index +
shards, golden.json, logits.bin), so tests/test_golden.c checks it as it
checks the DeepSeek-V3 sets:
  * the weights are drawn in float32 (seeded torch.Generator), rounded to
    the stored dtype (BF16, F16 or F32), and the reference model
    (transformers' Qwen2ForCausalLM / LlamaForCausalLM, float32, eager
    attention) is given exactly the stored values;
  * AWQ configs store every linear of the layers as AutoAWQ's GEMM layout
    (qweight int32 [in, out/8] with the nibble order 0,2,4,6,1,3,5,7,
    qzeros int32 [in/g, out/8], scales F16 [in/g, out]), quantised here
    with per-group min/max, and the reference is given the dequantised
    weights (q - z) * s in float32, computed by unpack_awq() from the
    written tensors (an independent path from the packing code);
  * the written directory is read back with from_pretrained (the F16/BF16
    configs; AWQ through an F32 copy with dequantised weights) and must
    give the same logits;
  * every greedy step has top1 - top2 > MARGIN_LOGIT (else the next seed).

Usage: python3 tools/golden/make_golden_dense.py [--out DIR] [--only NAME]
"""

import argparse
import json
import math
import os
import platform
import shutil
import sys
import tempfile

import numpy as np
import safetensors
import safetensors.torch
import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

GEN_TOKENS = 32
PROMPT_LENS = (5, 12, 19)
MARGIN_LOGIT = 1e-3
MAX_CKPT_BYTES = 1_500_000
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)

# The R1-Distill generation_config.json values (temperature 0.6, top_p 0.95).
GENERATION_CONFIG = {"_from_model_config": True, "bos_token_id": 0, "eos_token_id": 1,
                     "do_sample": True, "temperature": 0.6, "top_p": 0.95,
                     "transformers_version": "4.44.0"}

CONFIGS = [
    # GQA ratio 4, q/k/v bias, untied, BF16, rope_theta 1e4
    dict(name="qwen2-bf16", arch="qwen2", dtype="bf16", shards=2, seed=3000,
         hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
         num_key_value_heads=1, vocab_size=256, tie_word_embeddings=False, rope_theta=10000.0),
    # GQA ratio 7, tied embeddings, F16, rope_theta 1e6 (as the 7B distill)
    dict(name="qwen2-f16-tied", arch="qwen2", dtype="f16", shards=1, seed=3100,
         hidden_size=56, intermediate_size=80, num_hidden_layers=3, num_attention_heads=7,
         num_key_value_heads=1, vocab_size=200, tie_word_embeddings=True, rope_theta=1e6),
    # GQA ratio 1, llama3 rope scaling, BF16
    dict(name="llama-bf16-rope3", arch="llama", dtype="bf16", shards=2, seed=3200,
         hidden_size=64, intermediate_size=112, num_hidden_layers=2, num_attention_heads=4,
         num_key_value_heads=4, vocab_size=288, tie_word_embeddings=False, rope_theta=500000.0,
         rope_scaling={"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                       "original_max_position_embeddings": 64, "rope_type": "llama3"}),
    # GQA ratio 2, explicit head_dim != hidden / heads, F32
    dict(name="llama-f32-hd", arch="llama", dtype="f32", shards=1, seed=3300,
         hidden_size=48, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
         num_key_value_heads=2, head_dim=16, vocab_size=160, tie_word_embeddings=False,
         rope_theta=10000.0),
    # AWQ int4 (GEMM), group 32, Qwen2 GQA 2 with biases; modules_to_not_convert
    # keeps the last layer's mlp in F16
    dict(name="qwen2-awq", arch="qwen2", dtype="awq", shards=1, seed=3400,
         hidden_size=128, intermediate_size=192, num_hidden_layers=2, num_attention_heads=4,
         num_key_value_heads=2, vocab_size=256, tie_word_embeddings=False, rope_theta=10000.0,
         awq_group=32, awq_skip=["layers.1.mlp"]),
    # AWQ int4, Llama with llama3 rope, group 64
    dict(name="llama-awq", arch="llama", dtype="awq", shards=1, seed=3500,
         hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=8,
         num_key_value_heads=2, vocab_size=192, tie_word_embeddings=False, rope_theta=500000.0,
         rope_scaling={"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                       "original_max_position_embeddings": 64, "rope_type": "llama3"},
         awq_group=64, awq_skip=None),
]

TOLERANCE_NOTE = ("Reference: transformers {arch} float32, eager attention, on CPU, fed the "
                  "checkpoint's exact values (BF16/F16 widened; AWQ dequantised as (q - z) * s "
                  "per group). An fp32 implementation should match every logit within ~1e-4.")

TORCH_DTYPE = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32,
               "awq": torch.float16}


def head_dim(cfg):
    return cfg.get("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])


def config_dict(cfg):
    """config.json as the R1-Distill checkpoints publish it."""
    q = cfg["arch"] == "qwen2"
    d = {
        "architectures": ["Qwen2ForCausalLM" if q else "LlamaForCausalLM"],
        "attention_dropout": 0.0,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "hidden_act": "silu",
        "hidden_size": cfg["hidden_size"],
        "initializer_range": 0.02,
        "intermediate_size": cfg["intermediate_size"],
        "max_position_embeddings": 4096,
        "model_type": "qwen2" if q else "llama",
        "num_attention_heads": cfg["num_attention_heads"],
        "num_hidden_layers": cfg["num_hidden_layers"],
        "num_key_value_heads": cfg["num_key_value_heads"],
        "rms_norm_eps": 1e-6 if q else 1e-5,
        "rope_scaling": cfg.get("rope_scaling"),
        "rope_theta": cfg["rope_theta"],
        "tie_word_embeddings": cfg["tie_word_embeddings"],
        "torch_dtype": {"bf16": "bfloat16", "f16": "float16", "f32": "float32",
                        "awq": "float16"}[cfg["dtype"]],
        "use_cache": True,
        "vocab_size": cfg["vocab_size"],
    }
    if q:
        d.update(max_window_layers=cfg["num_hidden_layers"], sliding_window=4096,
                 use_sliding_window=False)
    else:
        d.update(attention_bias=False, mlp_bias=False, pretraining_tp=1)
    if "head_dim" in cfg:
        d["head_dim"] = cfg["head_dim"]
    if cfg["dtype"] == "awq":
        d["quantization_config"] = {"bits": 4, "group_size": cfg["awq_group"],
                                    "modules_to_not_convert": cfg["awq_skip"],
                                    "quant_method": "awq", "version": "gemm",
                                    "zero_point": True}
    return d


def draw(cfg, seed):
    """float32 weights by transformers name."""
    g = torch.Generator().manual_seed(seed)
    D, I, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    H, KV, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], head_dim(cfg)

    def lin(o, i):
        return torch.randn(o, i, generator=g) / math.sqrt(i)

    w = {"model.embed_tokens.weight": torch.randn(V, D, generator=g)}
    for L in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{L}."
        w[p + "input_layernorm.weight"] = 1 + 0.1 * torch.randn(D, generator=g)
        w[p + "self_attn.q_proj.weight"] = lin(H * hd, D)
        w[p + "self_attn.k_proj.weight"] = lin(KV * hd, D)
        w[p + "self_attn.v_proj.weight"] = lin(KV * hd, D)
        if cfg["arch"] == "qwen2":
            # large enough that a dropped bias moves the logits visibly
            w[p + "self_attn.q_proj.bias"] = 0.5 * torch.randn(H * hd, generator=g)
            w[p + "self_attn.k_proj.bias"] = 0.5 * torch.randn(KV * hd, generator=g)
            w[p + "self_attn.v_proj.bias"] = 0.5 * torch.randn(KV * hd, generator=g)
        w[p + "self_attn.o_proj.weight"] = lin(D, H * hd)
        w[p + "post_attention_layernorm.weight"] = 1 + 0.1 * torch.randn(D, generator=g)
        w[p + "mlp.gate_proj.weight"] = lin(I, D)
        w[p + "mlp.up_proj.weight"] = lin(I, D)
        w[p + "mlp.down_proj.weight"] = lin(D, I)
    w["model.norm.weight"] = 1 + 0.1 * torch.randn(D, generator=g)
    if not cfg["tie_word_embeddings"]:
        w["lm_head.weight"] = torch.randn(V, D, generator=g) * (3 / math.sqrt(D))
    return w


def awq_quantised(cfg, name):
    """transformers' rule: a linear of the layers, unless a
    modules_to_not_convert entry is a substring of its name."""
    if not name.endswith(".weight") or ".layers." not in name or name.endswith("norm.weight"):
        return False
    return not any(s in name for s in (cfg["awq_skip"] or []))


def pack_awq(w, group):
    """W [out, in] float32 -> (qweight, qzeros, scales) in AutoAWQ GEMM layout."""
    out_f, in_f = w.shape
    wg = w.t().reshape(in_f // group, group, out_f)          # [G, g, out]
    mx, mn = wg.amax(1), wg.amin(1)                           # [G, out]
    scales = ((mx - mn).clamp(min=1e-5) / 15).to(torch.float16)
    s = scales.float()
    zeros = (-torch.round(mn / s)).clamp(0, 15).to(torch.int32)
    q = (torch.round(wg / s[:, None, :]) + zeros[:, None, :]).clamp(0, 15).to(torch.int32)
    q = q.reshape(in_f, out_f)

    def pack(x):                                              # [r, out] -> [r, out/8]
        r = x.shape[0]
        x = x.reshape(r, out_f // 8, 8)
        p = torch.zeros(r, out_f // 8, dtype=torch.int64)
        for i, src in enumerate(AWQ_ORDER):
            p |= x[:, :, src].to(torch.int64) << (4 * i)
        return (p - ((p >> 31) << 32)).to(torch.int32)         # as int32 bits
    return pack(q), pack(zeros), scales


def unpack_awq(qweight, qzeros, scales, group):
    """Dequantised W [out, in] float32 from the stored AWQ tensors."""
    def unpack(p):                                            # [r, out/8] -> [r, out]
        p = p.to(torch.int64) & 0xFFFFFFFF
        r, c = p.shape
        x = torch.zeros(r, c, 8, dtype=torch.int64)
        for i, dst in enumerate(AWQ_ORDER):
            x[:, :, dst] = (p >> (4 * i)) & 0xF
        return x.reshape(r, c * 8)
    q, z = unpack(qweight).float(), unpack(qzeros).float()
    rep = lambda t: t.repeat_interleave(group, 0)              # noqa: E731
    return ((q - rep(z)) * rep(scales.float())).t().contiguous()


def store(cfg, w):
    """(stored tensors, exact float32 values the reference gets)."""
    dt = TORCH_DTYPE[cfg["dtype"]]
    stored, exact = {}, {}
    for name, t in w.items():
        if cfg["dtype"] == "awq" and awq_quantised(cfg, name):
            base = name[: -len(".weight")]
            qw, qz, sc = pack_awq(t, cfg["awq_group"])
            stored[base + ".qweight"], stored[base + ".qzeros"] = qw, qz
            stored[base + ".scales"] = sc
            exact[name] = unpack_awq(qw, qz, sc, cfg["awq_group"])
        else:
            stored[name] = t.to(dt).contiguous()
            exact[name] = stored[name].to(torch.float32)
    return stored, exact


def write_checkpoint(cfg, stored, outdir):
    n = cfg["shards"]
    names = list(stored)
    sizes = [stored[k].numel() * stored[k].element_size() for k in names]
    total, acc = sum(sizes), 0
    shards = [{} for _ in range(n)]
    for k, sz in zip(names, sizes):
        # a linear's AWQ triple stays together
        shards[min(n - 1, int(acc * n // total))][k] = stored[k]
        acc += sz
    weight_map = {}
    for i, tensors in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
        safetensors.torch.save_file(tensors, os.path.join(outdir, fname),
                                    metadata={"format": "pt"})
        weight_map.update({k: fname for k in tensors})
    with open(os.path.join(outdir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
        f.write("\n")
    for fname, obj in (("config.json", config_dict(cfg)),
                       ("generation_config.json", GENERATION_CONFIG)):
        with open(os.path.join(outdir, fname), "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
    return total


def model_class(cfg):
    return (Qwen2Config, Qwen2ForCausalLM) if cfg["arch"] == "qwen2" else \
        (LlamaConfig, LlamaForCausalLM)


def reference(cfg, exact):
    C, M = model_class(cfg)
    d = config_dict(cfg)
    d.pop("quantization_config", None)
    hc = C(**d)
    hc._attn_implementation = "eager"
    torch.manual_seed(0)
    model = M(hc).to(torch.float32).eval()
    missing, unexpected = model.load_state_dict(exact, strict=False)
    assert not unexpected, unexpected
    assert set(missing) <= ({"lm_head.weight"} if cfg["tie_word_embeddings"] else set()), missing
    if cfg["tie_word_embeddings"]:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    return model


@torch.no_grad()
def run_sequences(model, prompts):
    out = []
    for prompt in prompts:
        ids = list(prompt)
        for _ in range(GEN_TOKENS):
            ids.append(int(torch.argmax(model(torch.tensor([ids])).logits[0, -1])))
        greedy = ids[len(prompt):]
        full = model(torch.tensor([ids])).logits[0].float()
        P = len(prompt)
        margin = math.inf
        for t in range(GEN_TOKENS):
            top2 = torch.topk(full[P - 1 + t], 2)
            assert int(top2.indices[0]) == greedy[t]
            margin = min(margin, float(top2.values[0] - top2.values[1]))
        out.append((prompt, greedy, full.numpy().astype("<f4"), margin))
    return out


@torch.no_grad()
def check_from_pretrained(cfg, outdir, model, ids):
    """transformers' own loader reads the directory to the same model (AWQ:
    an F32 copy with the weights dequantised by unpack_awq)."""
    C, M = model_class(cfg)
    src = outdir
    with tempfile.TemporaryDirectory() as tmp:
        if cfg["dtype"] == "awq":
            t = {}
            for fn in sorted(set(json.load(open(os.path.join(outdir,
                             "model.safetensors.index.json")))["weight_map"].values())):
                t.update(safetensors.torch.load_file(os.path.join(outdir, fn)))
            out = {}
            for k, v in t.items():
                if k.endswith(".qweight"):
                    b = k[: -len(".qweight")]
                    out[b + ".weight"] = unpack_awq(v, t[b + ".qzeros"], t[b + ".scales"],
                                                    cfg["awq_group"])
                elif not k.endswith((".qzeros", ".scales")):
                    out[k] = v.float()
            safetensors.torch.save_file(out, os.path.join(tmp, "model.safetensors"))
            d = config_dict(cfg)
            d.pop("quantization_config")
            json.dump(d, open(os.path.join(tmp, "config.json"), "w"))
            src = tmp
        m2 = M.from_pretrained(src, dtype=torch.float32, attn_implementation="eager").eval()
        a = model(torch.tensor([ids])).logits
        b = m2(torch.tensor([ids])).logits
    err = float((a - b).abs().max())
    assert err < 1e-4, f"{cfg['name']}: from_pretrained differs by {err}"
    return err


def make_one(cfg, root):
    outdir = os.path.join(root, cfg["name"])
    for attempt in range(20):
        seed = cfg["seed"] + attempt
        if os.path.isdir(outdir):
            shutil.rmtree(outdir)
        os.makedirs(outdir)
        stored, exact = store(cfg, draw(cfg, seed))
        total = write_checkpoint(cfg, stored, outdir)
        model = reference(cfg, exact)
        rng = np.random.default_rng(seed)
        prompts = [[0] + [int(t) for t in rng.integers(2, cfg["vocab_size"], P - 1)]
                   for P in PROMPT_LENS]
        results = run_sequences(model, prompts)
        min_margin = min(r[3] for r in results)
        if min_margin > MARGIN_LOGIT:
            break
        print(f"  {cfg['name']} seed {seed}: margin {min_margin:.2e}; redrawing",
              file=sys.stderr)
    else:
        raise SystemExit(f"{cfg['name']}: no seed gave robust margins")
    err = check_from_pretrained(cfg, outdir, model, prompts[-1] + results[-1][1])
    seqs, offset = [], 0
    with open(os.path.join(outdir, "logits.bin"), "wb") as f:
        for prompt, greedy, logits, margin in results:
            f.write(np.ascontiguousarray(logits).tobytes())
            seqs.append({"prompt": prompt, "greedy": greedy, "n_rows": logits.shape[0],
                         "logits_offset": offset, "min_margin": margin})
            offset += logits.size
    golden = {
        "name": cfg["name"], "dtype": cfg["dtype"], "arch": cfg["arch"],
        "vocab_size": cfg["vocab_size"], "seed": seed,
        "tolerance_note": TOLERANCE_NOTE.format(arch=config_dict(cfg)["architectures"][0]),
        "from_pretrained_max_abs_diff": err,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__,
                     "safetensors": safetensors.__version__, "numpy": np.__version__},
        "sequences": seqs,
    }
    with open(os.path.join(outdir, "golden.json"), "w") as f:
        json.dump(golden, f, indent=2)
        f.write("\n")
    ckpt = sum(os.path.getsize(os.path.join(outdir, n)) for n in os.listdir(outdir)
               if n.endswith(".safetensors"))
    assert ckpt < MAX_CKPT_BYTES, f"{cfg['name']}: checkpoint {ckpt} bytes"
    print(f"{cfg['name']}: seed {seed}, {total} tensor bytes, min margin {min_margin:.3g}, "
          f"from_pretrained diff {err:.2e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "..", "tests", "data", "golden"))
    ap.add_argument("--only", default=None, help="generate one config by name")
    args = ap.parse_args()
    torch.set_num_threads(1)
    for cfg in CONFIGS:
        if not args.only or cfg["name"] == args.only:
            make_one(cfg, args.out)


if __name__ == "__main__":
    main()
