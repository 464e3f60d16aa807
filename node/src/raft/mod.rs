//! Raft plumbing shared by all shards: the type config (the one place the
//! runtime is chosen), the network that carries shard-tagged RPCs, and the
//! pool of per-peer channels those RPCs share.

#[cfg(madsim)]
mod madsim_runtime;
pub mod network;
pub mod peer_pool;
pub mod replica_id;
pub mod type_config;
