//! openraft's storage test suite against Atoll's log store (over the WAL)
//! and state machine: simulated files with the memory engine, real files
//! with fjall.

#![allow(clippy::result_large_err)] // the suite returns openraft's StorageError

use std::sync::{Arc, RwLock};

use atoll_node::raft::type_config::{StorageError, TypeConfig};
use atoll_node::shard::ShardMeta;
use atoll_node::state_machine::snapshot_store::SnapshotStore;
use atoll_node::state_machine::view::ApplyGate;
use atoll_node::state_machine::StateMachine;
use atoll_node::storage::engine::SharedEngine;
use atoll_node::storage::{FjallEngine, Flusher, LogStore, MemoryEngine};
use atoll_node::wal::{self, RealFs, SharedFs, SimFs, WalOptions};
use openraft::testing::{StoreBuilder, Suite};

struct Builder {
    real: bool,
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, Option<tempfile::TempDir>> for Builder {
    async fn build(
        &self,
    ) -> Result<(Option<tempfile::TempDir>, LogStore, StateMachine), StorageError> {
        let (dir, engine, files): (Option<tempfile::TempDir>, SharedEngine, SharedFs) = if self.real
        {
            let dir = tempfile::tempdir().expect("temp dir");
            let engine = FjallEngine::open(&dir.path().join("db")).expect("open fjall");
            let files = RealFs::open(&dir.path().join("wal")).expect("wal dir");
            (Some(dir), Arc::new(engine), Arc::new(files))
        } else {
            (None, Arc::new(MemoryEngine::new()), Arc::new(SimFs::new()))
        };
        // Small segments, so the suite's purges free whole segments too.
        let options = WalOptions {
            segment_bytes: 4096,
            ..WalOptions::default()
        };
        let wal = wal::open(files, "wal", options).expect("open wal");
        let flusher = Flusher::spawn(engine.clone());
        let shard = 7;
        let meta = Arc::new(RwLock::new(ShardMeta::whole_keyspace(shard)));
        let log = LogStore::new(shard, wal, flusher.clone());
        // On disk, snapshots are files (as on a real node); in memory, bytes.
        #[cfg(not(madsim))]
        let store = match &dir {
            Some(d) => SnapshotStore::open_dir(d.path().join("snapshots")).expect("snapshot dir"),
            None => SnapshotStore::Memory,
        };
        #[cfg(madsim)]
        let store = SnapshotStore::Memory;
        let sm = StateMachine::open(shard, engine, flusher, meta, ApplyGate::new(), store, None)?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_suite_on_simulated_files_and_memory_engine() -> Result<(), StorageError> {
    Suite::test_all(Builder { real: false })
}

#[test]
fn openraft_suite_on_real_files_and_fjall_engine() -> Result<(), StorageError> {
    Suite::test_all(Builder { real: true })
}
