#!/usr/bin/env bash
# Soak and churn runs: a release broker under moderate load for N minutes,
# its memory and descriptors sampled from /proc while it runs.
#
# Usage:
#   loadtest/soak.sh --minutes N [--scenario chat|churn] [--sample-secs S]
#                    [--out DIR] [--skip-build] [-- SCENARIO ARGS...]
#
# Builds the workspace (release), starts `shardcast serve` on 127.0.0.1 (the
# first free port from $PORT, default 18600), samples the broker's RSS, open
# fds and connection count once before the generator starts (baseline),
# every S seconds (default 60) while it runs, and after it stops and the
# broker's empty rooms have expired (after). Then it stops the broker by its
# PID and writes $OUT/samples.csv and $OUT/summary.md (the table and the
# generator's summary).
#
# Default load (a small fraction of one core):
#   chat:  100 rooms x 5 members, 200 actions/s (publish, send, members,
#          leave+rejoin), 32-byte payloads
#   churn: 1000 rooms, 100 clients hopping join/publish/leave over them,
#          200 hops/s, a reconnect every 50 hops
# Arguments after `--` replace these scenario arguments.
#
# Exit status: 0 when the generator reports a lossless run and the broker
# exits 0 on SIGTERM; 1 when the generator reports loss (or any failure).
# Every step is bounded: the build by BUILD_LIMIT_SECS, the generator by the
# run length plus RUN_SLACK_SECS, the broker's stop by STOP_LIMIT_SECS.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

MINUTES=""
SCENARIO=chat
SAMPLE_SECS=60
OUT=""
SKIP_BUILD=0
EXTRA=()
PORT=${PORT:-18600}
BUILD_LIMIT_SECS=900
BROKER_START_LIMIT_SECS=10
STOP_LIMIT_SECS=20
# Setup, warm-up and drain of the generator beyond its measured window.
RUN_SLACK_SECS=180
# Longest soak this script runs: the generator's own bound on --duration
# (MAX_DURATION_SECS, one hour).
MAX_MINUTES=60
PORT_ATTEMPTS=50
# How long auto-created rooms outlive their last member in this broker, so
# the `after` sample sees the room table empty again.
EMPTY_TTL_MS=2000

usage() {
    sed -n '2,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 2
}

while (($# > 0)); do
    case $1 in
    --minutes) MINUTES=$2; shift 2 ;;
    --scenario) SCENARIO=$2; shift 2 ;;
    --sample-secs) SAMPLE_SECS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --skip-build) SKIP_BUILD=1; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    -h | --help) usage ;;
    *) echo "soak.sh: unknown argument $1" >&2; usage ;;
    esac
done
if ! [[ $MINUTES =~ ^[0-9]+$ ]] || ((MINUTES < 1 || MINUTES > MAX_MINUTES)); then
    echo "soak.sh: --minutes must be 1..$MAX_MINUTES" >&2
    exit 2
fi
if ! [[ $SAMPLE_SECS =~ ^[0-9]+$ ]] || ((SAMPLE_SECS < 1)); then
    echo "soak.sh: --sample-secs must be a positive number of seconds" >&2
    exit 2
