"""Server-level behaviour of dsa-head end to end (issue 13): responses with
several choices carrying logprobs, ids the tokenizer has no entry for, JSON
edge cases (NUL, control characters, trailing bytes), streams the server ends
early, error texts, the bound on data queued for slow readers, CORS, /ping,
--host names and the request log.  Run by tests/integration/run_head_tests.sh
(meson test 'server_e2e'); shares the helpers of test_head.py.

Environment: as test_head.py, plus DSA_MKMODEL (dsa-mkmodel binary)."""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

import openai

from test_head import KEY, MODEL, MODEL_SLOW, SCALE, Server, curl, open_stream, raw_request, \
    wait_for

MKMODEL = os.environ["DSA_MKMODEL"]
NAME = os.path.basename(MODEL)


def post(port, path, body, headers=None, key=KEY, timeout=60):
    """POST raw bytes; returns (status, headers dict, body bytes)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout * SCALE)
    h = {"Content-Type": "application/json"}
    if key:
        h["Authorization"] = "Bearer " + key
    h.update(headers or {})
    c.request("POST", path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    hd = {k.lower(): v for k, v in r.getheaders()}
    c.close()
    return r.status, hd, data


def vocab_pieces(port, n_vocab):
    """Every single-id decode of the model, through /detokenize."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30 * SCALE)
    pieces = set()
    for i in range(n_vocab):
        c.request("POST", "/detokenize", body=json.dumps({"tokens": [i]}),
                  headers={"Authorization": "Bearer " + KEY,
                           "Content-Type": "application/json"})
        r = c.getresponse()
        body = r.read()
        if r.status == 200:
            pieces.add(json.loads(body)["prompt"])
    c.close()
    return pieces


def sse_events(raw):
    """The data: payloads of an SSE body, in order."""
    out = []
    for line in raw.decode("utf-8", "replace").split("\n"):
        line = line.strip("\r")
        if line.startswith("data: "):
            out.append(line[6:])
    return out


class Logprobs(unittest.TestCase):
    """Several choices with logprobs in one non-streamed response: each
    choice's token texts must be the model's pieces (they were read from a
    buffer that had moved: heap use-after-free, heap bytes in the body)."""

    @classmethod
    def setUpClass(cls):
        cls.srv = Server()
        # the tiny checkpoints have 512 ids; texts of single ids and "" for
        # an id whose bytes are an incomplete UTF-8 sequence (U+FFFD)
        cls.pieces = vocab_pieces(cls.srv.port, 512)

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def check_piece(self, t):
        # a lone byte of a multi-byte character decodes to U+FFFD
        self.assertTrue(t in self.pieces or set(t) == {"\ufffd"}, repr(t))

    def test_completion_n_and_prompt_list(self):
        for prompts, n in ((["Hello there", "a b c"], 3), ("Once upon", 4)):
            r = self.srv.client.completions.create(
                model=NAME, prompt=prompts, n=n, max_tokens=24, logprobs=5, seed=7,
                temperature=1.0, extra_body={"ignore_eos": True})
            self.assertEqual(len(r.choices), n * (len(prompts) if isinstance(prompts, list)
                                                  else 1))
            for ch in r.choices:
                lp = ch.logprobs
                self.assertEqual(len(lp.tokens), 24)
                for t, top in zip(lp.tokens, lp.top_logprobs):
                    self.check_piece(t)
                    for k in top:
                        self.check_piece(k)

    def test_chat_n(self):
        r = self.srv.client.chat.completions.create(
            model=NAME, messages=[{"role": "user", "content": "Hi"}], n=4, max_tokens=20,
            logprobs=True, top_logprobs=4, seed=3, extra_body={"ignore_eos": True})
        self.assertEqual(len(r.choices), 4)
        for ch in r.choices:
            self.assertEqual(len(ch.logprobs.content), 20)
            for e in ch.logprobs.content:
                self.check_piece(e.token)
                for t in e.top_logprobs:
                    self.check_piece(t.token)


