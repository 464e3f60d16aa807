#!/usr/bin/env bash
# Jepsen-style tests of Atoll on real processes (jepsen/ crate, binary atoll-jepsen).
#
#   scripts/jepsen.sh --nemesis kill,partition --workload register --time 300
#   scripts/jepsen.sh --nemesis membership --workload register,bank --time 60
#   scripts/jepsen.sh --smoke        # ~2 min: several nemeses and workloads (CI runs this;
#                                    # not membership: jepsen/tests/membership.rs covers it)
#   scripts/jepsen.sh --broken-modes # ~2.5 min: the harness must catch each broken node mode
#   scripts/jepsen.sh --setup        # only install the system tools it needs
#   scripts/jepsen.sh --cleanup      # remove namespaces left by a killed run
#
# Any other flags go to atoll-jepsen (see --help): --nodes, --clients, --quiet, --fault,
# --out (default target/jepsen), --loopback, --seed. One summary line per run; reports in
# target/jepsen/<workload>-<nemeses>-<time>/index.html. Exit 1 if any verdict is false.
#
# ATOLL_JEPSEN_LANE=k (0..=200, default 0; or --lane k) runs in network lane k: bridge
# atj{k}-br0, namespaces atj{k}-n{i}, subnet 10.77.k.0/24 (lane 0: atj-*, 10.77.0.0/24), so
# runs in different lanes (a soak beside the smoke run) do not collide; --cleanup only
# clears its own lane. One run at a time per lane.
set -euo pipefail
cd "$(dirname "$0")/.."

# iproute2 (ip netns, tc), nftables, iptables (NFQUEUE for netem without sch_netem),
# libfaketime (the clock nemesis), and chromium for the report test. Debian packages.
setup() {
  local missing=()
  command -v ip >/dev/null 2>&1 || missing+=(iproute2)
  command -v tc >/dev/null 2>&1 || missing+=(iproute2)
  command -v nft >/dev/null 2>&1 || missing+=(nftables)
  # iptables' NFQUEUE target: netem's delay and reordering where the kernel has no netem.
  command -v iptables >/dev/null 2>&1 || missing+=(iptables)
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1 || missing+=(libfaketime)
  if [ ${#missing[@]} -eq 0 ]; then return 0; fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "jepsen.sh: missing ${missing[*]}; install them (Debian: apt-get install ${missing[*]}); runs fall back to loopback without them" >&2
    return 0
  fi
  echo "jepsen.sh: installing ${missing[*]}" >&2
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
    || echo "jepsen.sh: could not install ${missing[*]}; continuing (loopback fallback where needed)" >&2
}

build() {
  cargo build -q -p atoll-node --bin atoll-node
  cargo build -q -p atoll-jepsen --bin atoll-jepsen
}

target_dir() { echo "${CARGO_TARGET_DIR:-target}"; }
bin() { echo "$(target_dir)/debug/atoll-jepsen"; }

case "${1:-}" in
  --setup) setup; exit 0 ;;
  --broken-modes)
    setup
    # atoll-node with feature broken-modes goes to its own target dir, never over the
    # normal binary; the tests (jepsen/tests/broken_modes.rs) run one at a time.
    CARGO_TARGET_DIR="$(target_dir)/broken" cargo build -q -p atoll-node --bin atoll-node --features broken-modes
    exec cargo test -q -p atoll-jepsen --test broken_modes -- --ignored --test-threads=1 --nocapture
    ;;
  --cleanup) build; "$(bin)" --cleanup; exit 0 ;;
  --smoke)
    shift
    setup
    build
    # Four runs, ~32 s each with start-up and checking: every nemesis and workload at least once.
    status=0
    "$(bin)" --workload register --nemesis kill,pause,clock --time 22 --quiet 3 --fault 4 "$@" || status=1
    "$(bin)" --workload set --nemesis partition,netem,split --time 22 --quiet 3 --fault 4 "$@" || status=1
    "$(bin)" --workload append --nemesis power,kill --time 22 --quiet 3 --fault 4 "$@" || status=1
    "$(bin)" --workload bank --nemesis partition,transfer --time 22 --quiet 3 --fault 4 "$@" || status=1
    exit $status
    ;;
esac
setup
build
exec "$(bin)" "$@"
