"""llamacpp_compare.py - the same random Qwen2-architecture weights as our
checkpoints (BF16 and AWQ int4) and as llama.cpp GGUF files (BF16, Q4_0,
Q4_K_M), and llama.cpp's prefill / decode throughput on them
(docs/perf/cpu.md, "Against llama.cpp").

Needs numpy and PyPI's gguf in the running Python, and llama.cpp either
as PyPI's llama-cpp-python or as its own llama-quantize / llama-bench
programs built beside the project (--llama-bin DIR); none of these is a
dependency of the project.  Our own figures come from dsa-bench-cpu on the
directories written here, in the same session (docs/perf/cpu.md gives the
commands).

Usage:
  python3 llamacpp_compare.py write OUT_DIR [--layers N] [--llama-bin DIR]
  python3 llamacpp_compare.py bench OUT_DIR [--threads 2 --prompt-len 128 --decode-steps 16]
  (with --llama-bin, bench runs DIR/llama-bench -p PROMPT_LEN -n DECODE_STEPS)
"""
import subprocess
import argparse
import json
import os
import struct
import sys
import time

import numpy as np

# Qwen2-0.5B's shape (Qwen2.5-0.5B / the smallest R1-Distill family member's
# architecture at 0.5B): tied embeddings, q/k/v biases.
SHAPE = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
             num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
             rope_theta=1000000.0, rms_norm_eps=1e-6, max_position_embeddings=32768)
AWQ_GROUP = 128
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)


def bf16_bits(a):
    """float32 array -> uint16 BF16 bits, round to nearest even."""
    u = a.astype(np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def bf16_float(b):
    return (b.astype(np.uint32) << 16).view(np.float32)


def write_safetensors(path, tensors):
    """tensors: name -> (dtype string, numpy array of the stored bits)."""
    header, off = {}, 0
    for name, (dt, a) in tensors.items():
        n = a.nbytes
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + n]}
        off += n
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for dt, a in tensors.values():
            f.write(np.ascontiguousarray(a).tobytes())


