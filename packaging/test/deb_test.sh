#!/usr/bin/env bash
# The Debian package, built by CPack from the build tree's install rules.
#   deb_test.sh build    <build> <source> <out>  makes <out>/lever_<version>_<arch>.deb
#   deb_test.sh layout   <build> <source> <out>  dpkg-deb --info/--contents: fields, dependencies, files
#   deb_test.sh extracted <build> <source> <out> dpkg-deb -x into a temp dir: leverd runs there with a
#                                                config file and serves examples/hello-js
#   deb_test.sh unit     <build> <source> <out>  the systemd unit: check_unit.py, and systemd-analyze
#                                                verify and security where systemd is installed
source "$(dirname "$0")/lib.sh"
mode=$1
export LEVER_HIDE_BUILD=$(cd "$2" && pwd) LEVER_HIDE_SRC=$(cd "$3" && pwd)
out=$4
version=$(sed -n 's/^set(CPACK_PACKAGE_VERSION "\(.*\)")$/\1/p' "$LEVER_HIDE_BUILD/CPackConfig.cmake")
deb=$out/lever_${version}_$(dpkg --print-architecture).deb

case $mode in
build)
  rm -rf "$out" && mkdir -p "$out"
  cpack -G DEB --config "$LEVER_HIDE_BUILD/CPackConfig.cmake" -B "$out" > "$out/cpack.log" 2>&1 || {
    cat "$out/cpack.log" >&2
    fail "cpack"
  }
  [ -f "$deb" ] || { ls "$out" >&2; fail "no $deb"; }
  echo "built $deb ($(stat -c %s "$deb") bytes)"
  ;;

layout)
  info=$(dpkg-deb --info "$deb")
  field() { dpkg-deb --field "$deb" "$1"; }
  [ "$(field Package)" = lever ] || fail "Package: $(field Package)"
  [ "$(field Version)" = "$version" ] || fail "Version: $(field Version)"
  [ "$(field Architecture)" = "$(dpkg --print-architecture)" ] || fail "Architecture"
  # dpkg-shlibdeps' dependencies: the Debian runtime libraries leverd links.
  depends=$(field Depends)
  for lib in libc6 libstdc++6 libgrpc++1.51 libnghttp2-14 libsqlite3-0 libarchive13; do
    [[ ", $depends" == *", $lib (>= "* ]] || fail "Depends lacks $lib: $depends"
  done
  for r in "nodejs (>= 18)" "python3 (>= 3.11)" "python3 (<< 3.12)" python3-cffi-backend; do
    [[ ", $(field Recommends)," == *", $r,"* ]] || fail "Recommends lacks $r: $(field Recommends)"
  done
  for part in conffiles postinst prerm postrm; do
    grep -qE " $part( |$)" <<<"$info" || fail "no $part in the control archive"
  done
  [ "$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)" = /etc/lever/leverd.conf ] || fail conffiles
  contents=$(dpkg-deb --contents "$deb" | awk '{print $6}')
  grep -qE '^\./usr/lib/lever/python/leveros/_lever\.cpython-[0-9]+-.*\.so$' <<<"$contents" ||
    fail "the package lacks leveros._lever"
  for f in ./usr/bin/leverd ./usr/bin/lever ./usr/lib/liblever.so ./usr/lib/liblever.so.0 \
           "./usr/lib/liblever.so.$version" ./usr/include/lever.h ./usr/lib/pkgconfig/lever.pc \
           ./usr/lib/liblever.a ./usr/lib/pkgconfig/lever-static.pc \
           ./usr/lib/cmake/Lever/LeverConfig.cmake ./usr/lib/lever/node/bin/lever-serve \
           ./usr/lib/lever/node/build/Release/lever.node ./usr/lib/lever/node/lib/server.js \
           ./usr/lib/lever/python/bin/lever-serve-py ./usr/lib/lever/python/leveros/serve.py \
           ./lib/systemd/system/leverd.service ./etc/lever/leverd.conf ./usr/share/doc/lever/copyright \
           ./usr/share/doc/lever/operations.md; do
    grep -qxF "$f" <<<"$contents" || fail "the package lacks $f"
  done
  # Nothing outside /usr, /etc/lever and the unit.
  stray=$(grep -vE '^\./($|usr/|etc/$|etc/lever/|lib/$|lib/systemd/)' <<<"$contents" || true)
  [ -z "$stray" ] || fail "unexpected paths: $stray"
  dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/share/doc/lever/copyright | cmp -s - "$LEVER_HIDE_SRC/LICENSE" ||
    fail "copyright is not LICENSE"
  dpkg-deb --fsys-tarfile "$deb" | tar -xO ./lib/systemd/system/leverd.service |
    grep -qx 'ExecStart=/usr/bin/leverd --config /etc/lever/leverd.conf' || fail "the unit's ExecStart"
  echo "layout of $deb: ok"
  ;;

