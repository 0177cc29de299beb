#!/usr/bin/env python3
"""Trains the byte-level BPE tokenizer of the tiny model on the corpus.

The result has DeepSeek-V3's layout: tokenizer.json with V3's normalizer,
pre-tokenizer (digit groups, CJK runs, V3's word regex, then ByteLevel
without regex), ByteLevel post-processor and decoder; ids 0/1/2 are BOS,
EOS and pad inside the BPE vocabulary; the chat and tool markers
(<｜User｜>, <｜Assistant｜>, the tool-call markers) and R1's <think> and
</think> are added tokens after the BPE ids with special=false, as in
DeepSeek-R1, so they survive skip_special_tokens; placeholder added tokens
pad the vocabulary to --vocab-size. tokenizer_config.json carries
DeepSeek-R1's chat template verbatim (tests/data/chat/r1_chat_template.jinja),
which dsa-head recognises as the R1 variant.

Digits: the merges BPE learnt that touch a digit are dropped, and the 100
merges of two digits are put first instead, so every number below 100 is
one token ("7", "58", "07") and longer digit runs split into such pairs.
The model then copies a number from the question as one token (as it does
names; copying digit strings digit by digit is what earlier models failed
to learn, docs/training.md), and its column working reads the digits off
those tokens. The pair merges are ranked so that a 3-digit run that starts
with 1 splits as "1" + "bc" (except 111; the fifth model's sums, 100-198,
were written so; computed numbers are now trained digit by digit,
corpus.SPLIT); other 3-digit runs split by the ranks, always the same way.

Usage: tokenizer.py --corpus corpus.jsonl --out DIR [--vocab-size 2048]
"""
import argparse
import json
import os

from tokenizers import Tokenizer, models, pre_tokenizers, trainers

import corpus

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
PAD = "<｜▁pad▁｜>"
MARKERS = ["<｜User｜>", "<｜Assistant｜>", "<think>", "</think>",
           "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", "<｜tool▁call▁begin｜>",
           "<｜tool▁call▁end｜>", "<｜tool▁outputs▁begin｜>", "<｜tool▁outputs▁end｜>",
           "<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>", "<｜tool▁sep｜>"]


def texts(path):
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if r["kind"] == "tool":
                yield r["prompt2"] + r["completion2"]
                yield r["completion1"]
            else:
                yield r["prompt"] + corpus.plain(r["completion"])


def v3_pre_tokenizer():
    """DeepSeek-V3's pre-tokenizer, taken from its tokenizer.json in tests/data."""
    with open(os.path.join(ROOT, "tests/data/deepseek-v3-tokenizer/tokenizer.json")) as f:
        v3 = json.load(f)
    return v3["normalizer"], v3["pre_tokenizer"], v3["post_processor"], v3["decoder"]


def train_bpe(corpus, n_bpe):
    norm, pre, post, dec = v3_pre_tokenizer()
    tok = Tokenizer(models.BPE())
    # same pre-tokenizer as V3 (built from its JSON so it cannot drift)
    tmp = json.loads(tok.to_str())
    tmp["pre_tokenizer"] = pre
    tmp["normalizer"] = norm
    tok = Tokenizer.from_str(json.dumps(tmp))
    trainer = trainers.BpeTrainer(
        vocab_size=n_bpe, min_frequency=2, show_progress=False,
        special_tokens=[BOS, EOS, PAD] + MARKERS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts(corpus), trainer=trainer)
    return json.loads(tok.to_str()), post, dec


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--vocab-size", type=int, default=2048)
    a = ap.parse_args()

    n_added = len(MARKERS)
    raw, post, dec = train_bpe(a.corpus, a.vocab_size - n_added + 200)
    merges = raw["model"]["merges"]
    merges = [m.split(" ") if isinstance(m, str) else m for m in merges]
    digits = set("0123456789")
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())

    # Rebuild the vocabulary: BOS, EOS, pad, the 256 byte symbols, then the
    # results of the kept merges in merge order (each merge's parts come
    # earlier, so the table is valid BPE).
    vocab = {BOS: 0, EOS: 1, PAD: 2}
    for ch in alphabet:
        vocab[ch] = len(vocab)
    kept = []
    n_bpe_max = a.vocab_size - n_added
    # the two-digit merges first; those starting with 1 last, "11" the very
    # last, so that "1bc" splits as "1" + "bc"
    pairs = [(x, y) for x in "0123456789" for y in "0123456789"]
    pairs.sort(key=lambda p: (p[0] == "1", p == ("1", "1")))
    for l, r in pairs:
        kept.append([l, r])
        vocab[l + r] = len(vocab)
    for l, r in merges:
        if len(vocab) >= n_bpe_max:
            break
        if digits & set(l + r):
            continue
        if l not in vocab or r not in vocab or l + r in vocab:
            continue
        kept.append([l, r])
        vocab[l + r] = len(vocab)
    n_bpe = len(vocab)
    added = [{"id": 0, "content": BOS, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True},
             {"id": 1, "content": EOS, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True},
             {"id": 2, "content": PAD, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True}]
    for i, m in enumerate(MARKERS):
        added.append({"id": n_bpe + i, "content": m, "single_word": False, "lstrip": False,
                      "rstrip": False, "normalized": True, "special": False})
    k = 0
    while n_bpe + len(MARKERS) + k < a.vocab_size:
        added.append({"id": n_bpe + len(MARKERS) + k,
                      "content": f"<｜place▁holder▁no▁{k}｜>", "single_word": False,
                      "lstrip": False, "rstrip": False, "normalized": True, "special": True})
        k += 1

    out = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": added,
        "normalizer": raw["normalizer"], "pre_tokenizer": raw["pre_tokenizer"],
        "post_processor": post, "decoder": dec,
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": kept},
    }
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "tokenizer.json"), "w") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)

    with open(os.path.join(ROOT, "tests/data/chat/r1_chat_template.jinja")) as f:
        template = f.read()
    tok_cfg = {
        "add_bos_token": True, "add_eos_token": False,
        "bos_token": {"__type": "AddedToken", "content": BOS, "lstrip": False,
                      "normalized": True, "rstrip": False, "single_word": False},
        "clean_up_tokenization_spaces": False,
        "eos_token": {"__type": "AddedToken", "content": EOS, "lstrip": False,
                      "normalized": True, "rstrip": False, "single_word": False},
        "legacy": True, "model_max_length": 1024,
        "pad_token": {"__type": "AddedToken", "content": EOS, "lstrip": False,
                      "normalized": True, "rstrip": False, "single_word": False},
        "sp_model_kwargs": {}, "unk_token": None, "tokenizer_class": "LlamaTokenizerFast",
        "chat_template": template,
    }
    with open(os.path.join(a.out, "tokenizer_config.json"), "w") as f:
        json.dump(tok_cfg, f, ensure_ascii=False, indent=2)

    check = Tokenizer.from_file(os.path.join(a.out, "tokenizer.json"))
    sample = next(texts(a.corpus))
    ids = check.encode(sample, add_special_tokens=False).ids
    assert check.decode(ids, skip_special_tokens=False) == sample, "round trip"
    print(f"vocab {a.vocab_size}: {n_bpe} BPE ids ({len(kept)} merges), "
          f"{len(MARKERS)} markers, {k} placeholders; sample {len(sample)} chars -> {len(ids)} ids")


if __name__ == "__main__":
    main()
