//! The membership steps of a replica move, run on the shard's leader
//! (issue 9, item 5): add a learner, promote it, remove a replica, finish a
//! joint membership. The PD leader's operators ask for them one at a time
//! (`pd::operators`); each is idempotent, so a step asked again after a
//! lost answer does no harm.
//!
//! - **Add learner.** The learner joins the membership without waiting
//!   for it to catch up (openraft's blocking `add_learner` waits forever);
//!   the PD sees it catch up in the leader's reports and times the step out
//!   otherwise. Then the node is asked to create its empty replica, with
//!   the descriptor of the new membership (newer than a tombstone the node
//!   may hold), marked as awaiting its first snapshot: it refuses log
//!   entries until then, so it never replays the shard's history (which
//!   would re-run old splits on a node that hosts later parts of the
//!   range), and the leader answers the refusal with a snapshot
//!   (`shard::snapshot_refresh`).
//! - **Promote** and **remove** change voters through openraft's joint
//!   consensus. After a removal commits, the removed node is told to remove
//!   its replica (`shard::removal`), with the shard's new membership
//!   version. The leader never removes itself: the PD moves leadership
//!   away first.
//! - **Confirm removed**: a node that still hosts a replica the PD no
//!   longer lists (it was down when it was removed) asks the leader, which
//!   gives the word to remove it only if the node is no member and the
//!   membership without it is committed (`pd::stale_replicas`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use atoll_proto as pb;
use openraft::{BasicNode, ChangeMembers};

use super::Replica;
use crate::error::KvError;
use crate::raft::replica_id::member_on;
use crate::raft::type_config::{NodeId, ReplicaId};
use crate::service::admin::{create_remote_replica, remote_admin, write_err};
use crate::service::NodeCtx;

/// One step, as `Admin.ChangeReplica` asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    AddLearner {
        /// The new replica's id, fresh from the PD; its node part is the
        /// node to add.
        replica: ReplicaId,
        addr: String,
        /// The membership version the step was made for (0: any).
        expected_conf_ver: u64,
    },
    Promote {
        node: NodeId,
    },
    Remove {
        node: NodeId,
        addr: String,
    },
    LeaveJoint,
    /// Like `Remove` for a node that is no member: only the word to remove
    /// its replica, never a membership change.
    ConfirmRemoved {
        node: NodeId,
        addr: String,
        /// The replica the node hosts (0: not said).
        replica: ReplicaId,
    },
}

impl Change {
    pub fn from_proto(req: &pb::ChangeReplicaRequest) -> Result<Self, KvError> {
        let node = req.node_id;
        let need_node = || {
            (node != 0).then_some(()).ok_or_else(|| {
                KvError::InvalidArgument("this replica change needs a node id > 0".into())
            })
        };
        match pb::ReplicaChange::try_from(req.change) {
            Ok(pb::ReplicaChange::AddLearner) => {
                need_node()?;
                if req.addr.is_empty() {
                    return Err(KvError::InvalidArgument(
                        "adding a learner needs the node's address".into(),
                    ));
                }
                let replica = ReplicaId(req.replica_id);
                #[cfg(all(madsim, feature = "sim-bugs"))]
                let reuse = crate::sim_hooks::reuses_replica_ids();
                #[cfg(not(all(madsim, feature = "sim-bugs")))]
                let reuse = false;
                if (replica.incarnation() == 0 && !reuse) || replica.node() != node {
                    return Err(KvError::InvalidArgument(format!(
                        "adding a learner on node {node} needs a fresh replica id of that node \
                         from the PD, not {replica}"
                    )));
                }
                Ok(Change::AddLearner {
                    replica,
                    addr: req.addr.clone(),
                    expected_conf_ver: req.expected_conf_ver,
                })
            }
            Ok(pb::ReplicaChange::Promote) => need_node().map(|_| Change::Promote { node }),
            Ok(pb::ReplicaChange::Remove) => need_node().map(|_| Change::Remove {
                node,
                addr: req.addr.clone(),
            }),
            Ok(pb::ReplicaChange::LeaveJoint) => Ok(Change::LeaveJoint),
            Ok(pb::ReplicaChange::ConfirmRemoved) => {
                need_node()?;
                Ok(Change::ConfirmRemoved {
                    node,
                    addr: req.addr.clone(),
                    replica: ReplicaId(req.replica_id),
                })
            }
            _ => Err(KvError::InvalidArgument(format!(
                "unknown replica change {}",
                req.change
            ))),
        }
    }
}

