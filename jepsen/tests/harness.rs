//! The harness end to end against real `atoll-node` processes: a short `register` run with
//! the `kill` nemesis (in network namespaces as root, else on loopback), whose report must
//! hold the history, the verdicts and the node logs, and whose page, opened in headless
//! Chromium, must show both plots; and nothing of the run (namespaces, links, data) may be
//! left afterwards.
//!
//! Needs the `atoll-node` binary next to the test binary (`cargo test --workspace` builds
//! it; alone: `cargo build -p atoll-node` first) and prints SKIP without it. The browser
//! check prints SKIP if Chromium is not installed (`scripts/jepsen.sh --setup` installs it).

// Real processes only: the harness is not compiled under --cfg madsim.
#![cfg(not(madsim))]

mod common;

use common::leftover_namespaces;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use atoll_jepsen::control::interrupt::Interrupt;
use atoll_jepsen::control::net::Lane;
use atoll_jepsen::nemesis::{NemesisKind, Schedule};
use atoll_jepsen::runner::{self, RunConfig};
use atoll_jepsen::workload::WorkloadKind;
use atoll_jepsen::History;

fn chromium_dom(page: &Path) -> Option<String> {
    let out = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
        .arg(format!("file://{}", page.display()))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn a_short_register_run_under_kill_writes_a_report_with_plots_and_leaves_nothing_behind() {
    let Some(binary) = runner::find_node_binary() else {
        println!(
            "SKIP harness: no atoll-node binary next to the tests (cargo build -p atoll-node)"
        );
        return;
    };
    let base = tempfile::tempdir().expect("temp dir");
    let out = runner::report_dir(base.path(), WorkloadKind::Register, &[NemesisKind::Kill])
        .expect("report dir");
    let cfg = RunConfig {
        workload: WorkloadKind::Register,
        nemeses: vec![NemesisKind::Kill],
        time: Duration::from_secs(8),
        nodes: 3,
        clients: 3,
        out: out.clone(),
        binary,
        namespaces: true,
        // Lane 0 (atj-*), the names leftover_namespaces() looks for.
        lane: Lane::default(),
        schedule: Schedule {
            quiet: Duration::from_secs(2),
            fault: Duration::from_secs(3),
            all_nodes: false,
        },
        seed: 42,
        direct_reads: 0.2,
        node_args: Vec::new(),
        request_timeout: Duration::from_millis(1000),
    };
    let (summary, verdicts) = runner::run(&cfg, &Interrupt::never()).expect("the run completes");
    println!("{}", summary.line(&out));
    for v in &verdicts {
        println!("{}", v.render());
    }
    assert!(summary.ops > 0, "the clients recorded ops");
    assert_eq!(
        summary.valid,
        Some(true),
        "a healthy cluster is linearizable"
    );

    let history = History::load(out.join("history.jsonl")).expect("history reads back");
    assert_eq!(history.len(), summary.ops);
    for f in [
        "verdicts.json",
        "nemesis.json",
        "summary.json",
        "index.html",
        "nodes/n1.log",
    ] {
        assert!(out.join(f).is_file(), "report has {f}");
    }
    assert!(!out.join("data").exists(), "data dirs are removed");
    assert!(leftover_namespaces().is_empty(), "namespaces removed");

    match chromium_dom(&out.join("index.html")) {
        None => println!("SKIP browser check: chromium not installed or failed to start"),
        Some(dom) => {
            for id in ["id=\"latency\"", "id=\"throughput\""] {
                let at = dom.find(id).unwrap_or_else(|| panic!("{id} in the page"));
                assert!(dom[at..].contains("<svg"), "an svg plot under {id}");
            }
            assert!(dom.matches("<svg").count() >= 2, "two plots rendered");
            assert!(dom.contains("<circle"), "latency points drawn");
        }
    }
}
