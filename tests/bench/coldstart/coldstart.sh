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
leverd_pid=
trap '[ -n "$leverd_pid" ] && kill "$leverd_pid" 2>/dev/null; rm -rf "$tmp"' EXIT
mkdir "$tmp/svc"
cp "$root/examples/hello-cpp/lever.json" "$build/examples/hello-cpp/serve" "$tmp/svc/"

port_of() { sed -n 's/.* listening on [^ ]*:\([0-9][0-9]*\) .*/\1/p' "$1"; }
instances() { "$build/cli/lever" -H "127.0.0.1:$1" ps --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["instances"]))'; }
call() {
  curl -sf -o /dev/null -w '%{time_total}\n' -X POST -H 'Content-Type: application/json' --data '["w"]' \
    "http://127.0.0.1:$1/helloService/sayHello?forceenv=dev.lever"
}

one_round() {  # prestart
  local log=$tmp/leverd-$1.log port i j
  "$build/cli/leverd" --listen 127.0.0.1:0 --data-dir "$tmp/data-$1" --idle-timeout 300ms --prestart "$1" 2> "$log" &
  leverd_pid=$!
  for i in $(seq 1 200); do port=$(port_of "$log"); [ -n "$port" ] && break; sleep 0.05; done
  "$build/cli/lever" -H "127.0.0.1:$port" deploy "$tmp/svc" > /dev/null 2>&1
  for i in $(seq 1 "$runs"); do
    for j in $(seq 1 200); do [ "$(instances "$port")" = 0 ] && break; sleep 0.05; done
    sleep 0.2  # the pool refills after the instance stopped (this is a benchmark, not a test)
    echo "$1 $(call "$port") $(call "$port")" >> "$tmp/results"
  done
  kill "$leverd_pid"; wait "$leverd_pid" || true; leverd_pid=
  rm -rf "$tmp/data-$1"
}

for r in $(seq 1 "$rounds"); do one_round 0; one_round 1; done
python3 - "$tmp/results" <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]):
    pre, cold, warm = line.split()
    rows.setdefault(pre, ([], []))
    rows[pre][0].append(float(cold) * 1000)
    rows[pre][1].append(float(warm) * 1000)
for pre, (cold, warm) in sorted(rows.items()):
    cold.sort(); warm.sort()
    q = lambda v, p: v[min(len(v) - 1, int(len(v) * p))]
    print(f"--prestart {pre}: n={len(cold)} cold p50 {q(cold, .5):.1f} ms p90 {q(cold, .9):.1f} ms; "
          f"warm p50 {q(warm, .5):.2f} ms; cold - warm p50 {q(cold, .5) - q(warm, .5):.1f} ms")
PY
