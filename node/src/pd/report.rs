//! A local replica as the PD sees it: the descriptor its leader reports
//! ([`descriptor`]) and its statistics ([`stats`]).
//!
//! Replica ids are the Raft member ids (`raft::replica_id`): never reused,
//! with the node in their low bits. The PD hands out the new ones.

use std::collections::BTreeSet;

use atoll_pd::shard::{Epoch, Replica as PdReplica, Role, ShardDescriptor, ShardStats};

use crate::raft::type_config::ReplicaId;
use crate::shard::Replica;

/// Node ids are below this (they fit a replica id's low bits).
pub use crate::raft::replica_id::MAX_NODE_ID;

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
    let role_of = |member: ReplicaId| -> Role {
        let in_cfg: Vec<bool> = configs.iter().map(|c| c.contains(&member)).collect();
        match in_cfg.as_slice() {
            [true] | [true, true] => Role::Voter,
            [false, true] => Role::IncomingVoter,
            [true, false] => Role::OutgoingVoter,
            _ => Role::Learner,
        }
    };
    let members: BTreeSet<ReplicaId> = membership.nodes().map(|(id, _)| *id).collect();
    ShardDescriptor {
        id: meta.id,
        start: meta.start,
        end: meta.end,
        epoch: Epoch {
            version: meta.epoch.version,
            conf_ver: meta.epoch.conf_ver,
        },
        replicas: members
            .into_iter()
            .map(|member| PdReplica {
                id: member.0,
                node: member.node(),
                role: role_of(member),
            })
            .collect(),
        leader: m.current_leader.map(u64::from),
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
        .map(|(id, _)| id.0)
        .collect();
    ShardStats {
        approx_size_bytes: bytes,
        approx_keys: keys,
        pending_replicas,
        down_replicas: Vec::new(),
    }
}
