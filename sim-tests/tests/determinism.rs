//! The same seed gives the same run, byte for byte: faults injected, every
//! recorded operation and its result.

#![cfg(madsim)]

use atoll_sim_tests::nemesis::Schedule;
use atoll_sim_tests::runner::{run_seed, seeds, Scenario};

#[test]
fn one_seed_twice_gives_identical_histories() {
    let seed = seeds(1)[0] + 41;
    let scenario = Scenario::new(Schedule::Mixed);
    let a = run_seed(seed, &scenario).expect("first run");
    let b = run_seed(seed, &scenario).expect("second run");
    assert!(a.ops > 100, "too few ops to compare: {}", a.ops);
    assert_eq!(a.faults, b.faults);
    assert_eq!(
        a.history_jsonl, b.history_jsonl,
        "seed {seed} is not deterministic"
    );
    assert_eq!(a, b);
}

#[test]
fn different_seeds_give_different_runs() {
    let scenario = Scenario::new(Schedule::Mixed);
    let a = run_seed(3, &scenario).expect("seed 3");
    let b = run_seed(4, &scenario).expect("seed 4");
    assert_ne!(a.history_jsonl, b.history_jsonl);
}
