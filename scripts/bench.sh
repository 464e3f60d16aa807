#!/usr/bin/env bash
# Atoll against etcd on this machine, same closed-loop driver (atoll-bench),
# same workloads, same run. Writes the tables into docs/benchmarks.md.
#
#   scripts/bench.sh                 full run (~10 min): every case, failover, docs/benchmarks.md
#   scripts/bench.sh --quick         smoke run: 2 s cases, 5k keys, nothing written to docs/
#   options: --duration S (measured seconds per case, default 10)  --warmup S (default 3)
#            --keys N (preloaded, default 100000)  --systems atoll,etcd  --cases LIST|all
#            --no-failover  --perf (perf record -g on the Atoll leader during write-64)
#            --perf-case CASE (profile that case instead of write-64, e.g. write-1)
#            --no-doc (leave docs/benchmarks.md alone)
#            --paired-rounds N (write-1 slices between disk probes, systems alternated;
#                               default 6, --quick 2, 0 = none)  --paired-slice S (default 3)
#   env:     BENCH_DIR (default target/bench; must be a real disk, not tmpfs)
#            ATOLL_NODE_ARGS (extra atoll-node options, e.g. "--worker-threads 1")
#
# Everything it starts (3 atoll-node, 3 etcd, perf) is stopped by PID on exit.
# Results: $BENCH_DIR/results/*.json, server logs in $BENCH_DIR/<system>/.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=10 WARMUP=3 KEYS=100000 SYSTEMS=atoll,etcd CASES=all
FAILOVER=1 PERF=0 PERF_CASE=write-64 DOC=1 QUICK=0 PAIRED_ROUNDS=6 PAIRED_SLICE=3
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION=$2; shift ;;
    --warmup) WARMUP=$2; shift ;;
    --keys) KEYS=$2; shift ;;
    --systems) SYSTEMS=$2; shift ;;
    --cases) CASES=$2; shift ;;
    --no-failover) FAILOVER=0 ;;
    --perf) PERF=1 ;;
    --perf-case) PERF=1; PERF_CASE=$2; shift ;;
    --no-doc) DOC=0 ;;
    --paired-rounds) PAIRED_ROUNDS=$2; shift ;;
    --paired-slice) PAIRED_SLICE=$2; shift ;;
    --quick) QUICK=1 DURATION=2 WARMUP=1 KEYS=5000 DOC=0 PAIRED_ROUNDS=2 PAIRED_SLICE=1 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

BENCH_DIR=${BENCH_DIR:-target/bench}
RESULTS=$BENCH_DIR/results
BIN=target/release
ATOLL_PORTS=(17101 17102 17103)
ETCD_PORTS=(23791 23792 23793)
ETCD_PEER_PORTS=(23801 23802 23803)
ATOLL_EPS=127.0.0.1:17101,127.0.0.1:17102,127.0.0.1:17103
ETCD_EPS=127.0.0.1:23791,127.0.0.1:23792,127.0.0.1:23793
FAILOVER_SECS=$((QUICK ? 6 : 15))
KILL_AFTER=$((QUICK ? 2 : 5))

say() { printf '\n==> %s\n' "$*"; }

