#!/usr/bin/env bash
# Before/after figures of two load generators (shardcast-loadtest
# binaries): the generator's CPU per delivery against the same broker,
# repeated, because one run per binary does not separate differences under
# about 20% on a shared 2-core machine.
#
#   loadtest/generator-pairs.sh OLD_GENERATOR NEW_GENERATOR [ROUNDS]
#
# In every round (default 3) each scenario runs with OLD, then with NEW,
# each against a freshly started broker (BROKER, default this checkout's
# target/release/shardcast), with the limits of yardstick.sh. The
# scenarios are the two that issue 16 names: fanout 1x1000 at max rate and
# 500 rooms x 10 members at 2 msg/s per publisher (10 per room). Prints each
# run's generator and server CPU per delivery in the measured window and,
# per generator, the medians and new/old. Loopback only; every run is
# bounded by `timeout` and each broker is stopped by its PID.
#
# Environment: BROKER, PORT (first port to try, default 19700), OUT
# (results and logs, default /tmp/shardcast-generator-pairs).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
if (($# < 2)); then
    echo "usage: $0 OLD_GENERATOR NEW_GENERATOR [ROUNDS]" >&2
    exit 2
fi
OLD=$(realpath "$1")
NEW=$(realpath "$2")
ROUNDS=${3:-3}
BROKER=${BROKER:-$(pwd)/target/release/shardcast}
PORT=${PORT:-19700}
OUT=${OUT:-/tmp/shardcast-generator-pairs}
# Longest scenario run (10 s measured, its setup and drain), broker start
# and stop.
RUN_LIMIT_SECS=120
START_LIMIT_SECS=10
STOP_LIMIT_SECS=15
# Issue 16's shapes: name|arguments.
SCENARIOS=(
    "fanout-max|fanout --rooms 1 --members 1000 --rate max --duration 10"
    "rooms|fanout --rooms 500 --members 10 --publishers 10 --rate 2 --duration 10"
)

log() { printf '[generator-pairs %4ds] %s\n' "$SECONDS" "$*" >&2; }
# shellcheck source=loadtest/processes.sh
source loadtest/processes.sh
trap stop_all EXIT

for binary in "$OLD" "$NEW" "$BROKER"; do
    if [[ ! -x $binary ]]; then
        echo "not an executable: $binary" >&2
        exit 2
    fi
done
mkdir -p "$OUT"
rm -f "$OUT"/*.json

# One run of scenario $1 (name|arguments) with generator $2 (old or new),
# round $3.
run_one() {
    local name=${1%%|*} args=${1#*|} label=$2 round=$3 generator=$OLD port pid
    [[ $label == new ]] && generator=$NEW
    port=$(free_port "$PORT")
    "$BROKER" serve --listen "127.0.0.1:$port" >"$OUT/broker-$name-$label-$round.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_port "$port"
    # shellcheck disable=SC2086
    timeout --kill-after=10 "$RUN_LIMIT_SECS" "$generator" $args \
        --url "ws://127.0.0.1:$port/ws" --server-pid "$pid" \
        --source-ips 127.0.0.1-127.0.0.8 --user-prefix "g$round$label" \
        --out "$OUT/$name-$label-$round.json" >"$OUT/$name-$label-$round.log" 2>&1 ||
        log "$name with $label (round $round) failed: see $OUT"
    stop_all
}

for round in $(seq "$ROUNDS"); do
    for scenario in "${SCENARIOS[@]}"; do
        for label in old new; do
            log "round $round: ${scenario%%|*} with $label"
            run_one "$scenario" "$label" "$round"
        done
    done
done

names=()
for scenario in "${SCENARIOS[@]}"; do names+=("${scenario%%|*}"); done
python3 - "$OUT" "$ROUNDS" "$OLD" "$NEW" "$BROKER" "${names[@]}" <<'PY'
import json, os, statistics, sys
out, rounds, old, new, broker, names = sys.argv[1], int(sys.argv[2]), *sys.argv[3:6], sys.argv[6:]
print(f"old = {old}\nnew = {new}\nbroker = {broker}\n")
print("| scenario | generator | runs: generator µs per delivery | median | server µs per delivery (median) | generator / server CPU (median) |")
print("|---|---|---|---:|---:|---:|")
for name in names:
    medians = {}
    for label in ["old", "new"]:
        gen, srv, share = [], [], []
        for r in range(1, rounds + 1):
            try:
                res = json.load(open(os.path.join(out, f"{name}-{label}-{r}.json")))["results"]
                window = res["window"]
                delivered = res["delivered_window"]
                g, s = window["generator_cpu_seconds"], window["server_cpu_seconds"]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if delivered:
                gen.append(1e6 * g / delivered)
                srv.append(1e6 * s / delivered)
                share.append(g / s if s else float("nan"))
        if not gen:
            print(f"| {name} | {label} | no result | | | |")
            continue
        medians[label] = statistics.median(gen)
        print(f"| {name} | {label} | {' / '.join(f'{v:.3f}' for v in gen)} | {medians[label]:.3f} | "
              f"{statistics.median(srv):.3f} | {statistics.median(share):.2f} |")
    if "old" in medians and "new" in medians:
        print(f"| {name} | new / old | | {medians['new'] / medians['old']:.2f} | | |")
PY
