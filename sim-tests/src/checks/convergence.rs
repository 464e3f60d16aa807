//! After the run, every replica of a shard holds the same replicated
//! state: the user data in the shard's range, its descriptor (range,
//! epoch), its dedup session table and its session id counter. A replica
//! whose sessions differ would answer a retried write differently once it
//! leads. The replicas compared are the members of the shard's newest
//! applied membership, each of which must host it; a node outside it (one
//! whose replica was moved away) must hold no data outside the shards it
//! hosts.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use atoll_node::shard::ShardMeta;
use atoll_node::state_machine::dedup::{SessionSnapshot, Sessions};
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

    /// The pairs in `meta`'s range.
    fn data_in(&self, meta: &ShardMeta) -> Vec<&(Vec<u8>, Vec<u8>)> {
        self.data.iter().filter(|(k, _)| meta.contains(k)).collect()
    }
}

fn meta_of(s: &ShardState) -> Option<&ShardMeta> {
    s.meta.as_ref().and_then(|m| m.as_ref().ok())
}

/// The first difference between two replicas of shard `meta.id`, in
/// words; `None` if equal.
pub fn difference(meta: &ShardMeta, a: &Replica, b: &Replica) -> Option<String> {
    let id = meta.id;
    let (Some(x), Some(y)) = (a.shards.get(&id), b.shards.get(&id)) else {
        return Some(format!("shard {id} is on one replica only"));
    };
    if x.meta != y.meta {
        return Some(format!(
            "shard {id} descriptor ({:?} vs {:?})",
            x.meta, y.meta
        ));
    }
    let (da, db) = (a.data_in(meta), b.data_in(meta));
    if da != db {
        return Some(format!(
            "shard {id} data ({} vs {} keys)",
            da.len(),
            db.len()
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
    // The tables, not their rows: where a replica stores a recorded result
    // (in its session's row or a row of its own) is its own business
    // (`state_machine::dedup`).
    let (tx, ty) = (sessions_of(x), sessions_of(y));
    if tx != ty {
        let rows = |t: &Result<Vec<SessionSnapshot>, String>| match t {
            Ok(t) => format!("{} sessions", t.len()),
            Err(e) => format!("unreadable: {e}"),
        };
        return Some(format!(
            "shard {id} sessions ({} vs {})",
            rows(&tx),
            rows(&ty)
        ));
    }
    None
}

/// The dedup table a replica's stored session rows load to.
fn sessions_of(s: &ShardState) -> Result<Vec<SessionSnapshot>, String> {
    let next_id = match &s.next_session_id {
        Some(Ok(n)) => Some(*n),
        Some(Err(e)) => return Err(e.clone()),
        None => None,
    };
    // The counter is compared above.
    let table = Sessions::load(next_id, s.sessions.clone()).map_err(|e| e.to_string())?;
    Ok(table.to_snapshot().sessions)
}

/// Every shard's members against its newest replica, and every node's
/// data against the shards it hosts.
pub fn differences(replicas: &BTreeMap<u64, Replica>) -> Vec<String> {
    let mut out = Vec::new();
    // Per shard: the replica with the newest descriptor and membership.
    let mut newest: BTreeMap<ShardId, (u64, (u64, u64))> = BTreeMap::new();
    for (node, r) in replicas {
        for (shard, s) in &r.shards {
            let Some(meta) = meta_of(s) else {
                out.push(format!(
                    "node {node}: shard {shard} descriptor {:?}",
                    s.meta
                ));
                continue;
            };
            let key = (meta.epoch.version, meta.epoch.conf_ver);
            if newest.get(shard).is_none_or(|(_, k)| *k < key) {
                newest.insert(*shard, (*node, key));
            }
        }
    }
    let mut newest_members: BTreeMap<ShardId, BTreeSet<u64>> = BTreeMap::new();
    for (shard, (holder, _)) in newest {
        let reference = &replicas[&holder];
        let state = &reference.shards[&shard];
        let Some(meta) = meta_of(state) else { continue };
        let members = match &state.membership {
            Some(Ok(m)) => m.nodes.clone(),
            other => {
                out.push(format!("node {holder}: shard {shard} membership {other:?}"));
                continue;
            }
        };
        newest_members.insert(shard, members.clone());
        for node in members {
            match replicas.get(&node) {
                None => out.push(format!("shard {shard}: member node {node} does not exist")),
                Some(r) => {
                    if let Some(d) = difference(meta, reference, r) {
                        out.push(format!("node {node} vs node {holder}: {d}"));
                    }
                }
            }
        }
    }
    // No node keeps a replica of a shard whose newest membership does not
    // list it (one removed while the node was down, say).
    for (node, r) in replicas {
        for shard in r.shards.keys() {
            let members = newest_members.get(shard);
            if members.is_some_and(|m| !m.contains(node)) {
                out.push(format!(
                    "node {node} still hosts shard {shard}, whose newest membership is {members:?}"
                ));
            }
        }
    }
    for (node, r) in replicas {
        let hosted: Vec<&ShardMeta> = r.shards.values().filter_map(meta_of).collect();
        let stray: Vec<&Vec<u8>> = r
            .data
            .iter()
            .map(|(k, _)| k)
            .filter(|k| !hosted.iter().any(|m| m.contains(k)))
            .collect();
        if let Some(first) = stray.first() {
            let ranges: Vec<String> = hosted
                .iter()
                .map(|m| {
                    format!(
                        "{} [{:?}, {:?})",
                        m.id,
                        String::from_utf8_lossy(&m.start),
                        m.end.as_deref().map(String::from_utf8_lossy)
                    )
                })
                .collect();
            out.push(format!(
                "node {node}: {} key(s) outside every shard it hosts, e.g. {:?}; it hosts {}",
                stray.len(),
                String::from_utf8_lossy(first),
                ranges.join(", ")
            ));
        }
    }
    out
}

pub async fn wait_converged(cluster: &SimCluster, timeout: Duration) -> Result<(), String> {
    let start = tokio::time::Instant::now();
    loop {
        let replicas: BTreeMap<u64, Replica> = cluster
            .ids()
            .into_iter()
            .map(|id| (id, Replica::of(cluster, id)))
            .collect();
        let differing = differences(&replicas);
        if differing.is_empty() {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(format!(
                "replicas did not converge within {timeout:?}: {}{}",
                differing.join("; "),
                cluster.observer.metrics_report()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Members;
    use atoll_node::command::{Response, WriteId};
    use atoll_node::shard::Epoch;
    use atoll_node::storage::engine::WriteBatch;
    use atoll_node::storage::keys;

    fn meta() -> ShardMeta {
        ShardMeta {
            id: 1,
            start: Vec::new(),
            end: None,
            epoch: Epoch::default(),
        }
    }

    /// Writes what `table` changed into `stored` (shard 1's rows).
    fn persist(table: &mut Sessions, stored: &mut BTreeMap<Vec<u8>, Vec<u8>>) {
        let mut batch = WriteBatch::new();
        table.persist_into(1, &mut batch).expect("encodes");
        batch.apply_to(stored);
    }

    /// The session rows in `stored` (the id counter is compared apart).
    fn rows_in(mut stored: BTreeMap<Vec<u8>, Vec<u8>>) -> Vec<(Vec<u8>, Vec<u8>)> {
        stored.remove(&keys::sm_meta(1, keys::SmMeta::NextSessionId));
        stored.into_iter().collect()
    }

    /// Rows of a table with sessions `1..=n`, registered at indexes 1..=n.
    fn rows(n: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut table = Sessions::new();
        for i in 1..=n {
            table.register(i, 100);
        }
        let mut stored = BTreeMap::new();
        persist(&mut table, &mut stored);
        rows_in(stored)
    }

    fn replica(sessions: u64, members: &[u64]) -> Replica {
        let shard = ShardState {
            meta: Some(Ok(meta())),
            next_session_id: Some(Ok(3)),
            sessions: rows(sessions),
            membership: Some(Ok(Members {
                voters: members.iter().copied().collect(),
                nodes: members.iter().copied().collect(),
                replicas: members
                    .iter()
                    .map(|n| atoll_node::raft::type_config::ReplicaId::founding(*n))
                    .collect(),
                joint: false,
            })),
        };
        Replica {
            data: vec![(b"k".to_vec(), b"v".to_vec())],
            shards: BTreeMap::from([(1, shard)]),
        }
    }

    #[test]
    fn replicas_differing_only_in_sessions_differ() {
        let m = meta();
        assert_eq!(difference(&m, &replica(2, &[1]), &replica(2, &[1])), None);
        let d = difference(&m, &replica(2, &[1]), &replica(1, &[1])).expect("a difference");
        assert!(d.contains("shard 1 sessions"), "{d}");
        let mut other = replica(2, &[1]);
        other.shards.get_mut(&1).expect("shard 1").next_session_id = Some(Ok(4));
        let d = difference(&m, &replica(2, &[1]), &other).expect("a difference");
        assert!(d.contains("next session id"), "{d}");
    }

    /// One replica recorded its results as they came (the 65th small result
    /// got a row of its own, then the oldest was forgotten), the other
    /// rebuilt the same table from a snapshot (every result in the
    /// session's row): the rows differ, the tables do not.
    #[test]
    fn the_same_sessions_stored_in_other_rows_do_not_differ() {
        let id = |seq, first_incomplete| WriteId {
            client_id: 1,
            seq,
            first_incomplete,
        };
        let mut recorded = Sessions::new();
        let mut stored = BTreeMap::new();
        recorded.register(1, 100);
        for seq in 2..=66 {
            recorded.record(&id(seq, 1), seq + 10, Response::Put);
        }
        persist(&mut recorded, &mut stored);
        recorded.check(&id(67, 3));
        persist(&mut recorded, &mut stored);
        let mut rebuilt = Sessions::from_snapshot(recorded.to_snapshot());
        let mut fresh = BTreeMap::new();
        persist(&mut rebuilt, &mut fresh);
        let (rows_a, rows_b) = (rows_in(stored), rows_in(fresh));
        assert_ne!(rows_a, rows_b, "the layouts differ");

        let (mut a, mut b) = (replica(0, &[1]), replica(0, &[1]));
        a.shards.get_mut(&1).expect("shard 1").sessions = rows_a;
        b.shards.get_mut(&1).expect("shard 1").sessions = rows_b;
        assert_eq!(difference(&meta(), &a, &b), None);
        // A table that does differ still does.
        b.shards.get_mut(&1).expect("shard 1").sessions = rows(1);
        assert!(difference(&meta(), &a, &b).is_some());
    }

    #[test]
    fn only_members_are_compared_and_a_member_must_host_the_shard() {
        let members = [1, 2];
        let mut nodes = BTreeMap::from([
            (1, replica(1, &members)),
            (2, replica(1, &members)),
            // Node 3 left the shard: it hosts nothing and holds no data.
            (
                3,
                Replica {
                    data: Vec::new(),
                    shards: BTreeMap::new(),
                },
            ),
        ]);
        assert!(differences(&nodes).is_empty(), "{:?}", differences(&nodes));
        // A member without the shard, and a stray key on a non-member.
        nodes.get_mut(&2).expect("node 2").shards.clear();
        nodes.get_mut(&3).expect("node 3").data = vec![(b"x".to_vec(), b"1".to_vec())];
        let found = differences(&nodes).join("; ");
        assert!(found.contains("on one replica only"), "{found}");
        assert!(found.contains("node 3: 1 key(s) outside"), "{found}");
    }
}
