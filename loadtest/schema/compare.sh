#!/usr/bin/env bash
# The cost of a message schema under load (docs/BENCHMARKS.md, "Message
# schemas"): fanout 500 rooms x 10 members x 10 publishers at 1 publish/s
# each, against a fresh release broker per run, without and with the
# namespace of loadtest/schema/namespace.toml, alternating, RUNS times each.
# Prints each run's summary; results and logs go to $OUT (default
# target/schema-compare). Needs `cargo build --release -p shardcast -p
# shardcast-loadtest` first. Loopback only; every run ends by itself.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-3}
OUT=${OUT:-target/schema-compare}
mkdir -p "$OUT"
run() { # name, then extra serve arguments
    local name=$1; shift
    local port=$((19000 + RANDOM % 500))
    target/release/shardcast serve --listen "127.0.0.1:$port" "$@" >"$OUT/broker-$name.log" 2>&1 &
    local pid=$!
    sleep 1
    local status=0
    timeout --kill-after=10 120 target/release/shardcast-loadtest fanout \
        --url "ws://127.0.0.1:$port/ws" --rooms 500 --members 10 --publishers 10 \
        --rate 1 --duration 10 --server-pid "$pid" --source-ips 127.0.0.1-127.0.0.8 \
        --out "$OUT/$name.json" >"$OUT/$name.log" 2>&1 || status=$?
    kill -TERM "$pid"; wait "$pid" || true
    echo "== $name (exit $status)"
    sed -n '/^results/,$p' "$OUT/$name.log"
}
for i in $(seq 1 "$RUNS"); do
    run "no-schema-$i"
    run "schema-$i" --config loadtest/schema/namespace.toml
done
