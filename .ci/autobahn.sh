#!/usr/bin/env bash
# WebSocket conformance: the Autobahn|Testsuite fuzzing client (cases 1-10)
# against the broker's echo endpoint, which runs through the same connection
# layer as /ws. 0 FAILED is the bar. Uses ../shared/tools/autobahn.
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

PORT="${AUTOBAHN_PORT:-19101}"
cargo build --release -p shardcast
SHARDCAST_SERVER__ECHO_PATH=/echo \
SHARDCAST_LIMITS__MAX_MESSAGE_BYTES=16777216 \
SHARDCAST_LIMITS__OUTBOUND_QUEUE_BYTES=67108864 \
  ./target/release/shardcast serve --listen "127.0.0.1:$PORT" --shards 2 >/tmp/shardcast-autobahn.log 2>&1 &
BROKER=$!
trap 'kill "$BROKER" 2>/dev/null || true; wait "$BROKER" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.1
done
OUT="${AUTOBAHN_OUT:-/tmp/shardcast-autobahn-report}" TIMEOUT=900 \
  bash "$TOOLS/run.sh" "ws://127.0.0.1:$PORT/echo"
