//! Constructors for the operators checkers, schedulers and administrators
//! ask for. They check the request against the shard as known and take
//! fresh ids from an [`IdSource`]; they never decide *where* (placement is
//! the checkers' job).

use thiserror::Error;

use crate::ids::{IdKind, IdSource};
use crate::node::NodeId;
use crate::operator::{OpKind, Operator, Step};
use crate::shard::{Replica, ReplicaId, Role, ShardId, ShardInfo};

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BuildError {
    #[error("replica {0} is not in the shard")]
    NoSuchReplica(ReplicaId),
    #[error("node {0} already holds a replica of the shard")]
    NodeAlreadyHolds(NodeId),
    #[error("replica {0} is not a voter")]
    NotAVoter(ReplicaId),
    #[error("replica {0} is not a learner")]
    NotALearner(ReplicaId),
    #[error("replica {0} is already the leader")]
    AlreadyLeader(ReplicaId),
    #[error("the leader is leaving and no other voter can take over")]
    NoOtherVoter,
    #[error("the shard has no known leader")]
    NoLeader,
    #[error("the shard is not in a joint configuration")]
    NotJoint,
    #[error("the split key is not strictly inside the shard")]
    SplitKeyOutOfRange,
    #[error("no committed ids at hand; allocate more")]
    OutOfIds,
}

fn fresh(ids: &mut dyn IdSource, kind: IdKind) -> Result<u64, BuildError> {
    ids.next_id(kind).ok_or(BuildError::OutOfIds)
}

fn fresh_replica(ids: &mut dyn IdSource, shard: ShardId, node: NodeId) -> Result<u64, BuildError> {
    ids.replica_id(shard, node).ok_or(BuildError::OutOfIds)
}

/// Steps that move leadership off `leaving` when it leads: to `to`, or to
/// the lowest-id other full voter.
fn lead_away(
    shard: &ShardInfo,
    leaving: ReplicaId,
    to: Option<(NodeId, ReplicaId)>,
) -> Result<Vec<Step>, BuildError> {
    if shard.desc.leader != Some(leaving) {
        return Ok(Vec::new());
    }
    let target = to.or_else(|| {
        shard
            .desc
            .replicas
            .iter()
            .filter(|r| r.id != leaving && r.role == Role::Voter)
            .min_by_key(|r| r.id)
            .map(|r| (r.node, r.id))
    });
    let (node, replica) = target.ok_or(BuildError::NoOtherVoter)?;
    Ok(vec![Step::TransferLeader { node, replica }])
}

/// A new voter on `node`: add learner, promote.
pub fn add_replica(
    shard: &ShardInfo,
    node: NodeId,
    kind: OpKind,
    ids: &mut dyn IdSource,
    now_ms: u64,
) -> Result<Operator, BuildError> {
    if shard.desc.replica_on(node).is_some() {
        return Err(BuildError::NodeAlreadyHolds(node));
    }
    let replica = fresh_replica(ids, shard.desc.id, node)?;
    let steps = vec![
        Step::AddLearner { node, replica },
        Step::PromoteLearner { node, replica },
    ];
    Ok(Operator::new(shard, kind, steps, now_ms))
}

/// Replaces `from` by a new replica on `to`: add learner, promote (if
/// `from` votes), move leadership to the new replica if `from` leads,
/// remove `from`.
pub fn move_replica(
    shard: &ShardInfo,
    from: ReplicaId,
    to: NodeId,
    kind: OpKind,
    ids: &mut dyn IdSource,
    now_ms: u64,
) -> Result<Operator, BuildError> {
    let old = *shard
        .desc
        .replica(from)
        .ok_or(BuildError::NoSuchReplica(from))?;
    if shard.desc.replica_on(to).is_some() {
        return Err(BuildError::NodeAlreadyHolds(to));
    }
    let replica = fresh_replica(ids, shard.desc.id, to)?;
    let mut steps = vec![Step::AddLearner { node: to, replica }];
    if old.role.is_voter() {
        steps.push(Step::PromoteLearner { node: to, replica });
    }
    steps.extend(lead_away(shard, from, Some((to, replica)))?);
    steps.push(Step::RemoveReplica {
        node: old.node,
        replica: from,
    });
    Ok(Operator::new(shard, kind, steps, now_ms))
}

/// Removes `replica`, moving leadership away first if it leads.
pub fn remove_replica(
    shard: &ShardInfo,
    replica: ReplicaId,
    kind: OpKind,
    now_ms: u64,
) -> Result<Operator, BuildError> {
    let old = *shard
        .desc
        .replica(replica)
        .ok_or(BuildError::NoSuchReplica(replica))?;
    let mut steps = lead_away(shard, replica, None)?;
    steps.push(Step::RemoveReplica {
        node: old.node,
        replica,
    });
    Ok(Operator::new(shard, kind, steps, now_ms))
}

pub fn promote_learner(
    shard: &ShardInfo,
    replica: ReplicaId,
    kind: OpKind,
    now_ms: u64,
) -> Result<Operator, BuildError> {
    let r = *shard
        .desc
        .replica(replica)
        .ok_or(BuildError::NoSuchReplica(replica))?;
    if r.role != Role::Learner {
        return Err(BuildError::NotALearner(replica));
    }
    let steps = vec![Step::PromoteLearner {
        node: r.node,
        replica,
    }];
    Ok(Operator::new(shard, kind, steps, now_ms))
}

pub fn transfer_leader(
    shard: &ShardInfo,
    to: ReplicaId,
    kind: OpKind,
    now_ms: u64,
) -> Result<Operator, BuildError> {
    let r = *shard
        .desc
        .replica(to)
        .ok_or(BuildError::NoSuchReplica(to))?;
    if r.role != Role::Voter {
        return Err(BuildError::NotAVoter(to));
    }
    if shard.desc.leader == Some(to) {
        return Err(BuildError::AlreadyLeader(to));
    }
    let steps = vec![Step::TransferLeader {
        node: r.node,
        replica: to,
    }];
    Ok(Operator::new(shard, kind, steps, now_ms))
}

/// Finishes a membership change left joint (by a leader that died in it).
pub fn leave_joint(shard: &ShardInfo, now_ms: u64) -> Result<Operator, BuildError> {
    if !shard.desc.is_joint() {
        return Err(BuildError::NotJoint);
    }
    Ok(Operator::new(
        shard,
        OpKind::Replica,
        vec![Step::LeaveJoint],
        now_ms,
    ))
}

/// Splits the shard at `at` (None: the leader's middle key) into itself and
/// a new shard on the same nodes with fresh ids.
pub fn split(
    shard: &ShardInfo,
    at: Option<Vec<u8>>,
    kind: OpKind,
    ids: &mut dyn IdSource,
    now_ms: u64,
) -> Result<Operator, BuildError> {
    let d = &shard.desc;
    if let Some(k) = &at {
        if k.as_slice() <= d.start.as_slice() || !d.contains(k) {
            return Err(BuildError::SplitKeyOutOfRange);
        }
    }
    if d.leader.is_none() {
        return Err(BuildError::NoLeader);
    }
    let child = fresh(ids, IdKind::Shard)?;
    let mut child_replicas = Vec::with_capacity(d.replicas.len());
    for r in &d.replicas {
        child_replicas.push(Replica {
            id: fresh_replica(ids, child, r.node)?,
            node: r.node,
            role: r.role,
        });
    }
    let steps = vec![Step::Split {
        at,
        child,
        child_replicas,
    }];
    Ok(Operator::new(shard, kind, steps, now_ms))
}
