//! One `Kv.Multiplex` stream per node: gets, puts, deletes and CASes of
//! every caller of a client, many in flight, matched to their replies by id.
//!
//! [`KvConn`] is what one attempt sends through ([`crate::dispatch`]): the
//! four point operations go on the node's stream, anything else (scans,
//! batches, txns, sessions) and any request over [`STREAM_MAX_BYTES`] as its
//! own unary call, so a megabyte value to write never holds up the small
//! operations queued behind it. (A get's reply may carry a megabyte value on
//! the stream; the windows are large, `crate::pool`, and the node cuts its
//! reply messages at a few MiB.) A node that has no `Multiplex` (an older
//! version) answers `Unimplemented`; every operation to it is then a unary
//! call, and the stream is tried again after [`UNSUPPORTED_FOR`].
//!
//! A task per node ([`Mux`]) owns the stream. It opens the stream when the
//! first operation comes, writes all the operations waiting at that moment
//! in one message, and hands each reply to its caller. When the stream
//! fails (the node died, restarted or stopped, the connection broke, a
//! message was refused), every operation still waiting on it fails as
//! `Unavailable`: maybe applied (`retry::may_have_applied`), retried within
//! its deadline under the same write id. The next operation opens a new
//! stream. The task never waits for the stream to take a message, so it
//! always reads replies; an operation whose attempt's budget is spent
//! before it is written is not sent at all.
//!
//! What is left of an operation's attempt when it is written, and the
//! replica its previous attempt could not reach, travel in the message
//! (what a unary call says in its metadata), from the [`AttemptMeta`] that
//! [`crate::deadline::Budget::request`] puts on the request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atoll_proto as pb;
use atoll_proto::kv_client::KvClient;
use atoll_proto::streamed_reply::Reply as R;
use atoll_proto::streamed_request::Op;
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// Requests larger than this are sent as unary calls.
pub(crate) const STREAM_MAX_BYTES: usize = 64 * 1024;

/// Operations written in one message at most.
const OPS_PER_MESSAGE: usize = 256;

/// How long a node that answered `Unimplemented` gets unary calls only.
pub(crate) const UNSUPPORTED_FOR: Duration = Duration::from_secs(60);

/// Reply slots of callers that gave up are dropped every this many
/// operations, once there are more than this many slots.
const PRUNE_EVERY: usize = 1024;

/// What an attempt tells the node besides its message (see the module doc).
#[derive(Debug, Clone, Default)]
pub(crate) struct AttemptMeta {
    /// When the attempt's budget ends.
    pub(crate) deadline: Option<Instant>,
    pub(crate) unreachable: Option<Arc<str>>,
}

/// A unary client for `Kv.*` on `channel` that takes replies of any size (a
/// scan page may hold up to 1000 values of up to 1 MiB each, beyond
/// tonic's 4 MiB default).
pub(crate) fn unary(channel: Channel) -> KvClient<Channel> {
    KvClient::new(channel).max_decoding_message_size(usize::MAX)
}

/// The connection to one node that an attempt sends through.
#[derive(Clone)]
pub(crate) struct KvConn {
    unary: KvClient<Channel>,
    mux: Mux,
}

impl KvConn {
    pub(crate) fn new(channel: Channel, mux: Mux) -> Self {
        KvConn {
            unary: unary(channel),
            mux,
        }
    }
}

macro_rules! streamed {
    ($($method:ident: $req:ty => $resp:ty, $op:ident;)*) => {
        impl KvConn {$(
            pub(crate) async fn $method(
                &mut self,
                request: Request<$req>,
            ) -> Result<Response<$resp>, Status> {
                if !self.mux.usable() || request.get_ref().encoded_len() > STREAM_MAX_BYTES {
                    return self.unary.$method(request).await;
                }
                let meta = request.extensions().get::<AttemptMeta>().cloned().unwrap_or_default();
                let message = request.get_ref().clone();
                match self.mux.call(Op::$op(message), &meta).await {
                    Ok(R::$op(reply)) => Ok(Response::new(reply)),
                    Ok(R::Status(s)) => Err(Status::new(s.code.into(), s.message)),
                    Ok(other) => Err(Status::internal(format!(
                        "a streamed {} was answered with {other:?}",
                        stringify!($method)
                    ))),
                    // Nothing ran: the node has no stream (an older version).
                    Err(s) if s.code() == tonic::Code::Unimplemented => {
                        self.unary.$method(request).await
                    }
                    Err(s) => Err(s),
                }
            }
        )*}
    };
}

streamed! {
    get: pb::GetRequest => pb::GetResponse, Get;
    put: pb::PutRequest => pb::PutResponse, Put;
    delete: pb::DeleteRequest => pb::DeleteResponse, Delete;
    cas: pb::CasRequest => pb::CasResponse, Cas;
}

