//! A simulated cluster: each Atoll node is a madsim node running the
//! production start-up path over its own [`MemoryEngine`] (state machine)
//! and [`SimFs`] (WAL segment files), which outlive the node so a restart
//! finds exactly what was flushed / synced before the crash (plus, for the
//! WAL, a torn prefix of what was not).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use atoll_client::{Client, ClientConfig};
use atoll_node::codec;
use atoll_node::config::{Config, PdTuning, RaftTuning, SessionLimits, WalTuning};
use atoll_node::raft::type_config::{ReplicaId, StoredMembership};
use atoll_node::shard::ShardMeta;
use atoll_node::sim_hooks;
use atoll_node::storage::engine::SharedEngine;
use atoll_node::storage::keys::{self, ShardId, SmMeta};
use atoll_node::storage::{Engine, MemoryEngine};
use atoll_node::wal::{SharedFs, SimFs};
use madsim::net::NetSim;
use madsim::runtime::{Handle, NodeHandle};

use crate::observer::Observer;

pub const PORT: u16 = 7101;

pub struct SimNode {
    pub id: u64,
    pub addr: String,
    pub handle: NodeHandle,
    pub engine: Arc<MemoryEngine>,
    pub wal: Arc<SimFs>,
}

pub struct SimCluster {
    pub nodes: Vec<SimNode>,
    pub observer: Observer,
    client_node: NodeHandle,
}

/// Raft settings for simulation: frequent snapshots so snapshot install and
/// log purge run under faults too.
pub fn sim_tuning() -> RaftTuning {
    RaftTuning {
        snapshot_after_entries: 100,
        keep_entries_after_snapshot: 20,
        write_timeout_ms: 3000,
        // Short, so shards fall asleep and wake within a run.
        sleep_after_ms: 2000,
        // `SIM_COMMIT_NOTIFY_MS` overrides the commit-only AppendEntries
        // delay (to compare a seed with openraft's upstream behaviour, 0).
        commit_notify_ms: std::env::var("SIM_COMMIT_NOTIFY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(RaftTuning::default().commit_notify_ms),
        // `SIM_PROPOSALS_IN_FLIGHT` overrides the entries a leader keeps
        // proposed at once (the default is 1; 2 was the default before).
        proposals_in_flight: std::env::var("SIM_PROPOSALS_IN_FLIGHT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(RaftTuning::default().proposals_in_flight),
        ..RaftTuning::default()
    }
}

fn ip(i: u64) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 77, 0, i as u8))
}

impl SimCluster {
    /// Creates and starts `n` nodes that bootstrap one cluster together.
    pub fn start(n: u64) -> Self {
        Self::start_with_session_cap(n, None)
    }

    /// [`SimCluster::start`] with `sessions.max_per_shard` set (`None`:
    /// the default).
    pub fn start_with_session_cap(n: u64, session_cap: Option<u64>) -> Self {
        Self::start_with(n, session_cap, 0)
    }

