#!/usr/bin/env bash
# Short fuzzing run for CI: build every cargo-fuzz target in fuzz/, then run
# each for FUZZ_SECONDS (default 30), one at a time, starting from the
# checked-in seeds. Fails on any crash (a panic, a failed check, a sanitizer
# report), timeout or out-of-memory; the input is in fuzz/artifacts/<target>/.
#
# Toolchain: nightly if rustup has it (AddressSanitizer); otherwise stable
# with RUSTC_BOOTSTRAP=1 and no sanitizer (libFuzzer still finds panics).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${FUZZ_SECONDS:-30}"
rss_mb="${FUZZ_RSS_MB:-2048}"
target_dir=() # FUZZ_TARGET_DIR: build somewhere other than fuzz/target
if [ -n "${FUZZ_TARGET_DIR:-}" ]; then
  target_dir=(--target-dir "$FUZZ_TARGET_DIR")
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

# FUZZ_STABLE=1 forces the stable fallback (to test it).
if [ -z "${FUZZ_STABLE:-}" ] && rustup run nightly rustc --version >/dev/null 2>&1; then
  toolchain=nightly
  sanitizer=address
else
  toolchain=stable
  sanitizer=none
  export RUSTC_BOOTSTRAP=1
fi
fuzz=(cargo "+$toolchain" fuzz)
echo "fuzz toolchain: $(rustup run "$toolchain" rustc --version), sanitizer: $sanitizer"

targets=$("${fuzz[@]}" list)
"${fuzz[@]}" build --sanitizer "$sanitizer" "${target_dir[@]}"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for target in $targets; do
  echo "== fuzz $target for ${seconds}s"
  mkdir -p "$scratch/$target"
  log="$scratch/$target.log"
  # New inputs go to the scratch corpus; the seeds stay as checked in.
  extra=()
  if [ "$target" = connection ]; then
    # The broker's threads allocate and free across inputs, so libFuzzer's
    # per-input leak check would fire (and rescan memory) on almost every
    # input: a quarter of the speed.
    extra=(-detect_leaks=0)
  fi
  if ! "${fuzz[@]}" run --sanitizer "$sanitizer" "${target_dir[@]}" "$target" \
    "$scratch/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb="$rss_mb" -timeout=30 -print_final_stats=1 \
    "${extra[@]}" >"$log" 2>&1; then
    tail -n 80 "$log"
    echo "fuzz target $target FAILED; the input is in fuzz/artifacts/$target/"
    exit 1
  fi
  grep -E '^#[0-9]+[[:space:]]+DONE|^stat::(number_of_executed_units|average_exec_per_sec)' "$log" || true
done
echo "fuzzing: no crash in $(echo $targets | wc -w) targets"
