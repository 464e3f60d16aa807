//! Group commit: one task owns "make it durable". Callers that need
//! durability send a waiter; the task drains every waiter queued so far,
//! flushes the engine once, and wakes them all. Concurrent log appends from
//! many shards therefore share one flush.

use tokio::sync::{mpsc, oneshot};

use super::engine::{EngineError, SharedEngine};

type Done = Box<dyn FnOnce(Result<(), EngineError>) + Send>;

/// Handle to the flusher task. Cheap to clone.
#[derive(Clone)]
pub struct Flusher {
    tx: mpsc::UnboundedSender<Done>,
    engine: SharedEngine,
}

impl Flusher {
    /// Spawns the flusher task for `engine`.
    pub fn spawn(engine: SharedEngine) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(engine.clone(), rx));
        Self { tx, engine }
    }

    /// Calls `done` once every write made before this call is durable.
    pub fn after_flush(&self, done: impl FnOnce(Result<(), EngineError>) + Send + 'static) {
        if let Err(e) = self.tx.send(Box::new(done)) {
            // The task is gone (node shutting down): report it, never ack.
            (e.0)(Err(EngineError::Io(
                "node is shutting down; flush not performed".into(),
            )));
        }
    }

    /// Waits until every write made before this call is durable.
    pub async fn flush(&self) -> Result<(), EngineError> {
        let (tx, rx) = oneshot::channel();
        self.after_flush(move |r| {
            let _ = tx.send(r);
        });
        rx.await
            .unwrap_or_else(|_| Err(EngineError::Io("flusher stopped before flushing".into())))
    }
}

impl Flusher {
    /// Makes everything the engine wrote durable against power loss (see
    /// [`super::engine::Engine::checkpoint`]): slower than `flush`, done
    /// before the Raft log is purged.
    pub async fn checkpoint(&self) -> Result<(), EngineError> {
        let engine = self.engine.clone();
        #[cfg(not(madsim))]
        {
            match tokio::task::spawn_blocking(move || engine.checkpoint()).await {
                Ok(r) => r,
                Err(e) => Err(EngineError::Io(format!("checkpoint task failed: {e}"))),
            }
        }
        #[cfg(madsim)]
        {
            tokio::time::sleep(crate::sim_hooks::flush_latency()).await;
            engine.checkpoint()
        }
    }
}

async fn run(engine: SharedEngine, mut rx: mpsc::UnboundedReceiver<Done>) {
    let mut waiters = Vec::new();
    while let Some(first) = rx.recv().await {
        waiters.push(first);
        while let Ok(more) = rx.try_recv() {
            waiters.push(more);
        }
        let result = flush_blocking(engine.clone()).await;
        for w in waiters.drain(..) {
            w(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(EngineError::Io(e.to_string())),
            });
        }
    }
}

#[cfg(not(madsim))]
async fn flush_blocking(engine: SharedEngine) -> Result<(), EngineError> {
    // fsync blocks; keep it off the async workers.
    match tokio::task::spawn_blocking(move || engine.flush()).await {
        Ok(r) => r,
        Err(e) => Err(EngineError::Io(format!("flush task failed: {e}"))),
    }
}

#[cfg(madsim)]
async fn flush_blocking(engine: SharedEngine) -> Result<(), EngineError> {
    // The simulated engine flushes in memory; no thread needed (or allowed).
    // The simulated disk takes time to flush, with slow outliers; what is
    // written meanwhile is flushed too, as on a real disk.
    tokio::time::sleep(crate::sim_hooks::flush_latency()).await;
    engine.flush()
}
