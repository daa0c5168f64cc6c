#!/usr/bin/env bash
# A real Kubernetes API server (kube-apiserver built from k8s.io/kubernetes, with its own etcd) on 127.0.0.1, for
# the tests and for users' local trials. There is no controller-manager, scheduler or kubelet: nothing creates
# ServiceAccounts (create them, `default` included, before the pods that use them), nothing schedules pods or sets
# their status (patch the status subresource as a kubelet would), nothing collects garbage or finishes namespace
# deletion.
#
#   kube.sh build      install etcd (Debian's etcd-server) and build kube-apiserver once into $PEERS_CACHE
#   kube.sh up DIR     start etcd + kube-apiserver with state, certificates and logs in DIR; install the Gateway API,
#                      Istio and control-plane/crds CRDs; write DIR/kubeconfig (cluster-admin) and DIR/env
#   kube.sh down DIR   stop what `up` started (PIDs in DIR/pids) and remove DIR; idempotent
#
# With KUBE_OWNER_PID set, `up` also leaves a watchdog that runs `down` once that process is gone, so a test that
# is killed (not just one that panics) does not leave an API server behind.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib/peers.sh
. "$here/lib/peers.sh"

KUBE_VERSION=v1.36.3
KUBE_STAGING_VERSION=v0.36.3   # every k8s.io/<staging> module at the version matching KUBE_VERSION
GATEWAY_API_VERSION=v1.6.3
ISTIO_API_VERSION=v1.32.0
KUBE_DIR="$PEERS_CACHE/kubernetes-$KUBE_VERSION"
KUBE_APISERVER="$KUBE_DIR/bin/kube-apiserver"
SA_ISSUER=https://kubernetes.default.svc.cluster.local
KUBECTL="${KUBECTL:-kubectl}"

