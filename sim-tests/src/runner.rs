//! Runs a scenario for one seed in a fresh madsim runtime, checks every
//! invariant, and sweeps seeds with a replay command for each failure.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use atoll_jepsen::{OpKind, OpResult, Outcome, Recorder};
use atoll_node::sim_hooks::{self, Bug, NetFaults};

use crate::batch_groups;
use crate::checks::{
    applied, awaiting, batch_atomicity, convergence, durability, leaders, linearizable, liveness,
    pd, ranges, replica_ids, replication, transfers,
};
use crate::cluster::SimCluster;
use crate::nemesis::{self, Schedule};
use crate::transfers::{self as transferer, TransferOutcome};
use crate::workload::{self, Workload};
use crate::{moves, splits};

#[derive(Debug, Clone)]
pub struct Scenario {
    pub schedule: Schedule,
    pub nodes: u64,
    pub workload: Workload,
    pub bug: Bug,
    /// Node config `sessions.max_per_shard`. When set, a churn client opens
    /// that many new sessions every 1.5 s, evicting everyone else's, and the
    /// run fails unless some write saw `SessionExpired`.
    pub session_cap: Option<u64>,
    /// An operator transfers shard 1's leadership to random nodes during
    /// the run (with `Schedule::Calm`, every transfer must succeed).
    pub transfers: bool,
    /// An operator splits shards at random candidate keys during the run
    /// (with `Schedule::Calm`, at least one split must happen).
    pub splits: bool,
    /// An operator drains random nodes and sets them Up again during the
    /// run (with `Schedule::Calm`, at least one replica must move).
    pub moves: bool,
    /// The last this many of `nodes` join the running cluster 1-4 s in
    /// (`join` addresses, id from the PD) instead of bootstrapping it.
    pub joiners: u64,
    /// Nodes whose parent replica does not lead open split children
    /// [`LATE_CHILD_OPEN`] after applying the split, so the child's other
    /// members ask them to create it before (`shard::missing_replicas`).
    pub late_children: bool,
}

/// How late `Scenario::late_children` opens a split child: more than the
/// rounds after which a member asks for a missing replica.
pub const LATE_CHILD_OPEN: Duration = Duration::from_secs(4);

impl Scenario {
    pub fn new(schedule: Schedule) -> Self {
        Self {
            schedule,
            nodes: 3,
            workload: Workload::default(),
            bug: Bug::None,
            session_cap: None,
            transfers: false,
            splits: false,
            moves: false,
            joiners: 0,
            late_children: false,
        }
    }
}

/// Everything a run produced, in order; equal for equal seeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub faults: Vec<String>,
    pub history_jsonl: String,
    pub ops: usize,
    pub acked_unique_writes: usize,
    pub leader_terms: usize,
    pub session_expired: u64,
    /// Leader transfers that happened, and that were refused or failed.
    pub transfers_done: usize,
    pub transfers_failed: usize,
    /// Splits that happened, and split requests that did not.
    pub splits_done: usize,
    pub splits_failed: usize,
    /// Replicas removed from a node (tombstones left) during the run.
    pub replicas_moved: usize,
}

const FINAL_READER: u64 = 1_000;

