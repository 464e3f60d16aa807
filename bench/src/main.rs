//! `atoll-bench`: one closed-loop driver for Atoll and etcd, so both run the
//! same workloads from the same code (ARCHITECTURE.md, testing layer 5).
//! `scripts/bench.sh` drives it; `docs/benchmarks.md` explains the output.
//!
//! # Map of the crate
//!
//! - `kv`: the [`kv::Kv`] trait, the seam between driver and system;
//!   `atoll` and `etcd` implement it (etcd's client is generated from the
//!   API subset in `proto/etcd.proto`: docs/decisions/0012-benchmark-driver.md).
//! - `workload`: the cases (clients, op mix, uniform or zipfian keys). Pure.
//! - `driver`: the closed loop, latency histograms, the failover case,
//!   preloading.
//! - `procstat`: server CPU and peak RSS from `/proc` over a case's window.
//! - `disk`: the disk's own `fdatasync` latency for a 4 KiB append.
//! - `floor`: the same for a write replicated to three syncing replicas.
//! - `paired`: write-1 slices between two append probes (issue 8's target
//!   measured against the disk of the same second).
//! - `report`: results directory → markdown tables → `docs/benchmarks.md`.
//!
//! # Example
//!
//! ```text
//! atoll-bench preload --system atoll --endpoints 127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103
//! atoll-bench run --system atoll --endpoints ... --cases write-64,ycsb-a --out results/
//! atoll-bench report --results results/ --doc docs/benchmarks.md
//! ```

mod atoll;
mod disk;
mod driver;
mod etcd;
mod floor;
mod kv;
mod paired;
mod procstat;
mod report;
mod workload;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::atoll::AtollKv;
use crate::driver::Spec;
use crate::etcd::EtcdKv;
use crate::kv::Target;
use crate::workload::Case;

#[derive(Debug, Parser)]
#[command(
    name = "atoll-bench",
    about = "Closed-loop benchmark driver for Atoll and etcd"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Write keys 0..KEYS once each.
    Preload {
        #[command(flatten)]
        cluster: ClusterArgs,
        #[arg(long, default_value_t = 128)]
        clients: usize,
    },
    /// Run cases; write one JSON file per case into --out.
    Run {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Comma-separated case names, or "all": write-1, write-64,
        /// write-256, read-lin-64, read-stale-64, ycsb-a, ycsb-b (and
        /// write-N, read-lin-N, read-stale-N for any N clients).
        #[arg(long, default_value = "all")]
        cases: String,
        #[command(flatten)]
        timing: TimingArgs,
    },
    /// 64 writers; kill -9 the leader after --kill-after; report the
    /// longest gap between acknowledged writes.
    Failover {
        #[command(flatten)]
        cluster: ClusterArgs,
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Seconds from the start of the writes to the kill.
        #[arg(long, default_value_t = 5.0)]
        kill_after: f64,
        #[command(flatten)]
        timing: TimingArgs,
    },
    /// Measure the disk: fdatasync after a 4 KiB write (append, and into a
    /// preallocated file), and the replicated floor (the same write synced by
    /// a leader and the first of two followers over loopback), in --dir.
    Fsync {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 2000)]
        count: u64,
        #[arg(long)]
        out: PathBuf,
        /// What the measurement is called in the report (file fsync-LABEL.json).
        #[arg(long, default_value = "disk")]
        label: String,
    },
    /// One paired round: an append-`fdatasync` probe in --dir, write-1 for
    /// --slice seconds, the probe again; writes paired-SYSTEM-ROUND.json.
    Paired {
        #[command(flatten)]
        cluster: ClusterArgs,
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 1)]
        round: u32,
        /// Syncs per probe.
        #[arg(long, default_value_t = 300)]
        probe_count: u64,
        #[arg(long, default_value_t = 0.5)]
        warmup: f64,
        /// Measured seconds of write-1.
        #[arg(long, default_value_t = 3.0)]
        slice: f64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the names of --cases ("all" or a list), one per line.
    Cases {
        #[arg(long, default_value = "all")]
        cases: String,
    },
    /// Print the 0-based index in --endpoints of the current leader.
    Leader {
        #[arg(long, value_enum)]
        system: System,
        #[arg(long, value_delimiter = ',', required = true)]
        endpoints: Vec<String>,
    },
    /// Write the tables of --results into --doc between its markers.
    Report {
        #[arg(long)]
        results: PathBuf,
        #[arg(long)]
        doc: Option<PathBuf>,
        /// A line for the header list (date, machine, ...); repeatable.
        #[arg(long)]
        meta: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum System {
    Atoll,
    Etcd,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Atoll => "atoll",
            System::Etcd => "etcd",
        }
    }

    async fn leader(self, endpoints: &[String]) -> Option<usize> {
        match self {
            System::Atoll => atoll::leader(endpoints).await,
            System::Etcd => etcd::leader(endpoints).await,
        }
    }
}

