#!/usr/bin/env bash
# What the edge costs: TLS and permessage-deflate against plain WebSocket,
# same shapes, one session. Writes docs/BENCHMARKS-EDGE.md (and prints its
# table); the JSON results stay in $RESULTS_DIR.
#
# Three brokers in turn (loopback, a free port from $PORT on, $SHARDS
# shards; the generator needs the other core): plain, TLS (a certificate for
# 127.0.0.1 from a throwaway CA made here with openssl), and plain with
# `server.compression = true`. Against them, `shardcast-loadtest`:
#   fanout   1 room x 1000 members, 1 publisher at 100/s, 64 B   (plain, TLS)
#   rooms    500 rooms x 10 members, 1 publisher each at 2/s      (plain, TLS)
#   chat2k   1 room x 1000 members at 100/s, 2 KiB of chat-like words,
#            members without and with permessage-deflate
#   idle     5000 connections in rooms of 10, without and with
#            permessage-deflate: RSS per connection
# Every run is bounded (timeout); the script stops the brokers it started,
# by PID.
#
# Environment: PORT (default 18800), RESULTS_DIR (default
# /tmp/shardcast-edge-bench), DOCS_DIR (default docs/), DURATION (measured
# seconds, default 10), SHARDS (default 1).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
PORT=${PORT:-18800}
RESULTS_DIR=${RESULTS_DIR:-/tmp/shardcast-edge-bench}
DOCS_DIR=${DOCS_DIR:-$ROOT/docs}
DURATION=${DURATION:-10}
SHARDS=${SHARDS:-1}
RUN_LIMIT_SECS=$((DURATION + 90))
BUILD_LIMIT_SECS=900
IDLE_CONNECTIONS=5000
BROKER=$ROOT/target/release/shardcast
LOADTEST=$ROOT/target/release/shardcast-loadtest
START_LIMIT_SECS=10
STOP_LIMIT_SECS=15
log() { echo "$*" >&2; }
# shellcheck source=loadtest/processes.sh
source "$ROOT/loadtest/processes.sh"
trap stop_all EXIT