/// The scenario inside the simulation.
pub async fn run(scenario: Scenario) -> Result<Report, String> {
    if scenario.late_children {
        sim_hooks::set_child_open_delay(LATE_CHILD_OPEN);
    }
    let cluster = SimCluster::start_with(scenario.nodes, scenario.session_cap, scenario.joiners);
    let w = scenario.workload.clone();
    let rec = Arc::new(Recorder::new());
    let stats = Arc::new(workload::Stats::default());
    let client = cluster.client(Duration::from_secs(5)).await;

    let mut tasks = Vec::new();
    for me in 1..=w.clients + w.readers {
        // Separate clients, separate route caches: like separate processes.
        let rpc_timeout = if me <= w.impatient {
            workload::IMPATIENT_RPC_TIMEOUT
        } else {
            Duration::from_secs(1)
        };
        let own = cluster
            .client_with(Duration::from_secs(5), rpc_timeout)
            .await;
        let read_only = me > w.clients;
        let fut =
            workload::register_client(own, me, read_only, w.clone(), rec.clone(), stats.clone());
        tasks.push(cluster.client_node().spawn(fut));
    }
    let writer = cluster.client_node().spawn(workload::unique_writer(
        client.clone(),
        w.duration,
        stats.clone(),
    ));
    let churn = scenario.session_cap.map(|cap| {
        let every = Duration::from_millis(1500);
        let fut = workload::session_churn(cluster.endpoints(), cap, every, w.duration);
        cluster.client_node().spawn(fut)
    });
    for me in 1..=2 {
        let own = cluster.client(Duration::from_secs(5)).await;
        cluster
            .client_node()
            .spawn(batch_groups::writer(own, me, w.duration));
    }
    let scanner = {
        let own = cluster.client(Duration::from_secs(5)).await;
        cluster
            .client_node()
            .spawn(batch_groups::scanner(own, w.duration))
    };
    let transferer = scenario.transfers.then(|| {
        let fut = transferer::run(cluster.endpoints(), cluster.ids(), w.duration);
        cluster.client_node().spawn(fut)
    });
    let splitter = scenario.splits.then(|| {
        let fut = splits::run(cluster.endpoints(), w.duration);
        cluster.client_node().spawn(fut)
    });
    let mover = scenario.moves.then(|| {
        let initial =
            usize::try_from(scenario.nodes.saturating_sub(scenario.joiners)).unwrap_or(usize::MAX);
        let fut = moves::run(cluster.endpoints(), cluster.ids(), initial, w.duration);
        cluster.client_node().spawn(fut)
    });
    let faults = nemesis::run(&cluster, scenario.schedule, w.duration).await;
    let move_attempts = match mover {
        Some(m) => m.await.map_err(|e| format!("move task died: {e}"))?,
        None => Vec::new(),
    };
    let split_attempts = match splitter {
        Some(s) => s.await.map_err(|e| format!("split task died: {e}"))?,
        None => Vec::new(),
    };
    let attempts = match transferer {
        Some(t) => t.await.map_err(|e| format!("transfer task died: {e}"))?,
        None => Vec::new(),
    };
    if let Some(churn) = churn {
        churn.await.map_err(|e| format!("churn task died: {e}"))?;
    }
    for t in tasks {
        t.await.map_err(|e| format!("client task died: {e}"))?;
    }
    let acked = writer.await.map_err(|e| format!("writer task died: {e}"))?;
    let pages = scanner
        .await
        .map_err(|e| format!("scanner task died: {e}"))?;
    let errors = cluster.observer.errors();
    if !errors.is_empty() {
        return Err(format!("node errors: {errors:?}"));
    }
    liveness::check_writes_resume(&cluster).await?;
    ranges::check_every_shard_writable(&cluster, liveness::RESUME_WITHIN).await?;
    replication::wait_fully_replicated(&cluster, Duration::from_secs(60)).await?;

    // Recovery: every fault is healed; the cluster must serve again.
    let reader = cluster.client(Duration::from_secs(30)).await;
    for k in 0..w.keys {
        let key = workload::key(k);
        let h = rec.invoke(FINAL_READER, OpKind::get(key.clone()), rec.tick());
        let (r, key2) = {
            let reader = reader.clone();
            cluster
                .on_client(async move { (reader.get(&key).await, key) })
                .await
        };
        let v = r.map_err(|e| {
            format!(
                "cluster did not recover: final read of {:?}: {e}",
                String::from_utf8_lossy(&key2)
            )
        })?;
        let _ = rec.complete(h, Outcome::Ok(OpResult::Get(v)), rec.tick());
    }
    let keys: Vec<Vec<u8>> = acked.iter().map(|(k, _)| k.clone()).collect();
    let read_back = {
        let reader = reader.clone();
        cluster
            .on_client(async move {
                let mut out = Vec::new();
                for k in keys {
                    out.push(reader.get(&k).await.map_err(|e| e.to_string())?);
                }
                Ok::<_, String>(out)
            })
            .await?
    };

    let history = rec.history();
    if let Ok(dir) = std::env::var("SIM_HISTORY_DIR") {
        let path = std::path::Path::new(&dir).join(format!(
            "seed-{}.jsonl",
            madsim::runtime::Handle::current().seed()
        ));
        let _ = history.save(&path);
    }
    if scenario.session_cap.is_some() && stats.session_expired() == 0 {
        return Err("a small session cap was set but no write saw SessionExpired".into());
    }
    leaders::check_one_leader_per_term(&cluster.observer)?;
    leaders::check_no_leadership_across_restarts(&cluster.observer)?;
    replica_ids::check_replica_ids_never_reused(&cluster.observer)?;
    applied::check_applied_entries_agree()?;
    awaiting::check_no_replica_awaits_with_state()?;
    durability::check_acked_writes(&acked, &read_back)?;
    linearizable::check_history(&history)?;
    batch_atomicity::check_pages(&pages)?;
    convergence::wait_converged(&cluster, Duration::from_secs(30)).await?;
    ranges::check_tiling(&cluster)?;
    pd::check_pd_states_agree()?;
    pd::wait_pd_healthy(&cluster, Duration::from_secs(30)).await?;
    let splits_done = split_attempts.iter().filter(|a| a.outcome.is_ok()).count();
    if scenario.splits && scenario.schedule == Schedule::Calm && splits_done == 0 {
        return Err(format!(
            "no split happened in a calm run: {:?}",
            split_attempts
        ));
    }
    // Without faults and without moves, every replica of a split child is
    // opened by its own split; none has to be created empty and wait for a
    // snapshot (`shard::missing_replicas`, the recovery of a replica that
    // skipped a split).
    let created_empty = sim_hooks::created_empty();
    if scenario.schedule == Schedule::Calm
        && !scenario.moves
        && scenario.joiners == 0
        && !created_empty.is_empty()
    {
        return Err(format!(
            "replicas of shards {created_empty:?} were created empty in a calm run without \
             moves: a split child did not start on every replica of its parent"
        ));
    }
    // Nor is a split child opened only because a member asked for it
    // (unless the scenario makes nodes open their children late).
    let opened_on_request = sim_hooks::opened_on_request();
    if scenario.schedule == Schedule::Calm
        && !scenario.moves
        && scenario.joiners == 0
        && !scenario.late_children
        && !opened_on_request.is_empty()
    {
        return Err(format!(
            "split children {opened_on_request:?} were opened only when a member asked for \
             them, in a calm run without moves: a node did not open the children of its splits"
        ));
    }
    let replicas_moved = cluster.tombstones();
    if scenario.moves && scenario.schedule == Schedule::Calm && replicas_moved == 0 {
        return Err("no replica moved in a calm run with drains".into());
    }
    // Drains of the PD's nodes move the PD's own group too: a calm run in
    // which a PD node stayed drained long enough must show it.
    let pd_moved = cluster.tombstones_of(atoll_node::pd::PD_SHARD);
    let pd_node_drained = moves::drained_for(&move_attempts, &[1, 2, 3], Duration::from_secs(5));
    if scenario.moves && scenario.schedule == Schedule::Calm && pd_node_drained && pd_moved == 0 {
        return Err("the placement driver's group never moved in a calm run with drains".into());
    }
    if scenario.transfers {
        let calm = scenario.schedule == Schedule::Calm;
        transfers::check_transfers(&attempts, &cluster.observer, calm)?;
    }
    let transfers_done = attempts
        .iter()
        .filter(|a| matches!(a.outcome, TransferOutcome::Moved { .. }))
        .count();

    let mut jsonl = Vec::new();
    history.write_jsonl(&mut jsonl).map_err(|e| e.to_string())?;
    Ok(Report {
        faults,
        history_jsonl: String::from_utf8_lossy(&jsonl).into_owned(),
        ops: history.len(),
        acked_unique_writes: acked.len(),
        leader_terms: cluster.observer.terms_with_leader(),
        session_expired: stats.session_expired(),
        transfers_done,
        transfers_failed: attempts.len() - transfers_done,
        splits_done,
        splits_failed: split_attempts.len() - splits_done,
        replicas_moved,
    })
}

