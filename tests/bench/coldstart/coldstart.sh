#!/usr/bin/env bash
# Cold start of the process runtime: the first call to a scaled-to-zero
# hello service until its reply (curl over the HTTP API), beside a warm call
# right after it. Interleaved in each round, one leverd each:
#   cpp-shared-noact  C++ (gRPC as shared libraries), --socket-activation false
#   cpp-shared        the same binary, socket activation (the default)
#   cpp-static        C++ linked to gRPC statically (examples/hello-cpp's serve)
#   go-noact / go     Go (cgo over liblever.so), without and with activation
#   go-static         Go built with -tags lever_static (liblever.a, gRPC's
#                     archives: docs/sdk-go.md "Static linking"), activation
#   tests/bench/coldstart/coldstart.sh [build dir] [runs per round] [rounds]
# Not a test: it prints figures for docs/BENCHMARKS.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
build=$(cd "${1:-$root/build/main}" && pwd)
runs=${2:-10}
rounds=${3:-2}
tmp=$(mktemp -d /tmp/lever-coldstart-XXXXXX)
chmod 755 "$tmp"  # process instances run as another user under a root leverd
leverd_pid=
trap '[ -n "$leverd_pid" ] && kill "$leverd_pid" 2>/dev/null; rm -rf "$tmp"' EXIT

source "$root/tests/bench/coldstart/lib.sh"

# The services: lever.json and serve in $tmp/<name>.
for v in cpp-shared cpp-static go go-static; do mkdir "$tmp/$v"; done
cp "$root/examples/hello-cpp/lever.json" "$build/examples/hello-cpp/serve-shared" "$tmp/cpp-shared/"
mv "$tmp/cpp-shared/serve-shared" "$tmp/cpp-shared/serve"
cp "$root/examples/hello-cpp/lever.json" "$build/examples/hello-cpp/serve" "$tmp/cpp-static/"
cp "$root/examples/hello-go/lever.json" "$tmp/go/"
cp "$root/examples/hello-go/lever.json" "$tmp/go-static/"
libdir="$build/sdk/c"
cat > "$tmp/lever.pc" <<EOF
Name: lever
Description: liblever
Version: 0.2.0
Libs: -L$libdir -llever
Cflags: -I$root/sdk/c/include
EOF
(cd "$root/examples/hello-go" && PKG_CONFIG_PATH=$tmp CGO_ENABLED=1 CGO_LDFLAGS="-Wl,-rpath,$libdir" \
  go build -o "$tmp/go/serve" .)
# The build tree's lever-static-uninstalled.pc (sdk/c): liblever.a there.
(cd "$root/examples/hello-go" && PKG_CONFIG_PATH=$libdir CGO_ENABLED=1 \
  go build -tags lever_static -o "$tmp/go-static/serve" .)
if readelf -d "$tmp/go-static/serve" | grep -E 'NEEDED.*lib(grpc|absl|protobuf|lever)'; then
  echo "coldstart.sh: go-static needs the shared libraries above" >&2
  exit 1
fi
chmod -R a+rX "$libdir"

one_round() {  # label service-dir method leverd-flags...
  local label=$1 svc=$2 method=$3 log=$tmp/leverd-$1.log port
  shift 3
  "$build/cli/leverd" --listen 127.0.0.1:0 --data-dir "$tmp/data-$label" --idle-timeout 300ms "$@" 2> "$log" &
  leverd_pid=$!
  port=$(leverd_port "$log")
  if ! "$build/cli/lever" -H "127.0.0.1:$port" deploy "$tmp/$svc" > "$tmp/deploy.log" 2>&1; then
    echo "coldstart.sh: deploy of $svc ($label) failed:" >&2
    cat "$tmp/deploy.log" "$log" >&2
    exit 1
  fi
  measure "$label" "$port" "$runs" 0.2 "$method"  # the parked child refills after the instance stopped
  kill "$leverd_pid"; wait "$leverd_pid" || true; leverd_pid=
  rm -rf "$tmp/data-$label"
}

for r in $(seq 1 "$rounds"); do
  one_round cpp-shared-noact cpp-shared sayHello --socket-activation false
  one_round cpp-shared cpp-shared sayHello
  one_round cpp-static cpp-static sayHello
  one_round go-noact go SayHello --socket-activation false
  one_round go go SayHello
  one_round go-static go-static SayHello
done
summarize
