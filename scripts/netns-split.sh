#!/usr/bin/env bash
# One scenario split over several load-generator "hosts" on one machine, each host a network
# namespace, then merged: what `loadgen run --segment` and `loadgen merge` do across real hosts.
#
#   sudo scripts/netns-split.sh [SCENARIO…]        default: leak reused
#   HOSTS="3 1" sudo scripts/netns-split.sh leak   host counts to split over, default "2 1"
#
# As root (ip netns). For each scenario and host count N it makes namespaces joined by a bridge
# in a namespace of its own (nothing is added to this machine's own network):
#   llsplit-server  10.251.0.1   the toy server, gRPC on :50051, Prometheus metrics on :9090
#   llsplit-host-I  10.251.0.1I  load generator I of N: loadgen run --segment I/N
# starts a fresh toy server, runs the N segments with one --start-at, merges their run
# directories, and removes everything it made. Reports go to reports/netns/<time>/.
#
# It then checks what the split must keep: the merged verdicts meet the scenario's expectations,
# the summed request count equals the count the server itself served, and the merged server's
# slope per request is within 10% of the one-host run's. Exit 0 when every check holds, 1 when
# one fails, 77 when network namespaces cannot be made here.
set -euo pipefail

cd "$(dirname "$0")/.."
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(leak reused)
read -r -a host_counts <<< "${HOSTS:-2 1}"
LOADGEN=${LOADGEN:-target/release/loadgen}
SERVER=${SERVER:-target/release/leaklab-server}
prefix=llsplit
bridge_ns=$prefix-bridge
out=reports/netns/$(date -u +%Y%m%dT%H%M%SZ)

for bin in "$LOADGEN" "$SERVER"; do
    [ -x "$bin" ] || { echo "netns-split: $bin is missing: run make build first" >&2; exit 1; }
done
if [ "$(id -u)" -ne 0 ]; then
    echo "netns-split: network namespaces need root: sudo $0 $*" >&2
    exit 77
fi
for count in "${host_counts[@]}"; do
    [[ $count =~ ^[1-9]$ ]] || { echo "netns-split: HOSTS: $count: a host count from 1 to 9" >&2; exit 1; }
done

