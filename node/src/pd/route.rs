//! Getting a [`PdRequest`] to the PD leader from any node.
//!
//! On a PD member that leads, the request runs here: a command is proposed
//! through the PD group's Raft (batched with concurrent ones like any
//! write), a state read waits for a ReadIndex round first. Anywhere else it
//! is forwarded: a PD member sends it to the leader its Raft knows; a node
//! without a PD replica sends it to the nodes it knows, PD members first,
//! until one answers. `hops` stops loops: a request forwarded twice is
//! answered where it lands or refused.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use atoll_proto as pb;
use atoll_proto::pd_client::PdClient;
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};

use atoll_pd::command::{Command, CommandResult, NodeTarget, SetNodeStateError};

use super::{PdError, PdReply, PdRequest, PD_SHARD};
use crate::codec;
use crate::command::{Request, Response};
use crate::raft::peer_pool::PeerPool;
use crate::raft::type_config::ReplicaId;
use crate::service::NodeCtx;
use crate::shard::Replica;
use crate::state_machine::read_pd;

/// The most forwards a request takes (any node → PD member → PD leader).
pub const MAX_HOPS: u32 = 2;

/// Runs `req` on the PD leader and returns its reply. `hops`: how many
/// times the request was forwarded to get here (0 for a local caller).
pub async fn call(ctx: &Arc<NodeCtx>, req: PdRequest, hops: u32) -> Result<PdReply, PdError> {
    call_until(ctx, req, hops, None).await
}

/// [`call`], given up at `deadline`: nothing is proposed or forwarded after
/// it, and every forward carries what is left as its gRPC deadline, so the
/// next node stops then too. A caller that timed out (an operator's drain)
/// thus knows the command cannot be proposed later, behind its next one.
/// A command proposed before the deadline may still apply after it.
pub async fn call_until(
    ctx: &Arc<NodeCtx>,
    req: PdRequest,
    hops: u32,
    deadline: Option<Instant>,
) -> Result<PdReply, PdError> {
    let run = route(ctx, req, hops, deadline);
    match deadline {
        None => run.await,
        Some(at) => tokio::time::timeout(at.saturating_duration_since(Instant::now()), run)
            .await
            .unwrap_or_else(|_| Err(PdError::Unavailable(DEADLINE_PASSED.into()))),
    }
}

/// How long a node waits for a forwarded PD request, and the forward's
/// own limit when its sender gave no deadline.
pub fn forward_wait(ctx: &NodeCtx) -> Duration {
    ctx.config.raft.write_timeout() + Duration::from_secs(1)
}

/// The most an operator's PD command (`SetNodeState`, `AddNode`) may take
/// when its caller gave no deadline: the local attempt and one forward.
pub fn command_limit(ctx: &NodeCtx) -> Duration {
    ctx.config.raft.write_timeout() + forward_wait(ctx)
}

const DEADLINE_PASSED: &str =
    "the request's deadline passed before the placement driver's leader took it; not applied";

async fn route(
    ctx: &Arc<NodeCtx>,
    req: PdRequest,
    hops: u32,
    deadline: Option<Instant>,
) -> Result<PdReply, PdError> {
    let timeout = ctx.config.raft.write_timeout();
    let local = match ctx.host.get(PD_SHARD) {
        Some(replica) => match tokio::time::timeout(timeout, on_member(&replica, &req)).await {
            Ok(Ok(reply)) => return Ok(reply),
            Ok(Err(Redirect::To(Some(addr)))) if hops < MAX_HOPS => {
                return forward(ctx, &addr, &req, hops + 1, deadline).await
            }
            Ok(Err(Redirect::NotBootstrapped)) => {
                return Err(PdError::Unavailable(
                    "the placement driver is not bootstrapped yet (the cluster is starting); \
                     retry in a moment"
                        .into(),
                ))
            }
            Ok(Err(Redirect::To(_))) => PdError::Unavailable(
                "the placement driver has no leader yet (election in progress?)".into(),
            ),
            Err(_) => PdError::Unavailable(format!(
                "the PD group did not answer within {timeout:?} (no quorum?)"
            )),
        },
        None if hops > 0 => return Err(PdError::NotPdMember(ctx.node_id())),
        None => PdError::Unavailable("no other node is known".into()),
    };
    // A local PD replica that knows no leader may be one the PD group no
    // longer counts (it moved while this node was down): ask the others.
    match hops {
        0 => {
            let mut last = local;
            for addr in ctx.pd_hint.first(candidates(ctx)) {
                match forward(ctx, &addr, &req, 1, deadline).await {
                    Ok(reply) => {
                        ctx.pd_hint.answered(&addr);
                        return Ok(reply);
                    }
                    Err(e) => {
                        tracing::debug!(node = ctx.node_id(), %addr, "pd request: {e}");
                        last = e;
                    }
                }
            }
            Err(last)
        }
        _ => Err(local),
    }
}

