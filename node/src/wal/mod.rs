//! The node's write-ahead log: the Raft log of every shard on the node, in
//! one sequence of segment files (docs/decisions/0011-raft-wal.md).
//!
//! - [`fs`]: the file seam ([`WalFs`]) and its real implementation
//!   ([`RealFs`]: `fdatasync`, directory fsync); [`sim_fs`]: the simulated
//!   one ([`SimFs`]), whose crash keeps synced bytes and tears the rest.
//! - [`record`]: records (entries, vote, committed, truncate, purge,
//!   checkpoint) and their checksummed frame; [`segment`]: segment files,
//!   their format-version header, and reading one back (torn tail vs
//!   corruption).
//! - [`index`]: where each shard's live entries are, and its metadata.
//! - [`handle`]: [`Wal`], the handle every shard's log store writes
//!   through; [`syncer`]: group commit (one `fdatasync` for every append
//!   that arrived meanwhile, from any shard); [`open()`]: recovery.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), atoll_node::wal::WalError> {
//! use std::sync::Arc;
//! use atoll_node::wal::{self, SimFs, WalOptions};
//! let disk = Arc::new(SimFs::new());
//! let log = wal::open(disk.clone(), "/data/wal", WalOptions::default())?;
//! log.append_entries(1, 1, vec![b"entry one".to_vec()])?;
//! log.sync().await?; // durable from here on
//! disk.crash();
//! let log = wal::open(disk, "/data/wal", WalOptions::default())?;
//! assert_eq!(log.entries(1, 1, 2)?, vec![b"entry one".to_vec()]);
//! # Ok(()) }
//! ```

pub mod error;
pub mod fs;
pub mod handle;
pub mod index;
pub mod open;
pub mod record;
pub mod segment;
pub mod sim_fs;
mod syncer;
#[cfg(test)]
mod tests;

pub use error::WalError;
pub use fs::{RealFs, SharedFs, WalFs};
pub use handle::{Wal, WalOptions};
pub use open::open;
pub use segment::FORMAT_VERSION;
pub use sim_fs::SimFs;
