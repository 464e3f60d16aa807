//! Approximate size and key count of the shards a node leads, for their
//! reports to the PD (which splits a shard past its thresholds).
//!
//! Counted by walking the shard's keys in the engine (keys only, in chunks,
//! at most [`MAX_KEYS`]), with the size extrapolated from the average entry
//! of a small sample of values. Refreshed every [`EVERY_ROUNDS`] heartbeat
//! rounds, not every round: a walk costs a scan of the shard.

use std::collections::BTreeMap;

use crate::shard::{Replica, ShardMeta};
use crate::storage::engine::SharedEngine;
use crate::storage::keys::{self, ShardId};

/// Heartbeat rounds between two walks of a shard.
pub const EVERY_ROUNDS: u64 = 10;
/// Keys counted at most (a shard this big is past any split threshold).
pub const MAX_KEYS: usize = 4_000_000;
const CHUNK: usize = 10_000;
/// Values read to estimate the average entry size.
const SAMPLE: usize = 32;

/// What the last walk found, per shard.
#[derive(Default)]
pub struct Sizes {
    /// shard -> (version walked at, keys, bytes)
    by_shard: BTreeMap<ShardId, (u64, u64, u64)>,
    rounds: u64,
}

impl Sizes {
    /// Starts a round; whether this one walks the shards.
    pub fn round(&mut self) -> bool {
        self.rounds += 1;
        self.rounds % EVERY_ROUNDS == 1
    }

    /// Walks `replica`'s range now (off the async workers).
    pub async fn refresh(&mut self, engine: &SharedEngine, replica: &Replica) {
        let (engine, meta) = (engine.clone(), replica.meta());
        let version = meta.epoch.version;
        let found = crate::state_machine::blocking(move || walk(&engine, &meta)).await;
        if let Some((keys, bytes)) = found {
            self.by_shard.insert(replica.id, (version, keys, bytes));
        }
    }

    /// (keys, bytes) of `replica`'s shard as last walked; zeros if never,
    /// or if the shard split since (the old numbers would split it again).
    pub fn get(&self, replica: &Replica) -> (u64, u64) {
        match self.by_shard.get(&replica.id) {
            Some((version, keys, bytes)) if *version == replica.meta().epoch.version => {
                (*keys, *bytes)
            }
            _ => (0, 0),
        }
    }
}

/// `(keys, bytes)` of the shard's range; `None` if the engine failed.
fn walk(engine: &SharedEngine, meta: &ShardMeta) -> Option<(u64, u64)> {
    let (lo, hi) = keys::data_range(&meta.start, meta.end.as_deref());
    let mut cursor = lo.clone();
    let mut count = 0usize;
    loop {
        let found = engine.scan_keys(&cursor, &hi, CHUNK).ok()?;
        count += found.len();
        match found.last() {
            Some(last) if found.len() == CHUNK && count < MAX_KEYS => {
                cursor.clone_from(last);
                cursor.push(0);
            }
            _ => break,
        }
    }
    let sample = engine.scan(&lo, &hi, SAMPLE).ok()?;
    let average = if sample.is_empty() {
        0
    } else {
        let bytes: usize = sample
            .iter()
            .map(|(k, v)| keys::user_key(k).len() + v.len())
            .sum();
        (bytes / sample.len()) as u64
    };
    Some((count as u64, count as u64 * average))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::storage::engine::WriteBatch;
    use crate::storage::MemoryEngine;

    #[test]
    fn a_walk_counts_the_keys_of_the_range_only() {
        let engine: SharedEngine = Arc::new(MemoryEngine::new());
        let mut b = WriteBatch::new();
        for i in 0..25_000 {
            b.put(keys::data(format!("k{i:05}").as_bytes()), vec![7; 10]);
        }
        b.put(keys::data(b"z"), vec![7; 10]);
        engine.write(b).expect("write");
        let mut meta = ShardMeta::whole_keyspace(1);
        meta.end = Some(b"y".to_vec());
        assert_eq!(walk(&engine, &meta), Some((25_000, 25_000 * 16)));
    }
}