/// Runs `change` on this node's replica of `shard`, which must lead it.
pub async fn run(ctx: &Arc<NodeCtx>, shard: u64, change: Change) -> Result<(), KvError> {
    let replica = ctx.replica(shard)?;
    replica.touch();
    super::split::leader_or_redirect(&replica)?;
    let wait = ctx.config.raft.write_timeout();
    let membership = replica
        .raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .clone();
    // Every change but an addition names a node; its member is found here.
    let member_on = |n: NodeId| member_on(&membership, n);
    let is_voter = |r: ReplicaId| membership.voter_ids().any(|v| v == r);
    let changes: Vec<(ChangeMembers<ReplicaId, BasicNode>, bool)> = match &change {
        Change::AddLearner {
            replica: learner,
            addr,
            expected_conf_ver,
        } => {
            let conf_ver = replica.meta().epoch.conf_ver;
            match member_on(learner.node()) {
                None if *expected_conf_ver != 0 && *expected_conf_ver != conf_ver => {
                    return Err(KvError::NotApplied(format!(
                        "shard {shard} is at membership version {conf_ver}, not the \
                         {expected_conf_ver} this step was made for (a stale step)"
                    )))
                }
                None => {
                    // Ids are never reused: one the shard had before, or one
                    // older than a member's, comes from a stale step.
                    let add = replica
                        .raft
                        .add_learner(*learner, BasicNode::new(addr), false);
                    tokio::time::timeout(wait, add)
                        .await
                        .map_err(|_| timed_out(shard, "adding the learner"))?
                        .map_err(|e| write_err(shard, e))?;
                }
                Some(listed) if listed == *learner => {}
                Some(listed) => {
                    return Err(KvError::InvalidArgument(format!(
                        "node {} is already a member of shard {shard} as replica {listed}, \
                         not {learner}",
                        learner.node()
                    )))
                }
            }
            return create_remote_replica(ctx, *learner, addr, replica.descriptor(), true).await;
        }
        Change::Promote { node } => {
            let Some(member) = member_on(*node) else {
                return Err(KvError::InvalidArgument(format!(
                    "node {node} is not a learner of shard {shard}; add it first"
                )));
            };
            if is_voter(member) && membership.get_joint_config().len() == 1 {
                return Ok(());
            }
            vec![(ChangeMembers::AddVoterIds(BTreeSet::from([member])), true)]
        }
        Change::Remove { node, .. } => {
            if *node == ctx.node_id() {
                return Err(KvError::InvalidArgument(format!(
                    "node {node} leads shard {shard}; move its leadership away before removing it"
                )));
            }
            match member_on(*node) {
                Some(m) if is_voter(m) => {
                    vec![(ChangeMembers::RemoveVoters(BTreeSet::from([m])), false)]
                }
                Some(m) => vec![(ChangeMembers::RemoveNodes(BTreeSet::from([m])), false)],
                None => vec![],
            }
        }
        Change::ConfirmRemoved {
            node,
            addr,
            replica: removed,
        } => {
            if member_on(*node).is_some() {
                return Ok(());
            }
            committed_without(&replica, *node).await?;
            return tell_removed(ctx, &replica, *removed, *node, addr).await;
        }
        Change::LeaveJoint => {
            let configs = membership.get_joint_config();
            match configs.last() {
                Some(incoming) if configs.len() > 1 => {
                    vec![(ChangeMembers::ReplaceAllVoters(incoming.clone()), false)]
                }
                _ => vec![],
            }
        }
    };
    for (members, retain) in changes {
        let change_it = replica.raft.change_membership(members, retain);
        tokio::time::timeout(wait, change_it)
            .await
            .map_err(|_| timed_out(shard, "changing the membership"))?
            .map_err(|e| write_err(shard, e))?;
    }
    if let Change::Remove { node, addr } = change {
        let removed = member_on(node).unwrap_or_default();
        committed_without(&replica, node).await?;
        let addr = membership
            .get_node(&removed)
            .map(|n| n.addr.clone())
            .filter(|a| !a.is_empty())
            .unwrap_or(addr);
        if !addr.is_empty() {
            tell_removed(ctx, &replica, removed, node, &addr).await?;
        }
    }
    Ok(())
}

