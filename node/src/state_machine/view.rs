//! The apply/scan gate of one replica: a consistent view for multi-key reads.
//!
//! Applying a batch of entries is one atomic engine write, but a scan page
//! is read from the engine in several chunks (and the `Engine` trait does
//! not promise a point-in-time iterator: sled's took its lock per step), so
//! a scan running next to an apply could see some keys of a `Batch` before
//! it was applied and others after. The
//! gate closes that: the state machine holds it exclusively while it writes
//! an applied batch (or installs a snapshot), and a scan holds it shared for
//! the whole page. Point reads need no gate: one key is read atomically.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

/// Shared between a replica's state machine and its read path.
#[derive(Clone, Default)]
pub struct ApplyGate {
    lock: Arc<RwLock<()>>,
    /// Set once the replica is removed: nothing of it may land any more.
    closed: Arc<AtomicBool>,
}

/// While held, no apply of this replica lands in the engine.
pub type ViewGuard = OwnedRwLockReadGuard<()>;

impl ApplyGate {
    pub fn new() -> Self {
        Self::default()
    }

    /// A consistent view for a multi-key read, held until dropped.
    pub async fn view(&self) -> ViewGuard {
        self.lock.clone().read_owned().await
    }

    /// Exclusive access for writing an applied batch. The writer checks
    /// [`ApplyGate::is_closed`] while holding it.
    pub async fn apply(&self) -> OwnedRwLockWriteGuard<()> {
        self.lock.clone().write_owned().await
    }

    /// Closes the gate for good (the replica is being removed), once the
    /// write in flight, if any, has landed: no later write of the state
    /// machine (a batch its stopped Raft still had queued, a snapshot
    /// being built) reaches the engine after this returns.
    pub async fn close(&self) {
        let _writer = self.apply().await;
        self.closed.store(true, Ordering::Release);
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}
