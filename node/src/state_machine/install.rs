//! Installing a snapshot in bounded memory: the shard's old data and
//! sessions are deleted and the snapshot's pairs written, chunk by chunk.
//!
//! That is many engine writes, not one, so a crash can stop it half way. The
//! state machine therefore records an "installing" marker (the snapshot's
//! meta and where it is kept) and flushes it before the first chunk; the
//! final write sets the shard's meta, sessions and applied id and removes the
//! marker. A replica that opens with the marker present redoes the install
//! from the kept snapshot before anything else (the install is idempotent).

use std::io::Read;

use super::snapshot::{self, Header, SnapshotError};
use crate::shard::meta::ShardMeta;
use crate::storage::engine::{EngineError, SharedEngine, WriteBatch};
use crate::storage::keys::{self, ShardId};

/// Rows deleted per engine write.
const DELETE_CHUNK: usize = 1024;
/// Key + value bytes written per engine write.
const WRITE_CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// Replaces the data and sessions of shard `shard` (now covering `old`)
/// with the snapshot read from `source`; returns the snapshot's header. The
/// caller holds the replica's apply gate, so no scan sees the shard half
/// installed.
pub fn replace_shard_data(
    engine: &SharedEngine,
    shard: ShardId,
    old: &ShardMeta,
    source: impl Read,
) -> Result<Header, SnapshotError> {
    let (header, mut reader) = snapshot::Reader::open(source)?;
    if header.shard.id != shard {
        return Err(SnapshotError::Corrupt(format!(
            "snapshot of shard {} offered to shard {shard}",
            header.shard.id
        )));
    }
    for (lo, hi) in [
        keys::data_range(&old.start, old.end.as_deref()),
        keys::data_range(&header.shard.start, header.shard.end.as_deref()),
        keys::sessions_range(shard),
    ] {
        delete_range(engine, &lo, &hi)?;
    }
    loop {
        let chunk = reader.next_chunk(WRITE_CHUNK_BYTES)?;
        if chunk.is_empty() {
            return Ok(header);
        }
        let mut batch = WriteBatch::new();
        for (k, v) in chunk {
            batch.put(keys::data(&k), v);
        }
        engine.write(batch)?;
    }
}

/// Deletes every engine row in `[lo, hi)`, a chunk per write.
pub(crate) fn delete_range(engine: &SharedEngine, lo: &[u8], hi: &[u8]) -> Result<(), EngineError> {
    loop {
        let doomed = engine.scan_keys(lo, hi, DELETE_CHUNK)?;
        if doomed.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::new();
        for k in doomed {
            batch.delete(k);
        }
        engine.write(batch)?;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::state_machine::dedup::SessionsSnapshot;
    use crate::storage::MemoryEngine;

    #[test]
    fn install_replaces_the_range_in_chunks() {
        let source: SharedEngine = Arc::new(MemoryEngine::new());
        let mut b = WriteBatch::new();
        for i in 0..3000 {
            b.put(keys::data(format!("n{i:05}").as_bytes()), vec![1; 2000]);
        }
        source.write(b).unwrap();
        let header = Header {
            shard: ShardMeta::whole_keyspace(4),
            sessions: SessionsSnapshot {
                next_id: 1,
                sessions: Vec::new(),
            },
            pd: None,
        };
        let view = source.read_view(&[], &[0xff; 16]).unwrap();
        let bytes = snapshot::write(Vec::new(), &*view, &header).unwrap();

        let target: SharedEngine = Arc::new(MemoryEngine::new());
        let mut b = WriteBatch::new();
        b.put(keys::data(b"old"), b"gone".to_vec());
        b.put(keys::session(4, 9), b"stale session".to_vec());
        target.write(b).unwrap();
        let got = replace_shard_data(&target, 4, &header.shard, bytes.as_slice()).unwrap();
        assert_eq!(got, header);
        let (lo, hi) = keys::data_range(b"", None);
        let rows = target.scan(&lo, &hi, usize::MAX).unwrap();
        assert_eq!(rows.len(), 3000);
        assert_eq!(target.get(&keys::data(b"old")).unwrap(), None);
        assert_eq!(target.get(&keys::session(4, 9)).unwrap(), None);

        let wrong = replace_shard_data(&target, 5, &header.shard, bytes.as_slice());
        assert!(matches!(wrong, Err(SnapshotError::Corrupt(_))));
    }
}
