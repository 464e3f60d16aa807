//! The storage-engine seam: everything durable goes through [`Engine`].

use std::sync::Arc;

/// Errors from the storage engine. Any of these means the node cannot trust
/// its disk; callers surface them, never ignore them.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("storage I/O error: {0}")]
    Io(String),
    #[error("corrupt data in storage: {0}")]
    Corrupt(String),
}

impl From<EngineError> for std::io::Error {
    fn from(e: EngineError) -> Self {
        std::io::Error::other(e.to_string())
    }
}

/// One operation of a [`WriteBatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOp {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

/// A set of writes applied atomically: after a crash either all of them are
/// visible or none.
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    pub ops: Vec<BatchOp>,
}

impl WriteBatch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(BatchOp::Put(key.into(), value.into()));
    }

    pub fn delete(&mut self, key: impl Into<Vec<u8>>) {
        self.ops.push(BatchOp::Delete(key.into()));
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Applies the batch to an in-memory key-value map, in order (the
    /// simulation's engine, and tests that check what a batch stores).
    pub fn apply_to(self, map: &mut std::collections::BTreeMap<Vec<u8>, Vec<u8>>) {
        for op in self.ops {
            match op {
                BatchOp::Put(k, v) => {
                    map.insert(k, v);
                }
                BatchOp::Delete(k) => {
                    map.remove(&k);
                }
            }
        }
    }
}

/// A key-value pair as stored.
pub type Kv = (Vec<u8>, Vec<u8>);

/// A read-only view of the engine as it was when it was taken: writes made
/// after that do not show in it. A snapshot is written from one while the
/// state machine goes on applying.
pub trait ReadView: Send + Sync {
    /// Entries with `start <= key < end`, ascending, at most `limit`, as
    /// they were when the view was taken.
    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Kv>, EngineError>;
}

pub type SharedView = Arc<dyn ReadView>;

/// An ordered key-value store with atomic batches and an explicit flush.
///
/// Writes are visible to readers as soon as `write` returns; they are
/// durable only after a later `flush` returns.
pub trait Engine: Send + Sync + 'static {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError>;

    /// Entries with `start <= key < end`, ascending, at most `limit`
    /// (`usize::MAX` for all).
    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Kv>, EngineError>;

    /// The keys in `[start, end)`, ascending, at most `limit`, without
    /// their values.
    fn scan_keys(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, EngineError> {
        Ok(self
            .scan(start, end, limit)?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }

    /// The entry with the greatest key in `[start, end)`.
    fn last_in(&self, start: &[u8], end: &[u8]) -> Result<Option<Kv>, EngineError>;

    fn write(&self, batch: WriteBatch) -> Result<(), EngineError>;

    /// A point-in-time view that holds at least the keys in `[start, end)`
    /// (an engine may cover more). Cheap to take on the production engine
    /// (an MVCC snapshot); the simulation's engine copies the range.
    fn read_view(&self, start: &[u8], end: &[u8]) -> Result<SharedView, EngineError>;

    /// Makes every write that returned before this call durable.
    fn flush(&self) -> Result<(), EngineError>;

    /// Like `flush`, and durable even against power loss: everything the
    /// engine wrote is fsync'ed. Slow; done before the Raft log is purged
    /// past what the state machine holds.
    fn checkpoint(&self) -> Result<(), EngineError> {
        self.flush()
    }
}

pub type SharedEngine = Arc<dyn Engine>;

/// Behaviour every engine must have, checked against each implementation
/// by its own tests.
#[cfg(test)]
pub(crate) mod contract {
    use super::*;

    /// A read view shows `[a, z)` as it was when it was taken: later puts,
    /// updates and deletes do not show in it, but do in the engine.
    pub(crate) fn a_read_view_keeps_the_data_as_it_was(e: &dyn Engine) {
        let mut b = WriteBatch::new();
        b.put(b"a".to_vec(), b"1".to_vec());
        b.put(b"b".to_vec(), b"2".to_vec());
        e.write(b).unwrap();
        let view = e.read_view(b"a", b"z").unwrap();
        let mut b = WriteBatch::new();
        b.put(b"a".to_vec(), b"changed".to_vec());
        b.delete(b"b".to_vec());
        b.put(b"c".to_vec(), b"3".to_vec());
        e.write(b).unwrap();
        let then = vec![
            (b"a".to_vec(), b"1".to_vec()),
            (b"b".to_vec(), b"2".to_vec()),
        ];
        assert_eq!(view.scan(b"a", b"z", 10).unwrap(), then);
        assert_eq!(e.get(b"a").unwrap(), Some(b"changed".to_vec()));
    }
}
