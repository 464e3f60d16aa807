//! One step of an operator: what the shard leader is asked to do, the
//! membership it leads to, and the report that confirms it.

use crate::config::PdConfig;
use crate::node::NodeId;
use crate::shard::{Membership, Replica, ReplicaId, Role, ShardId, ShardInfo};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Add `replica` (a fresh id) as a learner on `node`; confirmed once the
    /// leader reports it present and no longer pending (caught up).
    AddLearner { node: NodeId, replica: ReplicaId },
    /// Make the learner a voter (one joint change); confirmed when the
    /// membership has it as a voter outside a joint config.
    PromoteLearner { node: NodeId, replica: ReplicaId },
    /// Move leadership to `replica`; confirmed when it reports as leader.
    TransferLeader { node: NodeId, replica: ReplicaId },
    /// Take `replica` out of the membership (a joint change for a voter);
    /// confirmed when it is gone. The node then shuts it down, deletes its
    /// data and writes a tombstone.
    RemoveReplica { node: NodeId, replica: ReplicaId },
    /// Re-issue the change a leader left joint: the incoming voters become
    /// the configuration. Confirmed when no replica is joint.
    LeaveJoint,
    /// Split at `at` (None: the leader picks its middle key). The right part
    /// becomes shard `child` with `child_replicas` (fresh ids, the parent's
    /// nodes and roles). Confirmed when the version has moved past the
    /// operator's, which `ReportSplit` does.
    Split {
        at: Option<Vec<u8>>,
        child: ShardId,
        child_replicas: Vec<Replica>,
    },
}

impl Step {
    /// The membership after this step, from `before`.
    pub fn apply_to(&self, before: &Membership) -> Membership {
        let mut m = before.clone();
        match self {
            Step::AddLearner { node, replica } => {
                m.insert(*replica, (*node, Role::Learner));
            }
            Step::PromoteLearner { node, replica } => {
                m.insert(*replica, (*node, Role::Voter));
            }
            Step::RemoveReplica { replica, .. } => {
                m.remove(replica);
            }
            Step::LeaveJoint => {
                m.retain(|_, (_, role)| *role != Role::OutgoingVoter);
                for (_, role) in m.values_mut() {
                    if *role == Role::IncomingVoter {
                        *role = Role::Voter;
                    }
                }
            }
            Step::TransferLeader { .. } | Step::Split { .. } => {}
        }
        m
    }

    /// The joint membership a leader passes through during this step.
    pub fn joint_form(&self, before: &Membership) -> Option<Membership> {
        let mut m = before.clone();
        match self {
            Step::PromoteLearner { node, replica } => {
                m.insert(*replica, (*node, Role::IncomingVoter));
                Some(m)
            }
            Step::RemoveReplica { node, replica } => {
                let was_voter = before.get(replica).is_some_and(|(_, r)| r.is_voter());
                was_voter.then(|| {
                    m.insert(*replica, (*node, Role::OutgoingVoter));
                    m
                })
            }
            Step::AddLearner { .. }
            | Step::TransferLeader { .. }
            | Step::LeaveJoint
            | Step::Split { .. } => None,
        }
    }

    /// Whether `shard` (as reported) shows this step done. `version` is the
    /// operator's starting version.
    pub fn is_finished(&self, shard: &ShardInfo, version: u64) -> bool {
        let d = &shard.desc;
        match self {
            Step::AddLearner { replica, .. } => {
                d.replica(*replica).is_some() && !shard.stats.pending_replicas.contains(replica)
            }
            Step::PromoteLearner { replica, .. } => {
                d.replica(*replica).is_some_and(|r| r.role == Role::Voter)
            }
            Step::TransferLeader { replica, .. } => d.leader == Some(*replica),
            Step::RemoveReplica { replica, .. } => d.replica(*replica).is_none(),
            Step::LeaveJoint => !d.is_joint(),
            Step::Split { .. } => d.epoch.version > version,
        }
    }

    pub fn timeout_ms(&self, config: &PdConfig) -> u64 {
        match self {
            Step::AddLearner { .. } => config.learner_step_timeout_ms,
            Step::PromoteLearner { .. }
            | Step::TransferLeader { .. }
            | Step::RemoveReplica { .. }
            | Step::LeaveJoint
            | Step::Split { .. } => config.step_timeout_ms,
        }
    }
}
