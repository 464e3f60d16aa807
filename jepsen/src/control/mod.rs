//! Cluster control: N real `atoll-node` processes, each with its own data dir and log file, in
//! its own network namespace (or on loopback where namespaces cannot be made), and the faults
//! the nemeses need: kill -9, stop, restart, pause/resume, partitions, netem, power cuts.
//!
//! - [`net`]: namespaces, veths and the bridge ([`net::Network`]), or the loopback fallback.
//! - [`process`]: one node process ([`process::NodeProc`]) and its signals.
//! - [`faults`]: packet filters and netem inside the namespaces.
//! - [`status`]: who leads, asked over the admin API.
//! - [`interrupt`]: Ctrl-C / SIGTERM turn into a flag that ends the run early and cleanly.
//! - `shell`: running the system tools.
//!
//! Everything a [`Cluster`] creates (processes, namespaces, veths, bridge, FUSE mounts) is
//! removed when it is dropped, so also on error and on panic.

pub mod faults;
pub mod interrupt;
pub mod net;
pub mod process;
pub(crate) mod shell;
pub mod status;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::lazyfs::{LazyMount, Unsynced};
use faults::{Firewall, Netem};
use net::{NetMode, Network, NODE_PORT};
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
    #[error("power cuts need the nodes' data dirs on the lazyfs layer (mount failed: {0})")]
    NoLazyFs(String),
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
    /// Put every data dir on a lazyfs layer (needed by the `power` nemesis).
    pub lazyfs: bool,
    /// More arguments for every node (e.g. `--broken-mode stale-reads` for a test build).
    pub node_args: Vec<String>,
}

/// A running cluster. Node ids are `1..=n`.
pub struct Cluster {
    nodes: Vec<NodeProc>,
    layers: Vec<Option<LazyMount>>,
    network: Option<Network>,
    mode: NetMode,
    firewall: Option<Firewall>,
    work_dir: PathBuf,
    lazyfs_error: Option<String>,
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
            layers: Vec::new(),
            network,
            firewall: if mode.is_namespaced() {
                Firewall::detect()
            } else {
                None
            },
            mode,
            work_dir: opts.work_dir.clone(),
            lazyfs_error: None,
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
            let data_dir = opts.work_dir.join(format!("data{id}"));
            mkdir(&data_dir)?;
            let layer = if opts.lazyfs && cluster.lazyfs_error.is_none() {
                let backing = opts.work_dir.join(format!("backing{id}"));
                mkdir(&backing)?;
                match LazyMount::mount(&backing, &data_dir) {
                    Ok(l) => Some(l),
                    Err(e) => {
                        eprintln!("atoll-jepsen: lazyfs cannot be mounted ({e}); power cuts are unavailable");
                        cluster.lazyfs_error = Some(e.to_string());
                        None
                    }
                }
            } else {
                None
            };
            cluster.layers.push(layer);
            let spec = NodeSpec {
                id,
                addr: addr.clone(),
                data_dir: data_dir.clone(),
                log: opts.log_dir.join(format!("n{id}.log")),
                namespace: cluster.mode.is_namespaced().then(|| net::namespace(id)),
                binary: opts.binary.clone(),
                args: [
                    "--id".into(),
                    id.to_string(),
                    "--data-dir".into(),
                    data_dir.to_string_lossy().into_owned(),
                    "--listen".into(),
                    addr.clone(),
                    "--initial-cluster".into(),
                    initial.clone(),
                ]
                .into_iter()
                .chain(opts.node_args.iter().cloned())
                .collect(),
            };
            cluster.nodes.push(NodeProc::new(spec));
        }
        for n in &mut cluster.nodes {
            n.start()?;
        }
        Ok(cluster)
    }

    fn network(opts: &ClusterOptions) -> (Option<Network>, NetMode) {
        if !opts.namespaces {
            let reason = "namespaces switched off (--loopback)".to_string();
            return (None, NetMode::Loopback { reason });
        }
        if let Some(reason) = net::unavailable_reason() {
            eprintln!("atoll-jepsen: LOOPBACK FALLBACK: {reason}");
            return (None, NetMode::Loopback { reason });
        }
        for r in net::remove_stale() {
            eprintln!("atoll-jepsen: removed stale {r} from an earlier run");
        }
        match Network::create(opts.nodes) {
            Ok(n) => (Some(n), NetMode::Namespaces),
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

    pub fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.spec.id).collect()
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.spec.addr.clone()).collect()
    }

    pub fn log_paths(&self) -> Vec<PathBuf> {
        self.nodes.iter().map(|n| n.spec.log.clone()).collect()
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
            faults::drop_from(fw, id, &peers)?;
        }
        Ok(())
    }

    /// Removes every partition rule.
    pub fn heal(&mut self) -> Result<(), ControlError> {
        let fw = self.firewall("partition")?;
        for id in self.ids() {
            faults::heal(fw, id)?;
        }
        Ok(())
    }

    pub fn netem(&mut self, id: u64, netem: &Netem) -> Result<faults::NetemVia, ControlError> {
        if !self.mode.is_namespaced() {
            return Err(ControlError::NeedsNamespaces("netem"));
        }
        faults::netem_on(id, netem)
    }

    pub fn netem_off(&mut self, id: u64) -> Result<(), ControlError> {
        if !self.mode.is_namespaced() {
            return Err(ControlError::NeedsNamespaces("netem"));
        }
        faults::netem_off(id)
    }

    /// Whether power cuts are possible (every data dir is on a layer).
    pub fn has_lazyfs(&self) -> bool {
        !self.layers.is_empty() && self.layers.iter().all(Option::is_some)
    }

    /// A power cut on node `id`: SIGKILL, then every un-synced write on its disk is dropped.
    /// The node stays down; [`Cluster::restart`] brings it back on what was synced.
    pub fn power_cut(&mut self, id: u64) -> Result<Unsynced, ControlError> {
        self.node(id)?.kill9();
        let idx = (id - 1) as usize;
        match self.layers.get(idx).and_then(Option::as_ref) {
            Some(layer) => Ok(layer.cut_power()),
            None => Err(ControlError::NoLazyFs(
                self.lazyfs_error
                    .clone()
                    .unwrap_or_else(|| "the run was started without --lazyfs".into()),
            )),
        }
    }

    /// Stops every node, unmounts the layers, deletes the namespaces and the data dirs.
    /// Also what `Drop` does; calling it twice is harmless.
    pub fn shutdown(&mut self) {
        for n in &mut self.nodes {
            n.kill9();
        }
        for layer in self.layers.drain(..).flatten() {
            if let Err(e) = layer.unmount() {
                eprintln!("atoll-jepsen: cleanup: unmounting lazyfs: {e}");
            }
        }
        if let Some(mut net) = self.network.take() {
            for e in net.destroy() {
                eprintln!("atoll-jepsen: cleanup: {e}");
            }
        }
        if self.work_dir.exists() {
            if let Err(e) = std::fs::remove_dir_all(&self.work_dir) {
                eprintln!(
                    "atoll-jepsen: cleanup: removing {}: {e}",
                    self.work_dir.display()
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
            NetMode::Namespaces => format!("{}:{NODE_PORT}", net::node_ip(id)),
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
