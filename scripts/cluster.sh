#!/usr/bin/env bash
# A local Lever cluster for trying things (docs/cluster.md "A local cluster"):
# a 3-member etcd and 3 leverd nodes on this machine's loopback, in the
# foreground. It prints how to call them; Ctrl-C (or SIGTERM) stops the nodes
# (they drain and leave), then etcd, and removes the temp dir with their data.
#   scripts/cluster.sh                          # installs and builds first, like scripts/start.sh
#   LEVER_CLUSTER_PORT=9080 scripts/cluster.sh  # other ports (below)
#   LEVER_BIN_DIR=build/main/cli scripts/cluster.sh   # prebuilt leverd and lever: no setup, no build
# Ports, from LEVER_CLUSTER_PORT (default 8080) = P: node i (1..3) listens on
# P+i (gRPC and HTTP) and P+10+i (its peer port); etcd member i serves
# clients on P+300+i and its peers on P+310+i.
set -euo pipefail
cd "$(dirname "$0")/.."

base=${LEVER_CLUSTER_PORT:-8080}
etcd_bin=${LEVER_ETCD:-/usr/bin/etcd}
if [ -n "${LEVER_BIN_DIR:-}" ]; then
  bin=$LEVER_BIN_DIR
  hello="$bin/../examples/hello-cpp"
else
  scripts/setup.sh
  build=${LEVER_BUILD_DIR:-build/main}
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$build" -j"$(nproc)" --target leverd lever_cli hello_cpp_serve
  bin="$build/cli"
  hello="$build/examples/hello-cpp"
fi
bin=$(cd "$bin" && pwd)
[ -d "$hello" ] && hello=$(cd "$hello" && pwd) || hello="<a service dir with lever.json>"
for b in "$bin/leverd" "$bin/lever" "$etcd_bin"; do
  [ -x "$b" ] || { echo "cluster: $b is missing" >&2; exit 1; }
done

# Everything lives here: etcd's and the nodes' data, tokens, logs. 0755: a
# root leverd's instances run as another user, who must reach the nodes' dirs.
dir=$(mktemp -d /tmp/lever-cluster.XXXXXX)
chmod 0755 "$dir"
pids=()      # everything started, in order: etcd members, then nodes
nodes=()     # the nodes' pids
stopping=0

stop() {
  [ "$stopping" = 1 ] && return
  stopping=1
  trap - INT TERM
  # The nodes first, while etcd still answers (each revokes its lease), then
  # etcd. Each gets 15 s after SIGTERM, then SIGKILL.
  local group pid
  for group in nodes all; do
    local list=("${nodes[@]}")
    [ "$group" = all ] && list=("${pids[@]}")
    for pid in "${list[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${list[@]}"; do
      for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
      kill -KILL "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    done
  done
  rm -rf "$dir"
  echo "cluster: stopped; removed $dir"
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Each child in its own process group (job control while starting them):
# a Ctrl-C reaches this script only, which stops them in order.

members=""
for i in 1 2 3; do
  members+="${members:+,}m$i=http://127.0.0.1:$((base + 310 + i))"
done
set -m
for i in 1 2 3; do
  "$etcd_bin" --name "m$i" --data-dir "$dir/etcd-m$i" \
    --listen-client-urls "http://127.0.0.1:$((base + 300 + i))" \
    --advertise-client-urls "http://127.0.0.1:$((base + 300 + i))" \
    --listen-peer-urls "http://127.0.0.1:$((base + 310 + i))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((base + 310 + i))" \
    --initial-cluster "$members" --initial-cluster-state new --initial-cluster-token "lever-$$" \
    --enable-v2=false --logger zap --log-outputs stderr --log-level warn \
    >"$dir/etcd-m$i.log" 2>&1 &
  pids+=($!)
done
set +m
endpoints="127.0.0.1:$((base + 301)),127.0.0.1:$((base + 302)),127.0.0.1:$((base + 303))"

# Waits (bounded: 30 s) until `$@` succeeds; fails if a child exited meanwhile.
await() {
  local what=$1 pid
  shift
  for _ in $(seq 1 600); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    for pid in "${pids[@]}"; do
      kill -0 "$pid" 2>/dev/null || { echo "cluster: a process exited while waiting for $what; logs in $dir:" >&2; tail -n 5 "$dir"/*.log >&2; return 1; }
    done
    sleep 0.05
  done
  echo "cluster: $what did not come up within 30 s; logs in $dir:" >&2
  tail -n 5 "$dir"/*.log >&2
  return 1
}
for i in 1 2 3; do
  await "etcd member m$i" curl -sf "http://127.0.0.1:$((base + 300 + i))/health"
done

# One cluster token for the peers, one admin token for all three nodes
# (each reads <data dir>/admin.token, made here so that it is the same).
head -c 32 /dev/urandom | base64 >"$dir/cluster.token"
admin=$(head -c 30 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 40)
[ ${#admin} -ge 32 ] || admin+=$(date +%s%N)
chmod 0600 "$dir/cluster.token"
set -m
for i in 1 2 3; do
  mkdir -m 0755 "$dir/n$i"
  (umask 077 && echo "$admin" >"$dir/n$i/admin.token")
  "$bin/leverd" --listen "127.0.0.1:$((base + i))" --data-dir "$dir/n$i" \
    --registry "etcd://$endpoints" --node-name "n$i" --advertise "127.0.0.1:$((base + 10 + i))" \
    --cluster-token-file "$dir/cluster.token" >"$dir/n$i.log" 2>&1 &
  pids+=($!)
  nodes+=($!)
done
set +m
export LEVER_ADMIN_TOKEN=$admin
for i in 1 2 3; do
  await "leverd n$i" "$bin/lever" -H "127.0.0.1:$((base + i))" env list
done

cat <<MSG
Lever cluster: 3 leverd nodes on a 3-member etcd (data and logs in $dir).
  node  gRPC + HTTP       peer port         etcd member
  n1    127.0.0.1:$((base + 1))    127.0.0.1:$((base + 11))    m1 127.0.0.1:$((base + 301))
  n2    127.0.0.1:$((base + 2))    127.0.0.1:$((base + 12))    m2 127.0.0.1:$((base + 302))
  n3    127.0.0.1:$((base + 3))    127.0.0.1:$((base + 13))    m3 127.0.0.1:$((base + 303))
Deploys and 'lever ps' need the admin token (the same on every node):
  export LEVER_ADMIN_TOKEN=$admin
Deploy on n1, call through n3 (CLI and HTTP), see where instances run:
  $bin/lever -H 127.0.0.1:$((base + 1)) deploy $hello
  $bin/lever -H 127.0.0.1:$((base + 3)) invoke /helloService/sayHello '"you"'
  curl -H 'Content-Type: application/json' -d '["you"]' 'http://127.0.0.1:$((base + 3))/helloService/sayHello?forceenv=dev.lever'
  $bin/lever -H 127.0.0.1:$((base + 2)) ps
Logs: $dir/n1.log ... $dir/etcd-m1.log ...
Ctrl-C stops the nodes and etcd and removes $dir.
MSG

# Until Ctrl-C, or until one of them exits on its own.
set +e
wait -n "${pids[@]}"
if [ "$stopping" = 0 ]; then
  echo "cluster: a process exited; stopping the rest. Last log lines:" >&2
  tail -n 5 "$dir"/*.log >&2
  exit 1
fi
