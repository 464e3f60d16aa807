//! Batched proposals: concurrent writes to one shard travel in one Raft
//! entry.
//!
//! openraft 0.9 appends and flushes each `client_write` as its own entry, in
//! series, so N concurrent writes cost N flushes at the leader and at each
//! follower. The proposer is a task per replica with a queue: it keeps at
//! most `raft.proposals_in_flight` (default 1) entries proposed and not yet
//! applied; while they are out, new writes wait in the queue, and the next
//! entry takes all of them (up to [`MAX_BATCH`] requests and
//! [`MAX_BATCH_BYTES`]) as one `Request::Multi`. Under light load an entry holds one request and goes out
//! at once; under heavy load entries grow, and the cost of a flush is shared.
//! Each caller still gets its own answer, and dedup still works per write:
//! the state machine applies a `Multi`'s requests in order, each with its
//! own write id.
//!
//! [`Proposer::pause`] holds back new entries for a leader transfer
//! ([`super::transfer`]): it waits for the entries in flight, then keeps
//! every slot; writes that arrive meanwhile wait in the queue (they do not
//! fail) and go out when the [`Paused`] guard is dropped.

// The results are openraft's own (large) error types, as `client_write`'s.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use openraft::error::{ClientWriteError, Fatal, RaftError};
use openraft::raft::ClientWriteResponse;
use openraft::BasicNode;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::command::{Request, Response};
use crate::raft::type_config::{Raft, ReplicaId, TypeConfig};

/// Requests in one entry, at most.
pub const MAX_BATCH: usize = 256;
/// Key and value bytes in one entry, at most (a single larger request still
/// goes alone).
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;

pub type WriteResult = Result<
    ClientWriteResponse<TypeConfig>,
    RaftError<ReplicaId, ClientWriteError<ReplicaId, BasicNode>>,
>;

struct Pending {
    req: Request,
    done: oneshot::Sender<WriteResult>,
}

/// The handle: cheap to clone, one queue per replica.
#[derive(Clone)]
pub struct Proposer {
    tx: mpsc::UnboundedSender<Pending>,
    /// The in-flight slots, shared with the task; a pause takes them all.
    slots: Arc<Semaphore>,
    in_flight: u32,
}

/// While alive, the proposer sends no new entry (see [`Proposer::pause`]).
#[must_use = "proposals resume when the guard is dropped"]
pub struct Paused {
    _slots: Option<OwnedSemaphorePermit>,
}

impl Proposer {
    /// Starts the proposer task of one replica. It ends when every handle
    /// is dropped. An entry holds its in-flight slot at most `give_up`
    /// (a little more than the node's write timeout, so callers get their
    /// own timeout answer first): an entry that is never committed (its
    /// leader was cut off, then deposed) must not stop every later write.
    pub fn spawn(raft: Raft, in_flight: usize, give_up: std::time::Duration) -> Self {
        // At least one, and few enough for a semaphore's u32.
        let in_flight = in_flight.clamp(1, 1024);
        let (tx, rx) = mpsc::unbounded_channel();
        let slots = Arc::new(Semaphore::new(in_flight));
        tokio::spawn(run(raft, rx, slots.clone(), give_up));
        Self {
            tx,
            slots,
            in_flight: in_flight as u32,
        }
    }

    /// Stops proposing: waits until the entries in flight are applied (or
    /// given up), then holds every slot until the guard is dropped. Queued
    /// and new writes wait meanwhile. The semaphore is fair, so a pause is
    /// not overtaken by writes that arrive while it waits.
    pub async fn pause(&self) -> Paused {
        let permits = self.in_flight;
        // The semaphore is never closed; were it, nothing could be proposed
        // anyway, so there would be nothing to hold.
        Paused {
            _slots: self.slots.clone().acquire_many_owned(permits).await.ok(),
        }
    }

    /// Proposes `req` and waits until it is applied (or fails), like
    /// `Raft::client_write`.
    pub async fn propose(&self, req: Request) -> WriteResult {
        let (done, answer) = oneshot::channel();
        if self.tx.send(Pending { req, done }).is_err() {
            return Err(stopped());
        }
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }
}

fn stopped() -> RaftError<ReplicaId, ClientWriteError<ReplicaId, BasicNode>> {
    RaftError::Fatal(Fatal::Stopped)
}

