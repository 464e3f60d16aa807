//! Checkers: pure functions from one shard (and the cluster around it) to
//! at most one operator that fixes it. `replica` keeps the replication
//! factor on distinct Up nodes and zones; `split` splits big shards;
//! `placement` holds the load counting and target choice they share.

pub mod placement;
pub mod replica;
pub mod split;
