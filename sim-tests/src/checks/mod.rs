//! One invariant per file. Each returns `Err(explanation)` on violation.

pub mod applied;
pub mod awaiting;
pub mod batch_atomicity;
pub mod convergence;
pub mod durability;
pub mod leaders;
pub mod linearizable;
pub mod liveness;
pub mod pd;
pub mod ranges;
pub mod replica_ids;
pub mod replication;
pub mod transfers;
