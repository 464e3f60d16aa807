//! Who leads: the nodes' admin `Status` answers, read for the first shard's leader.

use std::time::Duration;

/// The id of a node that reports itself leader of the lowest-numbered shard, if any answers.
pub async fn leader(endpoints: &[String]) -> Option<u64> {
    let statuses =
        atoll_client::admin::cluster_status(endpoints.to_vec(), Duration::from_millis(500)).await;
    let mut best: Option<(u64, u64)> = None; // (shard, node)
    for s in statuses {
        let Ok(resp) = s.result else { continue };
        for sh in &resp.shards {
            let Some(desc) = sh.shard.as_ref() else {
                continue;
            };
            if sh.role == "leader" && best.is_none_or(|(shard, _)| desc.id < shard) {
                best = Some((desc.id, resp.node_id));
            }
        }
    }
    best.map(|(_, node)| node)
}