fi
case $SCENARIO in
chat) LOAD=(chat --rooms 100 --room-size 5 --rate 200) ;;
churn) LOAD=(churn --rooms 1000 --clients 100 --rate 200 --reconnect-every 50) ;;
*) echo "soak.sh: --scenario must be chat or churn" >&2; exit 2 ;;
esac
if ((${#EXTRA[@]} > 0)); then
    LOAD=("$SCENARIO" "${EXTRA[@]}")
fi
OUT=${OUT:-/tmp/shardcast-soak-$SCENARIO}
mkdir -p "$OUT"
rm -f "$OUT"/samples.csv "$OUT"/summary.md "$OUT"/*.log "$OUT"/result.json

BROKER_PID=""
GEN_PID=""
log() { printf '[soak %5ds] %s\n' "$SECONDS" "$*" | tee -a "$OUT/soak.log"; }

# Stop what this script started, by PID.
cleanup() {
    if [[ -n $GEN_PID ]] && kill -0 "$GEN_PID" 2>/dev/null; then
        kill "$GEN_PID" 2>/dev/null || true
    fi
    if [[ -n $BROKER_PID ]] && kill -0 "$BROKER_PID" 2>/dev/null; then
        kill -9 "$BROKER_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

if ((SKIP_BUILD == 0)); then
    log "building (release)"
    timeout "$BUILD_LIMIT_SECS" cargo build --release --workspace --bins
fi
# Private copies: a rebuild during a long run must not swap the binaries.
cp "$ROOT/target/release/shardcast" "$ROOT/target/release/shardcast-loadtest" "$OUT/"
BROKER=$OUT/shardcast
LOADTEST=$OUT/shardcast-loadtest

port=$PORT
for ((attempt = 0; ; attempt++)); do
    port_in_use "$port" || break
    if ((attempt >= PORT_ATTEMPTS)); then
        log "no free port in $PORT..$((PORT + PORT_ATTEMPTS))"
        exit 1
    fi
    port=$((port + 1))
done
SHARDCAST_ROOM__EMPTY_TTL_MS=$EMPTY_TTL_MS \
    "$BROKER" serve --listen "127.0.0.1:$port" >"$OUT/broker.log" 2>&1 &
BROKER_PID=$!
for ((waited = 0; ; waited++)); do
    port_in_use "$port" && break
    if ! kill -0 "$BROKER_PID" 2>/dev/null || ((waited >= BROKER_START_LIMIT_SECS * 10)); then
        log "broker did not start:"
        cat "$OUT/broker.log" >&2
        exit 1
    fi
    sleep 0.1
done
log "broker $BROKER_PID on 127.0.0.1:$port; $SCENARIO for $MINUTES min"

# A top-level figure of /api/stats (loopback needs no key when none is
# configured; top-level keys come before the per-shard array).
stat_top() {
    curl -s --max-time 5 "http://127.0.0.1:$port/api/stats" |
        grep -o "\"$1\":[0-9]*" | head -n 1 | cut -d: -f2
}

# sample LABEL: one row of samples.csv.
sample() {
    local rss fds threads conns rooms
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$BROKER_PID/status")
    fds=$(find "/proc/$BROKER_PID/fd" -mindepth 1 -maxdepth 1 | wc -l)
    threads=$(awk '/^Threads:/ {print $2}' "/proc/$BROKER_PID/status")
    conns=$(stat_top connections)
    rooms=$(stat_top rooms)
    echo "$1,$SECONDS,$rss,$fds,$threads,$conns,$rooms" >>"$OUT/samples.csv"
    log "sample $1: rss ${rss} KiB, fds $fds, threads $threads, connections $conns, rooms $rooms"
}

echo "label,elapsed_s,rss_kib,open_fds,threads,connections,rooms" >"$OUT/samples.csv"
sample baseline

run_secs=$((MINUTES * 60))
timeout --kill-after=10 $((run_secs + RUN_SLACK_SECS)) "$LOADTEST" "${LOAD[@]}" \
    --url "ws://127.0.0.1:$port/ws" --server-pid "$BROKER_PID" \
    --warmup 5 --duration "$run_secs" \
    --out "$OUT/result.json" >"$OUT/generator.log" 2>&1 &
GEN_PID=$!
# The first sample once the clients are set up, then every SAMPLE_SECS.
started=$SECONDS
next=$((started + 10))
taken=0
while kill -0 "$GEN_PID" 2>/dev/null; do
    if ((SECONDS >= next)); then
        sample "t+$((SECONDS - started))s"
        taken=$((taken + 1))
        next=$((started + taken * SAMPLE_SECS))
    fi
    sleep 1
done
gen_status=0
wait "$GEN_PID" || gen_status=$?
GEN_PID=""
log "generator exited with status $gen_status"
sample "end"
# Let empty auto-created rooms expire, then the last sample.
sleep $((EMPTY_TTL_MS / 1000 + 3))
sample after

kill -TERM "$BROKER_PID"
broker_status=""
for ((waited = 0; waited < STOP_LIMIT_SECS * 10; waited++)); do
    if ! kill -0 "$BROKER_PID" 2>/dev/null; then
        broker_status=0
        wait "$BROKER_PID" || broker_status=$?
        break
    fi
    sleep 0.1
done
if [[ -z $broker_status ]]; then
    log "broker did not exit in ${STOP_LIMIT_SECS}s after SIGTERM"
    broker_status=timeout
fi
BROKER_PID=""
log "broker exited with status $broker_status"

{
    echo "# shardcast $SCENARIO soak, $MINUTES min"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "- load: \`shardcast-loadtest ${LOAD[*]} --warmup 5 --duration $run_secs\`"
    echo "- broker: 127.0.0.1:$port, default config, room.empty_ttl_ms = $EMPTY_TTL_MS"
    echo "- generator exit status $gen_status; broker exit status on SIGTERM $broker_status"
    echo
    echo "| sample | elapsed s | RSS KiB | open fds | threads | connections | rooms |"
    echo "|---|---|---|---|---|---|---|"
    awk -F, 'NR > 1 {printf "| %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7}' "$OUT/samples.csv"
    echo
    echo "Generator summary:"
    echo
    echo '```'
    sed -n '/^results/,$p' "$OUT/generator.log"
    echo '```'
} >"$OUT/summary.md"
log "wrote $OUT/summary.md"
if ((gen_status != 0)) || [[ $broker_status != 0 ]]; then
    exit 1
fi
