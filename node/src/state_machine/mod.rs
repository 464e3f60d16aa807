//! The state machine of one shard replica.
//!
//! `apply` decodes each committed entry, checks the dedup table, executes the
//! write against the node's data keyspace and stores data, sessions and the
//! applied log id in one atomic engine batch ([`apply`], [`dedup`]). Session
//! registrations go through the same path: the id counter and any evictions
//! land in the same batch.
//! Snapshots carry range, sessions and data, streamed to and from a file
//! ([`snapshot`] is the format, [`snapshot_store`] where they are kept,
//! [`install`] the bounded-memory, crash-safe install).

// openraft's trait methods return its (large) `StorageError`; our helpers
// return the same type rather than converting at every call.
#![allow(clippy::result_large_err)]

pub mod apply;
pub mod dedup;
pub mod install;
pub mod snapshot;
pub mod snapshot_store;
pub mod split;
pub mod view;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};

use self::apply::Overlay;
use self::dedup::{Check, Sessions};
use self::snapshot::{Header, SnapshotError};
use self::snapshot_store::{SnapshotBuf, SnapshotStore, StoredSnapshot};
use self::view::ApplyGate;
use crate::broken::{self, Mode};
use crate::codec;
use crate::command::{Rejection, Request, Response, WriteId, WriteOp};
use crate::raft::type_config::{
    Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use crate::shard::meta::ShardMeta;
use crate::storage::engine::{EngineError, SharedEngine, SharedView, WriteBatch};
use crate::storage::keys::{self, ShardId, SmMeta};
use crate::storage::Flusher;
use atoll_pd::state::PdState;

/// The shard's range/epoch, shared with the request path.
pub type SharedMeta = Arc<RwLock<ShardMeta>>;

/// The placement driver's replicated state, on the replicas of the PD group
/// only ([`crate::pd`]); shared with the PD service, which reads it.
pub type SharedPd = Arc<RwLock<PdState>>;

pub fn read_pd<T>(pd: &SharedPd, f: impl FnOnce(&PdState) -> T) -> T {
    f(&pd.read().unwrap_or_else(|p| p.into_inner()))
}

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
    store: SnapshotStore,
    /// The PD state, on a replica of the PD group.
    pd: Option<SharedPd>,
    /// Split children of the batch being applied (written with it).
    children: Vec<split::ChildInit>,
    /// Told about each split child once its state is written.
    split_sink: Option<SplitSink>,
    /// Set while the replica waits for its first snapshot; cleared by
    /// an install (see `SmMeta::AwaitingSnapshot`).
    awaiting_snapshot: Arc<AtomicBool>,
}

/// Where a replica announces the split children it wrote, so the node
/// opens their Raft groups (`shard::split`), and which children of splits
/// applied on this node are not open yet. From just before a split narrows
/// its parent until the node has opened the child, the child is "pending":
/// `ShardHost::create` refuses to create a replica of it, which would
/// otherwise see no overlapping shard (the parent is narrowed already)
/// and write an empty replica's marks under the child's state. The other
/// way round, a split whose child already has a replica created here on
/// request narrows its parent but writes no child state over it (the
/// created replica gets the child from its leader's snapshot). Both
/// decisions and the create's write are made under one lock, so neither
/// can slip between the other's check and write.
#[derive(Clone)]
pub struct SplitSink {
    tx: tokio::sync::mpsc::UnboundedSender<SplitChild>,
    pending: Arc<std::sync::Mutex<std::collections::BTreeSet<ShardId>>>,
}

impl SplitSink {
    /// The sink, and where the node receives the children to open.
    pub fn new() -> (Self, tokio::sync::mpsc::UnboundedReceiver<SplitChild>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let pending = Arc::default();
        (Self { tx, pending }, rx)
    }