extracted)
  root=$TMP/root
  dpkg-deb -x "$deb" "$root"
  conf=$TMP/leverd.conf
  # The shipped file with settings for this test: a free port, a temp data dir.
  cp "$root/etc/lever/leverd.conf" "$conf"
  cat >> "$conf" <<CONF
listen = "127.0.0.1:0"   # any free port
data-dir = "$TMP/data #1"
workers = 1
CONF
  # The shipped file names every flag (commented out: the defaults) and reads.
  shipped=$("$root/usr/bin/leverd" --config "$root/etc/lever/leverd.conf" --print-config) || fail "shipped leverd.conf"
  for key in $(sed -n 's/^\([a-z-]*\) = .*/\1/p' <<<"$shipped"); do
    [ "$key" = data-dir ] && continue  # its default depends on the environment
    grep -q "^# $key = " "$root/etc/lever/leverd.conf" || fail "leverd.conf does not show --$key"
    default=$(sed -n "s/^$key = //p" <<<"$shipped")
    grep -qxF "# $key = $default" "$root/etc/lever/leverd.conf" || fail "leverd.conf: --$key's default is $default"
  done
  # The command line wins over the file.
  printed=$("$root/usr/bin/leverd" --config "$conf" --workers 2 --print-config)
  grep -qx 'workers = 2' <<<"$printed" || fail "--workers 2 did not override the file: $printed"
  grep -qxF "data-dir = \"$TMP/data #1\"" <<<"$printed" || fail "data-dir from the file: $printed"
  start_leverd "$root/usr/bin/leverd" --config "$conf"
  expect_log "jsEntry services run with $root/usr/lib/lever/node/bin/lever-serve (install prefix)"
  expect_log "pyEntry services run with $root/usr/lib/lever/python/bin/lever-serve-py (install prefix)"
  expect_log "(data dir $TMP/data #1)"
  serve_hello "$root/usr/bin/lever" hello-js helloJs
  serve_hello "$root/usr/bin/lever" hello-py helloPy
  stop_leverd
  echo "extracted package: leverd with $conf serves hello"
  ;;
unit)
  dpkg-deb -x "$deb" "$TMP/root"
  unit=$TMP/root/lib/systemd/system/leverd.service
  python3 "$(dirname "$0")/check_unit.py" "$unit"
  if command -v systemd-analyze >/dev/null; then
    # The same unit, its ExecStart pointed at the extracted leverd (verify
    # checks that the program exists). verify only warns about unknown keys
    # and bad values, so any output fails.
    sed "s|^ExecStart=/usr/bin/leverd|ExecStart=$TMP/root/usr/bin/leverd|" "$unit" > "$TMP/leverd.service"
    report=$(systemd-analyze verify "$TMP/leverd.service" 2>&1) || fail "systemd-analyze verify: $report"
    [ -z "$report" ] || fail "systemd-analyze verify: $report"
    # The hardening stays where docs/operations.md says (1.5 of 10 today).
    systemd-analyze security --offline=yes --threshold=25 "$TMP/leverd.service" > "$TMP/security" 2>&1 ||
      { tail -3 "$TMP/security" >&2; fail "exposure above 2.5"; }
    echo "systemd-analyze: verify clean, $(grep -o 'exposure level.*' "$TMP/security")"
  else
    echo "note: no systemd-analyze here; the unit was checked by check_unit.py alone"
  fi
  ;;
*) fail "mode $mode" ;;
esac
