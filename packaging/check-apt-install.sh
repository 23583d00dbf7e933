#!/usr/bin/env bash
# A fresh Debian 12 gets a running leverd from the package: makes a new
# bookworm system with mmdebstrap (from this machine's apt sources),
# `apt-get install ./lever_*.deb` in it, then runs the installed leverd there
# the way the unit does and serves examples/hello-js and hello-py from it. Not part of
# scripts/test.sh (it downloads a few hundred MiB of Debian packages); run it
# before a release:   packaging/check-apt-install.sh build/main/lever_*.deb
# docs/operations.md says what it checks and what it cannot (no systemd as
# PID 1 here, so the unit's sandbox itself is not exercised).
set -euo pipefail
deb=$(readlink -f "$1")
src=$(cd "$(dirname "$0")/.." && pwd)
[ -f "$deb" ] || { echo "usage: $0 lever_<version>_<arch>.deb" >&2; exit 2; }
command -v mmdebstrap >/dev/null || { apt-get update -qq; apt-get install -y -qq --no-install-recommends mmdebstrap; }

root=$(mktemp -d /tmp/lever-apt-XXXXXX)
leverd_pid=
cleanup() {
  [ -n "$leverd_pid" ] && kill -KILL "$leverd_pid" 2>/dev/null || true
  for m in proc dev/pts dev; do umount -l "$root/$m" 2>/dev/null || true; done
  rm -rf "$root"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }
step "bootstrap a fresh bookworm (priority important, as a new install) into $root"
sources=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null || cat /etc/apt/sources.list)
mmdebstrap --quiet --variant=important --include=ca-certificates bookworm "$root" - <<<"$sources"

step "apt-get install ./$(basename "$deb")"
cp "$deb" "$root/tmp/"
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
cp /etc/resolv.conf "$root/etc/resolv.conf"
chroot "$root" apt-get update -qq  # a new system's first step (mmdebstrap leaves no lists)
chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y "/tmp/$(basename "$deb")"
chroot "$root" dpkg-query -W -f '${Package} ${Version} ${Status}\n' lever | tee /dev/stderr | grep -q 'install ok installed'
echo "node in the new system: $(chroot "$root" node --version 2>&1 || echo none)"
echo "python in the new system: $(chroot "$root" python3 --version 2>&1 || echo none)"
link=$root/etc/systemd/system/multi-user.target.wants/leverd.service
[ -L "$link" ] && echo "enabled: $(readlink "$link")" || { echo "FAIL: leverd.service not enabled" >&2; exit 1; }

step "run the unit's ExecStart as an unprivileged user with its state dir, as systemd would"
exec_start=$(sed -n 's/^ExecStart=//p' "$root/lib/systemd/system/leverd.service")
mkdir -p "$root/var/lib/lever" && chown 65534:65534 "$root/var/lib/lever" && chmod 0700 "$root/var/lib/lever"
# shellcheck disable=SC2086 # ExecStart is a command line
chroot --userspec=65534:65534 "$root" env -i STATE_DIRECTORY=/var/lib/lever $exec_start --listen 127.0.0.1:0 \
  2> "$root/tmp/leverd.log" &
leverd_pid=$!
port=
for _ in $(seq 1 600); do
  port=$(sed -n 's/.* listening on [^ ]*:\([0-9][0-9]*\) .*/\1/p' "$root/tmp/leverd.log")
  [ -n "$port" ] && break
  kill -0 "$leverd_pid" 2>/dev/null || break
  sleep 0.05
done
cat "$root/tmp/leverd.log"
[ -n "$port" ] || { echo "FAIL: leverd did not start" >&2; exit 1; }
for example in hello-js hello-py; do
  cp -r "$src/examples/$example" "$root/tmp/$example"
  sed -i "s/\"helloService\"/\"$example\"/" "$root/tmp/$example/lever.json"
  chroot "$root" lever -H "127.0.0.1:$port" deploy "/tmp/$example"
  out=$(chroot "$root" lever -H "127.0.0.1:$port" invoke "/$example/sayHello" '"world"')
  echo "lever invoke /$example/sayHello '\"world\"'  →  $out"
  [ "$out" = '"Hello, world!"' ] || { echo "FAIL" >&2; exit 1; }
done
kill -TERM "$leverd_pid"
wait "$leverd_pid"
leverd_pid=
step "ok: the package installs with apt on a fresh Debian 12 and its leverd serves hello"
