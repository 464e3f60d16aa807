//! A leader builds a newer snapshot when a follower refuses its current
//! one as stale (`service::raft`: its range overlaps a shard the follower
//! hosts, so it predates a split). openraft sends whatever snapshot is
//! current at each attempt, so the next attempt carries the new one.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::raft::type_config::Raft;
use crate::storage::keys::ShardId;

/// The longest a refresh waits for its build before another may start.
const BUILD_WAIT: Duration = Duration::from_secs(10);

/// Builds a snapshot each time `stale` is notified and the state machine
/// has applied past the current snapshot. Ends with the Raft instance.
pub fn spawn(raft: Raft, shard: ShardId, stale: Arc<Notify>) {
    tokio::spawn(async move {
        loop {
            stale.notified().await;
            let m = raft.metrics().borrow().clone();
            if m.state == openraft::ServerState::Shutdown {
                return;
            }
            let applied = m.last_applied.map(|l| l.index);
            if applied.is_none() || m.snapshot.map(|l| l.index) >= applied {
                continue;
            }
            tracing::info!(
                shard,
                term = m.current_term,
                snapshot = ?m.snapshot.map(|l| l.index),
                ?applied,
                "a follower refused the current snapshot as stale; building a newer one"
            );
            if raft.trigger().snapshot().await.is_err() {
                return;
            }
            let built = raft
                .wait(Some(BUILD_WAIT))
                .metrics(
                    |m| m.snapshot.map(|l| l.index) >= applied,
                    "snapshot refreshed",
                )
                .await;
            if let Err(e) = built {
                tracing::debug!(shard, "waiting for the refreshed snapshot: {e}");
            }
        }
    });
}
