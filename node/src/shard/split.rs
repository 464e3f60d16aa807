//! Splitting a shard, on its leader ([`split`]), and opening the children
//! that applied splits leave behind, on every replica ([`open_children`]).
//!
//! A split takes a new shard id from the PD, then proposes
//! `Request::Split` through the shard's own Raft log (applied at the same
//! index everywhere, `state_machine::split`), then reports parent and child
//! to the PD (`ReportSplit`). The PD accepts splits of a shard only in
//! order, so a split starts only once the PD knows the shard's current
//! version: a split whose report was lost (its leader died) is reported
//! first, here or by the heartbeat loop ([`report_pending`]).

use std::sync::Arc;
use std::time::Duration;

use atoll_pd::command::{Command, CommandResult, SplitOutcome};
use atoll_pd::ids::IdKind;
use atoll_proto as pb;
use openraft::error::{ClientWriteError, RaftError};

use super::meta::ShardMeta;
use super::Replica;
use crate::command::{Rejection, Request, Response};
use crate::error::{show, KvError};
use crate::pd::heartbeat::command;
use crate::pd::ids::alloc_ids;
use crate::pd::{report, route, PdReply, PdRequest, PD_SHARD};
use crate::raft::type_config::ReplicaId;
use crate::service::NodeCtx;
use crate::state_machine::SplitChild;
use crate::storage::keys;

/// Keys scanned to pick a middle key when none is given.
const MIDDLE_KEY_SCAN: usize = 200_000;

/// Opens the Raft group of each split child this node's replicas announce;
/// the replica whose parent leads campaigns at once, so the child has a
/// leader within one election round instead of an election timeout.
pub async fn open_children(
    ctx: Arc<NodeCtx>,
    mut children: tokio::sync::mpsc::UnboundedReceiver<SplitChild>,
) {
    while let Some(SplitChild { parent, meta }) = children.recv().await {
        let child = meta.id;
        #[cfg(all(madsim, feature = "sim-bugs"))]
        if crate::sim_hooks::bug(crate::sim_hooks::Bug::ChildOnlyOnParentLeader)
            && !ctx.host.get(parent).is_some_and(|p| p.is_leader())
        {
            continue;
        }
        #[cfg(madsim)]
        {
            let delay = crate::sim_hooks::child_open_delay();
            if !delay.is_zero() && !ctx.host.get(parent).is_some_and(|p| p.is_leader()) {
                tokio::time::sleep(delay).await;
            }
        }
        let opened = ctx.host.open_split_child(meta).await;
        ctx.host.deps.splits.settled(child);
        match opened {
            Ok(Some(replica)) => {
                let leads_parent = ctx.host.get(parent).is_some_and(|p| p.is_leader());
                tracing::info!(
                    node = ctx.node_id(),
                    shard = child,
                    parent,
                    "split child opened"
                );
                if leads_parent {
                    if let Err(e) = replica.raft.trigger().elect().await {
                        tracing::debug!(shard = child, "starting the child's election: {e}");
                    }
                }
            }
            Ok(None) => {}
            Err(e) => tracing::error!(
                node = ctx.node_id(),
                shard = child,
                parent,
                "cannot open a split child (it opens at the next start): {e}"
            ),
        }
    }
}

