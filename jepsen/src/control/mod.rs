//! Cluster control: N real `atoll-node` processes, each with its own data dir and log file, in
//! its own network namespace (or on loopback where namespaces cannot be made), and the faults
//! the nemeses need: kill -9, stop, restart, pause/resume, partitions, netem, power cuts; and
//! for the `membership` nemesis, nodes that join later ([`Cluster::add_node`]) and nodes
//! taken out ([`Cluster::retire`]).
//!
//! - [`net`]: namespaces, veths and the bridge ([`net::Network`]), or the loopback fallback.
//! - [`process`]: one node process ([`process::NodeProc`]) and its signals.
//! - [`faults`]: packet filters and netem inside the namespaces.
//! - [`clock`]: node clocks moved with libfaketime (the `clock` nemesis).
//! - [`packet_delay`]: netem's delay, jitter, loss and reordering through NFQUEUE, where
//!   the kernel has no `sch_netem`.
//! - [`status`]: who leads, asked over the admin API.
//! - [`interrupt`]: Ctrl-C / SIGTERM turn into a flag that ends the run early and cleanly.
//! - `shell`: running the system tools.
//!
//! Everything a [`Cluster`] creates (processes, namespaces, veths, bridge, FUSE mounts) is
//! removed when it is dropped, so also on error and on panic.

pub mod clock;
pub mod faults;
pub mod interrupt;
pub mod net;
pub mod packet_delay;
pub mod process;
pub(crate) mod shell;
pub mod status;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::lazyfs::{LazyMount, Unsynced};
use faults::{Firewall, Netem};
use net::{Lane, NetMode, Network, NODE_PORT};
use process::{NodeProc, NodeSpec};

/// What can go wrong controlling the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot run {what}: {source}")]
    Spawn {
        what: String,
        source: std::io::Error,
    },
    #[error("`{cmd}` failed (exit {status:?}): {stderr}")]
    Command {
        cmd: String,
        status: Option<i32>,
        stderr: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("no node {0} in this cluster")]
    NoSuchNode(u64),
    #[error("{0} needs network namespaces; this run is on loopback")]
    NeedsNamespaces(&'static str),
    #[error("no packet filter tool (nft or iptables) installed; run scripts/jepsen.sh --setup")]
    NoFirewall,
    #[error(
        "clock faults need the nodes started on libfaketime (Debian: apt-get install \
         libfaketime; scripts/jepsen.sh --setup installs it)"
    )]
    NoFakeClock,
    #[error("power cuts need the nodes' data dirs on the lazyfs layer (mount failed: {0})")]
    NoLazyFs(String),
    #[error("node {id} cannot join at {addr}: {why}")]
    CannotAdd { id: u64, addr: String, why: String },
}

/// How to build a cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub nodes: u64,
    /// The `atoll-node` binary.
    pub binary: PathBuf,
    /// Data dirs (and lazyfs backing dirs) go under `work_dir`; removed at the end.
    pub work_dir: PathBuf,
    /// Node logs go here (kept: they are part of the report).
    pub log_dir: PathBuf,
    /// Try network namespaces (else loopback straight away).
    pub namespaces: bool,
    /// Which names and subnet the namespaces use ([`Lane`]; lane 0 by default).
    pub lane: Lane,
    /// Put every data dir on a lazyfs layer (needed by the `power` nemesis).
    pub lazyfs: bool,
    /// More arguments for every node (e.g. `--broken-mode stale-reads` for a test build).
    pub node_args: Vec<String>,
    /// libfaketime, to start every node on a clock the harness can move (the `clock`
    /// nemesis); `None`: real clocks.
    pub faketime: Option<PathBuf>,
}