/// Logs to stderr when `SIM_LOG` is set (e.g. `SIM_LOG=info,openraft=debug`).
fn init_logging() {
    if let Ok(filter) = std::env::var("SIM_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .try_init();
    }
}

/// Runs one seed in its own runtime; a panic anywhere is a failure.
pub fn run_seed(seed: u64, scenario: &Scenario) -> Result<Report, String> {
    let s = scenario.clone();
    run_seed_with(seed, scenario.bug, move || run(s))
}

/// Runs the future `make` builds in a fresh runtime seeded with `seed`,
/// with `bug` set; a panic anywhere is a failure.
///
/// Each run gets an OS thread of its own: the simulation runs on the
/// calling thread, and thread-locals outlive a runtime (std's hash map
/// keys, drawn once per thread from the simulated RNG; the broken-mode
/// switch). Shared with the previous run, they made a seed replay
/// differently after other seeds had run in the same process.
pub fn run_seed_with<T, Fut>(
    seed: u64,
    bug: Bug,
    make: impl FnOnce() -> Fut + Send,
) -> Result<T, String>
where
    Fut: std::future::Future<Output = Result<T, String>> + 'static,
    T: Send + 'static,
{
    init_logging();
    let run = move || {
        let mut rt =
            madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
        rt.set_time_limit(Duration::from_secs(900));
        sim_hooks::set_bug(bug);
        sim_hooks::reset_applied();
        sim_hooks::set_net_faults(NetFaults::default());
        let result = std::panic::catch_unwind(AssertUnwindSafe(move || rt.block_on(make())));
        sim_hooks::set_bug(Bug::None);
        sim_hooks::set_net_faults(NetFaults::default());
        result
    };
    let result = std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name(format!("sim-seed-{seed}"))
            .stack_size(SIM_THREAD_STACK)
            .spawn_scoped(scope, run)
            .map_err(|e| format!("cannot start the simulation thread: {e}"))
            .and_then(|t| {
                t.join()
                    .map_err(|_| "the simulation thread panicked".to_string())
            })
    })?;
    match result {
        Ok(r) => r,
        Err(p) => Err(match p.downcast_ref::<String>() {
            Some(s) => format!("panic: {s}"),
            None => match p.downcast_ref::<&str>() {
                Some(s) => format!("panic: {s}"),
                None => "panic".to_string(),
            },
        }),
    }
}

