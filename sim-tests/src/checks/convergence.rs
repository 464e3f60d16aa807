//! After the run, every replica holds the same data.

use std::time::Duration;

use crate::cluster::SimCluster;

pub async fn wait_converged(cluster: &SimCluster, timeout: Duration) -> Result<(), String> {
    let start = tokio::time::Instant::now();
    loop {
        let first = cluster.data_of(1);
        let differing: Vec<u64> = cluster
            .ids()
            .into_iter()
            .filter(|id| cluster.data_of(*id) != first)
            .collect();
        if differing.is_empty() {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(format!(
                "replicas did not converge within {timeout:?}: nodes {differing:?} differ from node 1 ({} keys)",
                first.len()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
