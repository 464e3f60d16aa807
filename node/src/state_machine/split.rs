//! Applying a split (`Request::Split`) at one log index, the same on every
//! replica of the shard.
//!
//! The shard keeps `[start, key)`, the child gets `[key, end)`, and both
//! move to version `v + 1`. Nothing is copied: every shard of a node keeps
//! its data in the node's one data keyspace, and the range decides which
//! shard a key belongs to. In the same engine batch as the parent's new
//! range and applied index, the child gets its whole initial state:
//! - its descriptor;
//! - an applied log id at index 0 of term 0 with the parent's membership,
//!   so its Raft starts as a follower whose log is "purged" through index 0:
//!   a replica created empty elsewhere must get a snapshot (the inherited
//!   data is in no log entry);
//! - a copy of the parent's session table, whose new ids start at
//!   `child << 32` (see `dedup::Sessions::copy_for_split`).
//!
//! After the batch is written the node opens the child's Raft group
//! (`shard::split`), told through the replica's split sink.

use openraft::{CommittedLeaderId, LogId as OLogId};

use super::dedup::Sessions;
use super::{sm_write_err, StateMachine};
use crate::codec;
use crate::command::{Rejection, Response};
use crate::raft::type_config::{LogId, StorageError, StoredMembership};
use crate::shard::meta::{Epoch, ShardMeta};
use crate::storage::engine::WriteBatch;
use crate::storage::keys::{self, ShardId, SmMeta};

/// A child's initial state, written in the batch of the split's entry.
pub struct ChildInit {
    pub parent: ShardId,
    pub meta: ShardMeta,
    membership: StoredMembership,
    sessions: Sessions,
}

/// The applied log id a split child starts from.
pub fn child_start() -> LogId {
    OLogId::new(CommittedLeaderId::default(), 0)
}

impl StateMachine {
    pub(super) fn apply_split(
        &mut self,
        expected_version: u64,
        key: Vec<u8>,
        child: ShardId,
    ) -> Response {
        let mut meta = self.meta.write().unwrap_or_else(|p| p.into_inner());
        if meta.epoch.version != expected_version {
            return Response::Rejected(Rejection::VersionChanged {
                expected: expected_version,
                current: meta.epoch.version,
            });
        }
        if !meta.contains(&key) || key == meta.start {
            return Response::Rejected(Rejection::BadSplitKey { key });
        }
        if child == self.shard || child == crate::pd::PD_SHARD {
            return Response::Rejected(Rejection::ChildExists { child });
        }
        let version = expected_version + 1;
        #[allow(unused_mut)]
        let mut child_start_key = key.clone();
        #[cfg(all(madsim, feature = "sim-bugs"))]
        if crate::sim_hooks::bug(crate::sim_hooks::Bug::SplitLeavesGap) {
            child_start_key.push(0);
        }
        let right = ShardMeta {
            id: child,
            start: child_start_key,
            end: meta.end.take(),
            epoch: Epoch {
                version,
                conf_ver: meta.epoch.conf_ver,
            },
        };
        meta.end = Some(key);
        meta.epoch.version = version;
        let left = meta.clone();
        drop(meta);
        let membership =
            StoredMembership::new(Some(child_start()), self.membership.membership().clone());
        self.children.push(ChildInit {
            parent: self.shard,
            meta: right.clone(),
            membership,
            sessions: self.sessions.copy_for_split(child << 32),
        });
        Response::Split { left, right }
    }
}

impl ChildInit {
    /// Adds the child's initial state to the split's batch.
    pub fn persist_into(&mut self, batch: &mut WriteBatch) -> Result<(), StorageError> {
        let id = self.meta.id;
        let put = |batch: &mut WriteBatch, which, what, value: Result<Vec<u8>, _>| {
            value
                .map(|v| batch.put(keys::sm_meta(id, which), v))
                .map_err(|e: codec::EncodeError| {
                    tracing::error!(shard = id, "encoding the split child's {what}: {e}");
                    sm_write_err(e)
                })
        };
        put(
            batch,
            SmMeta::Shard,
            "descriptor",
            codec::encode("shard", &self.meta),
        )?;
        put(
            batch,
            SmMeta::Applied,
            "applied id",
            codec::encode("applied", &child_start()),
        )?;
        put(
            batch,
            SmMeta::Membership,
            "membership",
            codec::encode("membership", &self.membership),
        )?;
        self.sessions.persist_into(id, batch).map_err(sm_write_err)
    }
}
