#!/usr/bin/env bash
# Seed sweep of the madsim simulation, in parallel, with a summary.
#
#   scripts/sim.sh [--seeds N] [--start S] [--jobs J] [--test NAME]
#
# Runs every fault schedule of sim-tests/tests/faults.rs (or only NAME, e.g.
# `mixed`) for seeds S..S+N, split across J processes (default: nproc).
# Each failing seed is printed with the one command that replays it; the
# summary goes to target/sim/summary-<time>.txt and per-seed results to
# target/sim/summary-<time>.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."

seeds=100 start=1 jobs=$(nproc) test=""
while [ $# -gt 0 ]; do
  case "$1" in
    --seeds) seeds=$2; shift 2 ;;
    --start) start=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --test) test=$2; shift 2 ;;
    *) sed -n '2,10p' "$0" >&2; exit 2 ;;
  esac
done

export RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/sim
echo "building simulation tests (release)..." >&2
cargo test --release -p atoll-sim-tests --test faults --no-run -q 2>/dev/null || \
  cargo test --release -p atoll-sim-tests --test faults --no-run

stamp=$(date +%Y%m%d-%H%M%S)
summary=$PWD/target/sim/summary-$stamp.txt
jsonl=$PWD/target/sim/summary-$stamp.jsonl
logdir=target/sim/logs-$stamp
mkdir -p "$logdir"
per=$(( (seeds + jobs - 1) / jobs ))
t0=$(date +%s)
pids=()
for j in $(seq 0 $((jobs - 1))); do
  s=$((start + j * per))
  n=$per
  [ $((s + n)) -gt $((start + seeds)) ] && n=$((start + seeds - s))
  [ "$n" -le 0 ] && continue
  SIM_SEED_START=$s SIM_SEEDS=$n SIM_SUMMARY="$jsonl" \
    cargo test --release -q -p atoll-sim-tests --test faults -- --test-threads 1 --nocapture $test \
    >"$logdir/job$j.log" 2>&1 &
  pids+=($!)
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
t1=$(date +%s)

{
  echo "atoll simulation sweep $stamp"
  echo "seeds $start..$((start + seeds - 1)), $jobs jobs, $((t1 - t0)) s"
  for sched in $(grep -o '"schedule":"[a-z-]*"' "$jsonl" | sort -u | cut -d'"' -f4); do
    total=$(grep -c "\"schedule\":\"$sched\"" "$jsonl" || true)
    failed=$(grep "\"schedule\":\"$sched\"" "$jsonl" | grep -c '"ok":false' || true)
    echo "  $sched: $total runs, $failed failed"
  done
  echo "failures:"
  grep -h -A1 'FAILED .* seed [0-9]' "$logdir"/*.log | sed 's/^[.]*//' || echo "  none"
} | tee "$summary"
echo "summary: $summary" >&2
exit $status
