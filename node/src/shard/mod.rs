//! Shards on a node: [`meta`] (range + epoch), [`replica`] (one shard's
//! Raft group member with its storage) and [`host`] (all replicas of the
//! node, by shard id). [`election_nudge`] re-randomises elections that keep
//! splitting.

mod election_nudge;
pub mod host;
pub mod meta;
pub mod replica;

pub use host::ShardHost;
pub use meta::{Epoch, ShardMeta};
pub use replica::Replica;
