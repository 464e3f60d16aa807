//! The `membership` nemesis end to end against real `atoll-node` processes (in network
//! namespaces as root, else on loopback): a short `register` run in which a spare node
//! joins at the start and each later window drains an initial node for the window or
//! replaces the spare (add a node, drain the spare, remove it). The history must be
//! linearizable, the first window must have added node 4 (registered with the placement
//! driver, started with `--join`, Up), its log must be in the report, and nothing of the
//! run (namespaces, processes, data) may be left afterwards. Not part of the smoke run
//! (`scripts/jepsen.sh --smoke` must stay at about two minutes); about 30 s.
//!
//! Needs the `atoll-node` binary next to the test binary (`cargo test --workspace` builds
//! it; alone: `cargo build -p atoll-node` first) and prints SKIP without it.

// Real processes only: the harness is not compiled under --cfg madsim.
#![cfg(not(madsim))]

mod common;

use common::leftover_namespaces;

use std::time::Duration;

use atoll_jepsen::control::interrupt::Interrupt;
use atoll_jepsen::control::net::Lane;
use atoll_jepsen::nemesis::{NemesisKind, Schedule, Window};
use atoll_jepsen::runner::{self, RunConfig};
use atoll_jepsen::workload::WorkloadKind;

#[test]
fn a_register_run_under_membership_changes_is_linearizable_and_leaves_nothing_behind() {
    let Some(binary) = runner::find_node_binary() else {
        println!(
            "SKIP membership: no atoll-node binary next to the tests (cargo build -p atoll-node)"
        );
        return;
    };
    let base = tempfile::tempdir().expect("temp dir");
    let nemeses = [NemesisKind::Membership];
    let out =
        runner::report_dir(base.path(), WorkloadKind::Register, &nemeses).expect("report dir");
    let cfg = RunConfig {
        workload: WorkloadKind::Register,
        nemeses: nemeses.to_vec(),
        time: Duration::from_secs(20),
        nodes: 3,
        clients: 3,
        out: out.clone(),
        binary,
        namespaces: true,
        // Lane 0 (atj-*), the names leftover_namespaces() looks for.
        lane: Lane::default(),
        schedule: Schedule {
            quiet: Duration::from_secs(2),
            fault: Duration::from_secs(5),
            all_nodes: false,
        },
        seed: 7,
        direct_reads: 0.2,
        node_args: Vec::new(),
        request_timeout: Duration::from_millis(1000),
    };
    let (summary, verdicts) = runner::run(&cfg, &Interrupt::never()).expect("the run completes");
    println!("{}", summary.line(&out));
    for v in &verdicts {
        println!("{}", v.render());
    }
    let windows: Vec<Window> = serde_json::from_str(
        &std::fs::read_to_string(out.join("nemesis.json")).expect("nemesis.json"),
    )
    .expect("windows parse");
    for w in &windows {
        println!("window: {} {:?}", w.what, w.error);
    }
    assert!(summary.ops > 0, "the clients recorded ops");
    assert_eq!(
        summary.valid,
        Some(true),
        "membership changes keep the history linearizable"
    );
    let first = windows.first().expect("a first window");
    assert!(
        first.what.starts_with("add node 4 ") && first.error.is_none(),
        "the spare joined first: {first:?}"
    );
    assert!(
        windows.len() >= 2 && windows.iter().all(|w| w.nemesis == "membership"),
        "{windows:?}"
    );
    assert!(out.join("nodes/n4.log").is_file(), "the spare's log");
    assert!(!out.join("data").exists(), "data dirs are removed");
    assert!(leftover_namespaces().is_empty(), "namespaces removed");
}
