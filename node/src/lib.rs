//! atoll-node: the Atoll server — one process, one storage engine, many
//! shard replicas, each a member of its own Raft group (openraft).
//!
//! How a `put` walks through the crate:
//! 1. [`service::kv`] validates it ([`service::validate`]), finds the shard
//!    ([`shard::ShardHost`]), checks epoch and key range ([`shard::meta`]);
//! 2. it is proposed to the shard's Raft ([`raft`]): openraft appends it via
//!    [`storage::log_store`] to the node's write-ahead log ([`wal`]),
//!    acknowledged after the group-commit `fdatasync` shared by every shard,
//!    and replicates it over the shard-tagged [`raft::network`];
//! 3. once committed, [`state_machine`] applies it — dedup check, data and
//!    applied log id in one atomic batch on the [`storage::engine`].
//!
//! Two stores, each behind a seam with a simulated twin: the Raft log of
//! every shard in the [`wal`] (segment files through [`wal::WalFs`]: real
//! files in production, [`wal::SimFs`] in the madsim simulation, whose crash
//! loses unsynced bytes and tears the last write), and the state machine
//! behind the [`storage::Engine`] trait (fjall in production,
//! [`storage::MemoryEngine`] in simulation). [`start`] wires config → data
//! dir (`db/`, `wal/`) → engine and WAL → shards → server.
//!
//! A panic anywhere ends the process ([`panic_exit`]): a node whose Raft
//! core died must not keep running and heartbeating. Work that no request
//! waits for (fjall's flushes, snapshot builds) runs on threads of lower
//! priority ([`background`]).
//!
//! The placement driver ([`pd`]) is one more Raft group (shard 0) on the
//! first three initial members; every node reports to it and forwards its
//! requests to the PD leader ([`service::pd`]).
//!
//! Every node belongs to one cluster, named by an id stored next to the
//! node id ([`cluster`]); messages from another cluster are refused, and a
//! fresh node asks its peers before it bootstraps (so a node that lost its
//! data dir cannot bootstrap again).
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

pub mod background;
pub mod broken;
pub mod cluster;
pub mod codec;
pub mod command;
pub mod config;
pub mod error;
#[cfg(not(madsim))]
pub mod panic_exit;
pub mod pd;
pub mod raft;
pub mod server;
pub mod service;
pub mod shard;
#[cfg(madsim)]
pub mod sim_hooks;
pub mod state_machine;
pub mod storage;
pub mod wal;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::cluster::{identity, preflight, ClusterIdentity};
use crate::config::Config;
use crate::error::NodeError;
use crate::raft::peer_pool::PeerPool;
use crate::service::NodeCtx;
use crate::shard::replica::ReplicaDeps;
use crate::shard::ShardHost;
use crate::storage::engine::SharedEngine;
use crate::storage::Flusher;
use crate::wal::{SharedFs, Wal};

/// A running node.
pub struct Node {
    ctx: Arc<NodeCtx>,
    flusher: Flusher,
    wal: Wal,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<Result<(), NodeError>>,
    /// The PD heartbeat and leader-duty loops, aborted at shutdown.
    background: Vec<tokio::task::JoinHandle<()>>,
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

    /// Stops serving, stops every Raft group, syncs the WAL and flushes the
    /// engine.
    pub async fn shutdown(mut self) -> Result<(), NodeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        for task in &self.background {
            task.abort();
        }
        let served = (&mut self.server).await;
        self.ctx.host.shutdown().await;
        self.wal.sync().await?;
        self.flusher.checkpoint().await?;
        match served {
            Ok(r) => r,
            Err(e) => Err(NodeError::Server {
                addr: self.addr.to_string(),
                reason: format!("server task: {e}"),
            }),
        }
    }
}

/// Opens the data directory (fjall database and WAL) and starts the node.
#[cfg(not(madsim))]
pub async fn start(config: Config) -> Result<Node, NodeError> {
    let (engine, wal_fs) = open_data_dir(&config.data_dir)?;
    start_with_engine(config, engine, wal_fs).await
}

