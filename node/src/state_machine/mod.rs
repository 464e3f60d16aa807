//! The state machine of one shard replica.
//!
//! `apply` decodes each committed entry, checks the dedup table, executes the
//! write against the node's data keyspace and stores data, sessions and the
//! applied log id in one atomic engine batch ([`apply`], [`dedup`]).
//! Snapshots carry range, sessions and data ([`snapshot`]).

// openraft's trait methods return its (large) `StorageError`; our helpers
// return the same type rather than converting at every call.
#![allow(clippy::result_large_err)]

pub mod apply;
pub mod dedup;
pub mod snapshot;
pub mod view;

use std::io::Cursor;
use std::sync::{Arc, RwLock};

use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};

use self::apply::Overlay;
use self::dedup::{Check, Session, Sessions};
use self::snapshot::SnapshotPayload;
use self::view::ApplyGate;
use crate::codec;
use crate::command::{Rejection, Request, Response};
use crate::raft::type_config::{
    Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use crate::shard::meta::ShardMeta;
use crate::storage::engine::{SharedEngine, WriteBatch};
use crate::storage::keys::{self, ShardId, SmMeta};
use crate::storage::Flusher;

/// The shard's range/epoch, shared with the request path.
pub type SharedMeta = Arc<RwLock<ShardMeta>>;

pub fn read_meta(meta: &SharedMeta) -> ShardMeta {
    meta.read().unwrap_or_else(|p| p.into_inner()).clone()
}

fn sm_read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_state_machine(AnyError::new(&e)).into()
}

fn sm_write_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_state_machine(AnyError::new(&e)).into()
}

fn snap_err(meta: Option<&SnapshotMeta>, e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_snapshot(meta.map(|m| m.signature()), AnyError::new(&e)).into()
}

pub struct StateMachine {
    shard: ShardId,
    engine: SharedEngine,
    flusher: Flusher,
    meta: SharedMeta,
    applied: Option<LogId>,
    membership: StoredMembership,
    sessions: Sessions,
    snapshots_built: u64,
    gate: ApplyGate,
}

impl StateMachine {
    /// Loads the state machine of `shard` from the engine.
    pub fn open(
        shard: ShardId,
        engine: SharedEngine,
        flusher: Flusher,
        meta: SharedMeta,
        gate: ApplyGate,
        max_sessions: usize,
    ) -> Result<Self, StorageError> {
        let get = |which| -> Result<Option<Vec<u8>>, StorageError> {
            engine
                .get(&keys::sm_meta(shard, which))
                .map_err(sm_read_err)
        };
        let applied = match get(SmMeta::Applied)? {
            Some(b) => Some(codec::decode("applied log id", &b).map_err(sm_read_err)?),
            None => None,
        };
        let membership = match get(SmMeta::Membership)? {
            Some(b) => codec::decode("membership", &b).map_err(sm_read_err)?,
            None => StoredMembership::default(),
        };
        let (lo, hi) = keys::sessions_range(shard);
        let mut sessions = Vec::new();
        for (k, v) in engine.scan(&lo, &hi, usize::MAX).map_err(sm_read_err)? {
            let client = u64::from_be_bytes(k[9..17].try_into().unwrap_or([0; 8]));
            let s: Session = codec::decode("session", &v).map_err(sm_read_err)?;
            sessions.push((client, s));
        }
        Ok(Self {
            shard,
            engine,
            flusher,
            meta,
            applied,
            membership,
            sessions: Sessions::from_sessions(max_sessions, sessions),
            snapshots_built: 0,
            gate,
        })
    }

    fn apply_request(
        &mut self,
        req: Request,
        index: u64,
        data: &mut Overlay<'_>,
    ) -> Result<Response, StorageError> {
        let meta = read_meta(&self.meta);
        if let Some(key) = req.op.keys().into_iter().find(|k| !meta.contains(k)) {
            return Ok(Response::Rejected(Rejection::KeyOutOfRange {
                key: key.to_vec(),
            }));
        }
        if let Some(id) = &req.write_id {
            match self.sessions.check(id) {
                Check::Fresh => {}
                Check::Duplicate(r) => return Ok(r),
                Check::Stale { first_incomplete } => {
                    return Ok(Response::Rejected(Rejection::StaleSequence {
                        seq: id.seq,
                        first_incomplete,
                    }))
                }
            }
        }
        let response = apply::execute(req.op, data).map_err(sm_write_err)?;
        if let Some(id) = &req.write_id {
            self.sessions.record(id, index, response.clone());
        }
        Ok(response)
    }

    /// Adds the persistent form of the in-memory state to `batch`.
    fn persist_state(
        &mut self,
        batch: &mut WriteBatch,
        meta_changed: bool,
    ) -> Result<(), StorageError> {
        let shard = self.shard;
        if let Some(applied) = &self.applied {
            batch.put(
                keys::sm_meta(shard, SmMeta::Applied),
                codec::encode("applied", applied).map_err(sm_write_err)?,
            );
        }
        batch.put(
            keys::sm_meta(shard, SmMeta::Membership),
            codec::encode("membership", &self.membership).map_err(sm_write_err)?,
        );
        if meta_changed {
            let meta = read_meta(&self.meta);
            batch.put(
                keys::sm_meta(shard, SmMeta::Shard),
                codec::encode("shard", &meta).map_err(sm_write_err)?,
            );
        }
        for (client, session) in self.sessions.take_changes() {
            match session {
                Some(s) => batch.put(
                    keys::session(shard, client),
                    codec::encode("session", &s).map_err(sm_write_err)?,
                ),
                None => batch.delete(keys::session(shard, client)),
            }
        }
        Ok(())
    }

