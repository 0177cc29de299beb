"""The R1-Distill architectures served end to end (issue 20): a tiny
Qwen2ForCausalLM (F32, q/k/v biases, GQA 4, tied embeddings) and a tiny
LlamaForCausalLM (BF16, GQA 2, llama3 rope scaling) checkpoint, each with the
distills' chat template, served by dsa-head and driven by the openai client.

The checkpoints are written here: dsa-mkmodel supplies the tokenizer files
(byte-level BPE with DeepSeek's special tokens, 512 ids), and this script
replaces the DeepSeek-V3 weights and config with random dense ones in
transformers' names (safetensors written by hand: no torch in this venv)
and the chat template with tests/data/chat/r1_distill_chat_template.jinja.

Run by tests/integration/run_head_tests.sh (meson test 'dense_e2e')."""
import json
import os
import random
import shutil
import struct
import subprocess
import tempfile
import unittest
import urllib.request

from test_head import KEY, SCALE, Server

MKMODEL = os.environ["DSA_MKMODEL"]
SRC = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BOS = "<｜begin▁of▁sentence｜>"
V = 512


def write_safetensors(path, tensors):
    """tensors: name -> (dtype "F32"|"BF16", shape, list of floats)."""
    header, blobs, off = {}, [], 0
    for name, (dt, shape, vals) in tensors.items():
        raw = struct.pack("<%df" % len(vals), *vals)
        if dt == "BF16":  # round to nearest even on the upper 16 bits
            words = struct.unpack("<%dI" % len(vals), raw)
            raw = struct.pack("<%dH" % len(vals),
                              *(((w + 0x7FFF + ((w >> 16) & 1)) >> 16) & 0xFFFF for w in words))
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)


def make_dense(out, arch):
    subprocess.run([MKMODEL, "--out", out, "--vocab", str(V)], check=True,
                   stdout=subprocess.DEVNULL)
    for n in os.listdir(out):
        if n.endswith(".safetensors") or n.endswith(".index.json"):
            os.remove(os.path.join(out, n))
    rng = random.Random(20 if arch == "qwen2" else 21)
    D, I, L = 64, 96, 2
    H, KV = (4, 1) if arch == "qwen2" else (4, 2)
    hd = D // H
    dt = "F32" if arch == "qwen2" else "BF16"
    t = {}

    def mat(name, r, c, scale=None):
        s = scale if scale is not None else 1 / c ** 0.5
        t[name] = (dt, [r, c] if r else [c], [rng.gauss(0, s) for _ in range((r or 1) * c)])

    mat("model.embed_tokens.weight", V, D, 1.0)
    for l in range(L):
        p = "model.layers.%d." % l
        t[p + "input_layernorm.weight"] = (dt, [D], [1 + rng.gauss(0, 0.1) for _ in range(D)])
        t[p + "post_attention_layernorm.weight"] = (dt, [D], [1 + rng.gauss(0, 0.1)
                                                             for _ in range(D)])
        mat(p + "self_attn.q_proj.weight", H * hd, D)
        mat(p + "self_attn.k_proj.weight", KV * hd, D)
        mat(p + "self_attn.v_proj.weight", KV * hd, D)
        mat(p + "self_attn.o_proj.weight", D, H * hd)
        if arch == "qwen2":
            mat(p + "self_attn.q_proj.bias", 0, H * hd, 0.3)
            mat(p + "self_attn.k_proj.bias", 0, KV * hd, 0.3)
            mat(p + "self_attn.v_proj.bias", 0, KV * hd, 0.3)
        mat(p + "mlp.gate_proj.weight", I, D)
        mat(p + "mlp.up_proj.weight", I, D)
        mat(p + "mlp.down_proj.weight", D, I)
    t["model.norm.weight"] = (dt, [D], [1.0] * D)
    if arch == "llama":
        mat("lm_head.weight", V, D, 3 / D ** 0.5)
    write_safetensors(os.path.join(out, "model.safetensors"), t)
    cfg = {"architectures": ["Qwen2ForCausalLM" if arch == "qwen2" else "LlamaForCausalLM"],
           "model_type": arch, "vocab_size": V, "hidden_size": D, "intermediate_size": I,
           "num_hidden_layers": L, "num_attention_heads": H, "num_key_value_heads": KV,
           "max_position_embeddings": 4096, "rms_norm_eps": 1e-6, "bos_token_id": 0,
           "eos_token_id": 1, "hidden_act": "silu", "torch_dtype": dt.lower()}
    if arch == "qwen2":
        cfg.update(tie_word_embeddings=True, rope_theta=10000.0, use_sliding_window=False,
                   sliding_window=4096, max_window_layers=L)
    else:
        cfg.update(tie_word_embeddings=False, rope_theta=500000.0,
                   rope_scaling={"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                 "original_max_position_embeddings": 64,
                                 "rope_type": "llama3"})
    write_json(os.path.join(out, "config.json"), cfg)
    write_json(os.path.join(out, "generation_config.json"),
               {"bos_token_id": 0, "eos_token_id": 1, "do_sample": True, "temperature": 0.6,
                "top_p": 0.95})
    tc_path = os.path.join(out, "tokenizer_config.json")
    tc = read_json(tc_path)
    with open(os.path.join(SRC, "tests", "data", "chat", "r1_distill_chat_template.jinja"),
              encoding="utf-8") as f:
        tc["chat_template"] = f.read()
    write_json(tc_path, tc)


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False)


