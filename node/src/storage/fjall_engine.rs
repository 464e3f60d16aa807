//! The production engine: one fjall database per node (an LSM tree; see
//! `docs/decisions/0025-state-machine-on-fjall.md` for why not sled).
//!
//! Every key lives in one keyspace (`state`), laid out by [`super::keys`]
//! as it was on sled. A [`WriteBatch`] is one fjall batch: it lands in
//! fjall's journal as one record, so after a crash all of it or none of it
//! is there, and it is handed to the OS (`write`) before `write` returns, so
//! a killed process keeps it. Nothing is fsync'ed per batch: the state
//! machine is rebuilt from the Raft log after a power cut, and the log is
//! purged only past a [`Engine::checkpoint`], which fsyncs the journal
//! (fjall fsyncs its table files and directories when it writes them).
//!
//! A writeback thread fsyncs the journal every [`WRITEBACK_EVERY`] while
//! writes come in. Not for durability (the Raft log has that): fjall fsyncs
//! the whole journal, under the lock every write takes, each time it flushes
//! a memtable, and without the thread that was ~100 MB of dirty pages at
//! once, a 100–220 ms pause of every write on the node (docs/benchmarks.md,
//! "Tail latency of writes").

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable};

use super::engine::{
    check_key_lengths, BatchOp, Engine, EngineError, Kv, ReadView, SharedView, WriteBatch,
};

/// The one keyspace that holds every key of the node.
const KEYSPACE: &str = "state";

/// Block cache: reads of recent keys mostly hit the memtables; this bounds
/// what older table blocks may take (the budget of issue 8 is 512 MiB with
/// 1M keys of 256 B).
const CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// How often the writeback thread fsyncs the journal while there are writes.
const WRITEBACK_EVERY: Duration = Duration::from_millis(100);

pub struct FjallEngine {
    db: Database,
    state: Keyspace,
    /// Set by every write; the writeback thread clears it.
    dirty: Arc<AtomicBool>,
    writeback: Option<Writeback>,
}

/// The writeback thread; it stops when `stop` is dropped.
struct Writeback {
    stop: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Writeback {
    fn spawn(db: Database, dirty: Arc<AtomicBool>) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("atoll-sm-writeback".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(WRITEBACK_EVERY)
                {
                    if dirty.swap(false, Ordering::Relaxed) {
                        // A failure here poisons fjall, and the next write
                        // reports it as a typed error.
                        if let Err(e) = db.persist(PersistMode::SyncData) {
                            tracing::warn!(error = %e, "state machine journal writeback failed");
                        }
                    }
                }
            })?;
        Ok(Self { stop, thread })
    }

    fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

/// Gives fjall's worker threads (memtable flushes and compactions) the
/// background priority ([`crate::background`]; threads they start inherit
/// it). A flush that falls behind still stops writes (fjall halts them at
/// four sealed memtables), so it is never starved for long. Best effort: a
/// thread that cannot be found keeps the normal priority.
fn lower_background_priority() {
    #[cfg(all(target_os = "linux", not(madsim)))]
    {
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return;
        };
        for task in tasks.flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            let tid = task.file_name().to_string_lossy().parse::<libc::id_t>();
            if let (true, Ok(tid)) = (comm.starts_with("fjall:"), tid) {
                crate::background::lower_thread(tid);
            }
        }
    }
}

impl Drop for FjallEngine {
    fn drop(&mut self) {
        // The thread holds a handle of the database: the database closes
        // (and its directory lock goes) only after the thread has stopped.
        if let Some(w) = self.writeback.take() {
            w.stop();
        }
    }
}

fn err(e: fjall::Error) -> EngineError {
    match e {
        fjall::Error::Io(e) => EngineError::Io(e.to_string()),
        fjall::Error::Poisoned => EngineError::Io(
            "an earlier write to the database failed (disk full or I/O error); \
             it takes no more writes until the node restarts"
                .into(),
        ),
        other @ (fjall::Error::JournalRecovery(_)
        | fjall::Error::InvalidTrailer
        | fjall::Error::InvalidTag(_)
        | fjall::Error::Decompress(_)) => EngineError::Corrupt(other.to_string()),
        other => EngineError::Io(other.to_string()),
    }
}

impl FjallEngine {
    /// Opens (or creates) the database under `dir`.
    pub fn open(dir: &Path) -> Result<Self, EngineError> {
        let opened = Database::builder(dir)
            .cache_size(CACHE_BYTES)
            .open()
            .and_then(|db| {
                let state = db.keyspace(KEYSPACE, KeyspaceCreateOptions::default)?;
                Ok((db, state))
            });
        match opened {
            Ok((db, state)) => {
                lower_background_priority();
                let dirty = Arc::new(AtomicBool::new(false));
                let writeback = Writeback::spawn(db.clone(), dirty.clone()).map_err(|e| {
                    EngineError::Io(format!("cannot start the journal writeback thread: {e}"))
                })?;
                Ok(Self {
                    db,
                    state,
                    dirty,
                    writeback: Some(writeback),
                })
            }
            Err(e) => {
                let reason = err(e);
                Err(match reason {
                    EngineError::Corrupt(r) => EngineError::Corrupt(format!(
                        "cannot open database at {}: {r}",
                        dir.display()
                    )),
                    EngineError::Io(r) => {
                        EngineError::Io(format!("cannot open database at {}: {r}", dir.display()))
                    }
                    other @ EngineError::KeyTooLong(_) => other,
                })
            }
        }
    }
}

