//! Leader transfers asked for by an operator while the workload and the
//! nemesis run: every so often, `TransferLeader` of shard 1 to a random
//! node, through the client library's `on_leader` as `atollctl` does.

use std::time::Duration;

use atoll_client::admin::{on_leader, TransferFailure};
use atoll_node::service::admin::FIRST_SHARD;
use rand::Rng;

/// When the first transfer is asked for.
const FIRST_AFTER: Duration = Duration::from_secs(2);

/// One transfer request and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub at_ms: u128,
    pub target: u64,
    pub outcome: TransferOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferOutcome {
    /// The node answered: `leader` leads `term`.
    Moved {
        leader: u64,
        term: u64,
        paused_ms: u128,
    },
    /// The transfer was tried and did not happen.
    Refused(TransferFailure, String),
    /// The call itself failed (no leader reachable, ...).
    CallFailed(String),
}

/// Asks for a transfer every 200-1200 ms, from 2 s on, until `duration` has passed.
pub async fn run(endpoints: Vec<String>, ids: Vec<u64>, duration: Duration) -> Vec<Attempt> {
    let start = tokio::time::Instant::now();
    let mut attempts = Vec::new();
    // After the first election (a transfer needs a leader to ask).
    tokio::time::sleep(FIRST_AFTER).await;
    while start.elapsed() < duration {
        let (pause, target) = {
            let mut rng = madsim::rand::thread_rng();
            (
                Duration::from_millis(rng.gen_range(200..1200)),
                ids[rng.gen_range(0..ids.len())],
            )
        };
        tokio::time::sleep(pause).await;
        let at_ms = start.elapsed().as_millis();
        let reply = on_leader(&endpoints, Duration::from_secs(3), |admin| async move {
            admin.transfer_leader(FIRST_SHARD, target).await
        })
        .await;
        let outcome = match reply {
            Ok(Ok(t)) => TransferOutcome::Moved {
                leader: t.leader_id,
                term: t.term,
                paused_ms: t.paused.as_millis(),
            },
            Ok(Err(f)) => TransferOutcome::Refused(f.reason, f.message),
            Err(e) => TransferOutcome::CallFailed(e.to_string()),
        };
        attempts.push(Attempt {
            at_ms,
            target,
            outcome,
        });
    }
    attempts
}
