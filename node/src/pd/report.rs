//! A local replica as the PD sees it: the descriptor its leader reports
//! ([`descriptor`]) and its statistics ([`stats`]).
//!
//! Replica ids: the PD gives each replica an id that is never reused. Until
//! the node runs its Raft groups on replica ids, a replica's id is derived
//! from its shard and node ([`replica_id`]): unique across shards, stable
//! for the life of the replica, but the same again if a node is added back
//! to a shard it left.

use std::collections::BTreeSet;

use atoll_pd::shard::{Epoch, Replica as PdReplica, Role, ShardDescriptor, ShardStats};

use crate::shard::Replica;

/// Node ids below this fit [`replica_id`].
pub const MAX_NODE_ID: u64 = 1 << 20;

/// The id the PD knows the replica of `shard` on `node` by.
pub fn replica_id(shard: u64, node: u64) -> u64 {
    (shard << 20) | (node & (MAX_NODE_ID - 1))
}

/// A follower this many entries behind the leader, or one that has
/// nothing yet (a new learner before its snapshot), is reported as pending.
const PENDING_LAG: u64 = 1000;

/// The replica's descriptor: range and epoch as applied, membership and
/// leader as its Raft knows them.
pub fn descriptor(replica: &Replica) -> ShardDescriptor {
    let meta = replica.meta();
    let m = replica.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let configs = membership.get_joint_config();
    let role_of = |node: u64| -> Role {
        let in_cfg: Vec<bool> = configs.iter().map(|c| c.contains(&node)).collect();
        match in_cfg.as_slice() {
            [true] | [true, true] => Role::Voter,
            [false, true] => Role::IncomingVoter,
            [true, false] => Role::OutgoingVoter,
            _ => Role::Learner,
        }
    };
    let nodes: BTreeSet<u64> = membership.nodes().map(|(id, _)| *id).collect();
    ShardDescriptor {
        id: meta.id,
        start: meta.start,
        end: meta.end,
        epoch: Epoch {
            version: meta.epoch.version,
            conf_ver: meta.epoch.conf_ver,
        },
        replicas: nodes
            .into_iter()
            .map(|node| PdReplica {
                id: replica_id(meta.id, node),
                node,
                role: role_of(node),
            })
            .collect(),
        leader: m.current_leader.map(|l| replica_id(meta.id, l)),
        term: m.current_term,
    }
}

/// What the leader knows about its followers, with the shard's
/// approximate `(keys, bytes)` from [`super::sizes`].
pub fn stats(replica: &Replica, (keys, bytes): (u64, u64)) -> ShardStats {
    let m = replica.raft.metrics().borrow().clone();
    let last = m.last_log_index.unwrap_or(0);
    let pending_replicas = m
        .replication
        .iter()
        .flatten()
        .filter(|(id, matched)| {
            **id != m.id && matched.is_none_or(|l| last.saturating_sub(l.index) > PENDING_LAG)
        })
        .map(|(id, _)| replica_id(replica.id, *id))
        .collect();
    ShardStats {
        approx_size_bytes: bytes,
        approx_keys: keys,
        pending_replicas,
        down_replicas: Vec::new(),
    }
}
