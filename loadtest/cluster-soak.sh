#!/usr/bin/env bash
# Two-node cluster soak with Redis restarts (issue 15, item 7).
#
# Usage:
#   loadtest/cluster-soak.sh [--minutes N] [--restart-every MIN]
#                            [--sample-secs S] [--out DIR] [--skip-build]
#
# Builds the workspace (release), starts a redis-server of its own
# (appendonly yes, appendfsync always: what Redis acknowledged survives a
# kill) and two release nodes on it, then runs the `fanout` generator for N
# minutes (default 30): publishers on node A, members on both nodes, open
# loop. Every MIN minutes (default 5) Redis is killed (SIGKILL) and started
# again 1 s later on the same port. The nodes' and Redis' RSS and open fds
# are sampled every S seconds (default 60), with each node's Redis
# reconnect counts. At the end: $OUT/samples.csv, $OUT/summary.md, the
# generator's JSON in $OUT/result.json.
#
# Default load (a small fraction of one core): 10 rooms x 20 members (200
# connections), 10 publishes/s per room (100/s in all), 64-byte payloads.
#
# "Nothing lost" is judged from the generator's member checks: no seq
# missing, none out of order, no `gap`, no connection closed. Publishes
# refused with `unavailable` while Redis is down are the generator's
# "publish errors": they were never acknowledged, so they are not losses
# (and they make the generator's own lossless flag false, so its exit
# status is not used).
#
# Exit status: 0 when nothing was lost and both nodes exit 0 on SIGTERM.
# Every process is started here and stopped by its PID; every step is
# bounded in time.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

MINUTES=30
RESTART_EVERY=5
SAMPLE_SECS=60
OUT=/tmp/shardcast-cluster-soak
SKIP_BUILD=0
PORT=${PORT:-18800}
BUILD_LIMIT_SECS=1800
STOP_LIMIT_SECS=20
RUN_SLACK_SECS=180
REDIS_DOWN_SECS=1
START_LIMIT_SECS=10

usage() {
    sed -n '2,29p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 2
}

while (($# > 0)); do
    case $1 in
    --minutes) MINUTES=$2; shift 2 ;;
    --restart-every) RESTART_EVERY=$2; shift 2 ;;
    --sample-secs) SAMPLE_SECS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --skip-build) SKIP_BUILD=1; shift ;;
    -h | --help) usage ;;
    *) echo "cluster-soak.sh: unknown argument $1" >&2; usage ;;
    esac
done
for n in "$MINUTES" "$RESTART_EVERY" "$SAMPLE_SECS"; do
    if ! [[ $n =~ ^[0-9]+$ ]] || ((n < 1)); then
        echo "cluster-soak.sh: minutes, restart interval and sample interval are positive integers" >&2
        exit 2
    fi
done
if ((MINUTES > 60)); then
    echo "cluster-soak.sh: at most 60 minutes (the generator's bound)" >&2
    exit 2
