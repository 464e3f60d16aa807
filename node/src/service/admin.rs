//! The admin service: bootstrap a cluster, change a shard's membership,
//! transfer a shard's leadership ([`crate::shard::transfer`]), compact a
//! shard's log, and report status. Calls between nodes
//! (`CreateReplica`) carry the caller's cluster id and are refused by a
//! node of another cluster; `ClusterInfo` answers a fresh node's
//! pre-bootstrap question ([`crate::cluster::preflight`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use atoll_proto as pb;
use atoll_proto::admin_client::AdminClient;
use atoll_proto::admin_server::Admin;
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::BasicNode;
use tonic::{Request, Response, Status};

use super::NodeCtx;
use crate::cluster::identity;
use crate::error::KvError;
use crate::raft::type_config::ReplicaId;
use crate::shard::membership;
use crate::shard::meta::{Epoch, ShardMeta};
use crate::shard::transfer::{self, TransferError, TransferTimeouts, Transferred};

/// The id of the first shard of every cluster.
pub const FIRST_SHARD: u64 = 1;

pub struct AdminService {
    ctx: Arc<NodeCtx>,
}

type Reply = Result<Response<pb::AdminResult>, Status>;

fn done(r: Result<(), KvError>) -> Reply {
    Ok(Response::new(pb::AdminResult {
        error: r.err().map(|e| e.to_proto()),
    }))
}

pub(crate) fn write_err(
    shard: u64,
    e: RaftError<ReplicaId, ClientWriteError<ReplicaId, BasicNode>>,
) -> KvError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => KvError::NotLeader {
            shard,
            leader_id: f.leader_id.map(ReplicaId::node),
            leader_addr: f.leader_node.map(|n| n.addr),
        },
        other => KvError::Unavailable(other.to_string()),
    }
}

fn transfer_failed_call(e: KvError) -> pb::TransferLeaderResponse {
    pb::TransferLeaderResponse {
        error: Some(e.to_proto()),
        ..Default::default()
    }
}

/// The wire form of a transfer's outcome: failures of the call itself
/// (not leader, stopped) as `error`, a transfer that did not happen as
/// `failure` with its reason.
fn transfer_reply(shard: u64, r: Result<Transferred, TransferError>) -> pb::TransferLeaderResponse {
    use pb::transfer_leader_failure::Reason;
    let e = match r {
        Ok(t) => {
            return pb::TransferLeaderResponse {
                leader_id: t.leader,
                term: t.term,
                paused_ms: t.paused.as_millis() as u64,
                ..Default::default()
            }
        }
        Err(e) => e,
    };
    let (reason, leader_id) = match &e {
        TransferError::NotLeader {
            leader_id,
            leader_addr,
        } => {
            return transfer_failed_call(KvError::NotLeader {
                shard,
                leader_id: *leader_id,
                leader_addr: leader_addr.clone(),
            })
        }
        TransferError::Stopped => {
            return transfer_failed_call(KvError::Unavailable(format!("shard {shard}: {e}")))
        }
        TransferError::TargetNotVoter { .. } => (Reason::TargetNotVoter, None),
        TransferError::TargetLagging { .. } => (Reason::TargetLagging, None),
        TransferError::TargetUnreachable { .. } => (Reason::TargetUnreachable, None),
        TransferError::TimedOut { leader, .. } => (Reason::TimedOut, *leader),
    };
    pb::TransferLeaderResponse {
        failure: Some(pb::TransferLeaderFailure {
            reason: reason as i32,
            message: e.to_string(),
            leader_id,
        }),
        ..Default::default()
    }
}

/// Creates the first shard on this node (if missing) and initialises its
/// Raft group with `members`. Safe to call on every initial member: a group
/// that is already initialised is left alone.
pub async fn bootstrap(ctx: &NodeCtx, members: &[(u64, String)]) -> Result<(), KvError> {
    initialize(ctx, ShardMeta::whole_keyspace(FIRST_SHARD), members).await?;
    let pd_members = crate::pd::pd_members(members);
    if pd_members.iter().any(|(id, _)| *id == ctx.node_id()) {
        initialize(ctx, crate::pd::pd_meta(), &pd_members).await?;
    }
    Ok(())
}

