//! Shard descriptors as the PD knows them: key range, epoch, replicas with
//! never-reused replica ids and roles, leader, term, and the leader's
//! latest statistics.
//!
//! `Epoch` and the range fields mirror `node/src/shard/meta.rs` (`Epoch`,
//! `ShardMeta`) and `proto/proto/atoll.proto` (`Epoch`, `ShardDescriptor`);
//! the node converts at its boundary.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::node::NodeId;

/// Same as `atoll_node::storage::keys::ShardId`.
pub type ShardId = u64;
/// A replica's id: unique across the whole cluster and never reused, so a
/// node added back to a shard never meets its own old log (TiKV's peer id).
pub type ReplicaId = u64;

/// `version` bumps on split; `conf_ver` is the log index of the shard's
/// latest membership entry, so it grows by arbitrary steps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Epoch {
    pub version: u64,
    pub conf_ver: u64,
}

/// A replica's role as the shard leader's membership shows it. Joint
/// consensus appears as `IncomingVoter` (voter in the new config only) and
/// `OutgoingVoter` (voter in the old config only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    Voter,
    Learner,
    IncomingVoter,
    OutgoingVoter,
}

impl Role {
    /// Counts in some quorum (old or new config).
    pub fn is_voter(self) -> bool {
        match self {
            Role::Voter | Role::IncomingVoter | Role::OutgoingVoter => true,
            Role::Learner => false,
        }
    }

    pub fn is_joint(self) -> bool {
        match self {
            Role::IncomingVoter | Role::OutgoingVoter => true,
            Role::Voter | Role::Learner => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Replica {
    pub id: ReplicaId,
    pub node: NodeId,
    pub role: Role,
}

/// What the shard's leader reports, and what the PD stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardDescriptor {
    pub id: ShardId,
    pub start: Vec<u8>,
    /// `None` is +infinity.
    pub end: Option<Vec<u8>>,
    pub epoch: Epoch,
    pub replicas: Vec<Replica>,
    /// The reporting leader's replica.
    pub leader: Option<ReplicaId>,
    pub term: u64,
}

impl ShardDescriptor {
    /// The first shard of a cluster: the whole key space.
    pub fn whole_keyspace(id: ShardId, replicas: Vec<Replica>) -> Self {
        Self {
            id,
            start: Vec::new(),
            end: None,
            epoch: Epoch {
                version: 1,
                conf_ver: 0,
            },
            replicas,
            leader: None,
            term: 0,
        }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && self.end.as_deref().is_none_or(|e| key < e)
    }

    pub fn replica(&self, id: ReplicaId) -> Option<&Replica> {
        self.replicas.iter().find(|r| r.id == id)
    }

    pub fn replica_on(&self, node: NodeId) -> Option<&Replica> {
        self.replicas.iter().find(|r| r.node == node)
    }

    pub fn leader_replica(&self) -> Option<&Replica> {
        self.leader.and_then(|l| self.replica(l))
    }

    pub fn leader_node(&self) -> Option<NodeId> {
        self.leader_replica().map(|r| r.node)
    }

    pub fn voters(&self) -> impl Iterator<Item = &Replica> {
        self.replicas.iter().filter(|r| r.role.is_voter())
    }

    pub fn learners(&self) -> impl Iterator<Item = &Replica> {
        self.replicas.iter().filter(|r| r.role == Role::Learner)
    }

    pub fn is_joint(&self) -> bool {
        self.replicas.iter().any(|r| r.role.is_joint())
    }

    /// The membership as a canonical map, for comparisons.
    pub fn membership(&self) -> Membership {
        self.replicas
            .iter()
            .map(|r| (r.id, (r.node, r.role)))
            .collect()
    }
}

/// Replica id → (node, role), ordered: two equal maps are the same membership.
pub type Membership = BTreeMap<ReplicaId, (NodeId, Role)>;

/// A stored shard: its descriptor plus the leader's latest statistics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    pub desc: ShardDescriptor,
    pub stats: ShardStats,
    /// PD time of the latest accepted report (0: never reported).
    pub last_report_ms: u64,
}

/// Per-shard statistics in a leader's heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardStats {
    pub approx_size_bytes: u64,
    pub approx_keys: u64,
    /// Replicas still catching up (a learner being fed a snapshot, a lagging follower).
    pub pending_replicas: Vec<ReplicaId>,
    /// Replicas the leader has not heard from for a while.
    pub down_replicas: Vec<ReplicaId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_keyspace_contains_everything_and_roles_classify() {
        let d = ShardDescriptor::whole_keyspace(
            1,
            vec![
                Replica {
                    id: 1,
                    node: 1,
                    role: Role::Voter,
                },
                Replica {
                    id: 2,
                    node: 2,
                    role: Role::OutgoingVoter,
                },
                Replica {
                    id: 3,
                    node: 3,
                    role: Role::Learner,
                },
            ],
        );
        assert!(d.contains(b"") && d.contains(&[0xff; 16]));
        assert_eq!(d.voters().count(), 2);
        assert_eq!(d.learners().count(), 1);
        assert!(d.is_joint());
        assert_eq!(d.replica_on(3).map(|r| r.id), Some(3));
    }
}
