# Helpers of the cold-start benchmarks (sourced by coldstart.sh and docker.sh).
# Needs $build (the build dir) and $tmp (the run's temp dir).

# The port a leverd logged as "listening on host:port" in LOG, waiting for it.
leverd_port() {
  local i port
  for i in $(seq 1 200); do
    port=$(sed -n 's/.* listening on [^ ]*:\([0-9][0-9]*\) .*/\1/p' "$1")
    [ -n "$port" ] && { echo "$port"; return 0; }
    sleep 0.05
  done
  echo "no leverd listening (see $1)" >&2
  return 1
}

instances() { "$build/cli/lever" -H "127.0.0.1:$1" ps --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["instances"]))'; }

call() {  # PORT [METHOD]
  curl -sf -o /dev/null -w '%{time_total}\n' -X POST -H 'Content-Type: application/json' --data '["w"]' \
    "http://127.0.0.1:$1/helloService/${2:-sayHello}?forceenv=dev.lever"
}

# measure LABEL PORT RUNS SETTLE [METHOD]: RUNS times, waits for the service
# at PORT to be at zero instances, lets SETTLE seconds pass (the runtime tidies
# up after a stop; this is a benchmark, not a test), then times a cold call
# and a warm one right after it, appending "LABEL cold warm" to $tmp/results.
measure() {
  local i j
  for i in $(seq 1 "$3"); do
    for j in $(seq 1 200); do [ "$(instances "$2")" = 0 ] && break; sleep 0.05; done
    sleep "$4"
    echo "$1 $(call "$2" "${5:-sayHello}") $(call "$2" "${5:-sayHello}")" >> "$tmp/results"
  done
}

# Prints p50/p90/p99 of the cold calls and p50 of the warm ones per label.
summarize() {
  python3 - "$tmp/results" <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]):
    label, cold, warm = line.split()
    rows.setdefault(label, ([], []))
    rows[label][0].append(float(cold) * 1000)
    rows[label][1].append(float(warm) * 1000)
for label, (cold, warm) in sorted(rows.items()):
    cold.sort(); warm.sort()
    q = lambda v, p: v[min(len(v) - 1, int(len(v) * p))]
    print(f"{label}: n={len(cold)} cold p50 {q(cold, .5):.1f} ms p90 {q(cold, .9):.1f} ms p99 {q(cold, .99):.1f} ms; "
          f"warm p50 {q(warm, .5):.2f} ms; cold - warm p50 {q(cold, .5) - q(warm, .5):.1f} ms")
PY
}
