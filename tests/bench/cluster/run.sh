#!/usr/bin/env bash
# A call through one node to an instance on another (docs/cluster.md) against
# one to a local instance, in one run: one etcd member, two leverd nodes on
# loopback, the C++ hello service deployed on n1 (its one instance runs there),
# and the C++ client's sequential p50/p99 and 64-in-flight rate through n1
# (local) and through n2 (relayed n2 -> n1 over the peer port), three times each, interleaved.
# Needs a build (scripts/test.sh or cmake --build build/main) and etcd (setup.sh).
#   tests/bench/cluster/run.sh [calls, default 5000]
set -euo pipefail
repo=$(cd "$(dirname "$0")/../../.." && pwd)
build=${LEVER_BUILD_DIR:-$repo/build/main}
calls=${1:-5000}
cmake --build "$build" --target leverd lever_cli hello_cpp_serve sdk_invoke_bench >/dev/null
data=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$data"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ec=$(port) ep=$(port)
etcd --name b1 --data-dir "$data/etcd" --listen-client-urls "http://127.0.0.1:$ec" \
  --advertise-client-urls "http://127.0.0.1:$ec" --listen-peer-urls "http://127.0.0.1:$ep" \
  --initial-advertise-peer-urls "http://127.0.0.1:$ep" --initial-cluster "b1=http://127.0.0.1:$ep" \
  --log-level error --logger zap 2>"$data/etcd.log" &
pids+=($!)
head -c 32 /dev/urandom | base64 > "$data/token"
start_node() {  # name; sets $addr to its public address
  local peer
  peer=$(port)
  "$build/cli/leverd" --listen 127.0.0.1:0 --data-dir "$data/$1" --workers 2 --registry "etcd://127.0.0.1:$ec" \
    --node-name "$1" --advertise "127.0.0.1:$peer" --cluster-token-file "$data/token" >/dev/null 2>"$data/$1.log" &
  pids+=($!)
  for _ in $(seq 1 400); do grep -q "listening on" "$data/$1.log" 2>/dev/null && break; sleep 0.05; done
  addr=$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$data/$1.log" | head -1)
}
start_node n1
n1=$addr
start_node n2
n2=$addr
lever() { "$build/cli/lever" --data-dir "$data/$1" -H "$2" "${@:3}"; }
lever n1 "$n1" deploy "$build/examples/hello-cpp" >/dev/null 2>&1
# n2 relays once it knows of n1's instance (a watch delivery after n1 publishes it).
for _ in $(seq 1 200); do
  lever n2 "$n2" --json ps | grep -q '"node":"n1"' && break
  sleep 0.05
done
echo "n1 at $n1, n2 at $n2, $calls calls per run, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for round in 1 2 3; do
  echo -n "local   (client -> n1 -> instance)        "; "$build/tests/bench/sdk_invoke_bench" "$n1" "$calls"
  echo -n "relayed (client -> n2 -> n1 -> instance)  "; "$build/tests/bench/sdk_invoke_bench" "$n2" "$calls"
done
if grep -q "stopping instance\|starting instance" "$data/n2.log"; then echo "note: n2 ran instances of its own"; fi
