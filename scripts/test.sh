#!/usr/bin/env bash
# Runs every test: format, lints, unit + integration tests (real processes on
# loopback), then the deterministic madsim simulation with a bounded number
# of seeds. CI (.ci/run) runs exactly this.
#
#   SIM_SEEDS=N   seeds per simulation test (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust (https://rustup.rs) and re-run" >&2
  exit 1
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

# No incremental caches: a run from a cold target/ gains nothing from them, and they
# doubled the size of target/ (disk, not time, is what a CI machine ran out of).
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}

step() { printf '\n==> %s\n' "$*"; }

# Keep every test runner line so a grand total can close the run.
results=$(mktemp)
trap 'rm -f "$results"' EXIT

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, -D warnings)"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo clippy under --cfg madsim (simulation build)"
RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/sim \
  cargo clippy -p atoll-sim-tests -p atoll-node -p atoll-client --all-targets -- -D warnings

# Includes the power-loss layer's tests and node/tests/power_loss.rs (real
# nodes, power cut on all of them; FUSE as root, they print SKIP where it
# cannot be mounted).
# System tools the Jepsen-style tests need (ip, tc, nftables, iptables for
# NFQUEUE, libfaketime for the clock nemesis and a node test, chromium for
# the report check), from Debian packages when missing.
step "Jepsen-style suite: system tools"
scripts/jepsen.sh --setup

step "unit and integration tests"
cargo test --workspace 2>&1 | tee -a "$results"

# Jepsen-style smoke run (jepsen/, docs/testing.md "Jepsen-style suite"): four ~32 s
# runs of real nodes in network namespaces (loopback where they cannot be made) under
# kill, pause, partition, netem and power, with the register, set, append and bank workloads.
step "Jepsen-style smoke run (~2 min)"
scripts/jepsen.sh --smoke --out target/jepsen-smoke

step "simulation tests (madsim, ${SIM_SEEDS:-8} seeds per schedule)"
SIM_SEEDS=${SIM_SEEDS:-8} RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/sim \
  cargo test -p atoll-sim-tests --tests 2>&1 | tee -a "$results"

# Grand total over every runner above (pipefail already stopped on failure).
awk '/^test result:/ { p += $4; f += $6 } END { printf "\nall tests: %d passed, %d failed\n", p, f }' "$results"
