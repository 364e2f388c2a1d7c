#!/usr/bin/env bash
# Where an idle connection's memory goes: the broker's heap at its peak,
# per connection, by allocation site.
#
# Builds the broker with the system allocator (`--no-default-features`:
# heaptrack cannot see into mimalloc), runs it under heaptrack on loopback,
# opens N idle connections in rooms of 10 with `shardcast-loadtest idle`,
# stops the broker, and prints the peak heap per connection grouped by the
# broker's own function that allocated it (idle-heap-breakdown.py). The
# RSS per connection the load generator prints is the system allocator's;
# the release build (mimalloc) is measured by the yardstick's `idle`
# scenario and docs/BENCHMARKS.md.
#
# Usage: loadtest/idle-heap.sh [N] (default 10000; at most the open-file
# limit minus a few hundred). Needs heaptrack (Debian: apt-get install
# heaptrack) and python3. Everything stays on 127.0.0.1 and stops by itself.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
N=${1:-10000}
PORT=${PORT:-18611}
OUT=${OUT:-/tmp/shardcast-idle-heap}
# Longest build, broker start, and load generator run.
BUILD_LIMIT_SECS=1200
START_LIMIT_SECS=10
RUN_LIMIT_SECS=180

command -v heaptrack >/dev/null || { echo "heaptrack not found (apt-get install heaptrack)" >&2; exit 2; }
command -v heaptrack_print >/dev/null || { echo "heaptrack_print not found" >&2; exit 2; }
mkdir -p "$OUT"

echo "== build (system allocator) into $OUT/target"
timeout "$BUILD_LIMIT_SECS" cargo build --release --no-default-features --bin shardcast \
    --target-dir "$OUT/target" -q
timeout "$BUILD_LIMIT_SECS" cargo build --release -p shardcast-loadtest -q
BIN=$OUT/target/release/shardcast
GEN=target/release/shardcast-loadtest

export SHARDCAST_LIMITS__MAX_CONNECTIONS_PER_IP=$((N + 100))
export SHARDCAST_LIMITS__MAX_CONNECTIONS=$((N + 100))
rm -f "$OUT"/heap*.zst
heaptrack -o "$OUT/heap" "$BIN" serve --listen "127.0.0.1:$PORT" >"$OUT/broker.log" 2>&1 &
HEAPTRACK=$!
BROKER=
for _ in $(seq $((START_LIMIT_SECS * 5))); do
    BROKER=$(pgrep -P "$HEAPTRACK" -n shardcast || true)
    if [[ -n $BROKER ]] && curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz"; then
        break
    fi
    sleep 0.2
done
if [[ -z $BROKER ]]; then
    echo "the broker did not start (see $OUT/broker.log)" >&2
    kill "$HEAPTRACK" 2>/dev/null || true
    exit 1
fi

echo "== $N idle connections in rooms of 10"
timeout "$RUN_LIMIT_SECS" "$GEN" idle --url "ws://127.0.0.1:$PORT/ws" --connections "$N" \
    --room-size 10 --duration 5 --server-pid "$BROKER" --out "$OUT/idle.json" || true
kill -INT "$BROKER"
wait "$HEAPTRACK" || true

heaptrack_print -f "$OUT"/heap*.zst --flamegraph-cost-type peak -F "$OUT/stacks.txt" >/dev/null
echo "== peak heap per connection, by the broker's allocating function"
python3 loadtest/idle-heap-breakdown.py "$OUT/stacks.txt" "$N"
