#!/usr/bin/env bash
# Load generators against four paths to the same C++ instance
# (tests/e2e/testservice, "Echo" of a 64-byte string): direct, through
# nghttpx (Debian's nghttp2-proxy, one worker), through nginx `grpc_pass`
# (Debian's nginx, one worker, a private config and prefix on a free port,
# never the system service) and through leverd (one worker, the service
# deployed). Four clients: three Lever did not write, h2load (nghttp2-client,
# writes the gRPC frames itself), ghz (grpc-go; installed from its Go module
# into the build dir unless $GHZ names one) and @grpc/grpc-js (grpcjs_load.js
# beside this script; the package is installed into <build>/grpc-js, not
# into sdk/node), and our gRPC C++ client (gateway_relay_bench load). One
# connection, 1, 16 and 64 calls in flight, each run <seconds> long,
# interleaved rounds (every client x path x depth once per round).
#
# Prints one line per run (calls/s, p50, the proxy's CPU per call: the sum of
# its threads' on-CPU time from /proc/<pid>/task/*/schedstat over the run,
# divided by the calls it relayed), then a Markdown table of the medians over
# rounds. Writes the per-run lines to <build>/foreign-runs.tsv and, with
# PLOT=<file.png>, a gnuplot plot of median p50 against median throughput per
# path and client (summary.py). Installs what is missing from Debian (nghttp2-client,
# nghttp2-proxy, nginx, gnuplot-nox). Not part of the test suite.
# More paths: BUSY_POLL_US=<us> adds leverd-busy (leverd --busy-poll-us),
# BASE_BUILD=<build dir> adds leverd-base (that build's leverd, for an A/B);
# PATHS="direct leverd ..." runs only those; CLIENTS and DEPTHS likewise.
#   tests/bench/foreign/run.sh [build dir] [seconds per run] [rounds]
set -euo pipefail
src=$(cd "$(dirname "$0")/../../.." && pwd)
build=$(cd "${1:-build/main}" && pwd)
seconds=${2:-2}
rounds=${3:-3}
depths=${DEPTHS:-1 16 64}
clients=${CLIENTS:-h2load ghz grpc-js lever-cpp}

