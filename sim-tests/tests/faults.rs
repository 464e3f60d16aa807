//! Whole clusters under each fault schedule: linearizable, one leader per
//! term, no lost acknowledged write, replicas converge. `SIM_SEEDS` bounds
//! the seeds per schedule (CI default below).

#![cfg(madsim)]

use atoll_sim_tests::nemesis::Schedule;
use atoll_sim_tests::runner::{seeds, sweep, Scenario};

const DEFAULT_SEEDS: u64 = 8;

fn schedule(name: &str, s: Schedule) {
    let failures = sweep("faults", name, &Scenario::new(s), &seeds(DEFAULT_SEEDS));
    assert!(
        failures.is_empty(),
        "{} seed(s) failed under {}: {:?}",
        failures.len(),
        s.name(),
        failures.iter().map(|f| f.0).collect::<Vec<_>>()
    );
}

#[test]
fn calm() {
    schedule("calm", Schedule::Calm);
}

#[test]
fn partitions() {
    schedule("partitions", Schedule::Partitions);
}

#[test]
fn crashes() {
    schedule("crashes", Schedule::Crashes);
}

#[test]
fn power_loss() {
    schedule("power_loss", Schedule::PowerLoss);
}

#[test]
fn pauses() {
    schedule("pauses", Schedule::Pauses);
}

#[test]
fn net_chaos() {
    schedule("net_chaos", Schedule::NetChaos);
}

#[test]
fn mixed() {
    schedule("mixed", Schedule::Mixed);
}
