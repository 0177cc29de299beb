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


def http_req(port, method, path, headers=None, body=None, host="127.0.0.1"):
    """One request; returns (status, headers with lower-case names, body)."""
    c = http.client.HTTPConnection(host, port, timeout=30 * SCALE)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    hd = {k.lower(): v for k, v in r.getheaders()}
    c.close()
    return r.status, hd, data


class Cors(unittest.TestCase):
    """Starlette's CORSMiddleware as vLLM sets it up."""

    ALL = "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"

    def test_defaults(self):
        with Server() as srv:
            st, hd, body = http_req(srv.port, "OPTIONS", "/v1/chat/completions", {
                "Origin": "http://a.example", "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type"})
            self.assertEqual((st, body), (200, b"OK"))
            self.assertEqual(hd["access-control-allow-origin"], "*")
            self.assertEqual(hd["access-control-allow-methods"], self.ALL)
            self.assertEqual(hd["access-control-max-age"], "600")
            self.assertEqual(hd["access-control-allow-headers"], "authorization, content-type")
            self.assertNotIn("access-control-allow-credentials", hd)
            # any path, no key: the middleware answers first
            st, _, _ = http_req(srv.port, "OPTIONS", "/nowhere", {
                "Origin": "http://a.example", "Access-Control-Request-Method": "GET"})
            self.assertEqual(st, 200)
            auth = {"Authorization": "Bearer " + KEY}
            st, hd, _ = http_req(srv.port, "GET", "/v1/models",
                                 dict(auth, Origin="http://a.example"))
            self.assertEqual((st, hd["access-control-allow-origin"]), (200, "*"))
            st, hd, _ = http_req(srv.port, "GET", "/v1/models", auth)
            self.assertNotIn("access-control-allow-origin", hd)
            # a cookie: the origin itself, with Vary
            st, hd, _ = http_req(srv.port, "GET", "/v1/models",
                                 dict(auth, Origin="http://a.example", Cookie="x=1"))
            self.assertEqual(hd["access-control-allow-origin"], "http://a.example")
            self.assertEqual(hd["vary"], "Origin")
            # not the 401 of a missing key (vLLM's auth sits outside CORS)
            st, hd, _ = http_req(srv.port, "GET", "/v1/models", {"Origin": "http://a.example"})
            self.assertEqual(st, 401)
            self.assertNotIn("access-control-allow-origin", hd)
            # errors from the app carry the headers too
            st, hd, _ = http_req(srv.port, "GET", "/nothing-here",
                                 dict(auth, Origin="http://a.example"))
            self.assertEqual((st, hd["access-control-allow-origin"]), (404, "*"))

    def test_configured(self):
        with Server("--allowed-origins", '["http://ok.example"]', "--allowed-methods",
                    '["GET", "POST"]', "--allowed-headers", '["X-Custom"]',
                    "--allow-credentials") as srv:
            st, hd, body = http_req(srv.port, "OPTIONS", "/v1/completions", {
                "Origin": "http://ok.example", "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "Content-Type, x-custom"})
            self.assertEqual((st, body), (200, b"OK"))
            self.assertEqual(hd["access-control-allow-origin"], "http://ok.example")
            self.assertEqual(hd["vary"], "Origin")
            self.assertEqual(hd["access-control-allow-credentials"], "true")
            self.assertEqual(hd["access-control-allow-methods"], "GET, POST")
            self.assertEqual(hd["access-control-allow-headers"],
                             "Accept, Accept-Language, Content-Language, Content-Type, X-Custom")
            st, hd, body = http_req(srv.port, "OPTIONS", "/v1/completions", {
                "Origin": "http://evil.example", "Access-Control-Request-Method": "PUT",
                "Access-Control-Request-Headers": "x-other"})
            self.assertEqual((st, body), (400, b"Disallowed CORS origin, method, headers"))
            self.assertNotIn("access-control-allow-origin", hd)
            st, _, body = http_req(srv.port, "OPTIONS", "/v1/completions", {
                "Origin": "http://ok.example", "Access-Control-Request-Method": "DELETE"})
            self.assertEqual((st, body), (400, b"Disallowed CORS method"))
            auth = {"Authorization": "Bearer " + KEY}
            _, hd, _ = http_req(srv.port, "GET", "/v1/models",
                                dict(auth, Origin="http://ok.example"))
            self.assertEqual(hd["access-control-allow-origin"], "http://ok.example")
            self.assertEqual(hd["access-control-allow-credentials"], "true")
            _, hd, _ = http_req(srv.port, "GET", "/v1/models",
                                dict(auth, Origin="http://evil.example"))
            self.assertNotIn("access-control-allow-origin", hd)

    def test_bad_option(self):
        r = subprocess.run([os.environ["DSA_HEAD"], "--model", MODEL, "--port", "0",
                            "--allowed-origins", "http://a.example"], capture_output=True,
                           timeout=60 * SCALE)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"allowed-origins", r.stdout + r.stderr)


class Endpoints(unittest.TestCase):
    def test_ping(self):
        with Server() as srv:
            for m in ("GET", "POST"):
                st, _, body = http_req(srv.port, m, "/ping")
                self.assertEqual(st, 200, m)
                self.assertEqual(json.loads(body), {"status": "ok"})
            st, hd, _ = http_req(srv.port, "PUT", "/ping")
            self.assertEqual(st, 405)
            self.assertEqual(hd["allow"], "GET, POST")

    def start_on(self, host):
        tmp = tempfile.mkdtemp(prefix="dsa-host-")
        self.addCleanup(shutil.rmtree, tmp, True)
        pf = os.path.join(tmp, "port")
        log = open(os.path.join(tmp, "log"), "w")
        self.addCleanup(log.close)
        p = subprocess.Popen([os.environ["DSA_HEAD"], "--model", MODEL, "--port", "0",
                              "--port-file", pf, "--threads", "1", "--host", host],
                             stdout=log, stderr=subprocess.STDOUT)
        self.addCleanup(lambda: (p.kill(), p.wait()))
        def read_port():
            if not os.path.exists(pf):
                return None
            with open(pf) as f:
                return f.read().strip()
        port = wait_for(read_port, 60)
        self.assertTrue(port, "no port file")
        return p, int(port)

    def health_via(self, addr, port):
        def get():
            try:
                return http_req(port, "GET", "/health", host=addr)[0] == 200
            except OSError:
                return False
        return wait_for(get, 60)

    def test_host_names(self):
        p, port = self.start_on("localhost")
        addrs = {a[4][0] for a in socket.getaddrinfo("localhost", port, type=socket.SOCK_STREAM)}
        self.assertTrue(any(self.health_via(a, port) for a in addrs), addrs)
        p, port = self.start_on("::")
        self.assertTrue(self.health_via("::1", port))
        self.assertTrue(self.health_via("127.0.0.1", port))  # dual stack
        r = subprocess.run([os.environ["DSA_HEAD"], "--model", MODEL, "--port", "0", "--host",
                            "no-such-host.invalid"], capture_output=True, timeout=60 * SCALE)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"no-such-host.invalid", r.stdout + r.stderr)

    def test_error_log_lines(self):
        with Server("--disable-log-requests") as srv:
            st, _, _ = http_req(srv.port, "POST", "/v1/completions",
                                {"Authorization": "Bearer " + KEY, "X-Request-Id": "rid-400-a"},
                                b'{"prompt":1}')
            self.assertEqual(st, 400)
            st, _, _ = http_req(srv.port, "GET", "/v1/models", {"X-Request-Id": "rid-401-b"})
            self.assertEqual(st, 401)
            def lines():
                out = []
                for line in srv.logtext().splitlines():
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        pass
                return out
            def find(rid):
                return [l for l in lines() if l.get("request_id") == rid]
            self.assertTrue(wait_for(lambda: find("rid-401-b"), 10))
            (e400,) = find("rid-400-a")
            self.assertEqual(e400["level"], "info")
            self.assertIn("POST /v1/completions -> 400", e400["msg"])
            self.assertIn("-> 401", find("rid-401-b")[0]["msg"])

    def test_keep_alive_env(self):
        def idle_close_after(srv):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=30 * SCALE)
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            got = s.recv(65536)
            self.assertIn(b"200 OK", got)
            t0 = time.time()
            s.settimeout(1.0)
            try:
                closed = s.recv(1) == b""
            except socket.timeout:
                closed = False
            s.close()
            return closed, time.time() - t0
        with Server(env={"VLLM_HTTP_TIMEOUT_KEEP_ALIVE": "0.2"}) as srv:
            closed, took = idle_close_after(srv)
            self.assertTrue(closed)
        with Server() as srv:  # uvicorn's 5 s: still open after 1 s
            closed, _ = idle_close_after(srv)
            self.assertFalse(closed)
        with Server("--timeout-keep-alive", "0.2",
                    env={"VLLM_HTTP_TIMEOUT_KEEP_ALIVE": "50"}) as srv:
            closed, _ = idle_close_after(srv)  # the option wins
            self.assertTrue(closed)


