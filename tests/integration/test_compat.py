"""vLLM compatibility of dsa-head seen from real clients: /metrics read with
prometheus_client's parser (vLLM's names, types, labels, buckets; values
that move), the prompt of a chat with tools (vLLM's DeepSeek-V3 tool
template), and tool calls streamed as vLLM streams them, reassembled by the
openai client's own stream accumulator.

Run by tests/integration/run_head_tests.sh (meson test 'head_compat'); uses
the Server helper of test_head.py.

Tool calls need a model that writes them: make_tool_model() turns the tiny
dsa-mkmodel checkpoint into a "successor" model whose greedy output is a
fixed token chain.  Every layer's output projections (attention o_proj, MLP
and expert down_proj) are zeroed, so the last hidden state is the current
token's embedding; lm_head then maps each chain token to the next one.
The chain must not repeat a token, and the prompt ends in "\\n" (vLLM's tool
template ends every prompt with one), which the chain also needs for the
call's name line: the tokenizer copy turns an unused added token into "\\n"
(it takes every "\\n" of the prompt) and the chain uses the byte token."""
import json
import math
import os
import shutil
import struct
import sys
import tempfile
import unittest
import urllib.error
import urllib.request
from array import array

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_head import KEY, MODEL, Server  # noqa: E402

import openai  # noqa: E402
from openai.lib.streaming.chat import ChatCompletionStreamState  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

NEWLINE_ADDED = 497       # "<｜fim▁hole｜>" in dsa-mkmodel's tokenizer, becomes "\n"
CALLS_BEGIN, CALLS_END, CALL_BEGIN, CALL_END, SEP, EOS = 503, 504, 505, 506, 511, 1


def byte_token(vocab, ch):
    """The id of a one-byte token (GPT-2 byte-to-unicode spelling)."""
    b = ord(ch)
    if ch == "\n":
        return vocab["Ċ"]
    assert 0x21 <= b <= 0x7e, ch
    return vocab[ch]


