//! The WAL's in-memory index: for every shard, where each live entry lies
//! (segment, offset, length) and its latest vote, committed and purged
//! values. Recovery rebuilds it by applying every record in log order;
//! writes apply each record as it is appended, so both paths share
//! [`Index::apply`].

use std::collections::BTreeMap;

use super::record::{self, Record, ShardCheckpoint};
use crate::storage::keys::ShardId;

/// Where one entry's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    pub segment: u64,
    pub offset: u64,
    pub len: u32,
}

#[derive(Debug, Default)]
pub struct ShardLog {
    /// Live entries by index. Appends extend the end, so locations grow
    /// with the index.
    pub entries: BTreeMap<u64, Loc>,
    pub vote: Option<Vec<u8>>,
    pub committed: Option<Vec<u8>>,
    pub purged: Option<(u64, Vec<u8>)>,
}

#[derive(Debug, Default)]
pub struct Index {
    pub shards: BTreeMap<ShardId, ShardLog>,
}

impl Index {
    pub fn shard(&self, shard: ShardId) -> Option<&ShardLog> {
        self.shards.get(&shard)
    }

    /// Applies `r`, whose frame starts at `offset` of `segment`.
    pub fn apply(&mut self, segment: u64, offset: u64, r: &Record) {
        match r {
            Record::Entries {
                shard,
                first,
                entries,
            } => {
                let log = self.shards.entry(*shard).or_default();
                log.entries.split_off(first);
                let offsets = record::entry_offsets(entries.iter().map(Vec::len));
                for (i, (e, at)) in entries.iter().zip(offsets).enumerate() {
                    let loc = Loc {
                        segment,
                        offset: offset + at,
                        len: e.len() as u32,
                    };
                    log.entries.insert(first + i as u64, loc);
                }
            }
            Record::Vote { shard, vote } => {
                self.shards.entry(*shard).or_default().vote = Some(vote.clone());
            }
            Record::Committed { shard, committed } => {
                self.shards.entry(*shard).or_default().committed = committed.clone();
            }
            Record::Truncate { shard, from } => {
                let log = self.shards.entry(*shard).or_default();
                log.entries.split_off(from);
            }
            Record::Purge {
                shard,
                upto,
                log_id,
            } => {
                let log = self.shards.entry(*shard).or_default();
                if log.purged.as_ref().is_some_and(|(p, _)| p > upto) {
                    return;
                }
                log.entries = log.entries.split_off(&upto.saturating_add(1));
                log.purged = Some((*upto, log_id.clone()));
            }
            Record::Forget { shard } => {
                self.shards.remove(shard);
            }
            Record::Checkpoint { shards } => {
                for c in shards {
                    let log = self.shards.entry(c.shard).or_default();
                    log.vote = c.vote.clone();
                    log.committed = c.committed.clone();
                    log.purged = c.purged.clone();
                }
            }
        }
    }

    /// Every shard's vote, committed and purged: written at the start of
    /// each new segment so older segments are never needed for them.
    pub fn checkpoint(&self) -> Record {
        Record::Checkpoint {
            shards: self
                .shards
                .iter()
                .map(|(id, log)| ShardCheckpoint {
                    shard: *id,
                    vote: log.vote.clone(),
                    committed: log.committed.clone(),
                    purged: log.purged.clone(),
                })
                .collect(),
        }
    }

    /// The oldest segment holding a live entry of any shard; segments
    /// before it hold nothing that is needed.
    pub fn oldest_needed_segment(&self) -> Option<u64> {
        self.shards
            .values()
            .filter_map(|log| log.entries.values().next().map(|l| l.segment))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(shard: ShardId, first: u64, n: usize) -> Record {
        Record::Entries {
            shard,
            first,
            entries: vec![vec![1; 10]; n],
        }
    }

    fn indexes(ix: &Index, shard: ShardId) -> Vec<u64> {
        ix.shard(shard)
            .map(|l| l.entries.keys().copied().collect())
            .unwrap_or_default()
    }

    #[test]
    fn appends_truncates_and_purges_shape_each_shard_alone() {
        let mut ix = Index::default();
        ix.apply(1, 16, &entries(1, 1, 5));
        ix.apply(1, 200, &entries(2, 1, 2));
        ix.apply(2, 16, &Record::Truncate { shard: 1, from: 4 });
        ix.apply(2, 40, &entries(1, 3, 2)); // overwrites 3, appends 4
        assert_eq!(indexes(&ix, 1), vec![1, 2, 3, 4]);
        assert_eq!(ix.oldest_needed_segment(), Some(1));
        ix.apply(
            2,
            90,
            &Record::Purge {
                shard: 1,
                upto: 2,
                log_id: vec![],
            },
        );
        assert_eq!(indexes(&ix, 1), vec![3, 4]);
        assert_eq!(ix.oldest_needed_segment(), Some(1), "shard 2 still in 1");
        ix.apply(
            2,
            120,
            &Record::Purge {
                shard: 2,
                upto: 2,
                log_id: vec![],
            },
        );
        assert_eq!(ix.oldest_needed_segment(), Some(2));
        assert_eq!(indexes(&ix, 2), Vec::<u64>::new());
    }
}