class EarlyEnd(unittest.TestCase):
    """Requests the server ends early get an error the client can read."""

    def test_drain_timeout(self):
        srv = Server("--drain-timeout", "0.5", model=MODEL_SLOW)
        try:
            s, got = open_stream(srv.port, {"prompt": "d", "max_tokens": 3000,
                                            "ignore_eos": True, "stream": True})
            c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60 * SCALE)
            c.request("POST", "/v1/completions", body=json.dumps(
                {"prompt": "e", "max_tokens": 3000, "ignore_eos": True}),
                headers={"Authorization": "Bearer " + KEY, "X-Request-Id": "rid-drain-1"})
            time.sleep(0.3)
            srv.proc.send_signal(signal.SIGINT)
            s.settimeout(30 * SCALE)
            while True:
                b = s.recv(65536)
                if not b:
                    break
                got += b
            s.close()
            ev = sse_events(got)
            self.assertEqual(ev[-1], "[DONE]", got[-300:])
            err = json.loads(ev[-2])["error"]
            self.assertEqual(err["code"], 503)
            self.assertNotIn("rank", err["message"])
            r = c.getresponse()
            self.assertEqual(r.status, 503)
            body = json.loads(r.read())
            c.close()
            self.assertIn("rid-drain-1", body["error"]["message"])
            self.assertEqual(srv.proc.wait(timeout=30 * SCALE), 0)
        finally:
            srv.stop()


