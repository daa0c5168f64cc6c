# Shared by the scripts that build real third-party peers from Go modules (kube.sh, istiod.sh, …).
# Each peer is built once, pinned to one version, into a cache directory outside the checkout, so fresh clones and
# CI runs on the same machine reuse it. Source this file; it defines PEERS_CACHE and peers_go_module, and the
# helpers that start, wait for and stop their processes.

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

# ---------------------------------------------------------------------------------------------------------------
# Processes a peer script starts and stops (kube.sh, istiod.sh). They call the sourcing script's `die`.

# alive PID: the process exists and is not a zombie (a child of ours that died stays a zombie until reaped).
alive() {
  local state
  state=$(sed -n 's/.*) \(.\).*/\1/p' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# free_ports N: N distinct ports that were free on 127.0.0.1 a moment ago.
free_ports() {
  python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])' "$1"
}

# start NAME DIR ARGV...: runs ARGV detached (own session, no terminal, output to DIR/NAME.log) and records
# "NAME PID" in DIR/pids before anything waits on it, so `down` finds it even if `up` fails later.
start() {
  local name=$1 dir=$2; shift 2
  setsid "$@" </dev/null >>"$dir/$name.log" 2>&1 &
  echo "$name $!" >>"$dir/pids"
}

# fail_with_log DIR NAME MESSAGE: prints the tail of DIR/NAME.log and fails.
fail_with_log() {
  echo "---- last lines of $1/$2.log ----" >&2
  tail -n 40 "$1/$2.log" >&2 || true
  die "$3"
}

# wait_until DIR NAME TIMEOUT_S CHECK...: polls CHECK every 0.1 s; fails with NAME's log if NAME's process exits
# or TIMEOUT_S passes.
wait_until() {
  local dir=$1 name=$2 timeout=$3 pid; shift 3
  pid=$(awk -v n="$name" '$1 == n { print $2 }' "$dir/pids")
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    alive "$pid" || fail_with_log "$dir" "$name" "$name exited during start-up"
    [ "$SECONDS" -lt "$deadline" ] || fail_with_log "$dir" "$name" "$name not ready after ${timeout}s"
    sleep 0.1
  done
}

# stop_pid PID DIR: TERM, then KILL after 10 s; only if the process's command line names DIR (a recycled PID is
# someone else's process).
stop_pid() {
  local pid=$1 dir=$2 i
  [ "$pid" != "$$" ] || return 0
  { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF -e "$dir/" -e "$dir " || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 100); do
    alive "$pid" || return 0
    sleep 0.1
  done
  echo "$(basename "$0"): $pid did not stop after TERM; killing it" >&2
  kill -KILL "$pid" 2>/dev/null || true
}
