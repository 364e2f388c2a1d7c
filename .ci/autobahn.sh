#!/usr/bin/env bash
# WebSocket conformance: the Autobahn|Testsuite fuzzing client against the
# broker's echo endpoint, which runs through the same connection layer as
# /ws. Cases 1-13 (12 and 13 are permessage-deflate) in one run with
# server.compression on: cases 1-11 do not offer the extension, so they take
# the very path of a broker with compression off (a separate run of 1-10
# with it off took CI minutes and tested nothing more). 0 FAILED is the bar.
# Uses ../shared/tools/autobahn.
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS="$(cd .. && pwd)/shared/tools/autobahn"
if [[ ! -x "$TOOLS/run.sh" && ! -f "$TOOLS/run.sh" ]]; then
  if [[ -n "${CI:-}" ]]; then
    echo "autobahn: $TOOLS/run.sh not found" >&2
    exit 1
  fi
  echo "autobahn: $TOOLS not found here; skipping the conformance run"
  exit 0
fi

cargo build --release -p shardcast

# run PORT COMPRESSION DEFLATE: one broker, one wstest run against it.
run() {
  local port="$1" compression="$2" deflate="$3"
  SHARDCAST_SERVER__ECHO_PATH=/echo \
  SHARDCAST_SERVER__COMPRESSION="$compression" \
  SHARDCAST_LIMITS__MAX_MESSAGE_BYTES=16777216 \
  SHARDCAST_LIMITS__OUTBOUND_QUEUE_BYTES=67108864 \
    ./target/release/shardcast serve --listen "127.0.0.1:$port" --shards 2 \
    >"/tmp/shardcast-autobahn-$port.log" 2>&1 &
  local broker=$!
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
  local status=0
  OUT="${AUTOBAHN_OUT:-/tmp/shardcast-autobahn-report}-$port" TIMEOUT=1800 DEFLATE="$deflate" \
    bash "$TOOLS/run.sh" "ws://127.0.0.1:$port/echo" || status=$?
  kill "$broker" 2>/dev/null || true
  wait "$broker" 2>/dev/null || true
  return "$status"
}

PORT="${AUTOBAHN_PORT:-19101}"
echo "== Autobahn 1-13, server.compression = true (permessage-deflate)"
run "$PORT" true 1
