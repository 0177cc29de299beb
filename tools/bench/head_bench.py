#!/usr/bin/env python3
"""head_bench.py - load generator for dsa-head (no dependencies beyond the
standard library): raw HTTP/1.1 over asyncio, keep-alive connections.

  head_bench.py rps     --port P [--conns 32 --seconds 10 --max-tokens 1]
      short non-streaming completions (token-id prompt) as fast as C
      connections go; prints requests/s and client latency p50/p90/p99.
  head_bench.py latency --port P [--n 500]
      one connection: GET /health, and completions with max_tokens 1;
      prints p50/p99 of each (the head's own overhead is the difference
      between a completion's latency and the model step time reported by
      /metrics, printed too).
  head_bench.py streams --port P [--conns 2000 --max-tokens 32]
      N concurrent streaming completions held open at once; counts errors,
      checks every stream ends with data: [DONE].
Add --key K when the server has an API key."""
import argparse
import asyncio
import json
import resource
import statistics
import time


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def request(path, body=None, key=None, method=None):
    method = method or ("POST" if body is not None else "GET")
    head = f"{method} {path} HTTP/1.1\r\nHost: bench\r\n"
    if key:
        head += f"Authorization: Bearer {key}\r\n"
    data = b""
    if body is not None:
        data = json.dumps(body).encode()
        head += "Content-Type: application/json\r\n"
        head += f"Content-Length: {len(data)}\r\n"
    return head.encode() + b"\r\n" + data


