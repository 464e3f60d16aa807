//! After the run, every replica holds the same replicated state: the user
//! data, and per shard its descriptor (range, epoch), its dedup session
//! table and its session id counter. A replica whose sessions differ would
//! answer a retried write differently once it leads.

use std::collections::BTreeMap;
use std::time::Duration;

use atoll_node::storage::keys::ShardId;

use crate::cluster::{ShardState, SimCluster};

/// What one node holds, as compared across replicas.
#[derive(Debug, PartialEq, Eq)]
pub struct Replica {
    pub data: Vec<(Vec<u8>, Vec<u8>)>,
    pub shards: BTreeMap<ShardId, ShardState>,
}

impl Replica {
    fn of(cluster: &SimCluster, id: u64) -> Self {
        Replica {
            data: cluster.data_of(id),
            shards: cluster.shards_of(id),
        }
    }
}

/// The first difference between two replicas, in words; `None` if equal.
pub fn difference(a: &Replica, b: &Replica) -> Option<String> {
    if a.data != b.data {
        return Some(format!("data ({} vs {} keys)", a.data.len(), b.data.len()));
    }
    let ids: Vec<&ShardId> = a.shards.keys().chain(b.shards.keys()).collect();
    for id in ids {
        let (Some(x), Some(y)) = (a.shards.get(id), b.shards.get(id)) else {
            return Some(format!("shard {id} is on one replica only"));
        };
        if x.meta != y.meta {
            return Some(format!(
                "shard {id} descriptor ({:?} vs {:?})",
                x.meta, y.meta
            ));
        }
        // Absent means 1 (`Sessions::load`): a shard with no session yet
        // stores it only after a snapshot install.
        let next = |s: &ShardState| s.next_session_id.clone().or(Some(Ok(1)));
        if next(x) != next(y) {
            return Some(format!(
                "shard {id} next session id ({:?} vs {:?})",
                x.next_session_id, y.next_session_id
            ));
        }
        if x.sessions != y.sessions {
            return Some(format!(
                "shard {id} sessions ({} vs {} stored rows)",
                x.sessions.len(),
                y.sessions.len()
            ));
        }
    }
    None
}

pub async fn wait_converged(cluster: &SimCluster, timeout: Duration) -> Result<(), String> {
    let start = tokio::time::Instant::now();
    loop {
        let first = Replica::of(cluster, 1);
        let differing: Vec<String> = cluster
            .ids()
            .into_iter()
            .filter_map(|id| {
                difference(&first, &Replica::of(cluster, id)).map(|d| format!("node {id}: {d}"))
            })
            .collect();
        if differing.is_empty() {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(format!(
                "replicas did not converge within {timeout:?}: differences from node 1 ({} keys): {}",
                first.data.len(),
                differing.join("; ")
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(sessions: &[u8]) -> Replica {
        let shard = ShardState {
            meta: None,
            next_session_id: Some(Ok(3)),
            sessions: sessions.iter().map(|b| (vec![*b], vec![*b])).collect(),
        };
        Replica {
            data: vec![(b"k".to_vec(), b"v".to_vec())],
            shards: BTreeMap::from([(1, shard)]),
        }
    }

    #[test]
    fn replicas_differing_only_in_sessions_differ() {
        assert_eq!(difference(&replica(&[1, 2]), &replica(&[1, 2])), None);
        let d = difference(&replica(&[1, 2]), &replica(&[1])).expect("a difference");
        assert!(d.contains("shard 1 sessions"), "{d}");
        let mut other = replica(&[1, 2]);
        other.shards.get_mut(&1).expect("shard 1").next_session_id = Some(Ok(4));
        let d = difference(&replica(&[1, 2]), &other).expect("a difference");
        assert!(d.contains("next session id"), "{d}");
    }
}
