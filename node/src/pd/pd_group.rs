//! The placement driver's own group moves too: run by the PD leader, which
//! leads shard 0 and so changes its membership locally, one step per round.
//!
//! The PD group starts on the first three initial members. Without this,
//! draining or losing them would leave the PD where it is: a node hosting
//! a PD voter could never be removed, and losing two of them for good would
//! stop the PD. The rules, like the replica checker's for data shards:
//! - a voter on a node that is not `Up` (draining, down, removed) is
//!   replaced: a learner is added on an `Up` node outside the group (a zone
//!   the healthy voters do not cover first, then the node with the fewest
//!   replicas), promoted once it has caught up, and then the old voter is
//!   removed (leadership moves away first if the PD leader is the one
//!   leaving), and its node told to remove its replica;
//! - a group smaller than [`PD_REPLICAS`] voters (a cluster bootstrapped
//!   with fewer nodes) grows onto new `Up` nodes the same way;
//! - a learner on a node that is not `Up`, or one no longer needed (the
//!   voter it was to replace is healthy again), is removed, and a joint
//!   membership left by a dead leader is finished.
//!
//! The steps are `shard::membership`'s and `shard::transfer`'s, as for a
//! data shard. One step is in flight at a time; each is idempotent.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use atoll_pd::node::{NodeId, NodeState};
use atoll_pd::state::PdState;
use tokio::task::JoinHandle;

use super::ids::fresh_replica_id;
use super::{PD_REPLICAS, PD_SHARD};
use crate::service::NodeCtx;
use crate::shard::membership::{self, Change};
use crate::shard::transfer::{self, TransferTimeouts};

/// A learner this many entries behind the leader counts as caught up.
const CAUGHT_UP_LAG: u64 = 100;

/// How long a leader transfer of the PD group may take.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(10);

/// The PD group as its leader sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupView {
    pub leader: NodeId,
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
    pub joint: bool,
    /// Members (voters and learners) within [`CAUGHT_UP_LAG`] of the leader.
    pub caught_up: BTreeSet<NodeId>,
}

/// The next change of the PD group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupStep {
    LeaveJoint,
    AddLearner(NodeId),
    Promote(NodeId),
    TransferLeader(NodeId),
    Remove(NodeId),
}

fn healthy(pd: &PdState, node: NodeId) -> bool {
    pd.node(node).is_some_and(|n| n.state == NodeState::Up)
}

/// Data replicas on `node`, as the PD knows them.
fn replicas_on(pd: &PdState, node: NodeId) -> usize {
    pd.shards()
        .filter(|s| s.desc.replica_on(node).is_some())
        .count()
}

/// What to do next, if anything.
pub fn next_step(view: &GroupView, pd: &PdState) -> Option<GroupStep> {
    if view.joint {
        return Some(GroupStep::LeaveJoint);
    }
    if let Some(&l) = view.learners.iter().find(|l| !healthy(pd, **l)) {
        return Some(GroupStep::Remove(l));
    }
    let sick: Vec<NodeId> = view
        .voters
        .iter()
        .copied()
        .filter(|v| !healthy(pd, *v))
        .collect();
    let healthy_voters = view.voters.len() - sick.len();
    // Enough healthy voters: drop a sick one (the leader last, and only
    // after its leadership moved).
    if healthy_voters >= PD_REPLICAS {
        if let Some(&s) = sick.iter().find(|s| **s != view.leader) {
            return Some(GroupStep::Remove(s));
        }
        if sick.contains(&view.leader) {
            let to = view
                .voters
                .iter()
                .copied()
                .find(|v| *v != view.leader && healthy(pd, *v) && view.caught_up.contains(v));
            return to.map(GroupStep::TransferLeader);
        }
        // A learner the group no longer needs (the voter it was to replace
        // is healthy again) leaves.
        if let Some(&l) = view.learners.iter().next() {
            return Some(GroupStep::Remove(l));
        }
        // So does a voter too many (the one it replaced is healthy again):
        // not the leader; one whose zone another voter shares first, then
        // the busiest node.
        if view.voters.len() > PD_REPLICAS {
            let zone = |n: NodeId| pd.node(n).and_then(|i| i.zone().map(str::to_owned));
            let shared_zone = |n: NodeId| {
                zone(n).is_some_and(|z| {
                    view.voters
                        .iter()
                        .any(|o| *o != n && zone(*o).as_deref() == Some(z.as_str()))
                })
            };
            return view
                .voters
                .iter()
                .copied()
                .filter(|v| *v != view.leader)
                .max_by_key(|v| (shared_zone(*v), replicas_on(pd, *v), *v))
                .map(GroupStep::Remove);
        }
        return None;
    }
    // Too few healthy voters: promote a caught-up learner, or add one.
    if let Some(&l) = view.learners.iter().find(|l| view.caught_up.contains(l)) {
        return Some(GroupStep::Promote(l));
    }
    // A learner still catching up: ask again that its node create its
    // replica (idempotent; the first ask may not have reached it).
    if let Some(&l) = view.learners.iter().next() {
        return Some(GroupStep::AddLearner(l));
    }
    let zones: BTreeSet<&str> = view
        .voters
        .iter()
        .filter(|v| healthy(pd, **v))
        .filter_map(|v| pd.node(*v).and_then(|n| n.zone()))
        .collect();
    pd.nodes()
        .filter(|n| n.state == NodeState::Up && !view.voters.contains(&n.id))
        .min_by_key(|n| {
            let new_zone = n.zone().is_some_and(|z| !zones.contains(z));
            (!new_zone, replicas_on(pd, n.id), n.id)
        })
        .map(|n| GroupStep::AddLearner(n.id))
}

