//! atoll-node: the Atoll server — one process, one storage engine, many
//! shard replicas, each a member of its own Raft group (openraft).
//!
//! How a `put` walks through the crate:
//! 1. [`service::kv`] validates it ([`service::validate`]), finds the shard
//!    ([`shard::ShardHost`]), checks epoch and key range ([`shard::meta`]);
//! 2. it is proposed to the shard's Raft ([`raft`]): openraft appends it via
//!    [`storage::log_store`], acknowledged after the shared group-commit
//!    flush ([`storage::flusher`]), and replicates it over the shard-tagged
//!    [`raft::network`];
//! 3. once committed, [`state_machine`] applies it — dedup check, data and
//!    applied log id in one atomic batch on the [`storage::engine`].
//!
//! Everything durable goes through the [`storage::Engine`] trait: sled in
//! production, [`storage::MemoryEngine`] (crash = lose unflushed writes) in
//! the madsim simulation. [`start`] wires config → engine → shards → server.
//!
//! ```no_run
//! # async fn demo() -> Result<(), atoll_node::error::NodeError> {
//! let config = atoll_node::config::Config {
//!     id: 1,
//!     data_dir: "/tmp/atoll-1".into(),
//!     listen: "127.0.0.1:7101".into(),
//!     initial_cluster: vec!["1=127.0.0.1:7101".into()],
//!     ..Default::default()
//! };
//! let node = atoll_node::start(config).await?;
//! node.shutdown().await?;
//! # Ok(()) }
//! ```

pub mod codec;
pub mod command;
pub mod config;
pub mod error;
pub mod raft;
pub mod server;
pub mod service;
pub mod shard;
#[cfg(madsim)]
pub mod sim_hooks;
pub mod state_machine;
pub mod storage;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::config::Config;
use crate::error::NodeError;
use crate::raft::peer_pool::PeerPool;
use crate::service::NodeCtx;
use crate::shard::replica::ReplicaDeps;
use crate::shard::ShardHost;
use crate::storage::engine::{SharedEngine, WriteBatch};
use crate::storage::{keys, Flusher};

/// A running node.
pub struct Node {
    ctx: Arc<NodeCtx>,
    flusher: Flusher,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<Result<(), NodeError>>,
}

impl Node {
    /// The address the server is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn id(&self) -> u64 {
        self.ctx.node_id()
    }

    pub fn host(&self) -> &ShardHost {
        &self.ctx.host
    }

    /// Stops serving, stops every Raft group and flushes the engine.
    pub async fn shutdown(mut self) -> Result<(), NodeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let served = (&mut self.server).await;
        self.ctx.host.shutdown().await;
        self.flusher.flush().await?;
        match served {
            Ok(r) => r,
            Err(e) => Err(NodeError::Server {
                addr: self.addr.to_string(),
                reason: format!("server task: {e}"),
            }),
        }
    }
}

/// Opens the data directory's sled database and starts the node.
#[cfg(not(madsim))]
pub async fn start(config: Config) -> Result<Node, NodeError> {
    let engine = open_data_dir(&config.data_dir)?;
    start_with_engine(config, engine).await
}

/// Checks and opens the data directory.
#[cfg(not(madsim))]
pub fn open_data_dir(dir: &std::path::Path) -> Result<SharedEngine, NodeError> {
    let bad = |reason: String| NodeError::DataDir {
        path: dir.display().to_string(),
        reason,
    };
    if dir.exists() && !dir.is_dir() {
        return Err(bad("exists but is not a directory".into()));
    }
    std::fs::create_dir_all(dir).map_err(|e| bad(format!("cannot create: {e}")))?;
    let db = dir.join("db");
    if dir
        .read_dir()
        .map_err(|e| bad(format!("cannot read: {e}")))?
        .next()
        .is_some()
        && !db.exists()
    {
        return Err(bad(
            "is not empty and holds no Atoll database; refusing to use it".into(),
        ));
    }
    let engine = storage::SledEngine::open(&db).map_err(|e| bad(e.to_string()))?;
    Ok(Arc::new(engine))
}

/// Starts a node over an already-open engine (the simulation passes its
/// in-memory engine here).
pub async fn start_with_engine(config: Config, engine: SharedEngine) -> Result<Node, NodeError> {
    config.validate()?;
    let fresh = claim_engine(&config, &engine)?;
    let flusher = Flusher::spawn(engine.clone());
    let peers = PeerPool::new();
    let deps = ReplicaDeps {
        node_id: config.id,
        engine: engine.clone(),
        flusher: flusher.clone(),
        peers: peers.clone(),
        raft_config: Arc::new(config.raft.to_openraft()?),
        max_append_bytes: config.raft.max_append_bytes,
    };
    let host = ShardHost::open(deps).await?;
    let ctx = Arc::new(NodeCtx {
        config,
        engine,
        host,
        peers,
    });
    tracing::info!(
        node = ctx.node_id(),
        shards = ctx.host.all().len(),
        fresh,
        "node storage opened"
    );

    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (addr, serving) = server::bind(ctx.clone(), async {
        let _ = stop_rx.await;
    })
    .await?;
    let server = tokio::spawn(serving);

    let members = ctx.config.initial_members()?;
    if fresh && !members.is_empty() {
        service::admin::bootstrap(&ctx, &members)
            .await
            .map_err(|e| NodeError::Raft(format!("bootstrapping the cluster: {e}")))?;
        tracing::info!(
            node = ctx.node_id(),
            ?members,
            "bootstrapped the first shard"
        );
    }
    tracing::info!(node = ctx.node_id(), %addr, "node serving");
    Ok(Node {
        ctx,
        flusher,
        addr,
        stop: Some(stop_tx),
        server,
    })
}

/// Records this node's id in the engine, or checks it matches. Returns
/// whether the engine was fresh (never used by any node).
fn claim_engine(config: &Config, engine: &SharedEngine) -> Result<bool, NodeError> {
    let key = keys::node_meta("node_id");
    match engine.get(&key)? {
        Some(bytes) => {
            let owner = bytes
                .as_slice()
                .try_into()
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            if owner != config.id {
                return Err(NodeError::DataDir {
                    path: config.data_dir.display().to_string(),
                    reason: format!(
                        "belongs to node {owner}, but this node is configured as {}",
                        config.id
                    ),
                });
            }
            Ok(false)
        }
        None => {
            let mut batch = WriteBatch::new();
            batch.put(key, config.id.to_be_bytes().to_vec());
            engine.write(batch)?;
            engine.flush()?;
            Ok(true)
        }
    }
}
