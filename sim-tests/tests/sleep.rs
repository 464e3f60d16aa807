//! Sleeping shards (`atoll_sim_tests::sleep`): quiet shards sleep, wake
//! for a write, and elect a new leader when their sleeping leader's node
//! dies; and the broken mode `SleepThroughLeaderLoss` (followers that
//! ignore the silence of their leader's node) is caught. `SIM_SEEDS`
//! bounds the seeds.

#![cfg(madsim)]

use atoll_node::sim_hooks::Bug;
use atoll_sim_tests::runner::{run_seed_with, seeds};
use atoll_sim_tests::sleep;

const DEFAULT_SEEDS: u64 = 4;

#[test]
fn quiet_shards_sleep_wake_and_survive_their_leaders_death() {
    let mut failures = Vec::new();
    for seed in seeds(DEFAULT_SEEDS) {
        match run_seed_with(seed, Bug::None, sleep::run) {
            Ok(r) => {
                if std::env::var("SIM_VERBOSE").is_ok() {
                    println!("seed {seed}: ok, {r:?}");
                }
            }
            Err(msg) => {
                println!(
                    "FAILED sleep seed {seed}: {msg}\n  replay: SIM_SEED={seed} RUSTFLAGS=\"--cfg madsim\" CARGO_TARGET_DIR=target/sim cargo test -p atoll-sim-tests --test sleep -- --nocapture"
                );
                failures.push(seed);
            }
        }
    }
    assert!(failures.is_empty(), "failed seeds: {failures:?}");
}

#[test]
fn followers_that_sleep_through_their_leaders_death_are_caught() {
    for seed in seeds(2) {
        let r = run_seed_with(seed, Bug::SleepThroughLeaderLoss, sleep::run);
        let Err(msg) = r else {
            panic!("seed {seed}: SleepThroughLeaderLoss went unnoticed");
        };
        assert!(
            msg.contains("took no write"),
            "seed {seed}: caught, but not by the liveness check: {msg}"
        );
    }
}
