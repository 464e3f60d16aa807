//! The production engine: one sled database per node.

use std::path::Path;

use super::engine::{BatchOp, Engine, EngineError, Kv, WriteBatch};

pub struct SledEngine {
    db: sled::Db,
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
        Ok(Self { db })
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
}