/// Creates the replica of `meta` here and initialises its Raft group with
/// `members` as voters (a no-op if it already was).
async fn initialize(
    ctx: &NodeCtx,
    meta: ShardMeta,
    members: &[(u64, String)],
) -> Result<(), KvError> {
    let shard = meta.id;
    let replica = ctx
        .host
        .create(meta, false, ReplicaId::founding(ctx.node_id()))
        .await
        .map_err(|e| KvError::Unavailable(e.to_string()))?;
    let nodes: BTreeMap<ReplicaId, BasicNode> = members
        .iter()
        .map(|(id, a)| (ReplicaId::founding(*id), BasicNode::new(a)))
        .collect();
    match replica.raft.initialize(nodes).await {
        Ok(()) => Ok(()),
        Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
        Err(e) => Err(KvError::Unavailable(format!(
            "initialising shard {shard}: {e}"
        ))),
    }
}

/// `node`'s replica as `d` lists it; its founding id if `d` lists none
/// (or comes from a node that predates replica ids).
pub(crate) fn listed_replica(d: &pb::ShardDescriptor, node: u64) -> ReplicaId {
    d.replicas
        .iter()
        .find(|r| r.node_id == node && r.replica_id != 0)
        .map_or(ReplicaId::founding(node), |r| ReplicaId(r.replica_id))
}

fn to_meta(d: &pb::ShardDescriptor) -> ShardMeta {
    let epoch = d.epoch.unwrap_or_default();
    // The wire says "no end" with empty bytes; the PD group's range is the
    // empty range ["", ""), which holds no key and overlaps no shard.
    let end = if d.id == crate::pd::PD_SHARD {
        Some(Vec::new())
    } else {
        (!d.end.is_empty()).then(|| d.end.clone())
    };
    ShardMeta {
        id: d.id,
        start: d.start.clone(),
        end,
        epoch: Epoch {
            version: epoch.version,
            conf_ver: epoch.conf_ver,
        },
    }
}

/// Asks node `id` at `addr` to create an empty replica of `desc`, sending
/// this node's cluster id. A node of another cluster refuses: that is an
/// operator mistake, reported as `InvalidArgument` (not retried).
pub(crate) async fn create_remote_replica(
    ctx: &NodeCtx,
    replica: ReplicaId,
    addr: &str,
    desc: pb::ShardDescriptor,
    awaiting_snapshot: bool,
) -> Result<(), KvError> {
    let id = replica.node();
    let mut client = remote_admin(ctx, addr).await?;
    let reply = client
        .create_replica(pb::CreateReplicaRequest {
            shard: Some(desc),
            cluster_id: ctx.cluster.get(),
            awaiting_snapshot,
            replica_id: replica.0,
        })
        .await
        .map_err(|s| match s.code() {
            tonic::Code::FailedPrecondition => KvError::InvalidArgument(format!(
                "node {id} at {addr} refused: {}; it belongs to another cluster \
                 (was it started with --initial-cluster instead of --join?)",
                s.message()
            )),
            _ => KvError::Unavailable(format!("node {id} at {addr}: {}", s.message())),
        })?;
    match reply.into_inner().error {
        Some(e) => Err(KvError::Unavailable(format!(
            "node {id} at {addr}: {}",
            e.message
        ))),
        None => Ok(()),
    }
}

/// What this node tells a fresh node that asks before bootstrapping.
fn cluster_info(ctx: &NodeCtx) -> pb::ClusterInfoResponse {
    let mut info = pb::ClusterInfoResponse {
        cluster_id: ctx.cluster.get(),
        node_id: ctx.node_id(),
        ..Default::default()
    };
    for replica in ctx.host.all() {
        let m = replica.raft.metrics().borrow().clone();
        info.initialized |= m
            .membership_config
            .membership()
            .voter_ids()
            .next()
            .is_some();
        info.last_log_index = info.last_log_index.max(m.last_log_index.unwrap_or(0));
        info.term = info.term.max(m.current_term);
    }
    match identity::started_members(&ctx.engine) {
        Ok(Some(ids)) => {
            info.started_members = ids;
            info.started_known = true;
        }
        Ok(None) => {}
        // Unreadable records say nothing; the asker falls back to the
        // stricter rule for this answer.
        Err(e) => tracing::warn!("cannot read the started records: {e}"),
    }
    info
}