macro_rules! unary_only {
    ($($method:ident: $req:ty => $resp:ty;)*) => {
        impl KvConn {$(
            pub(crate) async fn $method(
                &mut self,
                request: Request<$req>,
            ) -> Result<Response<$resp>, Status> {
                self.unary.$method(request).await
            }
        )*}
    };
}

unary_only! {
    scan: pb::ScanRequest => pb::ScanResponse;
    batch: pb::BatchRequest => pb::BatchResponse;
    txn: pb::TxnRequest => pb::TxnResponse;
    open_session: pb::OpenSessionRequest => pb::OpenSessionResponse;
    shards: pb::ShardsRequest => pb::ShardsResponse;
}

/// One operation handed to the stream task.
struct Call {
    op: Op,
    meta: AttemptMeta,
    reply: oneshot::Sender<Result<R, Status>>,
}

/// The handle of one node's stream task; the task ends when the last
/// handle is dropped.
#[derive(Clone)]
pub(crate) struct Mux {
    calls: mpsc::UnboundedSender<Call>,
    /// When the node last answered `Unimplemented` to `Multiplex`.
    unsupported: Arc<Mutex<Option<Instant>>>,
}

impl Mux {
    /// Starts the task for the node behind `channel`. Must run inside the
    /// runtime.
    pub(crate) fn spawn(channel: Channel) -> Mux {
        let (calls, rx) = mpsc::unbounded_channel();
        let unsupported = Arc::new(Mutex::new(None));
        tokio::spawn(run(channel, rx, unsupported.clone()));
        Mux { calls, unsupported }
    }

    fn usable(&self) -> bool {
        let since = *self.unsupported.lock().unwrap_or_else(|p| p.into_inner());
        since.is_none_or(|at| at.elapsed() >= UNSUPPORTED_FOR)
    }

    async fn call(&self, op: Op, meta: &AttemptMeta) -> Result<R, Status> {
        let (reply, answer) = oneshot::channel();
        let call = Call {
            op,
            meta: meta.clone(),
            reply,
        };
        self.calls
            .send(call)
            .map_err(|_| Status::unavailable("the client's stream task has stopped"))?;
        answer
            .await
            .map_err(|_| Status::unavailable("the KV stream to the node ended before the reply"))?
    }
}

/// Replies owed, by operation id.
type Pending = HashMap<u64, oneshot::Sender<Result<R, Status>>>;

async fn run(
    channel: Channel,
    mut calls: mpsc::UnboundedReceiver<Call>,
    unsupported: Arc<Mutex<Option<Instant>>>,
) {
    let mut ids = Ids::default();
    while let Some(first) = calls.recv().await {
        let mut pending = Pending::new();
        let Some(batch) = gather(first, &mut calls, &mut pending, &mut ids) else {
            continue;
        };
        // Unbounded: the task must never wait for the stream to take a
        // message, or it would stop reading replies meanwhile. What it holds
        // is bounded by the callers: each waits for its own reply, within
        // its attempt's budget, and a spent attempt is not written.
        let (out, out_rx) = futures::channel::mpsc::unbounded();
        // Cannot fail: the receiver is alive.
        let _ = out.unbounded_send(batch);
        let mut kv = unary(channel.clone());
        let mut inbound = match kv.multiplex(out_rx).await {
            Ok(reply) => reply.into_inner(),
            Err(status) if status.code() == tonic::Code::Unimplemented => {
                *unsupported.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                // Nothing ran: each caller goes on with a unary call.
                fail_all(pending, Status::unimplemented(status.message()));
                continue;
            }
            Err(status) => {
                fail_all(pending, stream_failed(&status));
                continue;
            }
        };
        let status = loop {
            tokio::select! {
                call = calls.recv() => {
                    let Some(call) = call else { return };
                    let Some(batch) = gather(call, &mut calls, &mut pending, &mut ids) else {
                        continue;
                    };
                    if out.unbounded_send(batch).is_err() {
                        break Status::unavailable("the KV stream to the node closed");
                    }
                }
                message = inbound.message() => match message {
                    Ok(Some(replies)) => {
                        for r in replies.replies {
                            if let (Some(tx), Some(reply)) = (pending.remove(&r.id), r.reply) {
                                let _ = tx.send(Ok(reply));
                            }
                        }
                    }
                    Ok(None) => break Status::unavailable("the node closed the KV stream"),
                    Err(status) => break status,
                },
            }
        };
        tracing::debug!("a KV stream ended: {status}");
        fail_all(pending, stream_failed(&status));
    }
}

/// What a caller whose operation was on a stream that failed with
/// `status` gets: `Unavailable`, whatever the stream's own code (a message
/// refused as too large, say, says nothing about whether the operation
/// applied).
fn stream_failed(status: &Status) -> Status {
    Status::unavailable(format!(
        "the KV stream to the node failed ({:?}: {}); the operation may have applied",
        status.code(),
        status.message()
    ))
}

