//! atoll-jepsen: operation histories and checkers, shared by the madsim simulation tests and
//! the real-process Jepsen-style harness, and that harness itself (control, nemeses,
//! workloads, report; not compiled under `--cfg madsim`).
//!
//! Map of the crate:
//! - [`history`]: [`Op`] (one client request: kind, call/return times, [`Outcome`]),
//!   [`History`] (validated ops, JSON-lines save/load), [`Recorder`] (builds a history from
//!   concurrent clients: `invoke` before the request, `complete` after).
//! - [`linearizability`]: [`check`] / [`check_with`], a Porcupine-style checker
//!   (Wing & Gong search, Lowe's memoization, one key at a time) against a per-key register
//!   model with put, delete and compare-and-swap, plus quick proofs of common anomalies.
//!   What a write reports having found (a delete's `existed`, a cas's `previous`) must hold
//!   where it linearizes, so a retry applied twice shows.
//!   Returns a [`CheckResult`]; a [`Violation`] names the key and the [`Anomaly`] with its ops.
//!   [`CheckOptions`] bound the search per key: past them the answer is `Unknown`, never a hang.
//! - [`checker`]: verdicts (`valid: true/false/unknown` + the smallest offending ops) for
//!   the harness's workloads: `register` (the linearizability checker), `set`, `append`,
//!   `bank`.
//! - [`lazyfs`]: a FUSE layer that keeps writes in memory until fsync and drops them on a
//!   "power cut" (the LazyFS method), for real-process power-loss tests; binary `lazyfs`.
//! - `control`: N `atoll-node` processes in network namespaces (or on loopback): start,
//!   stop, kill -9, restart, pause, resume, partitions, netem, power cuts; all removed on drop.
//! - `nemesis`: the fault scheduler and its windows (`kill`, `pause`, `partition`, `netem`,
//!   `power`, `transfer`, `split`, `membership`).
//! - `workload`: recorded clients (`register`, `set`, `append`, `bank`).
//! - `report`: the run directory: history, verdicts, node logs, HTML page with SVG plots.
//! - `runner`: one run start to end; binary `atoll-jepsen` (`scripts/jepsen.sh`).
//!
//! ```
//! use atoll_jepsen::{check, OpKind, OpResult, Outcome, Recorder};
//!
//! let rec = Recorder::new();
//! let w = rec.invoke(1, OpKind::put("k", "v1"), rec.tick());
//! let r = rec.invoke(2, OpKind::get("k"), rec.tick()); // concurrent with the put
//! rec.complete(r, Outcome::Ok(OpResult::Get(Some(b"v1".to_vec()))), rec.tick()).unwrap();
//! rec.complete(w, Outcome::Ok(OpResult::Put), rec.tick()).unwrap();
//! let timed_out = rec.invoke(1, OpKind::delete("k"), rec.tick());
//! rec.complete(timed_out, Outcome::Indeterminate, rec.tick()).unwrap();
//!
//! let history = rec.into_history();
//! assert!(check(&history).is_linearizable());
//! ```

pub mod checker;
#[cfg(not(madsim))]
pub mod control;
pub mod history;
pub mod lazyfs;
pub mod linearizability;
#[cfg(not(madsim))]
pub mod nemesis;
#[cfg(not(madsim))]
pub mod report;
#[cfg(not(madsim))]
pub mod runner;
#[cfg(not(madsim))]
pub mod workload;

pub use history::{
    ClientId, History, HistoryError, Op, OpHandle, OpKind, OpResult, Outcome, Recorder, TxnCompare,
    TxnStep,
};
pub use linearizability::{
    check, check_with, Anomaly, CheckOptions, CheckResult, IndexedOp, Violation,
};
