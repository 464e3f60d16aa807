//! Balance schedulers: move replicas from the busiest Up node to the
//! idlest, and leaders likewise, only while the counts differ by more than
//! the tolerance (at least 1). Each move lowers the sum of squared counts,
//! so repeated rounds settle and then emit nothing.

use crate::checker::placement::{is_settled, zone_spread, zones_of, Load};
use crate::ids::IdSource;
use crate::node::{NodeId, NodeInfo};
use crate::operator::{build, OpKind, Operator, OperatorSet};
use crate::shard::Role;
use crate::state::PdState;

fn up_nodes(state: &PdState) -> Vec<NodeId> {
    state.nodes().filter(|n| n.is_up()).map(|n| n.id).collect()
}

/// One replica move, or None when balanced within tolerance (or blocked).
pub fn balance_replicas(
    state: &PdState,
    ops: &OperatorSet,
    load: &Load,
    ids: &mut dyn IdSource,
    now_ms: u64,
) -> Option<Operator> {
    let tolerance = state.config().replica_balance_tolerance as i64;
    let mut nodes = up_nodes(state);
    nodes.sort_by_key(|n| (std::cmp::Reverse(load.replicas_on(*n)), *n));
    for &src in &nodes {
        for &dst in nodes.iter().rev() {
            if load.replicas_on(src) - load.replicas_on(dst) <= tolerance {
                break;
            }
            if let Some(op) = move_one(state, ops, src, dst, ids, now_ms) {
                return Some(op);
            }
        }
    }
    None
}

/// Moves a voter of some settled shard from `src` to `dst`, keeping the
/// shard's zone spread.
fn move_one(
    state: &PdState,
    ops: &OperatorSet,
    src: NodeId,
    dst: NodeId,
    ids: &mut dyn IdSource,
    now_ms: u64,
) -> Option<Operator> {
    let limit = state.config().max_snapshots_per_node;
    if ops.snapshots_on(dst) >= limit {
        return None;
    }
    let dst_zone = state.node(dst).and_then(NodeInfo::zone);
    for s in state.shards() {
        let d = &s.desc;
        if ops.get(d.id).is_some() || !is_settled(state, d) || d.replica_on(dst).is_some() {
            continue;
        }
        let Some(r) = d.replica_on(src).filter(|r| r.role == Role::Voter) else {
            continue;
        };
        if d.leader_node()
            .is_some_and(|l| ops.snapshots_on(l) >= limit)
        {
            continue;
        }
        let mut after = zones_of(state, d, Some(r.id));
        after.extend(dst_zone);
        if zone_spread(&after) < zone_spread(&zones_of(state, d, None)) {
            continue;
        }
        return build::move_replica(s, r.id, dst, OpKind::BalanceReplica, ids, now_ms).ok();
    }
    None
}

/// One leader transfer, or None when balanced within tolerance (or blocked).
pub fn balance_leaders(
    state: &PdState,
    ops: &OperatorSet,
    load: &Load,
    now_ms: u64,
) -> Option<Operator> {
    let tolerance = state.config().leader_balance_tolerance as i64;
    let mut nodes = up_nodes(state);
    nodes.sort_by_key(|n| (std::cmp::Reverse(load.leaders_on(*n)), *n));
    for &src in &nodes {
        for &dst in nodes.iter().rev() {
            if load.leaders_on(src) - load.leaders_on(dst) <= tolerance {
                break;
            }
            let found = state.shards().find_map(|s| {
                let d = &s.desc;
                if ops.get(d.id).is_some() || !is_settled(state, d) || d.leader_node() != Some(src)
                {
                    return None;
                }
                let to = d.replica_on(dst).filter(|r| r.role == Role::Voter)?;
                build::transfer_leader(s, to.id, OpKind::BalanceLeader, now_ms).ok()
            });
            if found.is_some() {
                return found;
            }
        }
    }
    None
}
