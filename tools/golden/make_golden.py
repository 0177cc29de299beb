#!/usr/bin/env python3
"""make_golden.py - tiny DeepSeek-V3 checkpoints and Hugging Face reference logits.

For every config in CONFIGS this writes tests/data/golden/<name>/:
  config.json, generation_config.json      as DeepSeek publishes them
  model.safetensors.index.json             weight_map + metadata.total_size
  model-0000K-of-0000N.safetensors         DeepSeek tensor names and dtypes
                                           (MODEL_SPEC.md section 2)
  golden.json, logits.bin                  reference from transformers'
                                           DeepseekV3ForCausalLM in float32

The reference model is given exactly the values stored in the checkpoint
(BF16 rounded, or FP8 dequantised with the 128x128 block scales), so an
implementation that loads the checkpoint and computes in fp32 must match the
logits to float32 round-off.  Before anything is written, the checkpoint is
loaded back with DeepseekV3ForCausalLM.from_pretrained and must give the same
logits: that checks the layout (names, expert split, FP8 scales) against
transformers' own loader.

Every greedy step has top1 - top2 > MARGIN_LOGIT and every router decision
(group choice and expert choice) has a gap > MARGIN_ROUTER; a draw that fails
this is redrawn with the next seed, so small numeric differences cannot flip
a token or an expert.

Usage: python3 tools/golden/make_golden.py [--out tests/data/golden] [--only NAME]
See tools/golden/README.md for the versions used and the HF-vs-spec notes.
"""

import argparse
import json
import math
import os
import platform
import shutil
import struct
import sys

import numpy as np
import torch
import safetensors
import safetensors.torch
import transformers
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

GEN_TOKENS = 32
PROMPT_LENS = (5, 12, 19)
MARGIN_LOGIT = 1e-3
MARGIN_ROUTER = 1e-4
BLOCK = 128
E4M3_MAX = 448.0
MAX_CKPT_BYTES = 1_500_000
MAX_TOTAL_BYTES = 8_000_000

# Each entry: name, weight dtype, model dims, shards, base seed.  Together they
# cover F32/BF16/FP8 (FP8 with ragged 128x128 blocks), first_k_dense_replace
# 0 and >0, n_group/topk_group 4/2, 2/1, 1/1, YaRN, q_lora_rank null,
# norm_topk_prob false, 2 shards.
CONFIGS = [
    dict(name="tiny-f32", dtype="f32", shards=1, seed=1000,
         hidden_size=64, num_hidden_layers=2, first_k_dense_replace=1,
         num_attention_heads=4, q_lora_rank=48, kv_lora_rank=32,
         qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16,
         intermediate_size=128, moe_intermediate_size=32,
         n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=1,
         n_group=4, topk_group=2, routed_scaling_factor=2.5,
         norm_topk_prob=True, vocab_size=256, yarn=None,
         max_position_embeddings=4096),
    dict(name="tiny-bf16", dtype="bf16", shards=2, seed=2000,
         hidden_size=96, num_hidden_layers=3, first_k_dense_replace=0,
         num_attention_heads=4, q_lora_rank=None, kv_lora_rank=48,
         qk_nope_head_dim=16, qk_rope_head_dim=16, v_head_dim=24,
         intermediate_size=160, moe_intermediate_size=24,
         n_routed_experts=16, num_experts_per_tok=4, n_shared_experts=2,
         n_group=2, topk_group=1, routed_scaling_factor=2.5,
         norm_topk_prob=True, vocab_size=320,
         yarn=dict(factor=40, original_max_position_embeddings=64),
         max_position_embeddings=2560),
    dict(name="tiny-fp8", dtype="fp8", shards=2, seed=3000,
         hidden_size=200, num_hidden_layers=2, first_k_dense_replace=1,
         num_attention_heads=2, q_lora_rank=160, kv_lora_rank=96,
         qk_nope_head_dim=32, qk_rope_head_dim=16, v_head_dim=32,
         intermediate_size=300, moe_intermediate_size=136,
         n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=1,
         n_group=4, topk_group=2, routed_scaling_factor=2.5,
         norm_topk_prob=True, vocab_size=256,
         yarn=dict(factor=40, original_max_position_embeddings=64),
         max_position_embeddings=2560),
    # AWQ int4 (GEMM layout, group 32) in the layout assumed for
    # cognitivecomputations/DeepSeek-R1-AWQ: every nn.Linear of the layers
    # quantised (attention, dense MLP, experts, shared experts) except
    # kv_a_proj_with_mqa (modules_to_not_convert); the router, norms,
    # embedding and lm_head float16
    dict(name="tiny-awq", dtype="awq", shards=1, seed=5000,
         hidden_size=128, num_hidden_layers=2, first_k_dense_replace=1,
         num_attention_heads=4, q_lora_rank=64, kv_lora_rank=64,
         qk_nope_head_dim=16, qk_rope_head_dim=16, v_head_dim=16,
         intermediate_size=128, moe_intermediate_size=64,
         n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=1,
         n_group=4, topk_group=2, routed_scaling_factor=2.5,
         norm_topk_prob=True, vocab_size=256, yarn=None,
         max_position_embeddings=4096, awq_group=32,
         awq_skip=["kv_a_proj_with_mqa"]),
    dict(name="tiny-fp8-qproj", dtype="fp8", shards=1, seed=4000,
         hidden_size=128, num_hidden_layers=3, first_k_dense_replace=0,
         num_attention_heads=4, q_lora_rank=None, kv_lora_rank=64,
         qk_nope_head_dim=32, qk_rope_head_dim=16, v_head_dim=32,
         intermediate_size=256, moe_intermediate_size=64,
         n_routed_experts=8, num_experts_per_tok=3, n_shared_experts=2,
         n_group=1, topk_group=1, routed_scaling_factor=1.5,
         norm_topk_prob=False, vocab_size=512, yarn=None,
         max_position_embeddings=4096),
]

