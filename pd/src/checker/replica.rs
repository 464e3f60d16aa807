//! The replica checker: one shard in, at most one repair operator out.
//! In order: finish a joint change; settle stray learners; replace voters
//! on dead nodes; make up missing voters; move voters off draining nodes;
//! drop extra voters; move a voter to an unused zone.

use crate::checker::placement::{select_target, zone_spread, zones_of, Load};
use crate::ids::IdSource;
use crate::node::{NodeInfo, NodeState};
use crate::operator::{build, OpKind, Operator, OperatorSet};
use crate::shard::{Replica, ShardInfo};
use crate::state::PdState;

/// Where a replica's node stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Up,
    Leaving,
    Dead,
}

/// A `Joining` node was never heard from, so nothing of a replica placed
/// there by hand runs yet: dead, like a `Down` one.
fn health(state: &PdState, r: &Replica) -> Health {
    match state.node(r.node).map(|n| n.state) {
        Some(NodeState::Up) => Health::Up,
        Some(NodeState::Draining) => Health::Leaving,
        Some(NodeState::Down) | Some(NodeState::Removed) | Some(NodeState::Joining) | None => {
            Health::Dead
        }
    }
}

pub fn check(
    state: &PdState,
    ops: &OperatorSet,
    load: &Load,
    shard: &ShardInfo,
    ids: &mut dyn IdSource,
    now_ms: u64,
) -> Option<Operator> {
    let d = &shard.desc;
    // Nothing can be done without a live leader to carry it out.
    if !d
        .leader_node()
        .and_then(|n| state.node(n))
        .is_some_and(NodeInfo::is_alive)
    {
        return None;
    }
    if d.is_joint() {
        return build::leave_joint(shard, now_ms).ok();
    }
    let rf = state.config().replication_factor;
    let voters: Vec<Replica> = d.voters().copied().collect();
    let kind = OpKind::Replica;

    // Learners no operator is waiting for (one whose operator timed out, or
    // from before a PD leader change): promote if a voter is missing.
    if let Some(l) = d.learners().next() {
        if health(state, l) != Health::Up || voters.len() >= rf {
            return build::remove_replica(shard, l.id, kind, now_ms).ok();
        }
        if shard.stats.pending_replicas.contains(&l.id) {
            return None; // still catching up
        }
        return build::promote_learner(shard, l.id, kind, now_ms).ok();
    }

    let mut dead = voters.iter().filter(|r| health(state, r) == Health::Dead);
    if let Some(r) = dead.next() {
        if voters.len() > rf {
            return build::remove_replica(shard, r.id, kind, now_ms).ok();
        }
        let to = select_target(state, ops, load, d, Some(r.id))?;
        return build::move_replica(shard, r.id, to, kind, ids, now_ms).ok();
    }
    if voters.len() < rf {
        let to = select_target(state, ops, load, d, None)?;
        return build::add_replica(shard, to, kind, ids, now_ms).ok();
    }
    if let Some(r) = voters.iter().find(|r| health(state, r) == Health::Leaving) {
        if voters.len() > rf {
            return build::remove_replica(shard, r.id, kind, now_ms).ok();
        }
        let to = select_target(state, ops, load, d, Some(r.id))?;
        return build::move_replica(shard, r.id, to, kind, ids, now_ms).ok();
    }
    if voters.len() > rf {
        let worst = worst_voter(state, load, shard, &voters)?;
        return build::remove_replica(shard, worst.id, kind, now_ms).ok();
    }
    improve_zones(state, ops, load, shard, &voters, ids, now_ms)
}

/// The voter to drop first: one sharing its zone, then on the busiest node.
fn worst_voter<'a>(
    state: &PdState,
    load: &Load,
    shard: &ShardInfo,
    voters: &'a [Replica],
) -> Option<&'a Replica> {
    let spread_without = |r: &Replica| zone_spread(&zones_of(state, &shard.desc, Some(r.id)));
    voters
        .iter()
        .max_by_key(|r| (spread_without(r), load.replicas_on(r.node), r.node))
}

/// When two voters share a zone and an Up node in an unused zone exists,
/// move one of them there.
fn improve_zones(
    state: &PdState,
    ops: &OperatorSet,
    load: &Load,
    shard: &ShardInfo,
    voters: &[Replica],
    ids: &mut dyn IdSource,
    now_ms: u64,
) -> Option<Operator> {
    let d = &shard.desc;
    let zones = zones_of(state, d, None);
    if zones.len() < voters.len() || zone_spread(&zones) == zones.len() {
        return None; // unlabelled nodes, or already spread
    }
    let worst = worst_voter(state, load, shard, voters)?;
    let to = select_target(state, ops, load, d, Some(worst.id))?;
    let new_zone = state.node(to).and_then(NodeInfo::zone);
    let before = zone_spread(&zones);
    let mut after: Vec<&str> = zones_of(state, d, Some(worst.id));
    after.extend(new_zone);
    if zone_spread(&after) <= before {
        return None;
    }
    build::move_replica(shard, worst.id, to, OpKind::Replica, ids, now_ms).ok()
}
