#!/usr/bin/env bash
# Installs what is missing, builds Lever and starts it. Until leverd lands
# (issue "leverd on one node") this builds everything and shows the codec
# turning the hello example's arguments into the bytes Lever puts on the wire.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

build=${LEVER_BUILD_DIR:-build/main}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)"

codec="$build/codec/lever-codec"
echo 'The hello call'"'"'s arguments ["world"]:'
printf '  as proto-JSON (the original wire format): '
echo '["world"]' | "$codec" --to proto-json | od -An -tx1 | tr -s ' \n' ' '
echo
printf '  as msgpack (lever-codec: msgpack):         '
echo '["world"]' | "$codec" --to msgpack | od -An -tx1 | tr -s ' \n' ' '
echo
printf '  and back to JSON:                          '
echo '["world"]' | "$codec" --to msgpack | "$codec" --from msgpack
