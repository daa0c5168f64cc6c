#!/usr/bin/env bash
# Every test: install what the tests need, build the binaries the end-to-end tests run, run the whole workspace's
# tests. Needs root (the end-to-end tests create network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "the end-to-end tests create network namespaces: run as root" >&2; exit 1; }
bash scripts/install-deps.sh
cargo build --quiet --workspace --bins
cargo test --workspace