def pack_awq(w, g):
    """W [out, in] float32 -> qweight, qzeros int32, scales float16 (AutoAWQ GEMM)."""
    out_f, in_f = w.shape
    wg = w.T.reshape(in_f // g, g, out_f)
    mx, mn = wg.max(1), wg.min(1)
    scales = (np.maximum(mx - mn, 1e-5) / 15).astype(np.float16)
    s = scales.astype(np.float32)
    zeros = np.clip(-np.round(mn / s), 0, 15).astype(np.int64)
    q = np.clip(np.round(wg / s[:, None, :]) + zeros[:, None, :], 0, 15).astype(np.int64)
    q = q.reshape(in_f, out_f)

    def pack(x):
        x = x.reshape(x.shape[0], out_f // 8, 8)
        p = np.zeros(x.shape[:2], dtype=np.int64)
        for k, src in enumerate(AWQ_ORDER):
            p |= x[:, :, src] << (4 * k)
        return p.astype(np.uint32).view(np.int32)
    return pack(q), pack(zeros), scales


def draw(layers, seed=7):
    """float32 weights by transformers name (BF16-rounded)."""
    rng = np.random.default_rng(seed)
    c = SHAPE
    D, I, V = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    H, KV = c["num_attention_heads"], c["num_key_value_heads"]
    hd = D // H

    def lin(o, i):
        return bf16_float(bf16_bits(rng.standard_normal((o, i), dtype=np.float32) / np.sqrt(i)))

    def vec(n, mean, std):
        return bf16_float(bf16_bits(mean + std * rng.standard_normal(n, dtype=np.float32)))

    w = {"model.embed_tokens.weight": bf16_float(bf16_bits(
        rng.standard_normal((V, D), dtype=np.float32)))}
    for L in range(layers):
        p = f"model.layers.{L}."
        w[p + "input_layernorm.weight"] = vec(D, 1.0, 0.1)
        w[p + "post_attention_layernorm.weight"] = vec(D, 1.0, 0.1)
        w[p + "self_attn.q_proj.weight"] = lin(H * hd, D)
        w[p + "self_attn.k_proj.weight"] = lin(KV * hd, D)
        w[p + "self_attn.v_proj.weight"] = lin(KV * hd, D)
        w[p + "self_attn.q_proj.bias"] = vec(H * hd, 0.0, 0.1)
        w[p + "self_attn.k_proj.bias"] = vec(KV * hd, 0.0, 0.1)
        w[p + "self_attn.v_proj.bias"] = vec(KV * hd, 0.0, 0.1)
        w[p + "self_attn.o_proj.weight"] = lin(D, H * hd)
        w[p + "mlp.gate_proj.weight"] = lin(I, D)
        w[p + "mlp.up_proj.weight"] = lin(I, D)
        w[p + "mlp.down_proj.weight"] = lin(D, I)
    w["model.norm.weight"] = vec(D, 1.0, 0.1)
    return w


def config(layers, awq):
    d = dict(SHAPE, architectures=["Qwen2ForCausalLM"], model_type="qwen2",
             num_hidden_layers=layers, hidden_act="silu", tie_word_embeddings=True,
             use_sliding_window=False, sliding_window=4096, max_window_layers=layers,
             bos_token_id=151643, eos_token_id=151643, rope_scaling=None,
             torch_dtype="float16" if awq else "bfloat16")
    if awq:
        d["quantization_config"] = {"bits": 4, "group_size": AWQ_GROUP, "quant_method": "awq",
                                    "version": "gemm", "zero_point": True,
                                    "modules_to_not_convert": None}
    return d


def write_ours(out, w, layers, awq):
    os.makedirs(out, exist_ok=True)
    t = {}
    for name, a in w.items():
        if awq and ".layers." in name and name.endswith("proj.weight"):
            qw, qz, sc = pack_awq(a, AWQ_GROUP)
            b = name[: -len(".weight")]
            t[b + ".qweight"], t[b + ".qzeros"] = ("I32", qw), ("I32", qz)
            t[b + ".scales"] = ("F16", sc)
        elif awq:
            t[name] = ("F16", a.astype(np.float16))
        else:
            t[name] = ("BF16", bf16_bits(a))
    write_safetensors(os.path.join(out, "model.safetensors"), t)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config(layers, awq), f, indent=1)


def write_gguf(path, w, layers):
    import gguf
    c = SHAPE
    g = gguf.GGUFWriter(path, "qwen2")
    g.add_name("qwen2-bench-random")
    g.add_context_length(c["max_position_embeddings"])
    g.add_embedding_length(c["hidden_size"])
    g.add_block_count(layers)
    g.add_feed_forward_length(c["intermediate_size"])
    g.add_head_count(c["num_attention_heads"])
    g.add_head_count_kv(c["num_key_value_heads"])
    g.add_rope_freq_base(c["rope_theta"])
    g.add_layer_norm_rms_eps(c["rms_norm_eps"])
    g.add_file_type(gguf.LlamaFileType.MOSTLY_BF16)
    # a placeholder byte-level vocabulary of the right size: the benchmark
    # feeds token ids, never text
    g.add_tokenizer_model("gpt2")
    g.add_tokenizer_pre("default")
    g.add_token_list([f"<t{i}>" for i in range(c["vocab_size"])])
    g.add_token_types([gguf.TokenType.NORMAL] * c["vocab_size"])
    # llama.cpp refuses a BPE vocabulary without a merges array, and the
    # writer leaves an empty one out: one dummy merge
    g.add_token_merges(["<t1> <t2>"])
    g.add_bos_token_id(151643)
    g.add_eos_token_id(151643)
    names = {"input_layernorm.weight": "attn_norm.weight",
             "post_attention_layernorm.weight": "ffn_norm.weight",
             "self_attn.q_proj.weight": "attn_q.weight", "self_attn.q_proj.bias": "attn_q.bias",
             "self_attn.k_proj.weight": "attn_k.weight", "self_attn.k_proj.bias": "attn_k.bias",
             "self_attn.v_proj.weight": "attn_v.weight", "self_attn.v_proj.bias": "attn_v.bias",
             "self_attn.o_proj.weight": "attn_output.weight",
             "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
             "mlp.down_proj.weight": "ffn_down.weight"}
    for name, a in w.items():
        if name == "model.embed_tokens.weight":
            gn = "token_embd.weight"
        elif name == "model.norm.weight":
            gn = "output_norm.weight"
        else:
            L, rest = name[len("model.layers."):].split(".", 1)
            gn = f"blk.{L}.{names[rest]}"
        if a.ndim == 1:  # norms and biases stay F32 as llama.cpp's converter keeps them
            g.add_tensor(gn, a.astype(np.float32))
        else:
            g.add_tensor(gn, bf16_bits(a), raw_shape=a.shape,
                         raw_dtype=gguf.GGMLQuantizationType.BF16)
    g.write_header_to_file()
    g.write_kv_data_to_file()
    g.write_tensors_to_file()
    g.close()


def quantise(src, dst, ftype, llama_bin=None):
    if llama_bin:
        name = {"q4_0": "Q4_0", "q4_k_m": "Q4_K_M"}[ftype]
        subprocess.run([os.path.join(llama_bin, "llama-quantize"), src, dst, name, "2"],
                       check=True, stdout=subprocess.DEVNULL)
        return
    import llama_cpp
    ftype = {"q4_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0,
             "q4_k_m": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M}[ftype]
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype = ftype
    p.nthread = 2
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), p)
    assert rc == 0, f"llama_model_quantize -> {rc}"