async fn run(
    raft: Raft,
    mut rx: mpsc::UnboundedReceiver<Pending>,
    slots: Arc<Semaphore>,
    give_up: std::time::Duration,
) {
    // A request that did not fit in the previous entry starts the next one.
    let mut carry: Option<Pending> = None;
    loop {
        let first = match carry.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        // Waiting for a slot is where a batch forms.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (batch, rest) = take_batch(first, &mut rx);
        carry = rest;
        let raft = raft.clone();
        tokio::spawn(async move {
            // On timeout the callers' own deadlines (never longer) have
            // passed: dropping their answer channels is all that is left.
            let _ = tokio::time::timeout(give_up, propose_entry(&raft, batch)).await;
            drop(slot);
        });
    }
}

/// `first` plus whatever else is queued, within the batch limits; the first
/// queued request that would pass the byte budget is returned apart.
fn take_batch(
    first: Pending,
    rx: &mut mpsc::UnboundedReceiver<Pending>,
) -> (Vec<Pending>, Option<Pending>) {
    let mut bytes = first.req.payload_bytes();
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        let Ok(next) = rx.try_recv() else { break };
        let size = next.req.payload_bytes();
        if bytes + size > MAX_BATCH_BYTES {
            return (batch, Some(next));
        }
        bytes += size;
        batch.push(next);
    }
    (batch, None)
}

async fn propose_entry(raft: &Raft, mut batch: Vec<Pending>) {
    if batch.len() == 1 {
        if let Some(p) = batch.pop() {
            let _ = p.done.send(raft.client_write(p.req).await);
        }
        return;
    }
    let (reqs, dones): (Vec<Request>, Vec<oneshot::Sender<WriteResult>>) =
        batch.into_iter().map(|p| (p.req, p.done)).unzip();
    match raft.client_write(Request::Multi(reqs)).await {
        Ok(resp) => {
            let answers = match resp.data {
                Response::Multi(answers) if answers.len() == dones.len() => answers,
                other => {
                    // Cannot happen: the state machine answers a Multi with
                    // one response per request. Fail the callers rather than
                    // guess which answer is whose.
                    tracing::error!(?other, "a batched entry got a malformed answer");
                    for done in dones {
                        let _ = done.send(Err(RaftError::Fatal(Fatal::Panicked)));
                    }
                    return;
                }
            };
            for (done, data) in dones.into_iter().zip(answers) {
                let _ = done.send(Ok(ClientWriteResponse {
                    log_id: resp.log_id,
                    data,
                    membership: None,
                }));
            }
        }
        Err(e) => {
            for done in dones {
                let _ = done.send(Err(e.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{WriteId, WriteOp};

    fn put(value_len: usize) -> (Pending, oneshot::Receiver<WriteResult>) {
        let (done, rx) = oneshot::channel();
        let req = Request::Write {
            write_id: WriteId {
                client_id: 1,
                seq: 1,
                first_incomplete: 1,
            },
            op: WriteOp::Put {
                key: b"k".to_vec(),
                value: vec![0; value_len],
            },
        };
        (Pending { req, done }, rx)
    }

    #[test]
    fn a_batch_takes_what_is_queued_up_to_the_byte_budget() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut keep = Vec::new();
        for len in [10, 10, MAX_BATCH_BYTES, 10] {
            let (p, r) = put(len);
            keep.push(r);
            tx.send(p).unwrap();
        }
        let first = rx.try_recv().unwrap();
        let (batch, carry) = take_batch(first, &mut rx);
        assert_eq!(batch.len(), 2);
        let carry = carry.expect("the large one waits for the next entry");
        assert_eq!(carry.req.payload_bytes(), 1 + MAX_BATCH_BYTES);
        // The large one goes alone, then the rest.
        let (batch, carry) = take_batch(carry, &mut rx);
        assert_eq!(batch.len(), 1);
        let (batch, _) = take_batch(carry.unwrap(), &mut rx);
        assert_eq!(batch.len(), 1);
    }

    #[test]
    fn a_batch_holds_at_most_max_batch_requests() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut keep = Vec::new();
        for _ in 0..MAX_BATCH + 5 {
            let (p, r) = put(1);
            keep.push(r);
            tx.send(p).unwrap();
        }
        let first = rx.try_recv().unwrap();
        let (batch, carry) = take_batch(first, &mut rx);
        assert_eq!(batch.len(), MAX_BATCH);
        assert!(carry.is_none());
    }
}
