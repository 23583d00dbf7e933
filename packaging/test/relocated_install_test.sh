#!/usr/bin/env bash
# `cmake --install` gives a tree that works wherever it is moved: install into
# a temp prefix, move it, start that leverd with no environment and the source
# and build trees out of sight, deploy examples/hello-js and hello-py with
# that lever and call them.   relocated_install_test.sh <build dir> <source dir>
source "$(dirname "$0")/lib.sh"
export LEVER_HIDE_BUILD=$(cd "$1" && pwd) LEVER_HIDE_SRC=$(cd "$2" && pwd)

cmake --install "$LEVER_HIDE_BUILD" --prefix "$TMP/first" >/dev/null
mkdir "$TMP/elsewhere"
mv "$TMP/first" "$TMP/elsewhere/lever"
P=$TMP/elsewhere/lever

for f in bin/leverd bin/lever lib/liblever.so lib/liblever.so.0 include/lever.h lib/pkgconfig/lever.pc \
         lib/cmake/Lever/LeverConfig.cmake lib/cmake/Lever/LeverConfigVersion.cmake \
         lib/lever/node/bin/lever-serve lib/lever/node/build/Release/lever.node lib/lever/node/lib/server.js \
         lib/lever/node/package.json lib/lever/python/bin/lever-serve-py lib/lever/python/leveros/serve.py \
         etc/lever/leverd.conf lib/systemd/system/leverd.service \
         share/doc/lever/copyright; do
  [ -e "$P/$f" ] || fail "missing $f"
done
[ -x "$P/lib/lever/node/bin/lever-serve" ] || fail "lever-serve is not executable"
[ -x "$P/lib/lever/python/bin/lever-serve-py" ] || fail "lever-serve-py is not executable"
ls "$P"/lib/lever/python/leveros/_lever.*.so >/dev/null || fail "no leveros._lever module"

# No binary may point into the build or source tree.
while IFS= read -r elf; do
  if readelf -d "$elf" 2>/dev/null | grep -E 'R(UN)?PATH' | grep -qE "$LEVER_HIDE_BUILD|$LEVER_HIDE_SRC"; then
    fail "$elf has a run path into the build or source tree"
  fi
done < <(find "$P" -type f \( -perm -u+x -o -name '*.so*' -o -name '*.node' \))

# pkg-config answers for where the tree is now.
[ "$(PKG_CONFIG_PATH=$P/lib/pkgconfig pkg-config --variable=libdir lever)" -ef "$P/lib" ] || fail "lever.pc libdir"
[ "$(PKG_CONFIG_PATH=$P/lib/pkgconfig pkg-config --variable=includedir lever)" -ef "$P/include" ] || fail "lever.pc includedir"

start_leverd "$P/bin/leverd" --listen 127.0.0.1:0 --data-dir "$TMP/data"
expect_log "jsEntry services run with $P/lib/lever/node/bin/lever-serve (install prefix)"
expect_log "pyEntry services run with $P/lib/lever/python/bin/lever-serve-py (install prefix)"
serve_hello "$P/bin/lever" hello-js helloJs
serve_hello "$P/bin/lever" hello-py helloPy
stop_leverd
echo "relocated install: $P serves hello in JavaScript and Python"