async def read_response(reader):
    """Reads one response (Content-Length or chunked); returns (status, body)."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("closed")
    status = int(status_line.split()[1])
    length, chunked = None, False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        k, _, v = line.decode().partition(":")
        k = k.strip().lower()
        if k == "content-length":
            length = int(v)
        elif k == "transfer-encoding" and "chunked" in v:
            chunked = True
    if chunked:
        parts = []
        while True:
            size = int((await reader.readline()).strip(), 16)
            if size == 0:
                await reader.readline()
                break
            parts.append(await reader.readexactly(size))
            await reader.readline()
        return status, b"".join(parts)
    return status, await reader.readexactly(length or 0)


async def rps(args):
    body = {"prompt": [1, 2, 3, 4, 5, 6, 7, 8], "max_tokens": args.max_tokens,
            "ignore_eos": True, "temperature": 0}
    req = request("/v1/completions", body, args.key)
    lat, errors = [], 0
    stop = time.perf_counter() + args.seconds

    async def worker():
        nonlocal errors
        r, w = await asyncio.open_connection("127.0.0.1", args.port)
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            w.write(req)
            status, _ = await read_response(r)
            if status != 200:
                errors += 1
            lat.append(time.perf_counter() - t0)
        w.close()

    t0 = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(args.conns)])
    dt = time.perf_counter() - t0
    print(json.dumps({"mode": "rps", "conns": args.conns, "max_tokens": args.max_tokens,
                      "requests": len(lat), "errors": errors,
                      "requests_per_s": round(len(lat) / dt, 1),
                      "p50_ms": round(pct(lat, 50) * 1e3, 3),
                      "p90_ms": round(pct(lat, 90) * 1e3, 3),
                      "p99_ms": round(pct(lat, 99) * 1e3, 3)}))


async def metrics(args):
    r, w = await asyncio.open_connection("127.0.0.1", args.port)
    w.write(request("/metrics", None, args.key))
    _, body = await read_response(r)
    w.close()
    out = {}
    for line in body.decode().splitlines():
        if line.startswith("vllm:") and " " in line:
            name, val = line.rsplit(" ", 1)
            out[name.split("{")[0] if "_bucket" not in name else name] = float(val)
    return out


async def latency(args):
    r, w = await asyncio.open_connection("127.0.0.1", args.port)
    health, comp = [], []
    hreq = request("/health")
    creq = request("/v1/completions", {"prompt": [1, 2, 3, 4], "max_tokens": 1,
                                       "temperature": 0}, args.key)
    for _ in range(50):  # warm up
        w.write(creq)
        await read_response(r)
    m0 = await metrics(args)
    for _ in range(args.n):
        t0 = time.perf_counter()
        w.write(hreq)
        await read_response(r)
        health.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        w.write(creq)
        await read_response(r)
        comp.append(time.perf_counter() - t0)
    w.close()
    m1 = await metrics(args)
    n = m1["vllm:request_prefill_time_seconds_count"] - m0["vllm:request_prefill_time_seconds_count"]
    step = (m1["vllm:request_prefill_time_seconds_sum"] -
            m0["vllm:request_prefill_time_seconds_sum"]) / max(n, 1)
    print(json.dumps({"mode": "latency", "n": args.n,
                      "health_p50_ms": round(pct(health, 50) * 1e3, 3),
                      "health_p99_ms": round(pct(health, 99) * 1e3, 3),
                      "completion_p50_ms": round(pct(comp, 50) * 1e3, 3),
                      "completion_p99_ms": round(pct(comp, 99) * 1e3, 3),
                      "model_step_mean_ms": round(step * 1e3, 3),
                      "head_added_p50_ms": round((pct(comp, 50) - step) * 1e3, 3),
                      "head_added_p99_ms": round((pct(comp, 99) - step) * 1e3, 3)}))


async def streams(args):
    body = {"prompt": [1, 2, 3], "max_tokens": args.max_tokens, "ignore_eos": True,
            "stream": True}
    req = request("/v1/completions", body, args.key)
    opened = asyncio.Event()
    n_open, peak, errors, done, tokens = 0, 0, 0, 0, 0
    ttft = []

    async def one(i):
        nonlocal n_open, peak, errors, done, tokens
        try:
            r, w = await asyncio.open_connection("127.0.0.1", args.port, limit=1 << 20)
        except OSError as e:
            errors += 1
            print("connect error", e)
            return
        n_open += 1
        peak = max(peak, n_open)
        if n_open == args.conns:
            opened.set()
        await opened.wait()  # every connection is open before anyone asks
        t0 = time.perf_counter()
        try:
            w.write(req)
            status, payload = await asyncio.wait_for(read_first_and_rest(r, ttft, t0),
                                                     timeout=args.timeout)
            if status != 200 or not payload.rstrip().endswith(b"data: [DONE]"):
                errors += 1
            else:
                done += 1
                tokens += payload.count(b'"text":') - 1
        except Exception as e:  # noqa: BLE001 - a benchmark counts every failure
            errors += 1
            if errors < 5:
                print("stream error", type(e).__name__, e)
        finally:
            w.close()
            n_open -= 1

    t0 = time.perf_counter()
    await asyncio.gather(*[one(i) for i in range(args.conns)])
    dt = time.perf_counter() - t0
    print(json.dumps({"mode": "streams", "conns": args.conns, "peak_open": peak,
                      "completed": done, "errors": errors, "seconds": round(dt, 2),
                      "stream_tokens_per_s": round(tokens / dt, 1),
                      "ttft_p50_s": round(pct(ttft, 50), 3),
                      "ttft_p99_s": round(pct(ttft, 99), 3)}))


async def read_first_and_rest(reader, ttft, t0):
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    parts, first = [], True
    while True:
        size = int((await reader.readline()).strip(), 16)
        if size == 0:
            await reader.readline()
            break
        chunk = await reader.readexactly(size)
        await reader.readline()
        if first and b'"text":"' in chunk:
            ttft.append(time.perf_counter() - t0)
            first = False
        parts.append(chunk)
    return status, b"".join(parts)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["rps", "latency", "streams"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--key")
    ap.add_argument("--conns", type=int, default=None)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--max-tokens", type=int, default=None)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args()
    if args.conns is None:
        args.conns = 2000 if args.mode == "streams" else 32
    if args.max_tokens is None:
        args.max_tokens = 32 if args.mode == "streams" else 1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run({"rps": rps, "latency": latency, "streams": streams}[args.mode](args))


if __name__ == "__main__":
    main()