/// The format of a data dir this binary reads (its `FORMAT` file): `db/`
/// (fjall: state machine and node identity), `wal/` (segments that carry
/// their own [`wal::FORMAT_VERSION`]) and `snapshots/`. See
/// [`storage::format`] for the history.
pub const DATA_DIR_FORMAT: u32 = storage::format::CURRENT;

/// Checks and opens the data directory: its fjall database and the file
/// seam of its WAL.
#[cfg(not(madsim))]
pub fn open_data_dir(dir: &std::path::Path) -> Result<(SharedEngine, SharedFs), NodeError> {
    let bad = |reason: String| NodeError::DataDir {
        path: dir.display().to_string(),
        reason,
    };
    if dir.exists() && !dir.is_dir() {
        return Err(bad("exists but is not a directory".into()));
    }
    std::fs::create_dir_all(dir).map_err(|e| bad(format!("cannot create: {e}")))?;
    let (db, wal_dir) = (dir.join("db"), dir.join("wal"));
    let mut entries = dir
        .read_dir()
        .map_err(|e| bad(format!("cannot read: {e}")))?;
    // A dir holding only its format marker is one whose first start
    // stopped before the database was created.
    let has_other_files =
        entries.any(|e| e.map_or(true, |e| e.file_name() != storage::format::FILE));
    if has_other_files && !db.exists() && !wal_dir.exists() {
        return Err(bad(
            "is not empty and holds no Atoll database; refusing to use it".into(),
        ));
    }
    // Data dirs from before the format marker (the Raft log inside sled,
    // no wal/) have none: they are format 1 and refused with both versions.
    storage::format::check_or_create(dir, db.exists() || wal_dir.exists())
        .map_err(|e| bad(e.to_string()))?;
    // The WAL directory first: a crash between the two leaves a dir that
    // still reads as this format.
    let wal_fs = wal::RealFs::open(&wal_dir)
        .map_err(|e| bad(format!("cannot open {}: {e}", wal_dir.display())))?;
    let engine = storage::FjallEngine::open(&db).map_err(|e| bad(e.to_string()))?;
    Ok((Arc::new(engine), Arc::new(wal_fs)))
}

