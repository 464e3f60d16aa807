//! openraft log storage for one shard, over the node's write-ahead log
//! ([`crate::wal`]): entries, vote, committed and purged are records in the
//! WAL that every shard of the node shares.
//!
//! An append is acknowledged to openraft (`LogFlushed`) only after the WAL
//! sync that covers it (group commit across shards); the vote and a
//! truncation are synced before `save_vote` / `truncate` return.

// openraft's trait methods return its (large) `StorageError`; our helpers
// return the same type rather than converting at every call.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, LogState, OptionalSend, RaftLogReader, StorageIOError};

use super::flusher::Flusher;
use super::keys::ShardId;
use crate::broken::{self, Mode};
use crate::codec;
use crate::raft::type_config::{Entry, LogId, StorageError, TypeConfig, Vote};
use crate::wal::Wal;

/// Log storage of one shard. Clones share the same WAL and serve as
/// openraft's log reader.
#[derive(Clone)]
pub struct LogStore {
    shard: ShardId,
    wal: Wal,
    /// The state machine's engine flush, done before a purge.
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
    pub fn new(shard: ShardId, wal: Wal, flusher: Flusher) -> Self {
        Self {
            shard,
            wal,
            flusher,
        }
    }

    fn decode_meta<T: serde::de::DeserializeOwned>(
        what: &'static str,
        bytes: Option<Vec<u8>>,
    ) -> Result<Option<T>, StorageError> {
        bytes
            .map(|b| codec::decode(what, &b).map_err(read_err))
            .transpose()
    }

    fn last_log_id(&self) -> Result<Option<LogId>, StorageError> {
        match self.wal.last_entry(self.shard).map_err(read_err)? {
            None => Ok(None),
            Some(bytes) => {
                let e: Entry = codec::decode("log entry", &bytes).map_err(read_err)?;
                Ok(Some(e.log_id))
            }
        }
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
        let end = match range.end_bound() {
            Bound::Included(&i) => i.saturating_add(1),
            Bound::Excluded(&i) => i,
            Bound::Unbounded => u64::MAX,
        };
        let rows = self.wal.entries(self.shard, start, end).map_err(read_err)?;
        rows.iter()
            .map(|v| codec::decode("log entry", v).map_err(read_err))
            .collect()
    }

    /// The replication streams' read. openraft sends what it returns as
    /// the consecutive entries from `start`. A purge that runs while a
    /// stream reads (the leader compacts its log while a follower lags) can
    /// leave the start of the range gone and its rest present; sent as is,
    /// that was a follower log with a hole, and a panic when the follower
    /// applied it (`splits`, crashes, seed 538). So this returns only
    /// entries from `start` on, without a hole; none if `start` is gone, and
    /// the stream looks again, finds the entries purged and sends a snapshot.
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        let entries = self.try_get_log_entries(start..end).await?;
        Ok(consecutive_from(start, entries))
    }
}

/// The entries that follow on from index `start` without a hole.
fn consecutive_from(start: u64, mut entries: Vec<Entry>) -> Vec<Entry> {
    let run = entries
        .iter()
        .zip(start..)
        .take_while(|(e, want)| e.log_id.index == *want)
        .count();
    entries.truncate(run);
    entries
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let purged: Option<LogId> = Self::decode_meta("purged", self.wal.purged(self.shard))?;
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
        let bytes = codec::encode("vote", vote).map_err(vote_err)?;
        self.wal
            .save_vote(self.shard, bytes)
            .await
            .map_err(vote_err)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(Self::decode_meta::<Vote>("vote", self.wal.vote(self.shard))?.map(restart_as_candidate))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not synced: losing it only means re-deriving it from a quorum.
        let bytes = committed
            .map(|c| codec::encode("committed", &c))
            .transpose()
            .map_err(write_err)?;
        self.wal
            .save_committed(self.shard, bytes)
            .map_err(write_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Self::decode_meta("committed", self.wal.committed(self.shard))
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
        let mut first = None;
        let mut encoded = Vec::new();
        for entry in entries {
            first.get_or_insert(entry.log_id.index);
            encoded.push(codec::encode("log entry", &entry).map_err(write_err)?);
        }
        if let Some(first) = first {
            self.wal
                .append_entries(self.shard, first, encoded)
                .map_err(write_err)?;
        }
        if broken::on(Mode::AckBeforeSync) {
            callback.log_io_completed(Ok(()));
            if broken::lazy_sync_due() {
                self.wal.after_sync(|_| {});
            }
            return Ok(());
        }
        self.wal
            .after_sync(move |r| callback.log_io_completed(r.map_err(Into::into)));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.wal
            .truncate(self.shard, log_id.index)
            .await
            .map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // The state machine must be durable up to the snapshot this purge
        // follows before the log forgets the entries: a restart replays the
        // log from the state machine's durable applied index. The engine
        // fsyncs nothing per write, so this is a real checkpoint (fsync).
        self.flusher.checkpoint().await.map_err(write_err)?;
        let bytes = codec::encode("purged", &log_id).map_err(write_err)?;
        self.wal
            .purge(self.shard, log_id.index, bytes)
            .await
            .map_err(write_err)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use openraft::storage::RaftLogStorage;

    use super::*;
    use crate::raft::type_config::ReplicaId;
    use crate::storage::engine::SharedEngine;
    use crate::storage::MemoryEngine;
    use crate::wal::{self, SimFs, WalOptions};

    #[test]
    fn a_read_returns_only_the_entries_that_follow_on_from_its_start() {
        let e = |index: u64| Entry {
            log_id: openraft::testing::log_id(1, ReplicaId(1), index),
            payload: openraft::EntryPayload::Blank,
        };
        let idx = |v: Vec<Entry>| v.iter().map(|e| e.log_id.index).collect::<Vec<_>>();
        assert_eq!(
            idx(consecutive_from(5, vec![e(5), e(6), e(7)])),
            vec![5, 6, 7]
        );
        assert_eq!(idx(consecutive_from(5, vec![e(5), e(6), e(9)])), vec![5, 6]);
        assert!(
            consecutive_from(5, vec![e(8), e(9)]).is_empty(),
            "start purged"
        );
        assert!(consecutive_from(5, vec![]).is_empty());
    }

    #[tokio::test]
    async fn a_restarted_leader_does_not_resume_leadership_but_keeps_its_term() {
        let engine: SharedEngine = Arc::new(MemoryEngine::new());
        let disk = Arc::new(SimFs::new());
        let wal = wal::open(disk, "/wal", WalOptions::default()).unwrap();
        let mut log = LogStore::new(1, wal, Flusher::spawn(engine));
        log.save_vote(&Vote::new_committed(7, ReplicaId(3)))
            .await
            .unwrap();
        let back = log.read_vote().await.unwrap().unwrap();
        assert!(
            !back.is_committed(),
            "a committed vote would restart the node as leader"
        );
        assert_eq!(back, Vote::new(7, ReplicaId(3)));
    }
}
