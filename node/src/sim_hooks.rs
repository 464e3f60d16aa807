//! Simulation-only seams (compiled only under `--cfg madsim`).
//!
//! - [`NetFaults`]: drop, delay and duplicate individual Raft RPCs in our
//!   transport. madsim's connections are reliable (a clogged link holds
//!   messages, it never loses them), so message loss is modelled here.
//! - [`flush_latency`]: a simulated disk's flush time, with slow outliers.
//! - [`Bug`] (feature `sim-bugs`): deliberately broken modes that the
//!   simulation's checkers must catch, proving they can fail.
//!
//! State is thread-local: a madsim runtime runs on one thread, and tests in
//! one binary run on different threads.

use std::cell::Cell;
use std::time::Duration;

use rand::Rng;

/// Per-RPC fault probabilities for Raft messages between nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NetFaults {
    pub drop: f64,
    pub duplicate: f64,
    pub max_delay: Duration,
}

thread_local! {
    static NET: Cell<NetFaults> = const { Cell::new(NetFaults { drop: 0.0, duplicate: 0.0, max_delay: Duration::ZERO }) };
}

pub fn set_net_faults(f: NetFaults) {
    NET.with(|n| n.set(f));
}

pub fn net_faults() -> NetFaults {
    NET.with(|n| n.get())
}

/// What to do with one outgoing RPC.
pub struct RpcFate {
    pub drop: bool,
    pub duplicate: bool,
    pub delay: Duration,
}

/// Draws the fate of one RPC from madsim's deterministic RNG.
pub fn rpc_fate() -> RpcFate {
    let f = net_faults();
    let mut rng = madsim::rand::thread_rng();
    let delay = if f.max_delay.is_zero() {
        Duration::ZERO
    } else {
        Duration::from_micros(rng.gen_range(0..=f.max_delay.as_micros() as u64))
    };
    RpcFate {
        drop: rng.gen_bool(f.drop.clamp(0.0, 1.0)),
        duplicate: rng.gen_bool(f.duplicate.clamp(0.0, 1.0)),
        delay,
    }
}

/// How long one flush of the simulated disk takes: usually a fraction of a
/// millisecond, sometimes tens of milliseconds, and now and then a slow
/// outlier of hundreds (a busy device, a journal commit). A real disk does
/// this; a simulation whose flush is free cannot see stalls that slow
/// flushes cause, such as replication that gives up on a follower before it
/// can acknowledge.
pub fn flush_latency() -> Duration {
    let mut rng = madsim::rand::thread_rng();
    let micros = match rng.gen_range(0..1000u32) {
        0..=899 => rng.gen_range(100..2_000),
        900..=979 => rng.gen_range(2_000..30_000),
        _ => rng.gen_range(100_000..400_000),
    };
    Duration::from_micros(micros)
}

/// Deliberately broken behaviours, for proving the checkers work.
#[cfg(feature = "sim-bugs")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bug {
    None,
    /// Serve "linearizable" reads from local state, without ReadIndex.
    StaleReads,
    /// Acknowledge a write once it is proposed on the leader, before commit.
    AckBeforeCommit,
    /// Acknowledge a log append before it is flushed.
    AckBeforeFlush,
    /// Read scan pages without the replica's consistent view, so a page can
    /// show half of an applied batch.
    ScanWithoutView,
    /// Skip the dedup table when applying: every write is fresh, so a
    /// retried write whose first attempt was applied is applied again.
    NoDedup,
}

#[cfg(feature = "sim-bugs")]
thread_local! {
    static BUG: Cell<Bug> = const { Cell::new(Bug::None) };
}

#[cfg(feature = "sim-bugs")]
pub fn set_bug(b: Bug) {
    BUG.with(|c| c.set(b));
}

/// Whether `b` is switched on (always false without feature `sim-bugs`).
#[cfg(feature = "sim-bugs")]
pub fn bug(b: Bug) -> bool {
    BUG.with(|c| c.get()) == b
}
