//! gRPC services of a node, all on one tonic server: [`kv`] (client API),
//! [`raft`] (shard-tagged openraft RPCs), [`admin`] (operators) and [`pd`]
//! (the placement driver, forwarded to its leader).
//! [`scan_page`] reads one bounded scan page; [`txn`] converts a txn to
//! and from the wire; [`validate`] checks input;
//! [`deadline`] bounds a KV request's wait for Raft by the caller's deadline;
//! [`multiplex`] serves one client's KV operations on one stream.

pub mod admin;
pub mod deadline;
pub mod kv;
pub mod multiplex;
pub mod pd;
pub mod raft;
pub mod scan_page;
pub mod txn;
pub mod validate;

use std::sync::Arc;

use crate::cluster::ClusterIdentity;
use crate::config::Config;
use crate::error::KvError;
use crate::raft::peer_pool::PeerPool;
use crate::shard::{Replica, ShardHost};
use crate::storage::engine::SharedEngine;

/// What every service handler sees.
pub struct NodeCtx {
    pub config: Config,
    pub engine: SharedEngine,
    pub host: ShardHost,
    pub peers: PeerPool,
    /// The cluster this node belongs to; checks messages from other nodes.
    pub cluster: ClusterIdentity,
    /// Peers' beats, for sleeping shards (`shard::peer_beat`).
    pub peer_book: Arc<crate::shard::peer_beat::PeerBook>,
    /// The node that last answered a forwarded PD request: asked first.
    pub pd_hint: crate::pd::route::PdHint,
}

impl NodeCtx {
    pub fn node_id(&self) -> u64 {
        self.config.id
    }

    pub fn host_engine(&self) -> &SharedEngine {
        &self.engine
    }

    pub fn replica(&self, shard: u64) -> Result<Arc<Replica>, KvError> {
        self.host.get(shard).ok_or(KvError::ShardNotFound(shard))
    }
}