    fn set(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeSet<ShardId>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A split applied here is about to narrow its parent for `child`:
    /// false if `created` says a replica of the child was created here on
    /// request (write no child state), else the child is pending.
    pub(crate) fn begin(&self, child: ShardId, created: impl FnOnce() -> bool) -> bool {
        let mut set = self.set();
        if created() {
            return false;
        }
        set.insert(child);
        true
    }

    /// Runs `write` (a create request writing a replica of `shard`) unless
    /// a split here is making `shard` (`None`: refuse the request).
    pub fn write_unless_pending<T>(&self, shard: ShardId, write: impl FnOnce() -> T) -> Option<T> {
        let set = self.set();
        if set.contains(&shard) {
            return None;
        }
        Some(write())
    }

    /// The node has opened `child`, or has given up on it (a failed write
    /// of its split, a failed open: it opens at the next start).
    pub fn settled(&self, child: ShardId) {
        self.set().remove(&child);
    }

    /// Whether `child` is a split child of this node not open yet.
    pub fn is_pending(&self, child: ShardId) -> bool {
        self.set().contains(&child)
    }

    fn announce(&self, child: SplitChild) {
        // The receiver lives as long as the node; a node shutting down
        // opens the child at its next start instead.
        if self.tx.send(child.clone()).is_err() {
            self.settled(child.meta.id);
        }
    }
}

/// A split child whose initial state is in the engine.
#[derive(Debug, Clone)]
pub struct SplitChild {
    pub parent: ShardId,
    pub meta: ShardMeta,
}

/// How the engine records the current snapshot (and an install in
/// progress): its meta and where it is kept.
type SnapshotRecord = (SnapshotMeta, StoredSnapshot);

/// A write of a replica that was removed from this node.
#[derive(Debug, thiserror::Error)]
#[error("shard {0}'s replica was removed from this node; nothing of it is written any more")]
pub struct RemovedError(pub ShardId);

/// Removes the snapshot file `shard` keeps, if any (its replica is being
/// removed from this node).
pub fn forget_snapshot(engine: &SharedEngine, store: &SnapshotStore, shard: ShardId) {
    let Ok(Some(bytes)) = engine.get(&keys::sm_meta(shard, SmMeta::Snapshot)) else {
        return;
    };
    match codec::decode::<SnapshotRecord>("snapshot record", &bytes) {
        Ok((_, stored)) => store.remove(&stored),
        Err(e) => tracing::warn!(shard, "cannot read the snapshot record to remove: {e}"),
    }
}

/// The local file name of a snapshot received for `shard` under the
/// sender's `id`: the shard first, so that no id a peer sends can name
/// another shard's file, and only letters, digits and '-' of the id (no
/// path separators).
fn received_name(shard: ShardId, id: &str) -> String {
    let id: String = id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(96)
        .collect();
    format!("{shard}-received-{id}")
}

/// Runs blocking work (engine scans and writes of a whole shard, file I/O)
/// off the async workers; inline in the simulation, which has no threads.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    #[cfg(not(madsim))]
    {
        match tokio::task::spawn_blocking(f).await {
            Ok(v) => v,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    #[cfg(madsim)]
    {
        f()
    }
}

impl StateMachine {
    /// Loads the state machine of `shard` from the engine, first finishing
    /// a snapshot install that a crash interrupted. `pd` is given on a
    /// replica of the PD group: the stored PD state, if any, replaces it.
    pub fn open(
        shard: ShardId,
        engine: SharedEngine,
        flusher: Flusher,
        meta: SharedMeta,
        gate: ApplyGate,
        store: SnapshotStore,
        pd: Option<SharedPd>,
    ) -> Result<Self, StorageError> {
        if let Some(bytes) = engine
            .get(&keys::sm_meta(shard, SmMeta::Installing))
            .map_err(sm_read_err)?
        {
            let (snap_meta, stored): SnapshotRecord =
                codec::decode("snapshot install marker", &bytes).map_err(sm_read_err)?;
            tracing::warn!(
                shard,
                snapshot = %snap_meta.snapshot_id,
                "a snapshot install was interrupted; finishing it"
            );
            let old = read_meta(&meta);
            let source = store
                .reader(&stored)
                .map_err(|e| snap_err(Some(&snap_meta), e))?;
            let header = install::replace_shard_data(&engine, shard, &old, source)
                .map_err(|e| snap_err(Some(&snap_meta), e))?;
            let new_meta = header.shard.clone();
            let mut batch = WriteBatch::new();
            finish_install(shard, &snap_meta, stored, header, &mut batch)?;
            engine
                .write(batch)
                .and_then(|()| engine.checkpoint())
                .map_err(|e| snap_err(Some(&snap_meta), e))?;
            // The caller read the descriptor before the install was
            // finished: the snapshot's replaces it, or the next membership
            // entry would count its conf_ver on from the old one.
            *meta.write().unwrap_or_else(|p| p.into_inner()) = new_meta;
        }
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
        if let (Some(pd), Some(bytes)) = (&pd, get(SmMeta::Pd)?) {
            let state: PdState = codec::decode("pd state", &bytes).map_err(sm_read_err)?;
            *pd.write().unwrap_or_else(|p| p.into_inner()) = state;
        }
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
            store,
            pd,
            children: Vec::new(),
            split_sink: None,
            awaiting_snapshot: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Announces split children to `sink` from now on.
    pub fn with_split_sink(mut self, sink: SplitSink) -> Self {
        self.split_sink = Some(sink);
        self
    }

    /// Shares the replica's "awaiting its first snapshot" flag, which an
    /// install clears.
    pub fn with_awaiting_snapshot(mut self, flag: Arc<AtomicBool>) -> Self {
        self.awaiting_snapshot = flag;
        self
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
            Request::Multi(reqs) => {
                let mut out = Vec::with_capacity(reqs.len());
                for req in reqs {
                    out.push(match req {
                        // Never produced by the proposer; refused, not recursed.
                        Request::Multi(_) => Response::Rejected(Rejection::NestedMulti),
                        req => self.apply_request(req, index, data)?,
                    });
                }
                Ok(Response::Multi(out))
            }
            Request::Pd(cmd) => Ok(match &self.pd {
                Some(pd) => {
                    #[cfg(all(madsim, feature = "sim-bugs"))]
                    let cmd = if crate::sim_hooks::bug(crate::sim_hooks::Bug::PdLocalClock) {
                        Box::new(crate::pd::with_local_clock(*cmd))
                    } else {
                        cmd
                    };
                    let mut state = pd.write().unwrap_or_else(|p| p.into_inner());
                    Response::Pd(state.apply(*cmd))
                }
                None => Response::Rejected(Rejection::NotPdGroup),
            }),
            Request::Split {
                expected_version,
                key,
                child,
                child_replicas,
            } => Ok(self.apply_split(expected_version, key, child, &child_replicas)),
        }
    }

    /// Dedup check → range check → execute → record the result.
    ///
    /// Dedup comes first: a write applied here before a split and retried
    /// here after it (its key now in the child) gets its recorded answer,
    /// not `KeyOutOfRange`, which would tell the client it never applied.
    /// The range is checked at apply time, not only when the request
    /// arrives: a split applied in between moves the key to the child.
    fn apply_write(
        &mut self,
        id: WriteId,
        op: WriteOp,
        index: u64,
        data: &mut Overlay<'_>,
    ) -> Result<Response, StorageError> {
        let check = self.sessions.check(&id);
        let check = match check {
            Check::Duplicate(_) | Check::Stale { .. } if broken::on(Mode::NoDedup) => Check::Fresh,
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
        let meta = read_meta(&self.meta);
        #[cfg(all(madsim, feature = "sim-bugs"))]
        let meta = if crate::sim_hooks::bug(crate::sim_hooks::Bug::NoApplyRangeCheck) {
            ShardMeta {
                start: Vec::new(),
                end: None,
                ..meta
            }
        } else {
            meta
        };
        if let Some(key) = op.keys().into_iter().find(|k| !meta.contains(k)) {
            return Ok(Response::Rejected(Rejection::KeyOutOfRange {
                key: key.to_vec(),
            }));
        }
        let response = apply::execute(op, data).map_err(sm_write_err)?;
        self.sessions.record(&id, index, response.clone());
        Ok(response)
    }

    /// Writes what a group of entries applied: their data (in `batch`),
    /// the split children they made, and the replica's state.
    async fn write_applied(
        &mut self,
        mut batch: WriteBatch,
        children: &mut [split::ChildInit],
        meta_changed: bool,
    ) -> Result<(), StorageError> {
        for child in children.iter_mut() {
            child.persist_into(&mut batch)?;
        }
        self.persist_state(&mut batch, meta_changed || !children.is_empty())?;
        let _exclusive = self.gate.apply().await;
        if self.gate.is_closed() {
            return Err(sm_write_err(RemovedError(self.shard)));
        }
        self.engine.write(batch).map_err(sm_write_err)
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
        if let Some(pd) = &self.pd {
            let bytes = read_pd(pd, |state| codec::encode("pd state", state));
            batch.put(
                keys::sm_meta(shard, SmMeta::Pd),
                bytes.map_err(sm_write_err)?,
            );
        }
        self.sessions
            .persist_into(shard, batch)
            .map_err(sm_write_err)
    }

    /// Whether the shard has applied state but no snapshot (a split child
    /// before its first one; `shard::replica` builds it in the background).
    pub fn first_snapshot_due(&self) -> Result<bool, StorageError> {
        Ok(self.applied.is_some() && self.current_record()?.is_none())
    }

    fn current_record(&self) -> Result<Option<SnapshotRecord>, StorageError> {
        match self
            .engine
            .get(&keys::sm_meta(self.shard, SmMeta::Snapshot))
            .map_err(sm_read_err)?
        {
            None => Ok(None),
            Some(bytes) => Ok(Some(
                codec::decode("snapshot record", &bytes).map_err(sm_read_err)?,
            )),
        }
    }
}

/// Writes the end state of an install into `batch`: the shard's meta, its
/// sessions, the applied id and membership, the snapshot record; and removes
/// the "installing" marker. (Used by `install_snapshot` and by `open` when it
/// finishes an interrupted install.)
fn finish_install(
    shard: ShardId,
    snap_meta: &SnapshotMeta,
    stored: StoredSnapshot,
    header: Header,
    batch: &mut WriteBatch,
) -> Result<Sessions, StorageError> {
    let err = |e: crate::codec::EncodeError| snap_err(Some(snap_meta), e);
    if let Some(pd) = &header.pd {
        batch.put(
            keys::sm_meta(shard, SmMeta::Pd),
            codec::encode("pd state", pd).map_err(err)?,
        );
    }
    let mut sessions = Sessions::from_snapshot(header.sessions);
    sessions.persist_into(shard, batch).map_err(sm_write_err)?;
    if let Some(applied) = &snap_meta.last_log_id {
        batch.put(
            keys::sm_meta(shard, SmMeta::Applied),
            codec::encode("applied", applied).map_err(err)?,
        );
    }
    batch.put(
        keys::sm_meta(shard, SmMeta::Membership),
        codec::encode("membership", &snap_meta.last_membership).map_err(err)?,
    );
    batch.put(
        keys::sm_meta(shard, SmMeta::Shard),
        codec::encode("shard", &header.shard).map_err(err)?,
    );
    let record: SnapshotRecord = (snap_meta.clone(), stored);
    batch.put(
        keys::sm_meta(shard, SmMeta::Snapshot),
        codec::encode("snapshot record", &record).map_err(err)?,
    );
    batch.delete(keys::sm_meta(shard, SmMeta::Installing));
    batch.delete(keys::sm_meta(shard, SmMeta::AwaitingSnapshot));
    Ok(sessions)
}

/// A snapshot that was written (to its file) when the builder was made.
pub struct SnapshotBuilder {
    shard: ShardId,
    engine: SharedEngine,
    flusher: Flusher,
    store: SnapshotStore,
    meta: SnapshotMeta,
    /// The shard as it was at `meta.last_log_id`, and the snapshot's
    /// header; taken when the builder was made, written out in
    /// `build_snapshot` while the state machine goes on applying.
    source: Option<Result<(SharedView, Header), EngineError>>,
    gate: ApplyGate,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let meta = self.meta.clone();
        let err =
            |e: &dyn std::error::Error| snap_err(Some(&meta), std::io::Error::other(e.to_string()));
        let (view, header) = match self.source.take() {
            Some(Ok(source)) => source,
            Some(Err(e)) => return Err(err(&e)),
            None => return Err(err(&std::io::Error::other("snapshot already taken"))),
        };
        let fill = Box::new(move |out: &mut dyn std::io::Write| {
            snapshot::write(out, &*view, &header).map(|_| ())
        });
        let began = std::time::Instant::now();
        let stored = self
            .store
            .build(&meta.snapshot_id, fill)
            .await
            .map_err(|e| err(&e))?;
        tracing::info!(
            shard = self.shard,
            index = meta.last_log_id.map(|l| l.index),
            ms = began.elapsed().as_millis() as u64,
            "snapshot built"
        );
        let key = keys::sm_meta(self.shard, SmMeta::Snapshot);
        let exclusive = self.gate.apply().await;
        if self.gate.is_closed() {
            // Written while the replica was being removed: nothing points
            // at the file.
            self.store.remove(&stored);
            return Err(err(&RemovedError(self.shard)));
        }
        let previous: Option<SnapshotRecord> = match self.engine.get(&key).map_err(sm_read_err)? {
            Some(b) => codec::decode("snapshot record", &b).ok(),
            None => None,
        };
        // A build that took long may finish after a newer snapshot was
        // built or installed: it must not replace that one's record, or a
        // restart would find a snapshot older than the purged log.
        if previous
            .as_ref()
            .is_some_and(|(m, _)| m.last_log_id > meta.last_log_id)
        {
            drop(exclusive);
            let data = self.store.open(&stored).await.map_err(|e| err(&e))?;
            self.store.remove(&stored);
            return Ok(Snapshot {
                meta,
                snapshot: Box::new(data),
            });
        }
        let record: SnapshotRecord = (meta.clone(), stored.clone());
        let mut batch = WriteBatch::new();
        batch.put(
            key,
            codec::encode("snapshot record", &record).map_err(|e| err(&e))?,
        );
        self.engine.write(batch).map_err(|e| err(&e))?;
        drop(exclusive);
        // The old snapshot goes only once nothing durable points at it.
        self.flusher.checkpoint().await.map_err(|e| err(&e))?;
        if let Some((_, old)) = previous.filter(|(_, old)| *old != stored) {
            self.store.remove(&old);
        }
        let data = self.store.open(&stored).await.map_err(|e| err(&e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(data),
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
            #[cfg(madsim)]
            if let Ok(bytes) = codec::encode("applied entry", &entry.payload) {
                crate::sim_hooks::record_applied(
                    self.shard,
                    entry.log_id.index,
                    crc32fast::hash(&bytes),
                );
            }
            let response = match entry.payload {
                EntryPayload::Blank => Response::None,
                EntryPayload::Normal(req) => {
                    self.apply_request(req, entry.log_id.index, &mut data)?
                }
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), m);
                    // conf_ver counts the membership entries applied, so
                    // every replica (also one that replays the log after
                    // joining) agrees on it at the same applied index, and
                    // it only grows: a split child inherits its parent's
                    // and counts on from there, although its log indexes
                    // start again at 1 (a log index here made a child's
                    // membership look older than its parent's to the PD).
                    let mut meta = self.meta.write().unwrap_or_else(|p| p.into_inner());
                    meta.epoch.conf_ver += 1;
                    meta_changed = true;
                    Response::None
                }
            };
            responses.push(response);
        }
        #[cfg(madsim)]
        if let (Some(pd), Some(applied)) = (&self.pd, &self.applied) {
            if let Ok(bytes) = read_pd(pd, |s| codec::encode("pd state", s)) {
                crate::sim_hooks::record_pd_state(applied.index, crc32fast::hash(&bytes));
            }
        }
        let mut batch = WriteBatch::new();
        data.drain_into(&mut batch);
        let mut children = std::mem::take(&mut self.children);
        let written = self.write_applied(batch, &mut children, meta_changed).await;
        if let Some(sink) = &self.split_sink {
            for child in children {
                match written {
                    Ok(()) => sink.announce(SplitChild {
                        parent: child.parent,
                        meta: child.meta,
                    }),
                    Err(_) => sink.settled(child.meta.id),
                }
            }
        }
        written.map(|()| responses)
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
        // Take a point-in-time view now, while no entry is being applied, so
        // that it is exactly the state at `last_log_id`; the snapshot is
        // written from it in `build_snapshot`, in a task of its own, while
        // applies go on. It streams from the view to its file: the shard's
        // data is never held in memory (the simulation's engine copies the
        // range).
        let (lo, hi) = keys::data_range(&shard.start, shard.end.as_deref());
        let source = self.engine.read_view(&lo, &hi).map(|view| {
            let header = Header {
                shard,
                sessions: self.sessions.to_snapshot(),
                pd: self.pd.as_ref().map(|pd| read_pd(pd, PdState::clone)),
            };
            (view, header)
        });
        SnapshotBuilder {
            shard: self.shard,
            engine: self.engine.clone(),
            flusher: self.flusher.clone(),
            store: self.store.clone(),
            meta,
            source: Some(source),
            gate: self.gate.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotBuf>, StorageError> {
        self.store
            .begin_receive()
            .await
            .map(Box::new)
            .map_err(|e| snap_err(None, e))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<SnapshotBuf>,
    ) -> Result<(), StorageError> {
        let err =
            |e: &dyn std::error::Error| snap_err(Some(meta), std::io::Error::other(e.to_string()));
        let previous = self.current_record()?;
        let stored = self
            .store
            .keep_received(*snapshot, &received_name(self.shard, &meta.snapshot_id))
            .await
            .map_err(|e| err(&e))?;
        // Read it whole before anything is deleted: a corrupt, truncated or
        // foreign snapshot is refused here, and the replica keeps what it
        // has. Past the marker below it would be installed again at every
        // start, and the node could not start.
        let source = self.store.reader(&stored).map_err(|e| err(&e))?;
        let shard = self.shard;
        let checked = blocking(move || match snapshot::verify(source) {
            Ok(h) if h.shard.id != shard => Err(SnapshotError::Corrupt(format!(
                "snapshot of shard {} offered to shard {shard}",
                h.shard.id
            ))),
            other => other.map(drop),
        })
        .await;
        if let Err(e) = checked {
            tracing::error!(shard, snapshot = %meta.snapshot_id, error = %e, "refusing a received snapshot");
            if previous.as_ref().is_none_or(|(_, old)| *old != stored) {
                self.store.remove(&stored);
            }
            return Err(err(&e));
        }
        // From here a crash finishes the install at the next start.
        let marker: SnapshotRecord = (meta.clone(), stored.clone());
        let mut batch = WriteBatch::new();
        batch.put(
            keys::sm_meta(self.shard, SmMeta::Installing),
            codec::encode("snapshot install marker", &marker).map_err(|e| err(&e))?,
        );
        self.engine.write(batch).map_err(|e| err(&e))?;
        self.flusher.checkpoint().await.map_err(|e| err(&e))?;

        let exclusive = self.gate.apply().await;
        if self.gate.is_closed() {
            return Err(err(&RemovedError(self.shard)));
        }
        let (engine, shard, old) = (self.engine.clone(), self.shard, read_meta(&self.meta));
        let source = self.store.reader(&stored).map_err(|e| err(&e))?;
        let header = blocking(move || install::replace_shard_data(&engine, shard, &old, source))
            .await
            .map_err(|e| err(&e))?;
        let new_meta = header.shard.clone();
        if let (Some(pd), Some(state)) = (&self.pd, &header.pd) {
            *pd.write().unwrap_or_else(|p| p.into_inner()) = state.clone();
        }
        let mut batch = WriteBatch::new();
        self.sessions = finish_install(self.shard, meta, stored.clone(), header, &mut batch)?;
        self.engine.write(batch).map_err(|e| err(&e))?;
        *self.meta.write().unwrap_or_else(|p| p.into_inner()) = new_meta;
        self.awaiting_snapshot.store(false, Ordering::Release);
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        drop(exclusive);
        self.flusher.checkpoint().await.map_err(|e| err(&e))?;
        if let Some((_, old)) = previous.filter(|(_, old)| *old != stored) {
            self.store.remove(&old);
        }
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let Some((meta, stored)) = self.current_record()? else {
            return Ok(None);
        };
        let data = self.store.open(&stored).await.map_err(|e| {
            StorageError::from(StorageIOError::read_snapshot(None, AnyError::new(&e)))
        })?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(data),
        }))
    }
}

#[cfg(test)]
mod tests;
