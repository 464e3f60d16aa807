//! The client KV service. Each call: validate input → find the shard →
//! check epoch and key range → propose the write through Raft (or pass the
//! ReadIndex barrier for a read) → answer, with failures as typed errors.
//! The wait for Raft is bounded by the request's [`Deadline`]: the node's
//! `raft.write_timeout_ms`, or the caller's gRPC deadline if that is sooner.
//! `OpenSession` proposes a session registration the same way; a write of
//! an unknown session comes back as `SessionExpired`. `Txn` is a write like
//! the others (its wire form is converted in [`super::txn`]). `Multiplex`
//! runs gets, puts, deletes and CASes sent on one stream through the same
//! handlers ([`super::multiplex`]).

use std::sync::Arc;
use std::time::Duration;

use atoll_proto as pb;
use atoll_proto::kv_server::Kv;
use openraft::error::{CheckIsLeaderError, ClientWriteError, ForwardToLeader, RaftError};
use openraft::BasicNode;
use tonic::{Request, Response as GrpcResponse, Status};
use tracing::Instrument;

use super::deadline::Deadline;
use super::scan_page::{read_page, PageBudget};
use super::{txn, validate, NodeCtx};
use crate::broken::{self, Mode};
use crate::command::{self, Rejection, Response, WriteOp};
use crate::error::KvError;
use crate::raft::type_config::ReplicaId;
use crate::shard::Replica;
use crate::storage::keys;

#[derive(Clone)]
pub struct KvService {
    ctx: Arc<NodeCtx>,
    /// Turns true when the node stops: multiplexed streams end then
    /// ([`super::multiplex`]).
    stopping: tokio::sync::watch::Receiver<bool>,
}

type Reply<T> = Result<GrpcResponse<T>, Status>;

fn not_leader(shard: u64, f: &ForwardToLeader<ReplicaId, BasicNode>) -> KvError {
    KvError::NotLeader {
        shard,
        leader_id: f.leader_id.map(ReplicaId::node),
        leader_addr: f.leader_node.as_ref().map(|n| n.addr.clone()),
    }
}

/// `NotLeader` for a request this replica cannot serve. A replica that
/// knows no leader (an election is under way), or whose leader the caller
/// could not reach on its previous attempt (a dead leader that this replica
/// has not given up on yet), first holds the request until another leader is
/// elected, for at most half of what is left of its deadline and at most
/// [`RaftTuning::leader_wait`](crate::config::RaftTuning::leader_wait), so
/// that the client learns the new leader as soon as there is one instead of
/// backing off between a dead leader and replicas that still name it.
async fn forward(
    replica: &Replica,
    f: &ForwardToLeader<ReplicaId, BasicNode>,
    hold: Duration,
    deadline: &Deadline,
) -> KvError {
    let named = f.leader_node.as_ref().map(|n| n.addr.as_str());
    let gone = named.is_some_and(|addr| deadline.found_unreachable(addr));
    if f.leader_id.is_none() || gone {
        let not = f.leader_id.filter(|_| gone);
        let within = hold.min(deadline.left() / 2);
        if let Some((leader, addr)) = replica.wait_for_leader(within, not).await {
            return KvError::NotLeader {
                shard: replica.id,
                leader_id: Some(leader.node()),
                leader_addr: addr,
            };
        }
    }
    not_leader(replica.id, f)
}

impl KvService {
    /// The service of `ctx`; `stopping` turns true when the node stops.
    pub fn new(ctx: Arc<NodeCtx>, stopping: tokio::sync::watch::Receiver<bool>) -> Self {
        Self { ctx, stopping }
    }

    /// The deadline of a request arriving now.
    fn deadline<T>(&self, request: &Request<T>) -> Deadline {
        Deadline::of(request.metadata(), self.ctx.config.raft.write_timeout())
    }

