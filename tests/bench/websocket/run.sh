#!/usr/bin/env bash
# Streaming message round trips through one leverd, in one run: a WebSocket
# from Boost.Beast's client and from a Chromium page, and a gRPC stream from
# lever::Client, each on one call of the test service's EchoChan (JSON
# messages of ~64 bytes): sequential p50/p99, then 64 in flight. Needs a build
# (scripts/test.sh or cmake --build build/main) and tests/browser's
# node_modules (scripts/setup.sh).
#   tests/bench/websocket/run.sh [messages, default 5000]
set -euo pipefail
repo=$(cd "$(dirname "$0")/../../.." && pwd)
build=${LEVER_BUILD_DIR:-$repo/build/main}
n=${1:-5000}
cmake --build "$build" --target leverd lever_cli lever_testservice ws_bench >/dev/null
data=$(mktemp -d)
chmod 755 "$data"  # a root leverd's instances run as another user (docs/security.md)
trap 'kill $leverd 2>/dev/null; wait 2>/dev/null; rm -rf "$data"' EXIT
"$build/cli/leverd" --listen 127.0.0.1:0 --data-dir "$data/d" 2>"$data/log" &
leverd=$!
for _ in $(seq 1 200); do grep -q "listening on" "$data/log" && break; sleep 0.05; done
addr=$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$data/log" | head -1)
mkdir "$data/svc"
cp "$build/tests/e2e/lever_testservice" "$data/svc/serve"
echo '{"name": "wsbench", "entry": ["./serve"]}' > "$data/svc/lever.json"
"$build/cli/lever" -H "$addr" deploy "$data/svc" >/dev/null
echo "leverd at $addr, $n messages per client, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
"$build/tests/bench/ws_bench" "$addr" wsbench "$n"
node "$repo/tests/browser/ws_bench.js" "$addr" wsbench "$n"