/// The simulation thread's stack: deep async state machines in debug
/// builds need more than a spawned thread's 2 MiB default.
const SIM_THREAD_STACK: usize = 64 << 20;

/// Seeds to run: `SIM_SEED=n` for one, else `SIM_SEED_START` (default 1)
/// and `SIM_SEEDS` (default `default_count`).
pub fn seeds(default_count: u64) -> Vec<u64> {
    if let Some(s) = env_u64("SIM_SEED") {
        return vec![s];
    }
    let start = env_u64("SIM_SEED_START").unwrap_or(1);
    let count = env_u64("SIM_SEEDS").unwrap_or(default_count);
    (start..start + count).collect()
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Seeds to run for a list of fixed seeds (ones that once failed):
/// `SIM_SEED=n` for one (how a sweep's child process replays it), else
/// `list`.
pub fn fixed_seeds(list: &[u64]) -> Vec<u64> {
    match env_u64("SIM_SEED") {
        Some(s) => vec![s],
        None => list.to_vec(),
    }
}

/// Runs `scenario` for every seed; prints each failure with the command
/// that replays it, and a one-line summary. Returns the failing seeds.
///
/// With more than one seed, each runs in a child process of its own (this
/// test binary again, test `test_name` with `SIM_SEED` set), so a failing
/// seed replays alone exactly as it ran in the sweep: a simulation leaves
/// process-wide state behind that made later seeds of one process run
/// differently (docs/testing.md, "Replaying a seed"). `SIM_IN_PROCESS=1`
/// runs them all in this process instead.
pub fn sweep(
    test_file: &str,
    test_name: &str,
    scenario: &Scenario,
    seeds: &[u64],
) -> Vec<(u64, String)> {
    let in_process = seeds.len() <= 1 || std::env::var("SIM_IN_PROCESS").is_ok();
    let mut failures = Vec::new();
    for &seed in seeds {
        let outcome = if in_process {
            run_seed(seed, scenario).map(|r| {
                format!("{} ops, {} acked unique writes, {} leader terms, {} expired sessions seen, {} transfers done, {} failed, {} splits done, {} failed, {} replicas moved, faults: {:?}", r.ops, r.acked_unique_writes, r.leader_terms, r.session_expired, r.transfers_done, r.transfers_failed, r.splits_done, r.splits_failed, r.replicas_moved, r.faults)
            })
        } else {
            run_seed_in_child(test_name, seed)
        };
        match outcome {
            Ok(summary) => {
                if std::env::var("SIM_VERBOSE").is_ok() {
                    println!("seed {seed}: ok, {summary}");
                }
            }
            Err(msg) => {
                println!(
                    "FAILED {test_name} seed {seed} (schedule {}): {msg}\n  replay: SIM_SEED={seed} RUSTFLAGS=\"--cfg madsim\" CARGO_TARGET_DIR=target/sim cargo test -p atoll-sim-tests --test {test_file} {test_name} -- --nocapture",
                    scenario.schedule.name()
                );
                failures.push((seed, msg));
            }
        }
        if let Ok(path) = std::env::var("SIM_SUMMARY") {
            let line = serde_json::json!({
                "test": test_name, "schedule": scenario.schedule.name(), "seed": seed,
                "ok": !failures.iter().any(|(s, _)| *s == seed),
            });
            use std::io::Write;
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                let _ = f.write_all(format!("{line}\n").as_bytes()); // one write: parallel jobs share the file
            }
        }
    }
    println!(
        "sim {test_name}: {} seeds, {} failed",
        seeds.len(),
        failures.len()
    );
    failures
}

