#!/usr/bin/env bash
# Cold start of the process runtime: the first call to a scaled-to-zero C++
# service until its reply (curl over the HTTP API), beside a warm call right
# after it, with leverd's --prestart 0 and 1 interleaved in one run.
#   tests/bench/coldstart/coldstart.sh [build dir] [runs per round] [rounds]
# Not a test: it prints figures for docs/BENCHMARKS.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
build=$(cd "${1:-$root/build/main}" && pwd)
runs=${2:-12}
rounds=${3:-2}
tmp=$(mktemp -d /tmp/lever-coldstart-XXXXXX)
chmod 755 "$tmp"  # process instances run as another user under a root leverd
leverd_pid=
trap '[ -n "$leverd_pid" ] && kill "$leverd_pid" 2>/dev/null; rm -rf "$tmp"' EXIT
mkdir "$tmp/svc"
cp "$root/examples/hello-cpp/lever.json" "$build/examples/hello-cpp/serve" "$tmp/svc/"

source "$root/tests/bench/coldstart/lib.sh"

one_round() {  # prestart
  local log=$tmp/leverd-$1.log port
  "$build/cli/leverd" --listen 127.0.0.1:0 --data-dir "$tmp/data-$1" --idle-timeout 300ms --prestart "$1" 2> "$log" &
  leverd_pid=$!
  port=$(leverd_port "$log")
  "$build/cli/lever" -H "127.0.0.1:$port" deploy "$tmp/svc" > /dev/null 2>&1
  measure "prestart=$1" "$port" "$runs" 0.2  # the pool refills after the instance stopped
  kill "$leverd_pid"; wait "$leverd_pid" || true; leverd_pid=
  rm -rf "$tmp/data-$1"
}

for r in $(seq 1 "$rounds"); do one_round 0; one_round 1; done
summarize
