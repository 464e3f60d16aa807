//! One run, start to end: start the cluster, wait for a leader, run the workload's clients
//! and the nemesis scheduler for the given time, heal, read back, check, write the report.
//! The cluster (processes, namespaces, mounts, data) is gone when [`run`] returns, whatever
//! happened: it lives in a drop guard.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::checker::Verdict;
use crate::control::interrupt::Interrupt;
use crate::control::net::Lane;
use crate::control::{status, Cluster, ClusterOptions, ControlError};
use crate::nemesis::{self, NemesisKind, Schedule};
use crate::report::{self, ReportError, Summary};
use crate::workload::{self, Clock, Ctx, WorkloadError, WorkloadKind};
use crate::Recorder;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("no leader elected within {0:?}; see the node logs in {1}")]
    NoLeader(Duration, PathBuf),
    #[error(
        "atoll-node binary not found (set ATOLL_NODE_BIN or build it: cargo build -p atoll-node)"
    )]
    NoBinary,
    #[error("cannot build the broken-modes atoll-node into {dir}: {why}")]
    BrokenBuild { dir: PathBuf, why: String },
}

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub workload: WorkloadKind,
    pub nemeses: Vec<NemesisKind>,
    pub time: Duration,
    pub nodes: u64,
    pub clients: u64,
    /// The report directory (created).
    pub out: PathBuf,
    pub binary: PathBuf,
    pub namespaces: bool,
    /// The network names and subnet of the namespaces ([`Lane`]): runs in different lanes
    /// can share the machine.
    pub lane: Lane,
    pub schedule: Schedule,
    pub seed: u64,
    /// The share of `register` gets sent straight to a random node (see
    /// [`crate::workload::direct`]).
    pub direct_reads: f64,
    /// More arguments for every node (a broken mode, for the harness's self-tests).
    pub node_args: Vec<String>,
    /// The clients' per-attempt timeout (default 1 s; see [`Ctx::request_timeout`]).
    pub request_timeout: Duration,
}

/// `atoll-node` next to the running executable (or its parent, for test binaries in
/// `deps/`), unless `ATOLL_NODE_BIN` names one.
pub fn find_node_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ATOLL_NODE_BIN") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|d| d.join("atoll-node"))
        .find(|p| p.is_file())
}

/// The `atoll-node` built with feature `broken-modes` (its hidden `--broken-mode` flag), in
/// its own target dir so that it never replaces the normal binary: `$ATOLL_BROKEN_NODE_BIN`,
/// else `{target}/broken/debug/atoll-node`, where `{target}` holds the running executable.
/// Builds it there first (`cargo build`, a no-op when fresh) unless the env var names one.
pub fn broken_node_binary() -> Result<PathBuf, RunError> {
    if let Some(p) = std::env::var_os("ATOLL_BROKEN_NODE_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|e| RunError::BrokenBuild {
        dir: PathBuf::new(),
        why: format!("cannot find the running executable: {e}"),
    })?;
    // `{target}/debug/atoll-jepsen` or `{target}/debug/deps/<test>`.
    let target = exe
        .ancestors()
        .find(|d| {
            d.file_name()
                .is_some_and(|n| n == "debug" || n == "release")
        })
        .and_then(Path::parent)
        .ok_or_else(|| RunError::BrokenBuild {
            dir: PathBuf::new(),
            why: format!("{} is not in a cargo target dir", exe.display()),
        })?;
    let dir = target.join("broken");
    let binary = dir.join("debug").join("atoll-node");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let built = std::process::Command::new(cargo)
        .args(["build", "-q", "-p", "atoll-node", "--bin", "atoll-node"])
        .args(["--features", "broken-modes"])
        .env("CARGO_TARGET_DIR", &dir)
        .current_dir(&workspace)
        .status();
    match built {
        Ok(s) if s.success() => Ok(binary),
        _ if binary.is_file() => {
            eprintln!(
                "atoll-jepsen: could not rebuild {}; using it as it is",
                binary.display()
            );
            Ok(binary)
        }
        Ok(s) => Err(RunError::BrokenBuild {
            dir,
            why: format!("cargo build exited with {s}"),
        }),
        Err(e) => Err(RunError::BrokenBuild {
            dir,
            why: format!("cannot run cargo: {e}"),
        }),
    }
}

