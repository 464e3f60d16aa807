//! The openraft type configuration shared by every shard's Raft group.
//! This is the only file that names the async runtime: real tokio in
//! production, madsim's simulated runtime under `--cfg madsim`.

use openraft::BasicNode;

pub use super::replica_id::ReplicaId;
use crate::command::{Request, Response};

#[cfg(not(madsim))]
pub type Runtime = openraft::TokioRuntime;
#[cfg(madsim)]
pub type Runtime = super::madsim_runtime::MadsimRuntime;

openraft::declare_raft_types!(
    /// Atoll's Raft types: members are replica ids (never reused, see
    /// [`ReplicaId`]), a member's node is its address.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = ReplicaId,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = crate::state_machine::snapshot_store::SnapshotBuf,
        AsyncRuntime = Runtime,
);

/// A node of the cluster (not a Raft member: see [`ReplicaId`]).
pub type NodeId = u64;
pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<ReplicaId>;
pub type Vote = openraft::Vote<ReplicaId>;
pub type StorageError = openraft::StorageError<ReplicaId>;
pub type StoredMembership = openraft::StoredMembership<ReplicaId, BasicNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<ReplicaId, BasicNode>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
