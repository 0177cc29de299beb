#!/usr/bin/env python3
"""promcheck.py - the monitoring files against a live Prometheus in the
rehearsal (tools/deploy/cluster-test.sh); stdlib only.

  promcheck.py PROM_URL DASHBOARD_JSON

Waits (at most 60 s) until Prometheus has scraped the head (up == 1 for job
dsa-head), then evaluates every query of the Grafana dashboard through the
HTTP API, with Grafana's variables bound ($model_name to every model,
$__rate_interval to 1m): each must be accepted by Prometheus, and the
panels that need no traffic in the last minute (gauges, counters' rates,
histogram sums) must return series.  Also checks that the alert rules
(rule_files of the shipped prometheus.yml) loaded and evaluate cleanly.
Prints one line per query; exit 0 when all pass."""
import json
import sys
import time
import urllib.parse
import urllib.request


def api(base, path, **q):
    url = base + path + ("?" + urllib.parse.urlencode(q) if q else "")
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def main():
    base, dash = sys.argv[1].rstrip("/"), sys.argv[2]
    t0 = time.time()
    while True:
        try:
            up = api(base, "/api/v1/query", query='up{job="dsa-head"}')["data"]["result"]
            if up and up[0]["value"][1] == "1":
                break
        except OSError:
            pass
        if time.time() - t0 > 60:
            print("FAIL: Prometheus never scraped the head (up != 1)")
            return 1
        time.sleep(1)
    print("scraped: up{job=\"dsa-head\"} == 1 after %.0f s" % (time.time() - t0))
    # two more scrapes, so rate() over the window has two samples
    time.sleep(12)
    panels = json.load(open(dash))["panels"]
    bad = 0
    n = 0
    for p in panels:
        for t in p.get("targets", []):
            expr = t["expr"].replace("$model_name", ".*").replace("$__rate_interval", "1m")
            n += 1
            try:
                r = api(base, "/api/v1/query", query=expr)
            except OSError as e:
                print("FAIL %s: %s: %s" % (p["title"], expr, e))
                bad += 1
                continue
            series = r.get("data", {}).get("result", [])
            # histogram_quantile over a window without requests is empty/NaN:
            # only the rest must have data
            need = "histogram_quantile" not in expr and " / " not in expr
            ok = r.get("status") == "success" and (series or not need)
            print("%s %s: %s -> %d series" % ("ok  " if ok else "FAIL", p["title"], expr,
                                                len(series)))
            bad += not ok
    rules = api(base, "/api/v1/rules")["data"]["groups"]
    n_rules = sum(len(g["rules"]) for g in rules)
    unhealthy = [r["name"] for g in rules for r in g["rules"] if r.get("health") != "ok"]
    if not n_rules or unhealthy:
        print("FAIL: alert rules: %d loaded, unhealthy %s" % (n_rules, unhealthy))
        bad += 1
    else:
        print("ok   alert rules: %d loaded and evaluating" % n_rules)
    print("%d of %d dashboard queries ok" % (n - min(bad, n), n))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
