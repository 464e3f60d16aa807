//! Sleeping shards (`node/src/shard/hibernation.rs`): a scenario of its
//! own, because the fault schedules keep the cluster too busy for shards to
//! fall asleep on purpose.
//!
//! Three nodes, four data shards (three splits), a few keys in each. Then:
//! 1. idle for a while: every replica of every data shard must be asleep;
//! 2. a write to one shard is acknowledged at once (a sleeping leader wakes);
//! 3. idle again, then the node leading most sleeping shards is crashed for
//!    good: every shard must take a write within
//!    [`crate::checks::liveness::RESUME_WITHIN`] (sleeping followers notice
//!    that their leader's node went silent, wake and elect).
//!
//! Checked along the way: each acknowledged write reads back.

use std::time::Duration;

use atoll_client::admin::{cluster_status, split_at};
use atoll_node::pd::PD_SHARD;

use crate::checks::liveness::RESUME_WITHIN;
use crate::checks::ranges::check_every_shard_writable;
use crate::cluster::{sim_tuning, SimCluster};

/// Where the data shards are cut.
const SPLITS: [&str; 3] = ["f", "m", "t"];

/// What one run saw.
#[derive(Debug, Default)]
pub struct SleepReport {
    /// Replicas asleep after the first idle period, of all data replicas.
    pub asleep_first: (usize, usize),
    /// The node crashed in step 3.
    pub crashed: u64,
}

/// Data replicas asleep and in all, from every reachable node's status;
/// and per node the sleeping shards it leads.
async fn sleepers(cluster: &SimCluster) -> ((usize, usize), Vec<(u64, usize)>) {
    let endpoints = cluster.endpoints();
    let statuses = cluster
        .on_client(async move { cluster_status(endpoints, Duration::from_secs(1)).await })
        .await;
    let (mut asleep, mut all) = (0, 0);
    let mut leading = Vec::new();
    for node in statuses {
        let Ok(status) = node.result else { continue };
        let mut led = 0;
        for s in &status.shards {
            if s.shard.as_ref().map(|d| d.id) == Some(PD_SHARD) {
                continue;
            }
            all += 1;
            if s.asleep {
                asleep += 1;
                if s.role == "leader" {
                    led += 1;
                }
            }
        }
        leading.push((status.node_id, led));
    }
    ((asleep, all), leading)
}

/// Long enough for every quiet shard to fall asleep: the quiet time plus a
/// few beats.
fn idle() -> Duration {
    Duration::from_millis(sim_tuning().sleep_after_ms) + Duration::from_secs(4)
}

pub async fn run() -> Result<SleepReport, String> {
    let cluster = SimCluster::start(3);
    let mut report = SleepReport::default();
    let client = cluster.client(Duration::from_secs(10)).await;
    let endpoints = cluster.endpoints();
    // The PD must know shard 1 before it can be split by key.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for key in SPLITS {
        // The shard just split off elects its leader first: retry a while.
        let mut tries = 0;
        loop {
            let e = endpoints.clone();
            let r = cluster
                .on_client(
                    async move { split_at(&e, key.as_bytes(), Duration::from_secs(5)).await },
                )
                .await;
            match r {
                Ok(_) => break,
                Err(e) if tries >= 20 => return Err(format!("split at {key:?}: {e}")),
                Err(_) => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
    for key in ["a", "g", "n", "u"] {
        let c = client.clone();
        cluster
            .on_client(async move { c.put(key, "v1").await })
            .await
            .map_err(|e| format!("put {key:?}: {e}"))?;
    }

    // 1. Quiet: everything sleeps.
    tokio::time::sleep(idle()).await;
    let (counts, _) = sleepers(&cluster).await;
    report.asleep_first = counts;
    if counts.1 < 12 || counts.0 != counts.1 {
        return Err(format!(
            "after {:?} idle, {} of {} data replicas sleep; all should",
            idle(),
            counts.0,
            counts.1
        ));
    }

    // 2. A write to a sleeping shard is served.
    let c = client.clone();
    let started = tokio::time::Instant::now();
    cluster
        .on_client(async move { c.put("n", "v2").await })
        .await
        .map_err(|e| format!("a write to a sleeping shard failed: {e}"))?;
    if started.elapsed() > Duration::from_secs(2) {
        return Err(format!(
            "a write to a sleeping shard took {:?}",
            started.elapsed()
        ));
    }

    // 3. Quiet again; the node leading the most sleeping shards dies.
    tokio::time::sleep(idle()).await;
    let (_, leading) = sleepers(&cluster).await;
    let Some(&(victim, led)) = leading.iter().max_by_key(|(_, led)| *led) else {
        return Err("no node answered its status".into());
    };
    if led == 0 {
        return Err(format!("no node leads a sleeping shard: {leading:?}"));
    }
    report.crashed = victim;
    cluster.crash(victim);
    check_every_shard_writable(&cluster, RESUME_WITHIN).await?;
    for (key, want) in [("a", "v1"), ("g", "v1"), ("n", "v2"), ("u", "v1")] {
        let c = client.clone();
        let got = cluster
            .on_client(async move { c.get(key).await })
            .await
            .map_err(|e| format!("get {key:?}: {e}"))?;
        if got.as_deref() != Some(want.as_bytes()) {
            return Err(format!("{key:?} reads {got:?}, wrote {want:?}"));
        }
    }
    Ok(report)
}
