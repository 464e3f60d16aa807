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
fn leader_restarts() {
    schedule("leader_restarts", Schedule::LeaderRestarts);
}

#[test]
fn mixed() {
    schedule("mixed", Schedule::Mixed);
}

/// Every fault, with a per-shard cap of 4 sessions and a client opening 4
/// new ones every 1.5 s: the workload's sessions are evicted over and over,
/// its writes end as `SessionExpired` (recorded as indeterminate), and the
/// history must still be linearizable with no acknowledged write lost.
#[test]
fn mixed_with_session_eviction() {
    let scenario = Scenario {
        session_cap: Some(4),
        ..Scenario::new(Schedule::Mixed)
    };
    let failures = sweep(
        "faults",
        "mixed_with_session_eviction",
        &scenario,
        &seeds(DEFAULT_SEEDS),
    );
    assert!(
        failures.is_empty(),
        "{} seed(s) failed: {:?}",
        failures.len(),
        failures.iter().map(|f| f.0).collect::<Vec<_>>()
    );
}
