#!/usr/bin/env bash
# Real istiod (pilot-discovery) and istioctl, built from the istio.io/istio Go module, for the tests and for users'
# local trials against a `scripts/kube.sh` API server.
#
#   istiod.sh build             build pilot-discovery and istioctl once into $PEERS_CACHE
#   istiod.sh module-dir        print the unpacked istio.io/istio module's directory (Helm charts under
#                               manifests/charts/, e.g. manifests/charts/ztunnel), downloading it if missing; cheap
#   istiod.sh istioctl-path     print the built istioctl's path (fails when it is not built)
#   istiod.sh up DIR KUBE_DIR   start istiod against the API server of `kube.sh up KUBE_DIR`, with its logs and
#                               state in DIR; write DIR/env (ports) and DIR/root-cert.pem (istiod's CA root)
#   istiod.sh down DIR          stop what `up` started (PIDs in DIR/pids) and remove DIR; idempotent
#
# With KUBE_OWNER_PID set, `up` also leaves a watchdog that runs `down` once that process is gone, as kube.sh does.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib/peers.sh
. "$here/lib/peers.sh"

# The module proxy serves istio.io/istio only as pseudo-versions (no release tags); this one is master of
# 2026-08-27, whose VERSION file says 1.31 (Istio's own build stamps it "1.31-dev").
ISTIO_MODULE=istio.io/istio
ISTIO_VERSION=v0.0.0-20260827124520-eed52ebb66ad
ISTIO_REVISION=eed52ebb66ad
ISTIO_DIR="$PEERS_CACHE/istio-$ISTIO_VERSION"
PILOT_DISCOVERY="$ISTIO_DIR/bin/pilot-discovery"
ISTIOCTL="$ISTIO_DIR/bin/istioctl"
KUBECTL="${KUBECTL:-kubectl}"

