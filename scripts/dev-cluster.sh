#!/usr/bin/env bash
# Local development cluster: N atoll-node processes on 127.0.0.1:7101.., data
# and logs under ./.atoll-dev. Builds what it needs first.
#
#   scripts/dev-cluster.sh start [N]   build, start N nodes (default 3), wait for a leader
#   scripts/dev-cluster.sh status      atollctl status
#   scripts/dev-cluster.sh stop        graceful stop (SIGTERM); data is kept
#   scripts/dev-cluster.sh kill ID     kill -9 one node          restart ID: start it again
#   scripts/dev-cluster.sh clean       stop and delete ./.atoll-dev
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=.atoll-dev
BIN=target/release
BASE_PORT=7101

need_rust() {
  if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: install Rust (https://rustup.rs) and re-run" >&2
    exit 1
  fi
}

build() {
  need_rust
  echo "building atoll-node and atollctl (release)..." >&2
  cargo build --release -q -p atoll-node -p atoll-client --bins
}

n_nodes() { cat "$DEV/nodes" 2>/dev/null || echo 3; }
addr() { echo "127.0.0.1:$((BASE_PORT + $1 - 1))"; }
endpoints() { local n; n=$(n_nodes); local out=""; for i in $(seq 1 "$n"); do out+="${out:+,}$(addr "$i")"; done; echo "$out"; }
pid_of() { cat "$DEV/n$1.pid" 2>/dev/null || true; }
running() { local p; p=$(pid_of "$1"); [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

start_node() {
  local i=$1 n; n=$(n_nodes)
  local initial=""
  for j in $(seq 1 "$n"); do initial+="${initial:+,}$j=$(addr "$j")"; done
  if running "$i"; then echo "node $i already running (pid $(pid_of "$i"))"; return; fi
  "$BIN/atoll-node" --id "$i" --data-dir "$DEV/n$i" --listen "$(addr "$i")" \
    --initial-cluster "$initial" >>"$DEV/n$i.log" 2>&1 &
  echo $! >"$DEV/n$i.pid"
  echo "node $i: pid $!, $(addr "$i"), data $DEV/n$i, log $DEV/n$i.log"
}

wait_leader() {
  for _ in $(seq 1 100); do
    if "$BIN/atollctl" --endpoints "$(endpoints)" status 2>/dev/null | grep -q leader; then
      "$BIN/atollctl" --endpoints "$(endpoints)" status
      return 0
    fi
    sleep 0.2
  done
  echo "no leader elected after 20s; see $DEV/*.log" >&2
  return 1
}

cmd=${1:-start}
case "$cmd" in
  start)
    n=${2:-3}
    build
    mkdir -p "$DEV"
    if [ -f "$DEV/nodes" ] && [ "$(n_nodes)" != "$n" ]; then
      echo "$DEV holds a $(n_nodes)-node cluster; run '$0 clean' first to change its size" >&2
      exit 1
    fi
    echo "$n" >"$DEV/nodes"
    for i in $(seq 1 "$n"); do start_node "$i"; done
    wait_leader
    cat <<TXT

Cluster is up. Try:
  export ATOLL_ENDPOINTS=$(endpoints)
  $BIN/atollctl put hello world
  $BIN/atollctl get hello
  $BIN/atollctl scan
  $BIN/atollctl status
Stop it with: $0 stop    (data kept in $DEV; '$0 clean' deletes it)
TXT
    ;;
  status)
    "$BIN/atollctl" --endpoints "$(endpoints)" status
    ;;
  stop)
    for i in $(seq 1 "$(n_nodes)"); do
      if running "$i"; then kill -TERM "$(pid_of "$i")"; fi
    done
    for i in $(seq 1 "$(n_nodes)"); do
      for _ in $(seq 1 50); do running "$i" || break; sleep 0.1; done
      if running "$i"; then kill -9 "$(pid_of "$i")"; fi
      rm -f "$DEV/n$i.pid"
    done
    echo "stopped"
    ;;
  kill)
    i=${2:?node id}
    if running "$i"; then kill -9 "$(pid_of "$i")"; echo "killed node $i"; else echo "node $i not running"; fi
    rm -f "$DEV/n$i.pid"
    ;;
  restart)
    i=${2:?node id}
    start_node "$i"
    ;;
  clean)
    "$0" stop >/dev/null 2>&1 || true
    rm -rf "$DEV"
    echo "removed $DEV"
    ;;
  *)
    sed -n '2,9p' "$0" >&2
    exit 2
    ;;
esac