def cmd_write(a):
    w = draw(a.layers)
    if not a.gguf_only:
        write_ours(os.path.join(a.out, "bf16"), w, a.layers, awq=False)
        write_ours(os.path.join(a.out, "awq"), w, a.layers, awq=True)
    if a.ours_only:
        return
    gb = os.path.join(a.out, "bf16.gguf")
    write_gguf(gb, w, a.layers)
    quantise(gb, os.path.join(a.out, "q4_0.gguf"), "q4_0", a.llama_bin)
    quantise(gb, os.path.join(a.out, "q4_k_m.gguf"), "q4_k_m", a.llama_bin)
    for n in sorted(os.listdir(a.out)):
        p = os.path.join(a.out, n)
        size = os.path.getsize(p) if os.path.isfile(p) else sum(
            os.path.getsize(os.path.join(p, f)) for f in os.listdir(p))
        print(f"{n}: {size / 1e6:.0f} MB")


def cmd_bench(a):
    """llama.cpp through llama-cpp-python: one prefill of prompt_len ids
    (n_batch = prompt_len), then decode_steps single-token evals, best of
    `repeats`; with --llama-bin, llama.cpp's own llama-bench instead."""
    if a.llama_bin:
        for name in ("bf16.gguf", "q4_0.gguf", "q4_k_m.gguf"):
            subprocess.run([os.path.join(a.llama_bin, "llama-bench"), "-m",
                            os.path.join(a.out, name), "-t", str(a.threads), "-p",
                            str(a.prompt_len), "-n", str(a.decode_steps), "-r",
                            str(a.repeats)], check=True)
        return
    import llama_cpp
    rng = np.random.default_rng(1)
    prompt = [int(t) for t in rng.integers(1000, 100000, a.prompt_len)]
    res = {}
    for name in ("bf16.gguf", "q4_0.gguf", "q4_k_m.gguf"):
        m = llama_cpp.Llama(os.path.join(a.out, name), n_ctx=a.prompt_len + a.decode_steps + 8,
                            n_batch=a.prompt_len, n_ubatch=a.prompt_len, n_threads=a.threads,
                            n_threads_batch=a.threads, verbose=False, logits_all=False)
        best_p = best_d = 0.0
        for _ in range(a.repeats):
            m.reset()
            llama_cpp.llama_perf_context_reset(m.ctx)
            t0 = time.perf_counter()
            m.eval(prompt)
            t1 = time.perf_counter()
            tok = prompt[-1]
            for _ in range(a.decode_steps):
                m.eval([tok])
                tok = (tok * 7919 + 13) % 150000
            t2 = time.perf_counter()
            best_p = max(best_p, a.prompt_len / (t1 - t0))
            best_d = max(best_d, a.decode_steps / (t2 - t1))
        res[name] = (best_p, best_d)
        print(f"{name}: prefill {best_p:.1f} tok/s, decode {best_d:.2f} tok/s "
              f"({a.threads} threads, prompt {a.prompt_len}, {a.decode_steps} decode steps, "
              f"best of {a.repeats})", flush=True)
        del m
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sp = ap.add_subparsers(dest="cmd", required=True)
    w = sp.add_parser("write")
    w.add_argument("out")
    w.add_argument("--layers", type=int, default=SHAPE["num_hidden_layers"])
    w.add_argument("--ours-only", action="store_true", help="no GGUF files")
    w.add_argument("--gguf-only", action="store_true", help="only the GGUF files")
    w.add_argument("--llama-bin", help="directory of llama-quantize (else llama-cpp-python)")
    b = sp.add_parser("bench")
    b.add_argument("out")
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--prompt-len", type=int, default=128)
    b.add_argument("--decode-steps", type=int, default=16)
    b.add_argument("--repeats", type=int, default=2)
    b.add_argument("--json")
    b.add_argument("--llama-bin", help="directory of llama-bench (else llama-cpp-python)")
    a = ap.parse_args()
    return cmd_write(a) if a.cmd == "write" else cmd_bench(a)


if __name__ == "__main__":
    sys.exit(main())
