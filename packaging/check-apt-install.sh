#!/usr/bin/env bash
# A fresh Debian 12 gets a running leverd from the package. Makes a new
# bookworm system with mmdebstrap (from this machine's apt sources) and
# `apt-get install ./lever_*.deb` in it, then:
#   1. runs the installed leverd there the way the unit does (as an
#      unprivileged user with its state dir) and serves examples/hello-js and
#      hello-py from it;
#   2. boots that system with systemd-nspawn, where systemd runs the unit for
#      real (dynamic user, sandbox, system call filter): leverd is active after
#      boot, serves both examples, restarts after a crash, drains on stop, is
#      restarted by an upgrade (reinstall) and purged with its data.
# Not part of scripts/test.sh (it downloads a few hundred MiB of Debian
# packages); run it before a release:
#   packaging/check-apt-install.sh build/main/lever_*.deb
# docs/operations.md says what it showed.
set -euo pipefail
deb=$(readlink -f "$1")
src=$(cd "$(dirname "$0")/.." && pwd)
[ -f "$deb" ] || { echo "usage: $0 lever_<version>_<arch>.deb" >&2; exit 2; }
if ! command -v mmdebstrap >/dev/null || ! command -v systemd-nspawn >/dev/null; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends mmdebstrap systemd-container
fi

root=$(mktemp -d /tmp/lever-apt-XXXXXX)
leverd_pid=
boot_pid=
cleanup() {
  rm -f "$root.boot.log"
  [ -n "$leverd_pid" ] && kill -KILL "$leverd_pid" 2>/dev/null || true
  if [ -n "$boot_pid" ]; then
    kill -TERM $(pgrep -P "$boot_pid") 2>/dev/null || true
    kill -TERM "$boot_pid" 2>/dev/null || true
    wait "$boot_pid" 2>/dev/null || true
  fi
  for m in proc dev/pts dev; do umount -l "$root/$m" 2>/dev/null || true; done
  rm -rf "$root"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }
step "bootstrap a fresh bookworm (priority important, as a new install) into $root"
sources=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null || cat /etc/apt/sources.list)
mmdebstrap --quiet --variant=important --include=ca-certificates,dbus bookworm "$root" - <<<"$sources"

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

step "1. run the unit's ExecStart as an unprivileged user with its state dir, as systemd would"
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
rm -rf "$root/var/lib/lever"
for m in proc dev; do umount "$root/$m"; done

step "2. boot the new system with systemd-nspawn: systemd runs leverd.service"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
echo "listen = \"127.0.0.1:$port\"   # the host's network is shared: a free port" >> "$root/etc/lever/leverd.conf"
cp "$deb" "$root/root/"  # the booted system's /tmp is a fresh tmpfs
timeout 600 systemd-nspawn --quiet -D "$root" --boot --register=no --keep-unit --console=read-only \
  > "$root.boot.log" 2>&1 < /dev/null &
boot_pid=$!
in_boot() { nsenter -t "$init" -a "$@"; }
init=
for _ in $(seq 1 600); do
  init=$(pgrep -P "$(pgrep -P "$boot_pid" systemd-nspawn || echo "$boot_pid")" -x systemd || true)
  [ -n "$init" ] && in_boot systemctl is-active --quiet leverd 2>/dev/null && break
  kill -0 "$boot_pid" 2>/dev/null || { cat "$root.boot.log"; echo "FAIL: the system did not boot" >&2; exit 1; }
  sleep 0.1
done
in_boot systemctl status leverd --no-pager | head -8
main=$(in_boot systemctl show leverd -p MainPID --value)
in_boot grep -E '^(Uid|CapEff|NoNewPrivs|Seccomp):' "/proc/$main/status"
[ "$(in_boot awk '/^Uid:/ {print $2}' "/proc/$main/status")" != 0 ] || { echo "FAIL: leverd runs as root" >&2; exit 1; }
for example in hello-js hello-py; do
  out=$("$root/usr/bin/lever" -H "127.0.0.1:$port" deploy "$root/tmp/$example" >/dev/null &&
        "$root/usr/bin/lever" -H "127.0.0.1:$port" invoke "/$example/sayHello" '"unit"')
  echo "under systemd: /$example/sayHello  →  $out"
  [ "$out" = '"Hello, unit!"' ] || { echo "FAIL" >&2; exit 1; }
done
in_boot sh -c 'kill -SEGV $(systemctl show leverd -p MainPID --value)'
for _ in $(seq 1 100); do
  [ "$(in_boot systemctl show leverd -p NRestarts --value)" = 1 ] && in_boot systemctl is-active --quiet leverd && break
  sleep 0.1
done
echo "after a crash: restarts $(in_boot systemctl show leverd -p NRestarts --value), $(in_boot systemctl is-active leverd)"
out=$("$root/usr/bin/lever" -H "127.0.0.1:$port" invoke /hello-js/sayHello '"again"')
[ "$out" = '"Hello, again!"' ] || { echo "FAIL: the registry did not survive the restart" >&2; exit 1; }
in_boot systemctl stop leverd
in_boot journalctl -u leverd --no-pager -n 30 | grep -E 'draining|stopped' || { echo "FAIL: no drain" >&2; exit 1; }
[ "$(in_boot systemctl show leverd -p Result --value)" = success ] || { echo "FAIL: stop" >&2; exit 1; }
in_boot systemctl start leverd
before=$(in_boot systemctl show leverd -p MainPID --value)
in_boot env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --reinstall "/root/$(basename "$deb")" >/dev/null
after=$(in_boot systemctl show leverd -p MainPID --value)
echo "upgrade (reinstall): leverd $before → $after, $(in_boot systemctl is-active leverd)"
[ "$before" != "$after" ] && [ "$after" != 0 ] || { echo "FAIL: not restarted by the upgrade" >&2; exit 1; }
in_boot env DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq lever >/dev/null
if in_boot test -e /var/lib/private/lever || in_boot test -e /etc/lever; then
  echo "FAIL: purge left data" >&2
  exit 1
fi
echo "purge: leverd $(in_boot systemctl is-active leverd || true), /var/lib/private/lever and /etc/lever gone"
in_boot systemctl poweroff || true
wait "$boot_pid" || true
boot_pid=
step "ok: the package installs with apt on a fresh Debian 12, and systemd runs its leverd, which serves hello"
