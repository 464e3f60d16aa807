//! All shard replicas of this node, by shard id. Replicas are created when
//! the cluster is bootstrapped, when a shard is added to this node, and
//! re-opened from the engine on restart.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use tokio::sync::Mutex;

use super::meta::ShardMeta;
use super::removal::ReplicaError;
use super::replica::{Replica, ReplicaDeps};
use crate::codec;
use crate::error::NodeError;
use crate::raft::type_config::{NodeId, ReplicaId};
use crate::storage::engine::WriteBatch;
use crate::storage::keys::{self, ShardId, SmMeta};

pub struct ShardHost {
    pub(super) deps: ReplicaDeps,
    replicas: RwLock<BTreeMap<ShardId, Arc<Replica>>>,
    /// Serialises creation and removal so two callers cannot open one
    /// shard twice, or open one that is being removed.
    pub(super) create_lock: Mutex<()>,
}

impl ShardHost {
    /// Opens every shard whose descriptor is in the engine.
    pub async fn open(deps: ReplicaDeps) -> Result<Self, NodeError> {
        let host = Self {
            deps,
            replicas: RwLock::new(BTreeMap::new()),
            create_lock: Mutex::new(()),
        };
        super::removal::forget_logs_of_tombstones(&host.deps.engine, &host.deps.wal).await?;
        let (lo, hi) = keys::all_sm_meta();
        for (k, v) in host.deps.engine.scan(&lo, &hi, usize::MAX)? {
            match keys::parse_sm_meta(&k) {
                Some((_, tag)) if tag == SmMeta::Shard as u8 => {}
                _ => continue,
            }
            let meta: ShardMeta = codec::decode("shard descriptor", &v).map_err(|e| {
                NodeError::Engine(crate::storage::EngineError::Corrupt(e.to_string()))
            })?;
            let replica = Replica::open(&host.deps, meta).await?;
            host.insert(Arc::new(replica));
        }
        Ok(host)
    }

    pub fn node_id(&self) -> NodeId {
        self.deps.node_id
    }

    fn insert(&self, r: Arc<Replica>) {
        self.replicas
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(r.id, r);
    }

