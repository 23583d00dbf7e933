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
# The Node SDK's addon links the fresh liblever; build it before CTest, whose
# end-to-end tests run JavaScript services (lever-serve) and the README's
# Node snippet.
abs_build=$(cd "$build" && pwd)
export LEVER_BUILD_DIR="$abs_build"
(cd sdk/node && npm install --no-audit --no-fund --loglevel=error)

ctest --test-dir "$build" --output-on-failure -j"$jobs" --timeout 300
(cd sdk/node && npm test)
sdk/go/test.sh "$abs_build"
