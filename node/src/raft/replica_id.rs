//! Replica ids: the member ids of every shard's Raft group (issue 9,
//! item 5). A replica id is never reused, so a node that is added back to a
//! shard it left joins as a new member, and neither its old log nor its old
//! vote can count for the new one (TiKV's peer ids do the same).
//!
//! An id carries its node in its low [`NODE_BITS`] bits (node ids are below
//! [`MAX_NODE_ID`]) and an *incarnation* above them:
//! - incarnation 0: the members the first shards were born with at
//!   bootstrap. Such an id equals its node id;
//! - incarnation ≥ 1: every other replica: one added later, and every
//!   member of a split child (the child's group gets new ids, one per
//!   member of the parent, carried in the split command). The incarnation
//!   is a replica number from the PD's replicated id allocator
//!   (`IdKind::Replica`), which never hands out a number twice; so replica
//!   ids are unique across all shards, as TiKV's peer ids are.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::type_config::NodeId;

/// Bits of a replica id that hold its node (the PD's format:
/// `atoll_pd::ids::pack_replica`).
pub const NODE_BITS: u32 = atoll_pd::ids::REPLICA_NODE_BITS;

/// Node ids are below this (`--id`, and what the PD hands out).
pub const MAX_NODE_ID: u64 = 1 << NODE_BITS;

/// A Raft member: one replica of one shard, on one node.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct ReplicaId(pub u64);

impl ReplicaId {
    /// The replica of `node` in a shard's founding membership (incarnation 0).
    pub fn founding(node: NodeId) -> Self {
        ReplicaId(node)
    }

    /// Replica `incarnation` (≥ 1) on `node`; `None` if either is out of range.
    pub fn new(incarnation: u64, node: NodeId) -> Option<Self> {
        #[cfg(all(madsim, feature = "sim-bugs"))]
        if crate::sim_hooks::reuses_replica_ids() {
            return (node != 0 && node < MAX_NODE_ID).then_some(ReplicaId(node));
        }
        if incarnation == 0 || node == 0 {
            return None;
        }
        atoll_pd::ids::pack_replica(incarnation, node).map(ReplicaId)
    }

    /// The node that hosts this replica.
    pub fn node(self) -> NodeId {
        self.0 & (MAX_NODE_ID - 1)
    }

    /// 0 for a founding member; the PD-allocated number otherwise.
    pub fn incarnation(self) -> u64 {
        self.0 >> NODE_BITS
    }
}

/// A shard's membership, keyed by replica id.
pub type Members = openraft::Membership<ReplicaId, openraft::BasicNode>;

/// The member (voter or learner) of `m` on `node`: a node is at most one
/// member of a shard.
pub fn member_on(m: &Members, node: NodeId) -> Option<ReplicaId> {
    m.nodes().map(|(id, _)| *id).find(|id| id.node() == node)
}

/// The voter of `m` (of any configuration of a joint one) on `node`.
pub fn voter_on(m: &Members, node: NodeId) -> Option<ReplicaId> {
    m.voter_ids().find(|v| v.node() == node)
}

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.incarnation() {
            0 => write!(f, "{}", self.node()),
            i => write!(f, "{}.{}", self.node(), i),
        }
    }
}

/// The raw id, as it travels on the wire.
impl From<u64> for ReplicaId {
    fn from(raw: u64) -> Self {
        ReplicaId(raw)
    }
}

impl From<ReplicaId> for u64 {
    fn from(id: ReplicaId) -> u64 {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_and_incarnation_round_trip() {
        let r = ReplicaId::new(7, 3).expect("in range");
        assert_eq!((r.node(), r.incarnation()), (3, 7));
        assert_eq!(r.to_string(), "3.7");
        let f = ReplicaId::founding(3);
        assert_eq!((f.node(), f.incarnation(), f.0), (3, 0, 3));
        assert_eq!(f.to_string(), "3");
        assert_ne!(r, f);
    }

    #[test]
    fn out_of_range_is_refused() {
        assert_eq!(ReplicaId::new(0, 3), None);
        assert_eq!(ReplicaId::new(1, 0), None);
        assert_eq!(ReplicaId::new(1, MAX_NODE_ID), None);
        assert_eq!(ReplicaId::new(u64::MAX, 3), None);
        assert!(ReplicaId::new(1 << 40, MAX_NODE_ID - 1).is_some());
    }

    #[test]
    fn serializes_as_a_plain_number() {
        let bytes = bincode::serialize(&ReplicaId(42)).expect("encodes");
        assert_eq!(bytes, bincode::serialize(&42u64).expect("encodes"));
    }
}