    fn snapshot_from_bytes(bytes: &[u8]) -> Result<Snapshot, StorageError> {
        let (meta, data): (SnapshotMeta, Vec<u8>) =
            codec::decode("snapshot", bytes).map_err(|e| {
                StorageError::from(StorageIOError::read_snapshot(None, AnyError::new(&e)))
            })?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

/// A snapshot whose content was captured when the builder was made.
pub struct SnapshotBuilder {
    shard: ShardId,
    engine: SharedEngine,
    meta: SnapshotMeta,
    data: Result<Vec<u8>, StorageError>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let data = std::mem::replace(&mut self.data, Ok(Vec::new()))?;
        let stored = codec::encode("snapshot", &(&self.meta, &data))
            .map_err(|e| snap_err(Some(&self.meta), e))?;
        let mut batch = WriteBatch::new();
        batch.put(keys::sm_meta(self.shard, SmMeta::Snapshot), stored);
        self.engine
            .write(batch)
            .map_err(|e| snap_err(Some(&self.meta), e))?;
        Ok(Snapshot {
            meta: self.meta.clone(),
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let engine = self.engine.clone();
        let mut data = Overlay::new(&engine);
        let mut responses = Vec::new();
        let mut meta_changed = false;
        for entry in entries {
            self.applied = Some(entry.log_id);
            let response = match entry.payload {
                EntryPayload::Blank => Response::None,
                EntryPayload::Normal(req) => {
                    self.apply_request(req, entry.log_id.index, &mut data)?
                }
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), m);
                    // conf_ver is the log index of the membership entry, so
                    // every replica (also one that replays the log after
                    // joining) agrees on it at the same applied index.
                    let mut meta = self.meta.write().unwrap_or_else(|p| p.into_inner());
                    meta.epoch.conf_ver = entry.log_id.index;
                    meta_changed = true;
                    Response::None
                }
            };
            responses.push(response);
        }
        let mut batch = WriteBatch::new();
        data.drain_into(&mut batch);
        self.persist_state(&mut batch, meta_changed)?;
        let _exclusive = self.gate.apply().await;
        self.engine.write(batch).map_err(sm_write_err)?;
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshots_built += 1;
        let shard = read_meta(&self.meta);
        let snapshot_id = match &self.applied {
            Some(l) => format!(
                "{}-{}-{}-{}",
                self.shard, l.leader_id.term, l.index, self.snapshots_built
            ),
            None => format!("{}-none-{}", self.shard, self.snapshots_built),
        };
        let meta = SnapshotMeta {
            last_log_id: self.applied,
            last_membership: self.membership.clone(),
            snapshot_id,
        };
        // Read everything now, while no entry is being applied, so the
        // snapshot is exactly the state at `last_log_id`.
        let data = snapshot::read_shard_data(&self.engine, &shard)
            .map_err(|e| snap_err(Some(&meta), e))
            .and_then(|data| {
                let payload = SnapshotPayload {
                    shard,
                    sessions: self.sessions.sorted(),
                    data,
                };
                codec::encode("snapshot payload", &payload).map_err(|e| snap_err(Some(&meta), e))
            });
        SnapshotBuilder {
            shard: self.shard,
            engine: self.engine.clone(),
            meta,
            data,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        let payload: SnapshotPayload =
            codec::decode("snapshot payload", &bytes).map_err(|e| snap_err(Some(meta), e))?;
        if payload.shard.id != self.shard {
            let e = std::io::Error::other(format!(
                "snapshot of shard {} offered to shard {}",
                payload.shard.id, self.shard
            ));
            return Err(snap_err(Some(meta), e));
        }
        let mut batch = WriteBatch::new();
        // Replace the shard's data and sessions wholesale.
        let old = read_meta(&self.meta);
        for range in [
            (&old.start, old.end.as_deref()),
            (&payload.shard.start, payload.shard.end.as_deref()),
        ] {
            let (lo, hi) = keys::data_range(range.0, range.1);
            for (k, _) in self
                .engine
                .scan(&lo, &hi, usize::MAX)
                .map_err(|e| snap_err(Some(meta), e))?
            {
                batch.delete(k);
            }
        }
        let (lo, hi) = keys::sessions_range(self.shard);
        for (k, _) in self
            .engine
            .scan(&lo, &hi, usize::MAX)
            .map_err(|e| snap_err(Some(meta), e))?
        {
            batch.delete(k);
        }
        for (k, v) in &payload.data {
            batch.put(keys::data(k), v.clone());
        }
        *self.meta.write().unwrap_or_else(|p| p.into_inner()) = payload.shard.clone();
        self.sessions =
            Sessions::from_sessions(dedup::DEFAULT_MAX_SESSIONS, payload.sessions.clone());
        for (client, s) in &payload.sessions {
            batch.put(
                keys::session(self.shard, *client),
                codec::encode("session", s).map_err(sm_write_err)?,
            );
        }
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.persist_state(&mut batch, true)?;
        let stored =
            codec::encode("snapshot", &(meta, &bytes)).map_err(|e| snap_err(Some(meta), e))?;
        batch.put(keys::sm_meta(self.shard, SmMeta::Snapshot), stored);
        let exclusive = self.gate.apply().await;
        self.engine
            .write(batch)
            .map_err(|e| snap_err(Some(meta), e))?;
        drop(exclusive);
        self.flusher
            .flush()
            .await
            .map_err(|e| snap_err(Some(meta), e))
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        match self
            .engine
            .get(&keys::sm_meta(self.shard, SmMeta::Snapshot))
            .map_err(sm_read_err)?
        {
            None => Ok(None),
            Some(bytes) => Ok(Some(Self::snapshot_from_bytes(&bytes)?)),
        }
    }
}