fn wait_leader(
    rt: &tokio::runtime::Runtime,
    endpoints: &[String],
    within: Duration,
) -> Option<u64> {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if let Some(l) = rt.block_on(status::leader(endpoints)) {
            return Some(l);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

/// Runs one test and writes its report; returns the summary and verdicts.
pub fn run(cfg: &RunConfig, interrupt: &Interrupt) -> Result<(Summary, Vec<Verdict>), RunError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?;
    let log_dir = cfg.out.join("nodes");
    let mut notes = Vec::new();
    let faketime = if cfg.nemeses.contains(&NemesisKind::Clock) {
        let found = crate::control::clock::find_library();
        if found.is_none() {
            notes.push(
                "nemesis clock skipped: libfaketime is not installed (scripts/jepsen.sh --setup)"
                    .into(),
            );
        }
        found
    } else {
        None
    };
    let cluster = Cluster::start(&ClusterOptions {
        nodes: cfg.nodes,
        binary: cfg.binary.clone(),
        work_dir: cfg.out.join("data"),
        log_dir: log_dir.clone(),
        namespaces: cfg.namespaces,
        lane: cfg.lane,
        lazyfs: cfg.nemeses.contains(&NemesisKind::Power),
        node_args: cfg.node_args.clone(),
        faketime: faketime.clone(),
    })?;
    let network = cluster.mode().describe();
    let mut nemeses = cfg.nemeses.clone();
    if !cluster.mode().is_namespaced() {
        nemeses.retain(|k| {
            let keep = !k.needs_namespaces();
            if !keep {
                notes.push(format!(
                    "nemesis {} skipped: it needs network namespaces (loopback run)",
                    k.name()
                ));
            }
            keep
        });
    }
    if faketime.is_none() {
        nemeses.retain(|k| *k != NemesisKind::Clock);
    }
    if nemeses.contains(&NemesisKind::Power) && !cluster.has_lazyfs() {
        nemeses.retain(|k| *k != NemesisKind::Power);
        notes.push("nemesis power skipped: lazyfs (FUSE) could not be mounted".into());
    }
    for n in &notes {
        eprintln!("atoll-jepsen: {n}");
    }
    let endpoints = cluster.endpoints();
    let cluster = Arc::new(Mutex::new(cluster));
    if wait_leader(&rt, &endpoints, Duration::from_secs(30)).is_none() {
        return Err(RunError::NoLeader(Duration::from_secs(30), log_dir));
    }

    let clock = Clock::start();
    let rec = Arc::new(Recorder::new());
    let stop_load = Arc::new(AtomicBool::new(false));
    let ctx = Ctx {
        endpoints: endpoints.clone(),
        rec: Arc::clone(&rec),
        clock,
        stop: Arc::clone(&stop_load),
        seed: cfg.seed,
        direct_reads: cfg.direct_reads,
        request_timeout: cfg.request_timeout,
    };
    let load = {
        let ctx = ctx.clone();
        let (kind, clients) = (cfg.workload, cfg.clients);
        rt.spawn(async move { workload::run(kind, &ctx, clients).await })
    };
    let stop_nemesis = Arc::new(AtomicBool::new(false));
    let nemesis_thread = {
        let cluster = Arc::clone(&cluster);
        let stop = Arc::clone(&stop_nemesis);
        let handle = rt.handle().clone();
        let (schedule, seed) = (cfg.schedule, cfg.seed);
        std::thread::spawn(move || {
            // The members of the moment: with `membership`, nodes come and go.
            let eps = || lock(&cluster).endpoints();
            let leader = || handle.block_on(status::leader(&eps()));
            let transfer = |target| handle.block_on(status::transfer_leader(&eps(), target));
            let split = |key: &[u8]| handle.block_on(status::split_at(&eps(), key));
            let add_node = |addr: &str| handle.block_on(status::add_node(&eps(), addr));
            let set_node =
                |node, target| handle.block_on(status::set_node_state(&eps(), node, target));
            let pd_nodes = || handle.block_on(status::pd_nodes(&eps()));
            let connect_rtt_ms = |id| {
                let addr = lock(&cluster).addr(id).ok_or(format!("no node {id}"))?;
                status::connect_rtt_ms(&addr)
            };
            let clock_offset_ms = |id| {
                let addr = lock(&cluster).addr(id).ok_or(format!("no node {id}"))?;
                handle.block_on(status::clock_offset_ms(&addr))
            };
            let probes = nemesis::Probes {
                leader: &leader,
                transfer: &transfer,
                split: &split,
                add_node: &add_node,
                set_node: &set_node,
                pd_nodes: &pd_nodes,
                clock_offset_ms: &clock_offset_ms,
                connect_rtt_ms: &connect_rtt_ms,
            };
            nemesis::run(&nemeses, &cluster, schedule, clock, seed, &stop, &probes)
        })
    };

    let started = Instant::now();
    while started.elapsed() < cfg.time && !interrupt.is_set() && !load.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
    }
    if interrupt.is_set() {
        notes.push("interrupted (Ctrl-C / SIGTERM): the run was cut short".into());
    }
    stop_nemesis.store(true, Ordering::Relaxed);
    let windows = nemesis_thread.join().unwrap_or_default();
    // Healed: give the cluster a leader and the clients a few calm seconds.
    if !interrupt.is_set() {
        let members = lock(&cluster).endpoints();
        if wait_leader(&rt, &members, Duration::from_secs(20)).is_none() {
            notes.push("no leader within 20 s after the faults healed".into());
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    stop_load.store(true, Ordering::Relaxed);
    let loaded = rt.block_on(load);
    if let Ok(Err(e)) = loaded {
        return Err(e.into());
    }
    let fin = if interrupt.is_set() {
        workload::FinalRead::default()
    } else {
        rt.block_on(workload::final_reads(cfg.workload, &ctx))?
    };
    let seconds = clock.now() as f64 / 1e9;
    if cfg.nemeses.contains(&NemesisKind::Membership) {
        let c = lock(&cluster);
        notes.push(format!(
            "membership: members at the end {:?}; removed during the run {:?}",
            c.ids(),
            c.retired_ids()
        ));
    }
    // Stop the nodes before checking: the logs are complete and the CPU is the checker's.
    lock(&cluster).shutdown();
    drop(cluster);

    let history = rec.history();
    let verdicts = workload::check(cfg.workload, &history, &fin);
    let (ok, fail, info) = Summary::counts(&history);
    let summary = Summary {
        workload: cfg.workload.name().into(),
        nemeses: cfg.nemeses.iter().map(|k| k.name().to_string()).collect(),
        nodes: cfg.nodes,
        clients: cfg.clients,
        seconds,
        network,
        ops: history.len(),
        ok,
        fail,
        info,
        valid: report::overall(&verdicts),
        seed: cfg.seed,
        notes,
    };
    report::write_report(&cfg.out, &summary, &history, &windows, &verdicts)?;
    Ok((summary, verdicts))
}

fn lock(c: &Mutex<Cluster>) -> std::sync::MutexGuard<'_, Cluster> {
    c.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A fresh report directory under `base`: `{base}/{workload}-{nemeses}-{unix secs}-{n}`.
/// Claimed with a non-recursive `create_dir`, so two runs started in the same second (e.g. in
/// two lanes) never share one.
pub fn report_dir(
    base: &Path,
    workload: WorkloadKind,
    nemeses: &[NemesisKind],
) -> std::io::Result<PathBuf> {
    let names: Vec<&str> = nemeses.iter().map(|k| k.name()).collect();
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let tag = if names.is_empty() {
        "none".to_string()
    } else {
        names.join("+")
    };
    std::fs::create_dir_all(base)?;
    for n in 0..10_000 {
        let dir = base.join(format!("{}-{tag}-{stamp}-{n}", workload.name()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free report directory name"))
}
