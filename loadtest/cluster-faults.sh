#!/usr/bin/env bash
# Cluster faults under load, on one machine, bounded in time.
#
# Two release nodes on a redis-server of this script's own (no persistence),
# and a fan-out with the publisher on node A and members on A and B:
#  1. redis-restart: at t = 8 s Redis is killed and started again 2 s later
#     on the same port (all its data lost);
#  2. node-kill: at t = 8 s node B is killed with SIGKILL.
# The generator's summary and per-second lines go to $RESULTS_DIR; every
# process is started here and stopped by its PID.
#
# Environment: PORT (first port to try, default 18750), MEMBERS (default
# 200), RATE (publishes/s, default 100), DURATION (default 20),
# RESULTS_DIR (default /tmp/shardcast-cluster-faults).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
PORT=${PORT:-18750}
MEMBERS=${MEMBERS:-200}
RATE=${RATE:-100}
DURATION=${DURATION:-20}
RESULTS_DIR=${RESULTS_DIR:-/tmp/shardcast-cluster-faults}
FAULT_AT_SECS=8
REDIS_DOWN_SECS=2
START_LIMIT_SECS=10
STOP_LIMIT_SECS=15
BROKER=$ROOT/target/release/shardcast
LOADTEST=$ROOT/target/release/shardcast-loadtest

log() { printf '[cluster-faults %3ds] %s\n' "$SECONDS" "$*"; }

# shellcheck source=loadtest/processes.sh
source "$ROOT/loadtest/processes.sh"
trap stop_all EXIT

start_redis() {
    redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
        >>"$RESULTS_DIR/redis.log" 2>&1 &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    wait_port "$redis_port"
}

# start_node NAME PORT: sets NODE_PID.
start_node() {
    SHARDCAST_SERVER__NODE_ID=$1 SHARDCAST_CLUSTER__NODE_TTL_MS=3000 \
        "$BROKER" serve --listen "127.0.0.1:$2" --redis "redis://127.0.0.1:$redis_port" \
        >"$RESULTS_DIR/$1.log" 2>&1 &
    NODE_PID=$!
    PIDS+=("$NODE_PID")
    wait_port "$2"
}

# run NAME FAULT: one fan-out with FAULT injected at FAULT_AT_SECS.
run() {
    local name=$1 fault=$2
    redis_port=$(free_port "$PORT")
    start_redis
    port_a=$(free_port $((redis_port + 1)))
    start_node node-a "$port_a"
    pid_a=$NODE_PID
    port_b=$(free_port $((port_a + 1)))
    start_node node-b "$port_b"
    pid_b=$NODE_PID
    log "== $name"
    timeout $((DURATION + 60)) "$LOADTEST" fanout --url "ws://127.0.0.1:$port_a/ws" \
        --member-url "ws://127.0.0.1:$port_b/ws" --members "$MEMBERS" --rate "$RATE" \
        --duration "$DURATION" --warmup 0 --user-prefix "$name" \
        --out "$RESULTS_DIR/$name.json" >"$RESULTS_DIR/$name.txt" 2>&1 &
    local gen=$!
    sleep "$FAULT_AT_SECS"
    case $fault in
        redis)
            log "killing redis-server $REDIS_PID"
            kill -9 "$REDIS_PID"
            wait "$REDIS_PID" 2>/dev/null || true
            sleep "$REDIS_DOWN_SECS"
            start_redis
            log "redis-server back as $REDIS_PID"
            ;;
        node)
            log "killing node B ($pid_b) with SIGKILL"
            kill -9 "$pid_b"
            ;;
    esac
    wait "$gen" || log "$name: the generator reported a run that was not lossless (expected with a fault)"
    cat "$RESULTS_DIR/$name.txt"
    stop_all
}

mkdir -p "$RESULTS_DIR"
: >"$RESULTS_DIR/redis.log"
command -v redis-server >/dev/null || { log "redis-server is not installed"; exit 1; }
cargo build --release -q -p shardcast -p shardcast-loadtest
run redis-restart redis
run node-kill node
log "results in $RESULTS_DIR"
