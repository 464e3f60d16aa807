//! Shard splits (issue 9, item 4) asked for every 1-3 s while the workload
//! runs, calm and amid the fault schedules, with every check of `faults.rs`
//! (linearizability, no lost write, convergence, ...) plus: every node's
//! shards tile the key space, every shard takes a write after the faults
//! heal, the PD knows every shard with its replicas' range, and in a calm
//! run at least one split happens. `SIM_SEEDS` bounds the seeds per schedule.

#![cfg(madsim)]

use atoll_sim_tests::nemesis::Schedule;
use atoll_sim_tests::runner::{seeds, sweep, Scenario};

const DEFAULT_SEEDS: u64 = 4;

fn splits_under(name: &str, s: Schedule) {
    let scenario = Scenario {
        splits: true,
        ..Scenario::new(s)
    };
    let failures = sweep("splits", name, &scenario, &seeds(DEFAULT_SEEDS));
    assert!(
        failures.is_empty(),
        "{} seed(s) failed with splits under {}: {:?}",
        failures.len(),
        s.name(),
        failures.iter().map(|f| f.0).collect::<Vec<_>>()
    );
}

#[test]
fn splits_in_a_calm_cluster() {
    splits_under("splits_in_a_calm_cluster", Schedule::Calm);
}

#[test]
fn splits_amid_partitions() {
    splits_under("splits_amid_partitions", Schedule::Partitions);
}

#[test]
fn splits_amid_crashes() {
    splits_under("splits_amid_crashes", Schedule::Crashes);
}

#[test]
fn splits_amid_power_loss() {
    splits_under("splits_amid_power_loss", Schedule::PowerLoss);
}

#[test]
fn splits_amid_net_chaos() {
    splits_under("splits_amid_net_chaos", Schedule::NetChaos);
}

#[test]
fn splits_amid_mixed_faults() {
    splits_under("splits_amid_mixed_faults", Schedule::Mixed);
}
