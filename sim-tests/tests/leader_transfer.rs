//! Leader transfers (issue 9, item 6) asked for every 0.2-1.2 s while the
//! workload runs, calm and amid the fault schedules, with every check of
//! `faults.rs` plus: a transfer reported done put its target in the lead
//! in the term it named, and in a calm run every transfer happens.
//! `SIM_SEEDS` bounds the seeds per schedule.

#![cfg(madsim)]

use atoll_sim_tests::nemesis::Schedule;
use atoll_sim_tests::runner::{seeds, sweep, Scenario};

const DEFAULT_SEEDS: u64 = 4;

fn transfers_under(name: &str, s: Schedule) {
    let scenario = Scenario {
        transfers: true,
        ..Scenario::new(s)
    };
    let failures = sweep("leader_transfer", name, &scenario, &seeds(DEFAULT_SEEDS));
    assert!(
        failures.is_empty(),
        "{} seed(s) failed with transfers under {}: {:?}",
        failures.len(),
        s.name(),
        failures.iter().map(|f| f.0).collect::<Vec<_>>()
    );
}

#[test]
fn transfers_in_a_calm_cluster_all_happen() {
    transfers_under("transfers_in_a_calm_cluster_all_happen", Schedule::Calm);
}

#[test]
fn transfers_amid_partitions() {
    transfers_under("transfers_amid_partitions", Schedule::Partitions);
}

#[test]
fn transfers_amid_crashes() {
    transfers_under("transfers_amid_crashes", Schedule::Crashes);
}

#[test]
fn transfers_amid_pauses() {
    transfers_under("transfers_amid_pauses", Schedule::Pauses);
}

#[test]
fn transfers_amid_net_chaos() {
    transfers_under("transfers_amid_net_chaos", Schedule::NetChaos);
}

#[test]
fn transfers_amid_mixed_faults() {
    transfers_under("transfers_amid_mixed_faults", Schedule::Mixed);
}
