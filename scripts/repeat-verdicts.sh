#!/usr/bin/env bash
# Runs a scenario COUNT times and tallies the verdicts, to check that they
# are stable (not a test: it takes minutes and its figures are the point).
#   scripts/repeat-verdicts.sh reused 10
#   scripts/repeat-verdicts.sh leak 10 --requests 2400   (extra flags go to loadgen run)
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: scripts/repeat-verdicts.sh SCENARIO [COUNT] [loadgen run flags…]}
count=${2:-10}
shift $(( $# >= 2 ? 2 : 1 ))
loadgen=target/release/loadgen
[ -x "$loadgen" ] || cargo build --release --workspace --bins

declare -A tally
for i in $(seq 1 "$count"); do
    code=0
    out=$("$loadgen" run "$name" --quiet "$@") || code=$?
    client=$(sed -n 's/^  verdict client: \([A-Z ]*\) — .*/\1/p' <<<"$out")
    server=$(sed -n 's/^  verdict server: \([A-Z ]*\) — .*/\1/p' <<<"$out")
    slope=$(sed -n 's/^  verdict client: [A-Z ]* — allocated \(.*\) per request .*/\1/p' <<<"$out")
    echo "run $i: exit $code, client ${client:-?} $slope per request, server ${server:-?}"
    tally["client $client"]=$(( ${tally["client $client"]:-0} + 1 ))
    tally["server $server"]=$(( ${tally["server $server"]:-0} + 1 ))
    tally["exit $code"]=$(( ${tally["exit $code"]:-0} + 1 ))
done
echo "== $name × $count"
for key in "${!tally[@]}"; do echo "$key: ${tally[$key]}"; done | sort