/// An MVCC snapshot of the database: taking it copies nothing; fjall keeps
/// the versions it sees until it is dropped.
struct FjallView {
    snapshot: fjall::Snapshot,
    state: Keyspace,
}

impl ReadView for FjallView {
    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Kv>, EngineError> {
        if start >= end {
            return Ok(Vec::new());
        }
        check_key_lengths([start, end])?;
        let mut out = Vec::new();
        for item in self.snapshot.range(&self.state, start..end).take(limit) {
            let (k, v) = item.into_inner().map_err(err)?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }
}

impl Engine for FjallEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        if key.len() > super::engine::MAX_ENGINE_KEY {
            return Ok(None); // no stored key is that long
        }
        Ok(self.state.get(key).map_err(err)?.map(|v| v.to_vec()))
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Kv>, EngineError> {
        if start >= end {
            return Ok(Vec::new());
        }
        check_key_lengths([start, end])?;
        let mut out = Vec::new();
        for item in self.state.range(start..end).take(limit) {
            let (k, v) = item.into_inner().map_err(err)?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    fn scan_keys(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, EngineError> {
        if start >= end {
            return Ok(Vec::new());
        }
        check_key_lengths([start, end])?;
        let mut out = Vec::new();
        for item in self.state.range(start..end).take(limit) {
            out.push(item.key().map_err(err)?.to_vec());
        }
        Ok(out)
    }

    fn last_in(&self, start: &[u8], end: &[u8]) -> Result<Option<Kv>, EngineError> {
        if start >= end {
            return Ok(None);
        }
        check_key_lengths([start, end])?;
        match self.state.range(start..end).next_back() {
            None => Ok(None),
            Some(item) => {
                let (k, v) = item.into_inner().map_err(err)?;
                Ok(Some((k.to_vec(), v.to_vec())))
            }
        }
    }

    fn read_view(&self, _start: &[u8], _end: &[u8]) -> Result<SharedView, EngineError> {
        Ok(Arc::new(FjallView {
            snapshot: self.db.snapshot(),
            state: self.state.clone(),
        }))
    }

    fn write(&self, batch: WriteBatch) -> Result<(), EngineError> {
        check_key_lengths(batch.keys())?;
        let mut b = self.db.batch();
        for op in batch.ops {
            match op {
                BatchOp::Put(k, v) => b.insert(&self.state, k, v),
                BatchOp::Delete(k) => b.remove(&self.state, k),
            }
        }
        b.commit().map_err(err)?;
        self.dirty.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Every batch is handed to the OS when it is written, so a killed
    /// process loses nothing; this adds only the buffer flush.
    fn flush(&self) -> Result<(), EngineError> {
        self.db.persist(PersistMode::Buffer).map_err(err)
    }

    /// fsyncs fjall's journal (data and metadata): with it, every write
    /// before this call survives a power cut. Table files and the version
    /// file are fsync'ed by fjall as it writes them.
    fn checkpoint(&self) -> Result<(), EngineError> {
        self.db.persist(PersistMode::SyncAll).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(e: &FjallEngine, k: &[u8], v: &[u8]) {
        let mut b = WriteBatch::new();
        b.put(k.to_vec(), v.to_vec());
        e.write(b).unwrap();
    }

    #[test]
    fn a_checkpoint_keeps_the_data_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let e = FjallEngine::open(&dir.path().join("db")).unwrap();
        let mut b = WriteBatch::new();
        b.put(b"k".to_vec(), vec![7; 100_000]);
        b.put(b"j".to_vec(), b"x".to_vec());
        e.write(b).unwrap();
        e.checkpoint().unwrap();
        drop(e);
        let e = FjallEngine::open(&dir.path().join("db")).unwrap();
        assert_eq!(e.get(b"k").unwrap(), Some(vec![7; 100_000]));
        assert_eq!(e.get(b"j").unwrap(), Some(b"x".to_vec()));
    }

    #[test]
    fn scans_are_ordered_bounded_and_see_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let e = FjallEngine::open(dir.path()).unwrap();
        for k in [b"a", b"b", b"c", b"d"] {
            put(&e, k, k);
        }
        let mut b = WriteBatch::new();
        b.delete(b"b".to_vec());
        e.write(b).unwrap();
        let got = e.scan(b"a", b"d", usize::MAX).unwrap();
        assert_eq!(
            got,
            vec![
                (b"a".to_vec(), b"a".to_vec()),
                (b"c".to_vec(), b"c".to_vec())
            ]
        );
        assert_eq!(
            e.scan_keys(b"a", b"z", 2).unwrap(),
            vec![b"a".to_vec(), b"c".to_vec()]
        );
        assert_eq!(
            e.last_in(b"a", b"d").unwrap(),
            Some((b"c".to_vec(), b"c".to_vec()))
        );
        assert_eq!(e.last_in(b"x", b"z").unwrap(), None);
        assert!(e.scan(b"d", b"a", usize::MAX).unwrap().is_empty());
    }

    #[test]
    fn a_read_view_keeps_the_data_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let e = FjallEngine::open(dir.path()).unwrap();
        crate::storage::engine::contract::a_read_view_keeps_the_data_as_it_was(&e);
    }
}