    /// `n` nodes, of which the last `joiners` are not initial members: each
    /// starts 1-4 s into the run with node id 0 and the other nodes as its
    /// `join` addresses, and gets its id from the PD (a node addition, as
    /// `atoll-node --join`). Their ids are the PD's next ones after the
    /// initial members', which the nodes' order here assumes; a node that
    /// gets another id is reported as a node error.
    pub fn start_with(n: u64, session_cap: Option<u64>, joiners: u64) -> Self {
        let sessions = match session_cap {
            Some(max_per_shard) => SessionLimits { max_per_shard },
            None => SessionLimits::default(),
        };
        let handle = Handle::current();
        let observer = Observer::default();
        let members = n.saturating_sub(joiners).max(1);
        let initial: Vec<String> = (1..=members)
            .map(|i| format!("{i}={}:{PORT}", ip(i)))
            .collect();
        let join: Vec<String> = (1..=members).map(|i| format!("{}:{PORT}", ip(i))).collect();
        let mut nodes = Vec::new();
        for id in 1..=n {
            let joiner = id > members;
            let addr = format!("{}:{PORT}", ip(id));
            let engine = Arc::new(MemoryEngine::new());
            let wal = Arc::new(SimFs::new());
            let config = Config {
                id: if joiner { 0 } else { id },
                data_dir: format!("/sim/node{id}").into(),
                listen: addr.clone(),
                advertise: Some(addr.clone()),
                initial_cluster: if joiner { Vec::new() } else { initial.clone() },
                join: if joiner { join.clone() } else { Vec::new() },
                raft: sim_tuning(),
                sessions: sessions.clone(),
                // Small segments, so rotation and purge by whole segments
                // run under faults too, and small preallocation steps, so
                // power losses often fall on writes into preallocated zeros.
                wal: WalTuning {
                    segment_bytes: 4 << 10,
                    prealloc_bytes: 1 << 10,
                },
                // Short, so nodes go Down and come back Up within a run.
                pd: PdTuning {
                    heartbeat_ms: 500,
                    down_after_ms: 3000,
                    ..PdTuning::default()
                },
                ..Config::default()
            };
            let (engine2, wal2, obs) = (engine.clone(), wal.clone(), observer.clone());
            // A joiner's first start waits 1-4 s (later starts, after a
            // crash, do not).
            let first_start =
                Arc::new(std::sync::Mutex::new(joiner.then(|| {
                    Duration::from_millis(madsim::rand::thread_rng().gen_range(1000..4000))
                })));
            let node = handle
                .create_node()
                .name(format!("node{id}"))
                .ip(ip(id))
                .init(move || {
                    let (config, engine, wal, obs) = (
                        config.clone(),
                        engine2.clone() as SharedEngine,
                        wal2.clone() as SharedFs,
                        obs.clone(),
                    );
                    let wait = first_start.lock().unwrap_or_else(|p| p.into_inner()).take();
                    async move {
                        if let Some(wait) = wait {
                            tokio::time::sleep(wait).await;
                        }
                        match atoll_node::start_with_engine(config, engine, wal).await {
                            Ok(node) if node.id() != id => obs.record_error(format!(
                                "the node at {} joined as node {}, not {id}",
                                ip(id),
                                node.id()
                            )),
                            Ok(node) => obs.follow(&node).await,
                            Err(e) => obs.record_error(format!("node {id} failed to start: {e}")),
                        }
                    }
                })
                .build();
            nodes.push(SimNode {
                id,
                addr,
                handle: node,
                engine,
                wal,
            });
        }
        let client_node = handle
            .create_node()
            .name("clients")
            .ip(IpAddr::V4(Ipv4Addr::new(10, 77, 1, 1)))
            .build();
        SimCluster {
            nodes,
            observer,
            client_node,
        }
    }

