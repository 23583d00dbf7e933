#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (address and undefined-behaviour
# sanitizers) and runs each for a bounded time, starting from its corpus;
# prints each run's executions (stat::number_of_executed_units) and stops at
# the first crash (its input is written to build/fuzz/artifacts/). The working
# corpus stays in build/fuzz/corpus/<target> (seeded from the committed one),
# so a campaign run in chunks goes on from where the last chunk stopped; each
# run's whole output is in build/fuzz/logs/.
#   scripts/fuzz.sh [seconds per target, default 60] [target...]
# Targets default to all of codec/ and gateway/. h2c_relay_fuzzer drives an
# in-process gateway and echo instance: on this 2-core machine beside other
# work, about 100 executions/s for the first ~10,000 inputs of a run (libFuzzer
# re-runs and leak-checks up to 1,000 inputs, ~55 ms each, then stops: "disabled
# leak detection after every mutation"), then 700-1,100/s by the load; so run
# it in long chunks (docs/BENCHMARKS.md, "Fuzzing"). Beside other work:
# nice -n 19 scripts/fuzz.sh 1800 h2c_relay_fuzzer (its threads take about one
# core; pinning them to one with taskset starves its gateway worker).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
seconds=${1:-60}
shift $(( $# > 0 ? 1 : 0 ))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(msgpack_fuzzer json_fuzzer proto_json_fuzzer http_request_fuzzer
                                     websocket_upgrade_fuzzer h2c_relay_fuzzer)
build=build/fuzz
CC=clang CXX=clang++ cmake -S . -B "$build" -G Ninja -DLEVER_BUILD_FUZZERS=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link,address,undefined" \
  -DLEVER_BUILD_TESTS=OFF -DLEVER_BUILD_BENCHMARKS=OFF -DLEVER_LAYERS="codec;sdk/cpp;gateway" >/dev/null
cmake --build "$build" -j"${FUZZ_JOBS:-$(nproc)}" --target "${targets[@]}"
mkdir -p "$build/artifacts" "$build/logs"
for t in "${targets[@]}"; do
  dir=codec
  [ -d "gateway/fuzz/corpus/$t" ] && dir=gateway
  corpus=$build/corpus/$t
  mkdir -p "$corpus"
  cp -n "$dir/fuzz/corpus/$t"/* "$corpus"/
  log=$build/logs/$t-$(date -u +%Y%m%dT%H%M%SZ).log
  echo "== $t for ${seconds}s (log $log)"
  "$build/$dir/$t" -max_total_time="$seconds" -max_len=4096 -timeout=60 -print_final_stats=1 \
    -artifact_prefix="$build/artifacts/$t-" "$corpus" > "$log" 2>&1 || true
  grep -E '^stat::number_of_executed_units|^stat::average_exec|ERROR|SUMMARY|Done|INFO: libFuzzer disabled' "$log"
  grep -q '^Done ' "$log" || { echo "== $t stopped early: $log" >&2; exit 1; }
done