    /// The replica named by the header, after the epoch check.
    fn route(&self, header: Option<&pb::RequestHeader>) -> Result<Arc<Replica>, KvError> {
        let header = header
            .ok_or_else(|| KvError::InvalidArgument("request has no header (shard id)".into()))?;
        if header.shard_id == crate::pd::PD_SHARD {
            return Err(KvError::ShardNotFound(header.shard_id));
        }
        let replica = self.ctx.replica(header.shard_id)?;
        tracing::Span::current().record("term", replica.raft.metrics().borrow().current_term);
        if let Some(epoch) = &header.epoch {
            // Only splits/merges change which keys a shard serves; a stale
            // conf_ver does not make a KV request wrong.
            if epoch.version != replica.meta().epoch.version {
                return Err(KvError::EpochMismatch {
                    current: vec![replica.descriptor()],
                });
            }
        }
        Ok(replica)
    }

    fn check_key(replica: &Replica, key: &[u8]) -> Result<(), KvError> {
        if replica.meta().contains(key) {
            Ok(())
        } else {
            Err(KvError::KeyOutOfRange {
                key: key.to_vec(),
                shard: Box::new(replica.descriptor()),
            })
        }
    }

    /// Proposes a write and waits for it to be applied.
    async fn write(
        &self,
        header: Option<&pb::RequestHeader>,
        id: Option<pb::WriteId>,
        op: WriteOp,
        deadline: &Deadline,
    ) -> Result<Response, KvError> {
        let write_id = validate::write_id(id)?;
        let replica = self.route(header)?;
        for key in op.keys() {
            Self::check_key(&replica, key)?;
        }
        #[cfg(all(madsim, feature = "sim-bugs"))]
        if crate::sim_hooks::bug(crate::sim_hooks::Bug::AckBeforeCommit)
            && replica.raft.metrics().borrow().current_leader == Some(replica.me())
        {
            let fake = match &op {
                WriteOp::Put { .. } => Response::Put,
                WriteOp::Delete { .. } => Response::Delete { existed: true },
                WriteOp::Cas { expected, .. } => Response::Cas {
                    succeeded: true,
                    previous: expected.clone(),
                },
                WriteOp::Batch(_) => Response::Batch,
                WriteOp::Txn { .. } => Response::Txn {
                    succeeded: true,
                    results: Vec::new(),
                },
            };
            let _ = replica
                .raft
                .client_write_ff(command::Request::Write { write_id, op })
                .await;
            return Ok(fake);
        }
        let result = self
            .propose(&replica, command::Request::Write { write_id, op }, deadline)
            .await;
        #[cfg(madsim)]
        if result.is_ok() && crate::sim_hooks::rpc_fate().lose_reply {
            // Applied, but the client never hears so: it retries the same
            // write id, and dedup must answer with the first result.
            return Err(KvError::Unavailable(
                "simulated loss of the reply; the write was applied".into(),
            ));
        }
        result
    }

    /// Registers a new client session on the header's shard.
    async fn do_open_session(
        &self,
        header: Option<&pb::RequestHeader>,
        deadline: &Deadline,
    ) -> Result<u64, KvError> {
        let replica = self.route(header)?;
        let req = command::Request::RegisterSession {
            max_sessions: self.ctx.config.sessions.max_per_shard,
        };
        match self.propose(&replica, req, deadline).await? {
            Response::SessionRegistered { client_id } => Ok(client_id),
            other => Err(unexpected(other)),
        }
    }