/// Starts a node over an already-open engine and WAL file seam (the
/// simulation passes its in-memory engine and [`wal::SimFs`] here). The WAL
/// is recovered from the seam first; a corrupt WAL or one of another format
/// version stops the start with [`NodeError::Wal`].
///
/// A fresh engine (no node id stored) with an `initial_cluster` is claimed
/// only once the peers agree it may bootstrap ([`preflight`]); if it must
/// not, the node stops and returns [`NodeError::BootstrapRefused`] with
/// nothing written, so the data dir can be used for a `--join` start.
pub async fn start_with_engine(
    mut config: Config,
    engine: SharedEngine,
    wal_fs: SharedFs,
) -> Result<Node, NodeError> {
    config.validate()?;
    let members = config.initial_members()?;
    // Id 0 with `join` addresses: the stored id, or one from the PD.
    let mut joined_cluster = identity::UNKNOWN;
    if config.id == 0 {
        config.id = match identity::read(&engine)?.node_id {
            Some(id) => id,
            None => {
                let (id, cluster) = pd::join::id_from_pd(&config).await?;
                tracing::info!(node = id, cluster = %identity::show(cluster), "the placement driver gave this node its id");
                joined_cluster = cluster;
                id
            }
        };
    } else if !config.join.is_empty() && identity::read(&engine)?.node_id.is_none() {
        joined_cluster = pd::join::cluster_from_pd(&config).await?;
        tracing::info!(node = config.id, cluster = %identity::show(joined_cluster), "joining the cluster the placement driver runs");
    }
    let stored = check_owner(&config, &engine)?;
    let fresh = stored.node_id.is_none();
    let wal_dir = config.data_dir.join("wal").display().to_string();
    let wal = wal::open(wal_fs, &wal_dir, config.wal.options())?;
    let flusher = Flusher::spawn(engine.clone());
    let cluster = ClusterIdentity::new(engine.clone(), flusher.clone(), stored.cluster_id);
    if fresh && members.is_empty() {
        // --join: claimed now; the cluster id comes from the PD (a join
        // through it) or with the first message.
        cluster.claim(config.id, joined_cluster).await?;
    }
    let peers = PeerPool::new();
    let (splits, split_children) = state_machine::SplitSink::new();
    let book = Arc::new(shard::peer_beat::PeerBook::new());
    let deps = ReplicaDeps {
        node_id: config.id,
        engine: engine.clone(),
        flusher: flusher.clone(),
        wal: wal.clone(),
        peers: peers.clone(),
        cluster: cluster.clone(),
        raft_config: Arc::new(config.raft.to_openraft()?),
        max_append_bytes: config.raft.max_append_bytes,
        snapshots: snapshot_store(&config)?,
        write_timeout: config.raft.write_timeout(),
        proposals_in_flight: config.raft.proposals_in_flight,
        splits,
        book: book.clone(),
    };
    let host = ShardHost::open(deps).await?;
    let ctx = Arc::new(NodeCtx {
        config,
        engine,
        host,
        peers,
        cluster,
        peer_book: book,
        pd_hint: Default::default(),
    });
    tracing::info!(
        node = ctx.node_id(),
        shards = ctx.host.all().len(),
        cluster = %identity::show(ctx.cluster.get()),
        fresh,
        "node storage opened"
    );
    if !fresh && !members.is_empty() {
        note_stale_initial_cluster(&ctx, &members);
    }

    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (addr, serving) = server::bind(ctx.clone(), async {
        let _ = stop_rx.await;
    })
    .await?;
    let mut node = Node {
        ctx,
        flusher,
        wal,
        addr,
        stop: Some(stop_tx),
        server: tokio::spawn(serving),
        background: Vec::new(),
    };

    if fresh && !members.is_empty() {
        if let Err(e) = bootstrap_fresh(&node.ctx, &members).await {
            tracing::error!(node = node.id(), "{e}");
            if let Err(stopping) = node.shutdown().await {
                tracing::warn!("stopping after a refused start: {stopping}");
            }
            return Err(e);
        }
    }
    // A bootstrap cut short by a crash after the node claimed its data dir
    // but before it created the first shard: the node never voted or
    // acknowledged anything, so finishing the bootstrap now is what it would
    // have done then. (A node that bootstrapped has shard 1 stored.)
    let ours = identity::derive(&node.ctx.config.initial_cluster_token, &members);
    if !fresh
        && !members.is_empty()
        && bootstrap_incomplete(&node.ctx, &members)
        && stored.cluster_id == ours
    {
        tracing::warn!(
            node = node.id(),
            "the first start stopped before the first shard was created; finishing the bootstrap"
        );
        preflight::record(&node.ctx, &members, ours).await?;
        service::admin::bootstrap(&node.ctx, &members)
            .await
            .map_err(|e| NodeError::Raft(format!("bootstrapping the cluster: {e}")))?;
    }
    node.background = vec![
        tokio::spawn(shard::split::open_children(
            node.ctx.clone(),
            split_children,
        )),
        tokio::spawn(pd::heartbeat::run(node.ctx.clone())),
        tokio::spawn(pd::duties::run(node.ctx.clone())),
        tokio::spawn(shard::peer_beat::run(node.ctx.clone())),
    ];
    tracing::info!(node = node.id(), %addr, "node serving");
    Ok(node)
}

/// Whether an initial member lacks a shard its bootstrap creates, and
/// never had it: the first shard, or the PD group's replica on a PD member
/// (a node that started before the PD existed gets its replica this way
/// too).
fn bootstrap_incomplete(ctx: &NodeCtx, members: &[(u64, String)]) -> bool {
    let pd_member = pd::pd_members(members)
        .iter()
        .any(|(id, _)| *id == ctx.node_id());
    // A shard this node held and had removed (a tombstone) was created.
    let never_had = |shard| {
        ctx.host.get(shard).is_none()
            && matches!(shard::removal::tombstone(&ctx.engine, shard), Ok(None))
    };
    never_had(service::admin::FIRST_SHARD) || (pd_member && never_had(pd::PD_SHARD))
}