    pub fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    pub fn node(&self, id: u64) -> &SimNode {
        &self.nodes[(id - 1) as usize]
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.clone()).collect()
    }

    /// Power loss that loses every unflushed write of node `id`.
    pub fn crash_losing_all_unflushed(&self, id: u64) {
        let n = self.node(id);
        Handle::current().kill(n.handle.id());
        n.engine.crash();
        n.wal.crash();
    }

    /// Power loss: the node stops at once; of its unflushed writes a random
    /// prefix survives (often none), the rest is lost.
    pub fn crash(&self, id: u64) {
        let n = self.node(id);
        Handle::current().kill(n.handle.id());
        let pending = n.engine.unflushed_batches();
        let kept = {
            let mut rng = madsim::rand::thread_rng();
            if pending == 0 || rng.gen_bool(0.5) {
                0
            } else {
                rng.gen_range(0..=pending)
            }
        };
        n.engine.crash_keeping(kept);
        n.wal.crash();
    }

    /// A lost disk: the node stops at once and its engine and WAL are
    /// emptied.
    pub fn wipe(&self, id: u64) {
        let n = self.node(id);
        Handle::current().kill(n.handle.id());
        n.engine.wipe();
        n.wal.wipe();
    }

    /// Starts a crashed node again from what its engine kept.
    pub fn restart(&self, id: u64) {
        let handle = self.node(id).handle.id();
        // A node comes back on a disk of normal speed.
        sim_hooks::set_slow_disk(handle, Duration::ZERO);
        Handle::current().restart(handle);
    }

    /// Every flush of node `id` takes `extra` longer until it restarts.
    pub fn slow_disk(&self, id: u64, extra: Duration) {
        sim_hooks::set_slow_disk(self.node(id).handle.id(), extra);
    }

    pub fn pause(&self, id: u64) {
        Handle::current().pause(self.node(id).handle.id());
    }

    pub fn resume(&self, id: u64) {
        Handle::current().resume(self.node(id).handle.id());
    }

    /// Cuts every link between nodes of different groups (both ways).
    /// Clients keep reaching every node.
    pub fn partition(&self, groups: &[Vec<u64>]) {
        let net = NetSim::current();
        for (gi, a) in groups.iter().enumerate() {
            for b in groups.iter().skip(gi + 1) {
                for x in a {
                    for y in b {
                        net.clog_link(self.node(*x).handle.id(), self.node(*y).handle.id());
                        net.clog_link(self.node(*y).handle.id(), self.node(*x).handle.id());
                    }
                }
            }
        }
    }

    /// Cuts only the listed one-way links.
    pub fn cut_links(&self, links: &[(u64, u64)]) {
        let net = NetSim::current();
        for (x, y) in links {
            net.clog_link(self.node(*x).handle.id(), self.node(*y).handle.id());
        }
    }

    /// Restores every link between nodes.
    pub fn heal(&self) {
        let net = NetSim::current();
        for a in &self.nodes {
            for b in &self.nodes {
                if a.id != b.id {
                    net.unclog_link(a.handle.id(), b.handle.id());
                }
            }
        }
    }

    /// Runs `fut` on the client machine.
    pub async fn on_client<F>(&self, fut: F) -> F::Output
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self.client_node.spawn(fut).await {
            Ok(v) => v,
            Err(e) => panic!("client task failed: {e}"),
        }
    }

    /// A client connected from the client machine, waiting up to 1 s for
    /// each RPC.
    pub async fn client(&self, deadline: Duration) -> Client {
        self.client_with(deadline, Duration::from_secs(1)).await
    }

    /// A client connected from the client machine, with its own per-RPC
    /// timeout.
    pub async fn client_with(&self, deadline: Duration, request_timeout: Duration) -> Client {
        let endpoints = self.endpoints();
        let config = ClientConfig {
            deadline,
            request_timeout,
            ..ClientConfig::default()
        };
        self.on_client(async move {
            loop {
                match Client::with_config(endpoints.clone(), config.clone()).await {
                    Ok(c) => return c,
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        })
        .await
    }

    pub fn client_node(&self) -> &NodeHandle {
        &self.client_node
    }

    /// User data of one node, as its engine holds it now.
    pub fn data_of(&self, id: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
        let (lo, hi) = keys::data_range(b"", None);
        self.scan(id, &lo, &hi)
            .into_iter()
            .map(|(k, v)| (keys::user_key(&k).to_vec(), v))
            .collect()
    }

    /// The replicated state of each shard on one node, besides user data:
    /// its descriptor, its session table and the session id counter, as the
    /// node's engine holds them now.
    pub fn shards_of(&self, id: u64) -> BTreeMap<ShardId, ShardState> {
        let mut shards: BTreeMap<ShardId, ShardState> = BTreeMap::new();
        let (lo, hi) = keys::all_sm_meta();
        for (k, v) in self.scan(id, &lo, &hi) {
            let Some((shard, tag)) = keys::parse_sm_meta(&k) else {
                continue;
            };
            let state = shards.entry(shard).or_default();
            if tag == SmMeta::Shard as u8 {
                state.meta = Some(codec::decode("shard", &v).map_err(|e| e.to_string()));
            } else if tag == SmMeta::NextSessionId as u8 {
                state.next_session_id =
                    Some(codec::decode("next session id", &v).map_err(|e| e.to_string()));
            } else if tag == SmMeta::Membership as u8 {
                state.membership = Some(
                    codec::decode::<StoredMembership>("membership", &v)
                        .map(|m| Members::of(&m))
                        .map_err(|e| e.to_string()),
                );
            }
        }
        // A removed replica leaves only a tombstone: not hosted.
        shards.retain(|_, state| state.meta.is_some());
        for (shard, state) in shards.iter_mut() {
            let (lo, hi) = keys::sessions_range(*shard);
            state.sessions = self.scan(id, &lo, &hi);
        }
        shards
    }

    /// Tombstones on every node: replicas removed from a node so far.
    pub fn tombstones(&self) -> usize {
        self.tombstones_where(|_| true)
    }

    /// Tombstones of `shard` on every node: how often its replicas moved
    /// off a node.
    pub fn tombstones_of(&self, shard: ShardId) -> usize {
        self.tombstones_where(|s| s == shard)
    }

    fn tombstones_where(&self, of: impl Fn(ShardId) -> bool) -> usize {
        let (lo, hi) = keys::all_sm_meta();
        self.ids()
            .into_iter()
            .flat_map(|id| self.scan(id, &lo, &hi))
            .filter(|(k, _)| {
                keys::parse_sm_meta(k)
                    .is_some_and(|(shard, tag)| tag == SmMeta::Tombstone as u8 && of(shard))
            })
            .count()
    }

    /// Every data shard's newest descriptor (highest version, then
    /// membership version) among the nodes that host it.
    pub fn newest_shards(&self) -> Vec<ShardMeta> {
        let mut newest: BTreeMap<ShardId, ShardMeta> = BTreeMap::new();
        for id in self.ids() {
            for (shard, state) in self.shards_of(id) {
                if shard == atoll_node::pd::PD_SHARD {
                    continue;
                }
                let Some(Ok(meta)) = state.meta else { continue };
                let key = |m: &ShardMeta| (m.epoch.version, m.epoch.conf_ver);
                match newest.get(&shard) {
                    Some(known) if key(known) >= key(&meta) => {}
                    _ => {
                        newest.insert(shard, meta);
                    }
                }
            }
        }
        newest.into_values().collect()
    }

    fn scan(&self, id: u64, lo: &[u8], hi: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.node(id)
            .engine
            .scan(lo, hi, usize::MAX)
            .unwrap_or_default()
    }
}

/// One shard's replicated state apart from user data (see
/// [`SimCluster::shards_of`]); a field that failed to decode holds the error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardState {
    /// Range and epoch.
    pub meta: Option<Result<ShardMeta, String>>,
    pub next_session_id: Option<Result<u64, String>>,
    /// Session headers and recorded results, as stored (keys
    /// `keys::session`, `keys::session_result`).
    pub sessions: Vec<(Vec<u8>, Vec<u8>)>,
    /// The membership the replica last applied.
    pub membership: Option<Result<Members, String>>,
}

/// A shard's applied membership: its voters (of every configuration of a
/// joint one) and every member node, by node id, and the members' replica
/// ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Members {
    pub voters: BTreeSet<u64>,
    pub nodes: BTreeSet<u64>,
    pub replicas: BTreeSet<ReplicaId>,
    pub joint: bool,
}

impl Members {
    fn of(m: &StoredMembership) -> Self {
        let membership = m.membership();
        Members {
            voters: membership.voter_ids().map(ReplicaId::node).collect(),
            nodes: membership.nodes().map(|(id, _)| id.node()).collect(),
            replicas: membership.nodes().map(|(id, _)| *id).collect(),
            joint: membership.get_joint_config().len() > 1,
        }
    }
}
