//! temp
pub mod checker;
pub mod command;
pub mod config;
pub mod ids;
pub mod invariants;
pub mod node;
pub mod operator;
pub mod scheduler;
pub mod shard;
pub mod state;
