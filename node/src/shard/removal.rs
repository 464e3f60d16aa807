//! Removing a replica from this node (issue 9, item 5), and the tombstone
//! it leaves.
//!
//! Once the shard's leader has committed a membership without this node,
//! the node is told to remove its replica ([`ShardHost::remove`]): its Raft
//! stops and leaves the router (the host's map, so messages for it are
//! answered "not hosted"), its data range, sessions and state-machine
//! metadata are deleted, its snapshot file is removed, and its Raft log is
//! dropped from the WAL (`Forget`). In the engine a tombstone takes the
//! descriptor's place. It keeps:
//! - the membership version (`conf_ver`) at removal: a request to create
//!   the replica again from a descriptor that is not newer (a stale leader
//!   that still lists this node) is refused;
//! - the last vote: a replica created again later (the node added back)
//!   starts from it, so it never votes twice in a term it voted in before
//!   (its log is gone; the new replica is a learner that gets a snapshot).
//!
//! Such a new incarnation also grants no vote at all before its first
//! snapshot (`service::raft`): a lagging replica that still holds a
//! membership in which this node was a voter would otherwise win an
//! election with the empty replica's vote and lose entries committed
//! after it (found by the simulation: `moves.rs`, mixed). Once the snapshot
//! is in, it holds the entries that removed and re-added it, so any
//! candidate with that old membership has a shorter log and is refused.
//! (TiKV gets the same from never reusing peer ids.)
//!
//! The order makes a crash at any point safe: the engine batch with the
//! tombstone is made durable first, then the WAL forgets the shard; a
//! node that finds a tombstone at start and log state for the shard
//! forgets it then ([`forget_logs_of_tombstones`]).

use serde::{Deserialize, Serialize};

use super::host::ShardHost;
use super::meta::ShardMeta;
use super::replica::Replica;
use crate::codec;
use crate::error::NodeError;
use crate::state_machine::install::delete_range;
use crate::storage::engine::{SharedEngine, WriteBatch};
use crate::storage::keys::{self, ShardId, SmMeta};
use crate::wal::Wal;

/// Why a replica cannot be created or removed here.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("shard {shard} overlaps shard {other} already hosted on this node")]
    Overlaps { shard: ShardId, other: ShardId },
    #[error(
        "the replica of shard {shard} was removed from this node at membership version \
         {removed_at}; a descriptor at version {asked} is not newer, so it is not created again"
    )]
    Tombstoned {
        shard: ShardId,
        removed_at: u64,
        asked: u64,
    },
    #[error(
        "this node hosts replica {hosted} of shard {shard} at membership version {hosted_at}; \
         the request for replica {asked} comes with version {asked_at}, not newer (a stale \
         request); not created"
    )]
    OtherReplicaHosted {
        shard: ShardId,
        hosted: crate::raft::type_config::ReplicaId,
        hosted_at: u64,
        asked: crate::raft::type_config::ReplicaId,
        asked_at: u64,
    },
    #[error(
        "shard {shard} is a child of a split that this node is applying; its replica here \
         opens when the split is written, so none is created now (ask again shortly)"
    )]
    SplitChildPending { shard: ShardId },
    #[error(
        "the replica of shard {shard} on this node leads the shard; move its leadership away \
         before removing it"
    )]
    Leads { shard: ShardId },
    #[error(
        "the replica of shard {shard} on this node is a voter at membership version {local}, \
         newer than the {asked} of the removal; not removed"
    )]
    StillMember {
        shard: ShardId,
        local: u64,
        asked: u64,
    },
}

/// Every state-machine record of a replica, apart from its tombstone.
const STATE_TAGS: [SmMeta; 9] = [
    SmMeta::Applied,
    SmMeta::Membership,
    SmMeta::Shard,
    SmMeta::Snapshot,
    SmMeta::NextSessionId,
    SmMeta::Installing,
    SmMeta::Pd,
    SmMeta::AwaitingSnapshot,
    SmMeta::ReplicaId,
];

/// What a removed replica leaves in the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    /// The shard's membership version when the replica was removed.
    pub conf_ver: u64,
    /// The replica's last vote (openraft's, encoded as the WAL keeps it).
    pub vote: Option<Vec<u8>>,
}

/// The tombstone of `shard` on this node, if its replica was removed.
pub fn tombstone(engine: &SharedEngine, shard: ShardId) -> Result<Option<Tombstone>, NodeError> {
    match engine.get(&keys::sm_meta(shard, SmMeta::Tombstone))? {
        None => Ok(None),
        Some(bytes) => codec::decode("tombstone", &bytes)
            .map(Some)
            .map_err(|e| NodeError::Engine(crate::storage::EngineError::Corrupt(e.to_string()))),
    }
}

/// At start: drops the WAL state of shards that have a tombstone (a crash
/// between the two writes of a removal).
pub async fn forget_logs_of_tombstones(engine: &SharedEngine, wal: &Wal) -> Result<(), NodeError> {
    let (lo, hi) = keys::all_sm_meta();
    for k in engine.scan_keys(&lo, &hi, usize::MAX)? {
        if let Some((shard, tag)) = keys::parse_sm_meta(&k) {
            if tag == SmMeta::Tombstone as u8 && wal.knows(shard) {
                tracing::info!(shard, "finishing a replica removal cut by a crash");
                wal.forget(shard).await?;
            }
        }
    }
    Ok(())
}

