//! A shard snapshot: the shard's key range, its dedup sessions and every
//! key-value pair in its range, as one bincode blob. It is built from a
//! consistent view (the state machine is not applying while it is read) and
//! kept in the engine so it survives restarts and can be sent to peers.

use serde::{Deserialize, Serialize};

use super::dedup::SessionsSnapshot;
use crate::shard::meta::ShardMeta;
use crate::storage::engine::{EngineError, Kv, SharedEngine};
use crate::storage::keys;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotPayload {
    pub shard: ShardMeta,
    /// The dedup table, including the next session id.
    pub sessions: SessionsSnapshot,
    /// User key-value pairs in the shard's range, ascending.
    pub data: Vec<Kv>,
}

/// Reads the user data of `shard` from the engine.
pub fn read_shard_data(engine: &SharedEngine, shard: &ShardMeta) -> Result<Vec<Kv>, EngineError> {
    let (lo, hi) = keys::data_range(&shard.start, shard.end.as_deref());
    let rows = engine.scan(&lo, &hi, usize::MAX)?;
    Ok(rows
        .into_iter()
        .map(|(k, v)| (keys::user_key(&k).to_vec(), v))
        .collect())
}
