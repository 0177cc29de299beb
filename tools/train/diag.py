#!/usr/bin/env python3
"""Pipeline checks of tools/train (issue 15's step 1): is a model that does
not learn to copy the victim of a bug in the training path?

On a fresh TinyV3 and real corpus examples (the shapes train.py uses):
  1. padding: the hidden states of one example alone equal the same
     example's inside a right-padded batch from train.collate;
  2. the causal+padding mask transformers builds for that batch;
  3. d(loss on the completion)/d(embedding) is non-zero on every prompt
     token, the question's digits included (the prompt is attended);
  4. every routed expert of every MoE layer gets a gradient, and so do the
     router weights (sigmoid scores through the top-k weights).
Exit status 1 when a check fails.

Usage: diag.py --corpus corpus.jsonl --tokenizer DIR [--config JSON]
"""
import argparse
import json
import os
import sys

import torch
from tokenizers import Tokenizer
from transformers.masking_utils import create_causal_mask

import model as M
import train as T


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--config", default='{"num_hidden_layers": 3}')
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    tok = Tokenizer.from_file(os.path.join(a.tokenizer, "tokenizer.json"))
    cfg = M.make_config(tok.get_vocab_size(with_added_tokens=True), **json.loads(a.config))
    net = M.TinyV3(cfg).train()
    print(f"rope dims {cfg.qk_rope_head_dim} (rotary inv_freq {net.lm.model.rotary_emb.inv_freq.numel()}"
          f" pairs), rope_interleave {cfg.rope_interleave}, "
          f"attention {net.lm.config._attn_implementation}")
    exs = []
    with open(a.corpus) as f:
        for line in f:
            r = json.loads(line)
            if r["kind"] in ("add", "word", "sort") and len(exs) < 8:
                exs.append((tok.encode(r["prompt"], add_special_tokens=False).ids,
                            T.encode_completions(tok, [r["completion"]])[0]))
    bad = []

    ids, attn, labels = T.collate(exs)
    k = min(range(len(exs)), key=lambda i: sum(map(len, exs[i])))
    one, attn1, _ = T.collate([exs[k]])
    n = one.shape[1]
    with torch.no_grad():
        hb = net.lm.model(input_ids=ids, attention_mask=attn).last_hidden_state
        h1 = net.lm.model(input_ids=one, attention_mask=attn1).last_hidden_state
    diff = (hb[k, :n] - h1[0]).abs().max().item()
    print(f"1. padding: alone vs in a batch padded by {ids.shape[1] - n}: max |diff| {diff:.2e}")
    if diff > 1e-5:
        bad.append("padding")

    pos = torch.arange(ids.shape[1]).unsqueeze(0)
    mask = create_causal_mask(config=cfg, inputs_embeds=hb, attention_mask=attn,
                              past_key_values=None, position_ids=pos)
    want = torch.tril(torch.ones(ids.shape[1], ids.shape[1], dtype=torch.bool))
    want = want[None] & attn.bool()[:, None, :]
    rows = attn.bool()  # rows of padding positions do not matter
    ok = bool(((mask[:, 0] == want) | ~rows[:, :, None]).all())
    print(f"2. mask: {mask.dtype} {tuple(mask.shape)}, causal and padding: {ok}")
    if not ok:
        bad.append("mask")

    p, c = exs[0]
    seq = torch.tensor([p + c])
    emb = net.lm.model.embed_tokens(seq).detach().requires_grad_(True)
    h = net.lm.model(inputs_embeds=emb, attention_mask=torch.ones_like(seq)).last_hidden_state
    lab = torch.full_like(seq, -100)
    lab[0, len(p) - 1:-1] = seq[0, len(p):]
    loss = torch.nn.functional.cross_entropy(net.lm.lm_head(h)[0], lab[0], ignore_index=-100)
    loss.backward()
    g = emb.grad[0].norm(dim=-1)
    toks = [tok.id_to_token(t) for t in seq[0].tolist()]
    digits = [(toks[j], round(g[j].item(), 4)) for j in range(len(p)) if toks[j].isdigit()]
    print(f"3. d(loss)/d(embedding), question digits: {digits}; smallest over the prompt "
          f"{g[:len(p)].min().item():.3g}")
    if not digits or g[:len(p)].min().item() <= 0:
        bad.append("prompt gradient")

    for name, prm in net.lm.named_parameters():
        if name.endswith("experts.gate_up_proj") or name.endswith("mlp.gate.weight"):
            gn = prm.grad.flatten(1).norm(dim=1) if prm.dim() == 3 else prm.grad.norm().view(1)
            print(f"4. {name}: gradient norms {[round(x, 4) for x in gn.tolist()]}")
            if (gn == 0).any():
                bad.append(name)
    print("FAIL: " + ", ".join(bad) if bad else "all checks pass")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
