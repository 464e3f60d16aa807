#!/usr/bin/env bash
# Power loss on a real disk, the long run: three atoll-node processes keep
# their data dirs on the power-loss layer (jepsen/src/lazyfs: a FUSE layer
# that keeps writes in memory until fsync). Each round runs a write load,
# kills all three nodes, cuts the power on all three layers, restarts them
# and checks that every acknowledged write reads back; at the end the
# register history must be linearizable. Exits non-zero on any loss.
#
#   ROUNDS=N   power cuts (default 5)
#   SECS=N     seconds of load before each cut (default 15)
#
# Needs /dev/fuse and root (or fusermount3 from the Debian package fuse3).
# The short version is node/tests/power_loss.rs under `cargo test`
# (also run, shorter, by scripts/test.sh); see docs/testing.md.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -e /dev/fuse ]; then
  echo "power-loss: /dev/fuse is missing; this machine cannot mount FUSE" >&2
  exit 1
fi
if [ "$(id -u)" != 0 ] && ! command -v fusermount3 >/dev/null 2>&1; then
  echo "power-loss: not root and no fusermount3 (apt-get install fuse3)" >&2
  exit 1
fi

POWER_LOSS_ROUNDS=${ROUNDS:-5} POWER_LOSS_SECS=${SECS:-15} \
  cargo test -p atoll-node --test power_loss -- --nocapture