pub(crate) async fn remote_admin(
    ctx: &NodeCtx,
    addr: &str,
) -> Result<AdminClient<tonic::transport::Channel>, KvError> {
    let ch = ctx
        .peers
        .channel(addr)
        .map_err(|e| KvError::InvalidArgument(e.to_string()))?;
    Ok(AdminClient::new(ch))
}

impl AdminService {
    pub fn new(ctx: Arc<NodeCtx>) -> Self {
        Self { ctx }
    }

    async fn init_cluster(&self, req: pb::InitClusterRequest) -> Result<(), KvError> {
        if req.members.is_empty() {
            return Err(KvError::InvalidArgument(
                "init needs at least one member".into(),
            ));
        }
        let me = self.ctx.node_id();
        if !req.members.iter().any(|m| m.node_id == me) {
            return Err(KvError::InvalidArgument(format!(
                "the members must include this node (id {me})"
            )));
        }
        let members: Vec<(u64, String)> = req
            .members
            .iter()
            .map(|m| (m.node_id, m.addr.clone()))
            .collect();
        let desc = pb::ShardDescriptor {
            id: FIRST_SHARD,
            epoch: Some(pb::Epoch {
                version: 1,
                conf_ver: 0,
            }),
            ..Default::default()
        };
        // Like a bootstrap from --initial-cluster: the id is derived from the
        // members, unless this node already belongs to a cluster.
        let derived = identity::derive(&self.ctx.config.initial_cluster_token, &members);
        self.ctx
            .cluster
            .adopt(derived)
            .await
            .map_err(|e| KvError::Unavailable(e.to_string()))?;
        for (id, addr) in members.iter().filter(|(id, _)| *id != me) {
            let founding = ReplicaId::founding(*id);
            create_remote_replica(&self.ctx, founding, addr, desc.clone(), false).await?;
        }
        bootstrap(&self.ctx, &members).await
    }

    async fn add_learner(&self, req: pb::AddLearnerRequest) -> Result<(), KvError> {
        let replica = self.ctx.replica(req.shard_id)?;
        if req.node_id == 0 || req.addr.is_empty() {
            return Err(KvError::InvalidArgument(
                "add-learner needs a node id > 0 and an address".into(),
            ));
        }
        // A voter that lost its data dir must be removed before it is added
        // back: re-adding it as is would let it vote with a forgotten log.
        if replica.is_voter(req.node_id) {
            return Err(KvError::InvalidArgument(format!(
                "node {} is a voter of shard {}; remove it first \
                 (change-membership without it), then add it back as a learner",
                req.node_id, req.shard_id
            )));
        }
        // A learner already listed keeps its id; a new one gets a fresh id
        // from the PD (ids are never reused).
        let learner = match replica.member_on(req.node_id) {
            Some(id) => id,
            None => crate::pd::ids::fresh_replica_id(&self.ctx, req.node_id).await?,
        };
        // The new node must host an (empty) replica before Raft talks to it.
        create_remote_replica(&self.ctx, learner, &req.addr, replica.descriptor(), true).await?;
        replica
            .raft
            .add_learner(learner, BasicNode::new(&req.addr), true)
            .await
            .map(|_| ())
            .map_err(|e| write_err(req.shard_id, e))
    }