server_pid=
cleanup() {
    [ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true
    for ns in $(ip netns list | awk '{print $1}' | grep "^$prefix-" || true); do
        ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
        ip netns del "$ns" 2>/dev/null || true
    done
}
trap cleanup EXIT

# A namespace joined to the bridge at ADDRESS.
join() {
    local ns=$1 address=$2 link=$3
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip link add "$link" netns "$ns" type veth peer name "$link-br" netns "$bridge_ns"
    ip -n "$bridge_ns" link set "$link-br" master br0 up
    ip -n "$ns" addr add "$address/24" dev "$link"
    ip -n "$ns" link set "$link" up
}

# The network for N hosts: the bridge's namespace, the server's and N hosts'.
network() {
    local hosts=$1
    cleanup
    if ! ip netns add "$bridge_ns" 2>/dev/null; then
        echo "netns-split: cannot make network namespaces here (ip netns add failed)" >&2
        exit 77
    fi
    ip -n "$bridge_ns" link add br0 type bridge
    ip -n "$bridge_ns" link set br0 up
    join "$prefix-server" 10.251.0.1 veth-s
    for i in $(seq 1 "$hosts"); do
        join "$prefix-host-$i" "10.251.0.1$i" "veth-h$i"
    done
}

# Scenario × host count: a fresh server, the segments started together, their merge.
split_run() {
    local scenario=$1 hosts=$2 dir=$out/$1-$2-hosts
    network "$hosts"
    mkdir -p "$dir"
    ip netns exec "$prefix-server" "$SERVER" --allow-remote --listen 10.251.0.1:50051 \
        --metrics-listen 10.251.0.1:9090 > "$dir/server.out" 2> "$dir/server.err" &
    server_pid=$!
    for _ in $(seq 100); do
        grep -q listening "$dir/server.out" 2>/dev/null && break
        sleep 0.1
    done
    grep -q listening "$dir/server.out" || { echo "netns-split: the server did not start: $(cat "$dir/server.err")" >&2; exit 1; }
    local start_at pids=()
    start_at=$(date -u -d '+3 seconds' +%Y-%m-%dT%H:%M:%SZ)
    echo "== $scenario over $hosts host(s), starting at $start_at"
    for i in $(seq 1 "$hosts"); do
        ip netns exec "$prefix-host-$i" "$LOADGEN" run "$scenario" --quiet \
            --target 10.251.0.1:50051 --server-metrics http://10.251.0.1:9090/metrics \
            --server-metric leaklab_server_requests_total \
            --segment "$i/$hosts" --start-at "$start_at" --reports-dir "$dir/host-$i" \
            > "$dir/host-$i.out" 2>&1 &
        pids+=($!)
    done
    local failed=0
    for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
    kill "$server_pid" && wait "$server_pid" 2>/dev/null || true
    server_pid=
    if [ "$failed" -ne 0 ]; then
        tail -n 5 "$dir"/host-*.out >&2
        echo "netns-split: a load generator failed (its output: $dir/host-I.out)" >&2
    fi
    local segments=()
    for i in $(seq 1 "$hosts"); do segments+=("$dir/host-$i/$scenario/latest"); done
    # Exit 3 (a verdict inconclusive) still writes the merged report; the checks below judge it.
    "$LOADGEN" merge "${segments[@]}" --reports-dir "$dir/merged" || [ $? -eq 3 ]
}

mkdir -p "$out"
for scenario in "${scenarios[@]}"; do
    for hosts in "${host_counts[@]}"; do
        split_run "$scenario" "$hosts"
    done
done

# What every split must keep, from the merged summaries.
python3 - "$out" "${host_counts[*]}" "${scenarios[@]}" <<'EOF'
import json, sys
out, counts, scenarios = sys.argv[1], [int(c) for c in sys.argv[2].split()], sys.argv[3:]
failures = []
print(f"\n{'scenario':<10} {'hosts':>5} {'requests':>9} {'server counted':>14}  {'client':<8} {'server':<8} {'server B/request':>16}")
for scenario in scenarios:
    slopes = {}
    for hosts in counts:
        path = f"{out}/{scenario}-{hosts}-hosts/merged/{scenario}/latest/summary.json"
        try:
            s = json.load(open(path))
        except OSError as error:
            failures.append(f"{scenario} over {hosts}: no merged summary ({error})")
            continue
        requests = s["requests"]["ok"] + s["requests"]["failed"]
        counted = s["server_metrics"].get("leaklab_server_requests_total", {}).get("end")
        client, server = s["verdict"]["client"], s["verdict"]["server"]
        slope = server["slope_bytes_per_request"] if server else None
        slopes[hosts] = slope
        print(f"{scenario:<10} {hosts:>5} {requests:>9} {counted or 0:>14.0f}  {client['kind']:<8} "
              f"{server['kind'] if server else '-':<8} {slope if slope is not None else float('nan'):>16.1f}")
        if counted != requests:
            failures.append(f"{scenario} over {hosts}: {requests} requests summed, the server counted {counted}")
        if s["outcome"] != "met":
            failures.append(f"{scenario} over {hosts}: outcome {s['outcome']} (client {client['kind']}, "
                            f"server {server['kind'] if server else 'not measured'})")
        if len(s["segments"]) != hosts:
            failures.append(f"{scenario} over {hosts}: {len(s['segments'])} segments in the merged summary")
        # Each load generator's own run, judged alone, meets the expectations too.
        for i in range(1, hosts + 1):
            own = json.load(open(f"{out}/{scenario}-{hosts}-hosts/host-{i}/{scenario}/latest/summary.json"))
            if own["outcome"] != "met":
                kinds = {side: (v or {}).get("kind") for side, v in own["verdict"].items() if side != "confidence"}
                failures.append(f"{scenario} over {hosts}, host {i} alone: outcome {own['outcome']} {kinds}")
    if scenario == "leak" and 1 in slopes:
        for hosts, slope in slopes.items():
            if hosts != 1 and slope is not None and slopes[1]:
                off = slope / slopes[1] - 1
                print(f"{scenario}: server slope over {hosts} hosts is {off:+.1%} off the one-host run's")
                if abs(off) > 0.10:
                    failures.append(f"{scenario} over {hosts}: server slope {slope:.0f} B/request, "
                                    f"{off:+.1%} off the one-host run's {slopes[1]:.0f}")
print(f"\nreports: {out}/<scenario>-<N>-hosts/merged/<scenario>/latest/ (memory.png, report.md, summary.json)")
for failure in failures:
    print(f"netns-split: FAILED: {failure}", file=sys.stderr)
sys.exit(1 if failures else 0)
EOF
