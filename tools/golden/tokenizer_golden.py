#!/usr/bin/env python3
"""Golden ids for the tokenizer tests, from PyPI `tokenizers`.

  tokenizer_golden.py [TOKENIZER_DIR [DATA_DIR]]

TOKENIZER_DIR defaults to tests/data/deepseek-v3-tokenizer.

Writes into DATA_DIR (tests/data/tokenizer):
  golden_deepseek_v3.jsonl  one line per corpus.jsonl line: {"ids": [...]}
                            (add_special_tokens=False), plus "skip" = decode
                            with skip_special_tokens=True when it differs
                            from the text.  Asserts decode(ids) == text.
  mini_*.json               small tokenizers (trained here on the corpus)
                            covering what the DeepSeek file does not: pair
                            merges, add_prefix_space, use_regex, Split
                            behaviours and invert, lstrip/rstrip/single_word,
                            normalized added tokens, TemplateProcessing,
                            char-level BPE with unk/prefix/suffix, no decoder.
  golden_mini_*.jsonl       per corpus line (the first N): ids with
                            add_special_tokens=True, "dec" and "skip" decodes.
"""
import json
import os
import sys

import tokenizers
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, processors, trainers, AddedToken, Regex

MINI_N = 600


def load_corpus(data):
    with open(os.path.join(data, "corpus.jsonl"), encoding="utf-8") as f:
        return [json.loads(l)["text"] for l in f]


def golden_deepseek(shared, data, corpus):
    tok = Tokenizer.from_file(os.path.join(shared, "tokenizer.json"))
    out = os.path.join(data, "golden_deepseek_v3.jsonl")
    with open(out, "w", encoding="utf-8") as f:
        for t in corpus:
            ids = tok.encode(t, add_special_tokens=False).ids
            assert tok.decode(ids, skip_special_tokens=False) == t, repr(t)
            rec = {"ids": ids}
            skip = tok.decode(ids, skip_special_tokens=True)
            if skip != t:
                rec["skip"] = skip
            f.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n")
    print("wrote", out)


def train(corpus, tok, vocab_size, **kw):
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False, **kw)
    tok.train_from_iterator(corpus, trainer=trainer)
    return tok


def mini_gpt2(corpus):
    """ByteLevel with regex and prefix space, pair merges, flagged added tokens."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    train(corpus, tok, 800, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
          special_tokens=["<s>", "</s>"])
    tok.add_special_tokens([AddedToken("<|endoftext|>", special=True),
                            AddedToken("[MASK]", lstrip=True, rstrip=True, special=True, normalized=False)])
    tok.add_tokens([AddedToken("hello", single_word=True, normalized=False),
                    AddedToken("world", lstrip=True, normalized=True),
                    AddedToken("\u4e16\u754c", rstrip=True, normalized=True),
                    AddedToken("<\uff5cUser\uff5c>", normalized=True)])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))])
    return tok


def mini_split(corpus):
    """Split behaviours and invert, then ByteLevel without regex."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\s+"), behavior="merged_with_next"),
        pre_tokenizers.Split(Regex(r"[\p{P}\p{S}]"), behavior="merged_with_previous"),
        pre_tokenizers.Split(Regex(r"\p{N}"), behavior="contiguous"),
        pre_tokenizers.Split(Regex(r"[\p{L}\p{M}]{1,6}"), behavior="isolated", invert=True),
        pre_tokenizers.Split("--", behavior="removed"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    train(corpus, tok, 700, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
          special_tokens=["<pad>"])
    tok.add_special_tokens([AddedToken("<think>", special=True, normalized=False)])
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def mini_chars(corpus):
    """Char-level BPE: unk, continuing prefix, end-of-word suffix, no decoder."""
    tok = Tokenizer(models.BPE(unk_token="[UNK]", continuing_subword_prefix="##",
                               end_of_word_suffix="</w>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"\s+|[\p{P}]"), behavior="removed")
    train([c for c in corpus if c.isascii()], tok, 600, special_tokens=["[UNK]", "[CLS]", "[SEP]"],
          continuing_subword_prefix="##", end_of_word_suffix="</w>")
    tok.post_processor = processors.BertProcessing(("[SEP]", tok.token_to_id("[SEP]")),
                                                   ("[CLS]", tok.token_to_id("[CLS]")))
    return tok


def golden_mini(name, tok, data, corpus):
    path = os.path.join(data, f"mini_{name}.json")
    tok.save(path, pretty=False)
    tok = Tokenizer.from_file(path)
    out = os.path.join(data, f"golden_mini_{name}.jsonl")
    with open(out, "w", encoding="utf-8") as f:
        for t in corpus[:MINI_N]:
            ids = tok.encode(t, add_special_tokens=True).ids
            rec = {"ids": ids, "dec": tok.decode(ids, skip_special_tokens=False),
                   "skip": tok.decode(ids, skip_special_tokens=True)}
            f.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n")
    print("wrote", path, out)


def main():
    shared = sys.argv[1] if len(sys.argv) > 1 else "tests/data/deepseek-v3-tokenizer"
    data = sys.argv[2] if len(sys.argv) > 2 else "tests/data/tokenizer"
    print("tokenizers", tokenizers.__version__)
    corpus = load_corpus(data)
    golden_deepseek(shared, data, corpus)
    # Mini tokenizers see a mixed-up order so long words and specials occur early.
    import random
    mixed = corpus[:]
    random.Random(7).shuffle(mixed)
    for name, make in (("gpt2", mini_gpt2), ("split", mini_split), ("chars", mini_chars)):
        golden_mini(name, make(corpus), data, mixed)
    with open(os.path.join(data, "mini_order.json"), "w") as f:
        json.dump([corpus.index(t) for t in mixed[:MINI_N]], f)


if __name__ == "__main__":
    main()
