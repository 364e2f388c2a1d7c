#!/usr/bin/env bash
# Cross-node fan-out next to single-node fan-out, on one machine.
#
# Builds release, starts a redis-server of its own (no persistence) and
#  1. one node without Redis: fanout 1 room x $MEMBERS members, publisher
#     and members on it;
#  2. two nodes on that Redis: the same fanout with the publisher on node A
#     and the members spread over A and B (--member-url);
#  3. the same two nodes, all members on node B (every delivery crosses
#     Redis).
# Server CPU in runs 2 and 3 is node A + node B + redis-server
# (--server-pid A --also-pid B,REDIS). Every process is started here and
# stopped by its PID; every step is bounded by `timeout`.
#
# All three runs offer the same fixed rate (RATE publishes/s), so they
# compare CPU per delivery and latency at equal load. (`--rate max` does
# not suit a cluster: a publish is acknowledged once Redis sequenced it, so
# a closed-loop publisher is not held back by delivery on the other node,
# which then falls behind until Redis cuts it off and it repairs.)
#
# Environment: PORT (first port to try, default 18700), MEMBERS (default
# 1000), DURATION (seconds per run, default 10), RATE (publishes/s,
# default 500), RESULTS_DIR (default /tmp/shardcast-cluster-bench).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
PORT=${PORT:-18700}
MEMBERS=${MEMBERS:-1000}
DURATION=${DURATION:-10}
RATE=${RATE:-500}
RESULTS_DIR=${RESULTS_DIR:-/tmp/shardcast-cluster-bench}
BUILD_LIMIT_SECS=600
RUN_LIMIT_SECS=$((DURATION + 60))
START_LIMIT_SECS=10
STOP_LIMIT_SECS=15
BROKER=$ROOT/target/release/shardcast
LOADTEST=$ROOT/target/release/shardcast-loadtest
log() { printf '[cluster-bench %3ds] %s\n' "$SECONDS" "$*"; }

# shellcheck source=loadtest/processes.sh
source "$ROOT/loadtest/processes.sh"
trap stop_all EXIT

# start_node NAME PORT [redis url]: sets NODE_PID.
start_node() {
    local name=$1 port=$2 redis=${3:-}
    local args=(serve --listen "127.0.0.1:$port")
    if [[ -n $redis ]]; then args+=(--redis "$redis"); fi
    SHARDCAST_SERVER__NODE_ID=$name "$BROKER" "${args[@]}" >"$RESULTS_DIR/$name.log" 2>&1 &
    NODE_PID=$!
    PIDS+=("$NODE_PID")
    wait_port "$port"
}

mkdir -p "$RESULTS_DIR"
command -v redis-server >/dev/null || { log "redis-server is not installed (apt-get install redis-server)"; exit 1; }
log "building release"
timeout "$BUILD_LIMIT_SECS" cargo build --release -q -p shardcast -p shardcast-loadtest

common=(--members "$MEMBERS" --rate "$RATE" --duration "$DURATION" --warmup 2
    --source-ips 127.0.0.1-127.0.0.8)

log "1/3 single node"
port_a=$(free_port "$PORT")
start_node single "$port_a"
timeout "$RUN_LIMIT_SECS" "$LOADTEST" fanout --url "ws://127.0.0.1:$port_a/ws" \
    --server-pid "$NODE_PID" "${common[@]}" --user-prefix single \
    --out "$RESULTS_DIR/single.json" | tee "$RESULTS_DIR/single.txt"
stop_all

redis_port=$(free_port $((PORT + 10)))
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
    >"$RESULTS_DIR/redis.log" 2>&1 &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
wait_port "$redis_port"
redis_url=redis://127.0.0.1:$redis_port
port_a=$(free_port $((PORT + 20)))
start_node node-a "$port_a" "$redis_url"
pid_a=$NODE_PID
port_b=$(free_port $((port_a + 1)))
start_node node-b "$port_b" "$redis_url"
pid_b=$NODE_PID

log "2/3 two nodes, members on both"
timeout "$RUN_LIMIT_SECS" "$LOADTEST" fanout --url "ws://127.0.0.1:$port_a/ws" \
    --member-url "ws://127.0.0.1:$port_b/ws" \
    --server-pid "$pid_a" --also-pid "$pid_b,$REDIS_PID" "${common[@]}" --user-prefix both \
    --out "$RESULTS_DIR/cluster-both.json" | tee "$RESULTS_DIR/cluster-both.txt"

log "3/3 two nodes, publisher on A, every member on B"
timeout "$RUN_LIMIT_SECS" "$LOADTEST" fanout --url "ws://127.0.0.1:$port_a/ws" \
    --member-url "ws://127.0.0.1:$port_b/ws" --members-only-on-others \
    --server-pid "$pid_a" --also-pid "$pid_b,$REDIS_PID" "${common[@]}" --user-prefix remote \
    --out "$RESULTS_DIR/cluster-remote.json" | tee "$RESULTS_DIR/cluster-remote.txt"
stop_all

log "results in $RESULTS_DIR"
for run in single cluster-both cluster-remote; do
    python3 - "$RESULTS_DIR/$run.json" "$run" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
res = r["results"]
per_cpu = res.get("deliveries_per_server_cpu_sec") or float("nan")
lat = res.get("latency_ms", {})
print(f'{sys.argv[2]:15} deliveries/s {res["deliveries_per_sec"]:>12,.0f}  '
      f'per server CPU-s {per_cpu:>12,.0f}  ratio {res["delivery_ratio"]:.6f}  '
      f'p99 {lat.get("p99", float("nan")):.1f} ms')
EOF
done
