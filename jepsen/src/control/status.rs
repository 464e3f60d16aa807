//! Who leads: the nodes' admin `Status` answers, read for the first shard's
//! leader; and the operator calls the nemeses make (transfer, split).

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

/// Moves shard 1's leadership to `target` through whichever node leads
/// (`atollctl shard transfer-leader`). `Ok` describes what happened: the
/// move, or why the cluster declined it (a refusal is not a harness error).
pub async fn transfer_leader(endpoints: &[String], target: u64) -> Result<String, String> {
    let moved = atoll_client::admin::on_leader(endpoints, Duration::from_secs(5), |a| async move {
        a.transfer_leader(1, target).await
    })
    .await
    .map_err(|e| e.to_string())?;
    Ok(match moved {
        Ok(t) => format!(
            "node {} leads term {} (proposals held back {:?})",
            t.leader_id, t.term, t.paused
        ),
        Err(f) => format!("declined: {:?}: {}", f.reason, f.message),
    })
}

/// Splits the shard holding `key` at `key` (`atollctl shard split`). `Ok`
/// describes the split; a refusal (the key already starts a shard, the PD
/// has not heard of a new shard yet) is an `Err` the nemesis records, not a
/// harness error.
pub async fn split_at(endpoints: &[String], key: &[u8]) -> Result<String, String> {
    let (left, right) = atoll_client::admin::split_at(endpoints, key, Duration::from_secs(5))
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!("shard {} split off shard {}", right.id, left.id))
}
