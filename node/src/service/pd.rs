//! The `Pd` gRPC service every node serves: `Forward` (internal: a PD
//! request on its way to the PD leader, see [`crate::pd::route`]) and
//! `ClusterState` (the PD's view of nodes and shards, for `atollctl`),
//! `SetNodeState` (drain, cancel a drain, remove: `atollctl node ...`) and
//! `AddNode` (register a node before it starts: `atollctl node add`).

use std::sync::Arc;

use atoll_pd::command::{Command, CommandResult, NodeTarget};
use atoll_pd::node::NodeState;
use atoll_pd::shard::Role;
use atoll_pd::state::PdState;
use atoll_proto as pb;
use tonic::{Request, Response, Status};

use super::deadline::Deadline;
use super::NodeCtx;
use crate::codec;
use crate::error::KvError;
use crate::pd::heartbeat::command_until;
use crate::pd::{now_ms, route, PdError, PdReply, PdRequest};

pub struct PdService {
    ctx: Arc<NodeCtx>,
}

impl PdService {
    pub fn new(ctx: Arc<NodeCtx>) -> Self {
        Self { ctx }
    }
}

fn error(e: PdError) -> Option<pb::Error> {
    tracing::debug!("pd request failed: {e}");
    let kv = match e {
        PdError::Malformed(m) => KvError::InvalidArgument(m),
        other => KvError::Unavailable(other.to_string()),
    };
    Some(kv.to_proto())
}

#[tonic::async_trait]
impl pb::pd_server::Pd for PdService {
    async fn forward(
        &self,
        request: Request<pb::PdForwardRequest>,
    ) -> Result<Response<pb::PdForwardResponse>, Status> {
        // The sender stops waiting at its deadline; so does this node, and
        // it proposes nothing after it.
        let deadline = Deadline::of(request.metadata(), route::forward_wait(&self.ctx)).at();
        let req = request.into_inner();
        self.ctx.cluster.admit(req.cluster_id, "pd-forward").await?;
        let reply = match codec::decode::<PdRequest>("pd request", &req.request) {
            Err(e) => Err(PdError::Malformed(e.to_string())),
            Ok(pd_req) => {
                route::call_until(&self.ctx, pd_req, req.hops.max(1), Some(deadline)).await
            }
        };
        let reply = reply.and_then(|r| {
            codec::encode("pd reply", &r).map_err(|e| PdError::Malformed(e.to_string()))
        });
        Ok(Response::new(match reply {
            Ok(bytes) => pb::PdForwardResponse {
                error: None,
                reply: bytes,
            },
            Err(e) => pb::PdForwardResponse {
                error: error(e),
                reply: Vec::new(),
            },
        }))
    }

    async fn cluster_state(
        &self,
        _request: Request<pb::ClusterStateRequest>,
    ) -> Result<Response<pb::ClusterStateResponse>, Status> {
        let reply = match route::call(&self.ctx, PdRequest::State, 0).await {
            Ok(PdReply::State { state, leader }) => to_proto(&state, leader),
            Ok(PdReply::Result(_)) => pb::ClusterStateResponse {
                error: error(PdError::Malformed(
                    "the PD answered a state read with a command result".into(),
                )),
                ..Default::default()
            },
            Err(e) => pb::ClusterStateResponse {
                error: error(e),
                ..Default::default()
            },
        };
        Ok(Response::new(reply))
    }

    async fn set_node_state(
        &self,
        request: Request<pb::SetNodeStateRequest>,
    ) -> Result<Response<pb::SetNodeStateResponse>, Status> {
        // A drain whose caller timed out must not apply later, after the
        // caller's next request (an "up" that cancels it): nothing is
        // proposed after the caller's deadline.
        let deadline = Deadline::of(request.metadata(), route::command_limit(&self.ctx)).at();
        let req = request.into_inner();
        let failed = |e: KvError| pb::SetNodeStateResponse {
            error: Some(e.to_proto()),
            ..Default::default()
        };
        let target = match pb::NodeTarget::try_from(req.target) {
            Ok(pb::NodeTarget::NodeUp) => NodeTarget::Up,
            Ok(pb::NodeTarget::NodeDraining) => NodeTarget::Draining,
            Ok(pb::NodeTarget::NodeRemoved) => NodeTarget::Removed,
            _ => {
                return Ok(Response::new(failed(KvError::InvalidArgument(format!(
                    "unknown node state {}; use up, draining or removed",
                    req.target
                )))))
            }
        };
        let cmd = Command::SetNodeState {
            node: req.node_id,
            target,
            force: req.force,
        };
        let reply = match command_until(&self.ctx, cmd, Some(deadline)).await {
            Ok(CommandResult::SetNodeState(Ok(change))) => pb::SetNodeStateResponse {
                error: None,
                from: state_name(change.from).into(),
                to: state_name(change.to).into(),
            },
            Ok(CommandResult::SetNodeState(Err(e))) => {
                failed(KvError::InvalidArgument(e.to_string()))
            }
            Ok(other) => failed(KvError::Unavailable(format!(
                "internal error: the PD answered {other:?}"
            ))),
            Err(e) => pb::SetNodeStateResponse {
                error: error(e),
                ..Default::default()
            },
        };
        Ok(Response::new(reply))
    }

