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
//!
//! A child can also be left without a leader: when a majority of its
//! voters skipped the split, no replica can win an election, so no leader
//! ever asks. A replica that has known no leader for [`ROUNDS`] rounds
//! therefore asks the other members' nodes the same way (a node that has
//! the replica already ignores it). The empty replicas can vote: they never
//! held any of the shard's entries, so their vote is an honest one.

use std::collections::BTreeMap;
use std::sync::Arc;

use atoll_proto as pb;
use atoll_proto::admin_client::AdminClient;

use crate::pd::PD_SHARD;
use crate::raft::type_config::ReplicaId;
use crate::service::NodeCtx;

/// Heartbeat rounds a member may go without any replication before the
/// leader asks its node to create the replica.
pub const ROUNDS: u32 = 3;

/// How many rounds each (shard, node) has been missing, and each local
/// replica has known no leader.
#[derive(Default)]
pub struct MissingReplicas {
    rounds: BTreeMap<(u64, u64), u32>,
    leaderless: BTreeMap<u64, u32>,
}

impl MissingReplicas {
    /// One round over the shards this node leads, and over those that
    /// have no leader.
    pub async fn round(&mut self, ctx: &Arc<NodeCtx>) {
        let mut missing = BTreeMap::new();
        let mut leaderless = BTreeMap::new();
        for replica in ctx.host.all() {
            if replica.id == PD_SHARD {
                continue;
            }
            if !replica.is_leader() {
                let m = replica.raft.metrics().borrow().clone();
                if m.current_leader.is_some() {
                    continue;
                }
                let n = self.leaderless.get(&replica.id).copied().unwrap_or(0) + 1;
                leaderless.insert(replica.id, n);
                if n % ROUNDS != 0 {
                    continue;
                }
                let members: Vec<(u64, String)> = m
                    .membership_config
                    .membership()
                    .nodes()
                    .filter(|(id, _)| id.node() != ctx.node_id())
                    .map(|(id, node)| (id.node(), node.addr.clone()))
                    .collect();
                for (node, addr) in members {
                    if let Err(e) = create(ctx, &addr, replica.descriptor()).await {
                        tracing::debug!(
                            shard = replica.id,
                            node,
                            "asking a member (no leader): {e}"
                        );
                    }
                }
                continue;
            }
            let m = replica.raft.metrics().borrow().clone();
            let never: Vec<ReplicaId> = m
                .replication
                .iter()
                .flatten()
                .filter(|(r, matched)| r.node() != ctx.node_id() && matched.is_none())
                .map(|(r, _)| *r)
                .collect();
            for member in never {
                let node = member.node();
                let n = self
                    .rounds
                    .get(&(replica.id, member.0))
                    .copied()
                    .unwrap_or(0)
                    + 1;
                missing.insert((replica.id, member.0), n);
                if n % ROUNDS != 0 {
                    continue;
                }
                let Some(addr) = replica.member_addr(member) else {
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
        self.leaderless = leaderless;
    }
}

async fn create(ctx: &NodeCtx, addr: &str, desc: pb::ShardDescriptor) -> Result<(), String> {
    let channel = ctx.peers.channel(addr).map_err(|e| e.to_string())?;
    let reply = AdminClient::new(channel)
        .create_replica(pb::CreateReplicaRequest {
            shard: Some(desc),
            cluster_id: ctx.cluster.get(),
            awaiting_snapshot: true,
            // The member this node has in `desc` (found there by the node).
            replica_id: 0,
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
