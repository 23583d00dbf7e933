#!/usr/bin/env bash
# Cold start of the docker runtime (docs/docker.md): the first call to a
# scaled-to-zero C++ service until its reply (curl over the HTTP API), beside
# a warm call right after it and the same with the process runtime, on a
# dockerd this script starts (as root; Debian's docker.io, vfs storage,
# --docker-network none), with and without the containers created ahead
# (--docker-create-ahead). LEVER_DOCKER_STORAGE picks dockerd's storage
# driver (default vfs, as the tests'; overlay2 works on ext4).
#   tests/bench/coldstart/docker.sh [build dir] [runs]
# Not a test: it prints figures for docs/BENCHMARKS.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
build=$(cd "${1:-$root/build/main}" && pwd)
runs=${2:-20}
storage=${LEVER_DOCKER_STORAGE:-vfs}
tmp=$(mktemp -d /tmp/lever-dcold-XXXXXX)
chmod 755 "$tmp"  # process instances run as another user under a root leverd
leverd_pid= dockerd_pid=
cleanup() {
  [ -n "$leverd_pid" ] && kill "$leverd_pid" 2>/dev/null && wait "$leverd_pid" 2>/dev/null
  [ -n "$dockerd_pid" ] && kill "$dockerd_pid" 2>/dev/null && wait "$dockerd_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
/usr/sbin/dockerd --iptables=false --ip-masq=false --bridge=none --storage-driver="$storage" --data-root "$tmp/d" \
  --exec-root "$tmp/x" --pidfile "$tmp/dockerd.pid" -H "unix://$tmp/docker.sock" > "$tmp/dockerd.log" 2>&1 &
dockerd_pid=$!
for i in $(seq 1 300); do curl -sf --unix-socket "$tmp/docker.sock" http://d/_ping > /dev/null 2>&1 && break; sleep 0.05; done

mkdir "$tmp/svc"
cp "$build/examples/hello-cpp/serve" "$tmp/svc/"
source "$root/tests/bench/coldstart/lib.sh"

one_round() {  # label runtime [leverd flags...]
  local label=$1 runtime=$2 log=$tmp/leverd-$1.log port
  shift 2
  echo "{\"name\": \"helloService\", \"entry\": [\"./serve\"], \"runtime\": \"$runtime\"}" > "$tmp/svc/lever.json"
  "$build/cli/leverd" --listen 127.0.0.1:0 --data-dir "$tmp/data-$label" --idle-timeout 300ms \
    --docker-host "unix://$tmp/docker.sock" --docker-network none "$@" 2> "$log" &
  leverd_pid=$!
  port=$(leverd_port "$log")
  "$build/cli/lever" -H "127.0.0.1:$port" deploy "$tmp/svc" > /dev/null 2>&1
  measure "$label" "$port" "$runs" 0.3  # the stopped container is removed
  kill "$leverd_pid"; wait "$leverd_pid" || true; leverd_pid=
}

one_round process process
one_round docker-create-ahead docker --docker-create-ahead true
one_round docker-each-created-at-start docker --docker-create-ahead false
summarize
