#!/usr/bin/env bash
# Builds every layer and runs every test suite: C and C++ through CTest (unit,
# end-to-end, and the fuzz corpora as regression tests), then the Node SDK's
# suite (node --test), the Go SDK's (go test) and the Python SDK's (pytest).
# Safe to run again and again.
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
# The Python SDK, compiled against the fresh liblever into the build dir's
# virtual environment (scripts/setup.sh made it).
py="$abs_build/py-venv/bin/python"
"$py" -m pip install -q --disable-pip-version-check --no-build-isolation --no-deps ./sdk/python

# Each suite's output is kept to add up one summary line at the end.
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
ctest --test-dir "$build" --output-on-failure -j"$jobs" --timeout 300 | tee "$logs/ctest"
(cd sdk/node && npm test) | tee "$logs/node"
LEVER_GO_TEST_FLAGS=-v sdk/go/test.sh "$abs_build" | tee "$logs/go"
(cd sdk/python && "$py" -m pytest -p no:cacheprovider tests) | tee "$logs/py"

cpp=$(sed -n 's/.*tests passed, \([0-9]*\) tests failed out of \([0-9]*\).*/\2 \1/p' "$logs/ctest")
node_pass=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$logs/node")
node_fail=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$logs/node")
go_pass=$(grep -c -- '--- PASS' "$logs/go" || true)
go_fail=$(grep -c -- '--- FAIL' "$logs/go" || true)
py_pass=$(tail -1 "$logs/py" | sed -n 's/.* \([0-9]*\) passed.*/\1/p')
py_fail=$(tail -1 "$logs/py" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
set -- $cpp
passed=$(( ${1:-0} - ${2:-0} + ${node_pass:-0} + go_pass + ${py_pass:-0} ))
failed=$(( ${2:-0} + ${node_fail:-0} + go_fail + ${py_fail:-0} ))
echo "CTest ${1:-0}, node --test ${node_pass:-0}, go test ${go_pass} (subtests included), pytest ${py_pass:-0}"
echo "lever: $passed passed, $failed failed"