/// Splits `shard` at `key` (None: about its middle key). Leader only.
pub async fn split(
    ctx: &Arc<NodeCtx>,
    shard: u64,
    key: Option<Vec<u8>>,
) -> Result<(pb::ShardDescriptor, pb::ShardDescriptor), KvError> {
    if shard == PD_SHARD {
        return Err(KvError::InvalidArgument(
            "shard 0 is the placement driver's group; it holds no keys and cannot be split".into(),
        ));
    }
    let replica = ctx.replica(shard)?;
    leader_or_redirect(&replica)?;
    replica.touch();
    let meta = replica.meta();
    if let Some(k) = &key {
        // The split key becomes a shard bound, stored and scanned like a
        // user key: the same limits (an over-long one would reach the
        // storage engine's key-length assertion on every replica).
        crate::service::validate::key(&ctx.config.limits, k).map_err(|e| match e {
            KvError::InvalidArgument(m) => KvError::InvalidArgument(format!("split {m}")),
            e => e,
        })?;
    }
    let key = match key {
        Some(k) if inside(&meta, &k) => k,
        Some(k) => {
            return Err(KvError::InvalidArgument(format!(
                "split key {} is not strictly inside shard {shard} [{}, {})",
                show(&k),
                show(&meta.start),
                meta.end.as_deref().map_or("+inf".into(), show),
            )))
        }
        None => middle_key(ctx, &meta)?,
    };
    // Nothing is proposed before these answer: a failure is `NotApplied`.
    ensure_pd_is_current(ctx, &replica).await?;
    let child = alloc_shard_id(ctx).await.map_err(not_proposed)?;
    let child_replicas = child_replica_ids(ctx, &replica)
        .await
        .map_err(not_proposed)?;
    let req = Request::Split {
        expected_version: meta.epoch.version,
        key,
        child,
        child_replicas,
    };
    let wait = ctx.config.raft.write_timeout();
    let applied = tokio::time::timeout(wait, replica.propose(req))
        .await
        .map_err(|_| {
            KvError::Unavailable(format!(
                "the split was not committed within {wait:?} (no quorum?); it may still apply"
            ))
        })?;
    let (left, right) = match applied {
        Ok(r) => match r.data {
            Response::Split { left, right } => (left, right),
            Response::Rejected(Rejection::VersionChanged { expected, current }) => {
                return Err(KvError::NotApplied(format!(
                    "shard {shard} changed during the split (version {expected} -> {current})"
                )))
            }
            Response::Rejected(Rejection::MembersChanged) => {
                return Err(KvError::NotApplied(format!(
                    "shard {shard}'s members changed during the split"
                )))
            }
            Response::Rejected(Rejection::BadSplitKey { key }) => {
                return Err(KvError::InvalidArgument(format!(
                    "split key {} is no longer inside shard {shard}",
                    show(&key)
                )))
            }
            other => {
                return Err(KvError::Unavailable(format!(
                    "internal error: the split answered {other:?}"
                )))
            }
        },
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            return Err(KvError::NotLeader {
                shard,
                leader_id: f.leader_id.map(ReplicaId::node),
                leader_addr: f.leader_node.map(|n| n.addr),
            })
        }
        Err(e) => return Err(KvError::Unavailable(format!("shard {shard}: {e}"))),
    };
    tracing::info!(node = ctx.node_id(), shard, child, key = %show(&left.end.clone().unwrap_or_default()), "split applied");
    let child_replica = wait_open(ctx, child).await;
    if let Some(c) = &child_replica {
        if let Err(e) = report_split(ctx, &replica, c).await {
            tracing::warn!(
                shard,
                child,
                "reporting the split to the PD (the heartbeat retries): {e}"
            );
        }
    }
    let right_desc = match child_replica {
        Some(c) => c.descriptor(),
        None => describe(&right, &replica),
    };
    let mut left_desc = replica.descriptor();
    left_desc.start = left.start;
    left_desc.end = left.end.unwrap_or_default();
    Ok((left_desc, right_desc))
}

pub(crate) fn leader_or_redirect(replica: &Replica) -> Result<(), KvError> {
    if replica.is_leader() {
        return Ok(());
    }
    let leader = replica.raft.metrics().borrow().current_leader;
    Err(KvError::NotLeader {
        shard: replica.id,
        leader_id: leader.map(ReplicaId::node),
        leader_addr: leader.and_then(|l| replica.member_addr(l)),
    })
}

fn inside(meta: &ShardMeta, key: &[u8]) -> bool {
    meta.contains(key) && key != meta.start.as_slice()
}

/// The middle of the shard's first [`MIDDLE_KEY_SCAN`] keys.
fn middle_key(ctx: &NodeCtx, meta: &ShardMeta) -> Result<Vec<u8>, KvError> {
    let (lo, hi) = keys::data_range(&meta.start, meta.end.as_deref());
    let found = ctx
        .engine
        .scan_keys(&lo, &hi, MIDDLE_KEY_SCAN)
        .map_err(|e| KvError::Unavailable(format!("reading shard {}: {e}", meta.id)))?;
    if found.len() < 2 {
        return Err(KvError::InvalidArgument(format!(
            "shard {} holds {} key(s); too few to pick a split key: give one (--at KEY)",
            meta.id,
            found.len()
        )));
    }
    Ok(keys::user_key(&found[found.len() / 2]).to_vec())
}

