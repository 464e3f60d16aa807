//! openraft log storage for one shard: entries under `keys::log(shard, i)`,
//! vote / committed / purged under the shard's raft-meta keys.
//!
//! An append is acknowledged to openraft (`LogFlushed`) only after the
//! engine flush that covers it; the vote is flushed before `save_vote`
//! returns.

// openraft's trait methods return its (large) `StorageError`; our helpers
// return the same type rather than converting at every call.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, LogState, OptionalSend, RaftLogReader, StorageIOError};

use super::engine::{EngineError, SharedEngine, WriteBatch};
use super::flusher::Flusher;
use super::keys::{self, RaftMeta, ShardId};
use crate::codec;
use crate::raft::type_config::{Entry, LogId, StorageError, TypeConfig, Vote};

/// Log storage of one shard. Clones share the same underlying engine and
/// serve as openraft's log reader.
#[derive(Clone)]
pub struct LogStore {
    shard: ShardId,
    engine: SharedEngine,
    flusher: Flusher,
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_logs(AnyError::new(&e)).into()
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

fn vote_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_vote(AnyError::new(&e)).into()
}

/// The vote a restarted replica resumes with: the same term and candidate,
/// but never "committed".
///
/// openraft 0.9 restarts a replica whose stored vote is committed for itself
/// straight into leadership of that same term. That is unsafe when the old
/// leader lost unflushed log entries in the crash: two followers may have
/// committed (and a client seen acknowledged) entry N, and the restarted
/// leader would write a different entry N in the same term, which followers
/// take for the one they have. The simulation caught exactly this
/// (crashes schedule, seed 2611). Reporting the vote as not committed makes
/// the replica start as a follower and win a fresh election first, as in
/// standard Raft. See docs/decisions/0006-no-leadership-across-restarts.md.
pub fn restart_as_candidate(vote: Vote) -> Vote {
    #[cfg(all(madsim, feature = "sim-bugs"))]
    if crate::sim_hooks::bug(crate::sim_hooks::Bug::ResumeLeadership) {
        return vote;
    }
    Vote {
        committed: false,
        ..vote
    }
}

impl LogStore {
    pub fn new(shard: ShardId, engine: SharedEngine, flusher: Flusher) -> Self {
        Self {
            shard,
            engine,
            flusher,
        }
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        &self,
        which: RaftMeta,
    ) -> Result<Option<T>, StorageError> {
        match self
            .engine
            .get(&keys::raft_meta(self.shard, which))
            .map_err(read_err)?
        {
            None => Ok(None),
            Some(bytes) => Ok(Some(codec::decode("raft meta", &bytes).map_err(read_err)?)),
        }
    }

    fn last_log_id(&self) -> Result<Option<LogId>, StorageError> {
        let (lo, hi) = keys::log_range_from(self.shard, 0);
        match self.engine.last_in(&lo, &hi).map_err(read_err)? {
            None => Ok(None),
            Some((_, bytes)) => {
                let e: Entry = codec::decode("log entry", &bytes).map_err(read_err)?;
                Ok(Some(e.log_id))
            }
        }
    }

    /// Deletes every entry with index in `[from, to)`.
    fn delete_range(&self, batch: &mut WriteBatch, from: u64, to: u64) -> Result<(), EngineError> {
        let lo = keys::log(self.shard, from);
        let hi = if to == u64::MAX {
            keys::log_range_from(self.shard, 0).1
        } else {
            keys::log(self.shard, to)
        };
        for (k, _) in self.engine.scan(&lo, &hi, usize::MAX)? {
            batch.delete(k);
        }
        Ok(())
    }

    async fn write_durably(&self, batch: WriteBatch) -> Result<(), EngineError> {
        self.engine.write(batch)?;
        self.flusher.flush().await
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let hi = match range.end_bound() {
            Bound::Included(&i) if i < u64::MAX => keys::log(self.shard, i + 1),
            Bound::Excluded(&i) => keys::log(self.shard, i),
            _ => keys::log_range_from(self.shard, 0).1,
        };
        let lo = keys::log(self.shard, start);
        let rows = self.engine.scan(&lo, &hi, usize::MAX).map_err(read_err)?;
        rows.iter()
            .map(|(_, v)| codec::decode("log entry", v).map_err(read_err))
            .collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let purged: Option<LogId> = self.read_meta(RaftMeta::Purged)?;
        let last = self.last_log_id()?.or(purged);
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let mut batch = WriteBatch::new();
        batch.put(
            keys::raft_meta(self.shard, RaftMeta::Vote),
            codec::encode("vote", vote).map_err(vote_err)?,
        );
        self.write_durably(batch).await.map_err(vote_err)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self
            .read_meta::<Vote>(RaftMeta::Vote)?
            .map(restart_as_candidate))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not flushed: losing it only means re-deriving it from a quorum.
        let mut batch = WriteBatch::new();
        let key = keys::raft_meta(self.shard, RaftMeta::Committed);
        match committed {
            Some(c) => batch.put(key, codec::encode("committed", &c).map_err(write_err)?),
            None => batch.delete(key),
        }
        self.engine.write(batch).map_err(write_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        self.read_meta(RaftMeta::Committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = WriteBatch::new();
        for entry in entries {
            let bytes = codec::encode("log entry", &entry).map_err(write_err)?;
            batch.put(keys::log(self.shard, entry.log_id.index), bytes);
        }
        self.engine.write(batch).map_err(write_err)?;
        #[cfg(all(madsim, feature = "sim-bugs"))]
        if crate::sim_hooks::bug(crate::sim_hooks::Bug::AckBeforeFlush) {
            callback.log_io_completed(Ok(()));
            return Ok(());
        }
        self.flusher
            .after_flush(move |r| callback.log_io_completed(r.map_err(Into::into)));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut batch = WriteBatch::new();
        self.delete_range(&mut batch, log_id.index, u64::MAX)
            .map_err(write_err)?;
        self.write_durably(batch).await.map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut batch = WriteBatch::new();
        batch.put(
            keys::raft_meta(self.shard, RaftMeta::Purged),
            codec::encode("purged", &log_id).map_err(write_err)?,
        );
        self.delete_range(&mut batch, 0, log_id.index + 1)
            .map_err(write_err)?;
        // The flush also makes the state machine durable up to the snapshot
        // this purge follows, so a restart never needs a purged entry.
        self.write_durably(batch).await.map_err(write_err)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use openraft::storage::RaftLogStorage;

    use super::*;
    use crate::storage::MemoryEngine;

    #[tokio::test]
    async fn a_restarted_leader_does_not_resume_leadership_but_keeps_its_term() {
        let engine: SharedEngine = Arc::new(MemoryEngine::new());
        let mut log = LogStore::new(1, engine.clone(), Flusher::spawn(engine.clone()));
        log.save_vote(&Vote::new_committed(7, 3)).await.unwrap();
        let back = log.read_vote().await.unwrap().unwrap();
        assert!(
            !back.is_committed(),
            "a committed vote would restart the node as leader"
        );
        assert_eq!(back, Vote::new(7, 3));
    }
}
