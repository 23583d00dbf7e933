#!/usr/bin/env bash
# Foreign load generators against three paths to the same C++ instance
# (tests/e2e/testservice, "Echo" of a 64-byte string): direct, through
# nghttpx (Debian's nghttp2-proxy, one worker) and through leverd. Two
# clients Lever did not write: h2load (nghttp2-client, writes the gRPC
# frames itself) and ghz (grpc-go; installed from its Go module into the
# build dir unless $GHZ names one). One connection, 1, 16 and 64 calls in
# flight, interleaved rounds. Prints one line per run: client, path, in
# flight, calls/s, latency (h2load: mean; ghz: p50), and the proxy's CPU per
# call (its utime+stime over the run, from /proc). Not part of the test
# suite.
#   tests/bench/foreign/run.sh [build dir] [calls per run] [rounds]
set -euo pipefail
src=$(cd "$(dirname "$0")/../../.." && pwd)
build=$(cd "${1:-build/main}" && pwd)
ghz=${GHZ:-$build/go-bin/ghz}
if [ ! -x "$ghz" ]; then
  GOBIN="$build/go-bin" go install github.com/bojand/ghz/cmd/ghz@v0.120.0
fi
calls=${2:-20000}
rounds=${3:-3}
work=$(mktemp -d /tmp/lever-foreign-XXXXXX)
chmod 755 "$work"  # a root leverd runs instances as lever-instance, which must reach the data dir
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

# core.RPC{args: [JSON{json_string: 64 x 'x'}]} in a gRPC frame.
python3 - "$work/body.bin" <<'PY'
import struct, sys
s = b"x" * 64
json = b"\x0a" + bytes([len(s)]) + s
arr = b"\x0a" + bytes([len(json)]) + json
rpc = b"\x0a" + bytes([len(arr)]) + arr
open(sys.argv[1], "wb").write(b"\x00" + struct.pack(">I", len(rpc)) + rpc)
PY

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# Direct: the test service on its own TCP port.
direct_port=$(free_port)
LEVEROS_LISTEN_ADDR=127.0.0.1:$direct_port "$build/tests/e2e/lever_testservice" >/dev/null 2>&1 &
pids+=($!)
wait_port "$direct_port"

# nghttpx in front of it (h2c both sides, one worker, no access log).
ngx_port=$(free_port)
nghttpx --frontend="127.0.0.1,$ngx_port;no-tls" --backend="127.0.0.1,$direct_port;;proto=h2" \
  --workers=1 --no-ocsp --accesslog-file=/dev/null --errorlog-file="$work/nghttpx.log" \
  --frontend-http2-max-concurrent-streams=100 >/dev/null 2>&1 &
ngx_pid=$!
pids+=($ngx_pid)
wait_port "$ngx_port"
ngx_worker=$(pgrep -P "$ngx_pid" | head -1)
ngx_worker=${ngx_worker:-$ngx_pid}

# leverd with the same service deployed (its own instance of it), one worker.
lv_port=$(free_port)
mkdir -p "$work/data" "$work/svc"
"$build/cli/leverd" --listen "127.0.0.1:$lv_port" --data-dir "$work/data" --workers 1 >"$work/leverd.log" 2>&1 &
lv_pid=$!
pids+=($lv_pid)
wait_port "$lv_port"
cp "$build/tests/e2e/lever_testservice" "$work/svc/serve"
echo '{"name": "bench", "entry": ["./serve"], "minInstances": 1}' >"$work/svc/lever.json"
"$build/cli/lever" -H "127.0.0.1:$lv_port" deploy "$work/svc" >/dev/null 2>&1

