//! The commands of the PD state machine and their typed results. Each
//! command is a Raft log entry of the PD group; time travels inside it
//! (`now_ms`, stamped by the PD leader that proposes it, [`Command::time_mut`]),
//! so every replica applies the same entry to the same result.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::{ConfigError, PdConfig};
use crate::ids::{IdKind, IdRange};
use crate::node::{AddressProblem, NodeId, NodeState};
use crate::shard::{Epoch, ShardDescriptor, ShardId, ShardStats};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Registers the first shard (the whole key space) of a new cluster.
    Bootstrap {
        shard: ShardDescriptor,
    },
    /// A node with a fresh address gets a new id; the same address again
    /// gets the same id (the join is retried safely).
    JoinNode {
        address: String,
        labels: BTreeMap<String, String>,
        now_ms: u64,
    },
    /// A node with an id of its own (an initial member of the cluster, or
    /// a node started with `--id`): the id is reserved so the allocator
    /// never hands it out. Registering again updates the address, and the
    /// labels unless none are given.
    RegisterNode {
        node: NodeId,
        address: String,
        labels: BTreeMap<String, String>,
        now_ms: u64,
    },
    NodeHeartbeat {
        node: NodeId,
        now_ms: u64,
        capacity_bytes: u64,
        used_bytes: u64,
    },
    /// A shard leader's report of its descriptor and statistics.
    ShardHeartbeat {
        report: ShardDescriptor,
        stats: ShardStats,
        now_ms: u64,
    },
    /// Drain, cancel a drain, or remove a node.
    SetNodeState {
        node: NodeId,
        target: NodeTarget,
        force: bool,
    },
    AllocIds {
        kind: IdKind,
        count: u64,
    },
    /// The parent's leader applied a split: `parent` is narrowed to the left
    /// part with a bumped version, `child` is the right part.
    ReportSplit {
        parent: ShardDescriptor,
        child: ShardDescriptor,
        now_ms: u64,
    },
    /// Marks nodes `Down` that have been silent for `down_after_ms`.
    Tick {
        now_ms: u64,
    },
    SetConfig {
        config: PdConfig,
    },
    /// Registers a node before it starts (`atollctl node add`), so its id
    /// and labels are known in advance: a fresh address gets a new id and
    /// the node is `Joining` until it is first heard from (its join,
    /// registration or heartbeat makes it `Up`). An address a node that is
    /// not removed already has gets that node's id; a `Joining` one takes
    /// the labels, if any are given, any other is left as it is.
    AddNode {
        address: String,
        labels: BTreeMap<String, String>,
    },
}

/// The states an operator may ask for (`Down` is only ever set by `Tick`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeTarget {
    Up,
    Draining,
    Removed,
}