die() { echo "kube.sh: $*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------------------------
# build

# Debian's etcd-server (3.4.23). kube-apiserver 1.36 runs on it; it only notes that this etcd cannot answer
# RequestWatchProgress (needs 3.4.31+), so consistent LISTs are served from etcd instead of the watch cache.
# The packaged service is never wanted: each API server gets its own etcd on free ports.
install_etcd() {
  if ! dpkg-query -W -f='${Status}' etcd-server 2>/dev/null | grep -q "install ok installed"; then
    echo "installing etcd-server"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends etcd-server >/dev/null
  fi
  if command -v systemctl >/dev/null && systemctl is-active --quiet etcd 2>/dev/null; then
    echo "stopping and disabling the packaged etcd service"
    systemctl disable --now etcd
  fi
}

# The API server in the cache reports the version it was built from.
apiserver_built() {
  [ -x "$KUBE_APISERVER" ] && [ "$("$KUBE_APISERVER" --version 2>/dev/null)" = "Kubernetes $KUBE_VERSION" ]
}

# kube-apiserver from a throwaway module that requires k8s.io/kubernetes and replaces each staging module (which
# k8s.io/kubernetes pins at v0.0.0 with local replaces) by its published version. The version variables that
# Kubernetes' own build sets from git are set here, so /version reports KUBE_VERSION (clients such as istiod check
# it).
build_apiserver() {
  if apiserver_built; then
    echo "kube-apiserver $KUBE_VERSION: $KUBE_APISERVER"
    return
  fi
  peers_need_go
  mkdir -p "$PEERS_CACHE"
  # One build at a time per machine; a second caller waits and then finds the binary.
  exec 9>"$PEERS_CACHE/kubernetes-$KUBE_VERSION.lock"
  flock 9
  if apiserver_built; then return; fi
  echo "building kube-apiserver $KUBE_VERSION into $KUBE_DIR (once; takes a while)"
  local build="$PEERS_CACHE/build/kubernetes-$KUBE_VERSION" gomod staging m
  gomod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [ -n "$gomod" ] || die "go mod download k8s.io/kubernetes@$KUBE_VERSION gave no go.mod"
  staging=$(sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$gomod")
  local lines=("require k8s.io/kubernetes $KUBE_VERSION" "")
  for m in $staging; do lines+=("replace $m => $m $KUBE_STAGING_VERSION"); done
  peers_go_module "$build" "${lines[@]}"
  printf 'package tools\n\nimport _ "k8s.io/kubernetes/cmd/kube-apiserver"\n' >"$build/tools.go"
  (cd "$build" && go mod tidy)
  local minor=${KUBE_VERSION#v1.} ldflags="-s -w" pkg
  minor=${minor%%.*}
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  done
  mkdir -p "$KUBE_DIR/bin"
  (cd "$build" && go build -trimpath -ldflags="$ldflags" -o "$KUBE_APISERVER.tmp" k8s.io/kubernetes/cmd/kube-apiserver)
  mv "$KUBE_APISERVER.tmp" "$KUBE_APISERVER"
  "$KUBE_APISERVER" --version
}

# The modules whose CRDs `up` installs, downloaded now so that `up` needs no network.
download_crd_modules() {
  crd_module_dir sigs.k8s.io/gateway-api "$GATEWAY_API_VERSION" >/dev/null
  crd_module_dir istio.io/api "$ISTIO_API_VERSION" >/dev/null
}

# crd_module_dir MODULE VERSION: the unpacked module's directory in the Go module cache (downloaded if missing).
crd_module_dir() {
  local dir
  dir="$(go env GOMODCACHE)/$1@$2"
  if [ ! -d "$dir" ]; then
    dir=$(go mod download -json "$1@$2" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  fi
  [ -d "$dir" ] || die "go mod download $1@$2 failed"
  echo "$dir"
}

cmd_build() {
  install_etcd
  build_apiserver
  download_crd_modules
}

# ---------------------------------------------------------------------------------------------------------------
# up

# make_pki DIR: a serving CA and certificate, a client CA with an admin (system:masters) certificate, and the
# service-account signing key pair. EC P-256 throughout: fast to generate.
make_pki() {
  local pki=$1
  mkdir -p "$pki"
  (
    cd "$pki"
    key() { openssl ecparam -name prime256v1 -genkey -noout -out "$1" 2>/dev/null; }
    ca() { key "$1.key" && openssl req -x509 -new -key "$1.key" -subj "/CN=$2" -days 3650 -out "$1.crt" 2>/dev/null; }
    # leaf NAME CA SUBJECT EXTENSIONS
    leaf() {
      key "$1.key"
      openssl req -new -key "$1.key" -subj "$3" -out "$1.csr" 2>/dev/null
      printf '%s\n' "$4" >"$1.ext"
      openssl x509 -req -in "$1.csr" -CA "$2.crt" -CAkey "$2.key" -CAcreateserial -days 3650 \
        -extfile "$1.ext" -out "$1.crt" 2>/dev/null
      rm -f "$1.csr" "$1.ext"
    }
    ca serving-ca "mesh test apiserver serving CA"
    leaf apiserver serving-ca "/CN=kube-apiserver" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    ca client-ca "mesh test apiserver client CA"
    leaf admin client-ca "/O=system:masters/CN=admin" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
    key sa.key
    openssl ec -in sa.key -pubout -out sa.pub 2>/dev/null
  ) || die "making certificates in $pki failed"
}

start_etcd() {
  local dir=$1 client=$2 peer=$3
  start etcd "$dir" etcd --name default --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "default=http://127.0.0.1:$peer" --initial-cluster-state new
  wait_until "$dir" etcd 20 curl -fsS --max-time 1 "http://127.0.0.1:$client/health"
}

start_apiserver() {
  local dir=$1 etcd_port=$2 port=$3 pki="$1/pki"
  # --allow-privileged: as every real cluster (kubeadm) sets it, so privileged DaemonSets (istio-cni) are admitted.
  # --endpoint-reconciler-type=none: the `kubernetes` Service would get 127.0.0.1 as its endpoint, which Endpoints
  # validation rejects (loopback); the Service itself is still created.
  start kube-apiserver "$dir" "$KUBE_APISERVER" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$port" \
    --cert-dir "$pki" --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/client-ca.crt" \
    --authorization-mode Node,RBAC \
    --allow-privileged=true \
    --service-account-issuer "$SA_ISSUER" \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --api-audiences "$SA_ISSUER,istio-ca" \
    --service-cluster-ip-range 10.96.0.0/16 \
    --endpoint-reconciler-type none \
    --profiling=false
  wait_until "$dir" kube-apiserver 90 curl -fsS --max-time 2 --cacert "$pki/serving-ca.crt" \
    --cert "$pki/admin.crt" --key "$pki/admin.key" "https://127.0.0.1:$port/readyz"
}

write_kubeconfig() {
  local dir=$1 url=$2 pki="$1/pki"
  b64() { base64 -w0 <"$1"; }
  cat >"$dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: mesh-test
  cluster:
    server: $url
    certificate-authority-data: $(b64 "$pki/serving-ca.crt")
users:
- name: admin
  user:
    client-certificate-data: $(b64 "$pki/admin.crt")
    client-key-data: $(b64 "$pki/admin.key")
contexts:
- name: mesh-test
  context: {cluster: mesh-test, user: admin}
current-context: mesh-test
EOF
}

# CRD manifests: Gateway API (standard channel, with its ValidatingAdmissionPolicy), Istio, and ours if present.
crd_files() {
  ls "$(crd_module_dir sigs.k8s.io/gateway-api "$GATEWAY_API_VERSION")"/config/crd/standard/*.yaml
  echo "$(crd_module_dir istio.io/api "$ISTIO_API_VERSION")/kubernetes/customresourcedefinitions.gen.yaml"
  local ours="$here/../control-plane/crds"
  if [ -d "$ours" ]; then
    find "$ours" -maxdepth 1 -name '*.yaml' | sort
  fi
}

# Every CRD reports Established=True (one request: `kubectl wait` takes seconds for a few dozen CRDs). A CRD without
# conditions yet shows as <none>.
crds_established() {
  local states
  states=$(KUBECONFIG="$1/kubeconfig" "$KUBECTL" get crd --no-headers \
    -o 'custom-columns=E:.status.conditions[?(@.type=="Established")].status') || return 1
  [ -n "$states" ] && ! grep -qv '^True$' <<<"$states"
}

# `create`, not `apply`: the store is new, and client-side apply's annotation cannot hold Istio's biggest CRDs.
install_crds() {
  local dir=$1 args=() f
  while read -r f; do args+=(-f "$f"); done < <(crd_files)
  KUBECONFIG="$dir/kubeconfig" "$KUBECTL" create "${args[@]}" >>"$dir/crds.log" 2>&1 \
    || fail_with_log "$dir" crds "installing the CRDs failed"
  local deadline=$((SECONDS + 60))
  until crds_established "$dir" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      KUBECONFIG="$dir/kubeconfig" "$KUBECTL" get crd >>"$dir/crds.log" 2>&1 || true
      fail_with_log "$dir" crds "the CRDs did not become Established in 60s"
    fi
    sleep 0.2
  done
}

cmd_up() {
  local dir=${1:?usage: kube.sh up DIR}
  [ -x "$KUBE_APISERVER" ] || die "$KUBE_APISERVER is missing: run 'scripts/kube.sh build' first"
  command -v etcd >/dev/null || die "etcd is missing: run 'scripts/kube.sh build' first"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  [ ! -e "$dir/pids" ] || die "$dir is in use (it has a pids file): 'kube.sh down $dir' first"
  touch "$dir/.kube.sh"   # marks the directory as ours, for `down`
  : >"$dir/pids"
  if [ -n "${KUBE_OWNER_PID:-}" ]; then
    start watchdog "$dir" bash "$here/kube.sh" _watch "$dir" "$KUBE_OWNER_PID"
  fi
  local ports etcd_client etcd_peer port
  ports=$(free_ports 3)
  read -r etcd_client etcd_peer port <<<"$ports"
  make_pki "$dir/pki"
  start_etcd "$dir" "$etcd_client" "$etcd_peer"
  start_apiserver "$dir" "$etcd_client" "$port"
  local url="https://127.0.0.1:$port"
  write_kubeconfig "$dir" "$url"
  cat >"$dir/env" <<EOF
KUBECONFIG=$dir/kubeconfig
KUBE_APISERVER_URL=$url
KUBE_APISERVER_PORT=$port
KUBE_APISERVER_PID=$(awk '$1 == "kube-apiserver" { print $2 }' "$dir/pids")
KUBE_CA_FILE=$dir/pki/serving-ca.crt
ETCD_URL=http://127.0.0.1:$etcd_client
ETCD_PEER_PORT=$etcd_peer
ETCD_PID=$(awk '$1 == "etcd" { print $2 }' "$dir/pids")
export KUBECONFIG
EOF
  install_crds "$dir"
  echo "kube-apiserver $KUBE_VERSION on $url; export KUBECONFIG=$dir/kubeconfig (or: . $dir/env)"
}

# ---------------------------------------------------------------------------------------------------------------
# down

cmd_down() {
  local dir=${1:?usage: kube.sh down DIR}
  [ -d "$dir" ] || return 0
  dir="$(cd "$dir" && pwd)"
  [ -e "$dir/.kube.sh" ] || die "$dir was not made by 'kube.sh up': not removing it"
  if [ -f "$dir/pids" ]; then
    # Reverse start order: the watchdog first, then the API server, then etcd.
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
  up) cmd_up "${2:-}" ;;
  down) cmd_down "${2:-}" ;;
  _watch) cmd_watch "$2" "$3" ;;
  *) die "usage: kube.sh build | up DIR | down DIR" ;;
esac
