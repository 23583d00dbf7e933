#!/usr/bin/env bash
# SDK round trips on one leverd: the C++, Node, Go and Python clients each call the C++
# hello service (examples/hello-cpp) sequentially (p50/p99) and with 64 calls
# in flight. Needs a build (scripts/test.sh or cmake --build build/main) and
# the Node addon (sdk/node npm install) and the Python SDK in the build dir's
# virtual environment (both as scripts/test.sh makes them).
#   tests/bench/sdk/run.sh [calls, default 5000]
set -euo pipefail
repo=$(cd "$(dirname "$0")/../../.." && pwd)
build=${LEVER_BUILD_DIR:-$repo/build/main}
calls=${1:-5000}
cmake --build "$build" --target leverd lever_cli hello_cpp_serve sdk_invoke_bench >/dev/null
data=$(mktemp -d)
chmod 755 "$data"  # a root leverd's instances run as another user (docs/security.md)
trap 'kill $leverd 2>/dev/null; wait 2>/dev/null; rm -rf "$data"' EXIT
"$build/cli/leverd" --listen 127.0.0.1:0 --data-dir "$data/d" 2>"$data/log" &
leverd=$!
for _ in $(seq 1 200); do grep -q "listening on" "$data/log" && break; sleep 0.05; done
addr=$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$data/log" | head -1)
"$build/cli/lever" -H "$addr" deploy "$build/examples/hello-cpp" >/dev/null
echo "leverd at $addr, $calls calls per client, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
"$build/tests/bench/sdk_invoke_bench" "$addr" "$calls"
node "$repo/tests/bench/sdk/invoke_bench.js" "$addr" "$calls"
prefix=$build/go-prefix
cmake --install "$build" --prefix "$prefix" >/dev/null
export PKG_CONFIG_PATH=$(dirname "$(find "$prefix" -name lever.pc -print -quit)")
export CGO_LDFLAGS="-Wl,-rpath,$(pkg-config --variable=libdir lever)"
(cd "$repo/tests/bench/sdk/go" && go run . "$addr" "$calls")
"$build/py-venv/bin/python" "$repo/tests/bench/sdk/invoke_bench.py" "$addr" "$calls"
