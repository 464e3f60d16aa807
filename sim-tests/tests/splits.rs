//! Shard splits (issue 9, item 4) asked for every 1-3 s while the workload
//! runs, calm and amid the fault schedules, with every check of `faults.rs`
//! (linearizability, no lost write, convergence, ...) plus: every node's
//! shards tile the key space, every shard takes a write after the faults
//! heal, the PD knows every shard with its replicas' range, and in a calm
//! run at least one split happens. `SIM_SEEDS` bounds the seeds per schedule.

#![cfg(madsim)]

use atoll_sim_tests::nemesis::Schedule;
use atoll_sim_tests::runner::{fixed_seeds, run_seed_with, seeds, sweep, Scenario};

const DEFAULT_SEEDS: u64 = 4;

fn splits_under(name: &str, s: Schedule) {
    splits_under_seeds(name, s, &seeds(DEFAULT_SEEDS));
}

fn splits_under_seeds(name: &str, s: Schedule, seeds: &[u64]) {
    let scenario = Scenario {
        splits: true,
        ..Scenario::new(s)
    };
    sweep_splits(name, &scenario, seeds);
}

fn sweep_splits(name: &str, scenario: &Scenario, seeds: &[u64]) {
    let failures = sweep("splits", name, scenario, seeds);
    assert!(
        failures.is_empty(),
        "{} seed(s) failed with splits under {}: {:?}",
        failures.len(),
        scenario.schedule.name(),
        failures.iter().map(|f| f.0).collect::<Vec<_>>()
    );
}

#[test]
fn a_split_child_serves_before_its_first_snapshot_is_built() {
    for seed in seeds(2) {
        match run_seed_with(
            seed,
            atoll_node::sim_hooks::Bug::None,
            atoll_sim_tests::splits::child_serves_before_its_first_snapshot,
        ) {
            Ok(took) => println!("seed {seed}: the split and a write to the child took {took:?}"),
            Err(msg) => panic!(
                "seed {seed}: {msg}\n  replay: SIM_SEED={seed} RUSTFLAGS=\"--cfg madsim\" \
                 CARGO_TARGET_DIR=target/sim cargo test -p atoll-sim-tests --test splits \
                 a_split_child -- --nocapture"
            ),
        }
    }
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

/// Seeds that once failed, run in every sweep: 46005 (a split child that a
/// node's split wrote after an empty replica of it had been created there:
/// it held state but waited for a snapshot, and the conflict answer sent it
/// one no newer than its own, for ever).
#[test]
fn splits_amid_crashes_seeds_that_failed() {
    splits_under_seeds(
        "splits_amid_crashes_seeds_that_failed",
        Schedule::Crashes,
        &fixed_seeds(&[46005]),
    );
}

/// Splits in a calm cluster in which the nodes whose parent replica does
/// not lead open the children late: the child's other members ask them to
/// create it first, and they must open the child their split wrote instead
/// of writing an empty replica over it (which then waited for a snapshot
/// for ever, seed 46005 above).
#[test]
fn splits_with_children_opened_late() {
    let scenario = Scenario {
        splits: true,
        late_children: true,
        ..Scenario::new(Schedule::Calm)
    };
    sweep_splits(
        "splits_with_children_opened_late",
        &scenario,
        &seeds(DEFAULT_SEEDS),
    );
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
