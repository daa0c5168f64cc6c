#!/usr/bin/env bash
# The main job: install what is needed, build, and run the local mesh demo (examples/quickstart). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "the local mesh creates network namespaces: run as root" >&2; exit 1; }
bash scripts/install-deps.sh
# meshctl runs ztunnel, cni-agent, istio-cni, control-plane and waypoint from its own directory, so build them together.
cargo build --quiet -p meshctl -p ztunnel -p cni-plugin -p control-plane -p waypoint
exec target/debug/meshctl --mesh "${MESHCTL_MESH:-demo}" demo -f examples/quickstart
