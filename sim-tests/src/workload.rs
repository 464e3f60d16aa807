//! Client workloads. `register_client` runs concurrent get/put/cas/delete
//! on a few keys and records every invocation and completion, with what
//! each delete and cas reported having found (`existed`, `previous`);
//! `unique_writer` writes fresh keys and remembers which writes were
//! acknowledged;
//! `session_churn` opens bursts of new write sessions so a small per-shard
//! session cap evicts the other clients' sessions.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use atoll_client::{Client, ClientConfig, Error};
use atoll_jepsen::{OpKind, OpResult, Outcome, Recorder};
use rand::Rng;

/// Counts of notable client outcomes over a run.
#[derive(Debug, Default)]
pub struct Stats {
    /// Writes that ended with `SessionExpired` (their session was evicted).
    pub session_expired: AtomicU64,
}

impl Stats {
    pub fn session_expired(&self) -> u64 {
        self.session_expired.load(Ordering::Relaxed)
    }

    /// The history outcome of a failed write. `Timeout` and `SessionExpired`
    /// are indeterminate by definition (the write may have been applied); the
    /// other errors are refusals before proposal, but the client may have
    /// sent an earlier attempt that did reach a leader, so every failed
    /// write is recorded as indeterminate (info).
    fn failed_write(&self, e: &Error) -> Outcome {
        if matches!(e, Error::SessionExpired { .. }) {
            self.session_expired.fetch_add(1, Ordering::Relaxed);
        }
        Outcome::Indeterminate
    }
}

#[derive(Debug, Clone)]
pub struct Workload {
    /// Clients doing a mix of reads and writes.
    pub clients: u64,
    /// How many of `clients` wait only [`IMPATIENT_RPC_TIMEOUT`] for each
    /// RPC, so they often retry a write whose first attempt is still in
    /// flight, and both reach the log: the dedup table must answer the retry
    /// with the first attempt's result, or the write applies twice.
    pub impatient: u64,
    /// Clients doing only reads: they stay with whichever leader answers
    /// them, so they are the ones that notice a deposed leader serving reads.
    pub readers: u64,
    pub keys: usize,
    pub duration: Duration,
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            clients: 3,
            impatient: 1,
            readers: 1,
            keys: 4,
            duration: Duration::from_secs(20),
        }
    }
}

/// The per-RPC timeout of impatient clients (others wait 1 s).
pub const IMPATIENT_RPC_TIMEOUT: Duration = Duration::from_millis(100);

pub fn key(i: usize) -> Vec<u8> {
    format!("reg{i}").into_bytes()
}

/// One client's loop until `duration` has passed. A `read_only` client
/// only does gets.
pub async fn register_client(
    client: Client,
    me: u64,
    read_only: bool,
    w: Workload,
    rec: Arc<Recorder>,
    stats: Arc<Stats>,
) {
    let start = tokio::time::Instant::now();
    let mut seen: BTreeMap<usize, Option<Vec<u8>>> = BTreeMap::new();
    let mut n = 0u64;
    while start.elapsed() < w.duration {
        n += 1;
        let (k, choice, pause) = {
            let mut rng = madsim::rand::thread_rng();
            (
                rng.gen_range(0..w.keys),
                rng.gen_range(0..100u32),
                rng.gen_range(0..50u64),
            )
        };
        let key = key(k);
        let value = format!("c{me}-{n}").into_bytes();
        let choice = if read_only { 0 } else { choice };
        let kind = match choice {
            0..=39 => OpKind::get(key.clone()),
            40..=69 => OpKind::put(key.clone(), value.clone()),
            70..=79 => OpKind::delete(key.clone()),
            _ => {
                let expected = seen.get(&k).cloned().flatten();
                let new = if choice < 95 {
                    Some(value.clone())
                } else {
                    None
                };
                OpKind::cas(key.clone(), expected, new)
            }
        };
        let handle = rec.invoke(me, kind.clone(), rec.tick());
        let outcome = match kind {
            OpKind::Get { .. } => match client.get(&key).await {
                Ok(v) => {
                    seen.insert(k, v.clone());
                    Outcome::Ok(OpResult::Get(v))
                }
                // A failed read changed nothing.
                Err(_) => Outcome::Failed,
            },
            OpKind::Put { .. } => match client.put(&key, &value).await {
                Ok(()) => Outcome::Ok(OpResult::Put),
                Err(e) => stats.failed_write(&e),
            },
            OpKind::Delete { .. } => match client.delete(&key).await {
                Ok(existed) => Outcome::Ok(OpResult::delete(existed)),
                Err(e) => stats.failed_write(&e),
            },
            OpKind::Cas { expected, new, .. } => {
                match client.cas(&key, expected.as_deref(), new.as_deref()).await {
                    Ok(o) => {
                        let result = OpResult::cas(o.succeeded, o.previous.clone());
                        seen.insert(k, if o.succeeded { new } else { o.previous });
                        Outcome::Ok(result)
                    }
                    Err(e) => stats.failed_write(&e),
                }
            }
            // This workload issues no transactions.
            OpKind::Txn { .. } => Outcome::Failed,
        };
        // Completing a handle we just invoked cannot fail.
        let _ = rec.complete(handle, outcome, rec.tick());
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// Writes `uniq-N` keys until `duration` has passed; returns the
/// acknowledged ones.
pub async fn unique_writer(
    client: Client,
    duration: Duration,
    stats: Arc<Stats>,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let start = tokio::time::Instant::now();
    let mut acked = Vec::new();
    let mut n = 0u64;
    while start.elapsed() < duration {
        n += 1;
        let (k, v) = (
            format!("uniq-{n:06}").into_bytes(),
            format!("v{n}").into_bytes(),
        );
        match client.put(&k, &v).await {
            Ok(()) => acked.push((k, v)),
            Err(e) => {
                stats.failed_write(&e);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    acked
}

/// Every `every`, opens `burst` new write sessions (a fresh client each,
/// one write to a `churn-` key), until `duration` has passed. With a
/// per-shard cap of at most `burst`, each burst evicts every older session,
/// so the other clients' next writes get `SessionExpired`.
pub async fn session_churn(
    endpoints: Vec<String>,
    burst: u64,
    every: Duration,
    duration: Duration,
) {
    let start = tokio::time::Instant::now();
    let config = ClientConfig {
        deadline: Duration::from_secs(2),
        request_timeout: Duration::from_secs(1),
        ..ClientConfig::default()
    };
    let mut round = 0u64;
    while start.elapsed() < duration {
        round += 1;
        for i in 0..burst {
            // Failures are expected under faults; the burst only needs to
            // register some sessions.
            if let Ok(c) = Client::with_config(endpoints.clone(), config.clone()).await {
                let _ = c.put(format!("churn-{round}-{i}"), "x").await;
            }
        }
        tokio::time::sleep(every).await;
    }
}