TOLERANCE_NOTE = (
    "Reference: transformers DeepseekV3ForCausalLM, float32, eager attention, "
    "on CPU, fed the checkpoint's exact values (BF16 widened, FP8 dequantised "
    "as q * weight_scale_inv per 128x128 block). An fp32 implementation should "
    "match every logit within ~1e-4 absolute (logits are O(1..10)); bf16 "
    "activations on GPU need ~5e-2 relative to the row's max |logit|, and "
    "the greedy ids must match exactly (top1-top2 >= min_margin, routers "
    "have gaps >= router_min_margin).")


# --------------------------------------------------------------------------
# checkpoint construction

def linear_names(cfg, L):
    """(name, out, in) for every FP8-able linear of layer L, in file order."""
    D = cfg["hidden_size"]
    H = cfg["num_attention_heads"]
    qk = cfg["qk_nope_head_dim"] + cfg["qk_rope_head_dim"]
    p = f"model.layers.{L}."
    out = []
    if cfg["q_lora_rank"] is None:
        out.append((p + "self_attn.q_proj.weight", H * qk, D))
    else:
        out.append((p + "self_attn.q_a_proj.weight", cfg["q_lora_rank"], D))
        out.append((p + "self_attn.q_b_proj.weight", H * qk, cfg["q_lora_rank"]))
    out.append((p + "self_attn.kv_a_proj_with_mqa.weight",
                cfg["kv_lora_rank"] + cfg["qk_rope_head_dim"], D))
    out.append((p + "self_attn.kv_b_proj.weight",
                H * (cfg["qk_nope_head_dim"] + cfg["v_head_dim"]), cfg["kv_lora_rank"]))
    out.append((p + "self_attn.o_proj.weight", D, H * cfg["v_head_dim"]))
    return out


def mlp_names(prefix, inter, D):
    return [(prefix + "gate_proj.weight", inter, D),
            (prefix + "up_proj.weight", inter, D),
            (prefix + "down_proj.weight", D, inter)]


def tensor_plan(cfg):
    """Ordered list of units (embedding, each layer, head) of (name, kind,
    shape) in DeepSeek's naming; kind is one of embed, norm, linear, gate,
    bias, head."""
    D = cfg["hidden_size"]
    V = cfg["vocab_size"]
    plan = [[("model.embed_tokens.weight", "embed", (V, D))]]
    for L in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{L}."
        unit = [(p + "input_layernorm.weight", "norm", (D,))]
        lin = {n: (o, i) for n, o, i in linear_names(cfg, L)}
        for n, (o, i) in lin.items():
            unit.append((n, "linear", (o, i)))
            if n.endswith("q_a_proj.weight"):
                unit.append((p + "self_attn.q_a_layernorm.weight", "norm", (cfg["q_lora_rank"],)))
            if n.endswith("kv_a_proj_with_mqa.weight"):
                unit.append((p + "self_attn.kv_a_layernorm.weight", "norm", (cfg["kv_lora_rank"],)))
        unit.append((p + "post_attention_layernorm.weight", "norm", (D,)))
        if L < cfg["first_k_dense_replace"]:
            for n, o, i in mlp_names(p + "mlp.", cfg["intermediate_size"], D):
                unit.append((n, "linear", (o, i)))
        else:
            E = cfg["n_routed_experts"]
            unit.append((p + "mlp.gate.weight", "gate", (E, D)))
            unit.append((p + "mlp.gate.e_score_correction_bias", "bias", (E,)))
            for e in range(E):
                for n, o, i in mlp_names(p + f"mlp.experts.{e}.", cfg["moe_intermediate_size"], D):
                    unit.append((n, "linear", (o, i)))
            inter = cfg["moe_intermediate_size"] * cfg["n_shared_experts"]
            for n, o, i in mlp_names(p + "mlp.shared_experts.", inter, D):
                unit.append((n, "linear", (o, i)))
        plan.append(unit)
    plan.append([("model.norm.weight", "norm", (D,)),
                 ("lm_head.weight", "head", (V, D))])
    return plan


