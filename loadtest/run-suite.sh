#!/usr/bin/env bash
# The standard benchmark suite, sized for a 2-core machine.
#
# Builds the workspace in release mode, runs each scenario of
# shardcast-loadtest against a freshly started local broker (default
# configuration), writes the JSON results to $RESULTS_DIR, and turns them
# into docs/BENCHMARKS.md (+ docs/bench/*.svg) with `shardcast-loadtest
# report`. Every step runs under `timeout`; the whole suite takes a few
# minutes and is stopped at $SUITE_LIMIT_SECS.
#
# Environment:
#   PORT         first port to try for the broker (default 18500; the next
#                free one is used)
#   RESULTS_DIR  where results, logs and the raw report go
#                (default /tmp/shardcast-suite)
#   DOCS_DIR     where BENCHMARKS.md and bench/ go (default docs/)
#   YARDSTICK    the yardstick tool (null broker + wsbench; default
#                ../shared/tools/yardstick beside the repository). When it is
#                there, its scenarios run against the null broker and this
#                broker, and BENCHMARKS.md shows the ratio: how close to this
#                machine's limit shardcast runs. Set YARDSTICK= to skip.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

PORT=${PORT:-18500}
RESULTS_DIR=${RESULTS_DIR:-/tmp/shardcast-suite}
DOCS_DIR=${DOCS_DIR:-$ROOT/docs}
# Longest release build, one scenario run, broker start/stop, report.
BUILD_LIMIT_SECS=360
RUN_LIMIT_SECS=90
BROKER_START_LIMIT_SECS=10
BROKER_STOP_LIMIT_SECS=15
REPORT_LIMIT_SECS=60
# Longest yardstick run (its build and five scenarios on two servers).
YARDSTICK_LIMIT_SECS=900
# Longest whole suite (the builds and the yardstick included).
SUITE_LIMIT_SECS=1500
# Ports tried after $PORT when it is taken.
PORT_ATTEMPTS=50
# Uncommitted paths the report's commit cell names.
CHANGED_PATHS_SHOWN=5
# Client source addresses: spreads sockets over several loopback addresses
# so 10,000-connection runs don't run short of ephemeral ports.
SOURCES=127.0.0.1-127.0.0.8

YARDSTICK=${YARDSTICK-$ROOT/../shared/tools/yardstick}
BROKER=$ROOT/target/release/shardcast
LOADTEST=$ROOT/target/release/shardcast-loadtest
BROKER_PID=""
BROKER_PORT=""
FAILED=()

log() { printf '[suite %3ds] %s\n' "$SECONDS" "$*"; }

# Stop the broker this script started, by its PID.
stop_broker() {
    if [[ -n $BROKER_PID ]]; then
        kill "$BROKER_PID" 2>/dev/null || true
        # The broker drains and exits on SIGTERM; wait for it, bounded.
        local waited=0
        while kill -0 "$BROKER_PID" 2>/dev/null && ((waited < BROKER_STOP_LIMIT_SECS * 10)); do
            sleep 0.1
            waited=$((waited + 1))
        done
        if kill -0 "$BROKER_PID" 2>/dev/null; then
            log "broker $BROKER_PID did not exit in ${BROKER_STOP_LIMIT_SECS}s, sending SIGKILL"
            kill -9 "$BROKER_PID" 2>/dev/null || true
        fi
        wait "$BROKER_PID" 2>/dev/null || true
        BROKER_PID=""
    fi
}
trap stop_broker EXIT

# True when something accepts connections on 127.0.0.1:$1.
port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Start a broker on the first free port from $PORT; sets BROKER_PID and
# BROKER_PORT.
start_broker() {
    local name=$1 port=$PORT attempt=0
    while port_in_use "$port"; do
        attempt=$((attempt + 1))
        if ((attempt >= PORT_ATTEMPTS)); then
            log "no free port in $PORT..$((PORT + PORT_ATTEMPTS - 1))"
            exit 1
        fi
        port=$((port + 1))
    done
    "$BROKER" serve --listen "127.0.0.1:$port" >"$RESULTS_DIR/broker-$name.log" 2>&1 &
    BROKER_PID=$!
    BROKER_PORT=$port
    local waited=0
    until port_in_use "$port"; do
        if ! kill -0 "$BROKER_PID" 2>/dev/null; then
            log "broker exited at start:"
            cat "$RESULTS_DIR/broker-$name.log" >&2
            BROKER_PID=""
            exit 1
        fi
        if ((waited >= BROKER_START_LIMIT_SECS * 10)); then
            log "broker not listening on port $port after ${BROKER_START_LIMIT_SECS}s"
            exit 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    log "broker $BROKER_PID listening on 127.0.0.1:$port"
}