command -v openssl >/dev/null || { echo "openssl not found (it makes the test certificate)" >&2; exit 2; }
timeout "$BUILD_LIMIT_SECS" cargo build --release -p shardcast -p shardcast-loadtest >/dev/null
mkdir -p "$RESULTS_DIR"
rm -f "$RESULTS_DIR"/*.json

# A throwaway CA, and a certificate for 127.0.0.1 it signs (webpki refuses
# a CA certificate as a server's own).
EC=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${EC[@]}" -days 30 -subj "/CN=shardcast edge-bench CA" \
    -keyout "$RESULTS_DIR/ca-key.pem" -out "$RESULTS_DIR/ca.pem" 2>/dev/null
openssl req "${EC[@]}" -subj "/CN=127.0.0.1" \
    -keyout "$RESULTS_DIR/key.pem" -out "$RESULTS_DIR/leaf.csr" 2>/dev/null
printf '%s\n' "subjectAltName=IP:127.0.0.1" "basicConstraints=CA:FALSE" \
    "keyUsage=digitalSignature" "extendedKeyUsage=serverAuth" >"$RESULTS_DIR/leaf.ext"
openssl x509 -req -in "$RESULTS_DIR/leaf.csr" -CA "$RESULTS_DIR/ca.pem" \
    -CAkey "$RESULTS_DIR/ca-key.pem" -CAcreateserial -days 30 \
    -extfile "$RESULTS_DIR/leaf.ext" -out "$RESULTS_DIR/cert.pem" 2>/dev/null

start_broker() { # mode: plain | tls | deflate
    local mode=$1
    PORT=$(free_port "$PORT")
    {
        echo "[server]"
        echo "listen = \"127.0.0.1:$PORT\""
        echo "shards = $SHARDS"
        if [[ $mode == tls ]]; then
            echo "tls_cert_file = \"$RESULTS_DIR/cert.pem\""
            echo "tls_key_file = \"$RESULTS_DIR/key.pem\""
        fi
        if [[ $mode == deflate ]]; then
            echo "compression = true"
        fi
        echo "[limits]"
        echo "max_connections_per_ip = 100000"
        echo "publish_rate_per_sec = 0"
        echo "[room]"
        echo "default_max_members = 100000"
    } >"$RESULTS_DIR/$mode.toml"
    "$BROKER" serve --config "$RESULTS_DIR/$mode.toml" >"$RESULTS_DIR/broker-$mode.log" 2>&1 &
    BROKER_PID=$!
    PIDS+=("$BROKER_PID")
    wait_port "$PORT"
}

run() { # name scenario url args...
    local name=$1 scenario=$2 url=$3
    shift 3
    timeout "$RUN_LIMIT_SECS" "$LOADTEST" "$scenario" --url "$url" \
        --server-pid "$BROKER_PID" --duration "$DURATION" \
        --user-prefix "$name" --out "$RESULTS_DIR/$name.json" "$@" \
        >"$RESULTS_DIR/$name.log" 2>&1 || echo "run $name failed: see $RESULTS_DIR/$name.log"
}

FANOUT=(--rooms 1 --members 1000 --publishers 1 --rate 100 --warmup 2)
ROOMS=(--rooms 500 --members 10 --publishers 1 --rate 2 --warmup 2)
CHAT2K=(--rooms 1 --members 1000 --publishers 1 --rate 100 --warmup 2 --payload 2048 --payload-text words)

start_broker plain
run fanout-plain fanout "ws://127.0.0.1:$PORT/ws" "${FANOUT[@]}"
run rooms-plain fanout "ws://127.0.0.1:$PORT/ws" "${ROOMS[@]}"
stop_all

start_broker tls
run fanout-tls fanout "wss://127.0.0.1:$PORT/ws" --ca-file "$RESULTS_DIR/ca.pem" "${FANOUT[@]}"
run rooms-tls fanout "wss://127.0.0.1:$PORT/ws" --ca-file "$RESULTS_DIR/ca.pem" "${ROOMS[@]}"
stop_all

start_broker deflate
run chat2k-plain fanout "ws://127.0.0.1:$PORT/ws" "${CHAT2K[@]}"
run chat2k-deflate fanout "ws://127.0.0.1:$PORT/ws" --compression "${CHAT2K[@]}"
stop_all
start_broker deflate
run idle-plain idle "ws://127.0.0.1:$PORT/ws" --connections "$IDLE_CONNECTIONS" --room-size 10
stop_all
start_broker deflate
run idle-deflate idle "ws://127.0.0.1:$PORT/ws" --compression --connections "$IDLE_CONNECTIONS" --room-size 10
stop_all

LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
COMMIT=$(git rev-parse --short HEAD)
python3 - "$RESULTS_DIR" "$DOCS_DIR/BENCHMARKS-EDGE.md" "$COMMIT" "$LOAD" "$DURATION" "$SHARDS" "$IDLE_CONNECTIONS" <<'PY'
import datetime, json, os, sys
d, out, commit, load, duration, shards, idle_n = sys.argv[1:8]

def results(name):
    path = os.path.join(d, f"{name}.json")
    return json.load(open(path))["results"] if os.path.exists(path) else None

def traffic_row(shape, mode, base):
    r = results(f"{shape}-{mode}")
    if r is None:
        return f"| {shape} | {mode} | failed | | | | | |", None
    per_cpu = r.get("deliveries_per_server_cpu_sec") or 0
    ratio = f"{per_cpu / base:.2f}" if base else "1.00"
    return (f"| {shape} | {mode} | {r['deliveries_per_sec']:.0f} | {per_cpu:.0f} | {ratio} "
            f"| {r.get('bytes_read_per_delivery', 0):.0f} | {str(r['checks']['lossless']).lower()} "
            f"| {r['latency_ms']['p99']:.2f} |"), per_cpu

rows = []
for shape, modes in (("fanout", ("plain", "tls")), ("rooms", ("plain", "tls")), ("chat2k", ("plain", "deflate"))):
    base = None
    for mode in modes:
        row, per_cpu = traffic_row(shape, mode, base)
        rows.append(row)
        if base is None:
            base = per_cpu
table = "\n".join(["| shape | members | deliveries/s | deliveries per server CPU-second | vs plain | bytes read per delivery | lossless | p99 ms |",
                   "|---|---|---:|---:|---:|---:|---|---:|"] + rows)
idle_rows = []
for mode in ("plain", "deflate"):
    r = results(f"idle-{mode}")
    if r is None:
        idle_rows.append(f"| {mode} | failed | |")
        continue
    per = r.get("server_rss_kib_per_connection")
    idle_rows.append(f"| {mode} | {r['open']} | {per:.2f} |" if per is not None else f"| {mode} | {r['open']} | n/a |")
idle_table = "\n".join(["| members | connections | server RSS KiB per connection |", "|---|---:|---:|"] + idle_rows)
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
doc = f"""# Benchmarks: what TLS and permessage-deflate cost

Generated by `loadtest/edge-bench.sh`: a release broker ({shards} shard) on
loopback, plain, with TLS (a P-256 certificate from a throwaway CA), and with
`server.compression = true`, one after the other; `shardcast-loadtest`
against each, {duration} s measured after 2 s of warm-up, generator and
broker on the same machine.

| | |
|---|---|
| date | {now} |
| commit | {commit} |
| load average at the end (1, 5, 15 min) | {load} |

Shapes: **fanout** 1 room of 1000 members, 1 publisher at 100 publishes/s,
64 B payload; **rooms** 500 rooms of 10 members, 1 publisher each at 2
publishes/s; **chat2k** 1 room of 1000 members at 100/s with 2 KiB of
chat-like text (`--payload-text words`), members without and then with
permessage-deflate, on the broker with compression on. "vs plain" is the
ratio of deliveries per server CPU-second to the first row of its shape.

{table}

Idle connections ({idle_n} in rooms of 10) on the broker with compression
on, without and with permessage-deflate negotiated (server RSS growth per
connection):

{idle_table}

"Deliveries per server CPU-second" divides the messages members received in
the window by the broker's CPU time in it (user + system, from /proc), so
it does not depend on how busy the rest of the machine was; deliveries/s
and latency do. A compressed room message is compressed once and shared by
every compressed member; an idle compressed connection holds no zlib state
(no context takeover both ways, one inflater per shard).
"""
with open(out, "w") as f:
    f.write(doc)
print(table)
print()
print(idle_table)
PY