/// A running cluster. Node ids are `1..=n` at the start; nodes added later get the ids the
/// placement driver gives them (`n + 1`, `n + 2`, ...: it never reuses one).
pub struct Cluster {
    /// The members: started, and not taken out.
    nodes: Vec<NodeProc>,
    /// Nodes taken out of the cluster ([`Cluster::retire`]): stopped, kept until the end
    /// (their logs are in the report; their namespaces and data go with the rest).
    retired: Vec<NodeProc>,
    /// By node id; `None` where the layer could not be mounted (or was not asked for).
    layers: BTreeMap<u64, Option<LazyMount>>,
    /// By node id, with [`ClusterOptions::faketime`].
    clocks: BTreeMap<u64, clock::FakeClock>,
    /// Nodes whose packets the harness delays now ([`packet_delay`]).
    delays: BTreeMap<u64, packet_delay::PacketDelay>,
    /// Counts delayers started, to seed each one differently.
    delays_started: u64,
    network: Option<Network>,
    mode: NetMode,
    firewall: Option<Firewall>,
    opts: ClusterOptions,
    lazyfs_error: Option<String>,
    /// The highest node id this cluster has used (also by an [`Cluster::add_node`] that
    /// failed half-way: its namespace may exist, and the placement driver has the id).
    last_id: u64,
}

impl Cluster {
    /// Creates the network (or falls back to loopback, printing why), mounts the layers if
    /// asked, and starts every node.
    pub fn start(opts: &ClusterOptions) -> Result<Cluster, ControlError> {
        mkdir(&opts.work_dir)?;
        mkdir(&opts.log_dir)?;
        let (network, mode) = Self::network(opts);
        let mut cluster = Cluster {
            nodes: Vec::new(),
            retired: Vec::new(),
            layers: BTreeMap::new(),
            clocks: BTreeMap::new(),
            delays: BTreeMap::new(),
            delays_started: 0,
            network,
            firewall: if mode.is_namespaced() {
                Firewall::detect()
            } else {
                None
            },
            mode,
            opts: opts.clone(),
            lazyfs_error: None,
            last_id: opts.nodes,
        };
        let addrs = addresses(opts.nodes, &cluster.mode);
        let initial = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{}={a}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        for (i, addr) in addrs.iter().enumerate() {
            let id = i as u64 + 1;
            let start = ["--id".into(), id.to_string()]
                .into_iter()
                .chain(["--initial-cluster".into(), initial.clone()]);
            let node = cluster.node_proc(id, addr, start)?;
            cluster.nodes.push(node);
        }
        for n in &mut cluster.nodes {
            n.start()?;
        }
        Ok(cluster)
    }

    /// Node `id`'s data dir (on a lazyfs layer if the options ask for one) and the process
    /// that runs it at `addr` with `start` (how it finds the cluster) and the options' args.
    fn node_proc(
        &mut self,
        id: u64,
        addr: &str,
        start: impl Iterator<Item = String>,
    ) -> Result<NodeProc, ControlError> {
        let data_dir = self.opts.work_dir.join(format!("data{id}"));
        mkdir(&data_dir)?;
        let layer = if self.opts.lazyfs && self.lazyfs_error.is_none() {
            let backing = self.opts.work_dir.join(format!("backing{id}"));
            mkdir(&backing)?;
            match LazyMount::mount(&backing, &data_dir) {
                Ok(l) => Some(l),
                Err(e) => {
                    eprintln!(
                        "atoll-jepsen: lazyfs cannot be mounted ({e}); power cuts are unavailable"
                    );
                    self.lazyfs_error = Some(e.to_string());
                    None
                }
            }
        } else {
            None
        };
        self.layers.insert(id, layer);
        let env = match &self.opts.faketime {
            Some(library) => {
                let clock =
                    clock::FakeClock::new(library, self.opts.work_dir.join(format!("clock{id}")))?;
                let env = clock.env();
                self.clocks.insert(id, clock);
                env
            }
            None => Vec::new(),
        };
        let args = [
            "--data-dir".into(),
            data_dir.to_string_lossy().into_owned(),
            "--listen".into(),
            addr.to_string(),
        ]
        .into_iter()
        .chain(start)
        .chain(self.opts.node_args.iter().cloned())
        .collect();
        Ok(NodeProc::new(NodeSpec {
            id,
            addr: addr.to_string(),
            data_dir,
            log: self.opts.log_dir.join(format!("n{id}.log")),
            namespace: self
                .mode
                .is_namespaced()
                .then(|| self.opts.lane.namespace(id)),
            binary: self.opts.binary.clone(),
            args,
            env,
        }))
    }

