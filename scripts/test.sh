#!/usr/bin/env bash
# Builds every layer and runs every test suite: C and C++ through CTest (unit,
# end-to-end, and the fuzz corpora as regression tests), then the Node SDK's
# suite (node --test) and the Go SDK's (go test). Safe to run again and again.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

build=${LEVER_BUILD_DIR:-build/main}
jobs=$(nproc)
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLEVER_WERROR=ON >/dev/null
cmake --build "$build" -j"$jobs"
ctest --test-dir "$build" --output-on-failure -j"$jobs" --timeout 300

abs_build=$(cd "$build" && pwd)
export LEVER_BUILD_DIR="$abs_build"
(cd sdk/node && npm install --no-audit --no-fund --loglevel=error && npm test)
sdk/go/test.sh "$abs_build"
