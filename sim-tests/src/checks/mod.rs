//! One invariant per file. Each returns `Err(explanation)` on violation.

pub mod convergence;
pub mod durability;
pub mod leaders;
pub mod linearizable;
