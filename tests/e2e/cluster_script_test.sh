#!/usr/bin/env bash
# scripts/cluster.sh end to end (docs/cluster.md "A local cluster"): it
# starts a 3-member etcd and 3 leverd nodes, a deploy on n1 is called through
# n3 (CLI and HTTP), and SIGINT (Ctrl-C) stops everything it started and
# removes its temp dir.
#   cluster_script_test.sh <dir of leverd and lever> <hello-cpp service dir>
set -euo pipefail
bin=$1
hello=$2
here=$(cd "$(dirname "$0")" && pwd)
fail() { echo "FAIL: $*" >&2; [ -n "${out:-}" ] && cat "$out" >&2; exit 1; }

# A port base whose 12 ports are free (the script's layout: P+1..3, P+11..13,
# P+301..303, P+311..313), below the ephemeral range (32768-60999) so that no
# outgoing connection holds one.
free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
base=
for _ in $(seq 1 20); do
  b=$(( (RANDOM % 190) * 100 + 11000 ))
  ok=1
  for o in 1 2 3 11 12 13 301 302 303 311 312 313; do free $((b + o)) || ok=0; done
  if [ $ok = 1 ]; then base=$b; break; fi
done
[ -n "$base" ] || fail "no free port range"

out=$(mktemp)
trap 'rm -f "$out"; [ -n "${pid:-}" ] && kill -TERM "$pid" 2>/dev/null; true' EXIT
# Job control: the script runs in its own process group and, unlike a plain
# background job, does not start with SIGINT ignored.
set -m
LEVER_BIN_DIR=$bin LEVER_CLUSTER_PORT=$base "$here/../../scripts/cluster.sh" >"$out" 2>&1 &
pid=$!
set +m
for _ in $(seq 1 600); do
  grep -q '^Ctrl-C stops' "$out" && break
  kill -0 "$pid" 2>/dev/null || fail "cluster.sh exited before it was up"
  sleep 0.05
done
grep -q '^Ctrl-C stops' "$out" || fail "cluster.sh was not up within 30 s"
dir=$(sed -n 's/.*(data and logs in \(.*\))\.$/\1/p' "$out")
[ -d "$dir" ] || fail "no temp dir in its output"
LEVER_ADMIN_TOKEN=$(sed -n 's/^ *export LEVER_ADMIN_TOKEN=//p' "$out")
export LEVER_ADMIN_TOKEN
grep -q "127.0.0.1:$((base + 3))" "$out" || fail "it does not name n3's address"

d=$("$bin/lever" -H "127.0.0.1:$((base + 1))" deploy "$hello" 2>&1) || fail "deploy on n1: $d"
# n3 sees n1's deploy a watch delivery later (docs/cluster.md): a call in
# between is NOT_FOUND "not live", so wait for it to be live there, bounded.
for _ in $(seq 1 200); do
  got=$("$bin/lever" -H "127.0.0.1:$((base + 3))" invoke /helloService/sayHello '"n3"' 2>&1) && break
  case "$got" in *"is not live"*) sleep 0.05 ;; *) break ;; esac
done
[ "$got" = '"Hello, n3!"' ] || fail "invoke through n3 answered $got"
got=$(curl -s -H 'Content-Type: application/json' -d '["http"]' \
  "http://127.0.0.1:$((base + 3))/helloService/sayHello?forceenv=dev.lever")
[ "$got" = '"Hello, http!"' ] || fail "HTTP through n3 answered $got"
"$bin/lever" -H "127.0.0.1:$((base + 2))" ps | grep -q "^n3 " || fail "lever ps on n2 does not list n3"

# Ctrl-C: it stops everything and removes its dir (bounded: 40 s).
kill -INT "$pid"
for _ in $(seq 1 800); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
kill -0 "$pid" 2>/dev/null && fail "cluster.sh still runs 40 s after SIGINT"
wait "$pid" || true
pid=
left=$(pgrep -f "$dir" || true)
[ -z "$left" ] || fail "still running after it stopped: $(ps -o pid,args -p "${left//$'\n'/,}")"
[ ! -e "$dir" ] || fail "$dir was not removed"
grep -q "cluster: stopped; removed $dir" "$out" || fail "no goodbye"
echo "PASS: cluster.sh up, deploy on n1, calls through n3, stopped clean (ports from $base)"