# --- what we start, and stopping it by PID --------------------------------
PIDS=()
stop_pids() {
  local p
  for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "$@"; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
}
# Drops stopped PIDs from PIDS, so the exit trap never signals a PID that
# the system may since have given to someone else's process.
forget_pids() {
  local keep=() p q gone
  for p in "${PIDS[@]}"; do
    gone=0
    for q in "$@"; do [ "$p" = "$q" ] && gone=1; done
    [ "$gone" = 1 ] || keep+=("$p")
  done
  PIDS=(${keep[@]+"${keep[@]}"})
}
cleanup() { [ ${#PIDS[@]} -eq 0 ] || stop_pids "${PIDS[@]}"; }
trap cleanup EXIT

# --- prerequisites ---------------------------------------------------------
if ! command -v etcd >/dev/null 2>&1; then
  say "installing etcd-server (apt)"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq etcd-server >/dev/null
fi
if [ "$PERF" = 1 ] && ! command -v perf >/dev/null 2>&1; then
  echo "--perf needs perf (Debian: apt-get install linux-perf)" >&2; exit 1
fi

say "building atoll-node, atollctl, atoll-bench (release)"
cargo build --release -q -p atoll-node -p atoll-client -p atoll-bench --bins

mkdir -p "$BENCH_DIR"
# Two runs at once would share ports and $RESULTS (the second wipes the
# first's results) and measure each other's load.
exec 9>"$BENCH_DIR/.lock"
if ! flock -n 9; then
  echo "another scripts/bench.sh is running on $BENCH_DIR; wait for it to end" >&2
  exit 1
fi
fstype=$(stat -f -c %T "$BENCH_DIR")
case "$fstype" in
  tmpfs|ramfs) echo "$BENCH_DIR is on $fstype, not a real disk; set BENCH_DIR" >&2; exit 1 ;;
  overlayfs) echo "warning: $BENCH_DIR is on overlayfs; fsync reaches the disk below it" >&2 ;;
esac
rm -rf "$RESULTS"; mkdir -p "$RESULTS"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# The disk's own limit and the replicated floor (bench/src/floor.rs),
# measured before and after the cases: under a shared machine's load they
# move, and write-1 is compared with them.
disk_probe() {
  say "disk: fdatasync latency of a 4 KiB write in $BENCH_DIR ($1)"
  "$BIN/atoll-bench" fsync --dir "$BENCH_DIR" --count $((QUICK ? 200 : 1000)) --out "$RESULTS" --label "$1"
}

# --- clusters --------------------------------------------------------------
start_atoll() {
  local dir=$1 initial="" i
  for i in 1 2 3; do initial+="${initial:+,}$i=127.0.0.1:${ATOLL_PORTS[$((i-1))]}"; done
  for i in 1 2 3; do
    "$BIN/atoll-node" --id "$i" --data-dir "$dir/n$i" --listen "127.0.0.1:${ATOLL_PORTS[$((i-1))]}" \
      --initial-cluster "$initial" --initial-cluster-token "bench-$$" ${ATOLL_NODE_ARGS:-} >"$dir/n$i.log" 2>&1 &
    PIDS+=($!); ATOLL_PIDS+=($!)
  done
}

start_etcd() {
  local dir=$1 initial="" i
  for i in 1 2 3; do initial+="${initial:+,}e$i=http://127.0.0.1:${ETCD_PEER_PORTS[$((i-1))]}"; done
  for i in 1 2 3; do
    local c=http://127.0.0.1:${ETCD_PORTS[$((i-1))]} p=http://127.0.0.1:${ETCD_PEER_PORTS[$((i-1))]}
    etcd --name "e$i" --data-dir "$dir/e$i" \
      --listen-client-urls "$c" --advertise-client-urls "$c" \
      --listen-peer-urls "$p" --initial-advertise-peer-urls "$p" \
      --initial-cluster "$initial" --initial-cluster-token "bench-$$" \
      --initial-cluster-state new --logger zap --log-outputs stderr >"$dir/e$i.log" 2>&1 &
    PIDS+=($!); ETCD_PIDS+=($!)
  done
}

wait_leader() {
  local system=$1 eps=$2
  for _ in $(seq 1 150); do
    if "$BIN/atoll-bench" leader --system "$system" --endpoints "$eps" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "$system: no leader after 30 s; logs in $BENCH_DIR/$system/" >&2
  return 1
}

# perf record -g on the leader while $PERF_CASE (write-64 by default) runs; report into
# $RESULTS.
profile() {
  local system=$1 eps=$2 leader pid secs=$((QUICK ? 3 : 10))
  leader=$("$BIN/atoll-bench" leader --system "$system" --endpoints "$eps")
  local pids; read -r -a pids <<<"$(server_pids "$system" ' ')"
  pid=${pids[$leader]}
  say "$system: perf record -g on the leader (pid $pid) during $PERF_CASE, ${secs}s"
  perf record -g -F 999 -p "$pid" -o "$RESULTS/$system-perf.data" -- sleep $((secs + 2)) \
    >"$RESULTS/$system-perf.log" 2>&1 &
  local perf_pid=$!; PIDS+=("$perf_pid")
  "$BIN/atoll-bench" run --system "$system" --endpoints "$eps" --keys "$KEYS" \
    --cases "$PERF_CASE" --warmup 1 --duration "$secs" --out "$RESULTS/perf-run" >/dev/null
  wait "$perf_pid" || true
  forget_pids "$perf_pid"
  perf report -i "$RESULTS/$system-perf.data" --stdio --no-children --percent-limit 1 \
    >"$RESULTS/$system-perf-self.txt" 2>/dev/null || true
  perf report -i "$RESULTS/$system-perf.data" --stdio --children --percent-limit 5 \
    >"$RESULTS/$system-perf-children.txt" 2>/dev/null || true
  echo "perf reports: $RESULTS/$system-perf-{self,children}.txt"
}

ATOLL_PIDS=() ETCD_PIDS=()
# The server PIDs of $1, joined by $2.
server_pids() {
  local IFS=$2
  case "$1" in atoll) echo "${ATOLL_PIDS[*]}" ;; etcd) echo "${ETCD_PIDS[*]}" ;; esac
}
endpoints() { case "$1" in atoll) echo "$ATOLL_EPS" ;; etcd) echo "$ETCD_EPS" ;; esac; }
common_args() {
  echo --system "$1" --endpoints "$(endpoints "$1")" --pids "$(server_pids "$1" ,)" --keys "$KEYS"
}