    async fn add_node(
        &self,
        request: Request<pb::AddNodeRequest>,
    ) -> Result<Response<pb::AddNodeResponse>, Status> {
        let deadline = Deadline::of(request.metadata(), route::command_limit(&self.ctx)).at();
        let req = request.into_inner();
        let failed = |e: KvError| pb::AddNodeResponse {
            error: Some(e.to_proto()),
            ..Default::default()
        };
        let cmd = Command::AddNode {
            address: req.address,
            labels: req.labels.into_iter().collect(),
        };
        let reply = match command_until(&self.ctx, cmd, Some(deadline)).await {
            Ok(CommandResult::AddNode(Ok(added))) => pb::AddNodeResponse {
                error: None,
                node_id: added.node,
                fresh: added.fresh,
                state: state_name(added.state).into(),
            },
            Ok(CommandResult::AddNode(Err(e))) => failed(KvError::InvalidArgument(e.to_string())),
            Ok(other) => failed(KvError::Unavailable(format!(
                "internal error: the PD answered {other:?}"
            ))),
            Err(e) => pb::AddNodeResponse {
                error: error(e),
                ..Default::default()
            },
        };
        Ok(Response::new(reply))
    }
}

pub fn state_name(s: NodeState) -> &'static str {
    match s {
        NodeState::Up => "up",
        NodeState::Draining => "draining",
        NodeState::Down => "down",
        NodeState::Removed => "removed",
        NodeState::Joining => "joining",
    }
}

pub fn role_name(r: Role) -> &'static str {
    match r {
        Role::Voter => "voter",
        Role::Learner => "learner",
        Role::IncomingVoter => "incoming-voter",
        Role::OutgoingVoter => "outgoing-voter",
    }
}

fn to_proto(state: &PdState, leader: u64) -> pb::ClusterStateResponse {
    let nodes = state
        .nodes()
        .map(|n| pb::PdNode {
            id: n.id,
            addr: n.address.clone(),
            state: state_name(n.state).into(),
            labels: n.labels.clone().into_iter().collect(),
            last_heartbeat_ms: n.last_heartbeat_ms,
            capacity_bytes: n.capacity_bytes,
            used_bytes: n.used_bytes,
            replicas: state.replica_count(n.id) as u64,
            leaders: state.leader_count(n.id) as u64,
        })
        .collect();
    let shards = state
        .shards_by_range()
        .map(|s| pb::PdShard {
            id: s.desc.id,
            start: s.desc.start.clone(),
            end: s.desc.end.clone().unwrap_or_default(),
            epoch: Some(pb::Epoch {
                version: s.desc.epoch.version,
                conf_ver: s.desc.epoch.conf_ver,
            }),
            replicas: s
                .desc
                .replicas
                .iter()
                .map(|r| pb::PdReplica {
                    id: r.id,
                    node_id: r.node,
                    role: role_name(r.role).into(),
                })
                .collect(),
            leader_node: s.desc.leader_node(),
            term: s.desc.term,
            approx_size_bytes: s.stats.approx_size_bytes,
            approx_keys: s.stats.approx_keys,
            last_report_ms: s.last_report_ms,
        })
        .collect();
    pb::ClusterStateResponse {
        error: None,
        cluster_id: state.cluster_id(),
        bootstrapped: state.is_bootstrapped(),
        pd_leader: leader,
        now_ms: now_ms(),
        nodes,
        shards,
        replication_factor: state.config().replication_factor as u64,
        down_after_ms: state.config().down_after_ms,
    }
}