/// Before creating `meta`'s replica: refuses a descriptor not newer than
/// the tombstone (`after_orphan`: as new is enough, the tombstone being
/// that of an empty replica this create replaces); otherwise clears the
/// tombstone and seeds the new replica's vote from it. Returns whether
/// there was one: the replica is then a new incarnation on a node that was
/// a member before.
pub async fn prepare_create(
    engine: &SharedEngine,
    wal: &Wal,
    meta: &ShardMeta,
    batch: &mut WriteBatch,
    after_orphan: bool,
) -> Result<bool, NodeError> {
    // Whatever an earlier replica of the shard left (nothing, normally).
    for tag in STATE_TAGS {
        batch.delete(keys::sm_meta(meta.id, tag));
    }
    let Some(t) = tombstone(engine, meta.id)? else {
        return Ok(false);
    };
    let stale = if after_orphan {
        meta.epoch.conf_ver < t.conf_ver
    } else {
        meta.epoch.conf_ver <= t.conf_ver
    };
    if stale {
        return Err(ReplicaError::Tombstoned {
            shard: meta.id,
            removed_at: t.conf_ver,
            asked: meta.epoch.conf_ver,
        }
        .into());
    }
    if let Some(vote) = t.vote {
        wal.save_vote(meta.id, vote).await?;
    }
    batch.delete(keys::sm_meta(meta.id, SmMeta::Tombstone));
    Ok(true)
}

impl ShardHost {
    /// Removes this node's replica `which` of `shard` (`ReplicaId(0)`:
    /// whichever is hosted), whose leader committed a membership at version
    /// `conf_ver` without it. Returns false if no such replica is hosted
    /// here (removed already: the call is idempotent; or the node was added
    /// back since, as another replica, which stays).
    pub async fn remove(
        &self,
        shard: ShardId,
        conf_ver: u64,
        which: crate::raft::type_config::ReplicaId,
    ) -> Result<bool, NodeError> {
        let _guard = self.create_lock.lock().await;
        let Some(replica) = self.get(shard) else {
            return Ok(false);
        };
        if which.0 != 0 && replica.me() != which {
            tracing::info!(
                node = self.node_id(),
                shard,
                hosted = %replica.me(),
                removed = %which,
                "not removing: this node hosts another replica of the shard now"
            );
            return Ok(false);
        }
        if replica.is_leader() {
            return Err(ReplicaError::Leads { shard }.into());
        }
        self.remove_held(&replica, conf_ver).await?;
        Ok(true)
    }

    /// Removes `replica` (its shard's leader committed a membership at
    /// `conf_ver` without it); the caller holds the create lock.
    pub(super) async fn remove_held(
        &self,
        replica: &Replica,
        conf_ver: u64,
    ) -> Result<(), NodeError> {
        let shard = replica.id;
        let meta = replica.meta();
        let me = self.node_id();
        if replica.is_voter(me) && meta.epoch.conf_ver > conf_ver {
            return Err(ReplicaError::StillMember {
                shard,
                local: meta.epoch.conf_ver,
                asked: conf_ver,
            }
            .into());
        }
        if let Err(e) = replica.raft.shutdown().await {
            tracing::warn!(node = me, shard, "stopping the removed replica's raft: {e}");
        }
        // The state machine may still have a write queued or a snapshot
        // being built: none may land after the deletes below.
        replica.close_state_machine().await;
        // Read the range again now that nothing applies any more: a split
        // applied while the gate closed has narrowed it, and the child,
        // which opens from this node's data in the rest, must keep it. (With
        // the range read before, a removal racing a split deleted the
        // child's keys: lost writes, found by the `moves` simulation.)
        let meta = replica.meta();
        self.forget(shard);
        let deps = &self.deps;
        crate::state_machine::forget_snapshot(&deps.engine, &deps.snapshots, shard);
        let (lo, hi) = keys::data_range(&meta.start, meta.end.as_deref());
        delete_range(&deps.engine, &lo, &hi)?;
        let (lo, hi) = keys::sessions_range(shard);
        delete_range(&deps.engine, &lo, &hi)?;
        let mut batch = WriteBatch::new();
        for tag in STATE_TAGS {
            batch.delete(keys::sm_meta(shard, tag));
        }
        let stone = Tombstone {
            conf_ver: conf_ver.max(meta.epoch.conf_ver),
            vote: deps.wal.vote(shard),
        };
        let bytes = codec::encode("tombstone", &stone)
            .map_err(|e| NodeError::Engine(crate::storage::EngineError::Io(e.to_string())))?;
        batch.put(keys::sm_meta(shard, SmMeta::Tombstone), bytes);
        deps.engine.write(batch)?;
        deps.flusher.checkpoint().await?;
        deps.wal.forget(shard).await?;
        tracing::info!(
            node = me,
            shard,
            conf_ver = stone.conf_ver,
            "removed this node's replica and left a tombstone"
        );
        Ok(())
    }
}
