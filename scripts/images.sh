#!/usr/bin/env bash
# OCI images of the mesh's binaries, built from scratch with buildah (nothing is pulled: every file in an image is a
# binary of ours or a file the build machine's Debian installed, copied with exactly the shared libraries `ldd`
# names).
#
#   images.sh [--hub HUB] [--tag TAG] [--debug] [--no-build] [--save DIR]
#
#   ztunnel        /usr/local/bin/ztunnel; runs as root, as Istio's ztunnel chart runs it (setns, NET_ADMIN)
#   waypoint       /usr/local/bin/waypoint; user 1337 (istio-proxy, as Istio's proxies)
#   control-plane  /usr/local/bin/control-plane; user 1337
#   install-cni    /usr/local/bin/cni-agent (entrypoint) and the istio-cni plugin, plus nft and ip (the agent runs
#                  them to write in-pod and host rules) and /bin/sh (the chart's readiness probe); runs as root
#
# Images are named HUB/NAME:TAG (default localhost/mesh/NAME:dev, what the charts in helm/ default to). --save DIR
# also writes each as an OCI archive DIR/NAME.tar (`podman load -i`, `ctr images import`, `kind load
# image-archive`). Release binaries unless --debug; --no-build uses what target/ already holds.
#
# Storage is buildah's and podman's shared store with the vfs driver (no overlay or fuse needed). Run the images
# with runc and cgroupfs, and rlimits within this machine's hard limits, e.g.
#   podman --storage-driver vfs run --runtime runc --cgroup-manager cgroupfs --ulimit nofile=1024:1024 \
#     --ulimit nproc=1000:1000 --rm localhost/mesh/ztunnel:dev --version
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
hub=localhost/mesh
tag=dev
profile=release
build=1
save=""
while [ $# -gt 0 ]; do
  case $1 in
    --hub) hub=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    --debug) profile=debug; shift ;;
    --no-build) build=0; shift ;;
    --save) save=$2; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "images.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

die() { echo "images.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "buildah's vfs store needs root"

install_tools() {
  local p missing=()
  for p in buildah podman runc binutils; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

bah() { buildah --storage-driver vfs "$@"; }

# stage ROOTFS SRC [DEST]: copies SRC (symlinks resolved) to DEST (default: SRC's own path) under ROOTFS, with the
# shared libraries and the program interpreter `ldd` lists for it, each at the path the loader looks for.
stage() {
  local rootfs=$1 src=$2 dest=${3:-$2} lib
  [ -x "$src" ] || die "$src is missing"
  install -D -m 0755 "$(readlink -f "$src")" "$rootfs$dest"
  # "libx.so => /path (0x…)" and "/lib64/ld-linux-x86-64.so.2 (0x…)"; "linux-vdso.so.1 (0x…)" has no file.
  for lib in $(ldd "$src" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
    [ -e "$rootfs$lib" ] || install -D -m 0755 "$(readlink -f "$lib")" "$rootfs$lib"
  done
}

# base ROOTFS: the few files every image has: users (root, istio-proxy 1337), /tmp, and the loader's search path.
base() {
  local rootfs=$1
  mkdir -p "$rootfs/etc" "$rootfs/tmp" "$rootfs/var/run"
  chmod 1777 "$rootfs/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nistio-proxy:x:1337:1337:istio-proxy:/tmp:/sbin/nologin\n' \
    >"$rootfs/etc/passwd"
  printf 'root:x:0:\nistio-proxy:x:1337:\n' >"$rootfs/etc/group"
  printf '/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu\n' >"$rootfs/etc/ld.so.conf"
}

# image NAME USER ENTRYPOINT ROOTFS: commits ROOTFS as HUB/NAME:TAG, replacing (and deleting) the image that had
# that name before.
image() {
  local name=$1 user=$2 entrypoint=$3 rootfs=$4 ref="$hub/$1:$tag" old c
  old=$(bah images -q --noheading "$ref" 2>/dev/null || true)
  c=$(bah from --quiet scratch)
  bah copy --quiet "$c" "$rootfs/" / >/dev/null
  bah config --entrypoint "[\"$entrypoint\"]" --cmd '' --user "$user" --workingdir /tmp \
    --env PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --label "org.opencontainers.image.title=$name" \
    --label "org.opencontainers.image.version=$version" \
    --label "org.opencontainers.image.source=https://github.com/mesh/mesh" \
    --os linux --arch amd64 "$c"
  bah commit --quiet --rm "$c" "$ref" >/dev/null
  if [ -n "$old" ] && [ "$old" != "$(bah images -q --noheading "$ref")" ]; then
    bah rmi --force "$old" >/dev/null 2>&1 || true
  fi
  if [ -n "$save" ]; then
    rm -f "$save/$name.tar"
    bah push --quiet "$ref" "oci-archive:$save/$name.tar:$ref" >/dev/null
  fi
  printf '%-40s %s\n' "$ref" "$(du -sh "$rootfs" | cut -f1)"
}

install_tools
cd "$root"
if [ "$build" = 1 ]; then
  flag=(--release)
  [ "$profile" = debug ] && flag=()
  cargo build --quiet "${flag[@]}" -p ztunnel -p waypoint -p control-plane -p cni-plugin --bins
fi
bin="$root/target/$profile"
version=$("$bin/ztunnel" --version | awk '{ print $NF }')
[ -z "$save" ] || mkdir -p "$save"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# rootfs NAME BINARY...: a fresh root for image NAME with our BINARYs in /usr/local/bin.
rootfs() {
  local dir="$work/$1" f; shift
  base "$dir"
  for f in "$@"; do
    stage "$dir" "$bin/$f" "/usr/local/bin/$f"
    # Symbols stay (backtraces name functions); the line tables, most of the file, do not.
    strip --strip-debug "$dir/usr/local/bin/$f"
  done
}

rootfs ztunnel ztunnel
image ztunnel 0:0 /usr/local/bin/ztunnel "$work/ztunnel"

rootfs waypoint waypoint
image waypoint 1337:1337 /usr/local/bin/waypoint "$work/waypoint"

rootfs control-plane control-plane
image control-plane 1337:1337 /usr/local/bin/control-plane "$work/control-plane"

rootfs install-cni cni-agent istio-cni
for f in "$(command -v nft)" "$(command -v ip)" /bin/sh; do stage "$work/install-cni" "$f"; done
image install-cni 0:0 /usr/local/bin/cni-agent "$work/install-cni"
