#!/usr/bin/env bash
# Soak (docs/BENCHMARKS.md, "Soak"): one leverd under 10 minutes of steady mixed
# load, sampling its RSS every 10 s:
#   - unary gRPC: ghz (grpc-go), 100 calls/s on one connection, 4 in flight
#     (a count of calls, not a duration: ghz cuts off the calls in flight
#     when a duration ends);
#   - HTTP: wrk, 4 keep-alive connections cycling a JSON echo, a 256 KiB bytes
#     reply and a 64 KiB JSON reply, each pausing 80 ms between requests
#     (~50 requests/s in all);
#   - streams: curl, one HTTP streaming call of 1 MiB (16 messages) at a time;
#   - instance kills: a second service under light curl load whose instance is
#     SIGKILLed every 60 s (its failed calls are counted, not asserted).
# Passes when leverd's RSS at the end is within 10% of its RSS after the
# warm-up (the first minute) and no call to the service that is never killed
# failed.
#   tests/bench/soak/run.sh [build dir] [seconds, default 600]
# ghz is installed from its Go module into <build dir>/go-bin unless $GHZ names
# one. Not a test (not in scripts/test.sh): it prints figures.
set -Eeuo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
build=$(cd "${1:-$root/build/main}" && pwd)
seconds=${2:-600}
warmup=$(( seconds / 10 ))
ghz=${GHZ:-$build/go-bin/ghz}
if [ ! -x "$ghz" ]; then
  GOBIN="$build/go-bin" go install github.com/bojand/ghz/cmd/ghz@v0.120.0
fi
tmp=$(mktemp -d /tmp/lever-soak-XXXXXX)
chmod 755 "$tmp"  # instances run as another user under a root leverd
pids=()
leverd_pid=
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "$leverd_pid" ] && kill "$leverd_pid" 2>/dev/null
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
source "$root/tests/bench/coldstart/lib.sh"  # leverd_port

for svc in soaksvc victim; do
  mkdir "$tmp/$svc"
  cp "$build/tests/e2e/lever_testservice" "$tmp/$svc/serve"
  echo "{\"name\": \"$svc\", \"entry\": [\"./serve\"], \"ram\": 500}" > "$tmp/$svc/lever.json"
done
"$build/cli/leverd" --listen 127.0.0.1:0 --data-dir "$tmp/data" 2> "$tmp/leverd.log" &
leverd_pid=$!
port=$(leverd_port "$tmp/leverd.log")
lever() { "$build/cli/lever" -H "127.0.0.1:$port" "$@"; }
lever deploy "$tmp/soaksvc" > /dev/null
lever deploy "$tmp/victim" > /dev/null
http="http://127.0.0.1:$port"
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$leverd_pid/status"; }

# --- load -----------------------------------------------------------------------
"$ghz" --insecure --proto "$root/sdk/cpp/proto/leverrpc.proto" --call core.LeverRPC/HandleRPC \
  -d '{"args":{"element":[{"json_string":"soak"}]}}' -m '{"lever-url":"lever://dev.lever/soaksvc//Echo"}' \
  --connections=1 -c 4 --rps 100 -n $(( seconds * 100 )) -O json "127.0.0.1:$port" > "$tmp/ghz.json" 2> "$tmp/ghz.err" &
pids+=($!)
DELAY_MS=80 wrk -t1 -c4 -d"${seconds}s" -s "$root/tests/bench/soak/mix.lua" "$http" > "$tmp/wrk.txt" 2>&1 &
pids+=($!)
end=$(( $(date +%s) + seconds ))
( ok=0 bad=0
  while [ "$(date +%s)" -lt "$end" ]; do
    got=$(curl -s -X POST -H 'Content-Type: application/json' --data '[1048576, 65536]' \
      "$http/soaksvc/SourceChan?forceenv=dev.lever" | wc -c) || true
    if [ "$got" = 1048576 ]; then ok=$((ok + 1)); else bad=$((bad + 1)); fi
    sleep 0.5
  done
  echo "$ok $bad" > "$tmp/streams.txt" ) &