    async fn change_membership(&self, req: pb::ChangeMembershipRequest) -> Result<(), KvError> {
        let replica = self.ctx.replica(req.shard_id)?;
        if req.voters.is_empty() {
            return Err(KvError::InvalidArgument(
                "a shard needs at least one voter".into(),
            ));
        }
        let voters = req
            .voters
            .iter()
            .map(|node| {
                replica.member_on(*node).ok_or_else(|| {
                    KvError::InvalidArgument(format!(
                        "node {node} is no member of shard {}; add it as a learner first",
                        req.shard_id
                    ))
                })
            })
            .collect::<Result<BTreeSet<ReplicaId>, KvError>>()?;
        replica
            .raft
            .change_membership(voters, false)
            .await
            .map(|_| ())
            .map_err(|e| write_err(req.shard_id, e))
    }

    async fn create_replica(&self, req: pb::CreateReplicaRequest) -> Result<(), KvError> {
        let desc = req
            .shard
            .ok_or_else(|| KvError::InvalidArgument("create-replica needs a shard".into()))?;
        let me = match req.replica_id {
            0 => listed_replica(&desc, self.ctx.node_id()),
            id => ReplicaId(id),
        };
        if me.node() != self.ctx.node_id() {
            return Err(KvError::InvalidArgument(format!(
                "replica {me} is not on this node (node {})",
                self.ctx.node_id()
            )));
        }
        // The bounds are stored and scanned as keys: longer ones than the
        // engine stores could never be scanned, deleted or snapshotted.
        for (what, bound) in [("start", &desc.start), ("end", &desc.end)] {
            if bound.len() > crate::config::MAX_KEY_BYTES_LIMIT {
                return Err(KvError::InvalidArgument(format!(
                    "shard {} {what} is {} bytes; keys are at most {} bytes",
                    desc.id,
                    bound.len(),
                    crate::config::MAX_KEY_BYTES_LIMIT
                )));
            }
        }
        self.ctx
            .host
            .create(to_meta(&desc), req.awaiting_snapshot, me)
            .await
            .map(|_| ())
            .map_err(|e| KvError::Unavailable(e.to_string()))
    }

    async fn transfer_leader(&self, req: pb::TransferLeaderRequest) -> pb::TransferLeaderResponse {
        let shard = req.shard_id;
        let replica = match self.ctx.replica(shard) {
            Ok(r) => r,
            Err(e) => return transfer_failed_call(e),
        };
        let timeouts = TransferTimeouts::new(
            Duration::from_millis(req.timeout_ms),
            self.ctx.config.raft.failover_bound(),
        );
        let peers = transfer::Peers {
            pool: &self.ctx.peers,
            cluster_id: self.ctx.cluster.get(),
        };
        transfer_reply(
            shard,
            transfer::transfer(&replica, req.target_node, peers, timeouts).await,
        )
    }

    async fn compact(&self, req: pb::CompactRequest) -> Result<(), KvError> {
        let replica = self.ctx.replica(req.shard_id)?;
        membership::compact(&replica).await
    }

    async fn change_replica(&self, req: pb::ChangeReplicaRequest) -> Result<(), KvError> {
        let change = membership::Change::from_proto(&req)?;
        membership::run(&self.ctx, req.shard_id, change).await
    }

