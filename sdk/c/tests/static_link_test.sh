#!/bin/sh
# liblever.a through pkg-config alone: examples/hello.c linked with the
# installed lever-static.pc and with the build tree's
# lever-static-uninstalled.pc needs no gRPC, abseil or protobuf shared
# library, nor liblever.so (its DT_NEEDED, read with readelf), and runs.
#
#   static_link_test.sh PREFIX BUILD_DIR SDK_C_BUILD_DIR HELLO_C
set -eu
prefix=$1 build=$2 cbuild=$3 hello=$4
rm -rf "$prefix"
cmake --install "$build" --prefix "$prefix" >/dev/null
pc=$(find "$prefix" -name lever-static.pc)
[ -n "$pc" ] || { echo "no lever-static.pc installed under $prefix" >&2; exit 1; }
check() {  # BINARY: linked, needs libc, needs none of gRPC's libraries
  readelf -d "$1" > "$1.needed"
  grep -q 'NEEDED.*libc\.so' "$1.needed" || { echo "$1: no DT_NEEDED read" >&2; exit 1; }
  if grep -E 'NEEDED.*lib(grpc|gpr|absl|protobuf|upb|re2|cares|address_sorting|lever)' "$1.needed"; then
    echo "$1 needs the shared libraries above" >&2
    exit 1
  fi
  # It runs: gRPC starts and the call fails UNAVAILABLE (nothing on port 1).
  out=$(LEVEROS_IP_PORT=127.0.0.1:1 "$1" 2>&1) && { echo "$1: a call to port 1 succeeded: $out" >&2; exit 1; }
  case $out in
    *"gRPC status 14"*) ;;  # UNAVAILABLE
    *) echo "$1: unexpected output: $out" >&2; exit 1 ;;
  esac
}
cc -std=c99 -o "$prefix/hello-static" "$hello" \
  $(PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --cflags --libs lever-static)
check "$prefix/hello-static"
# The build tree: pkg-config prefers lever-static-uninstalled.pc there.
[ "$(PKG_CONFIG_PATH=$cbuild pkg-config --variable=libdir lever-static)" = "$cbuild" ]
cc -std=c99 -o "$prefix/hello-static-uninstalled" "$hello" \
  $(PKG_CONFIG_PATH=$cbuild pkg-config --cflags --libs lever-static)
check "$prefix/hello-static-uninstalled"