class UnknownIds(unittest.TestCase):
    """A checkpoint whose vocab_size (600) exceeds its tokenizer (560
    entries, as V3's 129,280 vs 128,815): ids 560..599 decode to nothing."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="dsa-gap-")
        big, small = os.path.join(cls.tmp, "gap"), os.path.join(cls.tmp, "small")
        for out, vocab in ((big, 600), (small, 560)):
            subprocess.run([MKMODEL, "--out", out, "--vocab", str(vocab)], check=True,
                           stdout=subprocess.DEVNULL)
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(small, f), os.path.join(big, f))
        with open(os.path.join(big, "config.json")) as f:
            assert json.load(f)["vocab_size"] == 600
        cls.srv = Server(model=big)

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_generation_through_gap_ids(self):
        # temperature 1 over 600 ids, 40 of them without an entry: 8 x 48
        # samples hit the gap (p(miss) = (560/600)^384 ~ 3e-12)
        body = {"model": "gap", "prompt": "abc", "n": 8, "max_tokens": 48, "seed": 11,
                "temperature": 1.0, "logprobs": 1, "ignore_eos": True}
        st, _, data = post(self.srv.port, "/v1/completions", json.dumps(body))
        self.assertEqual(st, 200, data)
        r = json.loads(data)
        toks = [t for ch in r["choices"] for t in ch["logprobs"]["tokens"]]
        self.assertEqual(len(toks), 8 * 48)
        self.assertIn("", toks)  # a gap id: no text
        for ch in r["choices"]:
            self.assertEqual(ch["finish_reason"], "length")
        body["stream"] = True
        st, _, data = post(self.srv.port, "/v1/completions", json.dumps(body))
        self.assertEqual(st, 200)
        ev = sse_events(data)
        self.assertEqual(ev[-1], "[DONE]")
        self.assertFalse(any('"error"' in e for e in ev), data[-500:])
        fin = [c["finish_reason"] for e in ev[:-1] for c in json.loads(e)["choices"]
               if c.get("finish_reason")]
        self.assertEqual(fin, ["length"] * 8)


class JsonInput(unittest.TestCase):
    """NUL as data end to end; what json.loads refuses (vLLM parses bodies
    with it) answered with 400."""

    @classmethod
    def setUpClass(cls):
        cls.srv = Server()
        with open(os.path.join(MODEL, "tokenizer.json")) as f:
            vocab = json.load(f)["model"]["vocab"]
        # byte-level BPE: byte 0x00 is the piece U+0100
        cls.nul_id, cls.a_id, cls.b_id = vocab["\u0100"], vocab["a"], vocab["b"]

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def tokenize(self, body):
        st, _, data = post(self.srv.port, "/tokenize", body)
        self.assertEqual(st, 200, data)
        return json.loads(data)["tokens"]

    def test_nul_reaches_the_tokenizer(self):
        toks = self.tokenize(b'{"prompt":"a\\u0000b","add_special_tokens":false}')
        self.assertEqual(toks, [self.a_id, self.nul_id, self.b_id])
        # an escaped backslash before u0000 is text, not a NUL
        toks = self.tokenize(b'{"prompt":"a\\\\u0000b","add_special_tokens":false}')
        self.assertNotIn(self.nul_id, toks)
        self.assertGreater(len(toks), 3)
        # chat messages carry it into the rendered prompt
        toks = self.tokenize(b'{"messages":[{"role":"user","content":"a\\u0000b"}]}')
        self.assertIn(self.nul_id, toks)
        with_nul = self.tokenize(b'{"prompt":"x\\u0000\\u0000y"}')
        st, _, data = post(self.srv.port, "/v1/completions",
                           b'{"prompt":"x\\u0000\\u0000y","max_tokens":1}')
        self.assertEqual(st, 200, data)
        self.assertEqual(json.loads(data)["usage"]["prompt_tokens"], len(with_nul))
        st, _, data = post(self.srv.port, "/v1/chat/completions",
                           b'{"messages":[{"role":"user","content":"a\\u0000b"}],'
                           b'"max_tokens":1}')
        self.assertEqual(st, 200, data)
        chat = self.tokenize(b'{"messages":[{"role":"user","content":"a\\u0000b"}]}')
        self.assertEqual(json.loads(data)["usage"]["prompt_tokens"], len(chat))

    def test_refused_as_vllm(self):
        bad = [b'{"prompt":"a\x01b","max_tokens":1}',      # raw control character
               b'{"prompt":"a\nb","max_tokens":1}',        # raw newline in a string
               b'{"prompt":"a","max_tokens":1} x',          # extra data
               b'{"prompt":"a","max_tokens":1}{}',
               b'\x01{"prompt":"a","max_tokens":1}',
               b'{"prompt":"a\xffb","max_tokens":1}']      # not UTF-8
        for body in bad:
            for path in ("/v1/completions", "/tokenize"):
                st, _, data = post(self.srv.port, path, body)
                self.assertEqual(st, 400, (path, body, data))
                err = json.loads(data)["error"]
                self.assertEqual(err["code"], 400)
                self.assertTrue(err["message"])
        # JSON whitespace around the value is fine
        st, _, data = post(self.srv.port, "/v1/completions",
                           b' \r\n{"prompt":"a\\n\\u0001","max_tokens":1}\n\t ')
        self.assertEqual(st, 200, data)


if __name__ == "__main__":
    unittest.main(verbosity=2)