pids+=($!)
( ok=0 bad=0
  while [ "$(date +%s)" -lt "$end" ]; do
    if [ "$(curl -s -X POST -H 'Content-Type: application/json' --data '["v"]' \
      "$http/victim/Echo?forceenv=dev.lever")" = '"v"' ]; then ok=$((ok + 1)); else bad=$((bad + 1)); fi
    sleep 0.1
  done
  echo "$ok $bad" > "$tmp/victim.txt" ) &
pids+=($!)
( kills=0
  while [ "$(date +%s)" -lt $(( end - 30 )) ]; do
    sleep 60
    pid=$(lever ps --json 2>/dev/null | python3 -c '
import json, sys
for i in json.load(sys.stdin)["instances"]:
    if i.get("service") == "victim" and i.get("pid"): print(i["pid"]); break' || true)
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null && kills=$((kills + 1))
    echo "$kills" > "$tmp/kills.txt"
  done ) &
pids+=($!)

# --- RSS ------------------------------------------------------------------------
echo "t_s rss_kib" > "$tmp/rss.txt"
start=$(date +%s)
while [ "$(date +%s)" -lt "$end" ]; do
  echo "$(( $(date +%s) - start )) $(rss_kib)" >> "$tmp/rss.txt"
  sleep 10
done
for p in "${pids[@]}"; do wait "$p" || true; done
pids=()
echo "$(( $(date +%s) - start )) $(rss_kib)" >> "$tmp/rss.txt"

# --- verdict --------------------------------------------------------------------
python3 - "$tmp" "$warmup" <<'PY'
import json, re, sys
tmp, warmup = sys.argv[1], int(sys.argv[2])
rows = [tuple(map(int, l.split())) for l in open(f"{tmp}/rss.txt").readlines()[1:]]
base = next(r for t, r in rows if t >= warmup)
last = rows[-1][1]
print("RSS (MiB) every sample:", " ".join(f"{r / 1024:.1f}" for _, r in rows))
drift = (last - base) / base * 100
print(f"RSS after warm-up ({warmup} s) {base / 1024:.1f} MiB, at the end {last / 1024:.1f} MiB: {drift:+.1f}%;"
      f" min {min(r for _, r in rows) / 1024:.1f}, max {max(r for _, r in rows) / 1024:.1f} MiB")
failures = 0
g = json.load(open(f"{tmp}/ghz.json"))
dist = g.get("statusCodeDistribution", {})
print(f"ghz: {g['count']} calls, {g['rps']:.1f}/s, status {dist}, p50 "
      f"{next((l['latency'] for l in g.get('latencyDistribution') or [] if l['percentage'] == 50), 0) / 1e3:.0f} us")
failures += sum(v for k, v in dist.items() if k != "OK")
for err, n in (g.get("errorDistribution") or {}).items():
    print(f"  ghz error x{n}: {err}")
w = open(f"{tmp}/wrk.txt").read()
reqs = re.search(r"(\d+) requests in", w)
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", w)
sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", w)
werr = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, sock.groups())) if sock else 0)
print(f"wrk: {reqs.group(1) if reqs else '?'} HTTP requests, {werr} errors")
failures += werr
sok, sbad = map(int, open(f"{tmp}/streams.txt").read().split())
print(f"streams: {sok} HTTP streaming calls of 1 MiB, {sbad} failed")
failures += sbad
vok, vbad = map(int, open(f"{tmp}/victim.txt").read().split())
kills = open(f"{tmp}/kills.txt").read().strip() if __import__("os").path.exists(f"{tmp}/kills.txt") else "0"
print(f"victim: {kills} instance kills, {vok} calls served, {vbad} failed (not counted)")
ok = failures == 0 and abs(drift) <= 10
print("PASS" if ok else f"FAIL: {failures} failed calls, RSS drift {drift:+.1f}%")
if not ok:
    print("leverd's log, last lines:")
    print("".join(open(f"{tmp}/leverd.log").readlines()[-20:]))
sys.exit(0 if ok else 1)
PY
