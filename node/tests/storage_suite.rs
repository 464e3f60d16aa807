//! openraft's storage test suite against Atoll's log store and state
//! machine, on both engines.

#![allow(clippy::result_large_err)] // the suite returns openraft's StorageError

use std::sync::{Arc, RwLock};

use atoll_node::raft::type_config::{StorageError, TypeConfig};
use atoll_node::shard::ShardMeta;
use atoll_node::state_machine::snapshot_store::SnapshotStore;
use atoll_node::state_machine::view::ApplyGate;
use atoll_node::state_machine::StateMachine;
use atoll_node::storage::engine::SharedEngine;
use atoll_node::storage::{Flusher, LogStore, MemoryEngine, SledEngine};
use openraft::testing::{StoreBuilder, Suite};

struct Builder {
    sled: bool,
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, Option<tempfile::TempDir>> for Builder {
    async fn build(
        &self,
    ) -> Result<(Option<tempfile::TempDir>, LogStore, StateMachine), StorageError> {
        let (dir, engine): (Option<tempfile::TempDir>, SharedEngine) = if self.sled {
            let dir = tempfile::tempdir().expect("temp dir");
            let engine = SledEngine::open(&dir.path().join("db")).expect("open sled");
            (Some(dir), Arc::new(engine))
        } else {
            (None, Arc::new(MemoryEngine::new()))
        };
        let flusher = Flusher::spawn(engine.clone());
        let shard = 7;
        let meta = Arc::new(RwLock::new(ShardMeta::whole_keyspace(shard)));
        let log = LogStore::new(shard, engine.clone(), flusher.clone());
        // On sled, snapshots are files (as on a real node); in memory, bytes.
        #[cfg(not(madsim))]
        let store = match &dir {
            Some(d) => SnapshotStore::open_dir(d.path().join("snapshots")).expect("snapshot dir"),
            None => SnapshotStore::Memory,
        };
        #[cfg(madsim)]
        let store = SnapshotStore::Memory;
        let sm = StateMachine::open(shard, engine, flusher, meta, ApplyGate::new(), store)?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_suite_on_memory_engine() -> Result<(), StorageError> {
    Suite::test_all(Builder { sled: false })
}

#[test]
fn openraft_suite_on_sled_engine() -> Result<(), StorageError> {
    Suite::test_all(Builder { sled: true })
}
