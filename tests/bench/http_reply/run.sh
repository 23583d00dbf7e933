#!/usr/bin/env bash
# HTTP API unary replies of 1 MiB and 16 MiB through leverd (docs/BENCHMARKS.md,
# "HTTP API: large unary replies"): the test service's Bytes(n) (a bytes reply,
# application/octet-stream) and Text(n) (a JSON string), with wrk over
# keep-alive at 1 and 8 connections. Per row: requests/s, MB/s, leverd's CPU
# (user + system) per request, and its peak RSS during the row (VmHWM of a
# fresh leverd, after one warm call).
#   tests/bench/http_reply/run.sh [build dir] [seconds per row] [leverd binary...]
# The leverd binaries default to the build dir's; with several (another
# build's, to compare) each row runs them in turn. METHODS, SIZES (bytes) and
# CONNS pick rows. Not a test: it prints figures.
set -Eeuo pipefail
trap 'echo "run.sh: line $LINENO failed" >&2' ERR
root=$(cd "$(dirname "$0")/../../.." && pwd)
build=$(cd "${1:-$root/build/main}" && pwd)
seconds=${2:-5}
shift $(( $# < 2 ? $# : 2 ))
binaries=("$@")
[ ${#binaries[@]} -gt 0 ] || binaries=("$build/cli/leverd")
tmp=$(mktemp -d /tmp/lever-httpreply-XXXXXX)
chmod 755 "$tmp"  # instances run as another user under a root leverd
leverd_pid=
trap '[ -n "$leverd_pid" ] && kill "$leverd_pid" 2>/dev/null; rm -rf "$tmp"' EXIT
source "$root/tests/bench/coldstart/lib.sh"  # leverd_port

mkdir "$tmp/svc"
cp "$build/tests/e2e/lever_testservice" "$tmp/svc/serve"
# ram in MB: the instance makes 8 replies of 16 MiB at once.
echo '{"name": "replysvc", "entry": ["./serve"], "ram": 1500}' > "$tmp/svc/lever.json"

row() {  # leverd method size conns
  local port base got out rps errors hwm cpu0 cpu1 reqs
  rm -rf "$tmp/data" "$tmp/leverd.log"  # (else leverd_port may read the last row's port)
  "$1" --listen 127.0.0.1:0 --data-dir "$tmp/data" 2> "$tmp/leverd.log" &
  leverd_pid=$!
  port=$(leverd_port "$tmp/leverd.log")
  "$build/cli/lever" -H "127.0.0.1:$port" deploy "$tmp/svc" > "$tmp/deploy.log" 2>&1 || { cat "$tmp/deploy.log" "$tmp/leverd.log" >&2; exit 1; }
  base="http://127.0.0.1:$port/replysvc/$2?forceenv=dev.lever"
  for _ in 1 2 3 4 5; do  # warm, and check
    got=$(curl -s -X POST -H 'Content-Type: application/json' --data "[$3]" "$base" | wc -c) || true
    [ "$got" -ge "$3" ] && break
  done
  [ "$got" -ge "$3" ] || { echo "$2: a reply of $got bytes" >&2; tail -n 5 "$tmp/leverd.log" >&2; exit 1; }
  cpu0=$(cpu_ticks "$leverd_pid")
  out=$(BODY="[$3]" wrk -t1 -c"$4" -d"${seconds}s" -s "$root/tests/bench/http_reply/post.lua" "$base")
  cpu1=$(cpu_ticks "$leverd_pid")
  hwm=$(awk '/^VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$leverd_pid/status")
  kill "$leverd_pid"; wait "$leverd_pid" || true; leverd_pid=
  rps=$(awk '/^Requests\/sec/ {print $2}' <<< "$out")
  reqs=$(awk '/requests in/ {print $1}' <<< "$out")
  errors=$(awk '/Non-2xx|Socket errors/' <<< "$out" | tr -s ' \n' ' ')
  printf '%-40s %-6s %6d MiB %5d %10s %7.0f %8.2f %9s %s\n' "$1" "$2" $(($3 >> 20)) "$4" "$rps" \
    "$(python3 -c "print($rps * $3 / 1e6)")" "$(python3 -c "print(($cpu1 - $cpu0) * 1000 / $(getconf CLK_TCK) / max($reqs, 1))")" \
    "$hwm" "$errors"
}

cpu_ticks() {  # utime + stime of a process, in clock ticks
  awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$1/stat"
}

printf '%-40s %-6s %10s %5s %10s %7s %8s %9s\n' leverd method reply conns requests/s MB/s "CPU ms" "peak MiB"
for m in ${METHODS:-Bytes Text}; do
  for size in ${SIZES:-1048576 16777216}; do
    for conns in ${CONNS:-1 8}; do
      for b in "${binaries[@]}"; do row "$b" "$m" "$size" "$conns"; done
    done
  done
done
