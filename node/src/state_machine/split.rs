//! Applying a split (`Request::Split`) at one log index, the same on every
//! replica of the shard.
//!
//! The shard keeps `[start, key)`, the child gets `[key, end)`, and both
//! move to version `v + 1`. Nothing is copied: every shard of a node keeps
//! its data in the node's one data keyspace, and the range decides which
//! shard a key belongs to. In the same engine batch as the parent's new
//! range and applied index, the child gets its whole initial state:
//! - its descriptor;
//! - an applied log id at index 0 of term 0 with the parent's membership,
//!   so its Raft starts as a follower whose log is "purged" through index 0:
//!   a replica created empty elsewhere must get a snapshot (the inherited
//!   data is in no log entry);
//! - a copy of the parent's session table, whose new ids start at
//!   `child << 32` (see `dedup::Sessions::copy_for_split`).
//!
//! After the batch is written the node opens the child's Raft group
//! (`shard::split`), told through the replica's split sink.

use openraft::{CommittedLeaderId, LogId as OLogId};

use super::dedup::Sessions;
use super::{sm_write_err, StateMachine};
use crate::codec;
use crate::command::{Rejection, Response};
use crate::config::MAX_KEY_BYTES_LIMIT;
use std::collections::{BTreeMap, BTreeSet};

use crate::raft::type_config::{LogId, ReplicaId, StorageError, StoredMembership};
use crate::shard::meta::{Epoch, ShardMeta};
use crate::storage::engine::WriteBatch;
use crate::storage::keys::{self, ShardId, SmMeta};

/// A child's initial state, written in the batch of the split's entry.
pub struct ChildInit {
    pub parent: ShardId,
    pub meta: ShardMeta,
    membership: StoredMembership,
    sessions: Sessions,
}

/// The applied log id a split child starts from.
pub fn child_start() -> LogId {
    OLogId::new(CommittedLeaderId::default(), 0)
}

impl StateMachine {
    pub(super) fn apply_split(
        &mut self,
        expected_version: u64,
        key: Vec<u8>,
        child: ShardId,
        child_replicas: &[u64],
    ) -> Response {
        let Some(child_membership) = child_membership(self.membership.membership(), child_replicas)
        else {
            return Response::Rejected(Rejection::MembersChanged);
        };
        let mut meta = self.meta.write().unwrap_or_else(|p| p.into_inner());
        if meta.epoch.version != expected_version {
            return Response::Rejected(Rejection::VersionChanged {
                expected: expected_version,
                current: meta.epoch.version,
            });
        }
        // The key length is checked again here, for entries proposed before
        // the split command checked it: a bound the engine cannot store
        // would fail every replica's apply.
        if !meta.contains(&key) || key == meta.start || key.len() > MAX_KEY_BYTES_LIMIT {
            return Response::Rejected(Rejection::BadSplitKey { key });
        }
        if child == self.shard || child == crate::pd::PD_SHARD {
            return Response::Rejected(Rejection::ChildExists { child });
        }
        let version = expected_version + 1;
        #[allow(unused_mut)]
        let mut child_start_key = key.clone();
        #[cfg(all(madsim, feature = "sim-bugs"))]
        if crate::sim_hooks::bug(crate::sim_hooks::Bug::SplitLeavesGap) {
            child_start_key.push(0);
        }
        // A replica of the child created here on request (by a member that
        // found it missing, or an operator's add) keeps what it has and
        // gets the child's state from its leader: no child state is
        // written over it. Created replicas hold a replica id record,
        // split children none.
        let engine = &self.engine;
        let created = || {
            engine
                .get(&keys::sm_meta(child, SmMeta::ReplicaId))
                .ok()
                .flatten()
                .is_some()
        };
        let write_child = match &self.split_sink {
            Some(sink) => sink.begin(child, created),
            None => !created(),
        };
        let right = ShardMeta {
            id: child,
            start: child_start_key,
            end: meta.end.take(),
            epoch: Epoch {
                version,
                conf_ver: meta.epoch.conf_ver,
            },
        };
        meta.end = Some(key);
        meta.epoch.version = version;
        let left = meta.clone();
        drop(meta);
        if write_child {
            let membership = StoredMembership::new(Some(child_start()), child_membership);
            self.children.push(ChildInit {
                parent: self.shard,
                meta: right.clone(),
                membership,
                sessions: self.sessions.copy_for_split(child << 32),
            });
        } else {
            tracing::info!(
                shard = self.shard,
                child,
                "split: this node holds a replica of the child created on request; it gets \
                 the child's state from its leader, none is written here"
            );
        }
        Response::Split { left, right }
    }
}

