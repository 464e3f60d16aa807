#!/usr/bin/env bash
# Resident memory of every node while whole shards travel as snapshots.
#
#   scripts/snapshot-memory.sh [--keys N] [--limit-mib M] [--one-shard]
#
# Starts 3 release nodes on loopback, preloads N keys of 256 B (default
# 1 000 000), registers and starts a 4th node, then drains node 3: the
# placement driver moves every replica of node 3 to node 4, so each shard's
# leader sends node 4 a snapshot of the whole shard (issue 8: "under 512 MiB
# resident, also while it sends or receives a snapshot"). VmRSS of each node is
# sampled every 0.2 s from before the drain until it is done; the script
# prints the peak per node and exits 1 if any passed --limit-mib (default 512).
# Data and logs: target/bench/snapmem/. Everything it starts is stopped by PID
# on exit. Takes 2-4 minutes at 1M keys on 2 cores. --one-shard turns the
# placement driver's splits off, so that the whole data set is one shard and
# travels as one snapshot (the worst case; by default shards split at the
# PD's thresholds, and each snapshot is one shard's).
set -euo pipefail
cd "$(dirname "$0")/.."

KEYS=1000000
LIMIT_MIB=512
ONE_SHARD=0
while [ $# -gt 0 ]; do
  case "$1" in
    --keys) KEYS=$2; shift ;;
    --limit-mib) LIMIT_MIB=$2; shift ;;
    --one-shard) ONE_SHARD=1 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

DIR=target/bench/snapmem
BIN=target/release
PORTS=(17201 17202 17203 17204)
EPS=127.0.0.1:17201,127.0.0.1:17202,127.0.0.1:17203
PIDS=()
say() { printf '\n==> %s\n' "$*"; }
cleanup() {
  local p
  for p in ${PIDS[@]+"${PIDS[@]}"}; do kill -TERM "$p" 2>/dev/null || true; done
  for p in ${PIDS[@]+"${PIDS[@]}"}; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
}
trap cleanup EXIT

say "building atoll-node, atollctl, atoll-bench (release)"
cargo build --release -q -p atoll-node -p atoll-client -p atoll-bench --bins

rm -rf "$DIR"; mkdir -p "$DIR"
if [ "$ONE_SHARD" = 1 ]; then
  printf '[pd]\nsplit_size_bytes = %s\nsplit_keys = %s\n' 1000000000000000 1000000000000000 \
    >"$DIR/one-shard.toml"
  export ATOLL_CONFIG=$DIR/one-shard.toml
fi
initial=""
for i in 1 2 3; do initial+="${initial:+,}$i=127.0.0.1:${PORTS[$((i-1))]}"; done
for i in 1 2 3; do
  "$BIN/atoll-node" --id "$i" --data-dir "$DIR/n$i" --listen "127.0.0.1:${PORTS[$((i-1))]}" \
    --initial-cluster "$initial" --initial-cluster-token "snapmem-$$" >"$DIR/n$i.log" 2>&1 &
  PIDS+=($!)
done
for _ in $(seq 1 300); do
  "$BIN/atoll-bench" leader --system atoll --endpoints "$EPS" >/dev/null 2>&1 && break
  sleep 0.1
done

say "preload $KEYS keys of 256 B"
t0=$(date +%s)
"$BIN/atoll-bench" preload --system atoll --endpoints "$EPS" --keys "$KEYS"
echo "preloaded in $(( $(date +%s) - t0 )) s"
"$BIN/atollctl" --endpoints "$EPS" shards

say "node 4 joins"
"$BIN/atollctl" --endpoints "$EPS" node add "127.0.0.1:${PORTS[3]}"
"$BIN/atoll-node" --data-dir "$DIR/n4" --listen "127.0.0.1:${PORTS[3]}" --join "$EPS" \
  >"$DIR/n4.log" 2>&1 &
PIDS+=($!)
sleep 3

rss_mib() { awk '/^VmRSS/ {printf "%d", $2 / 1024}' "/proc/$1/status" 2>/dev/null || echo 0; }
declare -a PEAK=(0 0 0 0)
sample() {
  local i r
  for i in 0 1 2 3; do
    r=$(rss_mib "${PIDS[$i]}")
    if [ "${r:-0}" -gt "${PEAK[$i]}" ]; then PEAK[$i]=$r; fi
  done
}
sample
echo "resident before the drain (MiB): n1 ${PEAK[0]}, n2 ${PEAK[1]}, n3 ${PEAK[2]}, n4 ${PEAK[3]}"

say "drain node 3: its replicas move to node 4 as snapshots"
t0=$(date +%s)
"$BIN/atollctl" --endpoints "$EPS" --timeout 600s node drain 3 --wait >"$DIR/drain.out" 2>&1 &
drain=$!
PIDS+=($drain)
while kill -0 "$drain" 2>/dev/null; do sample; sleep 0.2; done
drain_rc=0; wait "$drain" || drain_rc=$?
secs=$(( $(date +%s) - t0 ))
cat "$DIR/drain.out"
"$BIN/atollctl" --endpoints "$EPS" shards
[ "$drain_rc" = 0 ] || { echo "the drain failed (exit $drain_rc); logs in $DIR" >&2; exit 1; }

say "peak resident memory during the drain (MiB), $KEYS keys, drain took $secs s"
over=0
for i in 0 1 2 3; do
  echo "n$((i+1)): ${PEAK[$i]}"
  [ "${PEAK[$i]}" -lt "$LIMIT_MIB" ] || over=1
done
grep -h 'snapshot' "$DIR"/n*.log | sed 's/\x1b\[[0-9;]*m//g' | grep -i 'install\|built\|sent\|receiv' | tail -20 || true
if [ "$over" = 1 ]; then echo "a node passed $LIMIT_MIB MiB" >&2; exit 1; fi
echo "every node stayed under $LIMIT_MIB MiB"