/// The address that last answered a forwarded PD request. It is tried
/// first: otherwise every request of a node without a PD replica would
/// start with the lowest initial member, and wait out its timeout each
/// time that member hangs (paused, or its packets dropped), long enough
/// for the PD to think this node Down.
#[derive(Debug, Default)]
pub struct PdHint(std::sync::Mutex<Option<String>>);

impl PdHint {
    /// `candidates`, the hinted address moved to the front if among them.
    fn first(&self, mut candidates: Vec<String>) -> Vec<String> {
        let hint = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(i) = hint.and_then(|h| candidates.iter().position(|c| *c == h)) {
            let addr = candidates.remove(i);
            candidates.insert(0, addr);
        }
        candidates
    }

    fn answered(&self, addr: &str) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(addr.to_string());
    }
}

/// Why a PD member did not run a request.
enum Redirect {
    /// It does not lead the PD group; the leader's address if known.
    To(Option<String>),
    /// It leads, but the PD is not bootstrapped: node ids are not handed
    /// out before the initial members are registered (their ids would be
    /// given out again).
    NotBootstrapped,
}

async fn on_member(replica: &Replica, req: &PdRequest) -> Result<PdReply, Redirect> {
    let leader_addr = |leader: Option<ReplicaId>| leader.and_then(|id| replica.member_addr(id));
    match req {
        // Judged on this replica's applied state, whatever its role: a JoinNode
        // it proposes then lands after the bootstrap in the log, which
        // reserved the initial members' ids. (Asking "do I lead?" first let
        // a just-elected leader whose metrics did not say so yet propose a
        // join before the bootstrap, and the joining node got id 1 again:
        // found by a simulated node addition under crashes.)
        PdRequest::Command(cmd)
            if matches!(**cmd, Command::JoinNode { .. } | Command::AddNode { .. })
                && !replica
                    .pd()
                    .is_some_and(|pd| read_pd(pd, |s| s.is_bootstrapped())) =>
        {
            Err(Redirect::NotBootstrapped)
        }
        PdRequest::Command(cmd) if hosts_pd_voter(replica, cmd) => {
            let Command::SetNodeState { node, .. } = **cmd else {
                return Err(Redirect::To(None));
            };
            Ok(PdReply::Result(CommandResult::SetNodeState(Err(
                SetNodeStateError::HostsPlacementDriver { node },
            ))))
        }
        PdRequest::Command(cmd) => match replica.propose(Request::Pd(stamped(cmd))).await {
            Ok(resp) => match resp.data {
                Response::Pd(result) => Ok(PdReply::Result(result)),
                other => {
                    // The PD group's state machine answers every Pd request
                    // with Response::Pd; anything else is a bug, not a reason
                    // to crash the node.
                    tracing::error!(
                        ?other,
                        "the PD group answered a command with a non-PD response"
                    );
                    Err(Redirect::To(None))
                }
            },
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(Redirect::To(leader_addr(f.leader_id)))
            }
            Err(_) => Err(Redirect::To(None)),
        },
        PdRequest::State => match replica.ensure_linearizable().await {
            Ok(_) => {
                let pd = replica.pd().ok_or(Redirect::To(None))?;
                Ok(PdReply::State {
                    state: Box::new(read_pd(pd, Clone::clone)),
                    leader: replica.raft.metrics().borrow().id.node(),
                })
            }
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(Redirect::To(leader_addr(f.leader_id)))
            }
            Err(_) => Err(Redirect::To(None)),
        },
    }
}

