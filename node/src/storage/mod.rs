//! Durable state of a node apart from the Raft log (which is in
//! [`crate::wal`]): one ordered key-value engine shared by every shard
//! replica on the node, and the log store that puts openraft on the WAL.
//!
//! - [`engine`]: the small engine trait (get, scan, atomic batch, flush) and
//!   its two implementations, [`FjallEngine`] for production and
//!   [`MemoryEngine`] for simulation (a crash loses exactly what was not
//!   flushed).
//! - [`keys`]: how every keyspace (node meta, state-machine meta, dedup
//!   sessions, user data) is laid out in the one ordered key space.
//! - [`flusher`]: one task that turns many concurrent "make this durable"
//!   requests into one engine flush.
//! - [`log_store`]: openraft's `RaftLogStorage` for one shard over the WAL.
//! - [`format`]: the data dir's format version (`FORMAT`), checked at start.

pub mod engine;
mod fjall_engine;
pub mod flusher;
pub mod format;
pub mod keys;
pub mod log_store;
mod memory_engine;

pub use engine::{Engine, EngineError, WriteBatch};
pub use fjall_engine::FjallEngine;
pub use flusher::Flusher;
pub use log_store::LogStore;
pub use memory_engine::MemoryEngine;
