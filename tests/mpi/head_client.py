#!/usr/bin/env python3
"""head_client.py - a stdlib client for tests/mpi/head_e2e.sh.

  head_client.py wait PORTFILE SECONDS     wait until /health is 200
  head_client.py greedy PORT OUT           greedy streamed completions of a
                                           few prompts, as JSON, to OUT; their
                                           prompt logprobs to OUT.plp
  head_client.py structured PORT OUT       grammar-constrained completions
                                           (JSON schema, regex, choice; greedy
                                           and seeded), sent at once, checked
                                           against their grammars, to OUT
  head_client.py plpcmp A B                prompt logprobs of two runs agree
                                           (same ids and ranks, logprobs
                                           within 1e-4)
  head_client.py fault PORT PID SIG        start a long stream, send SIG to
                                           PID after its first token, then
                                           report how the stream ended
  head_client.py health PORT PID idle|busy SIGSTOP PID (while idle, or
                                           during a stream): /health must
                                           turn 503 within 6 s; SIGCONT: 200
                                           again (and the stream completes)
Exit 1 with a message on failure."""
import http.client
import json
import os
import re
import signal
import sys
import threading
import time

PROMPTS = ["Hello", "The quick brown fox", "1 2 3 4", "a b"]


def stream(port, prompt, max_tokens, on_first=None, timeout=60):
    """POSTs a streamed completion; returns (texts, finish, done, error, t_end)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    body = json.dumps({"model": "m", "prompt": prompt, "max_tokens": max_tokens,
                       "temperature": 0, "stream": True, "ignore_eos": True})
    c.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        return "", None, False, "HTTP %d %s" % (r.status, r.read()[:300]), time.time()
    text, finish, done, error, first = "", None, False, None, True
    try:
        while True:
            line = r.readline()
            if not line:
                break
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                done = True
                break
            ev = json.loads(data)
            if "error" in ev:
                error = ev["error"].get("message", str(ev["error"]))
                continue
            for ch in ev.get("choices", []):
                text += ch.get("text") or ""
                if ch.get("finish_reason"):
                    finish = ch["finish_reason"]
            if first and on_first:
                first = False
                on_first()
    except (OSError, http.client.HTTPException, ValueError) as e:
        error = error or "connection: %r" % (e,)
    c.close()
    return text, finish, done, error, time.time()


def health(port):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", "/health")
        r = c.getresponse()
        body = r.read()
        c.close()
        return r.status, body
    except OSError:
        return None, b""


def health_mode(port, pid, busy):
    got = {}
    started = threading.Event()
    th = None
    if busy:
        def run():
            got["res"] = stream(port, "Hello", 120, started.set, timeout=120)
        th = threading.Thread(target=run)
        th.start()
        if not started.wait(60):
            print("FAIL: no token from the stream", file=sys.stderr)
            return 1
    os.kill(pid, signal.SIGSTOP)
    t0 = time.time()
    st, body = None, b""
    while time.time() - t0 < 15:
        st, body = health(port)
        if st == 503:
            break
        time.sleep(0.1)
    took = time.time() - t0
    os.kill(pid, signal.SIGCONT)
    print("%s stall: /health %s %s after %.1f s" % ("busy" if busy else "idle", st, body, took))
    if st != 503 or b"stalled" not in body:
        print("FAIL: /health did not turn 503 stalled", file=sys.stderr)
        return 1
    if took > 6:
        print("FAIL: /health took %.1f s to turn 503" % took, file=sys.stderr)
        return 1
    t1 = time.time()
    while time.time() - t1 < 30 and health(port)[0] != 200:
        time.sleep(0.1)
    if health(port)[0] != 200:
        print("FAIL: /health not 200 after SIGCONT", file=sys.stderr)
        return 1
    print("/health 200 again %.1f s after SIGCONT" % (time.time() - t1))
    if th:
        th.join(120)
        text, finish, done, error, _ = got.get("res", ("", None, False, "no result", 0))
        if not done or error or finish != "length":
            print("FAIL: the stream did not complete: done %s finish %s error %s" %
                  (done, finish, error), file=sys.stderr)
            return 1
    return 0


def prompt_logprobs(port):
    """prompt_logprobs (top 3) and echo + logprobs + max_tokens 0 of every
    prompt (one request each, several prompts at once)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    out = []
    for body in ({"model": "m", "prompt": PROMPTS, "max_tokens": 1, "temperature": 0,
                  "prompt_logprobs": 3},
                 {"model": "m", "prompt": PROMPTS, "max_tokens": 0, "echo": True,
                  "logprobs": 2, "temperature": 0}):
        c.request("POST", "/v1/completions", json.dumps(body),
                  {"Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        if r.status != 200:
            raise RuntimeError("HTTP %d %s" % (r.status, data[:300]))
        for ch in json.loads(data)["choices"]:
            if body.get("echo"):
                out.append([[None, x] for x in ch["logprobs"]["token_logprobs"]])
            else:
                out.append([None if d is None else [[k, v["rank"], v["logprob"]]
                                                     for k, v in d.items()]
                            for d in ch["prompt_logprobs"]])
    c.close()
    return out


SCHEMA = {"type": "object", "properties": {"a": {"type": "integer", "minimum": 0,
                                                   "maximum": 999},
                                             "b": {"enum": ["x", "yy"]}},
          "required": ["a", "b"], "additionalProperties": False}
REGEX = "[a-c]{3,12}x"
CHOICE = ["alpha", "beta", "gamma"]
STRUCTURED = [  # (prompt, extra fields)
    ("Hello", {"structured_outputs": {"json": SCHEMA, "disable_any_whitespace": True}}),
    ("The quick brown fox", {"structured_outputs": {"json": SCHEMA,
                                                    "disable_any_whitespace": True},
                             "temperature": 1, "seed": 5}),
    ("1 2 3 4", {"guided_regex": REGEX}),
    ("a b", {"guided_regex": REGEX, "temperature": 1, "seed": 9}),
    ("Hello", {"guided_choice": CHOICE, "temperature": 1, "seed": 3}),
    ("a b", {"structured_outputs": {"json": SCHEMA, "disable_any_whitespace": True},
             "temperature": 0.8, "seed": 11}),
]


def structured(port):
    """The STRUCTURED requests at once; [{prompt, text, finish}] or an error."""
    res = [None] * len(STRUCTURED)

    def one(i):
        prompt, extra = STRUCTURED[i]
        body = {"model": "m", "prompt": prompt, "max_tokens": 40, "temperature": 0}
        body.update(extra)
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            c.request("POST", "/v1/completions", json.dumps(body),
                      {"Content-Type": "application/json"})
            r = c.getresponse()
            data = r.read()
            c.close()
            if r.status != 200:
                res[i] = "HTTP %d %s" % (r.status, data[:300])
                return
            ch = json.loads(data)["choices"][0]
            res[i] = {"prompt": prompt, "text": ch["text"], "finish": ch["finish_reason"]}
        except (OSError, http.client.HTTPException, ValueError, KeyError) as e:
            res[i] = "request %d: %r" % (i, e)

    ts = [threading.Thread(target=one, args=(i,)) for i in range(len(STRUCTURED))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for (prompt, extra), r in zip(STRUCTURED, res):
        if not isinstance(r, dict):
            raise RuntimeError(str(r))
        text = r["text"]
        if r["finish"] != "stop":  # 40 tokens always close these grammars here
            raise RuntimeError("%r: finish %s, text %r" % (extra, r["finish"], text))
        if "guided_regex" in extra:
            ok = re.fullmatch(REGEX, text) is not None
        elif "guided_choice" in extra:
            ok = text in CHOICE
        else:
            v = json.loads(text)
            ok = (set(v) == {"a", "b"} and isinstance(v["a"], int) and 0 <= v["a"] <= 999
                  and v["b"] in ("x", "yy"))
        if not ok:
            raise RuntimeError("%r: %r breaks its grammar" % (extra, text))
    return res


def plp_equal(a, b, tol=1e-4):
    """Same structure, ids and ranks; floats within tol."""
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and \
            abs(a - b) <= tol
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(plp_equal(x, y, tol) for x, y in zip(a, b))
    return a == b


def main():
    mode = sys.argv[1]
    if mode == "plpcmp":
        a, b = (json.load(open(p)) for p in sys.argv[2:4])
        if not plp_equal(a, b):
            print("prompt logprobs differ:\n%s\n%s" % (a, b), file=sys.stderr)
            return 1
        print("prompt logprobs equal (%d lists)" % len(a))
        return 0
    if mode == "wait":
        path, limit = sys.argv[2], float(sys.argv[3])
        t0 = time.time()
        while time.time() - t0 < limit:
            try:
                port = int(open(path).read())
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    print(port)
                    return 0
            except (OSError, ValueError, http.client.HTTPException):
                pass
            time.sleep(0.2)
        print("the server was not ready within %.0f s" % limit, file=sys.stderr)
        return 1
    port = int(sys.argv[2])
    if mode == "greedy":
        # all at once, so the head batches them (two micro-batches with PP=2)
        res = [None] * len(PROMPTS)

        n_tok = int(sys.argv[4]) if len(sys.argv) > 4 else 8

        def one(i):
            res[i] = stream(port, PROMPTS[i], n_tok)

        ts = [threading.Thread(target=one, args=(i,)) for i in range(len(PROMPTS))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        out = []
        for p, (text, finish, done, error, _) in zip(PROMPTS, res):
            if error or not done:
                print("prompt %r: error %s, done %s" % (p, error, done), file=sys.stderr)
                return 1
            out.append({"prompt": p, "text": text, "finish": finish})
        with open(sys.argv[3], "w") as f:
            json.dump(out, f, indent=1)
        try:
            plp = prompt_logprobs(port)
        except (OSError, http.client.HTTPException, ValueError, RuntimeError) as e:
            print("prompt logprobs: %r" % (e,), file=sys.stderr)
            return 1
        with open(sys.argv[3] + ".plp", "w") as f:
            json.dump(plp, f)
        return 0
    if mode == "structured":
        try:
            out = structured(port)
        except RuntimeError as e:
            print("structured: %s" % e, file=sys.stderr)
            return 1
        with open(sys.argv[3], "w") as f:
            json.dump(out, f, indent=1)
        return 0
    if mode == "fault":
        pid, sig = int(sys.argv[3]), getattr(signal, sys.argv[4])
        t_sig = []

        def hit():
            os.kill(pid, sig)
            t_sig.append(time.time())
            print("sent %s to pid %d after the first token" % (sys.argv[4], pid))

        text, finish, done, error, t_end = stream(port, "Hello", 200, hit, timeout=15)
        took = t_end - t_sig[0] if t_sig else -1
        print("stream ended %.1f s after the signal: done %s, finish %s, error %s" %
              (took, done, finish, error))
        if not t_sig:
            print("FAIL: no token before the fault", file=sys.stderr)
            return 1
        if done and not error:
            print("FAIL: the stream completed normally", file=sys.stderr)
            return 1
        if took > 10:
            print("FAIL: the client waited %.1f s" % took, file=sys.stderr)
            return 1
        # the head itself must report the error: an SSE error event, then
        # [DONE]; its text names no rank or host (those stay in the log)
        if len(sys.argv) > 5 and sys.argv[5] == "want-error-event":
            if not (error and done and "workers" in error and "request id" in error):
                print("FAIL: no SSE error event then [DONE] from the head", file=sys.stderr)
                return 1
            if "rank" in error or os.uname().nodename in error:
                print("FAIL: the client's error names a rank or host: %s" % error,
                      file=sys.stderr)
                return 1
        return 0
    if mode == "health":
        return health_mode(port, int(sys.argv[3]), sys.argv[4] == "busy")
    print("unknown mode", mode, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
