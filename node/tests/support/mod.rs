//! Real-process cluster harness for integration tests: spawns `atoll-node`
//! binaries on loopback ports, each with its own data dir and TOML config,
//! and can kill -9 / restart them, wipe a data dir, or add a node that
//! bootstraps a cluster of its own.

#![allow(dead_code)]

pub mod load;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use atoll_proto::admin_client::AdminClient;
use atoll_proto::{StatusRequest, StatusResponse};

pub struct Proc {
    pub id: u64,
    pub addr: String,
    child: Option<Child>,
    config: PathBuf,
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Proc>,
}

/// Raft settings that make snapshots and purges happen quickly.
pub const FAST_SNAPSHOTS: &str =
    "[raft]\nsnapshot_after_entries = 50\nkeep_entries_after_snapshot = 10\n";

/// A free port that no other cluster of this test process was given: the
/// tests of one binary configure clusters in parallel, and the kernel may
/// hand a port it just released to the next `bind(0)` before the first
/// cluster's node has bound it.
fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = l.local_addr().expect("local addr").port();
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if given.insert(port) {
            return port;
        }
    }
}

impl Cluster {
    /// Starts `n` nodes that bootstrap one cluster together.
    pub fn start(n: u64, extra_toml: &str) -> Cluster {
        let mut c = Self::configure(n, extra_toml);
        for id in 1..=n {
            c.restart(id);
        }
        c
    }

    /// Starts `n` nodes with `--join`: they wait for `atollctl init`.
    pub fn start_joining(n: u64) -> Cluster {
        let mut c = Self::configure(n, "");
        for id in 1..=n {
            c.restart_with(id, &["--join"]);
        }
        c
    }