    async fn remove_replica(&self, req: pb::RemoveReplicaRequest) -> Result<(), KvError> {
        self.ctx
            .host
            .remove(req.shard_id, req.conf_ver, ReplicaId(req.replica_id))
            .await
            .map(|_| ())
            .map_err(|e| KvError::Unavailable(e.to_string()))
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn init_cluster(&self, r: Request<pb::InitClusterRequest>) -> Reply {
        done(self.init_cluster(r.into_inner()).await)
    }

    async fn add_learner(&self, r: Request<pb::AddLearnerRequest>) -> Reply {
        done(self.add_learner(r.into_inner()).await)
    }

    async fn change_membership(&self, r: Request<pb::ChangeMembershipRequest>) -> Reply {
        done(self.change_membership(r.into_inner()).await)
    }

    async fn create_replica(&self, r: Request<pb::CreateReplicaRequest>) -> Reply {
        let req = r.into_inner();
        self.ctx
            .cluster
            .admit(req.cluster_id, "create-replica")
            .await?;
        done(self.create_replica(req).await)
    }

    async fn compact(&self, r: Request<pb::CompactRequest>) -> Reply {
        done(self.compact(r.into_inner()).await)
    }

    async fn transfer_leader(
        &self,
        r: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<pb::TransferLeaderResponse>, Status> {
        Ok(Response::new(self.transfer_leader(r.into_inner()).await))
    }

    async fn split_shard(
        &self,
        r: Request<pb::SplitShardRequest>,
    ) -> Result<Response<pb::SplitShardResponse>, Status> {
        let req = r.into_inner();
        let key = (!req.split_key.is_empty()).then_some(req.split_key);
        let reply = match crate::shard::split::split(&self.ctx, req.shard_id, key).await {
            Ok((left, right)) => pb::SplitShardResponse {
                error: None,
                left: Some(left),
                right: Some(right),
            },
            Err(e) => pb::SplitShardResponse {
                error: Some(e.to_proto()),
                left: None,
                right: None,
            },
        };
        Ok(Response::new(reply))
    }

    async fn status(
        &self,
        _r: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let (pd, data): (Vec<_>, Vec<_>) = self
            .ctx
            .host
            .all()
            .into_iter()
            .partition(|r| r.id == crate::pd::PD_SHARD);
        let shards = data.iter().map(|r| r.status()).collect();
        let pd = pd.first().map(|r| r.status());
        Ok(Response::new(pb::StatusResponse {
            node_id: self.ctx.node_id(),
            addr: self.ctx.config.advertise_addr(),
            shards,
            pd,
            now_ms: crate::pd::now_ms(),
        }))
    }

    async fn cluster_info(
        &self,
        r: Request<pb::ClusterInfoRequest>,
    ) -> Result<Response<pb::ClusterInfoResponse>, Status> {
        let info = cluster_info(&self.ctx);
        tracing::debug!(asker = r.get_ref().node_id, ?info, "cluster info asked");
        Ok(Response::new(info))
    }

    async fn change_replica(&self, r: Request<pb::ChangeReplicaRequest>) -> Reply {
        done(self.change_replica(r.into_inner()).await)
    }

    async fn remove_replica(&self, r: Request<pb::RemoveReplicaRequest>) -> Reply {
        let req = r.into_inner();
        self.ctx
            .cluster
            .admit(req.cluster_id, "remove-replica")
            .await?;
        done(self.remove_replica(req).await)
    }

    async fn record_started(
        &self,
        r: Request<pb::RecordStartedRequest>,
    ) -> Result<Response<pb::AdminResult>, Status> {
        let req = r.into_inner();
        self.ctx
            .cluster
            .record_started(req.node_id, req.cluster_id)
            .await?;
        Ok(Response::new(pb::AdminResult { error: None }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::transfer_leader_failure::Reason;

    #[test]
    fn a_transfer_reply_carries_call_errors_apart_from_transfer_failures() {
        let ok = transfer_reply(
            1,
            Ok(Transferred {
                leader: 2,
                term: 7,
                paused: Duration::from_millis(12),
            }),
        );
        assert_eq!((ok.leader_id, ok.term, ok.paused_ms), (2, 7, 12));
        assert!(ok.error.is_none() && ok.failure.is_none());

        let follower = transfer_reply(
            1,
            Err(TransferError::NotLeader {
                leader_id: Some(3),
                leader_addr: Some("a:1".into()),
            }),
        );
        assert!(matches!(
            follower.error.and_then(|e| e.kind),
            Some(pb::error::Kind::NotLeader(n)) if n.leader_id == Some(3)
        ));

        let timed_out = transfer_reply(
            1,
            Err(TransferError::TimedOut {
                target: 2,
                waited: Duration::from_secs(1),
                leader: Some(3),
            }),
        );
        let failure = timed_out.failure.expect("a failure");
        assert_eq!(failure.reason, Reason::TimedOut as i32);
        assert_eq!(failure.leader_id, Some(3));
        assert!(timed_out.error.is_none());
    }
}
