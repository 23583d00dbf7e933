#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (address and undefined-behaviour
# sanitizers) and runs each for a bounded time, starting from its corpus.
#   scripts/fuzz.sh [seconds per target, default 60]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
seconds=${1:-60}
build=build/fuzz
CC=clang CXX=clang++ cmake -S . -B "$build" -G Ninja -DLEVER_BUILD_FUZZERS=ON \
  -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link,address,undefined" \
  -DLEVER_BUILD_TESTS=OFF -DLEVER_BUILD_BENCHMARKS=OFF -DLEVER_LAYERS=codec >/dev/null
targets=(msgpack_fuzzer json_fuzzer proto_json_fuzzer)
cmake --build "$build" -j"$(nproc)" --target "${targets[@]}"
for t in "${targets[@]}"; do
  corpus=$(mktemp -d)
  cp codec/fuzz/corpus/$t/* "$corpus"/
  echo "== $t for ${seconds}s"
  "$build/codec/$t" -max_total_time="$seconds" -max_len=4096 -timeout=10 "$corpus" 2>&1 | tail -n 3
  rm -rf "$corpus"
done