def init_value(gen, kind, shape):
    """Random values with O(1) activations everywhere: linears N(0, 1/fan_in),
    norms 1 + N(0, 0.1), a small correction bias, an lm_head scaled up so the
    logits are well separated."""
    if kind == "norm":
        return 1.0 + 0.1 * torch.randn(shape, generator=gen)
    if kind == "bias":
        # Small against sigmoid scores (MODEL_SPEC.md section 5 note).
        return 0.005 * torch.randn(shape, generator=gen)
    if kind == "embed":
        return torch.randn(shape, generator=gen)
    std = 1.0 / math.sqrt(shape[1])
    if kind == "head":
        std *= 3.0
    return std * torch.randn(shape, generator=gen)


def quantise_fp8(w):
    """Per 128x128 block: scale = amax / 448, q = e4m3(w / scale).  Returns
    (q as float8_e4m3fn, scale_inv [ceil(out/128), ceil(in/128)] F32,
    dequantised float32 weight)."""
    out_f, in_f = w.shape
    nb_r, nb_c = -(-out_f // BLOCK), -(-in_f // BLOCK)
    scale = torch.empty(nb_r, nb_c, dtype=torch.float32)
    q = torch.empty(out_f, in_f, dtype=torch.float8_e4m3fn)
    deq = torch.empty(out_f, in_f, dtype=torch.float32)
    for br in range(nb_r):
        for bc in range(nb_c):
            r0, r1 = br * BLOCK, min(out_f, (br + 1) * BLOCK)
            c0, c1 = bc * BLOCK, min(in_f, (bc + 1) * BLOCK)
            blk = w[r0:r1, c0:c1]
            amax = float(blk.abs().max())
            s = amax / E4M3_MAX if amax > 0 else 1.0
            s = float(np.float32(s))
            qb = (blk / s).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)
            scale[br, bc] = s
            q[r0:r1, c0:c1] = qb
            deq[r0:r1, c0:c1] = qb.to(torch.float32) * torch.tensor(s, dtype=torch.float32)
    return q, scale, deq


def build_tensors(cfg, seed):
    """Returns (stored: list of units of (name, tensor)), exact: name -> f32
    tensor as the checkpoint represents it)."""
    gen = torch.Generator().manual_seed(seed)
    dt = cfg["dtype"]
    stored, exact = [], {}
    for unit in tensor_plan(cfg):
        su = []
        for name, kind, shape in unit:
            w = init_value(gen, kind, shape).to(torch.float32)
            if dt == "f32" or kind == "bias":
                su.append((name, w.contiguous()))
                exact[name] = w
            elif dt == "awq" and (kind != "linear" or
                                  any(k in name for k in cfg["awq_skip"])):
                h = w.to(torch.float16).contiguous()
                su.append((name, h))
                exact[name] = h.to(torch.float32)
            elif dt == "awq":
                import make_golden_dense as mgd
                base = name[: -len(".weight")]
                qw, qz, sc = mgd.pack_awq(w, cfg["awq_group"])
                su += [(base + ".qweight", qw), (base + ".qzeros", qz), (base + ".scales", sc)]
                exact[name] = mgd.unpack_awq(qw, qz, sc, cfg["awq_group"])
            elif dt == "bf16" or kind != "linear":
                b = w.to(torch.bfloat16).contiguous()
                su.append((name, b))
                exact[name] = b.to(torch.float32)
            else:
                q, s, deq = quantise_fp8(w)
                su.append((name, q.contiguous()))
                su.append((name + "_scale_inv", s.contiguous()))
                exact[name] = deq
        stored.append(su)
    return stored, exact


