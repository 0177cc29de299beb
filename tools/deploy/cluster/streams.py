#!/usr/bin/env python3
"""streams.py - streamed completions through the load balancer for the
rehearsal's failure drills (tools/deploy/cluster-test.sh); stdlib only.

  streams.py URL CA KEY MODEL N MAX_TOKENS READY_FILE LIMIT_S

Starts N streamed /v1/completions (ignore_eos, so each runs MAX_TOKENS
tokens) over HTTPS, trusting CA.  Once every stream has its first token it
creates READY_FILE (the drill then breaks something), and waits at most
LIMIT_S for all to end.  Prints one JSON object: for each stream how it
ended ("done": [DONE] after a finish_reason, "error": an SSE error event,
"cut": the connection ended without either, "http NNN": refused) and when,
plus the moment READY_FILE was made.  Exit 0 when every stream ended within
LIMIT_S, 1 otherwise."""
import http.client
import json
import os
import ssl
import sys
import threading
import time
import urllib.parse


def one(url, ctx, key, model, max_tokens, first, out, i):
    u = urllib.parse.urlsplit(url)
    res = {"end": "cut", "tokens": 0, "t_end": None, "error": None}
    out[i] = res
    try:
        c = http.client.HTTPSConnection(u.hostname, u.port or 443, context=ctx, timeout=60)
        body = json.dumps({"model": model, "prompt": "Hello %d" % i, "max_tokens": max_tokens,
                           "stream": True, "ignore_eos": True, "temperature": 0})
        c.request("POST", "/v1/completions", body, {"Content-Type": "application/json",
                                                    "Authorization": "Bearer " + key})
        r = c.getresponse()
        if r.status != 200:
            res["end"] = "http %d" % r.status
            res["error"] = r.read()[:200].decode("utf-8", "replace")
            return
        while True:
            line = r.readline()
            if not line:
                break
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                if res["end"] != "error":
                    res["end"] = "done"
                break
            ev = json.loads(data)
            if "error" in ev:
                res["end"] = "error"
                res["error"] = str(ev["error"].get("message", ev["error"]))[:200]
                continue
            res["tokens"] += 1
            first[i].set()
    except (OSError, http.client.HTTPException, ValueError) as e:
        res["error"] = res["error"] or repr(e)[:200]
    finally:
        res["t_end"] = time.time()
        first[i].set()


def main():
    url, ca, key, model = sys.argv[1:5]
    n, max_tokens = int(sys.argv[5]), int(sys.argv[6])
    ready, limit = sys.argv[7], float(sys.argv[8])
    ctx = ssl.create_default_context(cafile=ca)
    out = [None] * n
    first = [threading.Event() for _ in range(n)]
    ts = [threading.Thread(target=one, args=(url, ctx, key, model, max_tokens, first, out, i),
                           daemon=True) for i in range(n)]
    t0 = time.time()
    for t in ts:
        t.start()
    for ev in first:
        ev.wait(max(0.0, limit - (time.time() - t0)))
    t_ready = time.time()
    with open(ready, "w") as f:
        f.write("%f\n" % t_ready)
    for t in ts:
        t.join(max(0.0, limit - (time.time() - t0)))
    alive = sum(t.is_alive() for t in ts)
    for r in out:
        if r and r["t_end"]:
            r["after_ready_s"] = round(r["t_end"] - t_ready, 2)
    print(json.dumps({"t_ready": t_ready, "still_open": alive, "streams": out}))
    return 1 if alive else 0


if __name__ == "__main__":
    sys.exit(main())
