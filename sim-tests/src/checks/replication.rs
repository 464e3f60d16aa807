//! Once the faults heal, no shard stays below its replication factor: the
//! newest applied membership of every shard (the PD's own group too, which
//! `pd::pd_group` moves) has exactly
//! `replication_factor` voters, out of any joint configuration (the PD
//! repairs what moves, drains and dead nodes left).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::cluster::{Members, SimCluster};

/// What the PD keeps per shard (`PdConfig::replication_factor`).
pub const REPLICATION_FACTOR: usize = 3;

/// Shards whose newest membership is not `rf` plain voters, in words.
pub fn under_replicated(cluster: &SimCluster, rf: usize) -> Vec<String> {
    let mut newest: BTreeMap<u64, ((u64, u64), Members)> = BTreeMap::new();
    for id in cluster.ids() {
        for (shard, s) in cluster.shards_of(id) {
            let (Some(Ok(meta)), Some(Ok(members))) = (s.meta, s.membership) else {
                continue;
            };
            let key = (meta.epoch.version, meta.epoch.conf_ver);
            if newest.get(&shard).is_none_or(|(k, _)| *k < key) {
                newest.insert(shard, (key, members));
            }
        }
    }
    newest
        .into_iter()
        .filter(|(_, (_, m))| m.joint || m.voters.len() != rf.min(cluster.ids().len()))
        .map(|(shard, (_, m))| {
            format!(
                "shard {shard}: voters {:?}{}",
                m.voters,
                if m.joint { " (joint)" } else { "" }
            )
        })
        .collect()
}

pub async fn wait_fully_replicated(cluster: &SimCluster, timeout: Duration) -> Result<(), String> {
    let start = tokio::time::Instant::now();
    loop {
        let short = under_replicated(cluster, REPLICATION_FACTOR);
        if short.is_empty() {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(format!(
                "shards not back at {REPLICATION_FACTOR} voters {timeout:?} after the faults healed: {}",
                short.join("; ")
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
