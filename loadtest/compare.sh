#!/usr/bin/env bash
# Before/after figures of two broker binaries, measured back to back.
#
#   loadtest/compare.sh OLD_BINARY NEW_BINARY [ROUNDS]
#
# Runs the suite's three headline scenarios (fanout 1x1000 at max rate,
# 500 rooms x 10 at 2/s per publisher, 10,000 idle connections) against a
# fresh broker of each binary, alternating OLD and NEW in every round
# (default 3 rounds), with this workspace's release shardcast-loadtest as
# the generator for both. Prints one row per run and, per scenario and
# binary, the median and the spread (max - min) of its rounds: a difference
# smaller than the spread is noise. Loopback only; every run is bounded by
# `timeout` and the broker it started is stopped by its PID.
#
# Environment: PORT (first port to try, default 18700), OUT (where results
# and logs go, default /tmp/shardcast-compare).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
if (($# < 2)); then
    echo "usage: $0 OLD_BINARY NEW_BINARY [ROUNDS]" >&2
    exit 2
fi
OLD=$(realpath "$1")
NEW=$(realpath "$2")
ROUNDS=${3:-3}
PORT=${PORT:-18700}
OUT=${OUT:-/tmp/shardcast-compare}
LOADTEST=$(pwd)/target/release/shardcast-loadtest
# Longest build, one scenario run, broker start and stop.
BUILD_LIMIT_SECS=600
RUN_LIMIT_SECS=90
START_LIMIT_SECS=10
STOP_LIMIT_SECS=15
SOURCES=127.0.0.1-127.0.0.8

log() { printf '[compare %3ds] %s\n' "$SECONDS" "$*" >&2; }
# shellcheck source=loadtest/processes.sh
source loadtest/processes.sh
trap stop_all EXIT

mkdir -p "$OUT"
log "building the generator"
timeout "$BUILD_LIMIT_SECS" cargo build --release -q -p shardcast-loadtest

# scenario name, then the generator's arguments.
SCENARIOS=(
    "fanout-1x1000-max|fanout --rooms 1 --members 1000 --rate max --duration 10"
    "fanout-500x10-rate2|fanout --rooms 500 --members 10 --publishers 10 --rate 2 --duration 10"
    "idle-10000|idle --connections 10000 --duration 10"
)

# One scenario against a fresh broker of binary $2 (label $1); prints the
# result file.
run_one() {
    local label=$1 binary=$2 name=$3 args=$4 round=$5
    local port
    port=$(free_port "$PORT")
    local file="$OUT/$name-$label-$round.json"
    "$binary" serve --listen "127.0.0.1:$port" >"$OUT/broker-$label.log" 2>&1 &
    PIDS+=($!)
    local pid=$!
    wait_port "$port"
    # shellcheck disable=SC2086
    timeout --kill-after=10 "$RUN_LIMIT_SECS" "$LOADTEST" $args \
        --url "ws://127.0.0.1:$port/ws" --server-pid "$pid" \
        --source-ips "$SOURCES" --user-prefix "$name" --out "$file" \
        >"$OUT/$name-$label-$round.log" 2>&1 || log "$name ($label, round $round) failed: see $OUT"
    stop_all
    echo "$file"
}

for round in $(seq "$ROUNDS"); do
    for entry in "${SCENARIOS[@]}"; do
        name=${entry%%|*}
        args=${entry#*|}
        for label in old new; do
            binary=$OLD
            [[ $label == new ]] && binary=$NEW
            log "round $round: $name on $label"
            run_one "$label" "$binary" "$name" "$args" "$round" >/dev/null
        done
    done
done

python3 - "$OUT" "$ROUNDS" <<'PY'
import json, os, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def figure(name, d):
    results = d.get("results", {})
    if name.startswith("idle"):
        return (results.get("server_rss_kib_per_connection"),
                "KiB of server RSS per idle connection (lower is better)")
    return results.get("deliveries_per_server_cpu_sec"), "deliveries per server CPU-second"
for name in ["fanout-1x1000-max", "fanout-500x10-rate2", "idle-10000"]:
    unit = ""
    rows = {}
    for label in ["old", "new"]:
        vals = []
        for r in range(1, rounds + 1):
            path = os.path.join(out, f"{name}-{label}-{r}.json")
            try:
                d = json.load(open(path))
            except (OSError, ValueError):
                continue
            v, unit = figure(name, d)
            if v is not None:
                vals.append(float(v))
        rows[label] = vals
    print(f"{name}: {unit}")
    for label, vals in rows.items():
        if vals:
            print(f"  {label}: runs {', '.join(f'{v:,.1f}' for v in vals)}; "
                  f"median {statistics.median(vals):,.1f}, spread {max(vals) - min(vals):,.1f}")
        else:
            print(f"  {label}: no result")
    if rows["old"] and rows["new"]:
        print(f"  new/old (medians): {statistics.median(rows['new']) / statistics.median(rows['old']):.3f}")
PY
