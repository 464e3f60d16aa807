//! A leader gets a replica created on a member node that has none.
//!
//! A split creates the child on every replica that applies it. A replica
//! that instead jumps past the split by installing a snapshot of the parent
//! never applies it, so its node hosts no child; the child's leader then
//! cannot reach that member (its messages are dropped: the shard is not
//! hosted there). Each heartbeat round, the leader of a shard looks for
//! members it has never replicated to; after [`ROUNDS`] rounds it asks the
//! node to create an empty replica (`Admin.CreateReplica`), which the node
//! refuses while one of its shards still overlaps the range (its parent has
//! not split yet). The empty replica then gets a snapshot: the leader's log
//! starts after the split, as the child's inherited data is in no entry.

use std::collections::BTreeMap;
use std::sync::Arc;

use atoll_proto as pb;
use atoll_proto::admin_client::AdminClient;

use crate::pd::PD_SHARD;
use crate::service::NodeCtx;

/// Heartbeat rounds a member may go without any replication before the
/// leader asks its node to create the replica.
pub const ROUNDS: u32 = 3;

/// How many rounds each (shard, node) has been missing.
#[derive(Default)]
pub struct MissingReplicas {
    rounds: BTreeMap<(u64, u64), u32>,
}

impl MissingReplicas {
    /// One round over the shards this node leads.
    pub async fn round(&mut self, ctx: &Arc<NodeCtx>) {
        let mut missing = BTreeMap::new();
        for replica in ctx.host.all() {
            if replica.id == PD_SHARD || !replica.is_leader() {
                continue;
            }
            let m = replica.raft.metrics().borrow().clone();
            let never: Vec<u64> = m
                .replication
                .iter()
                .flatten()
                .filter(|(node, matched)| **node != ctx.node_id() && matched.is_none())
                .map(|(node, _)| *node)
                .collect();
            for node in never {
                let n = self.rounds.get(&(replica.id, node)).copied().unwrap_or(0) + 1;
                missing.insert((replica.id, node), n);
                if n % ROUNDS != 0 {
                    continue;
                }
                let Some(addr) = replica.member_addr(node) else {
                    continue;
                };
                let desc = replica.descriptor();
                if let Err(e) = create(ctx, &addr, desc).await {
                    tracing::debug!(
                        shard = replica.id,
                        node,
                        "asking for a missing replica: {e}"
                    );
                }
            }
        }
        self.rounds = missing;
    }
}

async fn create(ctx: &NodeCtx, addr: &str, desc: pb::ShardDescriptor) -> Result<(), String> {
    let channel = ctx.peers.channel(addr).map_err(|e| e.to_string())?;
    let reply = AdminClient::new(channel)
        .create_replica(pb::CreateReplicaRequest {
            shard: Some(desc),
            cluster_id: ctx.cluster.get(),
        })
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner();
    match reply.error {
        Some(e) => Err(e.message),
        None => {
            tracing::info!(node = ctx.node_id(), %addr, "asked a member to create its missing replica");
            Ok(())
        }
    }
}