/// One variant per command, each with the command's own result type.
impl Command {
    /// The time the command carries, if it carries one: the PD leader
    /// stamps it with its own clock before proposing (see the node's
    /// `pd::route`), so that node clocks never meet in the PD's arithmetic.
    pub fn time_mut(&mut self) -> Option<&mut u64> {
        match self {
            Command::JoinNode { now_ms, .. }
            | Command::RegisterNode { now_ms, .. }
            | Command::NodeHeartbeat { now_ms, .. }
            | Command::ShardHeartbeat { now_ms, .. }
            | Command::ReportSplit { now_ms, .. }
            | Command::Tick { now_ms } => Some(now_ms),
            Command::Bootstrap { .. }
            | Command::SetNodeState { .. }
            | Command::AllocIds { .. }
            | Command::SetConfig { .. }
            | Command::AddNode { .. } => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    Bootstrap(Result<(), BootstrapError>),
    JoinNode(Joined),
    RegisterNode(Result<Joined, NodeError>),
    NodeHeartbeat(Result<NodeState, NodeError>),
    ShardHeartbeat(HeartbeatOutcome),
    SetNodeState(Result<NodeStateChange, SetNodeStateError>),
    AllocIds(Result<IdRange, AllocError>),
    ReportSplit(Result<SplitOutcome, SplitError>),
    Tick(Vec<NodeId>),
    SetConfig(Result<(), ConfigError>),
    AddNode(Result<Added, AddNodeError>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Joined {
    pub node: NodeId,
    /// False when the address was already registered (a retried join).
    pub fresh: bool,
}

/// The node `AddNode` registered, or found at the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Added {
    pub node: NodeId,
    /// False when a node with this address was already registered.
    pub fresh: bool,
    /// Its state now: `Joining` when fresh.
    pub state: NodeState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HeartbeatOutcome {
    /// Stored; `changed` when the descriptor (not only the statistics) moved.
    Accepted {
        changed: bool,
    },
    Ignored(IgnoredReport),
}

/// Why a shard report was not stored. None of these is an error the
/// reporter must act on, except `RangeChangedWithoutSplit` (report the
/// split first) and `UnknownShard` (a child whose split is not reported yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IgnoredReport {
    /// The report's epoch is older than the PD's in version or conf_ver.
    StaleEpoch {
        known: Epoch,
        reported: Epoch,
    },
    /// Same epoch, older term: an old leader.
    StaleTerm {
        known: u64,
        reported: u64,
    },
    UnknownShard(ShardId),
    /// A newer version with a different range: splits reach the PD only
    /// through `ReportSplit`, so coverage of the key space never breaks.
    RangeChangedWithoutSplit(ShardId),
    NotBootstrapped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStateChange {
    pub from: NodeState,
    pub to: NodeState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SplitOutcome {
    Applied,
    /// The child is already known at this version or newer (a retried report).
    AlreadyApplied,
}

#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum BootstrapError {
    #[error("the cluster is already bootstrapped")]
    AlreadyBootstrapped,
    #[error("the first shard must cover the whole key space")]
    NotWholeKeyspace,
    #[error("the first shard's replica {replica} is on unknown node {node}; join the node first")]
    UnknownNode { replica: u64, node: NodeId },
}

#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum NodeError {
    #[error("node {0} is unknown; join it first")]
    Unknown(NodeId),
    #[error("node {0} was removed; join it again with a fresh data directory")]
    Removed(NodeId),
}

#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum AddNodeError {
    #[error(
        "bad node address {address:?}: {problem}; give the host:port other nodes \
         and clients will reach the node at (its --advertise, else --listen), e.g. 10.0.0.4:7101"
    )]
    BadAddress {
        address: String,
        problem: AddressProblem,
    },
    #[error("a label has an empty key; give labels as key=value, e.g. zone=eu-1a")]
    EmptyLabelKey,
}

#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum SetNodeStateError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("node {node} still holds {replicas} replicas; drain it first or pass --force")]
    HoldsReplicas { node: NodeId, replicas: usize },
    #[error("removing node {node} would leave shard {shard} without a live quorum")]
    WouldBreakQuorum { node: NodeId, shard: ShardId },
    /// Checked by the PD leader, which leads the PD's own group (not part
    /// of the replicated state): the node still holds a voter of it.
    #[error(
        "node {node} still holds a replica of the placement driver's own group (a drain \
         moves it to another up node); drain it first or pass --force"
    )]
    HostsPlacementDriver { node: NodeId },
}

#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum AllocError {
    #[error("id count must be between 1 and {max}, got {count}")]
    InvalidCount { count: u64, max: u64 },
    #[error("node ids are allocated only by joining")]
    NodeIdsByJoinOnly,
    #[error("the id space is exhausted")]
    Exhausted,
}

#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum SplitError {
    #[error("shard {0} is unknown")]
    UnknownParent(ShardId),
    #[error("the split's version {reported} is not newer than the known {known}; report splits in order")]
    NotNewer { known: u64, reported: u64 },
    #[error("parent and child do not tile the parent's known range; report earlier splits first")]
    RangeMismatch,
    #[error("child id {0} is already used by another shard")]
    ChildIdTaken(ShardId),
}
