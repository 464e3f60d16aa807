//! Deliberately broken modes, for proving that the checkers catch what they
//! claim to: one seam, [`on`], asked at each fault point.
//!
//! - In a real build with the cargo feature `broken-modes` (off by default,
//!   so the production binary has none of this) the hidden flag
//!   `atoll-node --broken-mode stale-reads|ack-before-sync|no-dedup` sets
//!   one [`Mode`] for the whole process ([`set`], once, at startup). The
//!   Jepsen-style harness builds that binary into its own target dir
//!   (`scripts/jepsen.sh --broken-modes`).
//! - Under `--cfg madsim` with feature `sim-bugs`, [`on`] asks the
//!   simulation's thread-local switch ([`crate::sim_hooks::bug`]), which has
//!   these and more (see `sim_hooks::Bug`).
//! - Otherwise [`on`] is a constant `false`, and the branches it guards are
//!   removed by the compiler.
//!
//! A process-global atomic and not a thread-local: a real node runs on a
//! multi-threaded runtime, and every task must see the same mode.

/// A broken behaviour a node can be switched into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Serve linearizable reads from local state on any replica, leader or
    /// follower, without the ReadIndex barrier (`sim_hooks::Bug::StaleReads`).
    StaleReads,
    /// Acknowledge a Raft log append before its fdatasync
    /// (`sim_hooks::Bug::AckBeforeFlush`). A real node then syncs the log in
    /// the background at most every [`LAZY_SYNC_MS`] (as a store with
    /// "fsync every interval" would), so a power cut loses the last
    /// acknowledged writes; the simulation never syncs.
    AckBeforeSync,
    /// Skip the dedup table when applying, so a retried write whose first
    /// attempt applied is applied again (`sim_hooks::Bug::NoDedup`).
    NoDedup,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::StaleReads, Mode::AckBeforeSync, Mode::NoDedup];

    /// The flag's spelling.
    pub fn name(self) -> &'static str {
        match self {
            Mode::StaleReads => "stale-reads",
            Mode::AckBeforeSync => "ack-before-sync",
            Mode::NoDedup => "no-dedup",
        }
    }

    /// Parses [`Mode::name`].
    pub fn parse(s: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.name() == s)
    }

    #[cfg(all(feature = "broken-modes", not(madsim)))]
    fn code(self) -> u8 {
        match self {
            Mode::StaleReads => 1,
            Mode::AckBeforeSync => 2,
            Mode::NoDedup => 3,
        }
    }
}

/// How often a real node in [`Mode::AckBeforeSync`] asks for a log sync.
pub const LAZY_SYNC_MS: u64 = 200;

#[cfg(all(feature = "broken-modes", not(madsim)))]
static MODE: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Switches this process into `mode` (feature `broken-modes`, real builds).
#[cfg(all(feature = "broken-modes", not(madsim)))]
pub fn set(mode: Mode) {
    MODE.store(mode.code(), std::sync::atomic::Ordering::Relaxed);
}

/// Whether `mode` is switched on.
#[cfg(all(feature = "broken-modes", not(madsim)))]
#[inline]
pub fn on(mode: Mode) -> bool {
    MODE.load(std::sync::atomic::Ordering::Relaxed) == mode.code()
}

/// In [`Mode::AckBeforeSync`], whether to ask for a log sync now (at most
/// every [`LAZY_SYNC_MS`]).
#[cfg(all(feature = "broken-modes", not(madsim)))]
pub fn lazy_sync_due() -> bool {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = u64::try_from(
        START
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_millis(),
    )
    .unwrap_or(u64::MAX);
    let last = LAST.load(Ordering::Relaxed);
    now.saturating_sub(last) >= LAZY_SYNC_MS
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

/// The simulation's `AckBeforeFlush` never syncs.
#[cfg(not(all(feature = "broken-modes", not(madsim))))]
pub const fn lazy_sync_due() -> bool {
    false
}

/// Whether `mode` is switched on in this simulated run.
#[cfg(all(madsim, feature = "sim-bugs"))]
#[inline]
pub fn on(mode: Mode) -> bool {
    use crate::sim_hooks::{bug, Bug};
    bug(match mode {
        Mode::StaleReads => Bug::StaleReads,
        Mode::AckBeforeSync => Bug::AckBeforeFlush,
        Mode::NoDedup => Bug::NoDedup,
    })
}

/// Always `false`: this build has no broken modes.
#[cfg(not(any(
    all(feature = "broken-modes", not(madsim)),
    all(madsim, feature = "sim-bugs")
)))]
#[inline(always)]
pub const fn on(_mode: Mode) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for m in Mode::ALL {
            assert_eq!(Mode::parse(m.name()), Some(m));
        }
        assert_eq!(Mode::parse("ack-before-commit"), None);
    }
}