    /// Takes a replica out of the map (messages for it are then answered
    /// "not hosted").
    pub(super) fn forget(&self, id: ShardId) {
        self.replicas
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    pub fn get(&self, id: ShardId) -> Option<Arc<Replica>> {
        self.replicas
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    pub fn all(&self) -> Vec<Arc<Replica>> {
        self.replicas
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.replicas
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// Creates an empty replica `me` of `meta.id` (idempotent: an existing
    /// replica with that id is returned as is). The descriptor is made
    /// durable first so the replica is re-opened after a restart.
    /// `awaiting_snapshot`: the replica joins a running shard and must start
    /// from a snapshot, never from the shard's first log entries (false only
    /// for the members of a new shard, whose log starts with its initial
    /// membership).
    ///
    /// Another replica of the shard hosted here, with a membership version
    /// older than the request's descriptor, was removed from the shard while
    /// this node did not hear of it (the leader adds a node only once no
    /// member of it is left in the committed membership): it is removed here
    /// first. A request whose descriptor is not newer than the hosted
    /// replica's is stale and refused, unless it is as new and the hosted
    /// replica never heard from a leader (an orphan of an add-learner that
    /// did not commit). (Replica numbers are unique, not ordered in time:
    /// the PD hands them out in batches.)
    pub async fn create(
        &self,
        meta: ShardMeta,
        awaiting_snapshot: bool,
        me: ReplicaId,
    ) -> Result<Arc<Replica>, NodeError> {
        let _guard = self.create_lock.lock().await;
        // A split applied here has written this shard's state as its child,
        // and `split::open_children` has not opened it yet: it is this
        // node's replica of the shard. Opened now, so that the request is
        // checked against it below instead of writing an empty replica's
        // marks over the child's state.
        #[cfg(all(madsim, feature = "sim-bugs"))]
        let broken = crate::sim_hooks::bug(crate::sim_hooks::Bug::CreateOverSplitChild);
        #[cfg(not(all(madsim, feature = "sim-bugs")))]
        let broken = false;
        if self.get(meta.id).is_none() && !broken {
            if let Some(stored) = self.stored_meta(meta.id)? {
                tracing::info!(
                    node = self.node_id(),
                    shard = meta.id,
                    "opening a split child that a create request found before it was opened"
                );
                self.open_stored(stored).await?;
                #[cfg(madsim)]
                crate::sim_hooks::record_opened_on_request(meta.id);
            }
        }
        let mut replaced_orphan = false;
        if let Some(r) = self.get(meta.id) {
            if r.me() == me {
                return Ok(r);
            }
            let hosted_at = r.meta().epoch.conf_ver;
            // At the same version, a hosted replica that no leader ever reached was
            // created for an add-learner that never committed (two adds raced for the
            // same membership, and only one change can commit at a version): it held
            // this shard's place on the node for good, and every later add of the
            // node at that version was refused. It gives way.
            let orphan = meta.epoch.conf_ver == hosted_at && r.never_contacted();
            if meta.epoch.conf_ver <= hosted_at && !orphan {
                return Err(ReplicaError::OtherReplicaHosted {
                    shard: meta.id,
                    hosted: r.me(),
                    hosted_at,
                    asked: me,
                    asked_at: meta.epoch.conf_ver,
                }
                .into());
            }
            replaced_orphan = orphan;
            if orphan {
                tracing::info!(
                    node = self.node_id(),
                    shard = meta.id,
                    hosted = %r.me(),
                    new = %me,
                    "replacing an empty replica that no leader ever reached (its add-learner \
                     did not commit)"
                );
            } else {
                tracing::info!(
                    node = self.node_id(),
                    shard = meta.id,
                    hosted = %r.me(),
                    new = %me,
                    "replacing a replica that was removed from the shard while this node did \
                     not hear"
                );
            }
            self.remove_held(&r, meta.epoch.conf_ver.saturating_sub(1))
                .await?;
        }
        if let Some(other) = self.overlapping(&meta) {
            return Err(ReplicaError::Overlaps {
                shard: meta.id,
                other: other.id,
            }
            .into());
        }
        let mut batch = WriteBatch::new();
        let reincarnated = super::removal::prepare_create(
            &self.deps.engine,
            &self.deps.wal,
            &meta,
            &mut batch,
            replaced_orphan,
        )
        .await?;
        let bytes = codec::encode("shard descriptor", &meta)
            .map_err(|e| NodeError::Engine(crate::storage::EngineError::Io(e.to_string())))?;
        batch.put(keys::sm_meta(meta.id, SmMeta::Shard), bytes);
        batch.put(
            keys::sm_meta(meta.id, SmMeta::ReplicaId),
            me.0.to_be_bytes().to_vec(),
        );
        if awaiting_snapshot || reincarnated {
            let mark = if reincarnated { vec![1] } else { Vec::new() };
            batch.put(keys::sm_meta(meta.id, SmMeta::AwaitingSnapshot), mark);
        }
        // Checked after the overlap (a split marks its child pending before
        // it narrows the parent), and written under the same lock as a
        // split's check for a created replica (`SplitSink`), so that a
        // split applied from now on writes no child state over this one.
        let engine = &self.deps.engine;
        let written = if broken {
            Some(engine.write(batch))
        } else {
            self.deps
                .splits
                .write_unless_pending(meta.id, || engine.write(batch))
        };
        match written {
            None => return Err(ReplicaError::SplitChildPending { shard: meta.id }.into()),
            Some(result) => result?,
        }
        self.deps.flusher.checkpoint().await?;
        #[cfg(madsim)]
        if awaiting_snapshot || reincarnated {
            crate::sim_hooks::record_created_empty(meta.id);
        }
        let replica = Arc::new(Replica::open(&self.deps, meta).await?);
        self.insert(replica.clone());
        Ok(replica)
    }

    /// Opens the replica of a split child whose state the split wrote to
    /// the engine (`state_machine::split`); `None` if it is open already.
    /// The stored descriptor wins over `meta`: the child may have moved on.
    pub async fn open_split_child(
        &self,
        meta: ShardMeta,
    ) -> Result<Option<Arc<Replica>>, NodeError> {
        let _guard = self.create_lock.lock().await;
        if self.get(meta.id).is_some() {
            return Ok(None);
        }
        let meta = self.stored_meta(meta.id)?.unwrap_or(meta);
        Ok(Some(self.open_stored(meta).await?))
    }

    /// The descriptor stored for `shard`, if any.
    fn stored_meta(&self, shard: ShardId) -> Result<Option<ShardMeta>, NodeError> {
        let Some(bytes) = self.deps.engine.get(&keys::sm_meta(shard, SmMeta::Shard))? else {
            return Ok(None);
        };
        codec::decode("shard descriptor", &bytes)
            .map(Some)
            .map_err(|e| NodeError::Engine(crate::storage::EngineError::Corrupt(e.to_string())))
    }

    /// Opens the replica whose state the engine holds and hosts it.
    async fn open_stored(&self, meta: ShardMeta) -> Result<Arc<Replica>, NodeError> {
        let replica = Arc::new(Replica::open(&self.deps, meta).await?);
        self.insert(replica.clone());
        Ok(replica)
    }

    /// A replica of another shard whose range overlaps `meta`'s.
    pub fn overlapping(&self, meta: &ShardMeta) -> Option<Arc<Replica>> {
        self.all()
            .into_iter()
            .find(|r| r.id != meta.id && overlaps(&r.meta(), meta))
    }

    /// Stops every replica's Raft.
    pub async fn shutdown(&self) {
        for r in self.all() {
            if let Err(e) = r.raft.shutdown().await {
                tracing::warn!(shard = r.id, "raft shutdown: {e}");
            }
        }
    }
}

fn overlaps(a: &ShardMeta, b: &ShardMeta) -> bool {
    let a_before_b = a.end.as_deref().is_some_and(|e| e <= b.start.as_slice());
    let b_before_a = b.end.as_deref().is_some_and(|e| e <= a.start.as_slice());
    !(a_before_b || b_before_a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::meta::Epoch;

    fn m(start: &[u8], end: Option<&[u8]>) -> ShardMeta {
        ShardMeta {
            id: 1,
            start: start.to_vec(),
            end: end.map(<[u8]>::to_vec),
            epoch: Epoch::default(),
        }
    }

    #[test]
    fn overlap_is_half_open() {
        assert!(!overlaps(&m(b"a", Some(b"c")), &m(b"c", None)));
        assert!(overlaps(&m(b"a", Some(b"d")), &m(b"c", None)));
        assert!(overlaps(&m(b"", None), &m(b"x", Some(b"y"))));
        assert!(!overlaps(&m(b"x", Some(b"y")), &m(b"a", Some(b"x"))));
    }
}
