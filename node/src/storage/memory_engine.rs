//! The simulation engine: an in-memory ordered map that keeps what was
//! flushed apart from what was not, so a simulated power loss
//! ([`MemoryEngine::crash`]) drops exactly the unflushed writes.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Mutex;

use std::sync::Arc;

use super::engine::{check_key_lengths, Engine, EngineError, Kv, ReadView, SharedView, WriteBatch};

#[derive(Default)]
struct State {
    current: BTreeMap<Vec<u8>, Vec<u8>>,
    durable: BTreeMap<Vec<u8>, Vec<u8>>,
    unflushed: Vec<WriteBatch>,
}

#[derive(Default)]
pub struct MemoryEngine {
    state: Mutex<State>,
}

impl MemoryEngine {
    pub fn new() -> Self {
        Self::default()
    }

    /// Simulated power loss: every write not yet flushed is forgotten.
    pub fn crash(&self) {
        self.crash_keeping(0);
    }

    /// Power loss where the device had already written the first `kept`
    /// unflushed batches (in write order) when the power went: a prefix of
    /// the unflushed writes survives, the rest is lost. A real disk keeps
    /// some such prefix; a crash that loses exactly all unflushed writes is
    /// only one of its outcomes.
    pub fn crash_keeping(&self, kept: usize) {
        let mut s = self.lock();
        let unflushed = std::mem::take(&mut s.unflushed);
        let mut durable = s.durable.clone();
        for batch in unflushed.into_iter().take(kept) {
            batch.apply_to(&mut durable);
        }
        s.durable = durable.clone();
        s.current = durable;
    }

    /// A lost disk: everything is forgotten, flushed or not.
    pub fn wipe(&self) {
        *self.lock() = State::default();
    }

    /// Number of batches written but not yet flushed (for tests).
    pub fn unflushed_batches(&self) -> usize {
        self.lock().unflushed.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated
        // in a way later readers could observe differently than a crash, so
        // recover the guard instead of propagating poison.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Entries of `map` with `start <= key < end`, ascending, at most `limit`;
/// bounds longer than the real engine takes are refused as it refuses them.
fn scan_map(
    map: &BTreeMap<Vec<u8>, Vec<u8>>,
    start: &[u8],
    end: &[u8],
    limit: usize,
) -> Result<Vec<Kv>, EngineError> {
    if start >= end {
        return Ok(Vec::new());
    }
    check_key_lengths([start, end])?;
    Ok(map
        .range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)))
        .take(limit)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect())
}

/// A copy of one key range, taken under the engine's lock.
struct CopiedRange(BTreeMap<Vec<u8>, Vec<u8>>);

impl ReadView for CopiedRange {
    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Kv>, EngineError> {
        scan_map(&self.0, start, end, limit)
    }
}

impl Engine for MemoryEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        Ok(self.lock().current.get(key).cloned())
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Kv>, EngineError> {
        scan_map(&self.lock().current, start, end, limit)
    }

    fn read_view(&self, start: &[u8], end: &[u8]) -> Result<SharedView, EngineError> {
        let copy = scan_map(&self.lock().current, start, end, usize::MAX)?;
        Ok(Arc::new(CopiedRange(copy.into_iter().collect())))
    }

    fn last_in(&self, start: &[u8], end: &[u8]) -> Result<Option<Kv>, EngineError> {
        if start >= end {
            return Ok(None);
        }
        check_key_lengths([start, end])?;
        let s = self.lock();
        let mut range = s
            .current
            .range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)));
        Ok(range.next_back().map(|(k, v)| (k.clone(), v.clone())))
    }

    fn write(&self, batch: WriteBatch) -> Result<(), EngineError> {
        check_key_lengths(batch.keys())?;
        let mut s = self.lock();
        batch.clone().apply_to(&mut s.current);
        s.unflushed.push(batch);
        Ok(())
    }

    fn flush(&self) -> Result<(), EngineError> {
        let mut s = self.lock();
        let pending = std::mem::take(&mut s.unflushed);
        for b in pending {
            b.apply_to(&mut s.durable);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_drops_only_unflushed_writes() {
        let e = MemoryEngine::new();
        let mut b = WriteBatch::new();
        b.put(b"a".to_vec(), b"1".to_vec());
        e.write(b).unwrap();
        e.flush().unwrap();
        let mut b = WriteBatch::new();
        b.put(b"b".to_vec(), b"2".to_vec());
        b.delete(b"a".to_vec());
        e.write(b).unwrap();
        assert_eq!(e.get(b"a").unwrap(), None);
        e.crash();
        assert_eq!(e.get(b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(e.get(b"b").unwrap(), None);
    }

    #[test]
    fn a_crash_can_keep_a_prefix_of_the_unflushed_writes_in_order() {
        let e = MemoryEngine::new();
        for (k, v) in [(b"a", b"1"), (b"a", b"2"), (b"b", b"3")] {
            let mut b = WriteBatch::new();
            b.put(k.to_vec(), v.to_vec());
            e.write(b).unwrap();
        }
        e.crash_keeping(2);
        assert_eq!(e.get(b"a").unwrap(), Some(b"2".to_vec()));
        assert_eq!(e.get(b"b").unwrap(), None);
        assert_eq!(e.unflushed_batches(), 0);
        // What survived is now durable: a second crash keeps it.
        e.crash();
        assert_eq!(e.get(b"a").unwrap(), Some(b"2".to_vec()));
    }

    #[test]
    fn scan_and_last_respect_bounds() {
        let e = MemoryEngine::new();
        let mut b = WriteBatch::new();
        for k in [b"a", b"b", b"c", b"d"] {
            b.put(k.to_vec(), k.to_vec());
        }
        e.write(b).unwrap();
        let got: Vec<_> = e
            .scan(b"b", b"d", 10)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(got, vec![b"b".to_vec(), b"c".to_vec()]);
        assert_eq!(e.scan(b"a", b"z", 1).unwrap().len(), 1);
        assert_eq!(e.last_in(b"a", b"d").unwrap().unwrap().0, b"c".to_vec());
        assert!(e.scan(b"d", b"a", 10).unwrap().is_empty());
    }

    #[test]
    fn a_read_view_keeps_its_range_as_it_was() {
        crate::storage::engine::contract::a_read_view_keeps_the_data_as_it_was(&MemoryEngine::new());
    }
}
