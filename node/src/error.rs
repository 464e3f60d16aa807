//! Errors of the node. [`NodeError`] is fail-stop (startup, disk);
//! [`KvError`] is what a request gets back, mapped one-to-one onto the wire
//! `Error` so clients can act on it.

use atoll_proto as pb;

use crate::storage::EngineError;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("data directory {path}: {reason}")]
    DataDir { path: String, reason: String },
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The Raft log cannot be opened or written: corrupt, of another format
    /// version, or failed I/O.
    #[error(transparent)]
    Wal(#[from] crate::wal::WalError),
    #[error("raft storage: {0}")]
    Storage(Box<openraft::StorageError<crate::raft::type_config::ReplicaId>>),
    #[error("raft: {0}")]
    Raft(String),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("server on {addr}: {reason}")]
    Server { addr: String, reason: String },
    /// A fresh node found an existing cluster (or a misconfigured peer)
    /// where its `--initial-cluster` says it should bootstrap one.
    #[error("refusing to bootstrap: {0}")]
    BootstrapRefused(#[from] crate::cluster::preflight::Refusal),
    /// A replica cannot be created or removed here.
    #[error(transparent)]
    Replica(#[from] crate::shard::removal::ReplicaError),
}

impl From<openraft::StorageError<crate::raft::type_config::ReplicaId>> for NodeError {
    fn from(e: openraft::StorageError<crate::raft::type_config::ReplicaId>) -> Self {
        NodeError::Storage(Box::new(e))
    }
}

/// A request-level error; every variant has a wire twin.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KvError {
    #[error("this node is not the leader of shard {shard}{}", hint(.leader_id, .leader_addr))]
    NotLeader {
        shard: u64,
        leader_id: Option<u64>,
        leader_addr: Option<String>,
    },
    #[error("epoch mismatch: the shard changed (split or membership change); refresh routes")]
    EpochMismatch { current: Vec<pb::ShardDescriptor> },
    #[error("key {} is outside shard {} [{}, {})", show(.key), .shard.id, show(&.shard.start), show_end(&.shard.end))]
    KeyOutOfRange {
        key: Vec<u8>,
        shard: Box<pb::ShardDescriptor>,
    },
    #[error("shard {0} is not hosted on this node")]
    ShardNotFound(u64),
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Refused without effect (nothing proposed, or refused when applied):
    /// sending the same request again is safe.
    #[error("not applied: {0}; nothing changed, retry")]
    NotApplied(String),
    #[error("session {client_id} is not known to shard {shard} (evicted, or never opened there); this attempt applied nothing, but an earlier attempt of the same write may have been applied: the outcome is unknown. Open a new session; do not resend the write blindly")]
    SessionExpired { shard: u64, client_id: u64 },
}

fn hint(id: &Option<u64>, addr: &Option<String>) -> String {
    match (id, addr) {
        (Some(id), Some(a)) => format!("; try node {id} at {a}"),
        (Some(id), None) => format!("; try node {id}"),
        _ => "; no leader known yet (election in progress?)".to_string(),
    }
}

/// Printable form of a key: UTF-8 when it is, hex otherwise, truncated.
pub fn show(key: &[u8]) -> String {
    let short = &key[..key.len().min(64)];
    let mut s = match std::str::from_utf8(short) {
        Ok(t) if t.chars().all(|c| !c.is_control()) => format!("{t:?}"),
        _ => format!(
            "0x{}",
            short.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
    };
    if key.len() > short.len() {
        s.push_str(&format!("...({} bytes)", key.len()));
    }
    s
}

fn show_end(end: &[u8]) -> String {
    if end.is_empty() {
        "+inf".into()
    } else {
        show(end)
    }
}

impl KvError {
    pub fn to_proto(&self) -> pb::Error {
        use pb::error::Kind;
        let kind = match self {
            KvError::NotLeader {
                shard,
                leader_id,
                leader_addr,
            } => Kind::NotLeader(pb::NotLeader {
                shard_id: *shard,
                leader_id: *leader_id,
                leader_addr: leader_addr.clone().unwrap_or_default(),
            }),
            KvError::EpochMismatch { current } => Kind::EpochMismatch(pb::EpochMismatch {
                current: current.clone(),
            }),
            KvError::KeyOutOfRange { key, shard } => Kind::KeyOutOfRange(pb::KeyOutOfRange {
                key: key.clone(),
                shard: Some((**shard).clone()),
            }),
            KvError::ShardNotFound(id) => Kind::ShardNotFound(pb::ShardNotFound { shard_id: *id }),
            KvError::Unavailable(_) => Kind::Unavailable(pb::Unavailable {}),
            KvError::InvalidArgument(_) => Kind::InvalidArgument(pb::InvalidArgument {}),
            KvError::NotApplied(_) => Kind::NotApplied(pb::NotApplied {}),
            KvError::SessionExpired { shard, client_id } => {
                Kind::SessionExpired(pb::SessionExpired {
                    shard_id: *shard,
                    client_id: *client_id,
                })
            }
        };
        pb::Error {
            message: self.to_string(),
            kind: Some(kind),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_readable_and_kinds_map_one_to_one() {
        let e = KvError::NotLeader {
            shard: 3,
            leader_id: Some(2),
            leader_addr: Some("127.0.0.1:7102".into()),
        };
        let p = e.to_proto();
        assert!(
            p.message.contains("try node 2 at 127.0.0.1:7102"),
            "{}",
            p.message
        );
        assert!(
            matches!(p.kind, Some(pb::error::Kind::NotLeader(ref n)) if n.leader_id == Some(2))
        );
        let e = KvError::InvalidArgument("key is empty".into());
        assert!(matches!(
            e.to_proto().kind,
            Some(pb::error::Kind::InvalidArgument(_))
        ));
        let e = KvError::SessionExpired {
            shard: 1,
            client_id: 9,
        };
        let p = e.to_proto();
        assert!(matches!(
            p.kind,
            Some(pb::error::Kind::SessionExpired(pb::SessionExpired {
                shard_id: 1,
                client_id: 9
            }))
        ));
        assert!(p.message.contains("outcome is unknown"), "{}", p.message);
        assert_eq!(show(b"abc"), "\"abc\"");
        assert_eq!(show(&[0, 255]), "0x00ff");
    }
}
