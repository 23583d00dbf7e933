#!/usr/bin/env bash
# Cold start of Node and Python services (process runtime): the first call to
# the scaled-to-zero examples/hello-js and examples/hello-py until its reply
# (curl over the HTTP API), beside a warm call right after it, with leverd's
# --prestart 1 (a lever-serve / lever-serve-py started ahead is handed the
# service: docs/operations.md, "Pre-started runtimes") and --prestart 0 (the
# runtime started at the call), interleaved in one run.
#   tests/bench/coldstart/languages.sh [build dir] [runs per round] [rounds]
# Needs the Node addon (npm install in sdk/node) and the build dir's py-venv
# with leveros installed (scripts/test.sh does both). Not a test: it prints
# figures for docs/BENCHMARKS.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
build=$(cd "${1:-$root/build/main}" && pwd)
runs=${2:-10}
rounds=${3:-2}
tmp=$(mktemp -d /tmp/lever-lcold-XXXXXX)
chmod 755 "$tmp"  # process instances run as another user under a root leverd
leverd_pid=
trap '[ -n "$leverd_pid" ] && kill "$leverd_pid" 2>/dev/null; rm -rf "$tmp"' EXIT
for lang in js py; do
  mkdir "$tmp/svc-$lang"
  cp -r "$root/examples/hello-$lang/." "$tmp/svc-$lang/"
done

source "$root/tests/bench/coldstart/lib.sh"

one_round() {  # language prestart
  local log=$tmp/leverd-$1-$2.log port
  "$build/cli/leverd" --listen 127.0.0.1:0 --data-dir "$tmp/data-$1-$2" --idle-timeout 300ms --prestart "$2" \
    --js-runner "$root/sdk/node/bin/lever-serve" --py-runner "$build/py-venv/bin/lever-serve-py" 2> "$log" &
  leverd_pid=$!
  port=$(leverd_port "$log")
  "$build/cli/lever" -H "127.0.0.1:$port" deploy "$tmp/svc-$1" > /dev/null 2>&1
  measure "$1-prestart=$2" "$port" "$runs" 0.2  # the pool refills while the instance idles out
  kill "$leverd_pid"; wait "$leverd_pid" || true; leverd_pid=
  rm -rf "$tmp/data-$1-$2"
}

for r in $(seq 1 "$rounds"); do
  for lang in js py; do one_round "$lang" 0; one_round "$lang" 1; done
done
summarize