need=()
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v nghttpx >/dev/null || need+=(nghttp2-proxy)
command -v nginx >/dev/null || need+=(nginx)
[ -z "${PLOT:-}" ] || command -v gnuplot >/dev/null || need+=(gnuplot-nox)
if [ ${#need[@]} -gt 0 ]; then
  # Installing nginx must not start the system service: policy-rc.d says no
  # for the length of the install (only if there is none already).
  policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && policy=1
  fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  [ -z "$policy" ] || rm -f /usr/sbin/policy-rc.d
fi
ghz=${GHZ:-$build/go-bin/ghz}
if [ ! -x "$ghz" ]; then
  GOBIN="$build/go-bin" go install github.com/bojand/ghz/cmd/ghz@v0.120.0
fi
grpcjs=$build/grpc-js
if [ ! -d "$grpcjs/node_modules/@grpc/grpc-js" ]; then
  mkdir -p "$grpcjs"
  npm install --prefix "$grpcjs" --no-save --no-package-lock --no-audit --no-fund @grpc/grpc-js@1.14.7 >/dev/null
fi
cppload=$build/gateway/gateway_relay_bench
[ -x "$cppload" ] || { echo "missing $cppload (ninja -C $build gateway_relay_bench)" >&2; exit 1; }

work=$(mktemp -d /tmp/lever-foreign-XXXXXX)
chmod 755 "$work"  # a root leverd runs instances as lever-instance, which must reach the data dir
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

# core.RPC{args: [JSON{json_string: 64 x 'x'}]}: the message (for grpc-js)
# and the same in a gRPC frame (for h2load).
python3 - "$work/msg.bin" "$work/body.bin" <<'PY'
import struct, sys
s = b"x" * 64
json = b"\x0a" + bytes([len(s)]) + s
arr = b"\x0a" + bytes([len(json)]) + json
rpc = b"\x0a" + bytes([len(arr)]) + arr
open(sys.argv[1], "wb").write(rpc)
open(sys.argv[2], "wb").write(b"\x00" + struct.pack(">I", len(rpc)) + rpc)
PY
payload=$(printf 'x%.0s' $(seq 64))
url=lever://dev.lever/bench//Echo

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
# Nanoseconds on CPU of every thread of a process (0 for "-").
cpu_ns() {
  [ "$1" = - ] && { echo 0; return; }
  cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f", s}'
}

# A proxy's master (pid $1) listens on port $2: its worker process (the one
# to measure), once it is up.
started_worker() {
  wait_port "$2"
  local worker
  worker=$(pgrep -P "$1" | head -1)
  echo "${worker:-$1}"
}

# Direct: the test service on its own TCP port.
direct_port=$(free_port)
LEVEROS_LISTEN_ADDR=127.0.0.1:$direct_port "$build/tests/e2e/lever_testservice" >/dev/null 2>&1 &
pids+=($!)
wait_port "$direct_port"

# nghttpx in front of it (h2c both sides, one worker, no access log).
nghttpx_port=$(free_port)
nghttpx --conf=/dev/null --frontend="127.0.0.1,$nghttpx_port;no-tls" --backend="127.0.0.1,$direct_port;;proto=h2" \
  --workers=1 --no-ocsp --accesslog-file=/dev/null --errorlog-file="$work/nghttpx.log" \
  --frontend-http2-max-concurrent-streams=100 >/dev/null 2>&1 &
pids+=($!)
nghttpx_pid=$(started_worker $! "$nghttpx_port")

# nginx grpc_pass in front of it: h2c from the client, one h2c connection per
# call in flight to the instance (nginx does not multiplex upstream streams),
# kept alive. A private prefix and pid file; no access log.
nginx_port=$(free_port)
mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
user root;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  http2_max_concurrent_streams 100;
  upstream instance {
    server 127.0.0.1:$direct_port;
    keepalive 128;
  }
  server {
    listen 127.0.0.1:$nginx_port http2;
    location / { grpc_pass grpc://instance; }
  }
}
EOF
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" >/dev/null 2>&1 &
pids+=($!)
nginx_pid=$(started_worker $! "$nginx_port")

# leverd with the same service deployed (its own instance of it), one worker.
leverd_port=$(free_port)
mkdir -p "$work/data" "$work/svc"
"$build/cli/leverd" --listen "127.0.0.1:$leverd_port" --data-dir "$work/data" --workers 1 >"$work/leverd.log" 2>&1 &
leverd_pid=$!
pids+=($leverd_pid)
wait_port "$leverd_port"
cp "$build/tests/e2e/lever_testservice" "$work/svc/serve"
# One instance, as behind the other paths: with the default maxInstanceLoad
# (10 calls per instance) leverd's autoscaler would run 7 instances at 64 in
# flight, on the 2 cores the proxies and clients share, and leverd's row would
# measure 7 instances against one (docs/BENCHMARKS.md, "Under foreign clients").
echo '{"name": "bench", "entry": ["./serve"], "minInstances": 1, "maxInstanceLoad": 100}' >"$work/svc/lever.json"
"$build/cli/lever" -H "127.0.0.1:$leverd_port" deploy "$work/svc" >/dev/null 2>&1

paths=(direct nghttpx nginx leverd)
declare -A port=([direct]=$direct_port [nghttpx]=$nghttpx_port [nginx]=$nginx_port [leverd]=$leverd_port)
declare -A proxy=([direct]=- [nghttpx]=$nghttpx_pid [nginx]=$nginx_pid [leverd]=$leverd_pid)

# Another leverd on its own port and data dir with its own copy of the
# service: path name, leverd binary, extra flags.
more_leverd() {
  local name=$1 bin=$2 p
  shift 2
  p=$(free_port)
  mkdir -p "$work/data-$name"
  "$bin" --listen "127.0.0.1:$p" --data-dir "$work/data-$name" --workers 1 "$@" >"$work/$name.log" 2>&1 &
  pids+=($!)
  proxy[$name]=$!
  port[$name]=$p
  wait_port "$p"
  "$build/cli/lever" -H "127.0.0.1:$p" deploy "$work/svc" >/dev/null 2>&1
  paths+=("$name")
}
# BUSY_POLL_US=<us>: leverd-busy, the same leverd with --busy-poll-us (docs/cli.md).
[ -z "${BUSY_POLL_US:-}" ] || more_leverd leverd-busy "$build/cli/leverd" --busy-poll-us "$BUSY_POLL_US"
# BASE_BUILD=<build dir>: leverd-base, that build's leverd (an A/B of two commits).
[ -z "${BASE_BUILD:-}" ] || more_leverd leverd-base "$(cd "$BASE_BUILD" && pwd)/cli/leverd"
# PATHS="direct leverd ..." measures only those.
[ -z "${PATHS:-}" ] || read -r -a paths <<<"$PATHS"
headers=(-H "content-type: application/grpc" -H "te: trailers" -H "lever-url: $url")

# Each client prints "<calls relayed, warm-up included> <ok calls measured> <calls/s> <p50 us>".
load_h2load() {  # port in-flight
  rm -f "$work/h2load.tsv"  # h2load appends to its log file
  h2load -D "$seconds" -c 1 -m "$2" -d "$work/body.bin" "${headers[@]}" --log-file="$work/h2load.tsv" \
    "http://127.0.0.1:$1/core.LeverRPC/HandleRPC" >"$work/h2load.out" 2>&1
  local ok rps p50
  ok=$(sed -n 's/.*status codes: \([0-9]*\) 2xx.*/\1/p' "$work/h2load.out")
  rps=$(sed -n 's/.* \([0-9.]*\) req\/s.*/\1/p' "$work/h2load.out" | head -1)
  p50=$(awk -F'\t' '$2 == 200 {print $3}' "$work/h2load.tsv" | sort -n | awk '{v[NR] = $1} END {print NR ? v[int((NR + 1) / 2)] : 0}')
  echo "$ok $ok $rps $p50"
}
load_ghz() {
  "$ghz" --insecure --proto "$src/sdk/cpp/proto/leverrpc.proto" --call core.LeverRPC/HandleRPC \
    -d "{\"args\":{\"element\":[{\"json_string\":\"$payload\"}]}}" -m "{\"lever-url\":\"$url\"}" \
    --connections=1 -c "$2" -z "${seconds}s" --format=json "127.0.0.1:$1" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
p50 = next((d["latency"] for d in r.get("latencyDistribution") or [] if d["percentage"] == 50), 0) / 1e3
ok = r.get("statusCodeDistribution", {}).get("OK", 0)
print(r["count"], ok, r["rps"], p50)'
}
load_grpc-js() {
  NODE_PATH="$grpcjs/node_modules" node "$src/tests/bench/foreign/grpcjs_load.js" "127.0.0.1:$1" "$2" "$seconds" \
    "$work/msg.bin" "$url" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
print(r["ok"] + r["errors"] + r["warm"], r["ok"], r["rps"], r["p50_us"])'
}
load_lever-cpp() {
  "$cppload" load "127.0.0.1:$1" "$2" "$seconds" "$url" "$payload" |
    awk '{print $12 + $14 + $10, $12, $7, $2}'
}

runs=$build/foreign-runs.tsv
: >"$runs"
run() {  # client path in-flight
  local client=$1 path=$2 m=$3 before after out
  before=$(cpu_ns "${proxy[$path]}")
  out=$("load_$client" "${port[$path]}" "$m")
  after=$(cpu_ns "${proxy[$path]}")
  read -r calls ok rps p50 <<<"$out"
  local cpu=-
  [ "${proxy[$path]}" = - ] || cpu=$(awk -v t=$((after - before)) -v n="$calls" 'BEGIN {printf "%.1f", n ? t / n / 1e3 : 0}')
  printf '%-9s %-7s %3s  %9.0f calls/s  p50 %8.0f us  proxy CPU/call %6s us  (ok %s)\n' \
    "$client" "$path" "$m" "$rps" "$p50" "$cpu" "$ok"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$client" "$path" "$m" "$rps" "$p50" "$cpu" "$ok" >>"$runs"
}

# Each path answers the call itself (grpc-status 0 in the trailers), not
# only HTTP 200.
for path in "${paths[@]}"; do
  status=$(nghttp -v -d "$work/body.bin" "${headers[@]}" "http://127.0.0.1:${port[$path]}/core.LeverRPC/HandleRPC" 2>&1 |
    sed -n 's/.*recv (stream_id=[0-9]*) grpc-status: \([0-9]*\).*/\1/p' | head -1)
  [ "$status" = 0 ] || { echo "$path answered grpc-status '$status'" >&2; exit 1; }
done
# Warm every path once.
for path in "${paths[@]}"; do
  h2load -n 2000 -c 1 -m 16 -d "$work/body.bin" "${headers[@]}" \
    "http://127.0.0.1:${port[$path]}/core.LeverRPC/HandleRPC" >/dev/null 2>&1
done
echo "# $(date -u '+%F %T UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg), $seconds s per run, $rounds rounds"
for r in $(seq "$rounds"); do
  for m in $depths; do
    for client in $clients; do
      for path in "${paths[@]}"; do run "$client" "$path" "$m"; done
    done
  done
  echo "# round $r done, load average $(cut -d' ' -f1-3 /proc/loadavg)"
done
echo "# leverd ran $(pgrep -P "$leverd_pid" -x serve | wc -l) instance(s) of the service"

if [ -n "${PLOT:-}" ]; then
  python3 "$src/tests/bench/foreign/summary.py" "$runs" "$build/foreign-medians.tsv" "$PLOT" "$work/plot.gp"
  gnuplot "$work/plot.gp"
  echo "plot: $PLOT"
else
  python3 "$src/tests/bench/foreign/summary.py" "$runs" "$build/foreign-medians.tsv"
fi
