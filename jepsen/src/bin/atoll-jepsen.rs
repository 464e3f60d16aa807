//! `atoll-jepsen`: run Jepsen-style tests against real `atoll-node` processes.
//!
//! ```text
//! atoll-jepsen --workload register --nemesis kill,partition --time 300
//! atoll-jepsen --workload set,append --nemesis pause --time 60   # one run per workload
//! atoll-jepsen --cleanup                                         # remove leftovers of a killed run
//! ATOLL_JEPSEN_LANE=1 atoll-jepsen --time 600                    # beside a lane-0 run (or --lane 1)
//! ```
//!
//! Prints one summary line per run; each run writes a report directory (see
//! docs/testing.md, "Jepsen-style suite"). Exit status 1 if any verdict is false.

#![cfg_attr(madsim, allow(unused))]

#[cfg(madsim)]
fn main() {
    eprintln!("atoll-jepsen is not runnable in a --cfg madsim build");
}

#[cfg(not(madsim))]
fn main() -> anyhow::Result<()> {
    real::main()
}

#[cfg(not(madsim))]
mod real {
    use std::path::PathBuf;
    use std::time::Duration;

    use anyhow::{bail, Context};
    use atoll_jepsen::control::interrupt::Interrupt;
    use atoll_jepsen::control::net;
    use atoll_jepsen::nemesis::{self, Schedule};
    use atoll_jepsen::runner::{self, RunConfig};
    use atoll_jepsen::workload::WorkloadKind;
    use clap::Parser;

    #[derive(Debug, Parser)]
    #[command(
        name = "atoll-jepsen",
        about = "Jepsen-style tests of Atoll on real processes"
    )]
    struct Args {
        /// Workloads, comma-separated (register, set, append, bank). One
        /// run per workload.
        #[arg(long, default_value = "register")]
        workload: String,
        /// Nemeses combined in each run, comma-separated: kill, pause, partition, netem,
        /// power, transfer, split, membership, clock, or none.
        #[arg(long, default_value = "kill")]
        nemesis: String,
        /// Seconds of load per run.
        #[arg(long, default_value_t = 60)]
        time: u64,
        #[arg(long, default_value_t = 3)]
        nodes: u64,
        #[arg(long, default_value_t = 5)]
        clients: u64,
        /// Seconds between fault windows.
        #[arg(long, default_value_t = 4)]
        quiet: u64,
        /// Seconds each fault lasts.
        #[arg(long, default_value_t = 6)]
        fault: u64,
        /// Every kill, pause and power window hits all nodes at once.
        #[arg(long)]
        all_nodes: bool,
        /// Where report directories go.
        #[arg(long, default_value = "target/jepsen")]
        out: PathBuf,
        /// Run on loopback instead of network namespaces.
        #[arg(long)]
        loopback: bool,
        /// Network lane (0..=200): lane 0 uses bridge atj-br0, namespaces atj-n{i} and
        /// 10.77.0.0/24; lane k uses atj{k}-br0, atj{k}-n{i} and 10.77.k.0/24, so runs in
        /// different lanes can run at the same time. --cleanup only clears its own lane.
        #[arg(long, env = "ATOLL_JEPSEN_LANE", default_value_t = 0,
              value_parser = clap::value_parser!(u8).range(0..=net::MAX_LANE as i64))]
        lane: u8,
        /// The atoll-node binary (default: next to this one, or $ATOLL_NODE_BIN).
        #[arg(long)]
        node_bin: Option<PathBuf>,
        #[arg(long)]
        seed: Option<u64>,
        /// The share (0..=1) of register gets sent straight to a random node instead of
        /// through the client's leader routing (a correct follower refuses them).
        #[arg(long, default_value_t = 0.2)]
        direct_reads: f64,
        /// Run nodes deliberately broken (stale-reads, ack-before-sync, no-dedup): uses the
        /// atoll-node built with feature broken-modes (built into {target}/broken).
        #[arg(long)]
        broken_mode: Option<String>,
        /// Milliseconds a client waits for one attempt before retrying it (the op gives up
        /// after three times this).
        #[arg(long, default_value_t = 1000)]
        request_timeout_ms: u64,
        /// Only remove namespaces/links left by a run that was killed, then exit.
        #[arg(long)]
        cleanup: bool,
    }

    pub fn main() -> anyhow::Result<()> {
        let args = Args::parse();
        let lane = net::Lane::new(args.lane.into()).map_err(anyhow::Error::msg)?;
        if args.cleanup {
            let removed = net::remove_stale(lane);
            println!("removed {} leftovers: {removed:?}", removed.len());
            return Ok(());
        }
        let interrupt = Interrupt::install().context("installing signal handlers")?;
        let nemeses = nemesis::parse_list(&args.nemesis)?;
        let workloads: Vec<WorkloadKind> = args
            .workload
            .split(',')
            .map(|w| w.trim().parse())
            .collect::<Result<_, _>>()?;
        let (binary, node_args) = match &args.broken_mode {
            Some(mode) => {
                let b = match args.node_bin.clone() {
                    Some(b) => b,
                    None => runner::broken_node_binary()?,
                };
                (b, vec!["--broken-mode".to_string(), mode.clone()])
            }
            None => match args.node_bin.clone().or_else(runner::find_node_binary) {
                Some(b) => (b, Vec::new()),
                None => bail!(
                    "atoll-node not found: build it (cargo build -p atoll-node) or pass --node-bin"
                ),
            },
        };
        let seed = args.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
        let mut any_invalid = false;
        for (i, &workload) in workloads.iter().enumerate() {
            if interrupt.is_set() {
                break;
            }
            let out = runner::report_dir(&args.out, workload, &nemeses)
                .with_context(|| format!("creating a report dir under {}", args.out.display()))?;
            let cfg = RunConfig {
                workload,
                nemeses: nemeses.clone(),
                time: Duration::from_secs(args.time),
                nodes: args.nodes,
                clients: args.clients,
                out: out.clone(),
                binary: binary.clone(),
                namespaces: !args.loopback,
                lane,
                schedule: Schedule {
                    quiet: Duration::from_secs(args.quiet),
                    fault: Duration::from_secs(args.fault),
                    all_nodes: args.all_nodes,
                },
                seed: seed.wrapping_add(i as u64),
                direct_reads: args.direct_reads,
                node_args: node_args.clone(),
                request_timeout: Duration::from_millis(args.request_timeout_ms),
            };
            eprintln!(
                "atoll-jepsen: {} with nemesis {:?}, {} s, seed {}",
                workload.name(),
                args.nemesis,
                args.time,
                cfg.seed
            );
            match runner::run(&cfg, &interrupt) {
                Ok((summary, verdicts)) => {
                    for v in &verdicts {
                        eprintln!("  {}", v.render());
                    }
                    for n in &summary.notes {
                        eprintln!("  note: {n}");
                    }
                    println!("{}", summary.line(&out));
                    any_invalid |= summary.valid == Some(false);
                }
                Err(e) => {
                    println!(
                        "run: workload={} ERROR: {e} report={}",
                        workload.name(),
                        out.display()
                    );
                    any_invalid = true;
                }
            }
        }
        if any_invalid {
            std::process::exit(1);
        }
        Ok(())
    }
}
