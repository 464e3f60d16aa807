//! Writes resume soon after the faults heal: once every partition is healed
//! and every node is back, a write must be acknowledged within a bound. This
//! catches stalls that lose nothing but stop the cluster, such as
//! replication that keeps giving up on a slow follower.

use std::time::Duration;

use crate::cluster::SimCluster;

/// How soon after healing a write must be acknowledged.
pub const RESUME_WITHIN: Duration = Duration::from_secs(10);

pub async fn check_writes_resume(cluster: &SimCluster) -> Result<(), String> {
    let client = cluster.client(RESUME_WITHIN).await;
    let started = tokio::time::Instant::now();
    let result = cluster
        .on_client(async move { client.put("liveness-probe", "after-heal").await })
        .await;
    match result {
        Ok(()) => Ok(()),
        Err(e) => Err(format!(
            "writes did not resume within {RESUME_WITHIN:?} after the faults healed ({:?} spent): {e}",
            started.elapsed()
        )),
    }
}