    /// The id and address the next added node should have: one past every id this cluster
    /// has used, at that id's address (a fresh loopback port off namespaces). The placement
    /// driver gives out ids the same way, so registering the address there (`atollctl node
    /// add`) returns this id.
    pub fn next_node(&self) -> (u64, String) {
        let id = self.last_id + 1;
        let addr = match self.mode {
            NetMode::Namespaces(lane) => format!("{}:{NODE_PORT}", lane.node_ip(id)),
            NetMode::Loopback { .. } => format!("127.0.0.1:{}", free_port()),
        };
        (id, addr)
    }

    /// Starts node `id` at `addr` (from [`Cluster::next_node`], registered with the
    /// placement driver under `id`) in a namespace of its own, like the others, with
    /// `--join join`: it learns its id from the placement driver by its address. Its
    /// namespace, data dir and log are cleaned up with the rest.
    pub fn add_node(&mut self, id: u64, addr: &str, join: &[String]) -> Result<(), ControlError> {
        let cannot = |why: String| ControlError::CannotAdd {
            id,
            addr: addr.to_string(),
            why,
        };
        if id <= self.last_id {
            return Err(cannot(format!(
                "ids up to {} are taken (the placement driver gave an id the harness did not expect)",
                self.last_id
            )));
        }
        self.last_id = id;
        if self.mode.is_namespaced() {
            let expected = format!("{}:{NODE_PORT}", self.opts.lane.node_ip(id));
            if addr != expected {
                return Err(cannot(format!(
                    "in namespaces node {id} must be at {expected} (the placement driver gave an id the harness did not expect)"
                )));
            }
            match self.network.as_mut() {
                Some(network) => network.add(id)?,
                None => return Err(cannot("no network to add a namespace to".into())),
            }
        }
        let start = ["--join".into(), join.join(",")].into_iter();
        let mut node = self.node_proc(id, addr, start)?;
        match node.start() {
            Ok(()) => {
                self.nodes.push(node);
                Ok(())
            }
            Err(e) => {
                self.retired.push(node);
                Err(e)
            }
        }
    }

    /// Takes node `id` out: a graceful stop, and it is no longer a member (no nemesis
    /// touches it again). Its log, namespace and data stay until the end of the run.
    pub fn retire(&mut self, id: u64) -> Result<(), ControlError> {
        let at = self
            .nodes
            .iter()
            .position(|n| n.spec.id == id)
            .ok_or(ControlError::NoSuchNode(id))?;
        let mut node = self.nodes.remove(at);
        node.stop(Duration::from_secs(5));
        self.retired.push(node);
        Ok(())
    }

    /// The nodes taken out with [`Cluster::retire`].
    pub fn retired_ids(&self) -> Vec<u64> {
        self.retired.iter().map(|n| n.spec.id).collect()
    }

    fn network(opts: &ClusterOptions) -> (Option<Network>, NetMode) {
        if !opts.namespaces {
            let reason = "namespaces switched off (--loopback)".to_string();
            return (None, NetMode::Loopback { reason });
        }
        if let Some(reason) = net::unavailable_reason(opts.lane) {
            eprintln!("atoll-jepsen: LOOPBACK FALLBACK: {reason}");
            return (None, NetMode::Loopback { reason });
        }
        for r in net::remove_stale(opts.lane) {
            eprintln!("atoll-jepsen: removed stale {r} from an earlier run");
        }
        match Network::create(opts.lane, opts.nodes) {
            Ok(n) => (Some(n), NetMode::Namespaces(opts.lane)),
            Err(e) => {
                let reason = format!("creating namespaces failed: {e}");
                eprintln!("atoll-jepsen: LOOPBACK FALLBACK: {reason}");
                (None, NetMode::Loopback { reason })
            }
        }
    }

