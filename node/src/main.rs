#![cfg_attr(madsim, allow(unused))]
//! `atoll-node`: run one Atoll node.
//!
//! With no flags it starts a single-node cluster on 127.0.0.1:7101 with its
//! data under ./atoll-data. See `atoll-node --help` and the README.

use std::path::PathBuf;

#[cfg(not(madsim))]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use atoll_node::config::Config;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "atoll-node",
    version,
    about = "Run one node of an Atoll cluster"
)]
struct Args {
    /// TOML config file; flags override its values.
    #[arg(long, short = 'c', env = "ATOLL_CONFIG")]
    config: Option<PathBuf>,
    /// This node's id (> 0, unique in the cluster). Default 1; with
    /// `--join ADDR`, the placement driver gives a fresh node its id.
    #[arg(long)]
    id: Option<u64>,
    /// Data directory. Default ./atoll-data.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address to listen on. Default 127.0.0.1:7101.
    #[arg(long)]
    listen: Option<String>,
    /// Address other nodes and clients use for this node. Default: --listen.
    #[arg(long)]
    advertise: Option<String>,
    /// Initial voters, `ID=HOST:PORT,...`. On the first start, every listed
    /// node bootstraps the cluster together. Omit it to join an existing
    /// cluster later (atollctl add-learner). Default, when neither this nor
    /// a config file is given: a single-node cluster of this node.
    #[arg(long, value_delimiter = ',')]
    initial_cluster: Option<Vec<String>>,
    /// Mixed into the cluster id derived at bootstrap; give every new cluster
    /// its own (all its initial members the same). Default "atoll".
    #[arg(long)]
    initial_cluster_token: Option<String>,
    /// Do not bootstrap anything; join an existing cluster. With addresses
    /// of running nodes (`--join HOST:PORT,...`), a fresh node gets its id
    /// from the placement driver through them (unless `--id` is given) and
    /// registers; without, it waits to be added (also how a node whose data
    /// dir was lost comes back: see docs/operations.md).
    #[arg(long, num_args = 0.., value_delimiter = ',', conflicts_with = "initial_cluster")]
    join: Option<Vec<String>>,
    /// Threads for requests and Raft: 0 = one per core (default), 1 = a
    /// single thread (best when several nodes share a few cores).
    #[arg(long)]
    worker_threads: Option<usize>,
    /// Test builds only (feature `broken-modes`): run deliberately broken,
    /// as `stale-reads`, `ack-before-sync` or `no-dedup` (src/broken.rs).
    #[cfg(feature = "broken-modes")]
    #[arg(long, hide = true, value_parser = parse_broken_mode)]
    broken_mode: Option<atoll_node::broken::Mode>,
}

#[cfg(feature = "broken-modes")]
fn parse_broken_mode(s: &str) -> Result<atoll_node::broken::Mode, String> {
    atoll_node::broken::Mode::parse(s).ok_or_else(|| {
        format!("unknown broken mode {s:?} (stale-reads, ack-before-sync, no-dedup)")
    })
}

impl Args {
    fn into_config(self) -> anyhow::Result<Config> {
        let from_file = self.config.is_some();
        let (mut c, file_sets_id) = match &self.config {
            Some(path) => (
                Config::from_toml_file(path)?,
                Config::toml_file_sets_id(path)?,
            ),
            None => (Config::default(), false),
        };
        if let Some(id) = self.id {
            c.id = id;
        } else if self.join.as_ref().is_some_and(|j| !j.is_empty()) && !file_sets_id {
            c.id = 0; // ask the placement driver
        }
        if let Some(d) = self.data_dir {
            c.data_dir = d;
        }
        if let Some(l) = self.listen {
            c.listen = l;
        }
        if let Some(a) = self.advertise {
            c.advertise = Some(a);
        }
        if let Some(n) = self.worker_threads {
            c.worker_threads = n;
        }
        if let Some(t) = self.initial_cluster_token {
            c.initial_cluster_token = t;
        }
        if let Some(ic) = self.initial_cluster {
            c.initial_cluster = ic;
        } else if let Some(join) = self.join {
            c.initial_cluster.clear();
            c.join = join;
        } else if !from_file && c.initial_cluster.is_empty() {
            c.initial_cluster = vec![format!("{}={}", c.id, c.advertise_addr())];
        }
        Ok(c)
    }
}

/// Under `--cfg madsim` the simulation starts nodes in-process through
/// `atoll_node::start_with_engine`; the binary itself is not simulated.
#[cfg(madsim)]
fn main() {
    eprintln!("atoll-node is not runnable in a --cfg madsim build");
}

#[cfg(not(madsim))]
fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    atoll_node::panic_exit::install();
    let args = Args::parse();
    #[cfg(all(feature = "broken-modes", not(madsim)))]
    if let Some(mode) = args.broken_mode {
        atoll_node::broken::set(mode);
        let warning = format!(
            "BROKEN MODE {}: this node is deliberately incorrect (test builds only); never use it for data",
            mode.name()
        );
        eprintln!("atoll-node: {warning}");
        tracing::warn!("{warning}");
    }
    let config = args.into_config()?;
    let runtime = match config.worker_threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        n => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            if n > 1 {
                b.worker_threads(n);
            }
            b
        }
    }
    .enable_all()
    .build()
    .context("cannot start the async runtime")?;
    runtime.block_on(run(config))
}

#[cfg(not(madsim))]
async fn run(config: Config) -> anyhow::Result<()> {
    let node = atoll_node::start(config)
        .await
        .context("cannot start node")?;
    eprintln!(
        "atoll-node {} listening on {}",
        node.id(),
        node.local_addr()
    );
    wait_for_signal().await?;
    tracing::info!("shutting down");
    node.shutdown().await.context("shutdown")?;
    Ok(())
}

#[cfg(not(madsim))]
async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for ctrl-c")?,
        _ = term.recv() => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id_of(file: Option<&str>, flags: &[&str]) -> u64 {
        let dir = tempfile::tempdir().unwrap();
        let mut argv = vec!["atoll-node".to_string()];
        if let Some(text) = file {
            let path = dir.path().join("node.toml");
            std::fs::write(&path, text).unwrap();
            argv.push("--config".into());
            argv.push(path.display().to_string());
        }
        argv.extend(flags.iter().map(|f| f.to_string()));
        Args::parse_from(argv).into_config().unwrap().id
    }

    #[test]
    fn a_joining_node_asks_the_pd_for_its_id_unless_told_one() {
        let join = ["--join", "127.0.0.1:7101"];
        assert_eq!(id_of(None, &join), 0);
        // A config file that does not name an id (here: only PD settings)
        // must not give the joining node the default id 1.
        assert_eq!(id_of(Some("[pd]\nsplit_keys = 10\n"), &join), 0);
        assert_eq!(id_of(Some("id = 5\n"), &join), 5);
        assert_eq!(
            id_of(
                Some("[pd]\nsplit_keys = 10\n"),
                &["--join", "a:1", "--id", "7"]
            ),
            7
        );
        // Without --join the file's (or the default) id stands.
        assert_eq!(id_of(Some("[pd]\nsplit_keys = 10\n"), &[]), 1);
    }
}
