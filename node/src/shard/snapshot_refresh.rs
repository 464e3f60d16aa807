//! A leader builds a newer snapshot, and purges the log it covers, when a
//! follower refuses its current snapshot as stale (`service::raft`: its
//! range overlaps a shard the follower hosts, so it predates a split) or
//! refuses log entries because it waits for its first snapshot. openraft
//! sends whatever snapshot is current at each attempt, and a snapshot to a
//! follower whose next entry is purged, so the next attempt carries the
//! new one.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::raft::type_config::Raft;
use crate::storage::keys::ShardId;

/// The longest a refresh waits for its build before another may start.
const BUILD_WAIT: Duration = Duration::from_secs(10);

/// Each time `stale` is notified: builds a snapshot if the state machine
/// has applied past the current one, then purges the log up to the
/// snapshot. Ends with the Raft instance.
pub fn spawn(raft: Raft, shard: ShardId, stale: Arc<Notify>) {
    tokio::spawn(async move {
        loop {
            stale.notified().await;
            let m = raft.metrics().borrow().clone();
            if m.state == openraft::ServerState::Shutdown {
                return;
            }
            let applied = m.last_applied.map(|l| l.index);
            if applied.is_none() {
                continue;
            }
            tracing::info!(
                shard,
                term = m.current_term,
                snapshot = ?m.snapshot.map(|l| l.index),
                ?applied,
                "a follower refused the snapshot or log it was sent; sending a new snapshot"
            );
            let mut snapshot = m.snapshot.map(|l| l.index);
            if snapshot < applied {
                if raft.trigger().snapshot().await.is_err() {
                    return;
                }
                match raft
                    .wait(Some(BUILD_WAIT))
                    .metrics(
                        |m| m.snapshot.map(|l| l.index) >= applied,
                        "snapshot refreshed",
                    )
                    .await
                {
                    Ok(m) => snapshot = m.snapshot.map(|l| l.index),
                    Err(e) => {
                        tracing::debug!(shard, "waiting for the refreshed snapshot: {e}");
                        continue;
                    }
                }
            }
            let purged = raft.metrics().borrow().purged.map(|l| l.index);
            if let Some(upto) = snapshot.filter(|s| Some(*s) > purged) {
                if raft.trigger().purge_log(upto).await.is_err() {
                    return;
                }
            }
        }
    });
}
