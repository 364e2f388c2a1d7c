#!/usr/bin/env bash
# Before/after figures of two broker binaries against the yardstick's null
# broker, repeated: one yardstick run per binary does not separate
# differences under about 20% on a shared 2-core machine.
#
#   loadtest/yardstick-pairs.sh OLD_BINARY NEW_BINARY [ROUNDS] [SCENARIOS]
#
# SCENARIOS is a comma-separated list of the yardstick's scenarios
# (default fanout-max,rooms-light; see its targets.toml). In every round
# (default 3) each scenario runs against the null broker, then OLD, then
# NEW, each freshly started, with the yardstick's own generator (wsbench)
# and the same environment as yardstick.sh. Prints each run's deliveries
# per server CPU-second and, per binary, the median, the spread
# (max - min) and the median's ratio to the null broker's median.
# Loopback only; every run is bounded by `timeout` and each server is
# stopped by its PID.
#
# Environment: YARDSTICK (the tool; default ../shared/tools/yardstick
# beside the repository), YARDSTICK_BUILD (where it is built, default
# ~/.cache/shardcast-yardstick), PORT (first port to try, default 19600),
# OUT (results and logs, default /tmp/shardcast-yardstick-pairs).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
if (($# < 2)); then
    echo "usage: $0 OLD_BINARY NEW_BINARY [ROUNDS] [SCENARIOS]" >&2
    exit 2
fi
OLD=$(realpath "$1")
NEW=$(realpath "$2")
ROUNDS=${3:-3}
SCENARIOS=${4:-fanout-max,rooms-light}
YARDSTICK=${YARDSTICK:-$(pwd)/../shared/tools/yardstick}
WORK=${YARDSTICK_BUILD:-$HOME/.cache/shardcast-yardstick}
PORT=${PORT:-19600}
OUT=${OUT:-/tmp/shardcast-yardstick-pairs}
# Longest build of the yardstick, one scenario run, server start and stop.
BUILD_LIMIT_SECS=600
RUN_LIMIT_SECS=120
START_LIMIT_SECS=10
STOP_LIMIT_SECS=15

log() { printf '[pairs %4ds] %s\n' "$SECONDS" "$*" >&2; }
# shellcheck source=loadtest/processes.sh
source loadtest/processes.sh
trap stop_all EXIT

if [[ ! -f $YARDSTICK/targets.toml ]]; then
    echo "no yardstick at $YARDSTICK (set YARDSTICK)" >&2
    exit 2
fi
mkdir -p "$WORK" "$OUT"
rm -f "$OUT"/*.json
log "building the yardstick in $WORK"
cp -r "$YARDSTICK"/Cargo.toml "$YARDSTICK"/Cargo.lock "$YARDSTICK"/wsbench \
    "$YARDSTICK"/servers "$YARDSTICK"/targets.toml "$WORK"/
(cd "$WORK" && timeout "$BUILD_LIMIT_SECS" cargo build --release -q)
WSBENCH=$WORK/target/release/wsbench
NULL=$WORK/target/release/null-server

# The same limits as yardstick.sh: no rate limit or cap shapes the result.
export SHARDCAST_LIMITS__PUBLISH_RATE_PER_SEC=${SHARDCAST_LIMITS__PUBLISH_RATE_PER_SEC:-1000000}
export SHARDCAST_LIMITS__PUBLISH_BURST=${SHARDCAST_LIMITS__PUBLISH_BURST:-1000000}
export SHARDCAST_LIMITS__MAX_CONNECTIONS_PER_IP=${SHARDCAST_LIMITS__MAX_CONNECTIONS_PER_IP:-100000}
export SHARDCAST_LIMITS__OUTBOUND_QUEUE_MESSAGES=${SHARDCAST_LIMITS__OUTBOUND_QUEUE_MESSAGES:-8192}
export SHARDCAST_ROOM__DEFAULT_MAX_MEMBERS=${SHARDCAST_ROOM__DEFAULT_MAX_MEMBERS:-100000}

# wsbench's arguments for scenario $1: the common ones, then the scenario's.
scenario_args() {
    python3 - "$WORK/targets.toml" "$1" <<'PY'
import sys, tomllib
t = tomllib.load(open(sys.argv[1], "rb"))
for s in t["scenario"]:
    if s["name"] == sys.argv[2]:
        print(t["defaults"]["common_args"], s["args"])
        break
else:
    sys.exit(f"no scenario {sys.argv[2]} in targets.toml")
PY
}

# One run of scenario $2 against server $1 (null, old or new), round $3.
run_one() {
    local label=$1 scenario=$2 round=$3 args port pid
    args=$(scenario_args "$scenario")
    port=$(free_port "$PORT")
    case $label in
        null) "$NULL" --port "$port" >"$OUT/server-$label.log" 2>&1 & ;;
        old) "$OLD" serve --listen "127.0.0.1:$port" >"$OUT/server-$label.log" 2>&1 & ;;
        new) "$NEW" serve --listen "127.0.0.1:$port" >"$OUT/server-$label.log" 2>&1 & ;;
    esac
    pid=$!
    PIDS+=("$pid")
    wait_port "$port"
    # shellcheck disable=SC2086
    timeout --kill-after=10 "$RUN_LIMIT_SECS" "$WSBENCH" --url "ws://127.0.0.1:$port" \
        --proto shardcast --server-pid "$pid" --label "$label" $args \
        >"$OUT/$scenario-$label-$round.json" 2>"$OUT/$scenario-$label-$round.log" ||
        log "$scenario on $label (round $round) failed: see $OUT"
    stop_all
}

IFS=, read -r -a SCENARIO_LIST <<<"$SCENARIOS"
for round in $(seq "$ROUNDS"); do
    for scenario in "${SCENARIO_LIST[@]}"; do
        for label in null old new; do
            log "round $round: $scenario on $label"
            run_one "$label" "$scenario" "$round"
        done
    done
done

python3 - "$OUT" "$ROUNDS" "$SCENARIOS" "$OLD" "$NEW" <<'PY'
import json, os, statistics, sys
out, rounds, scenarios, old, new = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(","), sys.argv[4], sys.argv[5]
print(f"old = {old}\nnew = {new}\n")
print("| scenario | server | runs: deliveries per server CPU-s | median | spread | median / null's |")
print("|---|---|---|---:|---:|---:|")
for scenario in scenarios:
    medians = {}
    for label in ["null", "old", "new"]:
        vals = []
        for r in range(1, rounds + 1):
            try:
                d = json.load(open(os.path.join(out, f"{scenario}-{label}-{r}.json")))
            except (OSError, ValueError):
                continue
            v = d.get("deliveries_per_server_cpu_s")
            if v:
                vals.append(float(v))
        if not vals:
            print(f"| {scenario} | {label} | no result | | | |")
            continue
        medians[label] = statistics.median(vals)
        ratio = f"{medians[label] / medians['null']:.2f}" if medians.get("null") else "–"
        print(f"| {scenario} | {label} | {' / '.join(f'{v:,.0f}' for v in vals)} | "
              f"{medians[label]:,.0f} | {max(vals) - min(vals):,.0f} | {ratio} |")
    if "old" in medians and "new" in medians:
        print(f"| {scenario} | new / old | | {medians['new'] / medians['old']:.2f} | | |")
PY
