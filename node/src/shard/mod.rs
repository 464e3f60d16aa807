//! Shards on a node: [`meta`] (range + epoch), [`replica`] (one shard's
//! Raft group member with its storage) and [`host`] (all replicas of the
//! node, by shard id). [`proposer`] batches concurrent writes into one entry;
//! [`read_index`] lets concurrent linearizable reads share one ReadIndex
//! round. [`transfer`] moves a shard's leadership to another voter;
//! [`split`] splits a shard in two and opens the children of splits;
//! [`missing_replicas`] gets a replica created where a member has none;
//! [`membership`] runs the steps of a replica move on the shard's leader;
//! [`removal`] removes a replica and leaves a tombstone;
//! [`snapshot_refresh`] builds a newer snapshot when a follower refuses a
//! stale one. [`hibernation`] lets quiet shards stop their Raft timers;
//! [`peer_beat`] is the one node-to-node beat that watches over them.

pub mod hibernation;
pub mod host;
pub mod membership;
pub mod meta;
pub mod missing_replicas;
pub mod peer_beat;
pub mod proposer;
pub mod read_index;
pub mod removal;
pub mod replica;
mod snapshot_refresh;
pub mod split;
pub mod transfer;

pub use host::ShardHost;
pub use meta::{Epoch, ShardMeta};
pub use replica::Replica;
