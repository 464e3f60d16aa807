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
    /// A key (or a scan bound) longer than the engine stores: a request
    /// that escaped the node's limits, or a corrupt snapshot or log entry.
    /// Refused instead of reaching the engine's own assertion.
    #[error(
        "a key of {0} bytes reached the storage engine, which stores keys of at most \
         {MAX_ENGINE_KEY} bytes"
    )]
    KeyTooLong(usize),
}

/// The longest key the storage engine stores (fjall / lsm-tree: a `u16`
/// length). User keys are stored behind a one-byte prefix
/// (`storage::keys`), so `config::MAX_KEY_BYTES_LIMIT` is one less.
pub const MAX_ENGINE_KEY: usize = u16::MAX as usize;

/// `Err(KeyTooLong)` unless every key in `keys` fits the engine.
pub fn check_key_lengths<'a>(keys: impl IntoIterator<Item = &'a [u8]>) -> Result<(), EngineError> {
    match keys.into_iter().find(|k| k.len() > MAX_ENGINE_KEY) {
        Some(k) => Err(EngineError::KeyTooLong(k.len())),
        None => Ok(()),
    }
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

    /// The key of every operation, in order.
    pub fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.ops.iter().map(|op| match op {
            BatchOp::Put(k, _) | BatchOp::Delete(k) => k.as_slice(),
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{FjallEngine, MemoryEngine};

    /// Both engines refuse a key longer than fjall stores, in writes and in
    /// scan bounds, with an error instead of fjall's assertion (a panic).
    #[test]
    fn over_long_keys_are_refused_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fjall = FjallEngine::open(dir.path()).expect("open");
        let memory = MemoryEngine::new();
        let engines: [&dyn Engine; 2] = [&fjall, &memory];
        let long = vec![b'k'; MAX_ENGINE_KEY + 1];
        let longest = vec![b'k'; MAX_ENGINE_KEY];
        for e in engines {
            let mut b = WriteBatch::new();
            b.put(b"a".to_vec(), b"1".to_vec());
            b.put(long.clone(), b"2".to_vec());
            assert!(matches!(e.write(b), Err(EngineError::KeyTooLong(n)) if n == long.len()));
            assert_eq!(
                e.get(b"a").expect("get"),
                None,
                "nothing of the batch is written"
            );
            let mut b = WriteBatch::new();
            b.put(longest.clone(), b"3".to_vec());
            e.write(b).expect("the longest key fits");
            assert!(matches!(
                e.scan(b"a", &long, 10),
                Err(EngineError::KeyTooLong(_))
            ));
            assert!(matches!(
                e.scan_keys(&long, &[0xff; 2], 10),
                Err(EngineError::KeyTooLong(_))
            ));
            assert!(matches!(
                e.last_in(b"a", &long),
                Err(EngineError::KeyTooLong(_))
            ));
            assert_eq!(e.get(&long).expect("get"), None);
            let view = e.read_view(b"a", b"z").expect("view");
            assert!(matches!(
                view.scan(b"a", &long, 10),
                Err(EngineError::KeyTooLong(_))
            ));
            assert_eq!(e.scan(b"a", b"l", 10).expect("scan").len(), 1);
        }
    }
}
