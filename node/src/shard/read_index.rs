//! Shared ReadIndex rounds: linearizable reads that wait at the same time
//! share one leadership check.
//!
//! openraft's `ensure_linearizable` sends a heartbeat round to a quorum for
//! every call. Here each replica has one task that runs rounds back to back:
//! a read registers, and is answered by the first round that *starts after*
//! it registered, which is exactly what ReadIndex requires (the read index is
//! taken after the read arrived). Reads that arrive while a round is out wait
//! for the next one, so one heartbeat round serves all reads that queued
//! during the previous one.

use openraft::error::{CheckIsLeaderError, Fatal, RaftError};
use openraft::BasicNode;
use tokio::sync::{mpsc, oneshot};

use crate::raft::type_config::{LogId, Raft, ReplicaId};

pub type ReadIndexResult =
    Result<Option<LogId>, RaftError<ReplicaId, CheckIsLeaderError<ReplicaId, BasicNode>>>;

/// The handle: one per replica.
#[derive(Clone)]
pub struct ReadIndexer {
    tx: mpsc::UnboundedSender<oneshot::Sender<ReadIndexResult>>,
}

impl ReadIndexer {
    /// Starts the replica's round task; it ends when every handle is dropped.
    pub fn spawn(raft: Raft) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(raft, rx));
        Self { tx }
    }

    /// Like `Raft::ensure_linearizable`: once it returns `Ok`, the local
    /// state machine has applied everything committed before the call.
    pub async fn ensure_linearizable(&self) -> ReadIndexResult {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(tx).is_err() {
            return Err(RaftError::Fatal(Fatal::Stopped));
        }
        rx.await.unwrap_or(Err(RaftError::Fatal(Fatal::Stopped)))
    }
}

async fn run(raft: Raft, mut rx: mpsc::UnboundedReceiver<oneshot::Sender<ReadIndexResult>>) {
    while let Some(first) = rx.recv().await {
        // Everyone queued so far registered before this round starts.
        let mut waiters = vec![first];
        while let Ok(more) = rx.try_recv() {
            waiters.push(more);
        }
        let result = raft.ensure_linearizable().await;
        for w in waiters {
            let _ = w.send(result.clone());
        }
    }
}
