//! Replicas left behind on this node (issue 9, item 5): a node that was
//! down or cut off when its replica was removed never got the word to
//! remove it (and a split child opened by a parent replica that applied
//! the split after its own removal is no member either). Every [`EVERY`]
//! heartbeat rounds the node compares what it hosts with the PD's view;
//! for a replica the PD does not list here, whose shard's membership is
//! newer at the PD (higher `conf_ver`) or does not list this node even
//! locally, it asks the shard's leader (`Admin.ChangeReplica`, `CONFIRM_REMOVED`). The
//! leader answers only if the node really is no member and the membership
//! without it is committed, by telling the node to remove the replica (as
//! after any removal, `shard::removal`); a node that is a member after all
//! is left alone.

use std::sync::Arc;

use atoll_pd::state::PdState;
use atoll_proto as pb;
use atoll_proto::admin_client::AdminClient;

use super::{route, PdReply, PdRequest, PD_SHARD};
use crate::service::NodeCtx;

/// Heartbeat rounds between two comparisons.
pub const EVERY: u64 = 10;

/// The PD's state, read on its leader; `None` (logged) if it cannot be
/// read now.
pub async fn read_state(ctx: &Arc<NodeCtx>) -> Option<(Box<PdState>, u64)> {
    match route::call(ctx, PdRequest::State, 0).await {
        Ok(PdReply::State { state, leader }) => Some((state, leader)),
        Ok(PdReply::Result(_)) => None,
        Err(e) => {
            tracing::debug!(node = ctx.node_id(), "reading the PD state: {e}");
            None
        }
    }
}

/// One comparison with the PD's `state`; errors are logged and retried
/// next time.
pub async fn compare(ctx: &Arc<NodeCtx>, state: &PdState, pd_leader: u64) {
    let me = ctx.node_id();
    for replica in ctx.host.all() {
        if replica.is_leader() {
            continue;
        }
        if replica.id == PD_SHARD {
            // The PD's own group is not in its state (`pd::pd_group` moves
            // it): its leader says whether this replica was removed.
            if let Some(n) = state.node(pd_leader).filter(|_| pd_leader != me) {
                confirm_removed(ctx, &replica, &n.address).await;
            }
            continue;
        }
        let Some(info) = state.shard(replica.id) else {
            continue;
        };
        let local = replica.meta().epoch.conf_ver;
        let listed_here = replica.member_addr(replica.me()).is_some();
        let newer_elsewhere = info.desc.epoch.conf_ver > local;
        if info.desc.replica_on(me).is_some() || (listed_here && !newer_elsewhere) {
            continue;
        }
        let Some(addr) = info
            .desc
            .leader_node()
            .and_then(|l| state.node(l))
            .map(|n| n.address.clone())
        else {
            continue;
        };
        tracing::info!(
            node = me,
            shard = replica.id,
            local_conf_ver = local,
            pd_conf_ver = info.desc.epoch.conf_ver,
            "hosting a replica the placement driver no longer lists; asking the shard's leader"
        );
        confirm_removed(ctx, &replica, &addr).await;
    }
}

/// Asks the shard's leader at `addr` whether this node's replica was
/// removed (`CONFIRM_REMOVED`); the leader tells this node to remove it
/// only if the membership without it is committed.
async fn confirm_removed(ctx: &Arc<NodeCtx>, replica: &crate::shard::Replica, addr: &str) {
    let ask = pb::ChangeReplicaRequest {
        shard_id: replica.id,
        change: pb::ReplicaChange::ConfirmRemoved as i32,
        node_id: ctx.node_id(),
        addr: ctx.config.advertise_addr(),
        replica_id: replica.me().0,
        expected_conf_ver: 0,
    };
    let reply = match ctx.peers.channel(addr) {
        Ok(ch) => AdminClient::new(ch).change_replica(ask).await,
        Err(e) => {
            tracing::debug!(shard = replica.id, "no channel to the leader: {e}");
            return;
        }
    };
    match reply {
        Ok(r) => {
            if let Some(e) = r.into_inner().error {
                tracing::debug!(
                    shard = replica.id,
                    "the leader did not confirm: {}",
                    e.message
                );
            }
        }
        Err(s) => tracing::debug!(shard = replica.id, "asking the leader: {}", s.message()),
    }
}
