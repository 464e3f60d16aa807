//! The checkers can fail: with a deliberately broken node (feature
//! `sim-bugs`), the simulation must report a violation within a stated
//! number of seeds.

#![cfg(madsim)]

use atoll_node::sim_hooks::Bug;
use atoll_sim_tests::nemesis::Schedule;
use atoll_sim_tests::runner::{run_seed, Scenario};

/// Runs seeds 1..=max_seeds until one fails; returns the seed and message.
fn first_failure(bug: Bug, schedule: Schedule, max_seeds: u64) -> Option<(u64, String)> {
    let scenario = Scenario {
        bug,
        ..Scenario::new(schedule)
    };
    (1..=max_seeds).find_map(|seed| run_seed(seed, &scenario).err().map(|e| (seed, e)))
}

#[track_caller]
fn assert_caught(bug: Bug, schedule: Schedule, max_seeds: u64, expect: &[&str]) {
    match first_failure(bug, schedule, max_seeds) {
        Some((seed, msg)) => {
            println!(
                "{bug:?} caught at seed {seed}: {}",
                &msg[..msg.len().min(300)]
            );
            assert!(
                expect.iter().any(|e| msg.contains(e)),
                "{bug:?} caught, but by an unexpected check: {msg}"
            );
        }
        None => panic!(
            "{bug:?} under {} was not caught within {max_seeds} seeds",
            schedule.name()
        ),
    }
}

#[test]
fn reads_without_read_index_are_caught_within_5_seeds() {
    assert_caught(
        Bug::StaleReads,
        Schedule::Partitions,
        5,
        &["not linearizable"],
    );
}

#[test]
fn acknowledging_before_commit_is_caught_within_5_seeds() {
    assert_caught(
        Bug::AckBeforeCommit,
        Schedule::Partitions,
        5,
        &["not linearizable", "acknowledged writes lost"],
    );
}

#[test]
fn acknowledging_before_flush_is_caught_within_5_seeds() {
    assert_caught(
        Bug::AckBeforeFlush,
        Schedule::PowerLoss,
        5,
        // openraft's own invariant checks (a follower's log going backwards,
        // an entry applied past the commit index) panic the node: they are
        // detection layers too, and the healthy node never trips them.
        &[
            "not linearizable",
            "acknowledged writes lost",
            "did not converge",
            "panic: ",
        ],
    );
}

#[test]
fn scanning_without_the_consistent_view_is_caught_within_5_seeds() {
    assert_caught(Bug::ScanWithoutView, Schedule::Calm, 5, &["torn scan"]);
}

#[test]
fn applying_retried_writes_again_is_caught_within_5_seeds() {
    // Dropped and delayed Raft messages make clients time out and retry
    // writes that were (or will be) applied; without dedup a retry applies
    // again, and the cas or delete answers with what its second application
    // found.
    assert_caught(Bug::NoDedup, Schedule::NetChaos, 5, &["not linearizable"]);
}

#[test]
fn the_healthy_node_passes_the_same_seeds() {
    for schedule in [
        Schedule::Partitions,
        Schedule::PowerLoss,
        Schedule::NetChaos,
    ] {
        let scenario = Scenario::new(schedule);
        for seed in 1..=2 {
            if let Err(e) = run_seed(seed, &scenario) {
                panic!(
                    "healthy run failed at seed {seed} under {}: {e}",
                    schedule.name()
                );
            }
        }
    }
}