fi
command -v redis-server >/dev/null || { echo "redis-server is not installed" >&2; exit 1; }
mkdir -p "$OUT"
rm -rf "$OUT"/redis "$OUT"/*.log "$OUT"/samples.csv "$OUT"/summary.md "$OUT"/result.json
mkdir -p "$OUT/redis"

log() { printf '[cluster-soak %5ds] %s\n' "$SECONDS" "$*" | tee -a "$OUT/soak.log"; }

# shellcheck source=loadtest/processes.sh
source "$ROOT/loadtest/processes.sh"
GEN_PID=""
cleanup() {
    if [[ -n $GEN_PID ]] && kill -0 "$GEN_PID" 2>/dev/null; then
        kill "$GEN_PID" 2>/dev/null || true
    fi
    stop_all
}
trap cleanup EXIT

if ((SKIP_BUILD == 0)); then
    log "building (release)"
    timeout "$BUILD_LIMIT_SECS" cargo build --release -q -p shardcast -p shardcast-loadtest
fi
# Private copies: a rebuild during the run must not swap the binaries.
cp "$ROOT/target/release/shardcast" "$ROOT/target/release/shardcast-loadtest" "$OUT/"

redis_port=$(free_port "$PORT")
start_redis() {
    redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$OUT/redis" \
        --save "" --appendonly yes --appendfsync always >>"$OUT/redis.log" 2>&1 &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    wait_port "$redis_port"
}
start_redis

# start_node NAME PORT: sets NODE_PID.
start_node() {
    SHARDCAST_SERVER__NODE_ID=$1 "$OUT/shardcast" serve --listen "127.0.0.1:$2" --shards 2 \
        --redis "redis://127.0.0.1:$redis_port" >"$OUT/$1.log" 2>&1 &
    NODE_PID=$!
    PIDS+=("$NODE_PID")
    wait_port "$2"
}
port_a=$(free_port $((redis_port + 1)))
start_node node-a "$port_a"
pid_a=$NODE_PID
port_b=$(free_port $((port_a + 1)))
start_node node-b "$port_b"
pid_b=$NODE_PID
log "redis $REDIS_PID on $redis_port, node-a $pid_a on $port_a, node-b $pid_b on $port_b"

rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
# reconnects PORT LINK: a node's reconnect count of its commands/subscriber link.
reconnects() {
    curl -s --max-time 5 "http://127.0.0.1:$1/metrics" |
        awk -v l="connection=\"$2\"" '$1 ~ /^shardcast_cluster_reconnects_total/ && index($1, l) {print $2}'
}
echo "label,elapsed_s,a_rss_kib,a_fds,b_rss_kib,b_fds,redis_rss_kib,a_reconnects_sub,b_reconnects_sub" >"$OUT/samples.csv"
sample() {
    local row
    row="$1,$SECONDS,$(rss "$pid_a"),$(fds "$pid_a"),$(rss "$pid_b"),$(fds "$pid_b"),$(rss "$REDIS_PID")"
    row="$row,$(reconnects "$port_a" subscriber),$(reconnects "$port_b" subscriber)"
    echo "$row" >>"$OUT/samples.csv"
    log "sample $row"
}
sample baseline

run_secs=$((MINUTES * 60))
timeout --kill-after=10 $((run_secs + RUN_SLACK_SECS)) "$OUT/shardcast-loadtest" fanout \
    --url "ws://127.0.0.1:$port_a/ws" --member-url "ws://127.0.0.1:$port_b/ws" \
    --rooms 10 --members 20 --rate 10 --payload 64 \
    --warmup 5 --duration "$run_secs" --user-prefix soak \
    --server-pid "$pid_a" --also-pid "$pid_b" \
    --out "$OUT/result.json" >"$OUT/generator.log" 2>&1 &
GEN_PID=$!
started=$SECONDS
next_sample=$((started + 10))
taken=0
restarts=0
next_restart=$((started + RESTART_EVERY * 60))
while kill -0 "$GEN_PID" 2>/dev/null; do
    if ((SECONDS >= next_restart && SECONDS < started + run_secs)); then
        log "killing redis-server $REDIS_PID"
        kill -9 "$REDIS_PID"
        wait "$REDIS_PID" 2>/dev/null || true
        sleep "$REDIS_DOWN_SECS"
        start_redis
        restarts=$((restarts + 1))
        log "redis-server back as $REDIS_PID (restart $restarts)"
        next_restart=$((next_restart + RESTART_EVERY * 60))
    fi
    if ((SECONDS >= next_sample)); then
        sample "t+$((SECONDS - started))s"
        taken=$((taken + 1))
        next_sample=$((started + taken * SAMPLE_SECS))
    fi
    sleep 1
done
gen_status=0
wait "$GEN_PID" || gen_status=$?
GEN_PID=""
log "generator exited with status $gen_status"
sample end

# Each node drains on SIGTERM and must exit 0.
node_status=()
for pid in "$pid_a" "$pid_b"; do
    kill -TERM "$pid"
    status=timeout
    for ((waited = 0; waited < STOP_LIMIT_SECS * 10; waited++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            status=0
            wait "$pid" || status=$?
            break
        fi
        sleep 0.1
    done
    node_status+=("$status")
done
log "nodes exited with status ${node_status[*]}"

# The verdict from the generator's member checks.
field() { grep -o "\"$1\": *[0-9]*" "$OUT/result.json" | head -n 1 | grep -o '[0-9]*$'; }
missing=$(field missing)
out_of_order=$(field out_of_order)
gaps=$(field gaps)
closed=$(field closed_connections)
publish_errors=$(field publish_errors)
lost=1
if [[ $missing == 0 && $out_of_order == 0 && $gaps == 0 && $closed == 0 ]]; then
    lost=0
fi
{
    echo "# shardcast two-node soak with Redis restarts, $MINUTES min"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "- Redis (appendonly yes, appendfsync always) killed and restarted every $RESTART_EVERY min: $restarts restarts"
    echo "- generator: fanout, 10 rooms x 20 members over both nodes, 10 publishes/s per room, status $gen_status"
    echo "- member checks: missing $missing, out of order $out_of_order, gaps $gaps, closed $closed; publishes refused while Redis was down: $publish_errors"
    echo "- nodes' exit status on SIGTERM: ${node_status[*]}"
    echo
    echo "| sample | elapsed s | node A RSS KiB | node A fds | node B RSS KiB | node B fds | Redis RSS KiB | A subscriber reconnects | B subscriber reconnects |"
    echo "|---|---|---|---|---|---|---|---|---|"
    awk -F, 'NR > 1 {printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9}' "$OUT/samples.csv"
    echo
    echo '```'
    sed -n '/^results/,$p' "$OUT/generator.log"
    echo '```'
} >"$OUT/summary.md"
log "wrote $OUT/summary.md"
if ((lost != 0)) || [[ ${node_status[0]} != 0 || ${node_status[1]} != 0 ]]; then
    exit 1
fi
