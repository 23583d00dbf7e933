#!/usr/bin/env bash
# Cold start of the docker runtime (docs/docker.md): the first call to a
# scaled-to-zero C++ service until its reply (curl over the HTTP API), beside
# a warm call right after it and the same with the process runtime, on a
# dockerd this script starts (as root; Debian's docker.io, vfs storage,
# --docker-network none).
#   tests/bench/coldstart/docker.sh [build dir] [runs]
# Not a test: it prints figures for docs/BENCHMARKS.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
build=$(cd "${1:-$root/build/main}" && pwd)
runs=${2:-20}
tmp=$(mktemp -d /tmp/lever-dcold-XXXXXX)
chmod 755 "$tmp"  # process instances run as another user under a root leverd
leverd_pid= dockerd_pid=
cleanup() {
  [ -n "$leverd_pid" ] && kill "$leverd_pid" 2>/dev/null && wait "$leverd_pid" 2>/dev/null
  [ -n "$dockerd_pid" ] && kill "$dockerd_pid" 2>/dev/null && wait "$dockerd_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
/usr/sbin/dockerd --iptables=false --ip-masq=false --bridge=none --storage-driver=vfs --data-root "$tmp/d" \
  --exec-root "$tmp/x" --pidfile "$tmp/dockerd.pid" -H "unix://$tmp/docker.sock" > "$tmp/dockerd.log" 2>&1 &
dockerd_pid=$!
for i in $(seq 1 300); do curl -sf --unix-socket "$tmp/docker.sock" http://d/_ping > /dev/null 2>&1 && break; sleep 0.05; done

mkdir "$tmp/svc"
cp "$build/examples/hello-cpp/serve" "$tmp/svc/"
port_of() { sed -n 's/.* listening on [^ ]*:\([0-9][0-9]*\) .*/\1/p' "$1"; }
instances() { "$build/cli/lever" -H "127.0.0.1:$1" ps --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["instances"]))'; }
call() {
  curl -sf -o /dev/null -w '%{time_total}\n' -X POST -H 'Content-Type: application/json' --data '["w"]' \
    "http://127.0.0.1:$1/helloService/sayHello?forceenv=dev.lever"
}

one_round() {  # runtime
  local log=$tmp/leverd-$1.log port i j
  echo "{\"name\": \"helloService\", \"entry\": [\"./serve\"], \"runtime\": \"$1\"}" > "$tmp/svc/lever.json"
  "$build/cli/leverd" --listen 127.0.0.1:0 --data-dir "$tmp/data-$1" --idle-timeout 300ms \
    --docker-host "unix://$tmp/docker.sock" --docker-network none 2> "$log" &
  leverd_pid=$!
  for i in $(seq 1 200); do port=$(port_of "$log"); [ -n "$port" ] && break; sleep 0.05; done
  "$build/cli/lever" -H "127.0.0.1:$port" deploy "$tmp/svc" > /dev/null 2>&1
  for i in $(seq 1 "$runs"); do
    for j in $(seq 1 200); do [ "$(instances "$port")" = 0 ] && break; sleep 0.05; done
    sleep 0.3  # the stopped container is removed (this is a benchmark, not a test)
    echo "$1 $(call "$port") $(call "$port")" >> "$tmp/results"
  done
  kill "$leverd_pid"; wait "$leverd_pid" || true; leverd_pid=
}

one_round process
one_round docker
python3 - "$tmp/results" <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]):
    rt, cold, warm = line.split()
    rows.setdefault(rt, ([], []))
    rows[rt][0].append(float(cold) * 1000)
    rows[rt][1].append(float(warm) * 1000)
for rt, (cold, warm) in sorted(rows.items()):
    cold.sort(); warm.sort()
    q = lambda v, p: v[min(len(v) - 1, int(len(v) * p))]
    print(f"{rt}: n={len(cold)} cold p50 {q(cold, .5):.1f} ms p99 {q(cold, .99):.1f} ms; "
          f"warm p50 {q(warm, .5):.2f} ms; cold - warm p50 {q(cold, .5) - q(warm, .5):.1f} ms")
PY
