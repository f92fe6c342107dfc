#!/usr/bin/env bash
# What profiling costs a verdict: each app scenario (Go, Node, Python, Java), RUNS times with its
# profiler and RUNS times without, and the client's verdict and slope per request of each run.
#   scripts/call-sites-cost.sh [RUNS]     (default 3; needs make build peers)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
loadgen=target/release/loadgen
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '%-18s %-8s %-6s %-14s %s\n' scenario profiler run verdict "slope per request (95% interval)"
for name in go-app-leak node-app-leak python-app-leak java-app-leak; do
    # Without: no call_sites, and for Go no pprof endpoint either (the peer still serves it, unread).
    sed -e 's/^call_sites = true/call_sites = false/' -e '/^pprof = /d' -e 's/"{pprof_addr}"/"127.0.0.1:0"/' "scenarios/$name.toml" > "$work/$name-off.toml"
    cp "scenarios/$name.toml" "$work/$name-on.toml"
    for run in $(seq "$runs"); do
        for profiler in on off; do
            "$loadgen" run "$work/$name-$profiler.toml" --quiet --reports-dir "$work/reports" >/dev/null 2>&1 || true
            python3 - "$work/reports/$name-$profiler/latest/summary.json" "$name" "$profiler" "$run" <<'PY'
import json, sys
path, name, profiler, run = sys.argv[1:]
v = json.load(open(path))["verdict"]["client"]
kb = lambda b: "n/a" if b is None else f"{b / 1000:+.1f} KB"
print(f"{name:<18} {profiler:<8} {run:<6} {v['kind']:<14} {kb(v['slope_bytes_per_request'])} ({kb(v.get('ci_low'))} to {kb(v.get('ci_high'))}) of {v['quantity']}")
PY
        done
    done
done