/// The PD group's view from its leader's Raft metrics; `None` if this node
/// does not lead it.
fn view(ctx: &NodeCtx) -> Option<GroupView> {
    let replica = ctx.host.get(PD_SHARD)?;
    let m = replica.raft.metrics().borrow().clone();
    if m.state != openraft::ServerState::Leader {
        return None;
    }
    let membership = m.membership_config.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().map(|v| v.node()).collect();
    let learners: BTreeSet<NodeId> = membership
        .nodes()
        .map(|(id, _)| id.node())
        .filter(|id| !voters.contains(id))
        .collect();
    let last = m.last_log_index.unwrap_or(0);
    let caught_up = m
        .replication
        .iter()
        .flatten()
        .filter(|(_, matched)| {
            matched.is_some_and(|l| last.saturating_sub(l.index) <= CAUGHT_UP_LAG)
        })
        .map(|(id, _)| id.node())
        .collect();
    Some(GroupView {
        leader: m.id.node(),
        voters,
        learners,
        joint: membership.get_joint_config().len() > 1,
        caught_up,
    })
}

/// Rounds before the same step is asked for again.
const REPEAT_ROUNDS: u64 = 5;

/// The PD leader's mover of its own group: one step in flight at a time,
/// the same step again only every [`REPEAT_ROUNDS`] rounds.
#[derive(Default)]
pub struct PdGroup {
    call: Option<JoinHandle<()>>,
    round: u64,
    last: Option<(GroupStep, u64)>,
}

impl PdGroup {
    /// One round, on the PD leader.
    pub fn round(&mut self, ctx: &Arc<NodeCtx>, pd: &PdState) {
        self.round += 1;
        if self.call.as_ref().is_some_and(|c| !c.is_finished()) {
            return;
        }
        #[cfg(all(madsim, feature = "sim-bugs"))]
        if crate::sim_hooks::bug(crate::sim_hooks::Bug::PdGroupStays) {
            return;
        }
        let Some(view) = view(ctx) else { return };
        let Some(step) = next_step(&view, pd) else {
            return;
        };
        if matches!(self.last, Some((s, at)) if s == step && self.round < at + REPEAT_ROUNDS) {
            return;
        }
        self.last = Some((step, self.round));
        let addr = |node: NodeId| pd.node(node).map(|n| n.address.clone()).unwrap_or_default();
        let ctx = ctx.clone();
        let learner_addr = match step {
            GroupStep::AddLearner(node) => addr(node),
            _ => String::new(),
        };
        let change = match step {
            GroupStep::LeaveJoint => Some(Change::LeaveJoint),
            // Needs a replica id first (in the task).
            GroupStep::AddLearner(_) => None,
            GroupStep::Promote(node) => Some(Change::Promote { node }),
            GroupStep::Remove(node) => Some(Change::Remove {
                node,
                addr: addr(node),
            }),
            GroupStep::TransferLeader(_) => None,
        };
        tracing::info!(
            node = ctx.node_id(),
            shard = PD_SHARD,
            ?step,
            ?view,
            "moving the placement driver's group"
        );
        self.call = Some(tokio::spawn(async move {
            let done = match (change, step) {
                (Some(change), _) => membership::run(&ctx, PD_SHARD, change)
                    .await
                    .map_err(|e| e.to_string()),
                (None, GroupStep::TransferLeader(to)) => transfer_to(&ctx, to).await,
                (None, GroupStep::AddLearner(node)) => add_learner(&ctx, node, learner_addr).await,
                (None, _) => Ok(()),
            };
            match done {
                Ok(()) => tracing::info!(
                    node = ctx.node_id(),
                    ?step,
                    "placement driver group step done"
                ),
                Err(e) => tracing::info!(
                    node = ctx.node_id(),
                    ?step,
                    "placement driver group step not done: {e}"
                ),
            }
        }));
    }

    /// Drops the step in flight (this node stopped leading the PD).
    pub fn clear(&mut self) {
        if let Some(call) = self.call.take() {
            call.abort();
        }
    }
}

/// Adds a learner of the PD group on `node`: its member id if it is one
/// already (a step asked again), else a fresh one from the PD.
async fn add_learner(ctx: &Arc<NodeCtx>, node: NodeId, addr: String) -> Result<(), String> {
    let replica = ctx.replica(PD_SHARD).map_err(|e| e.to_string())?;
    let learner = match replica.member_on(node) {
        Some(id) => id,
        None => fresh_replica_id(ctx, node)
            .await
            .map_err(|e| e.to_string())?,
    };
    let change = Change::AddLearner {
        replica: learner,
        addr,
        expected_conf_ver: 0,
    };
    membership::run(ctx, PD_SHARD, change)
        .await
        .map_err(|e| e.to_string())
}