# run NAME SCENARIO [ARGS...]: one scenario on a freshly started broker.
run() {
    local name=$1
    shift
    if ((SECONDS + RUN_LIMIT_SECS > SUITE_LIMIT_SECS)); then
        log "skipping $name: the suite would pass ${SUITE_LIMIT_SECS}s"
        FAILED+=("$name (skipped: time)")
        return
    fi
    start_broker "$name"
    log "== $name: $*"
    local status=0
    timeout --kill-after=10 "$RUN_LIMIT_SECS" "$LOADTEST" "$@" \
        --url "ws://127.0.0.1:$BROKER_PORT/ws" \
        --server-pid "$BROKER_PID" \
        --source-ips "$SOURCES" \
        --user-prefix "$name" \
        --out "$RESULTS_DIR/$name.json" \
        >"$RESULTS_DIR/$name.log" 2>&1 || status=$?
    # The summary (the per-second lines are in the log and the JSON).
    sed -n '/^results/,$p' "$RESULTS_DIR/$name.log"
    if ((status != 0)); then
        log "$name exited with status $status (see $RESULTS_DIR/$name.log)"
        FAILED+=("$name (status $status)")
    fi
    stop_broker
}

mkdir -p "$RESULTS_DIR" "$DOCS_DIR/bench"
rm -f "$RESULTS_DIR"/*.json "$RESULTS_DIR"/*.log

log "building (release)"
timeout "$BUILD_LIMIT_SECS" cargo build --release --workspace

# 10,000 connections need as many descriptors in the broker and here.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

run fanout-1x1000-max fanout --rooms 1 --members 1000 --rate max --duration 10
run fanout-1x1000-rate200 fanout --rooms 1 --members 1000 --rate 200 --duration 10
run fanout-100x100-max fanout --rooms 100 --members 100 --rate max --duration 10
# Many small rooms, every room's 10 publishers at a fixed rate: 0.5/s each
# (25,000 deliveries/s offered) for latency, 2/s (100,000/s) for throughput.
run fanout-500x10-rate0.5 fanout --rooms 500 --members 10 --publishers 10 --rate 0.5 --duration 10
run fanout-500x10-rate2 fanout --rooms 500 --members 10 --publishers 10 --rate 2 --duration 10
run chat-200x10 chat --rooms 200 --room-size 10 --duration 10
# A fresh broker (as for every run), so RSS per connection is clean.
run idle-10000 idle --connections 10000 --duration 10
# Default shape (100 fast, 10 slow, 1000 msg/s, 1 KiB); warm-up + measure
# under the broker's slow_close_grace_ms (5 s) so the 4000 closes are read.
run slow-consumer slow-consumer --warmup 1 --duration 3

# The yardstick: the same shapes against a minimal "null" broker and this
# one, measured back to back by an independent generator.
YARDSTICK_TABLE=""
if [[ -n $YARDSTICK && -f $YARDSTICK/yardstick.sh ]]; then
    log "== yardstick ($YARDSTICK)"
    if timeout --kill-after=10 "$YARDSTICK_LIMIT_SECS" bash "$YARDSTICK/yardstick.sh" "$BROKER" \
        fanout-max,fanout-200,rooms,rooms-light,idle "$RESULTS_DIR/yardstick" \
        >"$RESULTS_DIR/yardstick.log" 2>&1; then
        YARDSTICK_TABLE=$(grep '^|' "$RESULTS_DIR/yardstick.log" || true)
        echo "$YARDSTICK_TABLE"
    else
        log "yardstick failed (see $RESULTS_DIR/yardstick.log)"
        FAILED+=("yardstick")
    fi
else
    log "no yardstick at ${YARDSTICK:-(unset)}: BENCHMARKS.md will have no null-broker ratios"
fi

shopt -s nullglob
results=("$RESULTS_DIR"/*.json)
if ((${#results[@]} == 0)); then
    log "no results"
    exit 1
fi
log "report on ${#results[@]} result(s)"
names=()
for r in fanout-1x1000-max fanout-1x1000-rate200 fanout-100x100-max fanout-500x10-rate0.5 fanout-500x10-rate2 chat-200x10 idle-10000 slow-consumer; do
    [[ -f $RESULTS_DIR/$r.json ]] && names+=("$r.json")
done
(cd "$RESULTS_DIR" && timeout "$REPORT_LIMIT_SECS" "$LOADTEST" report "${names[@]}" --out "$RESULTS_DIR/report")

# docs/BENCHMARKS.md: a header describing the machine, then the report
# (its own title dropped, chart links pointed at bench/).
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
# Uncommitted changes are named, so a reader can tell whether they touch the
# broker or the generator (the first few paths, then how many more).
mapfile -t changed < <(git status --porcelain --untracked-files=no 2>/dev/null | cut -c4-)
if ((${#changed[@]} > 0)); then
    shown=$(printf '%s, ' "${changed[@]:0:$CHANGED_PATHS_SHOWN}")
    shown=${shown%, }
    if ((${#changed[@]} > CHANGED_PATHS_SHOWN)); then
        shown="$shown and $((${#changed[@]} - CHANGED_PATHS_SHOWN)) more"
    fi
    commit="$commit (with uncommitted changes to $shown)"
fi
model=$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1)
{
    echo "# Benchmarks"
    echo
    echo "Generated by \`loadtest/run-suite.sh\`: each scenario of \`shardcast-loadtest\`"
    echo "against a freshly started release broker with the default configuration"
    echo "(one shard per core), generator and broker on the same machine."
    echo
    echo "| | |"
    echo "|---|---|"
    echo "| date | $(date -u '+%Y-%m-%d %H:%M UTC') |"
    echo "| cores (nproc) | $(nproc) |"
    echo "| CPU | ${model:-unknown} |"
    echo "| kernel | $(uname -sr) |"
    echo "| commit | $commit |"
    echo "| suite wall time | ${SECONDS} s (build included) |"
    echo
    echo "The generator shares the cores with the broker: a run that reports the"
    echo "generator near its cores measures the generator as much as the broker."
    echo "Latency is from the publisher's send timestamp (the intended send time"
    echo "with \`--rate N\`) to the member's read, queueing in both included."
    if ((${#FAILED[@]} > 0)); then
        echo
        echo "Runs that failed or were skipped: ${FAILED[*]}."
    fi
    if [[ -n $YARDSTICK_TABLE ]]; then
        echo
        echo "## Distance to the machine's limit (yardstick)"
        echo
        echo "The yardstick (\`$(basename "$(dirname "$YARDSTICK")")/$(basename "$YARDSTICK")\`) runs the same"
        echo "shapes against a minimal single-threaded \"null\" broker, which does only"
        echo "what the wire requires (no auth, history, caps or bounded queues), and"
        echo "against this broker, back to back, with its own generator. The ratio is"
        echo "shardcast's deliveries per server CPU-second over the null broker's: the"
        echo "share of this machine's limit shardcast reaches (1.00 = as cheap as the"
        echo "floor). RSS is the server's growth per idle connection."
        echo
        echo "This is one run of each server. On a shared 2-core machine the null"
        echo "broker's own figure moves by up to a third between runs, so one run's"
        echo "ratio is good to about 20%; \`loadtest/yardstick-pairs.sh OLD NEW\`"
        echo "repeats the runs, alternating, and prints medians and spreads."
        echo
        echo "$YARDSTICK_TABLE"
    fi
    echo
    sed -e '1{/^# /d}' \
        -e 's/](latency\.svg)/](bench\/latency.svg)/' \
        -e 's/](throughput\.svg)/](bench\/throughput.svg)/' \
        "$RESULTS_DIR/report/report.md"
} >"$DOCS_DIR/BENCHMARKS.md"
rm -f "$DOCS_DIR"/bench/*.svg
cp "$RESULTS_DIR"/report/*.svg "$DOCS_DIR/bench/"
log "wrote $DOCS_DIR/BENCHMARKS.md and $DOCS_DIR/bench/ (results in $RESULTS_DIR)"
if ((${#FAILED[@]} > 0)); then
    log "failed or skipped: ${FAILED[*]}"
    exit 1
fi