    /// Proposes `req` through the replica's Raft group and waits until it
    /// is applied, or until the deadline; rejections of the state machine
    /// become typed errors.
    async fn propose(
        &self,
        replica: &Replica,
        req: command::Request,
        deadline: &Deadline,
    ) -> Result<Response, KvError> {
        let result = deadline.run(replica.propose(req)).await.map_err(|wait| {
            KvError::Unavailable(format!(
                "write not committed within {wait} (no quorum?); it may still apply - retry with the same write id"
            ))
        })?;
        match result {
            Ok(resp) => match resp.data {
                Response::Rejected(Rejection::KeyOutOfRange { key }) => {
                    Err(KvError::KeyOutOfRange { key, shard: Box::new(replica.descriptor()) })
                }
                Response::Rejected(Rejection::StaleSequence { seq, first_incomplete }) => Err(KvError::InvalidArgument(
                    format!("write seq {seq} was already acknowledged (client is past seq {first_incomplete})"),
                )),
                Response::Rejected(Rejection::SessionExpired { client_id }) => {
                    Err(KvError::SessionExpired { shard: replica.id, client_id })
                }
                other => Ok(other),
            },
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(forward(replica, &f, self.ctx.config.raft.leader_wait(), deadline).await)
            }
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                Err(KvError::Unavailable(format!("membership change in progress: {e}")))
            }
            Err(RaftError::Fatal(f)) => Err(KvError::Unavailable(format!("shard {} is stopped: {f}", replica.id))),
        }
    }

    /// Waits until a read at this replica is linearizable (or allowed to
    /// be stale) and returns the applied index it reflects.
    async fn read_barrier(
        &self,
        replica: &Replica,
        consistency: i32,
        deadline: &Deadline,
    ) -> Result<u64, KvError> {
        let stale = consistency == pb::ReadConsistency::Stale as i32;
        let stale = stale || broken::on(Mode::StaleReads);
        if stale {
            let applied = replica.raft.metrics().borrow().last_applied;
            return Ok(applied.map(|l| l.index).unwrap_or(0));
        }
        match deadline.run(replica.ensure_linearizable()).await {
            Err(wait) => Err(KvError::Unavailable(format!(
                "could not confirm leadership within {wait}"
            ))),
            Ok(Ok(log_id)) => Ok(log_id.map(|l| l.index).unwrap_or(0)),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
                Err(forward(replica, &f, self.ctx.config.raft.leader_wait(), deadline).await)
            }
            Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e)))) => Err(
                KvError::Unavailable(format!("leader cannot reach a quorum: {e}")),
            ),
            Ok(Err(RaftError::Fatal(f))) => Err(KvError::Unavailable(format!(
                "shard {} is stopped: {f}",
                replica.id
            ))),
        }
    }

    fn engine_err(e: crate::storage::EngineError) -> KvError {
        KvError::Unavailable(format!("storage error on this node: {e}"))
    }

    async fn do_get(
        &self,
        req: pb::GetRequest,
        deadline: &Deadline,
    ) -> Result<(Option<Vec<u8>>, u64), KvError> {
        validate::key(&self.ctx.config.limits, &req.key)?;
        let replica = self.route(req.header.as_ref())?;
        Self::check_key(&replica, &req.key)?;
        let index = self
            .read_barrier(&replica, req.consistency, deadline)
            .await?;
        let value = self
            .ctx
            .host_engine()
            .get(&keys::data(&req.key))
            .map_err(Self::engine_err)?;
        Ok((value, index))
    }

    async fn do_scan(
        &self,
        req: pb::ScanRequest,
        deadline: &Deadline,
    ) -> Result<pb::ScanResponse, KvError> {
        let limits = &self.ctx.config.limits;
        validate::scan_range(limits, &req.start, &req.end)?;
        let replica = self.route(req.header.as_ref())?;
        let meta = replica.meta();
        let end = (!req.end.is_empty()).then_some(req.end.as_slice());
        let (start, end) = meta
            .clip(&req.start, end)
            .ok_or_else(|| KvError::KeyOutOfRange {
                key: req.start.clone(),
                shard: Box::new(replica.descriptor()),
            })?;
        let index = self
            .read_barrier(&replica, req.consistency, deadline)
            .await?;
        let limit = match req.limit {
            0 => limits.max_scan_limit,
            n => n.min(limits.max_scan_limit),
        } as usize;
        let (lo, hi) = keys::data_range(start, end);
        let budget = PageBudget {
            rows: limit,
            bytes: limits.max_scan_bytes,
        };
        // The whole page comes from one consistent view: no applied batch
        // lands half inside it.
        #[cfg(all(madsim, feature = "sim-bugs"))]
        let view = if crate::sim_hooks::bug(crate::sim_hooks::Bug::ScanWithoutView) {
            None
        } else {
            Some(replica.consistent_view().await)
        };
        #[cfg(not(all(madsim, feature = "sim-bugs")))]
        let view = replica.consistent_view().await;
        let (rows, truncated) = read_page(self.ctx.host_engine(), &lo, &hi, budget)
            .await
            .map_err(Self::engine_err)?;
        drop(view);
        let kvs = rows
            .into_iter()
            .map(|(k, v)| pb::KeyValue {
                key: keys::user_key(&k).to_vec(),
                value: v,
            })
            .collect();
        Ok(pb::ScanResponse {
            error: None,
            kvs,
            shard_end: meta.end.unwrap_or_default(),
            truncated,
            applied_index: index,
        })
    }
}