/// Fails unless the PD knows `replica`'s shard at its current version,
/// after reporting a split it missed if there is one.
async fn ensure_pd_is_current(ctx: &Arc<NodeCtx>, replica: &Replica) -> Result<(), KvError> {
    let pd_err = |e: crate::pd::PdError| KvError::NotApplied(e.to_string());
    let known = match route::call(ctx, PdRequest::State, 0)
        .await
        .map_err(pd_err)?
    {
        PdReply::State { state, .. } => state.shard(replica.id).map(|s| s.desc.epoch.version),
        PdReply::Result(_) => None,
    };
    let local = replica.meta().epoch.version;
    match known {
        Some(v) if v == local => Ok(()),
        Some(_) => {
            report_pending(ctx, replica).await.map_err(pd_err)?;
            Err(KvError::NotApplied(format!(
                "the previous split of shard {} was just reported to the placement driver",
                replica.id
            )))
        }
        None => Err(KvError::NotApplied(format!(
            "the placement driver does not know shard {} yet",
            replica.id
        ))),
    }
}

/// An error met before the split was proposed: nothing changed.
fn not_proposed(e: KvError) -> KvError {
    match e {
        KvError::Unavailable(m) => KvError::NotApplied(m),
        other => other,
    }
}

async fn alloc_shard_id(ctx: &Arc<NodeCtx>) -> Result<u64, KvError> {
    Ok(alloc_ids(ctx, IdKind::Shard, 1).await?.start)
}

/// Fresh replica ids for the child's group, one per member node of the
/// shard (replica ids are never shared between shards).
async fn child_replica_ids(ctx: &Arc<NodeCtx>, replica: &Replica) -> Result<Vec<u64>, KvError> {
    let nodes: Vec<u64> = {
        let m = replica.raft.metrics().borrow().clone();
        let nodes = m
            .membership_config
            .membership()
            .nodes()
            .map(|(id, _)| id.node())
            .collect();
        nodes
    };
    let count = u64::try_from(nodes.len()).unwrap_or(u64::MAX);
    let range = alloc_ids(ctx, IdKind::Replica, count).await?;
    nodes
        .iter()
        .zip(range.start..range.end)
        .map(|(node, number)| {
            ReplicaId::new(number, *node).map(|r| r.0).ok_or_else(|| {
                KvError::Unavailable(format!("no replica id for node {node} (number {number})"))
            })
        })
        .collect()
}

async fn wait_open(ctx: &NodeCtx, child: u64) -> Option<Arc<Replica>> {
    for _ in 0..100 {
        if let Some(r) = ctx.host.get(child) {
            return Some(r);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// The child's wire descriptor before its replica is open here.
fn describe(meta: &ShardMeta, parent: &Replica) -> pb::ShardDescriptor {
    let mut d = parent.descriptor();
    d.id = meta.id;
    d.start = meta.start.clone();
    d.end = meta.end.clone().unwrap_or_default();
    d.epoch = Some(pb::Epoch {
        version: meta.epoch.version,
        conf_ver: meta.epoch.conf_ver,
    });
    d.leader_id = None;
    d
}

/// Tells the PD that `parent` split off `child`.
async fn report_split(
    ctx: &Arc<NodeCtx>,
    parent: &Replica,
    child: &Replica,
) -> Result<SplitOutcome, crate::pd::PdError> {
    let mut child_desc = report::descriptor(child);
    child_desc.leader = None;
    child_desc.term = 0;
    let cmd = Command::ReportSplit {
        parent: report::descriptor(parent),
        child: child_desc,
        now_ms: crate::pd::now_ms(),
    };
    match command(ctx, cmd).await? {
        CommandResult::ReportSplit(Ok(outcome)) => Ok(outcome),
        CommandResult::ReportSplit(Err(e)) => Err(crate::pd::PdError::Unavailable(format!(
            "the placement driver refused the split of shard {}: {e}",
            parent.id
        ))),
        other => Err(crate::pd::PdError::Malformed(format!(
            "a split report answered {other:?}"
        ))),
    }
}

/// Reports the split that made `replica`'s range end where it does, if
/// this node hosts the shard right of it (the child: splits keep children
/// on the parent's replicas). For a leader whose report the PD refused
/// because the range changed without a split report.
pub async fn report_pending(
    ctx: &Arc<NodeCtx>,
    replica: &Replica,
) -> Result<(), crate::pd::PdError> {
    let Some(end) = replica.meta().end else {
        return Ok(());
    };
    let right = ctx
        .host
        .all()
        .into_iter()
        .find(|r| r.id != PD_SHARD && r.meta().start == end);
    match right {
        Some(child) => report_split(ctx, replica, &child).await.map(|_| ()),
        None => Ok(()),
    }
}