headers=(-H "content-type: application/grpc" -H "te: trailers" -H "lever-url: lever://dev.lever/bench//Echo")
run() {  # name port pid-to-measure in-flight
  local name=$1 port=$2 pid=$3 m=$4 before after out
  before=$([ "$pid" = - ] && echo 0 || cpu_ticks "$pid")
  out=$(h2load -n "$calls" -c 1 -m "$m" -d "$work/body.bin" "${headers[@]}" \
    "http://127.0.0.1:$port/core.LeverRPC/HandleRPC" 2>&1)
  after=$([ "$pid" = - ] && echo 0 || cpu_ticks "$pid")
  local rps mean ok
  rps=$(sed -n 's/.* \([0-9.]*\) req\/s.*/\1/p' <<<"$out" | head -1)
  mean=$(awk '/time for request:/ {print $6}' <<<"$out")
  ok=$(sed -n 's/.*status codes: \([0-9]*\) 2xx.*/\1/p' <<<"$out")
  local cpu=-
  if [ "$pid" != - ]; then
    cpu=$(awk -v t=$((after - before)) -v n="$calls" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f", t / hz / n * 1e6}')
  fi
  printf 'h2load %-8s %3s  %9s calls/s  mean %9s  proxy CPU/call %6s us  (2xx %s)\n' "$name" "$m" "$rps" "$mean" "$cpu" "$ok"
}
ghz_data="{\"args\":{\"element\":[{\"json_string\":\"$(printf 'x%.0s' $(seq 64))\"}]}}"
run_ghz() {  # name port pid-to-measure in-flight
  local name=$1 port=$2 pid=$3 m=$4 before after out
  before=$([ "$pid" = - ] && echo 0 || cpu_ticks "$pid")
  out=$("$ghz" --insecure --proto "$src/sdk/cpp/proto/leverrpc.proto" --call core.LeverRPC/HandleRPC \
    -d "$ghz_data" -m '{"lever-url":"lever://dev.lever/bench//Echo"}' --connections=1 -c "$m" -n "$calls" \
    --format=json "127.0.0.1:$port")
  after=$([ "$pid" = - ] && echo 0 || cpu_ticks "$pid")
  local cpu=-
  if [ "$pid" != - ]; then
    cpu=$(awk -v t=$((after - before)) -v n="$calls" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f", t / hz / n * 1e6}')
  fi
  python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
p50 = next((d["latency"] for d in r.get("latencyDistribution") or [] if d["percentage"] == 50), 0) / 1e3
ok = r.get("statusCodeDistribution", {}).get("OK", 0)
print("ghz    %-8s %3s  %9.2f calls/s  p50  %7.0fus  proxy CPU/call %6s us  (OK %s)" % (sys.argv[1], sys.argv[2], r["rps"], p50, sys.argv[3], ok))
' "$name" "$m" "$cpu" <<<"$out"
}
# Each path answers the call itself (grpc-status 0 in the trailers), not
# only HTTP 200.
for port in "$direct_port" "$ngx_port" "$lv_port"; do
  status=$(nghttp -v -d "$work/body.bin" "${headers[@]}" "http://127.0.0.1:$port/core.LeverRPC/HandleRPC" 2>&1 |
    sed -n 's/.*recv (stream_id=[0-9]*) grpc-status: \([0-9]*\).*/\1/p' | head -1)
  [ "$status" = 0 ] || { echo "port $port answered grpc-status '$status'" >&2; exit 1; }
done
# Warm every path once.
for p in "direct $direct_port -" "nghttpx $ngx_port $ngx_worker" "leverd $lv_port $lv_pid"; do
  set -- $p
  h2load -n 2000 -c 1 -m 16 -d "$work/body.bin" "${headers[@]}" "http://127.0.0.1:$2/core.LeverRPC/HandleRPC" >/dev/null 2>&1
done
for r in $(seq "$rounds"); do
  for m in 1 16 64; do
    run direct "$direct_port" - "$m"
    run nghttpx "$ngx_port" "$ngx_worker" "$m"
    run leverd "$lv_port" "$lv_pid" "$m"
    run_ghz direct "$direct_port" - "$m"
    run_ghz nghttpx "$ngx_port" "$ngx_worker" "$m"
    run_ghz leverd "$lv_port" "$lv_pid" "$m"
  done
done
