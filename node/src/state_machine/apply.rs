//! Executing one write against the data keyspace, through an overlay so
//! later entries of the same apply batch see earlier ones, and so the whole
//! batch lands in one atomic engine write.
//!
//! A transaction ([`WriteOp::Txn`]) runs here too: its compares read the
//! overlay, its ops write it one after the other, so it sees the batch's
//! earlier entries, its own earlier ops see through to later ones, and
//! nothing else runs in between.

use std::collections::BTreeMap;

use crate::command::{Compare, Response, TxnOp, TxnOpResult, WriteOp};
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
        WriteOp::Txn {
            compares,
            success,
            failure,
        } => txn(&compares, success, failure, data)?,
    })
}

/// Evaluates the compares, then runs the branch they chose, in order.
fn txn(
    compares: &[Compare],
    success: Vec<TxnOp>,
    failure: Vec<TxnOp>,
    data: &mut Overlay<'_>,
) -> Result<Response, EngineError> {
    let mut succeeded = true;
    for compare in compares {
        if !compare.holds(data.get(&compare.key)?.as_deref()) {
            succeeded = false;
            break;
        }
    }
    let branch = if succeeded { success } else { failure };
    let mut results = Vec::with_capacity(branch.len());
    for op in branch {
        results.push(match op {
            TxnOp::Put { key, value } => {
                data.set(&key, Some(value));
                TxnOpResult::Put
            }
            TxnOp::Delete { key } => {
                let existed = data.get(&key)?.is_some();
                data.set(&key, None);
                TxnOpResult::Delete { existed }
            }
            TxnOp::Get { key } => TxnOpResult::Get {
                value: data.get(&key)?,
            },
        });
    }
    Ok(Response::Txn { succeeded, results })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::command::CompareOp;
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

    fn cmp(k: &[u8], op: CompareOp, v: Option<&[u8]>) -> Compare {
        Compare {
            key: k.to_vec(),
            op,
            value: v.map(<[u8]>::to_vec),
        }
    }

    fn get(k: &[u8]) -> TxnOp {
        TxnOp::Get { key: k.to_vec() }
    }

    fn txn_put(k: &[u8], v: &[u8]) -> TxnOp {
        TxnOp::Put {
            key: k.to_vec(),
            value: v.to_vec(),
        }
    }

    /// Runs a txn whose success branch reads "yes" and failure branch "no".
    fn which_branch(o: &mut Overlay<'_>, compares: Vec<Compare>) -> bool {
        let op = WriteOp::Txn {
            compares,
            success: vec![],
            failure: vec![],
        };
        match execute(op, o).unwrap() {
            Response::Txn { succeeded, results } => {
                assert!(results.is_empty());
                succeeded
            }
            other => panic!("not a txn answer: {other:?}"),
        }
    }

    #[test]
    fn txn_compares_values_and_absence() {
        use CompareOp::{Equal, NotEqual};
        let engine: SharedEngine = Arc::new(MemoryEngine::new());
        let mut o = Overlay::new(&engine);
        execute(put(b"k", b"v"), &mut o).unwrap();
        let cases: [(Compare, bool); 8] = [
            (cmp(b"k", Equal, Some(b"v")), true),
            (cmp(b"k", Equal, Some(b"w")), false),
            (cmp(b"k", NotEqual, Some(b"w")), true),
            (cmp(b"k", NotEqual, Some(b"v")), false),
            // Unset value = absence.
            (cmp(b"k", Equal, None), false),
            (cmp(b"k", NotEqual, None), true),
            (cmp(b"gone", Equal, None), true),
            (cmp(b"gone", NotEqual, None), false),
        ];
        for (compare, expected) in cases {
            assert_eq!(
                which_branch(&mut o, vec![compare.clone()]),
                expected,
                "{compare:?}"
            );
        }
        // An empty value is a present key, not an absent one.
        execute(put(b"empty", b""), &mut o).unwrap();
        assert!(which_branch(&mut o, vec![cmp(b"empty", NotEqual, None)]));
        assert!(which_branch(&mut o, vec![cmp(b"empty", Equal, Some(b""))]));
        // All must hold; none is vacuously true.
        assert!(!which_branch(
            &mut o,
            vec![cmp(b"k", Equal, Some(b"v")), cmp(b"gone", NotEqual, None)]
        ));
        assert!(which_branch(&mut o, vec![]));
    }

    #[test]
    fn txn_runs_only_the_chosen_branch_and_its_ops_see_earlier_ones() {
        let engine: SharedEngine = Arc::new(MemoryEngine::new());
        let mut o = Overlay::new(&engine);
        let txn = |expect: &[u8]| WriteOp::Txn {
            compares: vec![cmp(b"a", CompareOp::Equal, Some(expect))],
            success: vec![
                get(b"b"),
                txn_put(b"b", b"1"),
                get(b"b"),
                TxnOp::Delete { key: b"b".to_vec() },
                TxnOp::Delete { key: b"b".to_vec() },
                get(b"b"),
            ],
            failure: vec![txn_put(b"failed", b"yes"), get(b"failed")],
        };
        execute(put(b"a", b"0"), &mut o).unwrap();
        assert_eq!(
            execute(txn(b"0"), &mut o).unwrap(),
            Response::Txn {
                succeeded: true,
                results: vec![
                    TxnOpResult::Get { value: None },
                    TxnOpResult::Put,
                    TxnOpResult::Get {
                        value: Some(b"1".to_vec())
                    },
                    TxnOpResult::Delete { existed: true },
                    TxnOpResult::Delete { existed: false },
                    TxnOpResult::Get { value: None },
                ]
            }
        );
        assert_eq!(o.get(b"failed").unwrap(), None, "the failure branch ran");
        assert_eq!(
            execute(txn(b"other"), &mut o).unwrap(),
            Response::Txn {
                succeeded: false,
                results: vec![
                    TxnOpResult::Put,
                    TxnOpResult::Get {
                        value: Some(b"yes".to_vec())
                    }
                ]
            }
        );
        assert_eq!(o.get(b"b").unwrap(), None, "the success branch ran");
    }

    #[test]
    fn txn_sees_earlier_writes_of_its_apply_batch_and_lands_with_it() {
        let engine: SharedEngine = Arc::new(MemoryEngine::new());
        let mut seed = Overlay::new(&engine);
        execute(put(b"alice", b"10"), &mut seed).unwrap();
        let mut b = WriteBatch::new();
        seed.drain_into(&mut b);
        engine.write(b).unwrap();

        // One apply batch: a write, then a transfer conditioned on it.
        let mut o = Overlay::new(&engine);
        execute(put(b"alice", b"7"), &mut o).unwrap();
        let transfer = WriteOp::Txn {
            compares: vec![
                cmp(b"alice", CompareOp::Equal, Some(b"7")),
                cmp(b"bob", CompareOp::Equal, None),
            ],
            success: vec![txn_put(b"alice", b"4"), txn_put(b"bob", b"3")],
            failure: vec![],
        };
        let r = execute(transfer, &mut o).unwrap();
        assert!(
            matches!(
                r,
                Response::Txn {
                    succeeded: true,
                    ..
                }
            ),
            "{r:?}"
        );
        // Nothing reaches the engine until the batch is written, then all.
        assert_eq!(
            engine.get(&keys::data(b"alice")).unwrap(),
            Some(b"10".to_vec())
        );
        assert_eq!(engine.get(&keys::data(b"bob")).unwrap(), None);
        let mut b = WriteBatch::new();
        o.drain_into(&mut b);
        engine.write(b).unwrap();
        assert_eq!(
            engine.get(&keys::data(b"alice")).unwrap(),
            Some(b"4".to_vec())
        );
        assert_eq!(
            engine.get(&keys::data(b"bob")).unwrap(),
            Some(b"3".to_vec())
        );
    }
}
