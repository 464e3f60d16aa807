//! atoll-sim-tests: whole Atoll clusters inside a madsim deterministic
//! simulation. Only built under `RUSTFLAGS="--cfg madsim"`.
//!
//! - [`cluster`]: `SimCluster` starts every node with the production entry
//!   point (`atoll_node::start_with_engine`) on the in-memory engine and a
//!   simulated WAL disk, and kills (power loss: unflushed engine writes and
//!   unsynced WAL bytes are lost, the last WAL write may tear), restarts,
//!   pauses and partitions them.
//! - [`observer`]: node-side observations (who was leader in which term).
//! - [`nemesis`]: named fault schedules, randomised per seed.
//! - [`workload`]: concurrent clients on a small key set (one of them
//!   impatient, so writes are retried while in flight), recorded as an
//!   `atoll_jepsen::History`, plus a unique-key writer for durability.
//! - [`transfers`]: an operator moving shard 1's leader to random nodes.
//! - [`splits`]: an operator splitting shards at random candidate keys.
//! - [`moves`]: an operator draining random nodes and setting them Up
//!   again, so the PD moves replicas away and back.
//! - [`batch_groups`]: whole-group batches and one-page scans of the group.
//! - [`sleep`]: quiet shards fall asleep, wake for a write, and elect a new
//!   leader when their sleeping leader's node dies.
//! - [`checks`]: one invariant per file — linearizability, one leader per
//!   term, no lost acknowledged write, replica convergence (data, sessions,
//!   shard descriptors), no torn scan, liveness, transfers that report
//!   success put their target in the lead, the placement driver's replicas
//!   agree and it sees the healed cluster whole, no node's shards overlap
//!   and all shards tile the key space, every shard takes writes and is
//!   back at its replication factor after the faults heal.
//! - [`runner`]: runs one seed (one `madsim` runtime) or a sweep, prints
//!   each failing seed with the command that replays it.
//!
//! ```text
//! SIM_SEEDS=50 RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/sim cargo test -p atoll-sim-tests
//! ```

#![cfg(madsim)]

pub mod batch_groups;
pub mod checks;
pub mod cluster;
pub mod moves;
pub mod nemesis;
pub mod observer;
pub mod runner;
pub mod sleep;
pub mod splits;
pub mod transfers;
pub mod workload;
