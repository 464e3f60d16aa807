//! What goes through a shard's Raft log (`Request`) and what applying it
//! answers (`Response`). Encoded with bincode inside openraft entries.
//!
//! Byte strings are encoded with `serde_bytes`: bincode writes the same bytes
//! as for a `Vec<u8>` (length, then the bytes), but in one copy instead of
//! one call per byte, which matters for 1 MiB values.
//!
//! Client sessions are registered through the log too
//! (`Request::RegisterSession`), as in the Raft dissertation (§6.3): every
//! replica allocates the same id and evicts the same sessions at the same
//! log index. See docs/decisions/0007-explicit-client-sessions.md.

use serde::{Deserialize, Serialize};

/// Identifies one logical client write for exactly-once application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteId {
    /// A session registered on this shard (`Response::SessionRegistered`).
    pub client_id: u64,
    pub seq: u64,
    /// Every seq below this has been answered; its result may be forgotten.
    pub first_incomplete: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteOp {
    Put {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    Delete {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Set `key` to `new` (None: delete) iff its value equals `expected`
    /// (None: absent).
    Cas {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        expected: Option<Vec<u8>>,
        #[serde(with = "serde_bytes")]
        new: Option<Vec<u8>>,
    },
    /// Atomic puts (Some) and deletes (None).
    Batch(#[serde(with = "crate::codec::byte_pairs")] Vec<(Vec<u8>, Option<Vec<u8>>)>),
    /// If every compare holds, run `success`, else `failure`; in order,
    /// each op seeing the earlier ones, all in one atomic step
    /// ([`crate::state_machine::apply`]). New variants go last: entries
    /// and dedup records are bincode, which numbers variants by position.
    Txn {
        compares: Vec<Compare>,
        success: Vec<TxnOp>,
        failure: Vec<TxnOp>,
    },
}

/// How a [`Compare`] relates the current value to the given one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareOp {
    Equal,
    NotEqual,
}

/// A condition of a [`WriteOp::Txn`]: the current value of `key` compared
/// with `value`, where `None` stands for absence (`Equal` + `None`: the key
/// is absent; `NotEqual` + `None`: it is present).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    pub op: CompareOp,
    #[serde(with = "serde_bytes")]
    pub value: Option<Vec<u8>>,
}

impl Compare {
    /// Whether the comparison holds for `current` (`None`: absent).
    pub fn holds(&self, current: Option<&[u8]>) -> bool {
        let equal = current == self.value.as_deref();
        match self.op {
            CompareOp::Equal => equal,
            CompareOp::NotEqual => !equal,
        }
    }
}

/// One operation of a [`WriteOp::Txn`] branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    Put {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    Delete {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Reads the value as of this point of the txn.
    Get {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
}

impl TxnOp {
    pub fn key(&self) -> &[u8] {
        match self {
            TxnOp::Put { key, .. } | TxnOp::Delete { key } | TxnOp::Get { key } => key,
        }
    }

    /// Key and value bytes of the op.
    pub fn payload_bytes(&self) -> usize {
        match self {
            TxnOp::Put { key, value } => key.len() + value.len(),
            TxnOp::Delete { key } | TxnOp::Get { key } => key.len(),
        }
    }
}

/// What one [`TxnOp`] answered, in the order of the branch that ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOpResult {
    Put,
    Delete {
        existed: bool,
    },
    Get {
        #[serde(with = "serde_bytes")]
        value: Option<Vec<u8>>,
    },
}

