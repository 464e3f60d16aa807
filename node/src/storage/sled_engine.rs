//! The production engine: one sled database per node.

use std::path::Path;

use super::engine::{BatchOp, Engine, EngineError, Kv, WriteBatch};

pub struct SledEngine {
    db: sled::Db,
    dir: std::path::PathBuf,
}

fn io(e: sled::Error) -> EngineError {
    match e {
        sled::Error::Corruption { .. } => EngineError::Corrupt(e.to_string()),
        other => EngineError::Io(other.to_string()),
    }
}

impl SledEngine {
    /// Opens (or creates) the database under `dir`.
    pub fn open(dir: &Path) -> Result<Self, EngineError> {
        let db = sled::Config::new()
            .path(dir)
            // Durability comes from explicit flushes; the background flusher
            // only bounds how much unflushed state-machine data can pile up.
            .flush_every_ms(Some(1000))
            .open()
            .map_err(|e| {
                EngineError::Io(format!("cannot open database at {}: {e}", dir.display()))
            })?;
        Ok(Self {
            db,
            dir: dir.to_path_buf(),
        })
    }
}

/// fsyncs every file below `dir`, then `dir` itself.
fn sync_tree(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() || kind.is_file() {
            sync_listed(&entry.path(), kind.is_dir())?;
        }
    }
    std::fs::File::open(dir)?.sync_all()
}

/// Syncs a file or directory tree that a directory listing showed. sled
/// may have removed it since (a blob, an old snapshot of its own): then
/// there is nothing left to sync, and its removal is made durable by the
/// sync of the directory that listed it.
fn sync_listed(path: &Path, is_dir: bool) -> std::io::Result<()> {
    let synced = if is_dir {
        sync_tree(path)
    } else {
        std::fs::File::open(path).and_then(|f| f.sync_all())
    };
    match synced {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

impl Engine for SledEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        Ok(self.db.get(key).map_err(io)?.map(|v| v.to_vec()))
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Kv>, EngineError> {
        if start >= end {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for item in self.db.range(start..end) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.map_err(io)?;
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
        let mut out = Vec::new();
        for key in self.db.range(start..end).keys().take(limit) {
            out.push(key.map_err(io)?.to_vec());
        }
        Ok(out)
    }

    fn last_in(&self, start: &[u8], end: &[u8]) -> Result<Option<Kv>, EngineError> {
        if start >= end {
            return Ok(None);
        }
        match self.db.range(start..end).next_back() {
            None => Ok(None),
            Some(item) => {
                let (k, v) = item.map_err(io)?;
                Ok(Some((k.to_vec(), v.to_vec())))
            }
        }
    }

    fn write(&self, batch: WriteBatch) -> Result<(), EngineError> {
        let mut b = sled::Batch::default();
        for op in batch.ops {
            match op {
                BatchOp::Put(k, v) => b.insert(k, v),
                BatchOp::Delete(k) => b.remove(k),
            }
        }
        self.db.apply_batch(b).map_err(io)
    }

    fn flush(&self) -> Result<(), EngineError> {
        self.db.flush().map(|_| ()).map_err(io)
    }

    /// sled's flush writes its log with `sync_file_range`, which neither
    /// flushes the device cache nor persists file sizes, and never syncs
    /// its blob files; so after it, every file of the database (and the
    /// directories) is fsync'ed here.
    fn checkpoint(&self) -> Result<(), EngineError> {
        self.flush()?;
        sync_tree(&self.dir)
            .map_err(|e| EngineError::Io(format!("fsync of {}: {e}", self.dir.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_gone_between_listing_and_syncing_is_no_error_but_a_missing_tree_is() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/f"), b"x").unwrap();
        sync_tree(dir.path()).unwrap();
        // Listed, then removed by sled before it was opened.
        sync_listed(&dir.path().join("sub/removed"), false).unwrap();
        sync_listed(&dir.path().join("removed-dir"), true).unwrap();
        assert!(sync_tree(&dir.path().join("nothing-here")).is_err());
    }

    #[test]
    fn a_checkpoint_syncs_every_file_and_keeps_the_data() {
        let dir = tempfile::tempdir().unwrap();
        let e = SledEngine::open(&dir.path().join("db")).unwrap();
        let mut b = WriteBatch::new();
        b.put(b"k".to_vec(), vec![7; 100_000]);
        e.write(b).unwrap();
        e.checkpoint().unwrap();
        drop(e);
        let e = SledEngine::open(&dir.path().join("db")).unwrap();
        assert_eq!(e.get(b"k").unwrap(), Some(vec![7; 100_000]));
    }
}
