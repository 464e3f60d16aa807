//! Shard splits asked for by an operator while the workload and the
//! nemesis run: every 1-3 s, `SplitShard` of the shard holding a random
//! candidate key (as the PD knows the shards), at that key, through the
//! shard's leader (`atoll_client::admin::split_at`). The candidates cut between the
//! workload's key families, never inside a batch group (whose scans must
//! stay on one shard to be atomic).

use std::time::Duration;

use atoll_client::admin::split_at;
use rand::Rng;

/// Split keys: between batch groups ("grp/..") and registers ("reg..")
/// and among registers and unique keys ("uniq-..").
pub const CANDIDATES: &[&str] = &[
    "grp0",
    "h",
    "reg1",
    "reg2",
    "reg3",
    "t",
    "uniq-000300",
    "uniq-000900",
];

/// When the first split is asked for: the PD must have heard of shard 1.
const FIRST_AFTER: Duration = Duration::from_secs(3);

/// One split request and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub at_ms: u128,
    pub key: String,
    /// The new shard's id, or why there is none.
    pub outcome: Result<u64, String>,
}

pub async fn run(endpoints: Vec<String>, duration: Duration) -> Vec<Attempt> {
    let start = tokio::time::Instant::now();
    let mut attempts = Vec::new();
    tokio::time::sleep(FIRST_AFTER).await;
    while start.elapsed() < duration {
        let (pause, key) = {
            let mut rng = madsim::rand::thread_rng();
            (
                Duration::from_millis(rng.gen_range(1000..3000)),
                CANDIDATES[rng.gen_range(0..CANDIDATES.len())],
            )
        };
        tokio::time::sleep(pause).await;
        let at_ms = start.elapsed().as_millis();
        let outcome = split_at(&endpoints, key.as_bytes(), Duration::from_secs(3))
            .await
            .map(|(_, right)| right.id)
            .map_err(|e| e.to_string());
        attempts.push(Attempt {
            at_ms,
            key: key.to_string(),
            outcome,
        });
    }
    attempts
}