def hf_config_dict(cfg):
    """config.json in DeepSeek's published form (their keys and order)."""
    d = {
        "architectures": ["DeepseekV3ForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "auto_map": {
            "AutoConfig": "configuration_deepseek.DeepseekV3Config",
            "AutoModel": "modeling_deepseek.DeepseekV3Model",
            "AutoModelForCausalLM": "modeling_deepseek.DeepseekV3ForCausalLM",
        },
        "aux_loss_alpha": 0.001,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "ep_size": 1,
        "first_k_dense_replace": cfg["first_k_dense_replace"],
        "hidden_act": "silu",
        "hidden_size": cfg["hidden_size"],
        "initializer_range": 0.02,
        "intermediate_size": cfg["intermediate_size"],
        "kv_lora_rank": cfg["kv_lora_rank"],
        "max_position_embeddings": cfg["max_position_embeddings"],
        "model_type": "deepseek_v3",
        "moe_intermediate_size": cfg["moe_intermediate_size"],
        "moe_layer_freq": 1,
        "n_group": cfg["n_group"],
        "n_routed_experts": cfg["n_routed_experts"],
        "n_shared_experts": cfg["n_shared_experts"],
        "norm_topk_prob": cfg["norm_topk_prob"],
        "num_attention_heads": cfg["num_attention_heads"],
        "num_experts_per_tok": cfg["num_experts_per_tok"],
        "num_hidden_layers": cfg["num_hidden_layers"],
        "num_key_value_heads": cfg["num_attention_heads"],
        "num_nextn_predict_layers": 0,
        "pretraining_tp": 1,
        "q_lora_rank": cfg["q_lora_rank"],
        "qk_nope_head_dim": cfg["qk_nope_head_dim"],
        "qk_rope_head_dim": cfg["qk_rope_head_dim"],
    }
    if cfg["dtype"] == "fp8":
        d["quantization_config"] = {
            "activation_scheme": "dynamic",
            "fmt": "e4m3",
            "quant_method": "fp8",
            "weight_block_size": [BLOCK, BLOCK],
        }
    if cfg["dtype"] == "awq":
        d["quantization_config"] = {
            "bits": 4, "group_size": cfg["awq_group"],
            "modules_to_not_convert": cfg["awq_skip"],
            "quant_method": "awq", "version": "gemm", "zero_point": True,
        }
    d.update({
        "rms_norm_eps": 1e-06,
        "rope_scaling": None,
        "rope_theta": 10000,
        "routed_scaling_factor": cfg["routed_scaling_factor"],
        "scoring_func": "sigmoid",
        "seq_aux": True,
        "tie_word_embeddings": False,
        "topk_group": cfg["topk_group"],
        "topk_method": "noaux_tc",
        "torch_dtype": {"f32": "float32", "awq": "float16"}.get(cfg["dtype"], "bfloat16"),
        "transformers_version": "4.33.1",
        "use_cache": True,
        "v_head_dim": cfg["v_head_dim"],
        "vocab_size": cfg["vocab_size"],
    })
    if cfg["yarn"]:
        d["rope_scaling"] = {
            "beta_fast": 32,
            "beta_slow": 1,
            "factor": cfg["yarn"]["factor"],
            "mscale": 1.0,
            "mscale_all_dim": 1.0,
            "original_max_position_embeddings": cfg["yarn"]["original_max_position_embeddings"],
            "type": "yarn",
        }
    return d


GENERATION_CONFIG = {
    "_from_model_config": True,
    "bos_token_id": 0,
    "eos_token_id": 1,
    "do_sample": True,
    "temperature": 0.6,
    "top_p": 0.95,
    "transformers_version": "4.46.3",
}


