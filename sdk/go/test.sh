#!/usr/bin/env bash
# Checks and tests the Go SDK against a CMake build of Lever:
#
#   sdk/go/test.sh [BUILD_DIR]      # default: $LEVER_BUILD_DIR, else build/main
#
# BUILD_DIR must have liblever (target `lever` of sdk/c), cli/leverd and
# cli/lever (targets leverd, lever_cli) built. The script installs liblever from it into
# BUILD_DIR/go-prefix (`cmake --install`: lever.h, liblever.so, lever.pc),
# points pkg-config at that lever.pc, links with an rpath to its lib dir
# (so test binaries and the services leverd starts with a clean environment
# find liblever.so), then runs gofmt, go vet and `go test -race`.
# Standard library only: nothing is downloaded.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=$(cd "${1:-${LEVER_BUILD_DIR:-$repo/build/main}}" && pwd)

prefix=$build/go-prefix
cmake --install "$build" --prefix "$prefix" >/dev/null
pc=$(find "$prefix" -name lever.pc -print -quit)
[ -n "$pc" ] || { echo "sdk/go/test.sh: no lever.pc under $prefix" >&2; exit 1; }
export PKG_CONFIG_PATH=$(dirname "$pc")${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
libdir=$(cd "$(pkg-config --variable=libdir lever)" && pwd)
export CGO_ENABLED=1
export CGO_LDFLAGS="${CGO_LDFLAGS:-} -Wl,-rpath,$libdir"
export LEVER_BUILD_DIR=$build

cd "$here"
unformatted=$(gofmt -l . "$repo/examples/hello-go")
if [ -n "$unformatted" ]; then
  echo "sdk/go/test.sh: not gofmt'ed: $unformatted" >&2
  exit 1
fi
go vet ./...
go vet -tags lever_static .  # link_static.go: lever-static.pc
(cd "$repo/examples/hello-go" && go vet ./...)
go test -count=1 -race -timeout 300s ${LEVER_GO_TEST_FLAGS:-} ./...
