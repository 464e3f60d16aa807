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

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, -D warnings)"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo clippy under --cfg madsim (simulation build)"
RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/sim \
  cargo clippy -p atoll-sim-tests -p atoll-node -p atoll-client --all-targets -- -D warnings

step "unit and integration tests"
cargo test --workspace

step "simulation tests (madsim, ${SIM_SEEDS:-4} seeds each)"
RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/sim \
  cargo test -p atoll-sim-tests
