//! One shard as the simulated cluster really has it, and how its leader
//! carries out operator steps.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use atoll_pd::node::NodeId;
use atoll_pd::operator::Step;
use atoll_pd::shard::{Epoch, ReplicaId, Role, ShardDescriptor, ShardStats};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

pub struct TrueShard {
    pub desc: ShardDescriptor,
    /// Learners still receiving their snapshot.
    pub pending: BTreeSet<ReplicaId>,
    /// The leader that entered the current joint config; only it finishes it.
    pub joint_leader: Option<ReplicaId>,
    /// (parent after, child) of splits the PD has not taken yet, oldest first.
    pub unreported_splits: Vec<(ShardDescriptor, ShardDescriptor)>,
}

fn majority_alive<'a>(
    replicas: impl Iterator<Item = &'a NodeId>,
    alive: &BTreeMap<NodeId, bool>,
) -> bool {
    let nodes: Vec<_> = replicas.collect();
    let up = nodes
        .iter()
        .filter(|n| alive.get(n).copied().unwrap_or(false))
        .count();
    up > nodes.len() / 2
}

impl TrueShard {
    pub fn new(desc: ShardDescriptor) -> Self {
        Self {
            desc,
            pending: BTreeSet::new(),
            joint_leader: None,
            unreported_splits: Vec::new(),
        }
    }

    /// Both configs of a joint membership keep a live majority.
    pub fn has_quorum(&self, alive: &BTreeMap<NodeId, bool>) -> bool {
        let r = &self.desc.replicas;
        let old = r
            .iter()
            .filter(|r| matches!(r.role, Role::Voter | Role::OutgoingVoter))
            .map(|r| &r.node);
        let new = r
            .iter()
            .filter(|r| matches!(r.role, Role::Voter | Role::IncomingVoter))
            .map(|r| &r.node);
        majority_alive(old, alive) && majority_alive(new, alive)
    }

    pub fn leader_alive(&self, alive: &BTreeMap<NodeId, bool>) -> bool {
        self.desc
            .leader_node()
            .is_some_and(|n| alive.get(&n).copied().unwrap_or(false))
    }

    fn elect(&mut self, alive: &BTreeMap<NodeId, bool>, rng: &mut StdRng) {
        if !self.has_quorum(alive) {
            return;
        }
        let candidates: Vec<ReplicaId> = self
            .desc
            .replicas
            .iter()
            .filter(|r| matches!(r.role, Role::Voter | Role::IncomingVoter))
            .filter(|r| alive.get(&r.node).copied().unwrap_or(false))
            .map(|r| r.id)
            .collect();
        if let Some(l) = candidates.choose(rng) {
            self.desc.leader = Some(*l);
            self.desc.term += 1;
        }
    }

    pub fn elect_if_leader_dead(&mut self, alive: &BTreeMap<NodeId, bool>, rng: &mut StdRng) {
        if !self.leader_alive(alive) {
            self.elect(alive, rng);
        }
    }

    /// Learners catch up; the leader that went joint leaves it; now and
    /// then a leader steps down (which may strand a joint config).
    pub fn progress(
        &mut self,
        alive: &BTreeMap<NodeId, bool>,
        p: f64,
        step_down: f64,
        rng: &mut StdRng,
        log: &mut u64,
    ) {
        let caught_up: Vec<ReplicaId> = self
            .pending
            .iter()
            .copied()
            .filter(|id| {
                self.desc
                    .replica(*id)
                    .is_some_and(|r| alive.get(&r.node).copied().unwrap_or(false))
            })
            .collect();
        for id in caught_up {
            if rng.gen_bool(p) {
                self.pending.remove(&id);
            }
        }
        if self.desc.is_joint() && self.joint_leader == self.desc.leader && rng.gen_bool(p) {
            self.leave_joint(log);
        }
        if rng.gen_bool(step_down) {
            self.elect(alive, rng);
        }
    }

    fn leave_joint(&mut self, log: &mut u64) {
        self.desc.replicas.retain(|r| r.role != Role::OutgoingVoter);
        for r in &mut self.desc.replicas {
            if r.role == Role::IncomingVoter {
                r.role = Role::Voter;
            }
        }
        self.bump_conf(log);
        self.joint_leader = None;
    }

    fn bump_conf(&mut self, log: &mut u64) {
        *log += 1;
        self.desc.epoch.conf_ver = *log;
    }

    fn set_role(&mut self, id: ReplicaId, role: Role) {
        if let Some(r) = self.desc.replicas.iter_mut().find(|r| r.id == id) {
            r.role = role;
        }
    }

