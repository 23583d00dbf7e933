# Helpers of the packaging tests (sourced). Each test makes its own temp dir,
# starts its own leverd on a free port and removes both, also on failure.
set -euo pipefail

fail() { echo "FAIL: $*" >&2; exit 1; }

TMP=$(mktemp -d /tmp/lever-pkg-XXXXXX)
# A root leverd's instances (another user, docs/security.md) must reach the data dir in it.
chmod 755 "$TMP"
LEVERD_PID=
cleanup() {
  if [ -n "$LEVERD_PID" ]; then kill -KILL "$LEVERD_PID" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT

# run_isolated CMD...: runs CMD with no environment at all and, where this
# machine allows a mount namespace (root), with the source and build trees
# hidden under empty tmpfs mounts, so nothing can be found there.
# It execs: run in the background, $! is the command's own pid.
# LEVER_HIDE_SRC and LEVER_HIDE_BUILD must be exported.
run_isolated() {
  if unshare -m true 2>/dev/null; then
    exec unshare -m sh -c 'mount -t tmpfs none "$LEVER_HIDE_BUILD" && mount -t tmpfs none "$LEVER_HIDE_SRC" && exec env -i "$@"' \
      sh "$@"
  fi
  echo "note: no mount namespace here; the source tree stays visible" >&2
  exec env -i "$@"
}

# start_leverd LEVERD ARGS...: starts it isolated, logging to $TMP/leverd.log,
# and waits (bounded) for "listening on"; sets LEVERD_PID and PORT.
start_leverd() {
  : > "$TMP/leverd.log"
  run_isolated "$@" 2> "$TMP/leverd.log" &
  LEVERD_PID=$!
  local i
  for i in $(seq 1 600); do
    PORT=$(sed -n 's/.* listening on [^ ]*:\([0-9][0-9]*\) .*/\1/p' "$TMP/leverd.log")
    [ -n "$PORT" ] && return 0
    kill -0 "$LEVERD_PID" 2>/dev/null || { cat "$TMP/leverd.log" >&2; fail "leverd exited"; }
    sleep 0.05
  done
  cat "$TMP/leverd.log" >&2
  fail "leverd did not listen within 30 s"
}

# stop_leverd: SIGTERM, and leverd must exit 0 (a clean drain).
stop_leverd() {
  kill -TERM "$LEVERD_PID"
  local rc=0
  wait "$LEVERD_PID" || rc=$?
  LEVERD_PID=
  [ "$rc" = 0 ] || { cat "$TMP/leverd.log" >&2; fail "leverd exited $rc on SIGTERM"; }
}

# serve_hello LEVER EXAMPLE SERVICE: deploys examples/EXAMPLE as SERVICE with
# that lever (no environment) and calls its sayHello.
serve_hello() {
  local lever=$1 example=$2 service=$3
  cp -r "$LEVER_HIDE_SRC/examples/$example" "$TMP/$example"
  sed -i "s/\"helloService\"/\"$service\"/" "$TMP/$example/lever.json"
  env -i "$lever" -H "127.0.0.1:$PORT" deploy "$TMP/$example" || {
    cat "$TMP/leverd.log" >&2
    fail "deploy $example"
  }
  local out
  out=$(env -i "$lever" -H "127.0.0.1:$PORT" invoke "/$service/sayHello" '"world"') || {
    cat "$TMP/leverd.log" >&2
    fail "invoke $service ($example)"
  }
  [ "$out" = '"Hello, world!"' ] || fail "$service ($example) answered $out"
}

# expect_log TEXT: leverd's log has a line containing TEXT.
expect_log() {
  grep -qF -- "$1" "$TMP/leverd.log" || { cat "$TMP/leverd.log" >&2; fail "no log line with: $1"; }
}
