# Shared by the scripts that build real third-party peers from Go modules (kube.sh, istiod.sh, …).
# Each peer is built once, pinned to one version, into a cache directory outside the checkout, so fresh clones and
# CI runs on the same machine reuse it. Source this file; it defines PEERS_CACHE and peers_go_module.

PEERS_CACHE="${PEERS_CACHE:-/var/cache/mesh-peers}"
export GOFLAGS="${GOFLAGS:--mod=mod}"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

peers_need_go() {
  command -v go >/dev/null || { echo "go is not installed: the real peers are built from Go modules" >&2; exit 1; }
}

# peers_go_module DIR MODULE_LINES...: writes DIR/go.mod for a throwaway build module (never part of the product).
peers_go_module() {
  local dir=$1; shift
  mkdir -p "$dir"
  printf '%s\n' "module meshpeers/build" "" "go 1.26" "" "$@" >"$dir/go.mod"
}