def read_safetensors(path):
    """(header dict, raw header bytes, data); the raw bytes are written back
    unchanged so the data keeps its alignment."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        raw = f.read(n)
        data = bytearray(f.read())
    return json.loads(raw), raw, data


def tensor(header, data, name):
    b, e = header[name]["data_offsets"]
    a = array("f")
    a.frombytes(bytes(data[b:e]))
    return a


def put_tensor(header, data, name, a):
    b, e = header[name]["data_offsets"]
    raw = a.tobytes()
    assert len(raw) == e - b
    data[b:e] = raw


def make_tool_model(dst, text_chain):
    """Copies the tiny model to dst as a successor model; text_chain: list of
    token ids the model writes after a prompt ending in "\\n"."""
    shutil.copytree(MODEL, dst)
    with open(os.path.join(dst, "tokenizer.json"), encoding="utf-8") as f:
        tok = json.load(f)
    for t in tok["added_tokens"]:
        if t["id"] == NEWLINE_ADDED:
            t["content"] = "\n"
    with open(os.path.join(dst, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False)
    chain = [NEWLINE_ADDED] + text_chain
    assert len(set(chain)) == len(chain), "a chain token repeats"
    st = os.path.join(dst, "model-00001-of-00001.safetensors")
    header, raw_header, data = read_safetensors(st)
    for name, info in header.items():
        if name != "__metadata__" and (name.endswith("o_proj.weight") or
                                       name.endswith("down_proj.weight")):
            put_tensor(header, data, name, array("f", bytes(4 * math.prod(info["shape"]))))
    hidden = header["model.norm.weight"]["shape"][0]
    emb = tensor(header, data, "model.embed_tokens.weight")
    norm = tensor(header, data, "model.norm.weight")
    head = array("f", bytes(len(tensor(header, data, "lm_head.weight")) * 4))
    for cur, nxt in zip(chain, chain[1:]):
        x = emb[cur * hidden:(cur + 1) * hidden]
        rms = math.sqrt(sum(v * v for v in x) / hidden + 1e-6)
        y = [norm[i] * x[i] / rms for i in range(hidden)]
        scale = 20.0 / sum(v * v for v in y)   # the right token's logit is 20
        for i in range(hidden):
            head[nxt * hidden + i] = y[i] * scale
    put_tensor(header, data, "lm_head.weight", head)
    with open(st, "wb") as f:
        f.write(struct.pack("<Q", len(raw_header)) + raw_header + bytes(data))


SUM_TOOL = {"type": "function",
            "function": {"name": "sum", "description": "Adds numbers.",
                         "parameters": {"type": "object",
                                        "properties": {"x": {"type": "array"}}}}}


class ToolStreaming(unittest.TestCase):
    """A call "fn<｜tool▁sep｜>sum\\n[1,2]" written token by token."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="dsa-tool-model-")
        with open(os.path.join(MODEL, "tokenizer.json"), encoding="utf-8") as f:
            vocab = json.load(f)["model"]["vocab"]
        chars = lambda s: [byte_token(vocab, c) for c in s]
        chain = ([CALLS_BEGIN, CALL_BEGIN] + chars("fn") + [SEP] + chars("sum\n") +
                 chars("[1,2]") + [CALL_END, CALLS_END, EOS])
        model = os.path.join(cls.tmp, "tool-model")
        make_tool_model(model, chain)
        cls.srv = Server(model=model)
        cls.c = openai.OpenAI(base_url=cls.srv.base + "/v1", api_key=KEY, max_retries=0)

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def request(self, **kw):
        return dict(model="tool-model", messages=[{"role": "user", "content": "add 1 and 2"}],
                    tools=[SUM_TOOL], temperature=0, max_tokens=40, **kw)

    def test_non_streamed(self):
        r = self.c.chat.completions.create(**self.request())
        ch = r.choices[0]
        self.assertEqual(ch.finish_reason, "tool_calls")
        self.assertEqual(len(ch.message.tool_calls), 1)
        call = ch.message.tool_calls[0]
        self.assertEqual((call.type, call.function.name, call.function.arguments),
                         ("function", "sum", "[1,2]"))
        self.assertFalse(ch.message.content)

    def test_streamed_equals_non_streamed(self):
        whole = self.c.chat.completions.create(**self.request()).choices[0].message
        state = ChatCompletionStreamState(input_tools=[SUM_TOOL])
        fragments = []
        for chunk in self.c.chat.completions.create(stream=True, **self.request()):
            state.handle_chunk(chunk)
            for ch in chunk.choices:
                for tc in ch.delta.tool_calls or []:
                    fragments.append((tc.index, tc.id, tc.function.name,
                                      tc.function.arguments))
        final = state.get_final_completion().choices[0]
        self.assertEqual(final.finish_reason, "tool_calls")
        got = [(t.function.name, t.function.arguments) for t in final.message.tool_calls]
        want = [(t.function.name, t.function.arguments) for t in whole.tool_calls]
        self.assertEqual(got, want)
        self.assertEqual(final.message.tool_calls[0].id, fragments[0][1])
        # the first delta names the call; the arguments follow in fragments
        self.assertEqual(fragments[0][:3][0], 0)
        self.assertEqual(fragments[0][2], "sum")
        self.assertTrue(all(f[1] is None and f[2] is None for f in fragments[1:]))
        with_args = [f for f in fragments if f[3]]
        self.assertGreater(len(with_args), 1, fragments)
        self.assertEqual("".join(f[3] or "" for f in fragments), "[1,2]")

    def test_tools_reach_the_prompt(self):
        base = dict(model="tool-model", messages=[{"role": "user", "content": "hi"}],
                    max_tokens=1)
        without = self.c.chat.completions.create(**base).usage.prompt_tokens
        with_tools = self.c.chat.completions.create(tools=[SUM_TOOL], **base)
        # the tool template adds the "# Tools" section with the JSON schema
        self.assertGreater(with_tools.usage.prompt_tokens - without,
                           len(json.dumps(SUM_TOOL)) // 2)


class ToolPrompt(unittest.TestCase):
    """The prompt of a chat with tools is vLLM's: /tokenize of the messages
    and tools equals /tokenize of the text the real tool template renders
    (tests/data/chat/tools_conversations.json, tools/golden)."""

    @classmethod
    def setUpClass(cls):
        cls.srv = Server()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def tokenize(self, body):
        req = urllib.request.Request(
            self.srv.base + "/tokenize", data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": "Bearer " + KEY})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())["tokens"]

    def test_golden_prompts(self):
        data = os.environ.get("DSA_TEST_DATA") or os.path.join(
            os.path.dirname(os.path.abspath(__file__)), "..", "data")
        with open(os.path.join(data, "chat", "tools_conversations.json"), encoding="utf-8") as f:
            convs = json.load(f)["conversations"]
        self.assertGreater(len(convs), 40)
        for c in convs:
            for agp in (False, True):
                got = self.tokenize({"messages": c["messages"], "tools": c["tools"],
                                     "add_generation_prompt": agp})
                want = self.tokenize({"prompt": c["expected"]["true" if agp else "false"],
                                      "add_special_tokens": False})
                self.assertEqual(got, want, c["name"])

    def test_bad_tools_refused(self):
        msgs = [{"role": "user", "content": "q"}]
        with self.assertRaises(urllib.error.HTTPError) as cm:
            self.tokenize({"messages": msgs, "tools": [{"type": "function"}]})
        self.assertEqual(cm.exception.code, 400)
        self.assertEqual(json.loads(cm.exception.read())["error"]["param"], "tools")


class Metrics(unittest.TestCase):
    """/metrics as Prometheus (and vLLM's dashboards) parse it."""

    HIST = {"vllm:time_to_first_token_seconds":
            [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
             5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0],
            "vllm:inter_token_latency_seconds":
            [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
             7.5, 10.0, 20.0, 40.0, 80.0],
            "vllm:e2e_request_latency_seconds":
            [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0,
             60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0],
            "vllm:request_params_n": [1, 2, 5, 10, 20],
            "vllm:iteration_tokens_total":
            [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384],
            # 1-2-5 up to --max-model-len 600
            "vllm:request_prompt_tokens": [1, 2, 5, 10, 20, 50, 100, 200, 500]}
    SAME_AS = {"vllm:request_time_per_output_token_seconds": "vllm:inter_token_latency_seconds",
               "vllm:request_queue_time_seconds": "vllm:e2e_request_latency_seconds",
               "vllm:request_inference_time_seconds": "vllm:e2e_request_latency_seconds",
               "vllm:request_prefill_time_seconds": "vllm:e2e_request_latency_seconds",
               "vllm:request_decode_time_seconds": "vllm:e2e_request_latency_seconds",
               "vllm:request_generation_tokens": "vllm:request_prompt_tokens",
               "vllm:request_params_max_tokens": "vllm:request_prompt_tokens"}
    GAUGES = ["vllm:num_requests_running", "vllm:num_requests_waiting",
              "vllm:kv_cache_usage_perc"]
    COUNTERS = ["vllm:prompt_tokens", "vllm:generation_tokens", "vllm:prefix_cache_queries",
                "vllm:prefix_cache_hits", "vllm:num_preemptions", "vllm:request_success"]

    @classmethod
    def setUpClass(cls):
        cls.srv = Server("--served-model-name", "m\"x", "--max-model-len", "600")
        cls.c = openai.OpenAI(base_url=cls.srv.base + "/v1", api_key=KEY, max_retries=0)

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def families(self):
        return {f.name: f for f in text_string_to_metric_families(self.srv.metrics())}

    def value(self, fams, name, sample, **labels):
        for s in fams[name].samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
        self.fail("no sample %s %s" % (sample, labels))

    def test_names_types_labels_buckets(self):
        fams = self.families()
        want_labels = {"model_name": "m\"x", "engine": "0"}
        for name in self.GAUGES:
            self.assertEqual(fams[name].type, "gauge", name)
        for name in self.COUNTERS:
            # prometheus_client's parser names a counter family without _total
            self.assertEqual(fams[name].type, "counter", name)
            self.assertIn(name + "_total", [s.name for s in fams[name].samples])
        for name in list(self.HIST) + list(self.SAME_AS):
            self.assertEqual(fams[name].type, "histogram", name)
            les = [s.labels["le"] for s in fams[name].samples if s.name == name + "_bucket"]
            bounds = self.HIST[self.SAME_AS.get(name, name)]
            self.assertEqual([float(x) for x in les[:-1]], [float(b) for b in bounds], name)
            self.assertEqual(les[-1], "+Inf")
        for name, f in fams.items():
            if not name.startswith("vllm:"):
                continue
            for s in f.samples:
                rest = {k: v for k, v in s.labels.items() if k not in ("le", "finished_reason")}
                self.assertEqual(rest, want_labels, s)
        reasons = sorted(s.labels["finished_reason"] for s in fams["vllm:request_success"].samples
                         if s.name.endswith("_total"))
        self.assertEqual(reasons, ["abort", "error", "length", "stop"])
        self.assertFalse([n for n in fams if n.startswith("dsa:") and n not in (
            "dsa:num_connections", "dsa:http_requests", "dsa:request_rejected_queue_full")])

    def test_values_move(self):
        f0 = self.families()
        v = lambda f, n, s, **l: self.value(f, n, s, **l)
        r = self.c.completions.create(model="m\"x", prompt="hello there", max_tokens=5,
                                      n=2, extra_body={"ignore_eos": True})
        self.assertEqual(len(r.choices), 2)
        f1 = self.families()
        d = lambda n, s, **l: v(f1, n, s, **l) - v(f0, n, s, **l)
        self.assertEqual(d("vllm:generation_tokens", "vllm:generation_tokens_total"),
                         r.usage.completion_tokens)
        self.assertGreater(d("vllm:prompt_tokens", "vllm:prompt_tokens_total"), 0)
        self.assertEqual(d("vllm:request_success", "vllm:request_success_total",
                           finished_reason="length"), 2)
        self.assertEqual(d("vllm:e2e_request_latency_seconds",
                           "vllm:e2e_request_latency_seconds_count"), 2)
        self.assertEqual(d("vllm:time_to_first_token_seconds",
                           "vllm:time_to_first_token_seconds_count"), 2)
        self.assertEqual(d("vllm:inter_token_latency_seconds",
                           "vllm:inter_token_latency_seconds_count"), 8)
        for per_request in ("vllm:request_time_per_output_token_seconds",
                            "vllm:request_queue_time_seconds",
                            "vllm:request_inference_time_seconds",
                            "vllm:request_prefill_time_seconds",
                            "vllm:request_decode_time_seconds"):
            self.assertEqual(d(per_request, per_request + "_count"), 2, per_request)
            self.assertGreater(d(per_request, per_request + "_sum"), 0, per_request)
        self.assertEqual(d("vllm:request_generation_tokens",
                           "vllm:request_generation_tokens_sum"), 10)
        self.assertEqual(d("vllm:request_generation_tokens", "vllm:request_generation_tokens_bucket",
                           le="5.0"), 2)
        # n: once per prompt; max_tokens: once per choice
        self.assertEqual(d("vllm:request_params_n", "vllm:request_params_n_bucket", le="2.0"), 1)
        self.assertEqual(d("vllm:request_params_n", "vllm:request_params_n_bucket", le="1.0"), 0)
        self.assertEqual(d("vllm:request_params_max_tokens",
                           "vllm:request_params_max_tokens_count"), 2)
        self.assertEqual(d("vllm:request_params_max_tokens",
                           "vllm:request_params_max_tokens_sum"), 10)
        self.assertGreater(d("vllm:iteration_tokens_total", "vllm:iteration_tokens_total_count"),
                           0)
        self.assertEqual(v(f1, "vllm:num_requests_running", "vllm:num_requests_running"), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
