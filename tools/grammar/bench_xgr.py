"""xgrammar's side of tools/bench/bench_grammar.c: the same corpus
(golden.jsonl), tokenizer and vocabulary size; compile time with its
cache disabled, then the per-token mask time (fill_next_token_bitmask)
at every position of the documents, first walk and REPEAT warm walks.

    python bench_xgr.py TOKENIZER_DIR GOLDEN.jsonl [REPEAT]"""
import json
import sys
import time

import numpy as np
import xgrammar as xgr
from transformers import AutoTokenizer

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from oracle import compile_case, VOCAB  # noqa: E402


def report(name, v):
    v = np.sort(np.array(v)) * 1e6
    print("%-22s n=%6d mean %9.1f us  p50 %9.1f us  p99 %9.1f us  max %9.1f us" % (
        name, len(v), v.mean(), v[len(v) // 2], v[int(len(v) * 0.99)], v[-1]))


def main():
    repeat = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    tok = AutoTokenizer.from_pretrained(sys.argv[1])
    t0 = time.perf_counter()
    info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=VOCAB, stop_token_ids=[tok.eos_token_id])
    print("tokenizer info: %.1f ms (once per tokenizer)" % ((time.perf_counter() - t0) * 1e3))
    comp = xgr.GrammarCompiler(info, cache_enabled=False)
    cases = {}
    for line in open(sys.argv[2]):
        c = json.loads(line)
        cases.setdefault((c["name"], c["kind"], c["text"]), []).append(c["ids"])
    bm = xgr.allocate_token_bitmask(1, VOCAB)
    comp_t, first, warm = [], [], []
    for (name, kind, text), docs in cases.items():
        t0 = time.perf_counter()
        cg = compile_case(comp, kind, text)
        comp_t.append(time.perf_counter() - t0)
        for r in range(repeat + 1):
            for ids in docs:
                m = xgr.GrammarMatcher(cg)
                for i in range(len(ids) + 1):
                    t0 = time.perf_counter()
                    m.fill_next_token_bitmask(bm)
                    (first if r == 0 else warm).append(time.perf_counter() - t0)
                    if i < len(ids):
                        m.accept_token(ids[i])
    report("compile", comp_t)
    report("mask (first walk)", first)
    report("mask (warm)", warm)


if __name__ == "__main__":
    main()