impl WriteOp {
    /// Every key the operation touches.
    pub fn keys(&self) -> Vec<&[u8]> {
        match self {
            WriteOp::Put { key, .. } | WriteOp::Delete { key } | WriteOp::Cas { key, .. } => {
                vec![key.as_slice()]
            }
            WriteOp::Batch(m) => m.iter().map(|(k, _)| k.as_slice()).collect(),
            WriteOp::Txn {
                compares,
                success,
                failure,
            } => compares
                .iter()
                .map(|c| c.key.as_slice())
                .chain(success.iter().chain(failure).map(TxnOp::key))
                .collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// A client write, applied at most once per write id.
    Write { write_id: WriteId, op: WriteOp },
    /// Opens a client session: the state machine allocates the next id of
    /// the shard's counter and answers `Response::SessionRegistered`. If the
    /// shard then holds more than `max_sessions` sessions, the least
    /// recently written ones are evicted. The cap travels in the entry (the
    /// proposing leader's configuration), so every replica evicts the same
    /// sessions whatever its own configuration says.
    RegisterSession { max_sessions: u64 },
    /// Several requests proposed together as one entry (see
    /// `shard::proposer`): applied in order at the same log index, each
    /// with its own dedup check, answered with `Response::Multi` in the
    /// same order. Never nested.
    Multi(Vec<Request>),
    /// A command of the placement driver's state machine; applied only by
    /// the PD group ([`crate::pd`]), refused by every data shard.
    Pd(Box<atoll_pd::command::Command>),
    /// Splits the shard at `key`: the shard keeps `[start, key)`, a new
    /// shard `child` gets `[key, end)` on the same replicas, both at version
    /// `expected_version + 1` (see `state_machine::split`). Refused unless
    /// the shard is still at `expected_version` and `key` lies strictly
    /// inside it. The child's Raft members are `child_replicas`: a fresh
    /// replica id for each member node of the shard (refused unless they
    /// name exactly the shard's member nodes; empty: the parent's ids).
    Split {
        expected_version: u64,
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        child: crate::storage::keys::ShardId,
        child_replicas: Vec<u64>,
    },
}

impl Request {
    /// Key and value bytes the request carries (for batch budgets).
    pub fn payload_bytes(&self) -> usize {
        match self {
            Request::Write { op, .. } => op.payload_bytes(),
            Request::RegisterSession { .. } => 0,
            Request::Multi(reqs) => reqs.iter().map(Request::payload_bytes).sum(),
            Request::Pd(_) => 0,
            Request::Split { key, .. } => key.len(),
        }
    }
}

impl WriteOp {
    /// Key and value bytes of the operation.
    pub fn payload_bytes(&self) -> usize {
        let opt = |v: &Option<Vec<u8>>| v.as_ref().map_or(0, Vec::len);
        match self {
            WriteOp::Put { key, value } => key.len() + value.len(),
            WriteOp::Delete { key } => key.len(),
            WriteOp::Cas { key, expected, new } => key.len() + opt(expected) + opt(new),
            WriteOp::Batch(m) => m.iter().map(|(k, v)| k.len() + opt(v)).sum(),
            WriteOp::Txn {
                compares,
                success,
                failure,
            } => {
                let compared: usize = compares.iter().map(|c| c.key.len() + opt(&c.value)).sum();
                let ops: usize = success
                    .iter()
                    .chain(failure)
                    .map(TxnOp::payload_bytes)
                    .sum();
                compared + ops
            }
        }
    }
}

/// Why the state machine refused to apply a write (nothing was changed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rejection {
    /// A key is outside the shard's range at apply time (the shard split).
    KeyOutOfRange {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// A retry of a write whose answer the client already acknowledged.
    StaleSequence { seq: u64, first_incomplete: u64 },
    /// The write's session is not in the table: evicted, or never
    /// registered on this shard. An earlier attempt of the same write may
    /// have been applied before the eviction, so its outcome is unknown.
    SessionExpired { client_id: u64 },
    /// A `Multi` inside a `Multi` (never proposed by this node).
    NestedMulti,
    /// A PD command proposed to a data shard (never proposed by this node).
    NotPdGroup,
    /// A split proposed against another version of the shard.
    VersionChanged { expected: u64, current: u64 },
    /// A split key outside the shard or at its start.
    BadSplitKey {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// A split whose child id is already a shard on this replica's node
    /// (never proposed by this node: the PD hands out every id once).
    ChildExists {
        child: crate::storage::keys::ShardId,
    },
    /// A split whose child replica ids do not match the shard's member
    /// nodes (the membership changed after it was proposed).
    MembersChanged,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Membership changes and blank entries.
    None,
    Put,
    Delete {
        existed: bool,
    },
    Cas {
        succeeded: bool,
        #[serde(with = "serde_bytes")]
        previous: Option<Vec<u8>>,
    },
    Batch,
    /// A new session's id.
    SessionRegistered {
        client_id: u64,
    },
    Rejected(Rejection),
    /// The answers to a `Request::Multi`, in order.
    Multi(Vec<Response>),
    /// Whether every compare held, and the results of the branch that ran.
    Txn {
        succeeded: bool,
        results: Vec<TxnOpResult>,
    },
    /// What the PD state machine answered.
    Pd(atoll_pd::command::CommandResult),
    /// The split happened: the shard's new descriptor and the child's.
    Split {
        left: crate::shard::meta::ShardMeta,
        right: crate::shard::meta::ShardMeta,
    },
}
