//! The harness against deliberately broken nodes: for each broken mode of `atoll-node`
//! (feature `broken-modes`, flag `--broken-mode`, node/src/broken.rs), a short run with a
//! nemesis and workload that expose it must end with a false verdict whose report names the
//! anomaly. This is the proof that the suite can fail.
//!
//! Gated (`#[ignore]`): together they take about two minutes plus, the first time, a build
//! of the broken binary into `{target}/broken` (`runner::broken_node_binary`). Run them with
//! `scripts/jepsen.sh --broken-modes` (or `cargo test -p atoll-jepsen --test broken_modes --
//! --ignored --test-threads=1`: namespaced runs must not overlap). Each test makes at most
//! [`ATTEMPTS`] runs with different seeds and passes at the first that catches the mode; if
//! none does, it fails.

// Real processes only: the harness is not compiled under --cfg madsim.
#![cfg(not(madsim))]

use std::time::Duration;

use atoll_jepsen::checker::Verdict;
use atoll_jepsen::control::interrupt::Interrupt;
use atoll_jepsen::control::net::Lane;
use atoll_jepsen::nemesis::{NemesisKind, Schedule};
use atoll_jepsen::report::Summary;
use atoll_jepsen::runner::{self, RunConfig};
use atoll_jepsen::workload::WorkloadKind;

const ATTEMPTS: u64 = 2;

struct Case {
    mode: &'static str,
    workload: WorkloadKind,
    nemeses: Vec<NemesisKind>,
    time: Duration,
    schedule: Schedule,
    direct_reads: f64,
    request_timeout: Duration,
}

/// Runs `case` up to [`ATTEMPTS`] times; returns the first run with a false verdict (its
/// summary, verdicts and report text), or panics naming what every run concluded.
fn caught(case: &Case) -> (Summary, Vec<Verdict>, String) {
    let binary = runner::broken_node_binary().expect("the broken-modes atoll-node builds");
    let base = tempfile::tempdir().expect("temp dir");
    let mut seen = Vec::new();
    for attempt in 0..ATTEMPTS {
        let out =
            runner::report_dir(base.path(), case.workload, &case.nemeses).expect("report dir");
        let cfg = RunConfig {
            workload: case.workload,
            nemeses: case.nemeses.clone(),
            time: case.time,
            nodes: 3,
            clients: 5,
            out: out.clone(),
            binary: binary.clone(),
            namespaces: true,
            lane: Lane::default(),
            schedule: case.schedule,
            seed: 1000 + attempt,
            direct_reads: case.direct_reads,
            node_args: vec!["--broken-mode".into(), case.mode.into()],
            request_timeout: case.request_timeout,
        };
        let (summary, verdicts) =
            runner::run(&cfg, &Interrupt::never()).expect("the run completes");
        println!("{} attempt {attempt}: {}", case.mode, summary.line(&out));
        for v in &verdicts {
            println!("  {}", v.render());
        }
        let log = std::fs::read_to_string(out.join("nodes/n1.log")).unwrap_or_default();
        assert!(
            log.contains("BROKEN MODE"),
            "the node warns loudly that it runs broken"
        );
        if summary.valid == Some(false) {
            let report = std::fs::read_to_string(out.join("verdicts.json"))
                .expect("the report holds the verdicts");
            let page = std::fs::read_to_string(out.join("index.html")).expect("the report page");
            return (summary, verdicts, report + &page);
        }
        seen.push(format!("seed {}: valid={:?}", cfg.seed, summary.valid));
    }
    panic!(
        "broken mode {} was not caught in {ATTEMPTS} runs: {seen:?}",
        case.mode
    );
}

fn invalid<'a>(verdicts: &'a [Verdict], checker: &str) -> &'a Verdict {
    verdicts
        .iter()
        .find(|v| v.checker == checker && v.valid == Some(false))
        .unwrap_or_else(|| panic!("checker {checker} gives a false verdict: {verdicts:?}"))
}

#[test]
#[ignore = "about 40 s; scripts/jepsen.sh --broken-modes"]
fn stale_reads_on_followers_are_not_linearizable() {
    // A third of the gets go straight to a random node: a correct follower refuses them, a
    // broken one answers from its own state, behind the leader (and far behind when a
    // partition cuts it off).
    let (_, verdicts, report) = caught(&Case {
        mode: "stale-reads",
        workload: WorkloadKind::Register,
        nemeses: vec![NemesisKind::Partition],
        time: Duration::from_secs(20),
        schedule: Schedule {
            quiet: Duration::from_secs(2),
            fault: Duration::from_secs(5),
            all_nodes: false,
        },
        direct_reads: 0.35,
        request_timeout: Duration::from_millis(1000),
    });
    let v = invalid(&verdicts, "linearizable");
    assert!(v.summary.contains("not linearizable"), "{}", v.render());
    assert!(report.contains("not linearizable"), "the report names it");
}

#[test]
#[ignore = "about 40 s; scripts/jepsen.sh --broken-modes"]
fn acknowledging_before_sync_loses_acknowledged_writes_in_a_power_cut() {
    // Nothing asks for an fdatasync of the log: a power cut on every node drops writes that
    // a majority acknowledged.
    let (_, verdicts, report) = caught(&Case {
        mode: "ack-before-sync",
        workload: WorkloadKind::Set,
        nemeses: vec![NemesisKind::Power],
        time: Duration::from_secs(16),
        schedule: Schedule {
            quiet: Duration::from_secs(4),
            fault: Duration::from_secs(3),
            all_nodes: true,
        },
        direct_reads: 0.0,
        request_timeout: Duration::from_millis(1000),
    });
    let v = invalid(&verdicts, "set");
    assert!(
        v.details.iter().any(|d| d.starts_with("lost: ")),
        "{}",
        v.render()
    );
    assert!(
        report.contains("absent from the final read"),
        "the report names it"
    );
}

#[test]
#[ignore = "about 40 s; scripts/jepsen.sh --broken-modes"]
fn without_dedup_a_retried_write_applies_twice() {
    // netem on every node makes a commit take about as long as the clients' 250 ms attempt
    // timeout: an attempt times out after it was proposed, the client retries the same write
    // id, and both copies commit. A cas applied twice answers the retry with "mismatch, was
    // <its own new value>": a value nothing else wrote.
    let (_, verdicts, report) = caught(&Case {
        mode: "no-dedup",
        workload: WorkloadKind::Register,
        nemeses: vec![NemesisKind::Netem],
        time: Duration::from_secs(20),
        schedule: Schedule {
            quiet: Duration::from_secs(2),
            fault: Duration::from_secs(5),
            all_nodes: true,
        },
        direct_reads: 0.0,
        request_timeout: Duration::from_millis(250),
    });
    let v = invalid(&verdicts, "linearizable");
    assert!(v.summary.contains("not linearizable"), "{}", v.render());
    assert!(report.contains("not linearizable"), "the report names it");
}
