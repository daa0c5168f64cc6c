#!/usr/bin/env bash
# The tools that check the charts in helm/ (tests/tests/helm.rs), for the tests and for users who want to install
# the charts with the same client the tests use:
# - Helm, the real one, v4, built from the Go module helm.sh/helm/v4 (like our other Go-built peers, scripts/kube.sh);
# - kubernetes-validate (Kubernetes' own schemas, bundled: validates offline) and checkov (security lint), from
#   PyPI into .peers/helm-venv in the checkout;
# - the Prometheus Operator's ServiceMonitor CRD, from its Go module, so the test API server can validate the
#   control-plane chart's ServiceMonitor.
#
#   helm.sh build                 all of the above, once (pinned; each part skipped when already there)
#   helm.sh path                  print the helm binary's path
#   helm.sh servicemonitor-crd    print the path of the ServiceMonitor CRD manifest
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib/peers.sh
. "$here/lib/peers.sh"

HELM_VERSION=v4.3.2
HELM_DIR="$PEERS_CACHE/helm-$HELM_VERSION"
HELM_BIN="$HELM_DIR/bin/helm"
KUBERNETES_VALIDATE_VERSION=1.37.0
CHECKOV_VERSION=3.3.30
PROMETHEUS_OPERATOR_VERSION=v0.85.0
root="$(cd "$here/.." && pwd)"
VENV="$root/.peers/helm-venv"

die() { echo "helm.sh: $*" >&2; exit 1; }

# The helm in the cache reports the version it was built from (`helm version --template` prints e.g. v4.3.2).
helm_built() {
  [ -x "$HELM_BIN" ] && [ "$("$HELM_BIN" version --template '{{.Version}}' 2>/dev/null)" = "$HELM_VERSION" ]
}

# helm from a throwaway module that requires helm.sh/helm/v4 at HELM_VERSION. The version variable that Helm's own
# Makefile sets from git is set here, so `helm version` reports HELM_VERSION.
build_helm() {
  if helm_built; then
    echo "helm $HELM_VERSION: $HELM_BIN"
    return
  fi
  peers_need_go
  mkdir -p "$PEERS_CACHE"
  # One build at a time per machine; a second caller waits and then finds the binary.
  exec 9>"$PEERS_CACHE/helm-$HELM_VERSION.lock"
  flock 9
  if helm_built; then
    echo "helm $HELM_VERSION: $HELM_BIN"
    return
  fi
  echo "building helm $HELM_VERSION into $HELM_DIR (once; takes a while)"
  local build="$PEERS_CACHE/build/helm-$HELM_VERSION"
  peers_go_module "$build" "require helm.sh/helm/v4 $HELM_VERSION"
  printf 'package tools\n\nimport _ "helm.sh/helm/v4/cmd/helm"\n' >"$build/tools.go"
  (cd "$build" && go mod tidy)
  local ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION"
  ldflags+=" -X helm.sh/helm/v4/internal/version.gitTreeState=clean"
  mkdir -p "$HELM_DIR/bin"
  (cd "$build" && CGO_ENABLED=0 go build -trimpath -ldflags="$ldflags" -o "$HELM_BIN.tmp" helm.sh/helm/v4/cmd/helm)
  mv "$HELM_BIN.tmp" "$HELM_BIN"
  helm_built || die "$HELM_BIN reports '$("$HELM_BIN" version --template '{{.Version}}' 2>&1)', not $HELM_VERSION"
  echo "helm $HELM_VERSION: $HELM_BIN"
}

# The venv holds exactly the pinned versions.
tools_installed() {
  [ -x "$VENV/bin/kubernetes-validate" ] && [ -x "$VENV/bin/checkov" ] &&
    "$VENV/bin/python" - "$KUBERNETES_VALIDATE_VERSION" "$CHECKOV_VERSION" 2>/dev/null <<'PY'
import sys
from importlib.metadata import version
sys.exit(0 if (version("kubernetes-validate"), version("checkov")) == tuple(sys.argv[1:3]) else 1)
PY
}

install_tools() {
  if tools_installed; then
    echo "kubernetes-validate $KUBERNETES_VALIDATE_VERSION, checkov $CHECKOV_VERSION: $VENV"
    return
  fi
  # One install at a time per checkout; a second caller waits and then finds the tools.
  mkdir -p "$root/.peers"
  exec 8>"$root/.peers/helm-venv.lock"
  flock 8
  if tools_installed; then return; fi
  echo "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION and checkov $CHECKOV_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "checkov==$CHECKOV_VERSION"
  tools_installed || die "$VENV does not hold the pinned kubernetes-validate and checkov"
}

# The unpacked prometheus-operator module's ServiceMonitor CRD (downloaded into the Go module cache if missing).
servicemonitor_crd() {
  local dir
  dir="$(go env GOMODCACHE)/github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION"
  if [ ! -d "$dir" ]; then
    dir=$(go mod download -json "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" |
      sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  fi
  local crd="$dir/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml"
  [ -f "$crd" ] || die "no ServiceMonitor CRD at $crd"
  echo "$crd"
}

cmd_build() {
  build_helm
  install_tools
  peers_need_go
  servicemonitor_crd >/dev/null
}

cmd_path() {
  echo "$HELM_BIN"
}

case "${1:-}" in
  build) cmd_build ;;
  path) cmd_path ;;
  servicemonitor-crd) peers_need_go; servicemonitor_crd ;;
  *) die "usage: helm.sh build | path | servicemonitor-crd" ;;
esac
