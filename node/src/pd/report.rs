//! A local replica as the PD sees it: the descriptor its leader reports
//! ([`descriptor`]) and its statistics ([`stats`]).
//!
//! Replica ids: the PD gives each replica an id that is never reused. Until
//! the node runs its Raft groups on replica ids, a replica's id is its node
//! id (the ids the bootstrap registers), so the PD's view of a shard is the
//! Raft membership as it is.

use std::collections::BTreeSet;

use atoll_pd::shard::{Epoch, Replica as PdReplica, Role, ShardDescriptor, ShardStats};

use crate::shard::Replica;

/// A follower this many entries behind the leader is reported as pending.
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
                id: node,
                node,
                role: role_of(node),
            })
            .collect(),
        leader: m.current_leader,
        term: m.current_term,
    }
}

/// What the leader knows about its followers; sizes are not measured yet.
pub fn stats(replica: &Replica) -> ShardStats {
    let m = replica.raft.metrics().borrow().clone();
    let last = m.last_log_index.unwrap_or(0);
    let pending_replicas = m
        .replication
        .iter()
        .flatten()
        .filter(|(id, matched)| {
            **id != m.id && last.saturating_sub(matched.map_or(0, |l| l.index)) > PENDING_LAG
        })
        .map(|(id, _)| *id)
        .collect();
    ShardStats {
        approx_size_bytes: 0,
        approx_keys: 0,
        pending_replicas,
        down_replicas: Vec::new(),
    }
}
