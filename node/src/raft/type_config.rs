//! The openraft type configuration shared by every shard's Raft group.
//! This is the only file that names the async runtime: real tokio in
//! production, madsim's simulated runtime under `--cfg madsim`.

use openraft::BasicNode;

use crate::command::{Request, Response};

#[cfg(not(madsim))]
pub type Runtime = openraft::TokioRuntime;
#[cfg(madsim)]
pub type Runtime = super::madsim_runtime::MadsimRuntime;

openraft::declare_raft_types!(
    /// Atoll's Raft types: node ids are `u64`, a node is its address.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = crate::state_machine::snapshot_store::SnapshotBuf,
        AsyncRuntime = Runtime,
);

pub type NodeId = u64;
pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, BasicNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, BasicNode>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