fn err(e: KvError) -> Option<pb::Error> {
    tracing::debug!("request failed: {e}");
    Some(e.to_proto())
}

fn span(ctx: &NodeCtx, op: &'static str, header: Option<&pb::RequestHeader>) -> tracing::Span {
    let shard = header.map(|h| h.shard_id).unwrap_or(0);
    tracing::debug_span!(
        "kv",
        node = ctx.node_id(),
        shard,
        op,
        term = tracing::field::Empty
    )
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn get(&self, request: Request<pb::GetRequest>) -> Reply<pb::GetResponse> {
        let deadline = self.deadline(&request);
        let req = request.into_inner();
        let s = span(&self.ctx, "get", req.header.as_ref());
        Ok(GrpcResponse::new(
            match self.do_get(req, &deadline).instrument(s).await {
                Ok((value, applied_index)) => pb::GetResponse {
                    error: None,
                    value,
                    applied_index,
                },
                Err(e) => pb::GetResponse {
                    error: err(e),
                    ..Default::default()
                },
            },
        ))
    }

    async fn put(&self, request: Request<pb::PutRequest>) -> Reply<pb::PutResponse> {
        let deadline = self.deadline(&request);
        let req = request.into_inner();
        let s = span(&self.ctx, "put", req.header.as_ref());
        let limits = &self.ctx.config.limits;
        let result = async {
            validate::key(limits, &req.key)?;
            validate::value(limits, &req.value)?;
            let op = WriteOp::Put {
                key: req.key,
                value: req.value,
            };
            self.write(req.header.as_ref(), req.write_id, op, &deadline)
                .await
        }
        .instrument(s)
        .await;
        Ok(GrpcResponse::new(pb::PutResponse {
            error: result.err().and_then(err),
        }))
    }

    async fn delete(&self, request: Request<pb::DeleteRequest>) -> Reply<pb::DeleteResponse> {
        let deadline = self.deadline(&request);
        let req = request.into_inner();
        let s = span(&self.ctx, "delete", req.header.as_ref());
        let result = async {
            validate::key(&self.ctx.config.limits, &req.key)?;
            self.write(
                req.header.as_ref(),
                req.write_id,
                WriteOp::Delete { key: req.key },
                &deadline,
            )
            .await
        }
        .instrument(s)
        .await;
        Ok(GrpcResponse::new(match result {
            Ok(Response::Delete { existed }) => pb::DeleteResponse {
                error: None,
                existed,
            },
            Ok(other) => pb::DeleteResponse {
                error: err(unexpected(other)),
                existed: false,
            },
            Err(e) => pb::DeleteResponse {
                error: err(e),
                existed: false,
            },
        }))
    }

    async fn cas(&self, request: Request<pb::CasRequest>) -> Reply<pb::CasResponse> {
        let deadline = self.deadline(&request);
        let req = request.into_inner();
        let s = span(&self.ctx, "cas", req.header.as_ref());
        let limits = &self.ctx.config.limits;
        let result = async {
            validate::key(limits, &req.key)?;
            for v in [&req.expected, &req.new_value].into_iter().flatten() {
                validate::value(limits, v)?;
            }
            let op = WriteOp::Cas {
                key: req.key,
                expected: req.expected,
                new: req.new_value,
            };
            self.write(req.header.as_ref(), req.write_id, op, &deadline)
                .await
        }
        .instrument(s)
        .await;
        Ok(GrpcResponse::new(match result {
            Ok(Response::Cas {
                succeeded,
                previous,
            }) => pb::CasResponse {
                error: None,
                succeeded,
                previous,
            },
            Ok(other) => pb::CasResponse {
                error: err(unexpected(other)),
                ..Default::default()
            },
            Err(e) => pb::CasResponse {
                error: err(e),
                ..Default::default()
            },
        }))
    }

    async fn scan(&self, request: Request<pb::ScanRequest>) -> Reply<pb::ScanResponse> {
        let deadline = self.deadline(&request);
        let req = request.into_inner();
        let s = span(&self.ctx, "scan", req.header.as_ref());
        Ok(GrpcResponse::new(
            match self.do_scan(req, &deadline).instrument(s).await {
                Ok(r) => r,
                Err(e) => pb::ScanResponse {
                    error: err(e),
                    ..Default::default()
                },
            },
        ))
    }

    async fn batch(&self, request: Request<pb::BatchRequest>) -> Reply<pb::BatchResponse> {
        let deadline = self.deadline(&request);
        let req = request.into_inner();
        let s = span(&self.ctx, "batch", req.header.as_ref());
        let result = async {
            validate::mutations(&self.ctx.config.limits, &req.mutations)?;
            let op = WriteOp::Batch(
                req.mutations
                    .into_iter()
                    .map(|m| (m.key, m.value))
                    .collect(),
            );
            self.write(req.header.as_ref(), req.write_id, op, &deadline)
                .await
        }
        .instrument(s)
        .await;
        Ok(GrpcResponse::new(pb::BatchResponse {
            error: result.err().and_then(err),
        }))
    }

    /// Compares, then the branch they choose, as one write through the
    /// log (also a txn of gets only: its reads are then linearizable).
    async fn txn(&self, request: Request<pb::TxnRequest>) -> Reply<pb::TxnResponse> {
        let deadline = self.deadline(&request);
        let req = request.into_inner();
        let s = span(&self.ctx, "txn", req.header.as_ref());
        let result = async {
            let (compares, success, failure) =
                txn::from_proto(req.compares, req.success, req.failure)?;
            validate::txn(&self.ctx.config.limits, &compares, &success, &failure)?;
            let op = WriteOp::Txn {
                compares,
                success,
                failure,
            };
            self.write(req.header.as_ref(), req.write_id, op, &deadline)
                .await
        }
        .instrument(s)
        .await;
        Ok(GrpcResponse::new(match result {
            Ok(Response::Txn { succeeded, results }) => txn::to_proto(succeeded, results),
            Ok(other) => pb::TxnResponse {
                error: err(unexpected(other)),
                ..Default::default()
            },
            Err(e) => pb::TxnResponse {
                error: err(e),
                ..Default::default()
            },
        }))
    }

    async fn open_session(
        &self,
        request: Request<pb::OpenSessionRequest>,
    ) -> Reply<pb::OpenSessionResponse> {
        let deadline = self.deadline(&request);
        let req = request.into_inner();
        let s = span(&self.ctx, "open_session", req.header.as_ref());
        Ok(GrpcResponse::new(
            match self
                .do_open_session(req.header.as_ref(), &deadline)
                .instrument(s)
                .await
            {
                Ok(client_id) => pb::OpenSessionResponse {
                    error: None,
                    client_id,
                },
                Err(e) => pb::OpenSessionResponse {
                    error: err(e),
                    client_id: 0,
                },
            },
        ))
    }

    type MultiplexStream = super::multiplex::Replies;

    async fn multiplex(
        &self,
        request: Request<tonic::Streaming<pb::StreamedRequests>>,
    ) -> Reply<Self::MultiplexStream> {
        Ok(GrpcResponse::new(super::multiplex::serve(
            self.clone(),
            request.into_inner(),
            self.stopping.clone(),
        )))
    }

    async fn shards(&self, _request: Request<pb::ShardsRequest>) -> Reply<pb::ShardsResponse> {
        let shards = self
            .ctx
            .host
            .all()
            .iter()
            .filter(|r| r.id != crate::pd::PD_SHARD)
            .map(|r| r.descriptor())
            .collect();
        Ok(GrpcResponse::new(pb::ShardsResponse { shards }))
    }
}

fn unexpected(r: Response) -> KvError {
    KvError::Unavailable(format!(
        "internal error: unexpected state machine response {r:?}"
    ))
}
