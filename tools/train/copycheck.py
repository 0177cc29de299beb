#!/usr/bin/env python3
"""Can a model learn to copy in this training path? (issue 15, step 1)

Trains on a pure copy task in the chat format of the corpus ("Repeat: 58 67
12" -> working "58 67 12", answer "58 67 12"; 3-5 numbers of two digits)
for a few minutes, then decodes 40 held-out prompts greedily and counts the
exact copies. `--arch deepseek` runs train.py itself (the shipped recipe's
code path: TinyV3 with MTP, batches, schedule, bias updates), `--arch
llama` a plain transformers LlamaForCausalLM of the same width and depth
on the same batches and schedule, for comparison.

Usage: copycheck.py --tokenizer DIR --work DIR [--arch deepseek|llama]
                    [--minutes 3] [--config JSON] [train.py args...]
"""
import argparse
import json
import math
import os
import random
import subprocess
import sys
import time

import torch
from tokenizers import Tokenizer

import corpus
import quick
import train as T

HERE = os.path.dirname(os.path.abspath(__file__))


def write_copy(path, seed, n):
    rng = random.Random(seed)
    with open(path, "w") as f:
        for _ in range(n):
            nums = " ".join(str(rng.randint(10, 99)) for _ in range(rng.randint(3, 5)))
            q = "Repeat: " + nums
            f.write(json.dumps({
                "kind": "copy", "answer": nums,
                "prompt": corpus.render_r1([{"role": "system", "content": corpus.SYSTEM},
                                            {"role": "user", "content": q}]),
                "completion": corpus.completion(nums, nums)}) + "\n")


def train_llama(a, train_path, vocab):
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(1234)
    rng = random.Random(1234)
    tok = Tokenizer.from_file(os.path.join(a.tokenizer, "tokenizer.json"))
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=256, intermediate_size=768,
                      num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4,
                      max_position_embeddings=1024, bos_token_id=0, eos_token_id=1,
                      pad_token_id=1, use_cache=False)
    lm = LlamaForCausalLM(cfg)
    stream = T.batches(T.encode_corpus(train_path, tok), 2048, rng)
    opt = torch.optim.AdamW(lm.parameters(), lr=3e-3, betas=(0.9, 0.95), weight_decay=0.01)
    t0, step = time.time(), 0
    while time.time() - t0 < 60 * a.minutes:  # train.py's schedule
        prog = (time.time() - t0) / (60 * a.minutes)
        lr = 3e-3 * (min(1.0, (step + 1) / 60) if step < 60 else
                     0.1 + 0.45 * (1 + math.cos(math.pi * prog)))
        for g in opt.param_groups:
            g["lr"] = lr
        ids, attn, labels = next(stream)
        logits = lm(input_ids=ids, attention_mask=attn).logits
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(),
                                                 ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lm.parameters(), 1.0)
        opt.step()
        step += 1
    print(f"llama: {step} steps, last loss {loss.item():.3f}")
    lm.config.use_cache = True
    return lm.eval()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--arch", choices=("deepseek", "llama"), default="deepseek")
    ap.add_argument("--minutes", type=float, default=3)
    ap.add_argument("--config", default='{"num_hidden_layers": 3}')
    a, extra = ap.parse_known_args()
    torch.set_num_threads(1)
    os.makedirs(a.work, exist_ok=True)
    train_path = os.path.join(a.work, "copy.jsonl")
    write_copy(train_path, 1, 20000)
    tok = Tokenizer.from_file(os.path.join(a.tokenizer, "tokenizer.json"))
    if a.arch == "llama":
        lm = train_llama(a, train_path, tok.get_vocab_size(with_added_tokens=True))
    else:
        run = os.path.join(a.work, "run")
        subprocess.run([sys.executable, os.path.join(HERE, "train.py"), "--corpus", train_path,
                        "--tokenizer", a.tokenizer, "--out", run, "--steps", "100000",
                        "--minutes", str(a.minutes), "--lr", "3e-3", "--warmup", "60",
                        "--tokens-per-batch", "2048", "--qat", "0", "--config", a.config]
                       + extra, check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(run, "log.json")) as f:
            s = json.load(f)["steps"]
        print(f"deepseek: {len(s)} steps, mean loss of the last 50 "
              f"{sum(e['loss'] for e in s[-50:]) / len(s[-50:]):.3f}")
        lm = quick.load_state(run, False)
    test_path = os.path.join(a.work, "copy_test.jsonl")
    write_copy(test_path, 2, 40)
    ok = 0
    with open(test_path) as f:
        for line in f:
            r = json.loads(line)
            out = tok.decode(quick.greedy(lm, tok.encode(r["prompt"], add_special_tokens=False).ids,
                                          40), skip_special_tokens=False)
            ok += out.split("\n")[0] == r["answer"]
    print(f"{a.arch}: {ok}/40 held-out prompts copied exactly")


if __name__ == "__main__":
    main()
