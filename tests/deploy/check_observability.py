#!/usr/bin/env python3
"""check_observability.py - the monitoring files of tools/deploy/observability
against the one list of vLLM metric series dsa-head exports
(vllm-metrics.txt there).

    check_observability.py SOURCE_DIR                 the files
    check_observability.py SOURCE_DIR --head BIN --mkmodel BIN
                                                      the running server

Files: every metric name a dashboard panel, the dashboard's template query
or an alert rule uses is in the list; the dashboard has the panels an
operator needs (queue, running, KV cache, TTFT and ITL histograms, token
throughput, E2E latency), each vLLM query filters on model_name.

Server: a dsa-head on loopback (a dsa-mkmodel checkpoint, one request
served) exports every series of the list, each with the model_name label
equal to the served name.  Prints one PASS/FAIL line per check; exit 1 when
any failed.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

# Metric names in PromQL: identifiers with a colon (vLLM's "vllm:" names and
# any recording-rule style name); a bare `up` is Prometheus's own.
NAME = re.compile(r"(?<![\w:.$])([A-Za-z_][A-Za-z0-9_]*:[A-Za-z0-9_:]+)")

failed = False


def check(name, ok, detail=""):
    global failed
    print(("PASS  " if ok else "FAIL  ") + name + ("" if ok else ": " + detail))
    failed |= not ok


def load_list(obs):
    with open(os.path.join(obs, "vllm-metrics.txt")) as f:
        names = [l.strip() for l in f if l.strip() and not l.startswith("#")]
    return names


def exprs_of(node):
    """Every PromQL string of a dashboard: targets' expr, template queries."""
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("expr", "definition") and isinstance(v, str):
                out.append(v)
            elif k == "query" and isinstance(v, str) and "(" in v:
                out.append(v)
            else:
                out.extend(exprs_of(v))
    elif isinstance(node, list):
        for v in node:
            out.extend(exprs_of(v))
    return out


def check_files(src):
    obs = os.path.join(src, "tools", "deploy", "observability")
    names = load_list(obs)
    known = set(names)
    check("metric list: %d series, all vllm:, no duplicates" % len(names),
          len(names) == len(known) and all(n.startswith("vllm:") for n in names), str(names))

    dash = json.load(open(os.path.join(obs, "grafana-dashboard.json")))
    exprs = exprs_of(dash)
    used = {n for e in exprs for n in NAME.findall(e)}
    check("dashboard: %d queries, every metric in the list" % len(exprs),
          bool(exprs) and used <= known, "not exported: %s" % sorted(used - known))
    check("dashboard: every query names a metric",
          all(NAME.search(e) for e in exprs), str([e for e in exprs if not NAME.search(e)]))
    targets = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    check("dashboard: every panel query filters on model_name",
          all('model_name=~"$model_name"' in t for t in targets),
          str([t for t in targets if 'model_name=~"$model_name"' not in t]))
    needed = {
        "queue": "vllm:num_requests_waiting",
        "running": "vllm:num_requests_running",
        "KV cache usage": "vllm:kv_cache_usage_perc",
        "TTFT histogram": "vllm:time_to_first_token_seconds_bucket",
        "ITL histogram": "vllm:inter_token_latency_seconds_bucket",
        "generated tokens/s": "vllm:generation_tokens_total",
        "prompt tokens/s": "vllm:prompt_tokens_total",
        "E2E latency": "vllm:e2e_request_latency_seconds_bucket",
    }
    missing = [k for k, m in needed.items() if not any(m in t for t in targets)]
    check("dashboard: panels for " + ", ".join(needed), not missing, "missing: %s" % missing)
    heat = [p for p in dash["panels"] if p["type"] == "heatmap"]
    check("dashboard: TTFT and ITL as heatmaps of their buckets",
          any("time_to_first_token_seconds_bucket" in t["expr"] for p in heat for t in p["targets"]) and
          any("inter_token_latency_seconds_bucket" in t["expr"] for p in heat for t in p["targets"]),
          "no heatmap panels over the buckets")
    ids = [p["id"] for p in dash["panels"]]
    check("dashboard: unique panel ids", len(ids) == len(set(ids)), str(ids))

    rules_text = open(os.path.join(obs, "dsa-alerts.yml")).read()
    rule_exprs = re.findall(r"^\s*expr:\s*(.+)$", rules_text, re.M)
    rule_used = {n for e in rule_exprs for n in NAME.findall(e)}
    check("alert rules: %d, every metric in the list" % len(rule_exprs),
          bool(rule_exprs) and rule_used <= known, "not exported: %s" % sorted(rule_used - known))

    prom = open(os.path.join(obs, "prometheus.yml")).read()
    check("prometheus.yml: scrapes /metrics of job dsa-head and loads the rules",
          "job_name: dsa-head" in prom and "metrics_path: /metrics" in prom and "dsa-alerts.yml" in prom,
          "job, path or rule file missing")


def check_server(src, head, mkmodel):
    names = load_list(os.path.join(src, "tools", "deploy", "observability"))
    served = "deepseek-ai/DeepSeek-V3"
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([mkmodel, "--out", os.path.join(tmp, "tiny")], check=True,
                       stdout=subprocess.DEVNULL)
        port_file = os.path.join(tmp, "port")
        log = open(os.path.join(tmp, "head.log"), "w")
        proc = subprocess.Popen([head, "--model", os.path.join(tmp, "tiny"), "--host", "127.0.0.1",
                                 "--port", "0", "--port-file", port_file, "--threads", "1",
                                 "--served-model-name", served, "--log-format", "text"],
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            base = None
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if base is None and os.path.exists(port_file) and open(port_file).read().strip():
                    base = "http://127.0.0.1:%s" % open(port_file).read().strip()
                if base:
                    try:
                        if urllib.request.urlopen(base + "/health", timeout=5).status == 200:
                            break
                    except OSError:
                        pass
                if proc.poll() is not None:
                    break
                time.sleep(0.2)
            else:
                base = None
            if proc.poll() is not None or base is None:
                check("dsa-head starts", False, open(os.path.join(tmp, "head.log")).read()[-2000:])
                return
            body = json.dumps({"model": served, "prompt": "Hello", "max_tokens": 4}).encode()
            req = urllib.request.Request(base + "/v1/completions", data=body,
                                         headers={"Content-Type": "application/json"})
            check("one completion served", urllib.request.urlopen(req, timeout=60).status == 200)
            text = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    series = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            m = re.match(r"([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s", line)
            if m:
                series.setdefault(m.group(1), []).append(m.group(2) or "")
    missing = [n for n in names if n not in series]
    check("dsa-head exports every listed series (%d)" % len(names), not missing,
          "missing: %s" % missing)
    unlabelled = [n for n in names if n in series and
                  not all('model_name="%s"' % served in lab for lab in series[n])]
    check("every listed series has model_name=\"%s\"" % served, not unlabelled, str(unlabelled))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("--head")
    ap.add_argument("--mkmodel")
    a = ap.parse_args()
    if a.head:
        check_server(a.src, a.head, a.mkmodel)
    else:
        check_files(a.src)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