def write_checkpoint(cfg, stored, outdir):
    """Shards are balanced by bytes and may split a layer, as DeepSeek's do;
    an FP8 weight and its weight_scale_inv always share a shard."""
    n = cfg["shards"]
    units = []
    for u in stored:
        for name, t in u:
            if name.endswith(("_scale_inv", ".qzeros", ".scales")):
                units[-1].append((name, t))
            else:
                units.append([(name, t)])
    stored = units
    sizes = [sum(t.numel() * t.element_size() for _, t in u) for u in stored]
    total = sum(sizes)
    shards, acc = [[] for _ in range(n)], 0
    for u, sz in zip(stored, sizes):
        k = min(n - 1, int(acc * n // total))
        shards[k].extend(u)
        acc += sz
    assert all(shards), "a shard would be empty"
    weight_map = {}
    for k, tensors in enumerate(shards):
        fname = f"model-{k + 1:05d}-of-{n:05d}.safetensors"
        path = os.path.join(outdir, fname)
        safetensors.torch.save_file(dict(tensors), path, metadata={"format": "pt"})
        os.chmod(path, 0o644)
        for name, _ in tensors:
            weight_map[name] = fname
    with open(os.path.join(outdir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
        f.write("\n")
    with open(os.path.join(outdir, "config.json"), "w") as f:
        json.dump(hf_config_dict(cfg), f, indent=2)
        f.write("\n")
    with open(os.path.join(outdir, "generation_config.json"), "w") as f:
        json.dump(GENERATION_CONFIG, f, indent=2)
        f.write("\n")
    return total


# --------------------------------------------------------------------------
# reference model

def hf_state_dict(cfg, exact):
    """DeepSeek names -> transformers 5 names (experts fused into
    gate_up_proj [E, 2I, D] and down_proj [E, D, I])."""
    sd = {}
    E = cfg["n_routed_experts"]
    for name, w in exact.items():
        if ".mlp.experts." in name:
            continue
        sd[name] = w
    for L in range(cfg["first_k_dense_replace"], cfg["num_hidden_layers"]):
        p = f"model.layers.{L}.mlp.experts."
        sd[p + "gate_up_proj"] = torch.stack([
            torch.cat([exact[p + f"{e}.gate_proj.weight"], exact[p + f"{e}.up_proj.weight"]], 0)
            for e in range(E)])
        sd[p + "down_proj"] = torch.stack([exact[p + f"{e}.down_proj.weight"] for e in range(E)])
    return sd


def load_reference(cfg, outdir, exact):
    hc = DeepseekV3Config.from_pretrained(outdir)
    if hasattr(hc, "quantization_config"):
        del hc.quantization_config
    hc._attn_implementation = "eager"
    torch.manual_seed(0)
    model = DeepseekV3ForCausalLM(hc).to(torch.float32).eval()
    missing, unexpected = model.load_state_dict(hf_state_dict(cfg, exact), strict=True)
    assert not missing and not unexpected
    check_hf_semantics(cfg, model)
    return model


def check_hf_semantics(cfg, model):
    """Asserts that the HF model computes what MODEL_SPEC.md says for this
    config: interleaved RoPE, YaRN frequencies and softmax scale."""
    hc = model.config
    assert hc.rope_interleave is True, "HF would use rotate_half without de-interleave"
    assert hc.tie_word_embeddings is False
    d = cfg["qk_rope_head_dim"]
    attn = model.model.layers[0].self_attn
    tau = (cfg["qk_nope_head_dim"] + d) ** -0.5
    inv = 1.0 / (10000.0 ** (np.arange(0, d, 2, dtype=np.float64) / d))
    if cfg["yarn"]:
        s = cfg["yarn"]["factor"]
        L0 = cfg["yarn"]["original_max_position_embeddings"]
        m = 0.1 * 1.0 * math.log(s) + 1.0
        tau *= m * m

        def corr(r):
            return d * math.log(L0 / (2 * math.pi * r)) / (2 * math.log(10000.0))
        low = max(math.floor(corr(32)), 0)
        high = min(math.ceil(corr(1)), d - 1)
        if low == high:
            high += 0.001
        i = np.arange(d // 2, dtype=np.float64)
        ramp = np.clip((i - low) / (high - low), 0, 1)
        smooth = 1 - ramp
        inv = (inv / s) * (1 - smooth) + inv * smooth
    assert abs(attn.scaling - tau) < 1e-6 * tau, (attn.scaling, tau)
    hf_inv = model.model.rotary_emb.inv_freq.double().numpy()
    assert np.allclose(hf_inv, inv, rtol=1e-6, atol=0), (hf_inv, inv)
    assert float(model.model.rotary_emb.attention_scaling) == 1.0


def spec_logits(cfg, exact, ids):
    """MODEL_SPEC.md sections 3-6 written out literally in float64 (naive MLA
    with DeepSeek's interleaved-pair RoPE, noaux_tc router with -inf group
    masking), independent of transformers.  Returns logits [T, V]."""
    W = {k: v.double() for k, v in exact.items()}
    D, H = cfg["hidden_size"], cfg["num_attention_heads"]
    dn, dr, dv = cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"]
    kvr, E = cfg["kv_lora_rank"], cfg["n_routed_experts"]
    T = len(ids)

    def rms(x, w):
        return w * x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-6)

    theta = 1.0 / (10000.0 ** (torch.arange(0, dr, 2, dtype=torch.float64) / dr))
    tau = (dn + dr) ** -0.5
    if cfg["yarn"]:
        s, L0 = cfg["yarn"]["factor"], cfg["yarn"]["original_max_position_embeddings"]

        def corr(r):
            return dr * math.log(L0 / (2 * math.pi * r)) / (2 * math.log(10000.0))
        low, high = max(math.floor(corr(32)), 0), min(math.ceil(corr(1)), dr - 1)
        if low == high:
            high += 0.001
        ramp = ((torch.arange(dr // 2, dtype=torch.float64) - low) / (high - low)).clamp(0, 1)
        smooth = 1 - ramp
        theta = theta / s * (1 - smooth) + theta * smooth
        m = 0.1 * math.log(s) + 1.0
        tau *= m * m
    ang = torch.arange(T, dtype=torch.float64)[:, None] * theta[None, :]  # [T, dr/2]
    cos, sin = torch.cos(ang), torch.sin(ang)

    def rope(x):  # x [..., T, dr], pairs (2i, 2i+1)
        a, b = x[..., 0::2], x[..., 1::2]
        out = torch.empty_like(x)
        out[..., 0::2] = a * cos - b * sin
        out[..., 1::2] = a * sin + b * cos
        return out

    def mlp(x, p):
        g = x @ W[p + "gate_proj.weight"].t()
        return (g * torch.sigmoid(g) * (x @ W[p + "up_proj.weight"].t())) @ W[p + "down_proj.weight"].t()

    h = W["model.embed_tokens.weight"][torch.tensor(ids)]
    mask = torch.full((T, T), -math.inf, dtype=torch.float64).triu(1)
    for L in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{L}."
        x = rms(h, W[p + "input_layernorm.weight"])
        if cfg["q_lora_rank"] is None:
            q = x @ W[p + "self_attn.q_proj.weight"].t()
        else:
            cq = rms(x @ W[p + "self_attn.q_a_proj.weight"].t(), W[p + "self_attn.q_a_layernorm.weight"])
            q = cq @ W[p + "self_attn.q_b_proj.weight"].t()
        q = q.view(T, H, dn + dr).transpose(0, 1)  # [H, T, dn+dr]
        q_nope, q_pe = q[..., :dn], rope(q[..., dn:])
        a = x @ W[p + "self_attn.kv_a_proj_with_mqa.weight"].t()
        ckv = rms(a[:, :kvr], W[p + "self_attn.kv_a_layernorm.weight"])
        k_pe = rope(a[:, kvr:])  # [T, dr] shared by all heads
        kv = (ckv @ W[p + "self_attn.kv_b_proj.weight"].t()).view(T, H, dn + dv).transpose(0, 1)
        k_nope, v = kv[..., :dn], kv[..., dn:]
        sc = tau * (q_nope @ k_nope.transpose(1, 2) + q_pe @ k_pe.t()) + mask
        o = torch.softmax(sc, -1) @ v  # [H, T, dv]
        h = h + o.transpose(0, 1).reshape(T, H * dv) @ W[p + "self_attn.o_proj.weight"].t()
        x = rms(h, W[p + "post_attention_layernorm.weight"])
        if L < cfg["first_k_dense_replace"]:
            h = h + mlp(x, p + "mlp.")
            continue
        sig = torch.sigmoid(x @ W[p + "mlp.gate.weight"].t())
        sel = sig + W[p + "mlp.gate.e_score_correction_bias"]
        G, tg, k = cfg["n_group"], cfg["topk_group"], cfg["num_experts_per_tok"]
        gs = sel.view(T, G, E // G).topk(2, -1)[0].sum(-1)
        keep = torch.zeros(T, G, dtype=torch.bool)
        keep.scatter_(1, gs.topk(tg, -1)[1], True)
        sel = sel.masked_fill(~keep.repeat_interleave(E // G, 1), -math.inf)
        idx = sel.topk(k, -1)[1]
        w = sig.gather(1, idx)
        if cfg["norm_topk_prob"]:
            w = w / (w.sum(-1, keepdim=True) + 1e-20)
        w = w * cfg["routed_scaling_factor"]
        y = mlp(x, p + "mlp.shared_experts.")
        for t in range(T):
            for j in range(k):
                y[t] += w[t, j] * mlp(x[t], p + f"mlp.experts.{int(idx[t, j])}.")
        h = h + y
    return (rms(h, W["model.norm.weight"]) @ W["lm_head.weight"].t()).float()


class RouterProbe:
    """Forward hooks on every router that record the smallest gap at each
    discrete choice (group cut and expert cut), per MODEL_SPEC.md section 5."""

    def __init__(self, model, cfg):
        self.min_gap = math.inf
        self.cfg = cfg
        self.handles = []
        for layer in model.model.layers:
            gate = getattr(layer.mlp, "gate", None)
            if gate is not None and hasattr(gate, "e_score_correction_bias"):
                self.handles.append(gate.register_forward_hook(self.hook))

    def hook(self, mod, inputs, output):
        x = inputs[0].reshape(-1, mod.hidden_dim).float()
        s = torch.sigmoid(x @ mod.weight.float().t())
        sc = s + mod.e_score_correction_bias
        G, tg, k = self.cfg["n_group"], self.cfg["topk_group"], self.cfg["num_experts_per_tok"]
        E = sc.shape[1]
        gs = sc.view(-1, G, E // G).topk(2, dim=-1)[0].sum(-1)
        if tg < G:
            gsort = gs.sort(dim=-1, descending=True)[0]
            self.min_gap = min(self.min_gap, float((gsort[:, tg - 1] - gsort[:, tg]).min()))
        keep = torch.zeros_like(gs, dtype=torch.bool)
        keep.scatter_(1, gs.topk(tg, dim=-1)[1], True)
        keep = keep.unsqueeze(-1).expand(-1, G, E // G).reshape(-1, E)
        masked = sc.masked_fill(~keep, -math.inf)
        msort = masked.sort(dim=-1, descending=True)[0]
        if k < E:
            gap = msort[:, k - 1] - msort[:, k]
            self.min_gap = min(self.min_gap, float(gap.min()))
        if float(sc.min()) <= 0:
            # HF <= 4.x masks dropped groups with 0.0: must stay positive.
            self.min_gap = min(self.min_gap, -1.0)

    def close(self):
        for h in self.handles:
            h.remove()


@torch.no_grad()
def run_sequences(model, cfg, prompts):
    """Greedy decode (full recompute per step), then one teacher-forced pass.
    Returns list of (prompt, greedy, logits[n_rows, V], min_margin)."""
    out = []
    for prompt in prompts:
        ids = list(prompt)
        for _ in range(GEN_TOKENS):
            logits = model(torch.tensor([ids])).logits[0, -1]
            ids.append(int(torch.argmax(logits)))
        greedy = ids[len(prompt):]
        full = model(torch.tensor([ids])).logits[0].float()
        P = len(prompt)
        margin = math.inf
        for t in range(GEN_TOKENS):
            row = full[P - 1 + t]
            top2 = torch.topk(row, 2)
            assert int(top2.indices[0]) == greedy[t], "teacher-forced argmax != greedy"
            margin = min(margin, float(top2.values[0] - top2.values[1]))
        out.append((prompt, greedy, full.numpy().astype("<f4"), margin))
    return out


def read_dequantised(src):
    """Every tensor of the checkpoint in src as float32, FP8 weights
    dequantised with their block scales (W = float(q) * S[i // 128, j // 128],
    ragged edge blocks included); the *_scale_inv tensors are left out."""
    with open(os.path.join(src, "model.safetensors.index.json")) as f:
        files = sorted(set(json.load(f)["weight_map"].values()))
    t = {}
    for fn in files:
        t.update(safetensors.torch.load_file(os.path.join(src, fn)))
    out = {}
    for name, w in t.items():
        if name.endswith(("_scale_inv", ".qzeros", ".scales")):
            continue
        if name.endswith(".qweight"):
            import make_golden_dense as mgd
            b = name[: -len(".qweight")]
            with open(os.path.join(src, "config.json")) as f:
                g = json.load(f)["quantization_config"]["group_size"]
            out[b + ".weight"] = mgd.unpack_awq(w, t[b + ".qzeros"], t[b + ".scales"], g)
            continue
        w = w.to(torch.float32)
        s = t.get(name + "_scale_inv")
        if s is not None:
            r, c = w.shape
            full = s.repeat_interleave(BLOCK, 0).repeat_interleave(BLOCK, 1)[:r, :c]
            w = w * full
        out[name] = w.contiguous()
    return out


def dequantise_dir(src, dst):
    """Writes an F32 copy of the checkpoint in src to dst, dequantising every
    FP8 weight with W = float(q) * S[i // 128, j // 128] read back from the
    files (independent of quantise_fp8).  transformers' own FP8 dequantiser
    cannot be used here: it derives the block size as rows / scale_rows, which
    is wrong for ragged blocks (see README.md)."""
    out = read_dequantised(src)
    safetensors.torch.save_file(out, os.path.join(dst, "model.safetensors"),
                                metadata={"format": "pt"})
    with open(os.path.join(src, "config.json")) as f:
        c = json.load(f)
    c.pop("quantization_config", None)
    with open(os.path.join(dst, "config.json"), "w") as f:
        json.dump(c, f)


def check_from_pretrained(cfg, outdir, model, prompt):
    """transformers' own loader must read the checkpoint (names, expert split,
    shards; FP8 via an F32 copy) to the same model."""
    import tempfile
    kw = dict(dtype=torch.float32, attn_implementation="eager")
    with tempfile.TemporaryDirectory() as tmp:
        src = outdir
        if cfg["dtype"] in ("fp8", "awq"):
            dequantise_dir(outdir, tmp)
            src = tmp
        m2 = DeepseekV3ForCausalLM.from_pretrained(src, **kw).eval()
    with torch.no_grad():
        a = model(torch.tensor([prompt])).logits
        b = m2(torch.tensor([prompt])).logits
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
        stored, exact = build_tensors(cfg, seed)
        total = write_checkpoint(cfg, stored, outdir)
        model = load_reference(cfg, outdir, exact)
        rng = np.random.default_rng(seed)
        prompts = [[0] + [int(t) for t in rng.integers(2, cfg["vocab_size"], P - 1)]
                   for P in PROMPT_LENS]
        probe = RouterProbe(model, cfg)
        results = run_sequences(model, cfg, prompts)
        probe.close()
        min_margin = min(r[3] for r in results)
        if min_margin <= MARGIN_LOGIT or probe.min_gap <= MARGIN_ROUTER:
            print(f"  {cfg['name']} seed {seed}: margin {min_margin:.2e}, "
                  f"router {probe.min_gap:.2e}; redrawing", file=sys.stderr)
            continue
        err = check_from_pretrained(cfg, outdir, model, prompts[-1] + results[-1][1])
        spec_err = max(float(np.abs(spec_logits(cfg, exact, r[0] + r[1]).numpy() - r[2]).max())
                       for r in results)
        assert spec_err < 1e-3, f"{cfg['name']}: HF differs from MODEL_SPEC by {spec_err}"
        break
    else:
        raise SystemExit(f"{cfg['name']}: no seed gave robust margins")

    seqs, offset = [], 0
    with open(os.path.join(outdir, "logits.bin"), "wb") as f:
        for prompt, greedy, logits, margin in results:
            f.write(np.ascontiguousarray(logits).tobytes())
            seqs.append({"prompt": prompt, "greedy": greedy, "n_rows": logits.shape[0],
                         "logits_offset": offset, "min_margin": margin})
            offset += logits.size
    golden = {
        "name": cfg["name"],
        "dtype": cfg["dtype"],
        "vocab_size": cfg["vocab_size"],
        "seed": seed,
        "tolerance_note": TOLERANCE_NOTE,
        "router_min_margin": probe.min_gap,
        "from_pretrained_max_abs_diff": err,
        "spec_reference_max_abs_diff": spec_err,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "safetensors": safetensors.__version__,
            "numpy": np.__version__,
        },
        "sequences": seqs,
    }
    with open(os.path.join(outdir, "golden.json"), "w") as f:
        json.dump(golden, f, indent=2)
        f.write("\n")
    size = sum(os.path.getsize(os.path.join(outdir, n)) for n in os.listdir(outdir))
    ckpt = sum(os.path.getsize(os.path.join(outdir, n)) for n in os.listdir(outdir)
               if n.endswith(".safetensors"))
    assert ckpt < MAX_CKPT_BYTES, f"{cfg['name']}: checkpoint {ckpt} bytes"
    print(f"{cfg['name']}: seed {seed}, {total} tensor bytes, {size} bytes on disk, "
          f"min margin {min_margin:.3g}, router gap {probe.min_gap:.3g}, "
          f"from_pretrained diff {err:.2e}, spec diff {spec_err:.2e}")
    return size


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "..", "tests", "data", "golden"))
    ap.add_argument("--only", default=None, help="generate one config by name")
    args = ap.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    os.makedirs(args.out, exist_ok=True)
    total = 0
    for cfg in CONFIGS:
        if args.only and cfg["name"] != args.only:
            continue
        total += make_one(cfg, args.out)
    if not args.only:
        assert total < MAX_TOTAL_BYTES, f"golden data is {total} bytes"
        print(f"total {total} bytes")


if __name__ == "__main__":
    main()