/// `cmd` with its time (if it carries one) read from this node's clock: the
/// PD leader's, as only the leader's proposal commits. A heartbeat stamped by
/// the node that sent it made a node whose clock runs behind by more than
/// `down_after_ms` look silent, and one ahead look alive after it died;
/// now one clock, the PD leader's, measures every interval the PD judges
/// (TiKV's PD, too, times store heartbeats on arrival by its own clock).
fn stamped(cmd: &Command) -> Box<Command> {
    let mut cmd = Box::new(cmd.clone());
    if let Some(t) = cmd.time_mut() {
        *t = super::now_ms();
    }
    cmd
}

/// Whether `cmd` removes (without `--force`) a node that holds a voter of
/// the PD group, as this replica, the PD leader, sees the group. The PD
/// group's membership is not in the PD state, so only its leader can tell.
fn hosts_pd_voter(replica: &Replica, cmd: &Command) -> bool {
    let Command::SetNodeState {
        node,
        target: NodeTarget::Removed,
        force: false,
    } = *cmd
    else {
        return false;
    };
    let m = replica.raft.metrics().borrow().clone();
    m.state == openraft::ServerState::Leader
        && crate::raft::replica_id::voter_on(m.membership_config.membership(), node).is_some()
}

/// Where a node without a PD replica sends its requests: the initial
/// members (PD members, the lowest ids, first), the `join` addresses, then
/// every member of the shards it hosts; never itself.
fn candidates(ctx: &NodeCtx) -> Vec<String> {
    let me = ctx.config.advertise_addr();
    let mut out: Vec<String> = Vec::new();
    let mut members = ctx.config.initial_members().unwrap_or_default();
    members.sort();
    let from_shards = ctx.host.all().into_iter().flat_map(|r| {
        r.descriptor()
            .replicas
            .into_iter()
            .map(|m| m.addr)
            .collect::<Vec<_>>()
    });
    let joined = ctx.config.join.iter().cloned();
    for addr in members
        .into_iter()
        .map(|(_, a)| a)
        .chain(joined)
        .chain(from_shards)
    {
        if addr != me && !out.contains(&addr) {
            out.push(addr);
        }
    }
    out
}

async fn forward(
    ctx: &NodeCtx,
    addr: &str,
    req: &PdRequest,
    hops: u32,
    deadline: Option<Instant>,
) -> Result<PdReply, PdError> {
    let mut wait = forward_wait(ctx);
    if let Some(at) = deadline {
        wait = wait.min(at.saturating_duration_since(Instant::now()));
        if wait.is_zero() {
            return Err(PdError::Unavailable(DEADLINE_PASSED.into()));
        }
    }
    send(&ctx.peers, ctx.cluster.get(), wait, addr, req, hops).await
}

/// Sends `req` to the node at `addr` (`Pd.Forward`), carrying `cluster_id`
/// (0: not known yet), and waits up to `wait` for the reply, which is also
/// the request's gRPC deadline: the other node gives up then too.
pub async fn send(
    peers: &PeerPool,
    cluster_id: u64,
    wait: Duration,
    addr: &str,
    req: &PdRequest,
    hops: u32,
) -> Result<PdReply, PdError> {
    let bytes = codec::encode("pd request", req).map_err(|e| PdError::Malformed(e.to_string()))?;
    let channel = peers
        .channel(addr)
        .map_err(|e| PdError::Unavailable(e.to_string()))?;
    let mut client = PdClient::new(channel);
    let mut request = tonic::Request::new(pb::PdForwardRequest {
        request: bytes,
        hops,
        cluster_id,
    });
    request.set_timeout(wait);
    let call = client.forward(request);
    let reply = match tokio::time::timeout(wait, call).await {
        Err(_) => {
            return Err(PdError::Unavailable(format!(
                "{addr} did not answer in {wait:?}"
            )))
        }
        Ok(Err(status)) => {
            return Err(PdError::Unavailable(format!(
                "{addr}: {}",
                status.message()
            )))
        }
        Ok(Ok(r)) => r.into_inner(),
    };
    if let Some(e) = reply.error {
        return Err(PdError::Unavailable(format!("{addr}: {}", e.message)));
    }
    codec::decode("pd reply", &reply.reply).map_err(|e| PdError::Malformed(e.to_string()))
}