    /// Writes the configs of `n` nodes of one initial cluster; starts none
    /// (start each with [`Cluster::restart`]).
    pub fn configure(n: u64, extra_toml: &str) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let addrs: Vec<String> = (0..n)
            .map(|_| format!("127.0.0.1:{}", free_port()))
            .collect();
        let initial: Vec<String> = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| format!("\"{}={}\"", i + 1, a))
            .collect();
        let mut nodes = Vec::new();
        for (i, addr) in addrs.iter().enumerate() {
            let id = i as u64 + 1;
            let config = dir.path().join(format!("node{id}.toml"));
            let data = dir.path().join(format!("data{id}"));
            let toml = format!(
                "id = {id}\ndata_dir = {data:?}\nlisten = \"{addr}\"\ninitial_cluster = [{}]\n{extra_toml}",
                initial.join(", ")
            );
            std::fs::write(&config, toml).expect("write config");
            nodes.push(Proc {
                id,
                addr: addr.clone(),
                child: None,
                config,
            });
        }
        Cluster { dir, nodes }
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|p| p.addr.clone()).collect()
    }

    pub fn addr(&self, id: u64) -> String {
        self.node(id).addr.clone()
    }

    fn node(&self, id: u64) -> &Proc {
        &self.nodes[(id - 1) as usize]
    }

    fn node_mut(&mut self, id: u64) -> &mut Proc {
        &mut self.nodes[(id - 1) as usize]
    }

    /// SIGKILL: no shutdown path runs, unflushed data is at the OS's mercy.
    pub fn kill9(&mut self, id: u64) {
        if let Some(mut child) = self.node_mut(id).child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for the process; returns whether it exited 0.
    pub fn terminate(&mut self, id: u64) -> bool {
        let Some(mut child) = self.node_mut(id).child.take() else {
            return false;
        };
        let pid = child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(sent, "could not send SIGTERM to node {id}");
        for _ in 0..100 {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// SIGSTOP (`stop = true`) or SIGCONT: a paused node keeps its sockets,
    /// so calls to it hang instead of failing.
    pub fn pause(&mut self, id: u64, stop: bool) {
        let pid = self.node(id).child.as_ref().map(|c| c.id().to_string());
        let pid = pid.unwrap_or_else(|| panic!("node {id} is not running"));
        let signal = if stop { "-STOP" } else { "-CONT" };
        let sent = Command::new("kill")
            .args([signal, &pid])
            .status()
            .is_ok_and(|s| s.success());
        assert!(sent, "could not send {signal} to node {id}");
    }

    /// The node's data directory.
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("data{id}"))
    }

    /// Deletes the node's data directory (a lost disk).
    pub fn wipe(&mut self, id: u64) {
        let dir = self.data_dir(id);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).expect("remove data dir");
        }
    }

    /// Adds node `len + 1` with an `initial_cluster` of itself alone: it
    /// bootstraps a cluster of its own when started. Returns its id.
    pub fn add_lone_node(&mut self) -> u64 {
        self.add_node(|id, addr| format!("id = {id}\ninitial_cluster = [\"{id}={addr}\"]\n"))
    }

    /// Adds node `len + 1` configured with id 0 and `join = [via]`: it asks
    /// the placement driver for its id through `via` (the PD hands out the
    /// next id, `len + 1` when every earlier node registered). `extra_toml`
    /// is appended to its config. Returns the slot's id.
    pub fn add_joining_node(&mut self, via: u64, extra_toml: &str) -> u64 {
        let join = self.addr(via);
        self.add_node(|_, _| format!("id = 0\njoin = [\"{join}\"]\n{extra_toml}"))
    }

    /// Adds node `len + 1` configured with its id and `join = [via]`, as a
    /// node registered ahead with `atollctl node add` is started. Returns
    /// its id.
    pub fn add_node_with_id(&mut self, via: u64) -> u64 {
        let join = self.addr(via);
        self.add_node(|id, _| format!("id = {id}\njoin = [\"{join}\"]\n"))
    }

    /// Adds node `len + 1` on a free port with its own data dir; `toml`
    /// gives the rest of its config from its slot id and address.
    fn add_node(&mut self, toml: impl FnOnce(u64, &str) -> String) -> u64 {
        let id = self.nodes.len() as u64 + 1;
        let addr = format!("127.0.0.1:{}", free_port());
        let config = self.dir.path().join(format!("node{id}.toml"));
        let data = self.data_dir(id);
        let rest = toml(id, &addr);
        std::fs::write(
            &config,
            format!("data_dir = {data:?}\nlisten = \"{addr}\"\n{rest}"),
        )
        .expect("write config");
        self.nodes.push(Proc {
            id,
            addr,
            child: None,
            config,
        });
        id
    }

    /// Waits for the node's process to exit by itself; `None` if it still
    /// runs after `timeout` (it is left running).
    pub fn wait_exit(&mut self, id: u64, timeout: Duration) -> Option<ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let child = self.node_mut(id).child.as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                self.node_mut(id).child = None;
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Everything the node logged so far.
    pub fn log_of(&self, id: u64) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("node{id}.log"))).unwrap_or_default()
    }

    /// (Re)starts a node from its config and data dir.
    pub fn restart(&mut self, id: u64) {
        self.restart_with(id, &[]);
    }

    /// (Re)starts a node from its config and data dir, with extra flags.
    pub fn restart_with(&mut self, id: u64, flags: &[&str]) {
        self.restart_with_env(id, flags, &[]);
    }

    /// (Re)starts a node with extra flags and environment variables.
    pub fn restart_with_env(&mut self, id: u64, flags: &[&str], env: &[(&str, &str)]) {
        self.kill9(id);
        let log = self.dir.path().join(format!("node{id}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let err = out.try_clone().expect("log file");
        let p = self.node_mut(id);
        let child = Command::new(env!("CARGO_BIN_EXE_atoll-node"))
            .arg("--config")
            .arg(&p.config)
            .args(flags)
            .env("RUST_LOG", "info,openraft=warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn atoll-node");
        p.child = Some(child);
    }

    pub async fn status(&self, id: u64) -> Option<StatusResponse> {
        let mut c = AdminClient::connect(format!("http://{}", self.addr(id)))
            .await
            .ok()?;
        let r = tokio::time::timeout(Duration::from_secs(2), c.status(StatusRequest {}))
            .await
            .ok()?;
        r.ok().map(|r| r.into_inner())
    }

    /// The node that reports itself leader of `shard`, among running nodes.
    pub async fn leader(&self, shard: u64) -> Option<u64> {
        for p in self.nodes.iter().filter(|p| p.child.is_some()) {
            if let Some(s) = self.status(p.id).await {
                if s.shards.iter().any(|sh| {
                    sh.shard.as_ref().is_some_and(|d| d.id == shard) && sh.role == "leader"
                }) {
                    return Some(p.id);
                }
            }
        }
        None
    }

    pub async fn wait_leader(&self, shard: u64, timeout: Duration) -> u64 {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(l) = self.leader(shard).await {
                return l;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no leader for shard {shard} within {timeout:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every running node hosts `shard` and knows its leader
    /// (a node still in its start-up checks hosts nothing yet); returns
    /// the leader.
    pub async fn wait_all_know_leader(&self, shard: u64, timeout: Duration) -> u64 {
        let leader = self.wait_leader(shard, timeout).await;
        let running: Vec<u64> = self
            .nodes
            .iter()
            .filter(|p| p.child.is_some())
            .map(|p| p.id)
            .collect();
        self.wait_until("every node to know the leader", timeout, || async {
            for &id in &running {
                let knows = self.status(id).await.is_some_and(|s| {
                    s.shards.iter().any(|sh| {
                        sh.shard.as_ref().is_some_and(|d| d.id == shard) && sh.leader_id.is_some()
                    })
                });
                if !knows {
                    return false;
                }
            }
            true
        })
        .await;
        leader
    }

    /// Polls `pred` until it holds or `timeout` passes.
    pub async fn wait_until<F, Fut>(&self, what: &str, timeout: Duration, mut pred: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + timeout;
        while !pred().await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last lines of every node's log, for assertion messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for p in &self.nodes {
            let text = std::fs::read_to_string(self.dir.path().join(format!("node{}.log", p.id)))
                .unwrap_or_default();
            // Backtrace frames of a node that exited say less than the
            // error above them.
            let lines: Vec<&str> = text
                .lines()
                .filter(|l| {
                    let t = l.trim_start();
                    !(t.starts_with("at ")
                        || t.split_once(": ")
                            .is_some_and(|(n, _)| n.parse::<u32>().is_ok()))
                })
                .collect();
            out.push_str(&format!("--- node {} ---\n", p.id));
            for l in &lines[lines.len().saturating_sub(15)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for id in 1..=self.nodes.len() as u64 {
            self.kill9(id);
        }
    }
}

/// Reads `key` from one node's local state, without going through the leader.
pub async fn stale_get(addr: &str, key: &[u8]) -> Option<Vec<u8>> {
    let mut kv = atoll_proto::kv_client::KvClient::connect(format!("http://{addr}"))
        .await
        .ok()?;
    let req = atoll_proto::GetRequest {
        header: Some(atoll_proto::RequestHeader {
            shard_id: 1,
            epoch: None,
        }),
        key: key.to_vec(),
        consistency: atoll_proto::ReadConsistency::Stale as i32,
    };
    kv.get(req).await.ok()?.into_inner().value
}

/// Splits `shard` at `key` through its leader, retrying for a while when
/// the leader is not known yet (a shard just created or split off elects
/// first); panics with the nodes' logs if it never succeeds.
pub async fn split_retrying(c: &Cluster, shard: u64, key: &[u8]) {
    let mut tries = 0;
    loop {
        let r = atoll_client::admin::on_leader(&c.endpoints(), Duration::from_secs(10), |admin| {
            let key = key.to_vec();
            async move { admin.split_shard(shard, Some(&key)).await }
        })
        .await;
        match r {
            Ok(_) => return,
            // Refused with nothing changed, or asked while the leader moved.
            Err(atoll_client::Error::NotApplied(_) | atoll_client::Error::NotLeader { .. })
                if tries < 50 =>
            {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("split of shard {shard}: {e}\n{}", c.logs()),
        }
    }
}

/// The cluster as the PD sees it, or `None` if it cannot be read now.
pub async fn pd_view(c: &Cluster) -> Option<atoll_client::ClusterState> {
    atoll_client::admin::cluster_state(&c.endpoints(), Duration::from_secs(3))
        .await
        .ok()
}

/// Waits until the PD knows `nodes` nodes and the first shard only (a
/// fresh cluster), and shard 1 has a leader.
pub async fn wait_fresh(c: &Cluster, nodes: usize) {
    c.wait_until(
        &format!("the PD knows {nodes} nodes"),
        Duration::from_secs(30),
        || async {
            pd_view(c)
                .await
                .is_some_and(|s| s.nodes.len() == nodes && s.shards.len() == 1)
        },
    )
    .await;
    c.wait_leader(1, Duration::from_secs(20)).await;
}
