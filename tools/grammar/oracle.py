"""Golden token masks from PyPI xgrammar (the engine vLLM uses) for the
corpus in corpus.py, with the real DeepSeek-V3 tokenizer at the model's
129,280-id vocabulary.  Run with the python of tools/grammar/xgr-venv.sh:

    python tools/grammar/oracle.py tests/data/deepseek-v3-tokenizer OUT.jsonl

One line per (case, document): the ids of the document as the tokenizer
encodes it and, for every position (before each id and after the last),
the number of allowed ids and a 64-bit checksum of the bitmask
(sum over words w_i of w_i * splitmix64(i), mod 2^64); ids are listed too
when at most 64 are allowed.  tests/test_grammar_oracle.c compares the C
engine with it."""
import json
import sys

import numpy as np
import torch
import xgrammar as xgr
from transformers import AutoTokenizer

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import corpus  # noqa: E402

VOCAB = 129280


def splitmix(n):
    x = (np.arange(n, dtype=np.uint64) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


# xgrammar 0.1.25 writes a string with minLength/maxLength as [^"\\\r\n]{m,n},
# which lets control characters other than CR LF into a JSON string (not
# JSON).  For those schemas the oracle is xgrammar's own grammar with that
# class corrected to [^"\\\0-\x1f], run by xgrammar's engine.
BOUNDED_STRING_FIX = ('[^\\"\\\\\\r\\n]', '[^\\"\\\\\\0-\\x1f]')


def compile_case(comp, kind, text):
    if kind == "schema":
        s = json.loads(text)
        if isinstance(s, dict) and ("minLength" in s or "maxLength" in s):
            ebnf = str(xgr.Grammar.from_json_schema(text, any_whitespace=True))
            assert BOUNDED_STRING_FIX[0] in ebnf, ebnf
            return comp.compile_grammar(ebnf.replace(*BOUNDED_STRING_FIX))
        return comp.compile_json_schema(text, any_whitespace=True)
    if kind == "json_object":
        return comp.compile_json_schema('{"type": "object"}', any_whitespace=True)
    if kind == "regex":
        return comp.compile_regex(text)
    if kind == "ebnf":
        return comp.compile_grammar(text)
    if kind == "choice":  # as vLLM writes a choice list
        alts = " | ".join(json.dumps(c) for c in json.loads(text))
        return comp.compile_grammar("root ::= " + alts)
    raise ValueError(kind)


def main():
    tok = AutoTokenizer.from_pretrained(sys.argv[1])
    info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=VOCAB, stop_token_ids=[tok.eos_token_id])
    comp = xgr.GrammarCompiler(info, cache_enabled=False)
    words = (VOCAB + 31) // 32
    K = splitmix(words)
    out = open(sys.argv[2], "w")
    for name, kind, text, docs in corpus.S:
        cg = compile_case(comp, kind, text)
        for doc in docs:
            ids = tok.encode(doc, add_special_tokens=False)
            m = xgr.GrammarMatcher(cg)
            bm = xgr.allocate_token_bitmask(1, VOCAB)
            masks = []
            for i in range(len(ids) + 1):
                m.fill_next_token_bitmask(bm)
                w = bm[0].numpy().view(np.uint32).astype(np.uint64)
                cnt = int(sum(bin(int(x)).count("1") for x in w)) if False else \
                    int(np.unpackbits(bm[0].numpy().view(np.uint8)).sum())
                h = int((w * K).sum(dtype=np.uint64))
                e = [cnt, "%016x" % h]
                if cnt <= 64:
                    e.append([int(j) for j in np.nonzero(np.unpackbits(bm[0].numpy().view(np.uint8),
                                                                       bitorder="little"))[0]])
                masks.append(e)
                if i < len(ids):
                    assert m.accept_token(ids[i]), (name, doc, i)
            out.write(json.dumps({"name": name, "kind": kind, "text": text, "doc": doc,
                                  "ids": ids, "masks": masks}, ensure_ascii=False) + "\n")
        print(name, file=sys.stderr)


if __name__ == "__main__":
    main()
