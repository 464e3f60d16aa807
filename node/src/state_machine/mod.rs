//! The state machine of one shard replica.
//!
//! `apply` decodes each committed entry, checks the dedup table, executes the
//! write against the node's data keyspace and stores data, sessions and the
//! applied log id in one atomic engine batch ([`apply`], [`dedup`]). Session
//! registrations go through the same path: the id counter and any evictions
//! land in the same batch.
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
use self::dedup::{Check, Sessions};
use self::snapshot::SnapshotPayload;
use self::view::ApplyGate;
use crate::codec;
use crate::command::{Rejection, Request, Response, WriteId, WriteOp};
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
        let next_session_id = match get(SmMeta::NextSessionId)? {
            Some(b) => Some(codec::decode("next session id", &b).map_err(sm_read_err)?),
            None => None,
        };
        let (lo, hi) = keys::sessions_range(shard);
        let rows = engine.scan(&lo, &hi, usize::MAX).map_err(sm_read_err)?;
        let sessions = Sessions::load(next_session_id, rows).map_err(sm_read_err)?;
        Ok(Self {
            shard,
            engine,
            flusher,
            meta,
            applied,
            membership,
            sessions,
            snapshots_built: 0,
            gate,
        })
    }

    /// Applies one normal entry at log `index`.
    fn apply_request(
        &mut self,
        req: Request,
        index: u64,
        data: &mut Overlay<'_>,
    ) -> Result<Response, StorageError> {
        match req {
            Request::Write { write_id, op } => self.apply_write(write_id, op, index, data),
            Request::RegisterSession { max_sessions } => Ok(Response::SessionRegistered {
                client_id: self.sessions.register(index, max_sessions),
            }),
        }
    }

    /// Range check → dedup check → execute → record the result.
    fn apply_write(
        &mut self,
        id: WriteId,
        op: WriteOp,
        index: u64,
        data: &mut Overlay<'_>,
    ) -> Result<Response, StorageError> {
        let meta = read_meta(&self.meta);
        if let Some(key) = op.keys().into_iter().find(|k| !meta.contains(k)) {
            return Ok(Response::Rejected(Rejection::KeyOutOfRange {
                key: key.to_vec(),
            }));
        }
        let check = self.sessions.check(&id);
        #[cfg(all(madsim, feature = "sim-bugs"))]
        let check = match check {
            Check::Duplicate(_) | Check::Stale { .. }
                if crate::sim_hooks::bug(crate::sim_hooks::Bug::NoDedup) =>
            {
                Check::Fresh
            }
            other => other,
        };
        match check {
            Check::Fresh => {}
            Check::Duplicate(r) => return Ok(r),
            Check::Stale { first_incomplete } => {
                return Ok(Response::Rejected(Rejection::StaleSequence {
                    seq: id.seq,
                    first_incomplete,
                }))
            }
            Check::Expired => {
                return Ok(Response::Rejected(Rejection::SessionExpired {
                    client_id: id.client_id,
                }))
            }
        }
        let response = apply::execute(op, data).map_err(sm_write_err)?;
        self.sessions.record(&id, index, response.clone());
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
        self.sessions
            .persist_into(shard, batch)
            .map_err(sm_write_err)
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
                    sessions: self.sessions.to_snapshot(),
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
        for (k, v) in payload.data {
            batch.put(keys::data(&k), v);
        }
        *self.meta.write().unwrap_or_else(|p| p.into_inner()) = payload.shard;
        // Every key of the new table is rewritten by `persist_state` below.
        self.sessions = Sessions::from_snapshot(payload.sessions);
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use openraft::testing::log_id;

    use super::*;
    use crate::storage::MemoryEngine;

    fn open(engine: &SharedEngine) -> StateMachine {
        let meta = Arc::new(RwLock::new(ShardMeta::whole_keyspace(1)));
        StateMachine::open(
            1,
            engine.clone(),
            Flusher::spawn(engine.clone()),
            meta,
            ApplyGate::new(),
        )
        .expect("open state machine")
    }

    fn entry(index: u64, req: Request) -> Entry {
        Entry {
            log_id: log_id(1, 1, index),
            payload: EntryPayload::Normal(req),
        }
    }

    fn register(max_sessions: u64) -> Request {
        Request::RegisterSession { max_sessions }
    }

    fn put(client: u64, seq: u64, value: &[u8]) -> Request {
        Request::Write {
            write_id: WriteId {
                client_id: client,
                seq,
                first_incomplete: seq,
            },
            op: WriteOp::Put {
                key: b"k".to_vec(),
                value: value.to_vec(),
            },
        }
    }

    fn value(engine: &SharedEngine) -> Option<Vec<u8>> {
        engine.get(&keys::data(b"k")).expect("engine get")
    }

    async fn apply_one(sm: &mut StateMachine, index: u64, req: Request) -> Response {
        let mut out = sm.apply([entry(index, req)]).await.expect("apply");
        out.pop().expect("one response")
    }

    #[tokio::test]
    async fn a_retry_after_its_session_was_evicted_is_refused_not_applied_twice() {
        let engine: SharedEngine = Arc::new(MemoryEngine::new());
        let mut sm = open(&engine);
        let registered = sm
            .apply([entry(1, register(2)), entry(2, register(2))])
            .await
            .unwrap();
        assert_eq!(
            registered,
            vec![
                Response::SessionRegistered { client_id: 1 },
                Response::SessionRegistered { client_id: 2 }
            ]
        );
        assert_eq!(apply_one(&mut sm, 3, put(1, 1, b"a")).await, Response::Put);
        assert_eq!(apply_one(&mut sm, 4, put(2, 1, b"b")).await, Response::Put);
        // Session 1 (last write at 3) is the least recently written.
        assert_eq!(
            apply_one(&mut sm, 5, register(2)).await,
            Response::SessionRegistered { client_id: 3 }
        );
        let expired = Response::Rejected(Rejection::SessionExpired { client_id: 1 });
        assert_eq!(apply_one(&mut sm, 6, put(1, 1, b"a")).await, expired);
        assert_eq!(value(&engine), Some(b"b".to_vec()), "applied twice");
        // A write under an id no registration ever gave out is refused too.
        assert_eq!(
            apply_one(&mut sm, 7, put(99, 1, b"x")).await,
            Response::Rejected(Rejection::SessionExpired { client_id: 99 })
        );

        // The table and the id counter survive a restart...
        drop(sm);
        let mut sm = open(&engine);
        assert_eq!(apply_one(&mut sm, 8, put(1, 1, b"a")).await, expired);
        assert_eq!(apply_one(&mut sm, 9, put(2, 1, b"b")).await, Response::Put);
        assert_eq!(value(&engine), Some(b"b".to_vec()));

        // ...and travel in snapshots.
        let mut builder = sm.get_snapshot_builder().await;
        let snapshot = builder.build_snapshot().await.unwrap();
        let other: SharedEngine = Arc::new(MemoryEngine::new());
        let mut copy = open(&other);
        copy.install_snapshot(&snapshot.meta, snapshot.snapshot)
            .await
            .unwrap();
        assert_eq!(apply_one(&mut copy, 10, put(1, 1, b"a")).await, expired);
        assert_eq!(
            apply_one(&mut copy, 11, register(2)).await,
            Response::SessionRegistered { client_id: 4 }
        );
        assert_eq!(value(&other), Some(b"b".to_vec()));
        drop(copy);
        let mut reopened = open(&other);
        assert_eq!(
            apply_one(&mut reopened, 12, register(2)).await,
            Response::SessionRegistered { client_id: 5 }
        );
    }
}