async fn transfer_to(ctx: &Arc<NodeCtx>, to: NodeId) -> Result<(), String> {
    let replica = ctx.replica(PD_SHARD).map_err(|e| e.to_string())?;
    let timeouts = TransferTimeouts::new(TRANSFER_TIMEOUT, ctx.config.raft.failover_bound());
    let peers = transfer::Peers {
        pool: &ctx.peers,
        cluster_id: ctx.cluster.get(),
    };
    transfer::transfer(&replica, to, peers, timeouts)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use atoll_pd::command::{Command, NodeTarget};
    use atoll_pd::config::PdConfig;
    use atoll_pd::state::PdState;

    use super::{next_step, GroupStep, GroupView};

    fn cluster(nodes: u64) -> PdState {
        let mut pd = PdState::new(1, PdConfig::default());
        for i in 1..=nodes {
            pd.apply(Command::RegisterNode {
                node: i,
                address: format!("10.0.0.{i}:7000"),
                labels: Default::default(),
                now_ms: 0,
            });
        }
        pd
    }

    fn set(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    fn group(leader: u64, voters: &[u64], learners: &[u64], caught_up: &[u64]) -> GroupView {
        GroupView {
            leader,
            voters: set(voters),
            learners: set(learners),
            joint: false,
            caught_up: set(caught_up),
        }
    }

    fn drain(pd: &mut PdState, node: u64) {
        pd.apply(Command::SetNodeState {
            node,
            target: NodeTarget::Draining,
            force: false,
        });
    }

    #[test]
    fn a_healthy_group_of_three_stays() {
        let pd = cluster(4);
        assert_eq!(next_step(&group(1, &[1, 2, 3], &[], &[1, 2, 3]), &pd), None);
    }

    #[test]
    fn a_voter_on_a_draining_node_is_replaced_learner_first_then_removed() {
        let mut pd = cluster(4);
        drain(&mut pd, 3);
        let g = group(1, &[1, 2, 3], &[], &[1, 2, 3]);
        assert_eq!(next_step(&g, &pd), Some(GroupStep::AddLearner(4)));
        // The learner has not caught up: its node is asked again to
        // create its replica.
        assert_eq!(
            next_step(&group(1, &[1, 2, 3], &[4], &[1, 2, 3]), &pd),
            Some(GroupStep::AddLearner(4))
        );
        let g = group(1, &[1, 2, 3], &[4], &[1, 2, 3, 4]);
        assert_eq!(next_step(&g, &pd), Some(GroupStep::Promote(4)));
        let g = group(1, &[1, 2, 3, 4], &[], &[1, 2, 3, 4]);
        assert_eq!(next_step(&g, &pd), Some(GroupStep::Remove(3)));
    }

    #[test]
    fn a_leader_on_a_draining_node_hands_over_before_it_is_removed() {
        let mut pd = cluster(4);
        drain(&mut pd, 1);
        let g = group(1, &[1, 2, 3, 4], &[], &[1, 2, 3, 4]);
        assert_eq!(next_step(&g, &pd), Some(GroupStep::TransferLeader(2)));
        let g = group(2, &[1, 2, 3, 4], &[], &[1, 2, 3, 4]);
        assert_eq!(next_step(&g, &pd), Some(GroupStep::Remove(1)));
    }

    #[test]
    fn a_voter_too_many_is_removed_but_not_the_leader() {
        let pd = cluster(4);
        let g = group(4, &[1, 2, 3, 4], &[], &[1, 2, 3, 4]);
        assert_eq!(next_step(&g, &pd), Some(GroupStep::Remove(3)));
    }

    #[test]
    fn a_learner_no_longer_needed_is_removed() {
        let pd = cluster(4);
        let g = group(1, &[1, 2, 3], &[4], &[1, 2, 3]);
        assert_eq!(next_step(&g, &pd), Some(GroupStep::Remove(4)));
    }

    #[test]
    fn with_no_spare_node_nothing_moves_and_a_small_group_grows() {
        let mut pd = cluster(3);
        drain(&mut pd, 3);
        assert_eq!(next_step(&group(1, &[1, 2, 3], &[], &[1, 2, 3]), &pd), None);
        let pd = cluster(3);
        let g = group(1, &[1], &[], &[1]);
        assert_eq!(next_step(&g, &pd), Some(GroupStep::AddLearner(2)));
    }

    #[test]
    fn a_joint_membership_is_finished_and_a_learner_on_a_sick_node_removed() {
        let mut pd = cluster(5);
        let mut g = group(1, &[1, 2, 3], &[], &[1, 2, 3]);
        g.joint = true;
        assert_eq!(next_step(&g, &pd), Some(GroupStep::LeaveJoint));
        drain(&mut pd, 5);
        let g = group(1, &[1, 2, 3], &[5], &[1, 2, 3]);
        assert_eq!(next_step(&g, &pd), Some(GroupStep::Remove(5)));
    }
}
