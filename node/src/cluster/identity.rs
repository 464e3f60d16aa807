//! Who this node is and which cluster it belongs to, as stored in the
//! engine's node meta (`node_id`, `cluster_id`), and the check every message
//! from another node passes ([`ClusterIdentity::admit`]).
//!
//! The cluster id is derived at bootstrap from the sorted initial members
//! and the `--initial-cluster-token` ([`derive`]), so every initial member
//! computes the same id without talking. A node started with `--join` has
//! none until the first message of a cluster reaches it (trust on first use)
//! and stores it then. 0 means "not known" and is never refused: nodes whose
//! data dirs predate cluster ids send 0. See
//! docs/decisions/0008-cluster-id-and-bootstrap-check.md.
//!
//! It also keeps the *started records*: the initial members that told this
//! node, before they first started their Raft, that they were about to
//! ([`ClusterIdentity::record_started`]). A fresh node that a peer lists
//! there has lost its data dir; one that no peer of a large enough set lists
//! never started and may still join as the initial member it is
//! ([`super::preflight`]).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::NodeError;
use crate::storage::engine::{SharedEngine, WriteBatch};
use crate::storage::{keys, EngineError, Flusher};

/// The cluster id of a node that does not know its cluster (yet).
pub const UNKNOWN: u64 = 0;

/// Foreign cluster ids remembered for "warn once"; beyond that, every
/// refusal is logged at debug only.
const MAX_WARNED: usize = 64;

/// How a cluster id is printed in logs and messages.
pub fn show(id: u64) -> String {
    format!("{id:016x}")
}

/// The id of the cluster bootstrapped by `members` with `token`: FNV-1a 64
/// over the token and the members sorted by id. Never [`UNKNOWN`].
pub fn derive(token: &str, members: &[(u64, String)]) -> u64 {
    let mut sorted: Vec<&(u64, String)> = members.iter().collect();
    sorted.sort();
    let mut text = format!("atoll-cluster\n{token}\n");
    for (id, addr) in sorted {
        text.push_str(&format!("{id}={addr}\n"));
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    if h == UNKNOWN {
        1
    } else {
        h
    }
}

/// What the engine says about this node's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// `None`: the engine was never claimed by any node.
    pub node_id: Option<u64>,
    pub cluster_id: u64,
}

fn decode_u64(what: &str, bytes: &[u8]) -> Result<u64, EngineError> {
    bytes
        .try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| EngineError::Corrupt(format!("{what}: {} bytes, expected 8", bytes.len())))
}

/// Node meta key of the started records (8-byte big-endian ids, sorted).
const STARTED: &str = "started_members";