    pub fn mode(&self) -> &NetMode {
        &self.mode
    }

    /// The members' ids (retired nodes left out).
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.spec.id).collect()
    }

    /// How many nodes the cluster started with (ids `1..=n`).
    pub fn initial_nodes(&self) -> u64 {
        self.opts.nodes
    }

    /// The members' addresses (retired nodes left out).
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.spec.addr.clone()).collect()
    }

    /// Member `id`'s address.
    pub fn addr(&self, id: u64) -> Option<String> {
        self.nodes
            .iter()
            .find(|n| n.spec.id == id)
            .map(|n| n.spec.addr.clone())
    }

    /// Every node's log, retired nodes' too.
    pub fn log_paths(&self) -> Vec<PathBuf> {
        self.nodes
            .iter()
            .chain(&self.retired)
            .map(|n| n.spec.log.clone())
            .collect()
    }

    fn node(&mut self, id: u64) -> Result<&mut NodeProc, ControlError> {
        self.nodes
            .iter_mut()
            .find(|n| n.spec.id == id)
            .ok_or(ControlError::NoSuchNode(id))
    }

    pub fn kill9(&mut self, id: u64) -> Result<(), ControlError> {
        self.node(id)?.kill9();
        Ok(())
    }

    /// Graceful stop (SIGTERM; SIGKILL after 5 s).
    pub fn stop(&mut self, id: u64) -> Result<(), ControlError> {
        self.node(id)?.stop(Duration::from_secs(5));
        Ok(())
    }

    /// Starts the node again if it is not running (its data dir is kept).
    pub fn restart(&mut self, id: u64) -> Result<(), ControlError> {
        self.node(id)?.start()
    }

    pub fn pause(&mut self, id: u64) -> Result<(), ControlError> {
        self.node(id)?.pause()
    }

    pub fn resume(&mut self, id: u64) -> Result<(), ControlError> {
        self.node(id)?.resume()
    }

    pub fn is_running(&mut self, id: u64) -> Result<bool, ControlError> {
        Ok(self.node(id)?.is_running())
    }

    fn firewall(&self, what: &'static str) -> Result<Firewall, ControlError> {
        if !self.mode.is_namespaced() {
            return Err(ControlError::NeedsNamespaces(what));
        }
        self.firewall.ok_or(ControlError::NoFirewall)
    }

    /// Cuts every link in `cut` (both directions); links not named keep working. Replaces any
    /// earlier partition.
    pub fn partition(&mut self, cut: &BTreeSet<(u64, u64)>) -> Result<(), ControlError> {
        let fw = self.firewall("partition")?;
        for id in self.ids() {
            let peers: BTreeSet<u64> = cut
                .iter()
                .filter_map(|&(a, b)| {
                    if a == id {
                        Some(b)
                    } else if b == id {
                        Some(a)
                    } else {
                        None
                    }
                })
                .collect();
            faults::drop_from(self.opts.lane, fw, id, &peers)?;
        }
        Ok(())
    }

    /// Removes every partition rule.
    pub fn heal(&mut self) -> Result<(), ControlError> {
        let fw = self.firewall("partition")?;
        for id in self.ids() {
            faults::heal(self.opts.lane, fw, id)?;
        }
        Ok(())
    }

    pub fn netem(&mut self, id: u64, netem: &Netem) -> Result<faults::NetemVia, ControlError> {
        if !self.mode.is_namespaced() {
            return Err(ControlError::NeedsNamespaces("netem"));
        }
        self.node(id)?;
        if faults::tc_netem(self.opts.lane, id, netem)? {
            return Ok(faults::NetemVia::Tc);
        }
        if let Some(mut old) = self.delays.remove(&id) {
            old.stop();
        }
        self.delays_started += 1;
        match packet_delay::PacketDelay::start(self.opts.lane, id, netem, self.delays_started) {
            Ok(delay) => {
                self.delays.insert(id, delay);
                Ok(faults::NetemVia::Queue)
            }
            Err(e) => {
                eprintln!("atoll-jepsen: no netem and no NFQUEUE ({e}); packet loss only");
                faults::nft_loss(self.opts.lane, id, netem)
            }
        }
    }

    pub fn netem_off(&mut self, id: u64) -> Result<(), ControlError> {
        if !self.mode.is_namespaced() {
            return Err(ControlError::NeedsNamespaces("netem"));
        }
        if let Some(mut delay) = self.delays.remove(&id) {
            delay.stop();
        }
        faults::netem_off(self.opts.lane, id)
    }

    /// Whether power cuts are possible (every data dir is on a layer).
    pub fn has_lazyfs(&self) -> bool {
        !self.layers.is_empty() && self.layers.values().all(Option::is_some)
    }

    /// A power cut on node `id`: SIGKILL, then every un-synced write on its disk is dropped.
    /// The node stays down; [`Cluster::restart`] brings it back on what was synced.
    pub fn power_cut(&mut self, id: u64) -> Result<Unsynced, ControlError> {
        self.node(id)?.kill9();
        match self.layers.get(&id).and_then(Option::as_ref) {
            Some(layer) => Ok(layer.cut_power()),
            None => Err(ControlError::NoLazyFs(
                self.lazyfs_error
                    .clone()
                    .unwrap_or_else(|| "the run was started without --lazyfs".into()),
            )),
        }
    }

    /// Moves node `id`'s clocks `by_s` seconds forward; returns how far ahead of real time
    /// they are now.
    pub fn jump_clock(&mut self, id: u64, by_s: u64) -> Result<u64, ControlError> {
        self.node(id)?;
        match self.clocks.get_mut(&id) {
            Some(clock) => clock.jump(by_s),
            None => Err(ControlError::NoFakeClock),
        }
    }

    /// Stops every node, unmounts the layers, deletes the namespaces and the data dirs.
    /// Also what `Drop` does; calling it twice is harmless.
    pub fn shutdown(&mut self) {
        for (_, mut delay) in std::mem::take(&mut self.delays) {
            delay.stop();
        }
        for n in self.nodes.iter_mut().chain(&mut self.retired) {
            n.kill9();
        }
        let layers = std::mem::take(&mut self.layers);
        for layer in layers.into_values().flatten() {
            if let Err(e) = layer.unmount() {
                eprintln!("atoll-jepsen: cleanup: unmounting lazyfs: {e}");
            }
        }
        if let Some(mut net) = self.network.take() {
            for e in net.destroy() {
                eprintln!("atoll-jepsen: cleanup: {e}");
            }
        }
        let work_dir = &self.opts.work_dir;
        if work_dir.exists() {
            if let Err(e) = std::fs::remove_dir_all(work_dir) {
                eprintln!(
                    "atoll-jepsen: cleanup: removing {}: {e}",
                    work_dir.display()
                );
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Node addresses: fixed port on each namespace's address, or free loopback ports.
fn addresses(n: u64, mode: &NetMode) -> Vec<String> {
    (1..=n)
        .map(|id| match mode {
            NetMode::Namespaces(lane) => format!("{}:{NODE_PORT}", lane.node_ip(id)),
            NetMode::Loopback { .. } => format!("127.0.0.1:{}", free_port()),
        })
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        // Extremely unlikely; a clash shows as a node that cannot bind, in its log.
        .unwrap_or(7101)
}

fn mkdir(p: &Path) -> Result<(), ControlError> {
    std::fs::create_dir_all(p).map_err(|source| ControlError::Io {
        what: format!("creating {}", p.display()),
        source,
    })
}
