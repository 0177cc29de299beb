"""The tiny DeepSeek-V3 model of tools/train: transformers'
DeepseekV3ForCausalLM plus one multi-token-prediction (MTP) module as
DeepSeek-V3 defines it (paper section 2.2, and the layer the published
checkpoint stores at index num_hidden_layers).

MTP, depth 1: at position i the module sees the main model's final hidden
state h_i (after the final norm, which is what vLLM's DeepSeek MTP drafter
is handed) and the embedding of token t_{i+1}:
    x = eh_proj([enorm(embed(t_{i+1})) ; hnorm(h_i)])
    x = decoder_layer(x)            (a MoE layer, same shapes as the main ones)
    logits = shared_head.head(shared_head.norm(x))    predicts t_{i+2}
The embedding and the output head are shared with the main model (the
checkpoint stores copies under the MTP layer's names, as DeepSeek does).
"""
import torch
from torch import nn
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM
from transformers.models.deepseek_v3.modeling_deepseek_v3 import (
    DeepseekV3DecoderLayer, DeepseekV3RMSNorm)

# The shipped configuration (see docs/training.md for what each number buys).
DEFAULT = dict(
    hidden_size=256, intermediate_size=768, moe_intermediate_size=128,
    num_hidden_layers=4, first_k_dense_replace=1, num_attention_heads=4,
    num_key_value_heads=4, q_lora_rank=128, kv_lora_rank=64,
    qk_nope_head_dim=32, qk_rope_head_dim=16, v_head_dim=32,
    n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=1,
    n_group=2, topk_group=1, routed_scaling_factor=2.5, norm_topk_prob=True,
    max_position_embeddings=1024, rope_theta=10000.0, rms_norm_eps=1e-6,
)


def make_config(vocab_size, **over):
    kw = dict(DEFAULT)
    kw.update(over)
    return DeepseekV3Config(
        vocab_size=vocab_size, bos_token_id=0, eos_token_id=1, pad_token_id=1,
        tie_word_embeddings=False, attention_bias=False, hidden_act="silu",
        initializer_range=0.02, num_nextn_predict_layers=1, rope_scaling=None,
        moe_layer_freq=1, topk_method="noaux_tc", scoring_func="sigmoid",
        use_cache=False, **kw)


class MTP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg.hidden_size
        self.enorm = DeepseekV3RMSNorm(d, eps=cfg.rms_norm_eps)
        self.hnorm = DeepseekV3RMSNorm(d, eps=cfg.rms_norm_eps)
        self.eh_proj = nn.Linear(2 * d, d, bias=False)
        self.layer = DeepseekV3DecoderLayer(cfg, cfg.num_hidden_layers)
        self.norm = DeepseekV3RMSNorm(d, eps=cfg.rms_norm_eps)  # shared_head.norm


class TinyV3(nn.Module):
    """Main model + MTP; forward returns (main loss, MTP loss)."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.lm = DeepseekV3ForCausalLM(cfg)
        self.mtp = MTP(cfg)
        std = cfg.initializer_range
        for m in self.mtp.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=std)
        for name, p in self.mtp.layer.named_parameters():
            if "experts" in name or name.endswith("gate.weight"):
                nn.init.normal_(p, std=std)

    def forward(self, ids, attn, labels, mtp=True):
        """ids [B,T]; attn [B,T] 1 for real tokens; labels [B,T] the id to
        predict at each position (-100: none), i.e. ids shifted by one.
        mtp False: the MTP module is not run (its loss is 0)."""
        lm = self.lm
        out = lm.model(input_ids=ids, attention_mask=attn)
        h = out.last_hidden_state                        # [B,T,D], after the final norm
        logits = lm.lm_head(h)
        ce = nn.functional.cross_entropy
        loss = ce(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)
        if not mtp:
            return loss, torch.zeros(())

        # MTP: position i takes h_i and embed(t_{i+1}), predicts t_{i+2}
        T = ids.shape[1]
        emb = lm.model.embed_tokens(ids[:, 1:])          # t_{i+1}, i = 0..T-2
        x = self.mtp.eh_proj(torch.cat([self.mtp.enorm(emb), self.mtp.hnorm(h[:, :-1])], -1))
        pos = torch.arange(T - 1).unsqueeze(0)
        from transformers.masking_utils import create_causal_mask
        mask = create_causal_mask(config=self.cfg, inputs_embeds=x, attention_mask=attn[:, 1:],
                                  past_key_values=None, position_ids=pos)
        pe = lm.model.rotary_emb(x, pos)
        x = self.mtp.layer(x, attention_mask=mask, position_ids=pos, position_embeddings=pe)
        mlogits = lm.lm_head(self.mtp.norm(x))
        mlabels = labels[:, 1:]
        mloss = ce(mlogits.flatten(0, 1).float(), mlabels.flatten(), ignore_index=-100)
        return loss, mloss


# ---- FP8 e4m3 with 128x128 block scales (DeepSeek-V3's weight format) -------

BLOCK = 128
E4M3_MAX = 448.0


def fp8_quant(w):
    """w [..., out, in] float -> (q float8_e4m3fn, scale_inv [..., ceil(out/128),
    ceil(in/128)] float32), scale = amax/448 per 128x128 block, q rounded to
    nearest even by torch's cast; w ~= q * scale."""
    *lead, o, i = w.shape
    bo, bi = -(-o // BLOCK), -(-i // BLOCK)
    pad = torch.zeros(*lead, bo * BLOCK, bi * BLOCK, dtype=torch.float32)
    pad[..., :o, :i] = w.float()
    blocks = pad.view(*lead, bo, BLOCK, bi, BLOCK)
    amax = blocks.abs().amax(dim=(-3, -1))            # [..., bo, bi]
    scale = torch.where(amax > 0, amax / E4M3_MAX, torch.ones_like(amax))
    q = (blocks / scale[..., :, None, :, None]).to(torch.float8_e4m3fn)
    q = q.view(*lead, bo * BLOCK, bi * BLOCK)[..., :o, :i].contiguous()
    return q, scale.float()


def fp8_dequant(q, scale):
    *lead, o, i = q.shape
    s = scale.repeat_interleave(BLOCK, -2).repeat_interleave(BLOCK, -1)[..., :o, :i]
    return q.float() * s


def fake_fp8(w):
    """Straight-through FP8 rounding for quantisation-aware training."""
    q, s = fp8_quant(w.detach())
    return w + (fp8_dequant(q, s) - w).detach()


def is_fp8_param(name):
    """The weights DeepSeek stores as FP8: every linear of attention and of the
    MLPs/experts (not norms, embedding, lm_head, the router, the bias)."""
    if not name.endswith("weight") and not name.endswith("gate_up_proj") and \
            not name.endswith("down_proj"):
        return False
    if "norm" in name or "embed_tokens" in name or "lm_head" in name:
        return False
    if name.endswith("mlp.gate.weight"):
        return False
    return True