fn decode_ids(bytes: &[u8]) -> Result<Vec<u64>, EngineError> {
    if !bytes.len().is_multiple_of(8) {
        return Err(EngineError::Corrupt(format!(
            "started members: {} bytes, not a multiple of 8",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            u64::from_be_bytes(b)
        })
        .collect())
}

fn encode_ids(ids: &BTreeSet<u64>) -> Vec<u8> {
    ids.iter().flat_map(|id| id.to_be_bytes()).collect()
}

/// The started records (`None`: this data dir keeps none, it predates them).
pub fn started_members(engine: &SharedEngine) -> Result<Option<Vec<u64>>, EngineError> {
    engine
        .get(&keys::node_meta(STARTED))?
        .map(|b| decode_ids(&b))
        .transpose()
}

/// Reads the stored node id and cluster id.
pub fn read(engine: &SharedEngine) -> Result<Stored, EngineError> {
    let node_id = match engine.get(&keys::node_meta("node_id"))? {
        Some(b) => Some(decode_u64("stored node id", &b)?),
        None => None,
    };
    let cluster_id = match engine.get(&keys::node_meta("cluster_id"))? {
        Some(b) => decode_u64("stored cluster id", &b)?,
        None => UNKNOWN,
    };
    Ok(Stored {
        node_id,
        cluster_id,
    })
}

/// A foreign message: the typed refusal (FAILED_PRECONDITION on the wire).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("message from cluster {}, this node belongs to cluster {}", show(*.theirs), show(*.ours))]
pub struct ForeignCluster {
    pub theirs: u64,
    pub ours: u64,
}

/// Why a message was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    #[error(transparent)]
    Foreign(#[from] ForeignCluster),
    #[error("cannot store the cluster id: {0}")]
    Store(#[from] EngineError),
}

impl From<AdmitError> for tonic::Status {
    fn from(e: AdmitError) -> Self {
        match e {
            AdmitError::Foreign(f) => tonic::Status::failed_precondition(f.to_string()),
            AdmitError::Store(s) => tonic::Status::unavailable(s.to_string()),
        }
    }
}

/// This node's cluster id, shared by every service and shard network.
#[derive(Clone)]
pub struct ClusterIdentity {
    inner: Arc<Inner>,
}

struct Inner {
    engine: SharedEngine,
    flusher: Flusher,
    id: AtomicU64,
    /// Serialises the writes of the id (adopt, claim).
    store: tokio::sync::Mutex<()>,
    warned: Mutex<BTreeSet<u64>>,
}

impl ClusterIdentity {
    pub fn new(engine: SharedEngine, flusher: Flusher, stored: u64) -> Self {
        Self {
            inner: Arc::new(Inner {
                engine,
                flusher,
                id: AtomicU64::new(stored),
                store: tokio::sync::Mutex::new(()),
                warned: Mutex::new(BTreeSet::new()),
            }),
        }
    }

    /// This node's cluster id, [`UNKNOWN`] if it has none yet.
    pub fn get(&self) -> u64 {
        self.inner.id.load(Ordering::Acquire)
    }

    /// Records `node_id` (and `cluster_id`, if known) in one atomic batch
    /// and flushes it: from now on the engine belongs to this node.
    pub async fn claim(&self, node_id: u64, cluster_id: u64) -> Result<(), NodeError> {
        let _guard = self.inner.store.lock().await;
        let current = self.get();
        if current != UNKNOWN && cluster_id != UNKNOWN && current != cluster_id {
            return Err(NodeError::Config(format!(
                "this node was added to cluster {} while it checked its peers, \
                 but its --initial-cluster gives cluster {}; restart it",
                show(current),
                show(cluster_id)
            )));
        }
        let mut batch = WriteBatch::new();
        batch.put(keys::node_meta("node_id"), node_id.to_be_bytes().to_vec());
        // From now on this node keeps started records (none yet, unless a
        // peer's arrived while it checked).
        if started_members(&self.inner.engine)?.is_none() {
            batch.put(keys::node_meta(STARTED), Vec::new());
        }
        if cluster_id != UNKNOWN {
            batch.put(
                keys::node_meta("cluster_id"),
                cluster_id.to_be_bytes().to_vec(),
            );
        }
        self.inner.engine.write(batch)?;
        self.inner.flusher.checkpoint().await?;
        if cluster_id != UNKNOWN {
            self.inner.id.store(cluster_id, Ordering::Release);
        }
        Ok(())
    }

    /// Durably records that initial member `node` of cluster `cluster_id`
    /// is about to start its Raft. Refused (a [`ForeignCluster`]) when this
    /// node knows another cluster id.
    pub async fn record_started(&self, node: u64, cluster_id: u64) -> Result<(), AdmitError> {
        let _guard = self.inner.store.lock().await;
        let ours = self.get();
        if ours != UNKNOWN && cluster_id != UNKNOWN && ours != cluster_id {
            return Err(ForeignCluster {
                theirs: cluster_id,
                ours,
            }
            .into());
        }
        let mut ids: BTreeSet<u64> = started_members(&self.inner.engine)?
            .unwrap_or_default()
            .into_iter()
            .collect();
        if !ids.insert(node) {
            return Ok(());
        }
        let mut batch = WriteBatch::new();
        batch.put(keys::node_meta(STARTED), encode_ids(&ids));
        self.inner.engine.write(batch)?;
        self.inner.flusher.checkpoint().await?;
        tracing::info!(
            started = node,
            "recorded that an initial member starts its Raft"
        );
        Ok(())
    }

    /// Makes `offered` this node's cluster id if it has none (stored
    /// durably first); returns the id the node belongs to afterwards.
    pub async fn adopt(&self, offered: u64) -> Result<u64, EngineError> {
        let current = self.get();
        if current != UNKNOWN || offered == UNKNOWN {
            return Ok(current);
        }
        let _guard = self.inner.store.lock().await;
        let current = self.get();
        if current != UNKNOWN {
            return Ok(current);
        }
        let mut batch = WriteBatch::new();
        batch.put(
            keys::node_meta("cluster_id"),
            offered.to_be_bytes().to_vec(),
        );
        self.inner.engine.write(batch)?;
        self.inner.flusher.checkpoint().await?;
        self.inner.id.store(offered, Ordering::Release);
        tracing::info!(cluster = %show(offered), "joined cluster (first message from it)");
        Ok(offered)
    }

    /// Admits a message that carries its sender's cluster id `theirs`:
    /// adopts it if this node has none, refuses it if it differs from ours.
    /// `what` names the message for the log.
    pub async fn admit(&self, theirs: u64, what: &str) -> Result<(), AdmitError> {
        let ours = self.adopt(theirs).await?;
        if theirs == UNKNOWN || ours == UNKNOWN || theirs == ours {
            return Ok(());
        }
        let refusal = ForeignCluster { theirs, ours };
        if self.first_refusal_of(theirs) {
            tracing::warn!(
                rpc = what,
                "refused: {refusal} (further messages from that cluster are logged at debug)"
            );
        } else {
            tracing::debug!(rpc = what, "refused: {refusal}");
        }
        Err(refusal.into())
    }

    fn first_refusal_of(&self, theirs: u64) -> bool {
        let mut warned = self.inner.warned.lock().unwrap_or_else(|p| p.into_inner());
        warned.len() < MAX_WARNED && warned.insert(theirs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryEngine;

    fn members(list: &[(u64, &str)]) -> Vec<(u64, String)> {
        list.iter().map(|(i, a)| (*i, a.to_string())).collect()
    }

    #[test]
    fn every_initial_member_derives_the_same_id_whatever_the_order() {
        let a = derive("atoll", &members(&[(1, "h1:1"), (2, "h2:1"), (3, "h3:1")]));
        let b = derive("atoll", &members(&[(3, "h3:1"), (1, "h1:1"), (2, "h2:1")]));
        assert_eq!(a, b);
        assert_ne!(a, UNKNOWN);
        assert_ne!(
            a,
            derive("other", &members(&[(1, "h1:1"), (2, "h2:1"), (3, "h3:1")]))
        );
        assert_ne!(a, derive("atoll", &members(&[(1, "h1:1"), (2, "h2:1")])));
        assert_ne!(
            a,
            derive("atoll", &members(&[(1, "h1:1"), (2, "h2:1"), (3, "h4:1")]))
        );
    }

    #[tokio::test]
    async fn a_node_without_id_adopts_the_first_and_refuses_any_other() {
        let engine: SharedEngine = Arc::new(MemoryEngine::new());
        let flusher = Flusher::spawn(engine.clone());
        let id = ClusterIdentity::new(engine.clone(), flusher, UNKNOWN);
        id.admit(UNKNOWN, "test").await.unwrap();
        assert_eq!(id.get(), UNKNOWN);
        id.admit(7, "test").await.unwrap();
        assert_eq!(id.get(), 7);
        assert_eq!(read(&engine).unwrap().cluster_id, 7, "stored durably");
        id.admit(7, "test").await.unwrap();
        id.admit(UNKNOWN, "test").await.unwrap();
        let refused = id.admit(8, "test").await.unwrap_err();
        let status = tonic::Status::from(refused);
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        assert!(
            status
                .message()
                .contains("message from cluster 0000000000000008, this node belongs to cluster 0000000000000007"),
            "{}",
            status.message()
        );
    }

    #[tokio::test]
    async fn claim_stores_node_and_cluster_id_together() {
        let engine: SharedEngine = Arc::new(MemoryEngine::new());
        let flusher = Flusher::spawn(engine.clone());
        let id = ClusterIdentity::new(engine.clone(), flusher, UNKNOWN);
        assert_eq!(
            read(&engine).unwrap(),
            Stored {
                node_id: None,
                cluster_id: UNKNOWN
            }
        );
        id.claim(3, 42).await.unwrap();
        assert_eq!(
            read(&engine).unwrap(),
            Stored {
                node_id: Some(3),
                cluster_id: 42
            }
        );
        assert_eq!(id.get(), 42);
    }
}