/// The child's membership: the parent's, each member replaced by the child
/// replica on its node; `None` unless `child_replicas` names exactly the
/// parent's member nodes, once each. Empty `child_replicas`: the parent's
/// members as they are.
fn child_membership(
    parent: &openraft::Membership<ReplicaId, openraft::BasicNode>,
    child_replicas: &[u64],
) -> Option<openraft::Membership<ReplicaId, openraft::BasicNode>> {
    if child_replicas.is_empty() {
        return Some(parent.clone());
    }
    let by_node: BTreeMap<u64, ReplicaId> = child_replicas
        .iter()
        .map(|id| (ReplicaId(*id).node(), ReplicaId(*id)))
        .collect();
    let parent_nodes: BTreeSet<u64> = parent.nodes().map(|(id, _)| id.node()).collect();
    if by_node.len() != child_replicas.len()
        || by_node.keys().copied().collect::<BTreeSet<u64>>() != parent_nodes
    {
        return None;
    }
    let map = |id: &ReplicaId| by_node.get(&id.node()).copied();
    let configs = parent
        .get_joint_config()
        .iter()
        .map(|c| c.iter().map(map).collect::<Option<BTreeSet<ReplicaId>>>())
        .collect::<Option<Vec<_>>>()?;
    let nodes = parent
        .nodes()
        .map(|(id, n)| Some((map(id)?, n.clone())))
        .collect::<Option<BTreeMap<ReplicaId, openraft::BasicNode>>>()?;
    Some(openraft::Membership::new(configs, nodes))
}

impl ChildInit {
    /// Adds the child's initial state to the split's batch.
    pub fn persist_into(&mut self, batch: &mut WriteBatch) -> Result<(), StorageError> {
        let id = self.meta.id;
        let put = |batch: &mut WriteBatch, which, what, value: Result<Vec<u8>, _>| {
            value
                .map(|v| batch.put(keys::sm_meta(id, which), v))
                .map_err(|e: codec::EncodeError| {
                    tracing::error!(shard = id, "encoding the split child's {what}: {e}");
                    sm_write_err(e)
                })
        };
        put(
            batch,
            SmMeta::Shard,
            "descriptor",
            codec::encode("shard", &self.meta),
        )?;
        put(
            batch,
            SmMeta::Applied,
            "applied id",
            codec::encode("applied", &child_start()),
        )?;
        put(
            batch,
            SmMeta::Membership,
            "membership",
            codec::encode("membership", &self.membership),
        )?;
        self.sessions.persist_into(id, batch).map_err(sm_write_err)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::{BasicNode, Membership};

    use super::child_membership;
    use crate::raft::type_config::ReplicaId;

    fn parent() -> Membership<ReplicaId, BasicNode> {
        let voters = BTreeSet::from([ReplicaId(1), ReplicaId(2)]);
        let nodes = BTreeMap::from([
            (ReplicaId(1), BasicNode::new("a")),
            (ReplicaId(2), BasicNode::new("b")),
            (ReplicaId::new(9, 3).expect("fits"), BasicNode::new("c")),
        ]);
        Membership::new(vec![voters], nodes)
    }

    fn id(number: u64, node: u64) -> u64 {
        ReplicaId::new(number, node).expect("fits").0
    }

    #[test]
    fn the_child_gets_one_fresh_member_per_parent_node_in_the_same_roles() {
        let child = child_membership(&parent(), &[id(20, 1), id(21, 2), id(22, 3)])
            .expect("the ids name the parent's nodes");
        let voters: Vec<u64> = child.voter_ids().map(|r| r.0).collect();
        assert_eq!(voters, vec![id(20, 1), id(21, 2)]);
        let learners: Vec<u64> = child.learner_ids().map(|r| r.0).collect();
        assert_eq!(learners, vec![id(22, 3)]);
        let addr = child
            .get_node(&ReplicaId(id(22, 3)))
            .map(|n| n.addr.clone());
        assert_eq!(addr.as_deref(), Some("c"));
    }

    #[test]
    fn ids_that_do_not_name_exactly_the_parent_nodes_are_refused() {
        assert!(child_membership(&parent(), &[id(20, 1), id(21, 2)]).is_none());
        assert!(child_membership(&parent(), &[id(20, 1), id(21, 2), id(22, 4)]).is_none());
        assert!(child_membership(&parent(), &[id(20, 1), id(21, 1), id(22, 3)]).is_none());
        assert_eq!(child_membership(&parent(), &[]), Some(parent()));
    }
}
