//! Real `atoll-node` processes for atollctl's end-to-end tests: finds the
//! node binary (`$ATOLL_NODE_BIN`, else builds it once per test process
//! with cargo into this build's target dir, a no-op when fresh), starts
//! three (or more) nodes that bootstrap one cluster on loopback ports, each with its
//! own data dir, TOML config and log, and kills them when dropped; more
//! nodes can be started later with flags of their own.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

pub struct RealCluster {
    dir: tempfile::TempDir,
    pub addrs: Vec<String>,
    children: Vec<Child>,
    /// Names of the nodes started later ([`RealCluster::start_extra`]).
    extra: Vec<String>,
}

impl RealCluster {
    /// Starts three nodes of one initial cluster; `extra_toml` is appended
    /// to every node's config.
    pub fn start(extra_toml: &str) -> RealCluster {
        Self::start_n(3, extra_toml)
    }

    /// Starts `n` nodes of one initial cluster.
    pub fn start_n(n: usize, extra_toml: &str) -> RealCluster {
        let binary = node_binary();
        let dir = tempfile::tempdir().expect("temp dir");
        let addrs: Vec<String> = (0..n)
            .map(|_| format!("127.0.0.1:{}", free_port()))
            .collect();
        let initial: Vec<String> = addrs
            .iter()
            .enumerate()
            .map(|(i, addr)| format!("\"{}={addr}\"", i + 1))
            .collect();
        let mut children = Vec::new();
        for (i, addr) in addrs.iter().enumerate() {
            let id = i + 1;
            let config = dir.path().join(format!("node{id}.toml"));
            let data = dir.path().join(format!("data{id}"));
            let toml = format!(
                "id = {id}\ndata_dir = {data:?}\nlisten = \"{addr}\"\ninitial_cluster = [{}]\n{extra_toml}",
                initial.join(", ")
            );
            std::fs::write(&config, toml).expect("write config");
            children.push(spawn_node(
                binary,
                &config,
                &[],
                &dir.path().join(format!("node{id}.log")),
            ));
        }
        RealCluster {
            dir,
            addrs,
            children,
            extra: Vec::new(),
        }
    }

    /// Starts one more node, `extra-N`, with `toml` as its config file and
    /// `flags` after `--config`; `flags` may name its data dir as `<dir>`
    /// (replaced by a fresh one in the cluster's temp dir). Not one of
    /// [`Self::addrs`]; killed with the cluster.
    pub fn start_extra(&mut self, toml: &str, flags: &[&str]) {
        let name = format!("extra-{}", self.extra.len() + 1);
        let config = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(&config, toml).expect("write config");
        let data = self.dir.path().join(format!("{name}-data"));
        let data = data.to_str().expect("a UTF-8 temp dir");
        let flags: Vec<&str> = flags
            .iter()
            .map(|f| if *f == "<dir>" { data } else { *f })
            .collect();
        let log = self.dir.path().join(format!("{name}.log"));
        self.children
            .push(spawn_node(node_binary(), &config, &flags, &log));
        self.extra.push(name);
    }

    /// The `--endpoints` value naming every node.
    pub fn endpoints(&self) -> String {
        self.addrs.join(",")
    }

    /// The last lines of every node's log, for assertion messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        let names = (1..=self.addrs.len())
            .map(|id| format!("node{id}"))
            .chain(self.extra.iter().cloned());
        for name in names {
            let log = std::fs::read_to_string(self.dir.path().join(format!("{name}.log")))
                .unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            out.push_str(&format!("--- {name} ---\n"));
            for line in &lines[lines.len().saturating_sub(15)..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for RealCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn_node(binary: &Path, config: &Path, flags: &[&str], log: &Path) -> Child {
    let out = std::fs::File::create(log).expect("log file");
    let err = out.try_clone().expect("log file");
    Command::new(binary)
        .arg("--config")
        .arg(config)
        .args(flags)
        .env("RUST_LOG", "info,openraft=warn")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn atoll-node")
}

/// `host:port` addresses nobody listens on (bound, then released).
pub fn closed_endpoints(n: usize) -> String {
    let addrs: Vec<String> = (0..n)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    addrs.join(",")
}

/// A loopback `host:port` nobody listens on yet (for a node to come).
pub fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// A free port no other cluster of this test process was given: tests run
/// in parallel, and the kernel may hand a just-released port out again.
fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = listener.local_addr().expect("local addr").port();
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if given.insert(port) {
            return port;
        }
    }
}

/// The `atoll-node` binary: `$ATOLL_NODE_BIN`, else the one cargo builds
/// (once per process) next to this test's target profile dir.
fn node_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| match std::env::var_os("ATOLL_NODE_BIN") {
        Some(path) => PathBuf::from(path),
        None => build_node_binary(),
    })
}

/// Runs `cargo build -p atoll-node` into the target dir holding this test
/// executable (`{target}/{profile}/deps/atollctl-*`), in its profile.
fn build_node_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from {target}/{profile}/deps");
    let target = profile_dir.parent().expect("a target dir");
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "-q", "-p", "atoll-node", "--bin", "atoll-node"])
        .env("CARGO_TARGET_DIR", target)
        .current_dir(&workspace);
    if release {
        build.arg("--release");
    }
    let status = build.status().expect("run cargo to build atoll-node");
    assert!(
        status.success(),
        "building atoll-node failed ({status}); or set ATOLL_NODE_BIN"
    );
    profile_dir.join("atoll-node")
}