#[derive(Debug, Args)]
struct ClusterArgs {
    #[arg(long, value_enum)]
    system: System,
    /// host:port of every member (client port), comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    endpoints: Vec<String>,
    /// Server PIDs, in the order of --endpoints: sampled for CPU and RSS,
    /// and the failover case kills the leader's.
    #[arg(long, value_delimiter = ',')]
    pids: Vec<u32>,
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Clients sharing one connection (one Atoll `Client` or one etcd
    /// HTTP/2 channel).
    #[arg(long, default_value_t = 8)]
    clients_per_conn: usize,
}

#[derive(Debug, Args)]
struct TimingArgs {
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Directory for the JSON results.
    #[arg(long)]
    out: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Preload { cluster, clients } => {
            let t = std::time::Instant::now();
            let errors = match cluster.system {
                System::Atoll => {
                    let conns = atoll_conns(&cluster, clients).await?;
                    driver::preload(&conns, cluster.keys, cluster.value_size, clients).await
                }
                System::Etcd => {
                    let conns = etcd_conns(&cluster, clients, Target::Leader).await?;
                    driver::preload(&conns, cluster.keys, cluster.value_size, clients).await
                }
            };
            println!(
                "{}: preloaded {} keys of {} B in {:.1} s ({errors} retried errors)",
                cluster.system.name(),
                cluster.keys,
                cluster.value_size,
                t.elapsed().as_secs_f64()
            );
        }
        Cmd::Run {
            cluster,
            cases,
            timing,
        } => {
            for case in parse_cases(&cases)? {
                let spec = spec(&cluster, &timing, case);
                let result = match cluster.system {
                    System::Atoll => {
                        let conns = atoll_conns(&cluster, case.clients()).await?;
                        driver::run_case("atoll", &conns, &spec, &cluster.pids).await
                    }
                    System::Etcd => {
                        let target = case.etcd_target();
                        let conns = etcd_conns(&cluster, case.clients(), target).await?;
                        driver::run_case("etcd", &conns, &spec, &cluster.pids).await
                    }
                };
                println!(
                    "{:<6} {:<14} {:>8.0} ops/s  p50 {:>7.2} ms  p99 {:>7.2} ms  p99.9 {:>7.2} ms  \
                     errors {}  cpu {:.0}%  rss {:.0} MiB  steal {}%",
                    result.system,
                    result.case,
                    result.ops_per_s,
                    result.p50_us as f64 / 1e3,
                    result.p99_us as f64 / 1e3,
                    result.p999_us as f64 / 1e3,
                    result.errors,
                    result.cpu_pct,
                    result.peak_rss_mib,
                    result.steal_pct.map_or("?".to_string(), |p| format!("{p:.0}"))
                );
                if let Some(worst) = result.stalls.first() {
                    println!(
                        "{:<6} {:<14} worst stall: {} ops up to {:.0} ms from {} UTC ({} stalls in the JSON)",
                        "",
                        "",
                        worst.ops,
                        worst.max_ms,
                        worst.at,
                        result.stalls.len()
                    );
                }
                let file = format!("{}-{}.json", result.system, result.case);
                write_json(&timing.out, &file, &result)?;
            }
        }
        Cmd::Failover {
            cluster,
            clients,
            kill_after,
            timing,
        } => {
            let mut spec = spec(&cluster, &timing, Case::Write(clients));
            spec.warmup = Duration::ZERO;
            let kill_after = Duration::from_secs_f64(kill_after);
            let kill = kill_leader(cluster.system, &cluster.endpoints, &cluster.pids);
            let name = cluster.system.name();
            let result = match cluster.system {
                System::Atoll => {
                    let conns = atoll_conns(&cluster, clients).await?;
                    driver::failover(name, &conns, &spec, kill_after, kill).await?
                }
                System::Etcd => {
                    let conns = etcd_conns(&cluster, clients, Target::All).await?;
                    driver::failover(name, &conns, &spec, kill_after, kill).await?
                }
            };
            println!(
                "{name} failover: killed {} at {:.1} s; longest write gap {:.0} ms \
                 (began {:.0} ms after the kill); {} errors",
                result.killed_endpoint,
                result.kill_at_s,
                result.longest_gap_ms,
                result.gap_start_after_kill_ms,
                result.errors
            );
            write_json(&timing.out, &format!("{name}-failover.json"), &result)?;
        }
        Cmd::Fsync {
            dir,
            count,
            out,
            label,
        } => {
            let r = disk::measure(&dir, count, Duration::from_secs(10))?;
            let replicated = r.replicated.iter().map(|l| ("replicated, 3 replicas", l));
            for (how, l) in [("append", &r.append), ("preallocated", &r.preallocated)]
                .into_iter()
                .chain(replicated)
            {
                println!(
                    "fdatasync after a 4 KiB write ({how}) in {}: p50 {} µs, p99 {} µs, \
                     mean {:.0} µs ({} writes)",
                    r.dir, l.p50_us, l.p99_us, l.mean_us, l.writes
                );
            }
            write_json(&out, &format!("fsync-{label}.json"), &r)?;
        }
        Cmd::Paired {
            cluster,
            dir,
            round,
            probe_count,
            warmup,
            slice,
            out,
        } => {
            let spec = paired::RoundSpec {
                round,
                dir: &dir,
                probe_count,
                keys: cluster.keys,
                value_size: cluster.value_size,
                warmup: Duration::from_secs_f64(warmup),
                slice: Duration::from_secs_f64(slice),
            };
            let name = cluster.system.name();
            let r = match cluster.system {
                System::Atoll => {
                    let conns = atoll_conns(&cluster, 1).await?;
                    paired::round(name, &conns, &spec, &cluster.pids).await?
                }
                System::Etcd => {
                    let target = Case::Write(1).etcd_target();
                    let conns = etcd_conns(&cluster, 1, target).await?;
                    paired::round(name, &conns, &spec, &cluster.pids).await?
                }
            };
            println!(
                "{name:<6} paired round {round}: append fdatasync p50 {} / {} µs, write-1 p50 {} µs \
                 ({:.0} ops/s, steal {}%): {}",
                r.probe_before.p50_us,
                r.probe_after.p50_us,
                r.write_1.p50_us,
                r.write_1.ops_per_s,
                r.write_1.steal_pct.map_or("?".to_string(), |p| format!("{p:.0}")),
                r.multiple().map_or("–".to_string(), |m| format!("{m:.2}×"))
            );
            write_json(&out, &format!("paired-{name}-{round}.json"), &r)?;
        }
        Cmd::Cases { cases } => {
            for case in parse_cases(&cases)? {
                println!("{}", case.name());
            }
        }
        Cmd::Leader { system, endpoints } => match system.leader(&endpoints).await {
            Some(i) => println!("{i}"),
            None => anyhow::bail!("no leader among {endpoints:?}"),
        },
        Cmd::Report { results, doc, meta } => {
            let section = report::markdown(&report::load(&results)?, &meta);
            print!("{section}");
            if let Some(doc) = doc {
                let old = std::fs::read_to_string(&doc).unwrap_or_default();
                std::fs::write(&doc, report::splice(&old, &section))
                    .with_context(|| format!("writing {}", doc.display()))?;
            }
        }
    }
    Ok(())
}

