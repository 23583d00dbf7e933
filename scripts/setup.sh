#!/usr/bin/env bash
# Installs, idempotently, every Debian package the build, the tests and the
# benchmarks need. Packages already present are not touched; apt runs only when
# something is missing. Go 1.26 and Node 20 come with the machine: never
# install Debian's golang-go (1.19) or nodejs.
set -euo pipefail

packages=(
  # build
  build-essential cmake ninja-build pkg-config ccache python3
  # the Python SDK (a virtual environment; its cffi extension needs Python.h)
  python3-venv python3-dev
  # core libraries
  libgrpc++-dev libssl-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libmsgpack-cxx-dev libsimdjson-dev nlohmann-json3-dev
  libboost-dev libboost-system-dev libboost-program-options-dev
  libnghttp2-dev libsqlite3-dev libarchive-dev libcli11-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev
  clang libclang-rt-14-dev
  nghttp2-client nghttp2-proxy wrk nginx-light etcd-server curl
  # tests/e2e/security_test.cc: a caller in its own network namespace (ip netns, veth)
  iproute2
  # the docker runtime's tests start their own dockerd (tests/e2e/docker_test.cc)
  docker.io
  # the Debian package (CPack runs dpkg-shlibdeps), its Python runtime (built
  # for Debian's python3 with its cffi) and its tests
  dpkg-dev python3-cffi
  # browser tests (tests/browser): Debian's Chromium, driven by playwright-core
  chromium
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The user a root leverd runs `process` instances as (leverd --instance-user,
# docs/security.md): a system user and group, no home, no login shell.
if ! getent passwd lever-instance >/dev/null; then
  echo "setup: creating the user lever-instance" >&2
  useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin lever-instance
fi

# npm packages of the compatibility tests (a client Lever did not write),
# installed once from the lock file.
root=$(cd "$(dirname "$0")/.." && pwd)
# The Node SDK's dependencies too; its addon is compiled by scripts/test.sh
# once liblever is built (--ignore-scripts here).
for pkg in tests/compat/node tests/browser sdk/node; do
  if [ -f "$root/$pkg/package.json" ] && [ ! -d "$root/$pkg/node_modules" ]; then
    echo "setup: npm ci in $pkg" >&2
    (cd "$root/$pkg" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
  fi
done

# The Python SDK's virtual environment, under the build dir (never the system
# Python): the build tools of its cffi extension and pytest, from PyPI, once.
# scripts/test.sh installs the SDK itself into it once liblever is built.
venv=$root/${LEVER_BUILD_DIR:-build/main}/py-venv
case ${LEVER_BUILD_DIR:-} in /*) venv=$LEVER_BUILD_DIR/py-venv ;; esac
if ! "$venv/bin/python" -c 'import cffi, pytest, setuptools as s; assert int(s.__version__.split(".")[0]) >= 77' \
    2>/dev/null; then
  echo "setup: Python virtual environment in $venv" >&2
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$root/sdk/python/requirements-dev.txt"
fi

# nginx-light, etcd-server and docker.io start system services on install;
# Lever's tests and benchmarks start their own instances on free ports (and
# their own dockerd on a private socket).
for svc in nginx etcd docker docker.socket containerd; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl stop "$svc" || true
  fi
done
exit 0
