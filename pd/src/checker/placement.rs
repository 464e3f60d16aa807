//! Where replicas may go: per-node load counting running operators'
//! unconfirmed steps (so a round does not pile onto one node), zone
//! spreading, and the choice of a target node.

use std::collections::{BTreeMap, BTreeSet};

use crate::node::{NodeId, NodeInfo};
use crate::operator::{Operator, OperatorSet, Step};
use crate::shard::{ReplicaId, ShardDescriptor};
use crate::state::PdState;

/// Replica and leader counts per node, as they will be once the running
/// operators finish.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Load {
    pub replicas: BTreeMap<NodeId, i64>,
    pub leaders: BTreeMap<NodeId, i64>,
}

impl Load {
    pub fn compute(state: &PdState, ops: &OperatorSet) -> Self {
        let mut load = Load::default();
        for n in state.nodes() {
            load.replicas.insert(n.id, 0);
            load.leaders.insert(n.id, 0);
        }
        for s in state.shards() {
            for r in &s.desc.replicas {
                *load.replicas.entry(r.node).or_default() += 1;
            }
            if let Some(l) = s.desc.leader_node() {
                *load.leaders.entry(l).or_default() += 1;
            }
        }
        for op in ops.iter() {
            if let Some(s) = state.shard(op.shard) {
                load.add_operator(op, &s.desc);
            }
        }
        load
    }

    /// Counts the unconfirmed steps of `op` on `shard`.
    pub fn add_operator(&mut self, op: &Operator, shard: &ShardDescriptor) {
        for step in op.unfinished_steps() {
            match step {
                Step::AddLearner { node, .. } => *self.replicas.entry(*node).or_default() += 1,
                Step::RemoveReplica { node, .. } => *self.replicas.entry(*node).or_default() -= 1,
                Step::TransferLeader { node, .. } => {
                    *self.leaders.entry(*node).or_default() += 1;
                    if let Some(from) = shard.leader_node() {
                        *self.leaders.entry(from).or_default() -= 1;
                    }
                }
                Step::PromoteLearner { .. } | Step::LeaveJoint | Step::Split { .. } => {}
            }
        }
    }

    pub fn replicas_on(&self, node: NodeId) -> i64 {
        self.replicas.get(&node).copied().unwrap_or(0)
    }

    pub fn leaders_on(&self, node: NodeId) -> i64 {
        self.leaders.get(&node).copied().unwrap_or(0)
    }
}

/// The zones of the shard's replicas, leaving out `except`.
pub fn zones_of<'a>(
    state: &'a PdState,
    shard: &ShardDescriptor,
    except: Option<ReplicaId>,
) -> Vec<&'a str> {
    shard
        .replicas
        .iter()
        .filter(|r| Some(r.id) != except)
        .filter_map(|r| state.node(r.node).and_then(NodeInfo::zone))
        .collect()
}

/// Distinct zones among the shard's replicas (higher is better spread).
pub fn zone_spread(zones: &[&str]) -> usize {
    zones.iter().collect::<BTreeSet<_>>().len()
}

/// The best Up node for a new replica of `shard` (replacing `except`, if
/// any): in a zone the other replicas do not use, then least loaded, then
/// lowest id. Nodes at their snapshot limit are skipped.
pub fn select_target(
    state: &PdState,
    ops: &OperatorSet,
    load: &Load,
    shard: &ShardDescriptor,
    except: Option<ReplicaId>,
) -> Option<NodeId> {
    let used = zones_of(state, shard, except);
    let limit = state.config().max_snapshots_per_node;
    state
        .nodes()
        .filter(|n| n.is_up() && shard.replica_on(n.id).is_none())
        .filter(|n| ops.snapshots_on(n.id) < limit)
        .min_by_key(|n| {
            let new_zone = n.zone().is_some_and(|z| !used.contains(&z));
            (!new_zone, load.replicas_on(n.id), n.id)
        })
        .map(|n| n.id)
}

/// A shard the balancers may touch: not joint, no learners, exactly the
/// replication factor, every replica on an Up node, a leader on an Up node.
pub fn is_settled(state: &PdState, shard: &ShardDescriptor) -> bool {
    let up = |node: NodeId| state.node(node).is_some_and(NodeInfo::is_up);
    !shard.is_joint()
        && shard.learners().next().is_none()
        && shard.voters().count() == state.config().replication_factor
        && shard.replicas.iter().all(|r| up(r.node))
        && shard.leader_node().is_some_and(up)
}