/// Fails unless this replica still leads (confirmed by a quorum) and the
/// membership without `node` is committed: applied here. The removed node
/// deletes its replica on our word, so a leader deposed in a minority whose
/// removal never committed must not give it.
async fn committed_without(replica: &Replica, node: NodeId) -> Result<(), KvError> {
    #[cfg(all(madsim, feature = "sim-bugs"))]
    if crate::sim_hooks::bug(crate::sim_hooks::Bug::RemoveBeforeCommitted) {
        return Ok(());
    }
    let not_yet = || {
        KvError::Unavailable(format!(
            "shard {}: the membership without node {node} is not committed yet; retry",
            replica.id
        ))
    };
    replica.ensure_linearizable().await.map_err(|_| not_yet())?;
    let m = replica.raft.metrics().borrow().clone();
    let effective = &m.membership_config;
    let applied = m.last_applied.map(|l| l.index);
    let change_at = effective.log_id().map(|l| l.index);
    let without = member_on(effective.membership(), node).is_none();
    if without && applied >= change_at {
        Ok(())
    } else {
        Err(not_yet())
    }
}

fn timed_out(shard: u64, what: &str) -> KvError {
    KvError::Unavailable(format!(
        "shard {shard}: {what} was not committed in time (no quorum?); it may still apply"
    ))
}

/// Tells `node` to remove its replica `removed` (0: whichever it hosts):
/// the membership without it is committed and applied here.
async fn tell_removed(
    ctx: &Arc<NodeCtx>,
    replica: &Replica,
    removed: ReplicaId,
    node: NodeId,
    addr: &str,
) -> Result<(), KvError> {
    let conf_ver = replica.meta().epoch.conf_ver;
    let reply = remote_admin(ctx, addr)
        .await?
        .remove_replica(pb::RemoveReplicaRequest {
            shard_id: replica.id,
            conf_ver,
            cluster_id: ctx.cluster.get(),
            replica_id: removed.0,
        })
        .await
        .map_err(|s| KvError::Unavailable(format!("node {node} at {addr}: {}", s.message())))?
        .into_inner();
    match reply.error {
        None => Ok(()),
        Some(e) => Err(KvError::Unavailable(format!(
            "node {node} at {addr} did not remove its replica of shard {}: {}",
            replica.id, e.message
        ))),
    }
}

/// Builds a snapshot of everything applied, then purges the log it covers
/// (`atollctl compact`).
pub async fn compact(replica: &Replica) -> Result<(), KvError> {
    let target = replica
        .raft
        .metrics()
        .borrow()
        .last_applied
        .map(|l| l.index)
        .unwrap_or(0);
    let stopped = |e: openraft::error::Fatal<ReplicaId>| KvError::Unavailable(e.to_string());
    replica.raft.trigger().snapshot().await.map_err(stopped)?;
    let built = replica
        .raft
        .wait(Some(Duration::from_secs(30)))
        .metrics(
            |m| m.snapshot.map(|l| l.index).unwrap_or(0) >= target,
            "snapshot built",
        )
        .await
        .map_err(|e| KvError::Unavailable(format!("snapshot not built: {e}")))?;
    let upto = built.snapshot.map(|l| l.index).unwrap_or(0);
    replica
        .raft
        .trigger()
        .purge_log(upto)
        .await
        .map_err(stopped)
}