/// Runs test `test_name` of this test binary in a child process with
/// `envs` set; its output, or why it could not run.
pub fn run_test_in_child(
    test_name: &str,
    envs: &[(&str, String)],
) -> Result<std::process::Output, String> {
    // /proc/self/exe: this very binary, even if a rebuild replaced the file.
    let exe = match std::path::Path::new("/proc/self/exe") {
        p if p.exists() => p.to_path_buf(),
        _ => std::env::current_exe().map_err(|e| format!("cannot find this test binary: {e}"))?,
    };
    std::process::Command::new(exe)
        .args([test_name, "--exact", "--nocapture", "--test-threads", "1"])
        .env_remove("SIM_SUMMARY")
        .env_remove("SIM_SEEDS")
        .env_remove("SIM_SEED_START")
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .map_err(|e| format!("cannot run {test_name} in a child process: {e}"))
}

/// One seed of test `test_name`, in a child process: `Ok` with the
/// child's verbose line, or its failure message.
fn run_seed_in_child(test_name: &str, seed: u64) -> Result<String, String> {
    let out = run_test_in_child(
        test_name,
        &[("SIM_SEED", seed.to_string()), ("SIM_VERBOSE", "1".into())],
    )?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.success() {
        let ok = stdout
            .lines()
            .find_map(|l| l.split_once(&format!("seed {seed}: ok, ")).map(|(_, r)| r))
            .unwrap_or("ok");
        return Ok(ok.to_string());
    }
    // The child's own FAILED line carries the message; a child that died
    // another way (a panic outside the run, a signal) shows its output.
    let prefix = format!("FAILED {test_name} seed {seed} (schedule ");
    let failed = stdout.split_once(prefix.as_str()).and_then(|(_, rest)| {
        let (_, msg) = rest.split_once("): ")?;
        let msg = msg.split("\n  replay: ").next().unwrap_or(msg);
        Some(msg.to_string())
    });
    Err(failed.unwrap_or_else(|| {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail = |s: &str| {
            s.lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        };
        format!(
            "the child process failed ({}) without a verdict:\n{}\n{}",
            out.status,
            tail(&stdout),
            tail(&stderr)
        )
    }))
}