fn parse_cases(list: &str) -> anyhow::Result<Vec<Case>> {
    if list == "all" {
        return Ok(workload::ALL.to_vec());
    }
    list.split(',')
        .map(|name| Case::parse(name.trim()).with_context(|| format!("unknown case {name:?}")))
        .collect()
}

fn spec(cluster: &ClusterArgs, timing: &TimingArgs, case: Case) -> Spec {
    Spec {
        case,
        keys: cluster.keys,
        value_size: cluster.value_size,
        warmup: Duration::from_secs_f64(timing.warmup),
        duration: Duration::from_secs_f64(timing.duration),
    }
}

fn n_conns(cluster: &ClusterArgs, clients: usize) -> usize {
    clients.div_ceil(cluster.clients_per_conn.max(1)).max(1)
}

async fn atoll_conns(cluster: &ClusterArgs, clients: usize) -> anyhow::Result<Vec<AtollKv>> {
    let mut conns = Vec::new();
    for _ in 0..n_conns(cluster, clients) {
        conns.push(AtollKv::connect(&cluster.endpoints).await?);
    }
    Ok(conns)
}

async fn etcd_conns(
    cluster: &ClusterArgs,
    clients: usize,
    target: Target,
) -> anyhow::Result<Vec<EtcdKv>> {
    let mut conns = Vec::new();
    for _ in 0..n_conns(cluster, clients) {
        conns.push(EtcdKv::connect(&cluster.endpoints, target).await?);
    }
    Ok(conns)
}

/// Finds the leader, `kill -9`s its PID (from `pids`, same order as
/// `endpoints`), and names it.
async fn kill_leader(system: System, endpoints: &[String], pids: &[u32]) -> anyhow::Result<String> {
    let i = system
        .leader(endpoints)
        .await
        .context("no leader to kill")?;
    let pid = pids
        .get(i)
        .with_context(|| format!("no --pids entry for endpoint {}", endpoints[i]))?;
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()?;
    anyhow::ensure!(status.success(), "kill -9 {pid} failed");
    Ok(format!("{} (pid {pid})", endpoints[i]))
}

fn write_json(dir: &Path, file: &str, value: &impl serde::Serialize) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(file);
    std::fs::write(&path, serde_json::to_string_pretty(value)?)
        .with_context(|| format!("writing {}", path.display()))
}
