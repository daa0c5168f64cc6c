#!/usr/bin/env bash
# Installs (idempotently) the system packages the local mesh and its tests use. Needs root on Debian.
set -euo pipefail
packages=(iproute2 nftables iptables containernetworking-plugins procps curl jq python3 tcpdump iperf3)
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
