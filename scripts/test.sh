#!/usr/bin/env bash
# Builds every layer and runs every test suite: C and C++ through CTest (unit,
# end-to-end, and the fuzz corpora as regression tests); the Node and Go
# suites join here as their packages land. Safe to run again and again.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

build=${LEVER_BUILD_DIR:-build/main}
jobs=$(nproc)
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLEVER_WERROR=ON >/dev/null
cmake --build "$build" -j"$jobs"
ctest --test-dir "$build" --output-on-failure -j"$jobs" --timeout 300
