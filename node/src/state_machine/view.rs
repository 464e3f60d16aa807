//! The apply/scan gate of one replica: a consistent view for multi-key reads.
//!
//! Applying a batch of entries is one atomic engine write, but sled's range
//! iterator takes its lock per step, so a scan running next to an apply can
//! see some keys of a `Batch` before it was applied and others after. The
//! gate closes that: the state machine holds it exclusively while it writes
//! an applied batch (or installs a snapshot), and a scan holds it shared for
//! the whole page. Point reads need no gate: one key is read atomically.

use std::sync::Arc;

use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

/// Shared between a replica's state machine and its read path.
#[derive(Clone, Default)]
pub struct ApplyGate(Arc<RwLock<()>>);

/// While held, no apply of this replica lands in the engine.
pub type ViewGuard = OwnedRwLockReadGuard<()>;

impl ApplyGate {
    pub fn new() -> Self {
        Self::default()
    }

    /// A consistent view for a multi-key read, held until dropped.
    pub async fn view(&self) -> ViewGuard {
        self.0.clone().read_owned().await
    }

    /// Exclusive access for writing an applied batch.
    pub async fn apply(&self) -> OwnedRwLockWriteGuard<()> {
        self.0.clone().write_owned().await
    }
}
