#!/usr/bin/env bash
# Installs what is missing, builds Lever, starts leverd on 127.0.0.1:8080 and
# serves the hello example: it deploys examples/hello-js (the original's
# quick start, on the Node SDK) and calls it once.
# leverd stays in the foreground; Ctrl-C stops it (SIGTERM drains calls).
#   LEVER_LISTEN=127.0.0.1:8080 LEVER_DATA_DIR=~/.lever scripts/start.sh
# The data dir defaults to leverd's own default: ~/.lever, or /var/lib/lever
# for root (whose instances run as another user, who cannot pass /root).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

build=${LEVER_BUILD_DIR:-build/main}
listen=${LEVER_LISTEN:-127.0.0.1:8080}
if [ "$(id -u)" = 0 ]; then data=${LEVER_DATA_DIR:-/var/lib/lever}; else data=${LEVER_DATA_DIR:-$HOME/.lever}; fi
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" --target leverd lever_cli lever
abs_build=$(cd "$build" && pwd)
# The Node SDK (its addon links liblever); leverd finds its lever-serve.
(cd sdk/node && LEVER_BUILD_DIR="$abs_build" npm install --no-audit --no-fund --loglevel=error >/dev/null)

bin="$build/cli"
"$bin/leverd" --listen "$listen" --data-dir "$data" &
leverd=$!
trap 'kill -TERM $leverd 2>/dev/null; wait $leverd' INT TERM

# Wait for the port (bounded), then deploy and call the hello service.
for _ in $(seq 1 200); do
  if "$bin/lever" -H "$listen" env list >/dev/null 2>&1; then break; fi
  if ! kill -0 $leverd 2>/dev/null; then echo "start: leverd exited" >&2; exit 1; fi
  sleep 0.05
done
"$bin/lever" -H "$listen" deploy examples/hello-js
printf 'lever invoke /helloService/sayHello %s  →  ' "'\"world\"'"
"$bin/lever" -H "$listen" invoke /helloService/sayHello '"world"'
cat <<MSG

Lever is running on $listen (data in $data). Try:
  $bin/lever invoke /helloService/sayHello '"you"'
  $bin/lever ps
Ctrl-C stops it.
MSG
wait $leverd
