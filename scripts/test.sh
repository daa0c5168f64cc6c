#!/usr/bin/env bash
# Every test: install what the tests need, build the binaries the end-to-end tests run, run the whole workspace's
# tests, and close with one total line. Needs root (the end-to-end tests create network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "the end-to-end tests create network namespaces: run as root" >&2; exit 1; }
bash scripts/install-deps.sh
bash scripts/kube.sh build   # etcd + kube-apiserver for the tests that need a real API server (built once)
bash scripts/istiod.sh build # istiod (pilot-discovery) + istioctl for tests/tests/istiod.rs (built once)
bash scripts/helm.sh build   # helm, kubernetes-validate and checkov for tests/tests/helm.rs (built once)
bash scripts/images.sh       # the OCI images (release binaries) that tests/tests/images.rs runs with podman
cargo build --quiet --workspace --bins
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --no-fail-fast 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