def post(port, path, body):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path),
                                 data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json",
                                          "Authorization": "Bearer " + KEY})
    with urllib.request.urlopen(req, timeout=60 * SCALE) as r:
        return json.loads(r.read())


class Dense(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="dsa-dense-")
        cls.dirs = {}
        for arch in ("qwen2", "llama"):
            cls.dirs[arch] = os.path.join(cls.tmp, arch)
            make_dense(cls.dirs[arch], arch)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def check_arch(self, arch):
        with Server(model=self.dirs[arch]) as srv:
            name = os.path.basename(self.dirs[arch])
            msgs = [{"role": "system", "content": "first"},
                    {"role": "system", "content": "You are terse."},
                    {"role": "user", "content": "Add 2 and 3."}]
            # the distills' template: last system prompt only, forced <think>\n
            want = BOS + "You are terse.<｜User｜>Add 2 and 3.<｜Assistant｜><think>\n"
            got = post(srv.port, "/tokenize", {"model": name, "messages": msgs})
            ref = post(srv.port, "/tokenize", {"model": name, "prompt": want,
                                               "add_special_tokens": False})
            self.assertEqual(got["tokens"], ref["tokens"])
            r = srv.client.chat.completions.create(
                model=name, messages=msgs, max_tokens=12, temperature=0,
                extra_body={"ignore_eos": True})
            msg = r.choices[0].message
            self.assertEqual(r.usage.prompt_tokens, len(ref["tokens"]))
            self.assertEqual(r.usage.completion_tokens, 12)
            # the random model never writes </think>: all of it is reasoning,
            # split off as vLLM's deepseek_r1 parser does
            self.assertTrue(msg.reasoning_content)
            self.assertFalse(msg.content)
            # greedy is deterministic, and the same through a stream
            r2 = srv.client.chat.completions.create(
                model=name, messages=msgs, max_tokens=12, temperature=0,
                extra_body={"ignore_eos": True})
            self.assertEqual(r2.choices[0].message.reasoning_content, msg.reasoning_content)
            parts = []
            for ch in srv.client.chat.completions.create(
                    model=name, messages=msgs, max_tokens=12, temperature=0, stream=True,
                    extra_body={"ignore_eos": True}):
                if ch.choices and getattr(ch.choices[0].delta, "reasoning_content", None):
                    parts.append(ch.choices[0].delta.reasoning_content)
            self.assertEqual("".join(parts), msg.reasoning_content)

    def test_qwen2_served(self):
        self.check_arch("qwen2")

    def test_llama_served(self):
        self.check_arch("llama")

    def test_sliding_window_refused(self):
        d = os.path.join(self.tmp, "sw")
        shutil.copytree(self.dirs["qwen2"], d)
        cfg = read_json(os.path.join(d, "config.json"))
        cfg["use_sliding_window"] = True
        write_json(os.path.join(d, "config.json"), cfg)
        with self.assertRaises(RuntimeError) as e:
            Server(model=d)
        self.assertIn("use_sliding_window", str(e.exception))

    def test_max_model_len_beyond_the_model_refused(self):
        # max_position_embeddings is 4096, as vLLM: longer is an error
        with self.assertRaises(RuntimeError) as e:
            Server("--max-model-len", "5000", model=self.dirs["llama"])
        self.assertIn("max_model_len", str(e.exception))
        with Server("--max-model-len", "4096", model=self.dirs["llama"]) as srv:
            self.assertEqual(srv.health(), 200)


if __name__ == "__main__":
    unittest.main(verbosity=2)