die() { echo "istiod.sh: $*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------------------------
# build

# module_dir: the unpacked istio.io/istio module in the Go module cache (downloaded if missing; ~1 s when cached).
module_dir() {
  local dir
  dir="$(go env GOMODCACHE)/$ISTIO_MODULE@$ISTIO_VERSION"
  if [ ! -f "$dir/go.mod" ]; then
    dir=$(go mod download -json "$ISTIO_MODULE@$ISTIO_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  fi
  [ -f "$dir/go.mod" ] || die "go mod download $ISTIO_MODULE@$ISTIO_VERSION failed"
  echo "$dir"
}

# built BINARY [FLAGS]: the binary in the cache reports the pinned version (its build tag is the module version).
# istioctl needs --remote=false, else it asks the cluster of the current kubeconfig (and may hang).
built() {
  [ -x "$1" ] && "$1" version -o json "${@:2}" 2>/dev/null </dev/null | grep -q "\"tag\": \"$ISTIO_VERSION\""
}

all_built() {
  built "$PILOT_DISCOVERY" && built "$ISTIOCTL" --remote=false
}

# pilot-discovery and istioctl in one `go build` (they share most packages) from a throwaway module that requires
# istio.io/istio, with Istio's release flags: CGO off, tags vtprotobuf,disable_pgv (Makefile.core.mk's
# STANDARD_TAGS), and the istio.io/istio/pkg/version variables its report_build_info.sh sets from git.
# Istio's go.mod has no `replace` directives at this version, so none need copying (checked below: the build fails
# loudly if one appears, since a dependency's replaces are ignored).
build_istio() {
  if all_built; then
    echo "istio $ISTIO_VERSION: $PILOT_DISCOVERY $ISTIOCTL"
    return
  fi
  peers_need_go
  mkdir -p "$PEERS_CACHE"
  # One build at a time per machine; a second caller waits and then finds the binaries.
  exec 9>"$PEERS_CACHE/istio-$ISTIO_VERSION.lock"
  flock 9
  if all_built; then return; fi
  echo "building pilot-discovery and istioctl $ISTIO_VERSION into $ISTIO_DIR (once; takes a while)"
  local src build="$PEERS_CACHE/build/istio-$ISTIO_VERSION"
  src=$(module_dir)
  if grep -q '^replace\|^\s*[^ ]* => ' "$src/go.mod"; then
    die "$src/go.mod has replace directives: copy them into the build module in scripts/istiod.sh"
  fi
  peers_go_module "$build" "require $ISTIO_MODULE $ISTIO_VERSION"
  printf 'package tools\n\nimport (\n\t_ "%s"\n\t_ "%s"\n)\n' \
    "$ISTIO_MODULE/pilot/cmd/pilot-discovery" "$ISTIO_MODULE/istioctl/cmd/istioctl" >"$build/tools.go"
  (cd "$build" && go mod tidy)
  local ldflags="-s -w" pkg=istio.io/istio/pkg/version
  ldflags+=" -X $pkg.buildVersion=1.31-dev -X $pkg.buildGitRevision=$ISTIO_REVISION -X $pkg.buildStatus=Clean"
  ldflags+=" -X $pkg.buildTag=$ISTIO_VERSION -X $pkg.buildHub=localhost"
  ldflags+=" -X $pkg.buildOS=$(go env GOOS) -X $pkg.buildArch=$(go env GOARCH)"
  mkdir -p "$ISTIO_DIR/bin.tmp"
  (cd "$build" && CGO_ENABLED=0 go build -trimpath -tags vtprotobuf,disable_pgv -ldflags="$ldflags" \
    -o "$ISTIO_DIR/bin.tmp/" "$ISTIO_MODULE/pilot/cmd/pilot-discovery" "$ISTIO_MODULE/istioctl/cmd/istioctl")
  mkdir -p "$ISTIO_DIR/bin"
  mv "$ISTIO_DIR/bin.tmp/pilot-discovery" "$PILOT_DISCOVERY"
  mv "$ISTIO_DIR/bin.tmp/istioctl" "$ISTIOCTL"
  rmdir "$ISTIO_DIR/bin.tmp"
  "$ISTIOCTL" version --remote=false
}

cmd_build() {
  build_istio
}

# ---------------------------------------------------------------------------------------------------------------
# up

# tcp_open PORT: something accepts TCP connections on 127.0.0.1:PORT.
tcp_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# ready HTTP_PORT XDS_PORT XDS_TLS_PORT: istiod's readiness answers 200 and both xDS ports accept connections.
# (istiod opens the xDS listeners last, once its caches are synced, so /ready alone would be enough today.)
ready() {
  curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:$1/ready" && tcp_open "$2" && tcp_open "$3"
}

# The root certificate istiod publishes (ConfigMap istio-ca-root-cert, key root-cert.pem) in its own namespace.
published_root() {
  KUBECONFIG="$1" "$KUBECTL" get configmap istio-ca-root-cert -n istio-system \
    -o 'jsonpath={.data.root-cert\.pem}' 2>/dev/null
}

write_root_cert() {
  local dir=$1 kubeconfig=$2 root
  root=$(published_root "$kubeconfig") && grep -q 'BEGIN CERTIFICATE' <<<"$root" || return 1
  printf '%s\n' "$root" >"$dir/root-cert.pem"
}

# Mesh config as Istio's ambient profile sets it (trust domain cluster.local, the default; HBONE on for proxies).
# istiod reads it from this file instead of the `istio` ConfigMap (the file wins when it exists).
write_mesh_config() {
  cat >"$1/mesh.yaml" <<'EOF'
trustDomain: cluster.local
rootNamespace: istio-system
defaultConfig:
  discoveryAddress: istiod.istio-system.svc:15012
  proxyMetadata:
    ISTIO_META_ENABLE_HBONE: "true"
EOF
  echo 'networks: {}' >"$1/meshNetworks.yaml"
}

# The namespace and ServiceAccount Istio's chart would create (no controller-manager here: nothing else makes
# ServiceAccounts). istiod itself talks to the API server as cluster-admin (KUBE_DIR/kubeconfig), not through
# the chart's RBAC.
prepare_cluster() {
  local kubeconfig=$1 log=$2
  KUBECONFIG="$kubeconfig" "$KUBECTL" apply -f - >>"$log" 2>&1 <<'EOF'
apiVersion: v1
kind: Namespace
metadata:
  name: istio-system
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: istiod
  namespace: istio-system
EOF
}

cmd_up() {
  local dir=${1:?usage: istiod.sh up DIR KUBE_DIR} kube_dir=${2:?usage: istiod.sh up DIR KUBE_DIR}
  [ -x "$PILOT_DISCOVERY" ] || die "$PILOT_DISCOVERY is missing: run 'scripts/istiod.sh build' first"
  [ -f "$kube_dir/kubeconfig" ] || die "$kube_dir/kubeconfig is missing: run 'scripts/kube.sh up $kube_dir' first"
  kube_dir="$(cd "$kube_dir" && pwd)"
  local kubeconfig="$kube_dir/kubeconfig"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  [ ! -e "$dir/pids" ] || die "$dir is in use (it has a pids file): 'istiod.sh down $dir' first"
  touch "$dir/.istiod.sh"   # marks the directory as ours, for `down`
  : >"$dir/pids"
  if [ -n "${KUBE_OWNER_PID:-}" ]; then
    start watchdog "$dir" bash "$here/istiod.sh" _watch "$dir" "$KUBE_OWNER_PID"
  fi
  prepare_cluster "$kubeconfig" "$dir/setup.log" || fail_with_log "$dir" setup "creating istio-system failed"
  write_mesh_config "$dir"
  local grpc tls http https monitoring ctrlz
  read -r grpc tls http https monitoring ctrlz <<<"$(free_ports 6)"
  # Environment, as Istio's istiod chart sets it with the ambient profile, for this release:
  # - PILOT_ENABLE_AMBIENT=true is the only switch ambient needs here: with it, pilot/pkg/features/ambient.go
  #   defaults PILOT_ENABLE_AMBIENT_WAYPOINTS, PILOT_ENABLE_SENDING_HBONE, PILOT_ENABLE_SIDECAR_LISTENING_HBONE and
  #   AMBIENT_ENABLE_STATUS to true (they are forced off without it).
  # - CA_TRUSTED_NODE_ACCOUNTS=istio-system/ztunnel: the node identity allowed to request certificates for pods of
  #   its node (the chart's default); TOKEN_AUDIENCES=istio-ca: the audience istiod's CA and xDS accept in
  #   callers' service-account tokens, checked with a TokenReview (istiod's default, spelled out).
  # - PILOT_CERT_PROVIDER=istiod with no cacerts in DIR/etc/cacerts (ROOT_CA_DIR): istiod makes its own self-signed
  #   CA and keeps it in the istio-ca-secret Secret; its serving certificate (istiod.istio-system.svc, …) is
  #   signed by that CA.
  # - Webhooks: nothing is disabled. With no injection template (DIR/var/lib/istio/inject) istiod skips the sidecar
  #   injector; the validation server runs on the webhook port but no ValidatingWebhookConfiguration points at it,
  #   so the API server never calls it.
  # - Relative paths istiod uses (./etc/cacerts, ./var/lib/istio/inject, ./var/run/secrets/…) land in DIR: it
  #   runs there (env -C keeps the PID).
  start istiod "$dir" env -C "$dir" \
    PILOT_ENABLE_AMBIENT=true \
    POD_NAME=istiod-local POD_NAMESPACE=istio-system SERVICE_ACCOUNT=istiod REVISION=default \
    CLUSTER_ID=Kubernetes PILOT_CERT_PROVIDER=istiod ENABLE_CA_SERVER=true TOKEN_AUDIENCES=istio-ca \
    CA_TRUSTED_NODE_ACCOUNTS=istio-system/ztunnel PILOT_ENABLE_ANALYSIS=false \
    "$PILOT_DISCOVERY" discovery \
    --kubeconfig "$kubeconfig" \
    --meshConfig "$dir/mesh.yaml" --networksConfig "$dir/meshNetworks.yaml" \
    --clusterID Kubernetes --domain cluster.local \
    --grpcAddr "127.0.0.1:$grpc" --secureGRPCAddr "127.0.0.1:$tls" \
    --httpAddr "127.0.0.1:$http" --httpsAddr "127.0.0.1:$https" \
    --monitoringAddr "127.0.0.1:$monitoring" \
    --ctrlz_address 127.0.0.1 --ctrlz_port "$ctrlz" \
    --keepaliveMaxServerConnectionAge 30m \
    --shutdownDuration 1s
  wait_until "$dir" istiod 180 ready "$http" "$grpc" "$tls"
  wait_until "$dir" istiod 60 write_root_cert "$dir" "$kubeconfig"
  cat >"$dir/env" <<EOF
ISTIOD_XDS_PORT=$grpc
ISTIOD_XDS_TLS_PORT=$tls
ISTIOD_HTTP_PORT=$http
ISTIOD_WEBHOOK_PORT=$https
ISTIOD_MONITORING_PORT=$monitoring
ISTIOD_CTRLZ_PORT=$ctrlz
ISTIOD_PID=$(awk '$1 == "istiod" { print $2 }' "$dir/pids")
ISTIOD_ROOT_CERT=$dir/root-cert.pem
ISTIOD_VERSION=$ISTIO_VERSION
PILOT_DISCOVERY=$PILOT_DISCOVERY
ISTIOCTL=$ISTIOCTL
KUBECONFIG=$kubeconfig
EOF
  echo "istiod $ISTIO_VERSION: xDS 127.0.0.1:$grpc, xDS+TLS 127.0.0.1:$tls, http 127.0.0.1:$http;" \
    "root certificate $dir/root-cert.pem (or: . $dir/env)"
}

# ---------------------------------------------------------------------------------------------------------------
# down

cmd_down() {
  local dir=${1:?usage: istiod.sh down DIR}
  [ -d "$dir" ] || return 0
  dir="$(cd "$dir" && pwd)"
  [ -e "$dir/.istiod.sh" ] || die "$dir was not made by 'istiod.sh up': not removing it"
  if [ -f "$dir/pids" ]; then
    # Reverse start order: the watchdog first, then istiod.
    local name pid
    while read -r name pid; do
      stop_pid "$pid" "$dir"
    done < <(tac "$dir/pids")
  fi
  rm -rf "$dir"
}

# _watch DIR OWNER_PID: `down DIR` once OWNER_PID is gone (or return once DIR is gone).
cmd_watch() {
  local dir=$1 owner=$2
  while kill -0 "$owner" 2>/dev/null && [ -e "$dir/pids" ]; do sleep 1; done
  [ ! -e "$dir/pids" ] || cmd_down "$dir"
}

case "${1:-}" in
  build) cmd_build ;;
  module-dir | chart-dir) peers_need_go; module_dir ;;
  istioctl-path) [ -x "$ISTIOCTL" ] || die "istioctl is not built: run istiod.sh build"; echo "$ISTIOCTL" ;;
  up) cmd_up "${2:-}" "${3:-}" ;;
  down) cmd_down "${2:-}" ;;
  _watch) cmd_watch "$2" "$3" ;;
  *) die "usage: istiod.sh build | module-dir | istioctl-path | up DIR KUBE_DIR | down DIR" ;;
esac
