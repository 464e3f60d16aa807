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
# Seeds are run in chunks of at most $CHUNK per process: memory grows with
# every simulated run in one process, so no process runs too many.
CHUNK=${SIM_CHUNK:-50}
t0=$(date +%s)
status=0
s=$start
end=$((start + seeds))
chunks=()
while [ "$s" -lt "$end" ]; do
  n=$CHUNK
  [ $((s + n)) -gt "$end" ] && n=$((end - s))
  chunks+=("$s $n")
  s=$((s + n))
done
printf '%s\n' "${chunks[@]}" | xargs -P "$jobs" -L 1 sh -c '
  SIM_SEED_START=$0 SIM_SEEDS=$1 SIM_SUMMARY="'"$jsonl"'" \
    cargo test --release -q -p atoll-sim-tests --test faults -- --test-threads 1 --nocapture '"$test"' \
    >"'"$logdir"'/seeds-$0.log" 2>&1 || echo "chunk at seed $0 failed (see '"$logdir"'/seeds-$0.log)"
' | tee "$logdir/chunks-failed.txt"
[ -s "$logdir/chunks-failed.txt" ] && status=1
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