/// Operation ids, and how many were sent since reply slots were pruned.
#[derive(Default)]
struct Ids {
    next: u64,
    since_prune: usize,
}

/// `first` and every call already waiting, as one message; their reply
/// slots go into `pending`. Calls whose caller has given up, or whose
/// attempt's budget is spent, are dropped. `None` when none is left.
fn gather(
    first: Call,
    calls: &mut mpsc::UnboundedReceiver<Call>,
    pending: &mut Pending,
    ids: &mut Ids,
) -> Option<pb::StreamedRequests> {
    let now = Instant::now();
    let mut ops = Vec::new();
    let mut next = Some(first);
    while let Some(call) = next.take() {
        // `None`: no deadline (0 on the wire: the node's own limit).
        let left = call.meta.deadline.map(|d| d.saturating_duration_since(now));
        if !call.reply.is_closed() && left != Some(Duration::ZERO) {
            ids.next += 1;
            ops.push(pb::StreamedRequest {
                id: ids.next,
                timeout_us: left.map_or(0, |t| t.as_micros().clamp(1, u64::MAX as u128) as u64),
                unreachable: call.meta.unreachable.as_deref().unwrap_or("").to_string(),
                op: Some(call.op),
            });
            pending.insert(ids.next, call.reply);
        }
        if ops.len() < OPS_PER_MESSAGE {
            next = calls.try_recv().ok();
        }
    }
    // Callers that gave up (their attempt timed out on a node that does
    // not answer) leave their slot here until the stream ends; drop those
    // slots now and then once they are many.
    ids.since_prune += ops.len();
    if ids.since_prune >= PRUNE_EVERY && pending.len() > PRUNE_EVERY {
        ids.since_prune = 0;
        pending.retain(|_, tx| !tx.is_closed());
    }
    (!ops.is_empty()).then_some(pb::StreamedRequests { ops })
}

fn fail_all(pending: Pending, status: Status) {
    for (_, tx) in pending {
        let _ = tx.send(Err(Status::new(status.code(), status.message())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(op: Op) -> (Call, oneshot::Receiver<Result<R, Status>>) {
        let (reply, rx) = oneshot::channel();
        let meta = AttemptMeta {
            deadline: Some(Instant::now() + Duration::from_millis(700)),
            unreachable: Some("10.0.0.9:7101".into()),
        };
        (Call { op, meta, reply }, rx)
    }

    fn put(key: &str) -> Op {
        Op::Put(pb::PutRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        })
    }

    #[test]
    fn waiting_calls_leave_in_one_message_and_abandoned_ones_not_at_all() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (first, _a) = call(put("a"));
        let (second, b) = call(put("b"));
        let (third, _c) = call(put("c"));
        drop(b); // its caller gave up
        tx.send(second).ok();
        tx.send(third).ok();
        let (mut pending, mut ids) = (Pending::new(), Ids::default());
        let batch = gather(first, &mut rx, &mut pending, &mut ids).expect("a message");
        let keys: Vec<_> = batch
            .ops
            .iter()
            .map(|o| match &o.op {
                Some(Op::Put(p)) => p.key.clone(),
                _ => Vec::new(),
            })
            .collect();
        assert_eq!(keys, vec![b"a".to_vec(), b"c".to_vec()]);
        let timeout = batch.ops[0].timeout_us;
        assert!((600_000..=700_000).contains(&timeout), "{timeout}");
        assert_eq!(batch.ops[0].unreachable, "10.0.0.9:7101");
        assert_ne!(batch.ops[0].id, batch.ops[1].id);
        assert_eq!(pending.len(), 2);
        assert!(pending.contains_key(&batch.ops[1].id));
    }

    #[test]
    fn an_attempt_whose_budget_is_spent_is_not_sent() {
        let (_tx, mut rx) = mpsc::unbounded_channel::<Call>();
        let (mut late, _a) = call(put("a"));
        late.meta.deadline = Some(Instant::now() - Duration::from_millis(1));
        let (mut pending, mut ids) = (Pending::new(), Ids::default());
        assert!(gather(late, &mut rx, &mut pending, &mut ids).is_none());
        assert!(pending.is_empty());
    }

    #[test]
    fn a_failed_stream_fails_every_call_waiting_on_it_as_maybe_applied() {
        let (tx, mut rx) = mpsc::unbounded_channel::<Call>();
        drop(tx);
        let (first, mut a) = call(put("a"));
        let (mut pending, mut ids) = (Pending::new(), Ids::default());
        gather(first, &mut rx, &mut pending, &mut ids).expect("a message");
        // Even a stream ended by a code the caller would not retry on.
        fail_all(
            pending,
            stream_failed(&Status::out_of_range("message too large")),
        );
        let got = a.try_recv().expect("answered").expect_err("failed");
        assert_eq!(got.code(), tonic::Code::Unavailable);
        assert!(got.message().contains("message too large"), "{got}");
        assert!(got.message().contains("may have applied"), "{got}");
    }
}
