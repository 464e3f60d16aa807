#!/usr/bin/env bash
# What many shards cost: 3 local nodes, N shards (default 1000) made by
# splitting shard 1 again and again, then, while idle: CPU per node,
# resident memory, loopback traffic, and the time a restart of all nodes
# takes until every shard has a leader again (issue 9, item 9).
#
#   scripts/many-shards.sh [--shards N] [--idle SECONDS] [--dir DIR]
#
# Bounded: every wait has a deadline, and the nodes it started are stopped
# (by PID) at the end, also on failure or Ctrl-C. Prints one summary block.
set -euo pipefail
cd "$(dirname "$0")/.."

shards=1000 idle=30 dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --shards) shards=$2; shift 2 ;;
    --idle) idle=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    *) sed -n '2,10p' "$0" >&2; exit 2 ;;
  esac
done
[ -n "$dir" ] || dir=$(mktemp -d /tmp/atoll-many-shards.XXXXXX)
mkdir -p "$dir"

echo "building atoll-node and atollctl (release)..." >&2
cargo build --release -q -p atoll-node -p atoll-client --bins
BIN=$PWD/target/release
PORTS=(7301 7302 7303)
EP="127.0.0.1:7301,127.0.0.1:7302,127.0.0.1:7303"
INITIAL="1=127.0.0.1:7301,2=127.0.0.1:7302,3=127.0.0.1:7303"
pids=()

stop_nodes() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
  pids=()
}
trap stop_nodes EXIT INT TERM

start_nodes() {
  pids=()
  for i in 1 2 3; do
    "$BIN/atoll-node" --id "$i" --data-dir "$dir/n$i" --listen "127.0.0.1:${PORTS[$((i-1))]}" \
      --initial-cluster "$INITIAL" >>"$dir/n$i.log" 2>&1 &
    pids+=($!)
  done
}

ctl() { "$BIN/atollctl" --endpoints "$EP" "$@"; }

# Leaders over all nodes' data shards (each shard counted once, at its leader).
leaders() {
  local out
  out=$(ctl --json status 2>/dev/null || true)
  printf '%s' "$out" | python3 -c '
import json, sys
doc = json.load(sys.stdin)
nodes = doc if isinstance(doc, list) else doc.get("nodes", [])
ids = set()
for n in nodes:
    for s in n.get("shards", []) or []:
        if s.get("role") == "leader":
            ids.add(s.get("shard_id", s.get("id")))
print(len(ids))' 2>/dev/null || echo 0
}

wait_leaders() {
  local want=$1 deadline=$((SECONDS + $2))
  while [ "$(leaders)" -lt "$want" ]; do
    [ $SECONDS -lt $deadline ] || { echo "only $(leaders) of $want shards have a leader after $2 s; logs in $dir" >&2; return 1; }
    sleep 0.5
  done
}

start_nodes
wait_leaders 1 30
echo "splitting shard 1 into $shards shards..." >&2
current=1
t0=$(date +%s.%N)
for i in $(seq 1 $((shards - 1))); do
  key=$(printf 'k%06d' "$i")
  current=$(ctl --json --timeout 30s shard split "$current" --at "$key" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["right"]["id"])')
done
t1=$(date +%s.%N)
wait_leaders "$shards" 120
echo "settling 10 s..." >&2
sleep 10

cpu_ticks() { awk '{printf "%.0f\n", $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
lo_bytes() { awk '/ lo:/ {printf "%.0f\n", $2 + $10}' /proc/net/dev; }
lo_packets() { awk '/ lo:/ {printf "%.0f\n", $3 + $11}' /proc/net/dev; }
hz=$(getconf CLK_TCK)
declare -a c0
for k in 0 1 2; do c0[$k]=$(cpu_ticks "${pids[$k]}"); done
b0=$(lo_bytes); p0=$(lo_packets)
sleep "$idle"
b1=$(lo_bytes); p1=$(lo_packets)
cpu_line="" total_cpu=0 rss_line=""
for k in 0 1 2; do
  c=$(( $(cpu_ticks "${pids[$k]}") - c0[k] ))
  pct=$(python3 -c "print(round(100*$c/$hz/$idle, 1))")
  total_cpu=$(python3 -c "print(round($total_cpu + $pct, 1))")
  cpu_line+="node$((k+1)) ${pct}% "
  rss_line+="node$((k+1)) $(( $(rss_kib "${pids[$k]}") / 1024 )) MiB "
done

echo "restarting all nodes..." >&2
stop_nodes
r0=$(date +%s.%N)
start_nodes
wait_leaders "$shards" 300
r1=$(date +%s.%N)

cat <<SUMMARY
atoll many-shards run, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD), $(nproc) cores
shards:              $shards (3 replicas each, every node hosts all), made in $(python3 -c "print(round($t1 - $t0, 1))") s of splits
idle CPU (${idle} s):     $cpu_line(total ${total_cpu}% of one core)
resident memory:     $rss_line
loopback traffic:    $(( (b1 - b0) / idle / 1024 )) KiB/s, $(( (p1 - p0) / idle )) packets/s (all 3 nodes)
restart to leaders:  $(python3 -c "print(round($r1 - $r0, 1))") s (all nodes stopped, started, until every shard has a leader)
data and logs:       $dir
SUMMARY