    /// Carries out `step` of an operator made against `epoch`, as a real
    /// leader would: each step checks it still applies. Returns the child
    /// of a split.
    pub fn execute(
        &mut self,
        step: &Step,
        epoch: Epoch,
        alive: &BTreeMap<NodeId, bool>,
        keys: &BTreeSet<Vec<u8>>,
        log: &mut u64,
    ) -> Option<TrueShard> {
        let joint = self.desc.is_joint();
        let is_alive = |n: NodeId| alive.get(&n).copied().unwrap_or(false);
        match step {
            Step::AddLearner { node, replica } => {
                if !joint
                    && is_alive(*node)
                    && self.desc.replica_on(*node).is_none()
                    && self.desc.replica(*replica).is_none()
                {
                    self.desc.replicas.push(atoll_pd::shard::Replica {
                        id: *replica,
                        node: *node,
                        role: Role::Learner,
                    });
                    self.pending.insert(*replica);
                    self.bump_conf(log);
                }
            }
            Step::PromoteLearner { replica, .. } => {
                let role = self.desc.replica(*replica).map(|r| r.role);
                if joint && role == Some(Role::IncomingVoter) {
                    // Re-issuing the change from a joint config completes it.
                    self.leave_joint(log);
                } else if !joint && role == Some(Role::Learner) && !self.pending.contains(replica) {
                    self.set_role(*replica, Role::IncomingVoter);
                    self.bump_conf(log);
                    self.joint_leader = self.desc.leader;
                }
            }
            Step::TransferLeader { node, replica } => {
                let voter = self
                    .desc
                    .replica(*replica)
                    .is_some_and(|r| r.role == Role::Voter);
                if voter && is_alive(*node) && self.desc.leader != Some(*replica) {
                    self.desc.leader = Some(*replica);
                    self.desc.term += 1;
                }
            }
            Step::RemoveReplica { replica, .. } => {
                let role = self.desc.replica(*replica).map(|r| r.role);
                if joint && role == Some(Role::OutgoingVoter) {
                    self.leave_joint(log);
                    return None;
                }
                if joint || self.desc.leader == Some(*replica) {
                    return None;
                }
                match role {
                    Some(Role::Voter) => {
                        self.set_role(*replica, Role::OutgoingVoter);
                        self.bump_conf(log);
                        self.joint_leader = self.desc.leader;
                    }
                    Some(Role::Learner) => {
                        self.desc.replicas.retain(|r| r.id != *replica);
                        self.pending.remove(replica);
                        self.bump_conf(log);
                    }
                    Some(Role::IncomingVoter) | Some(Role::OutgoingVoter) | None => {}
                }
            }
            Step::LeaveJoint => {
                if joint {
                    self.leave_joint(log);
                }
            }
            Step::Split {
                at,
                child,
                child_replicas,
            } => {
                return self.split(epoch, at.as_deref(), *child, child_replicas, keys);
            }
        }
        None
    }

    fn split(
        &mut self,
        epoch: Epoch,
        at: Option<&[u8]>,
        child: u64,
        child_replicas: &[atoll_pd::shard::Replica],
        keys: &BTreeSet<Vec<u8>>,
    ) -> Option<TrueShard> {
        let d = &self.desc;
        let mut mine: Vec<_> = d.replicas.iter().map(|r| (r.node, r.role)).collect();
        let mut theirs: Vec<_> = child_replicas.iter().map(|r| (r.node, r.role)).collect();
        mine.sort();
        theirs.sort();
        if d.epoch.version != epoch.version || d.is_joint() || mine != theirs {
            return None; // the split command fails its epoch check
        }
        let key = match at {
            Some(k) => k.to_vec(),
            None => {
                let in_range = self.keys_in_range(keys);
                if in_range.len() < 2 {
                    return None;
                }
                in_range[in_range.len() / 2].clone()
            }
        };
        if key.as_slice() <= d.start.as_slice() || !d.contains(&key) {
            return None;
        }
        let leader_node = d.leader_node();
        let mut c = d.clone();
        self.desc.end = Some(key.clone());
        self.desc.epoch.version += 1;
        c.id = child;
        c.start = key;
        c.epoch = self.desc.epoch;
        c.replicas = child_replicas.to_vec();
        c.leader = child_replicas
            .iter()
            .find(|r| Some(r.node) == leader_node)
            .map(|r| r.id);
        c.term = 1;
        self.unreported_splits.push((self.desc.clone(), c.clone()));
        Some(TrueShard::new(c))
    }

    fn keys_in_range(&self, keys: &BTreeSet<Vec<u8>>) -> Vec<Vec<u8>> {
        let end = match &self.desc.end {
            Some(e) => Bound::Excluded(e.clone()),
            None => Bound::Unbounded,
        };
        keys.range((Bound::Included(self.desc.start.clone()), end))
            .cloned()
            .collect()
    }

    pub fn report(&self, keys: &BTreeSet<Vec<u8>>) -> (ShardDescriptor, ShardStats) {
        let n = self.keys_in_range(keys).len() as u64;
        let stats = ShardStats {
            approx_size_bytes: n * 64,
            approx_keys: n,
            pending_replicas: self.pending.iter().copied().collect(),
            down_replicas: Vec::new(),
        };
        (self.desc.clone(), stats)
    }
}
