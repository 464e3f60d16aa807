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

/// A split child serves while its first snapshot is being built: with
/// every snapshot build taking [`SLOW_BUILD`], a write to the child's range
/// must be acknowledged within [`CHILD_SERVES_WITHIN`] of asking for the
/// split (openraft used to build the child's snapshot while the child
/// started, and the child's keys were unavailable for the whole build).
/// Returns how long the split and the write took.
pub async fn child_serves_before_its_first_snapshot() -> Result<Duration, String> {
    let cluster = crate::cluster::SimCluster::start(3);
    let client = cluster.client(Duration::from_secs(30)).await;
    let endpoints = cluster.endpoints();
    tokio::time::sleep(FIRST_AFTER).await;
    let c = client.clone();
    cluster
        .on_client(async move { c.put("a", "1").await })
        .await
        .map_err(|e| format!("put before the split: {e}"))?;
    atoll_node::sim_hooks::set_snapshot_build_delay(SLOW_BUILD);
    let started = tokio::time::Instant::now();
    let split = cluster
        .on_client(async move { split_at(&endpoints, b"m", Duration::from_secs(30)).await })
        .await;
    let c = client.clone();
    let put = cluster
        .on_client(async move { c.put("x", "1").await })
        .await;
    let took = started.elapsed();
    atoll_node::sim_hooks::set_snapshot_build_delay(Duration::ZERO);
    split.map_err(|e| format!("split at \"m\": {e}"))?;
    put.map_err(|e| format!("put to the child: {e}"))?;
    if took > CHILD_SERVES_WITHIN {
        return Err(format!(
            "the split and a write to the child took {took:?} with snapshot builds of \
             {SLOW_BUILD:?}: the child waited for its first snapshot"
        ));
    }
    Ok(took)
}

/// How long each snapshot build takes in [`child_serves_before_its_first_snapshot`].
pub const SLOW_BUILD: Duration = Duration::from_secs(6);

/// How soon the child must take a write there: a few election rounds.
pub const CHILD_SERVES_WITHIN: Duration = Duration::from_secs(3);

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