class UnsentBound(unittest.TestCase):
    """--max-unsent-total: data queued for clients that do not read."""

    def test_new_streams_503_and_slowest_cut(self):
        with Server("--max-unsent-total", "65536") as srv:
            # a big non-streamed answer to a client that never reads stays
            # queued
            hog = socket.create_connection(("127.0.0.1", srv.port), timeout=30 * SCALE)
            hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            # 64 choices x 200 tokens x 21 logprobs: ~6 MB of JSON, more
            # than the kernel's socket buffers take
            big = json.dumps({"prompt": ["x", "y", "z", "w"], "max_tokens": 200,
                              "ignore_eos": True, "n": 16, "logprobs": 20}).encode()
            hog.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                        KEY.encode() + b"\r\nContent-Length: " + str(len(big)).encode() +
                        b"\r\n\r\n" + big)
            self.addCleanup(hog.close)
            # once it is generated (nothing runs), a new stream is refused
            # and the client furthest behind, the hog, is dropped
            hog.settimeout(120 * SCALE)
            hog.recv(1, socket.MSG_PEEK)  # the answer has begun: generation is over
            time.sleep(0.2)
            st, _, data = post(srv.port, "/v1/completions",
                               json.dumps({"prompt": "y", "max_tokens": 1, "stream": True}))
            self.assertEqual(st, 503, data)
            self.assertIn("queued for slow clients", json.loads(data)["error"]["message"])
            self.assertTrue(wait_for(lambda: "bound on unsent data is reached" in srv.logtext(),
                                     10))
            # the hog's queue is gone with it: streams are served again (the
            # kernel still holds what it took, not the server)
            st, _, data = post(srv.port, "/v1/completions",
                               json.dumps({"prompt": "y", "max_tokens": 2, "stream": True}))
            self.assertEqual(st, 200)
            self.assertEqual(sse_events(data)[-1], "[DONE]")

    def test_stream_reader_that_stops_is_cut(self):
        with Server("--max-unsent-total", "65536") as srv:
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=30 * SCALE)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            self.addCleanup(s.close)
            payload = json.dumps({"prompt": "x", "max_tokens": 3000, "ignore_eos": True,
                                  "n": 16, "logprobs": 5, "stream": True}).encode()
            s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                      KEY.encode() + b"\r\nContent-Length: " + str(len(payload)).encode() +
                      b"\r\n\r\n" + payload)
            # 64 KiB over all clients, far below the per-client 64 MiB
            self.assertTrue(wait_for(lambda: "bound on unsent data is reached" in srv.logtext(),
                                     60))
            self.assertTrue(wait_for(lambda: "client disconnected, aborted" in srv.logtext(), 10))

if __name__ == "__main__":
    unittest.main(verbosity=2)
