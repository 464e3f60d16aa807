//! Workloads: concurrent clients that drive the cluster through `atoll_client::Client` and
//! record every op (invoke before the request, complete after, with the outcome ok, failed
//! or indeterminate) in one [`Recorder`], with times in nanoseconds since the run began.
//!
//! - [`register`]: get / put / cas on a few keys (rotated over time so each key's history
//!   stays small enough for the linearizability search); a share of its gets are
//!   [`direct`] reads at a random node instead of through the client's routing.
//! - [`set`]: unique inserts, one key per element; one scan at the end.
//! - [`append`]: lists appended to with read + compare-and-swap, read with gets.
//! - [`bank`]: transfers between accounts by conditional multi-key txns, read as one txn.
//!
//! A client error on a read means the read did nothing (`Failed`); on a write, the write may
//! or may not have applied (`Indeterminate`), except for errors raised before sending.

pub mod append;
pub mod bank;
pub mod direct;
pub mod register;
pub mod set;

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use atoll_client::{Client, ClientConfig, Error as ClientError};

use crate::checker::{self, Verdict};
use crate::linearizability::CheckOptions;
use crate::{History, Outcome, Recorder};

#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("client cannot connect: {0}")]
    Connect(ClientError),
    #[error("unknown workload {0:?} (register, set, append, bank)")]
    Unknown(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadKind {
    Register,
    Set,
    Append,
    Bank,
}

impl WorkloadKind {
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Register => "register",
            WorkloadKind::Set => "set",
            WorkloadKind::Append => "append",
            WorkloadKind::Bank => "bank",
        }
    }
}

impl FromStr for WorkloadKind {
    type Err = WorkloadError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "register" => Ok(WorkloadKind::Register),
            "set" => Ok(WorkloadKind::Set),
            "append" => Ok(WorkloadKind::Append),
            "bank" => Ok(WorkloadKind::Bank),
            other => Err(WorkloadError::Unknown(other.into())),
        }
    }
}

/// The run's clock: nanoseconds since it began.
#[derive(Debug, Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    pub fn start() -> Clock {
        Clock(Instant::now())
    }

    pub fn now(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// What the clients share.
#[derive(Clone)]
pub struct Ctx {
    pub endpoints: Vec<String>,
    pub rec: Arc<Recorder>,
    pub clock: Clock,
    pub stop: Arc<AtomicBool>,
    pub seed: u64,
    /// The share (0..=1) of `register` gets sent as [`direct`] reads to a random node.
    pub direct_reads: f64,
    /// How long the client waits for one attempt before it retries (the op's deadline is
    /// three times this).
    pub request_timeout: Duration,
}

impl Ctx {
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub async fn client(&self) -> Result<Client, WorkloadError> {
        let config = ClientConfig {
            request_timeout: self.request_timeout,
            deadline: self.request_timeout * 3,
            ..ClientConfig::default()
        };
        Client::with_config(self.endpoints.clone(), config)
            .await
            .map_err(WorkloadError::Connect)
    }
}

/// Outcome of a write that returned an error.
pub fn write_error(e: &ClientError) -> Outcome {
    match e {
        ClientError::InvalidArgument(_)
        | ClientError::CrossShardBatch
        | ClientError::NoEndpoints => Outcome::Failed,
        _ => Outcome::Indeterminate,
    }
}

/// What the workload read after the faults ended (beyond what is in the history).
#[derive(Debug, Clone, Default)]
pub struct FinalRead {
    /// The set workload's elements; `Some(None)` if the read failed.
    pub set: Option<Option<BTreeSet<Vec<u8>>>>,
}

/// Runs `clients` clients of `kind` until `ctx.stop`.
pub async fn run(kind: WorkloadKind, ctx: &Ctx, clients: u64) -> Result<(), WorkloadError> {
    if kind == WorkloadKind::Bank {
        bank::setup(&ctx.client().await?, ctx).await;
    }
    let mut tasks = Vec::new();
    for me in 1..=clients {
        let client = ctx.client().await?;
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(async move {
            match kind {
                WorkloadKind::Register => register::client(client, me, ctx).await,
                WorkloadKind::Set => set::client(client, me, ctx).await,
                WorkloadKind::Append => append::client(client, me, ctx).await,
                WorkloadKind::Bank => bank::client(client, me, ctx).await,
            }
        }));
    }
    for t in tasks {
        // A client task that panicked leaves its op indeterminate; the others go on.
        let _ = t.await;
    }
    Ok(())
}

/// Reads done after the faults healed, recorded in the history where they are ops.
pub async fn final_reads(kind: WorkloadKind, ctx: &Ctx) -> Result<FinalRead, WorkloadError> {
    let client = ctx.client().await?;
    Ok(match kind {
        WorkloadKind::Register => FinalRead::default(),
        WorkloadKind::Bank => {
            bank::final_read(&client, ctx).await;
            FinalRead::default()
        }
        WorkloadKind::Set => FinalRead {
            set: Some(set::final_read(&client).await),
        },
        WorkloadKind::Append => {
            append::final_reads(&client, ctx).await;
            FinalRead::default()
        }
    })
}

/// The verdicts on a finished workload.
pub fn check(kind: WorkloadKind, history: &History, fin: &FinalRead) -> Vec<Verdict> {
    let opts = CheckOptions {
        max_steps_per_key: 5_000_000,
        max_cache_bytes_per_key: 256 << 20,
    };
    match kind {
        WorkloadKind::Register => vec![checker::register::check(history, &opts)],
        WorkloadKind::Set => {
            let read = fin.set.as_ref().and_then(Option::as_ref);
            vec![checker::set::check(history, read)]
        }
        WorkloadKind::Append => vec![
            checker::append::check(history),
            checker::register::check(history, &opts),
        ],
        WorkloadKind::Bank => {
            let accounts = (0..bank::ACCOUNTS)
                .map(|i| bank::account(i).into_bytes())
                .collect();
            vec![checker::bank::check_history(
                history,
                &accounts,
                bank::TOTAL,
            )]
        }
    }
}

/// A short random pause between one client's ops, so clients interleave.
pub async fn think(rng: &mut impl rand::Rng) {
    tokio::time::sleep(Duration::from_millis(rng.gen_range(0..10))).await;
}
