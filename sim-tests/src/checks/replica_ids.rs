//! Replica ids are never reused: an id that left a shard's committed
//! membership is never in a later one (a node added back to a shard joins
//! as a new member, so its old log and vote cannot count for the new one).
//! Broken mode `ReuseReplicaIds` gives an added node its node id again.

use crate::observer::Observer;

pub fn check_replica_ids_never_reused(observer: &Observer) -> Result<(), String> {
    let reused = observer.reused_replica_ids();
    if reused.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = reused
        .iter()
        .map(|(shard, replica, left, back)| {
            format!("shard {shard}: replica {replica} left at index {left}, back at index {back}")
        })
        .collect();
    Err(format!(
        "a replica id was used again after it left its shard: {}",
        shown.join("; ")
    ))
}