/// Asks the peers, claims the engine (node id and cluster id in one
/// flushed batch), has the peers record that it starts, and bootstraps the
/// first shard.
async fn bootstrap_fresh(ctx: &NodeCtx, members: &[(u64, String)]) -> Result<(), NodeError> {
    let ours = identity::derive(&ctx.config.initial_cluster_token, members);
    preflight::run(ctx, members, ours).await?;
    ctx.cluster.claim(ctx.node_id(), ours).await?;
    // Peers remember that this node started, so that it cannot bootstrap
    // again after losing its data dir (preflight rule 2).
    preflight::record(ctx, members, ours).await?;
    service::admin::bootstrap(ctx, members)
        .await
        .map_err(|e| NodeError::Raft(format!("bootstrapping the cluster: {e}")))?;
    tracing::info!(
        node = ctx.node_id(),
        ?members,
        cluster = %identity::show(ours),
        "bootstrapped the first shard"
    );
    Ok(())
}

/// Reads the stored identity and checks the data dir belongs to this node.
fn check_owner(config: &Config, engine: &SharedEngine) -> Result<identity::Stored, NodeError> {
    let stored = identity::read(engine)?;
    match stored.node_id {
        Some(owner) if owner != config.id => Err(NodeError::DataDir {
            path: config.data_dir.display().to_string(),
            reason: format!(
                "belongs to node {owner}, but this node is configured as {}",
                config.id
            ),
        }),
        _ => Ok(stored),
    }
}

/// `--initial-cluster` only matters on a node's first start; membership
/// changes make it stale afterwards, which is fine. Say so when it no longer
/// matches, so an operator is not surprised.
fn note_stale_initial_cluster(ctx: &NodeCtx, members: &[(u64, String)]) {
    let stored = ctx.cluster.get();
    let configured = identity::derive(&ctx.config.initial_cluster_token, members);
    if stored != identity::UNKNOWN && stored != configured {
        tracing::info!(
            node = ctx.node_id(),
            cluster = %identity::show(stored),
            "--initial-cluster / --initial-cluster-token differ from those this data dir was \
             bootstrapped with; they are ignored (they are used on a node's first start only)"
        );
    }
}

/// Snapshots live in `<data-dir>/snapshots/`; the simulation keeps them in
/// its engine.
fn snapshot_store(
    config: &Config,
) -> Result<state_machine::snapshot_store::SnapshotStore, NodeError> {
    #[cfg(not(madsim))]
    {
        let dir = config.data_dir.join("snapshots");
        state_machine::snapshot_store::SnapshotStore::open_dir(dir.clone()).map_err(|e| {
            NodeError::DataDir {
                path: dir.display().to_string(),
                reason: format!("cannot prepare the snapshot directory: {e}"),
            }
        })
    }
    #[cfg(madsim)]
    {
        let _ = config;
        Ok(state_machine::snapshot_store::SnapshotStore::Memory)
    }
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_data_dir_gets_a_database_and_a_wal() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("node");
        let opened = open_data_dir(&path);
        assert!(opened.is_ok(), "{:?}", opened.err());
        assert!(path.join("db").is_dir() && path.join("wal").is_dir());
    }

    #[test]
    fn a_data_dir_from_before_the_wal_is_refused_naming_both_formats() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("db")).expect("mkdir");
        let msg = match open_data_dir(dir.path()) {
            Ok(_) => panic!("a format-0 data dir must be refused"),
            Err(e) => e.to_string(),
        };
        assert!(
            msg.contains("format 1")
                && msg.contains(&format!(
                    "this binary reads format {}",
                    storage::format::CURRENT
                )),
            "{msg}"
        );
    }
}
