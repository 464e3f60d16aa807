//! Shard splits asked for by an operator while the workload and the
//! nemesis run: every 1-3 s, `SplitShard` of the shard holding a random
//! candidate key, at that key, through the client library's `on_leader`
//! (as `atollctl shard split` does). The candidates cut between the
//! workload's key families, never inside a batch group (whose scans must
//! stay on one shard to be atomic).

use std::time::Duration;

use atoll_client::admin::on_leader;
use atoll_proto::kv_client::KvClient;
use atoll_proto::ShardsRequest;
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

/// The shard holding `key`, as node `addr` knows the shards.
async fn shard_of(addr: &str, key: &[u8]) -> Result<u64, String> {
    let mut kv = KvClient::connect(format!("http://{addr}"))
        .await
        .map_err(|e| e.to_string())?;
    let shards = kv
        .shards(ShardsRequest {})
        .await
        .map_err(|e| e.to_string())?
        .into_inner()
        .shards;
    shards
        .into_iter()
        .find(|d| d.start.as_slice() <= key && (d.end.is_empty() || key < d.end.as_slice()))
        .map(|d| d.id)
        .ok_or_else(|| format!("{addr} hosts no shard holding the key"))
}

pub async fn run(endpoints: Vec<String>, duration: Duration) -> Vec<Attempt> {
    let start = tokio::time::Instant::now();
    let mut attempts = Vec::new();
    tokio::time::sleep(FIRST_AFTER).await;
    while start.elapsed() < duration {
        let (pause, key, via) = {
            let mut rng = madsim::rand::thread_rng();
            (
                Duration::from_millis(rng.gen_range(1000..3000)),
                CANDIDATES[rng.gen_range(0..CANDIDATES.len())],
                endpoints[rng.gen_range(0..endpoints.len())].clone(),
            )
        };
        tokio::time::sleep(pause).await;
        let at_ms = start.elapsed().as_millis();
        let outcome = match shard_of(&via, key.as_bytes()).await {
            Err(e) => Err(e),
            Ok(shard) => on_leader(&endpoints, Duration::from_secs(3), |admin| async move {
                admin.split_shard(shard, Some(key.as_bytes())).await
            })
            .await
            .map(|(_, right)| right.id)
            .map_err(|e| e.to_string()),
        };
        attempts.push(Attempt {
            at_ms,
            key: key.to_string(),
            outcome,
        });
    }
    attempts
}
