//! Executing one write against the data keyspace, through an overlay so
//! later entries of the same apply batch see earlier ones, and so the whole
//! batch lands in one atomic engine write.

use std::collections::BTreeMap;

use crate::command::{Response, WriteOp};
use crate::storage::engine::{EngineError, SharedEngine, WriteBatch};
use crate::storage::keys;

/// Pending data writes of one apply batch over the engine's current state.
pub struct Overlay<'a> {
    engine: &'a SharedEngine,
    pending: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl<'a> Overlay<'a> {
    pub fn new(engine: &'a SharedEngine) -> Self {
        Self {
            engine,
            pending: BTreeMap::new(),
        }
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        match self.pending.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.engine.get(&keys::data(key)),
        }
    }

    fn set(&mut self, key: &[u8], value: Option<Vec<u8>>) {
        self.pending.insert(key.to_vec(), value);
    }

    /// Moves the pending writes into `batch`.
    pub fn drain_into(&mut self, batch: &mut WriteBatch) {
        for (k, v) in std::mem::take(&mut self.pending) {
            match v {
                Some(v) => batch.put(keys::data(&k), v),
                None => batch.delete(keys::data(&k)),
            }
        }
    }
}

/// Applies `op`; the caller has already checked ranges and dedup.
pub fn execute(op: WriteOp, data: &mut Overlay<'_>) -> Result<Response, EngineError> {
    Ok(match op {
        WriteOp::Put { key, value } => {
            data.set(&key, Some(value));
            Response::Put
        }
        WriteOp::Delete { key } => {
            let existed = data.get(&key)?.is_some();
            data.set(&key, None);
            Response::Delete { existed }
        }
        WriteOp::Cas { key, expected, new } => {
            let previous = data.get(&key)?;
            let succeeded = previous == expected;
            if succeeded {
                data.set(&key, new);
            }
            Response::Cas {
                succeeded,
                previous,
            }
        }
        WriteOp::Batch(mutations) => {
            for (key, value) in mutations {
                data.set(&key, value);
            }
            Response::Batch
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::storage::MemoryEngine;

    fn put(k: &[u8], v: &[u8]) -> WriteOp {
        WriteOp::Put {
            key: k.to_vec(),
            value: v.to_vec(),
        }
    }

    #[test]
    fn cas_sees_writes_earlier_in_the_same_batch() {
        let engine: SharedEngine = Arc::new(MemoryEngine::new());
        let mut o = Overlay::new(&engine);
        execute(put(b"k", b"1"), &mut o).unwrap();
        let r = execute(
            WriteOp::Cas {
                key: b"k".to_vec(),
                expected: Some(b"1".to_vec()),
                new: Some(b"2".to_vec()),
            },
            &mut o,
        )
        .unwrap();
        assert_eq!(
            r,
            Response::Cas {
                succeeded: true,
                previous: Some(b"1".to_vec())
            }
        );
        let r = execute(
            WriteOp::Cas {
                key: b"k".to_vec(),
                expected: None,
                new: None,
            },
            &mut o,
        )
        .unwrap();
        assert_eq!(
            r,
            Response::Cas {
                succeeded: false,
                previous: Some(b"2".to_vec())
            }
        );
        let mut b = WriteBatch::new();
        o.drain_into(&mut b);
        engine.write(b).unwrap();
        assert_eq!(engine.get(&keys::data(b"k")).unwrap(), Some(b"2".to_vec()));
    }

    #[test]
    fn delete_reports_whether_the_key_existed_and_batch_mixes_ops() {
        let engine: SharedEngine = Arc::new(MemoryEngine::new());
        let mut o = Overlay::new(&engine);
        let batch = WriteOp::Batch(vec![
            (b"a".to_vec(), Some(b"1".to_vec())),
            (b"b".to_vec(), None),
        ]);
        assert_eq!(execute(batch, &mut o).unwrap(), Response::Batch);
        assert_eq!(
            execute(WriteOp::Delete { key: b"a".to_vec() }, &mut o).unwrap(),
            Response::Delete { existed: true }
        );
        assert_eq!(
            execute(WriteOp::Delete { key: b"a".to_vec() }, &mut o).unwrap(),
            Response::Delete { existed: false }
        );
    }
}
