//! Breaks repeated split votes.
//!
//! openraft 0.9 draws a replica's election timeout once, when the Raft
//! instance starts, and checks it on a tick of 1.5 heartbeats. Replicas
//! whose timeouts fall in the same tick then stand for election at the same
//! moment every round, split the vote, and can do so indefinitely (the
//! simulation hit this in ~6 % of runs of a calm cluster). Classic Raft
//! re-draws the timeout for every election; this task restores that: while
//! a shard has had no leader for one maximum election timeout, it waits a
//! freshly drawn random time and starts an election itself. Starting an
//! election is always safe in Raft; the worst case is a wasted term.

use std::sync::Arc;
use std::time::Duration;

use openraft::{AsyncRuntime, ServerState};
use rand::Rng;

use super::hibernation::Sleep;
use crate::raft::type_config::{Raft, ReplicaId, Runtime};

/// Spawns the nudger for `raft`; it ends when the Raft instance shuts down.
pub fn spawn(raft: Raft, sleep: Arc<Sleep>, me: ReplicaId, min: Duration, max: Duration) {
    tokio::spawn(async move {
        let mut leaderless_since: Option<tokio::time::Instant> = None;
        loop {
            let wait = {
                let mut rng = <Runtime as AsyncRuntime>::thread_rng();
                Duration::from_millis(
                    rng.gen_range(min.as_millis() as u64..=max.as_millis() as u64),
                )
            };
            tokio::time::sleep(wait).await;
            if sleep.is_asleep() {
                // A sleeping replica has a leader; the beats watch over it.
                leaderless_since = None;
                continue;
            }
            let m = raft.metrics().borrow().clone();
            if m.state == ServerState::Shutdown {
                return;
            }
            let voter = m
                .membership_config
                .membership()
                .voter_ids()
                .any(|id| id == me);
            if m.current_leader.is_some() || m.state == ServerState::Leader || !voter {
                leaderless_since = None;
                continue;
            }
            let since = *leaderless_since.get_or_insert_with(tokio::time::Instant::now);
            if since.elapsed() >= max {
                tracing::debug!(
                    replica = %me,
                    term = m.current_term,
                    "no leader for a while; starting an election"
                );
                if raft.trigger().elect().await.is_err() {
                    return;
                }
                leaderless_since = None;
            }
        }
    });
}
