#!/usr/bin/env python3
"""Helpers for bench/run.sh: parse wrk and loadgen output, read metrics,
summarise rounds into medians and ratios. Standard library only; talks to
127.0.0.1 only."""
import json
import re
import statistics
import sys
import urllib.request

UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(path):
    """`rps p99_ms requests` from a `wrk --latency` report."""
    text = open(path).read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    p99 = float(m.group(1)) * UNITS[m.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if errors:
        print(f"warning: {path}: {errors.group(1)} non-2xx answers", file=sys.stderr)
    requests = int(re.search(r"(\d+) requests in", text).group(1))
    print(f"{rps:.1f} {p99:.3f} {requests}")


def loadgen(path):
    """`rps p99_ms requests` from a `loadgen --json` report."""
    report = json.load(open(path))
    bad = {k: v for k, v in report["statuses"].items() if not k.startswith("2")}
    if bad or report["errors"]:
        print(f"warning: {path}: {bad} {report['errors']}", file=sys.stderr)
    print(f"{report['rps']:.1f} {report['latency_ms']['p99']:.3f} {report['sent']}")


def metric(url, name, *labels):
    """Sum of the samples of `name` whose labels contain every `k="v"`."""
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        if head.split("{")[0] != name:
            continue
        if all(label in head for label in labels):
            total += float(value)
    # Counters reach millions: never round them (`:g` keeps 6 digits).
    print(int(total) if total.is_integer() else repr(total))


def summary(path):
    """Markdown table of medians and ratios from
    `test target round rps p99 cpu_us_per_request` rows."""
    rows = [line.split() for line in open(path) if line.strip()]
    by = {}
    for test, target, _round, rps, p99, cpu in rows:
        by.setdefault((test, target), []).append((float(rps), float(p99), float(cpu)))
    med = {k: tuple(statistics.median(x[i] for x in v) for i in range(3)) + (len(v),)
           for k, v in by.items()}
    baselines = {"passthrough": "nginx", "openloop": "nginx", "protected": "rg-pass"}
    print("| test | target | rounds | median rps | median p99 ms | CPU µs/request "
          "| rps ratio | p99 ratio | CPU ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (test, target), (rps, p99, cpu, n) in sorted(med.items()):
        base = med.get((test, baselines.get(test, "")))
        ratio = f"{rps / base[0]:.2f}x" if base else "-"
        pratio = f"{p99 / base[1]:.2f}x" if base and base[1] > 0 else "-"
        cratio = f"{cpu / base[2]:.2f}x" if base and base[2] > 0 else "-"
        print(f"| {test} | {target} | {n} | {rps:.0f} | {p99:.2f} | {cpu:.1f} "
              f"| {ratio} | {pratio} | {cratio} |")
    print()
    print("Ratios are against nginx (passthrough: wrk, closed loop; openloop: loadgen")
    print("at one fixed rate) and against replay-guard's own pass-through route")
    print("(protected). CPU µs/request: user + system time of")
    print("the proxy's processes (nginx: its workers; not the upstream, not the load")
    print("generator) during the run, divided by the requests it answered.")
    print()
    print("Per round (rps ratio / p99 ratio against the baseline of the same round):")
    rounds = {}
    for test, target, rnd, rps, p99, _cpu in rows:
        rounds.setdefault((test, rnd), {})[target] = (float(rps), float(p99))
    for (test, rnd), targets in sorted(rounds.items()):
        base = targets.get(baselines.get(test, ""))
        if base:
            parts = ", ".join(
                f"{t} {r / base[0]:.2f} / {p / base[1]:.2f}" if base[1] > 0 else f"{t} {r / base[0]:.2f}"
                for t, (r, p) in sorted(targets.items()))
            print(f"- {test} round {rnd}: {parts}")


if __name__ == "__main__":
    globals()[sys.argv[1]](*sys.argv[2:])