# A fresh 3-node cluster of $1, with its keys preloaded.
setup_system() {
  local system=$1 dir=$BENCH_DIR/$1
  rm -rf "$dir"; mkdir -p "$dir"
  say "$system: fresh 3-node cluster, data in $dir"
  case "$system" in
    atoll) start_atoll "$dir" ;;
    etcd) start_etcd "$dir" ;;
    *) echo "unknown system $system" >&2; exit 2 ;;
  esac
  wait_leader "$system" "$(endpoints "$system")"
  say "$system: preload $KEYS keys of 256 B"
  # shellcheck disable=SC2046 # the arguments are words without spaces
  "$BIN/atoll-bench" preload $(common_args "$system")
}

run_case() {
  local system=$1 case=$2
  say "$system: $case, warm-up ${WARMUP}s + ${DURATION}s"
  # shellcheck disable=SC2046
  "$BIN/atoll-bench" run $(common_args "$system") --cases "$case" \
    --warmup "$WARMUP" --duration "$DURATION" --out "$RESULTS"
}

# Round $2 of write-1 between two append-fdatasync probes on system $1
# (bench/src/paired.rs): issue 8's lone-write target against the disk of
# the same second.
paired_round() {
  local system=$1 round=$2
  # shellcheck disable=SC2046
  "$BIN/atoll-bench" paired $(common_args "$system") --dir "$BENCH_DIR" --round "$round" \
    --probe-count $((QUICK ? 100 : 300)) --slice "$PAIRED_SLICE" --out "$RESULTS"
}

# Perf, failover (it kills a node), then stop the cluster; keep its logs.
finish_system() {
  local system=$1 dir=$BENCH_DIR/$1 pids
  if [ "$PERF" = 1 ] && [ "$system" = atoll ]; then profile "$system" "$(endpoints "$system")"; fi
  if [ "$FAILOVER" = 1 ]; then
    say "$system: failover: 64 writers, kill -9 the leader after ${KILL_AFTER}s"
    # shellcheck disable=SC2046
    "$BIN/atoll-bench" failover $(common_args "$system") --kill-after "$KILL_AFTER" \
      --duration "$FAILOVER_SECS" --out "$RESULTS"
  fi
  read -r -a pids <<<"$(server_pids "$system" ' ')"
  say "$system: stopping pids ${pids[*]}"
  stop_pids "${pids[@]}"
  forget_pids "${pids[@]}"
  rm -rf "${dir:?}"/n? "${dir:?}"/e?
}

# Both clusters run side by side (the idle one costs little), and every
# case runs on each system in turn, the order swapped from case to case:
# on a shared VM the disk and the CPU change speed over minutes, and a case
# measured on both systems within seconds of each other sees the same
# machine. The disk is probed before and after the cases.
IFS=, read -r -a systems <<<"$SYSTEMS"
mapfile -t case_list < <("$BIN/atoll-bench" cases --cases "$CASES")
disk_probe start
for s in "${systems[@]}"; do setup_system "$s"; done
for i in "${!case_list[@]}"; do
  order=("${systems[@]}")
  if [ $((i % 2)) = 1 ]; then
    order=(); for ((j = ${#systems[@]} - 1; j >= 0; j--)); do order+=("${systems[$j]}"); done
  fi
  for s in "${order[@]}"; do run_case "$s" "${case_list[$i]}"; done
done
if [ "$PAIRED_ROUNDS" -gt 0 ]; then
  say "a lone write paired with the disk: $PAIRED_ROUNDS rounds of probe, write-1 ${PAIRED_SLICE}s, probe"
  for ((r = 1; r <= PAIRED_ROUNDS; r++)); do
    order=("${systems[@]}")
    if [ $((r % 2)) = 0 ]; then
      order=(); for ((j = ${#systems[@]} - 1; j >= 0; j--)); do order+=("${systems[$j]}"); done
    fi
    for s in "${order[@]}"; do paired_round "$s" "$r"; done
  done
fi
disk_probe end
for s in "${systems[@]}"; do finish_system "$s"; done

# --- report ----------------------------------------------------------------
disk_dev=$(df --output=source "$BENCH_DIR" | tail -1)
disk_desc=$(lsblk -dno MODEL,SIZE "$disk_dev" 2>/dev/null | tr -s ' ' | sed 's/^ //' || true)
meta=(
  --meta "Date: $(date -u '+%Y-%m-%d %H:%M UTC'); Atoll $(git rev-parse --short HEAD 2>/dev/null || echo '?'); $(etcd --version | head -1)"
  --meta "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM; data dirs on $disk_dev (${disk_desc:-?}, $fstype)"
  --meta "Load average (1/5/15 min) at start: $LOAD_START; at end: $(cut -d' ' -f1-3 /proc/loadavg)"
  --meta "Settings: $KEYS preloaded keys, 256 B values, warm-up ${WARMUP}s, ${DURATION}s measured per case, 8 clients per connection; failover ${FAILOVER_SECS}s with the kill at ${KILL_AFTER}s"
)
say "results"
if [ "$DOC" = 1 ]; then
  "$BIN/atoll-bench" report --results "$RESULTS" --doc docs/benchmarks.md "${meta[@]}"
  echo; echo "written into docs/benchmarks.md"
else
  "$BIN/atoll-bench" report --results "$RESULTS" "${meta[@]}"
fi
