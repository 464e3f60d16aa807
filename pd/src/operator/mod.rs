//! Operators: a list of steps for one shard, created against the shard's
//! epoch and membership. Each step is confirmed by a later shard report
//! (`Operator::observe`), has a timeout (`Operator::check_timeout`), and the
//! operator is cancelled when the shard moves in a way its steps do not
//! explain.
//!
//! Because `conf_ver` is a log index here (it jumps by the entries of a
//! joint change, not by one per step), the operator does not count
//! `conf_ver` bumps as PD does; it precomputes the membership expected
//! before and after each step (and the joint form in between) and accepts a
//! report only if its membership is one of those from the current step on.
//! Replica ids are never reused, so equal memberships are the same replicas.

mod builder;
mod set;
mod step;

pub use builder::BuildError;
pub mod build {
    //! Operator constructors, re-exported.
    pub use super::builder::{
        add_replica, leave_joint, move_replica, promote_learner, remove_replica, split,
        transfer_leader,
    };
}
pub use set::{AdmitError, OperatorSet, Outcome};
pub use step::Step;

use crate::config::PdConfig;
use crate::node::NodeId;
use crate::shard::{Epoch, Membership, ShardId, ShardInfo};

/// Why an operator was made; for priorities, limits and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// Replica repair: make-up, replace, leave joint, remove extra.
    Replica,
    Split,
    BalanceReplica,
    BalanceLeader,
    /// Asked for by an operator (CLI).
    Admin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpStatus {
    Running,
    Finished,
    Cancelled(CancelReason),
    /// Step `step` did not finish within its timeout.
    TimedOut {
        step: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelReason {
    /// The shard split (or merged) while no split step was running.
    VersionChanged { expected: u64, reported: u64 },
    /// The membership moved to a state no remaining step leads to.
    MembershipChanged,
    /// The replica to remove leads the shard (leadership came back to it);
    /// a new operator moves leadership away first.
    RemovingLeader,
    /// The shard is no longer known.
    ShardGone,
    /// Cancelled by an administrator or replaced by a more urgent operator.
    Admin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub shard: ShardId,
    pub kind: OpKind,
    steps: Vec<Step>,
    /// The epoch the operator was created against.
    epoch: Epoch,
    /// `states[i]`: membership before step `i`; `states[n]`: the goal.
    states: Vec<Membership>,
    /// The joint form between `states[i]` and `states[i + 1]`, if any.
    joints: Vec<Option<Membership>>,
    current: usize,
    created_ms: u64,
    step_started_ms: u64,
    status: OpStatus,
    /// The leader's node when created: it sends learners their snapshots.
    snapshot_source: Option<NodeId>,
}

impl Operator {
    /// An operator for `shard` as currently known. Steps are not validated
    /// here; use [`OperatorBuilder`] for that.
    pub fn new(shard: &ShardInfo, kind: OpKind, steps: Vec<Step>, now_ms: u64) -> Self {
        let mut states = vec![shard.desc.membership()];
        let mut joints = Vec::with_capacity(steps.len());
        for s in &steps {
            let before = states.last().cloned().unwrap_or_default();
            joints.push(s.joint_form(&before));
            states.push(s.apply_to(&before));
        }
        Self {
            shard: shard.desc.id,
            kind,
            steps,
            epoch: shard.desc.epoch,
            states,
            joints,
            current: 0,
            created_ms: now_ms,
            step_started_ms: now_ms,
            status: OpStatus::Running,
            snapshot_source: shard.desc.leader_node(),
        }
    }

    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    pub fn status(&self) -> &OpStatus {
        &self.status
    }

    pub fn is_running(&self) -> bool {
        self.status == OpStatus::Running
    }

    pub fn created_ms(&self) -> u64 {
        self.created_ms
    }

    /// Index of the step in progress (`steps().len()` once finished).
    pub fn current_index(&self) -> usize {
        self.current
    }

    /// The step the shard leader should be executing now.
    pub fn current_step(&self) -> Option<&Step> {
        if self.is_running() {
            self.steps.get(self.current)
        } else {
            None
        }
    }

    /// Steps not yet confirmed.
    pub fn unfinished_steps(&self) -> &[Step] {
        self.steps.get(self.current..).unwrap_or(&[])
    }

    pub fn snapshot_source(&self) -> Option<NodeId> {
        self.snapshot_source
    }

    /// Nodes that send or receive a snapshot for an unconfirmed learner add.
    pub fn snapshot_nodes(&self) -> Vec<NodeId> {
        let mut v = Vec::new();
        for s in self.unfinished_steps() {
            if let Step::AddLearner { node, .. } = s {
                v.push(*node);
                v.extend(self.snapshot_source);
            }
        }
        v
    }

    /// Feeds a stored shard report: confirms finished steps, or cancels.
    /// Returns the status afterwards.
    pub fn observe(&mut self, shard: &ShardInfo, now_ms: u64) -> &OpStatus {
        if !self.is_running() {
            return &self.status;
        }
        let desc = &shard.desc;
        if desc.epoch.version != self.epoch.version {
            let splitting = matches!(self.steps.get(self.current), Some(Step::Split { .. }));
            if !(splitting && desc.epoch.version > self.epoch.version) {
                self.status = OpStatus::Cancelled(CancelReason::VersionChanged {
                    expected: self.epoch.version,
                    reported: desc.epoch.version,
                });
                return &self.status;
            }
        }
        let m = desc.membership();
        let n = self.steps.len();
        let explained = (self.current..=n).any(|k| {
            self.states.get(k) == Some(&m)
                || self.joints.get(k).and_then(Option::as_ref) == Some(&m)
        });
        if !explained {
            self.status = OpStatus::Cancelled(CancelReason::MembershipChanged);
            return &self.status;
        }
        // The first step carries the membership version it was made for, and the
        // leader refuses it at any other. A version that moved while the membership
        // still is the one the operator started from (a change and its undo, or a
        // learner removed that the descriptor does not list) leaves a step that can
        // never apply: start over from the new view. (Found by the moves simulation,
        // calm seed 1359: an operator retried a refused step for over a minute.)
        if self.current == 0
            && desc.epoch.conf_ver != self.epoch.conf_ver
            && self.states.first() == Some(&m)
        {
            self.status = OpStatus::Cancelled(CancelReason::MembershipChanged);
            return &self.status;
        }
        while let Some(step) = self.steps.get(self.current) {
            if !step.is_finished(shard, self.epoch.version) {
                break;
            }
            self.current += 1;
            self.step_started_ms = now_ms;
        }
        if self.current >= n {
            self.status = OpStatus::Finished;
        } else if let Some(Step::RemoveReplica { replica, .. }) = self.steps.get(self.current) {
            if desc.leader == Some(*replica) {
                self.status = OpStatus::Cancelled(CancelReason::RemovingLeader);
            }
        }
        &self.status
    }

    /// Times the current step out after its timeout.
    pub fn check_timeout(&mut self, now_ms: u64, config: &PdConfig) -> &OpStatus {
        if let Some(step) = self.current_step() {
            let limit = step.timeout_ms(config);
            if now_ms.saturating_sub(self.step_started_ms) >= limit {
                self.status = OpStatus::TimedOut { step: self.current };
            }
        }
        &self.status
    }

    pub fn cancel(&mut self, reason: CancelReason) {
        if self.is_running() {
            self.status = OpStatus::Cancelled(reason);
        }
    }
}

#[cfg(test)]
mod tests;
