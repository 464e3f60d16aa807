//! The checkers can fail: with a deliberately broken node (feature
//! `sim-bugs`), the simulation must report a violation within a stated
//! number of seeds.

#![cfg(madsim)]

use atoll_node::sim_hooks::Bug;
use atoll_sim_tests::nemesis::Schedule;
use atoll_sim_tests::runner::{run_seed, Scenario};

/// Runs seeds 1..=max_seeds until one fails; returns the seed and message.
fn first_failure(bug: Bug, schedule: Schedule, max_seeds: u64) -> Option<(u64, String)> {
    let moves = MOVE_BUGS.contains(&bug);
    let scenario = Scenario {
        bug,
        splits: SPLIT_BUGS.contains(&bug),
        late_children: bug == Bug::CreateOverSplitChild,
        moves,
        nodes: if moves { 4 } else { 3 },
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

/// Broken splits: these run with an operator splitting shards.
const SPLIT_BUGS: &[Bug] = &[
    Bug::NoApplyRangeCheck,
    Bug::SplitLeavesGap,
    Bug::ChildOnlyOnParentLeader,
    Bug::JoinWithoutSnapshot,
    Bug::ReincarnationVotes,
    Bug::CreateOverSplitChild,
];

/// Broken replica moves: these run on four nodes with an operator draining
/// nodes.
const MOVE_BUGS: &[Bug] = &[
    Bug::JoinWithoutSnapshot,
    Bug::ReincarnationVotes,
    Bug::ReuseReplicaIds,
    Bug::KeepStaleReplicas,
    Bug::PdGroupStays,
];

/// What the checks report when they find a violation, and openraft's own
/// invariant assertions that a broken node trips (a follower's log going
/// backwards; an entry applied past the commit index). Any other panic is
/// not a detection: it is a bug in the test or the node.
const FINDINGS: &[&str] = &[
    "not linearizable",
    "acknowledged writes lost",
    "did not converge",
    "torn scan",
    "writes did not resume",
    "more than one leader",
    "leadership resumed across a restart",
    "applied different entries",
    "into different PD states",
    "the PD is not healthy",
    "do not tile the key space",
    "took no write",
    "Some(log_id) <= self.committed()",
    "follower log is reverted",
    "follower log reversion is not allowed",
    "invalid state: expect: self.purge_upto()",
    // openraft asked to apply entries its log lost (a voter's log taken
    // away under it).
    "index out of bounds: the len is 0",
    // openraft saw two leaders of one term both committed (a voter that
    // voted twice in a term: a replica added back voting before its
    // snapshot); debug builds assert it before the checks run.
    "two incomparable leaders can not be both committed",
    "key(s) outside every shard",
    "shards not back at",
    "a replica id was used again",
    "awaiting their first snapshot held an applied state",
];

/// Every broken mode, the schedule it runs under, and which findings count.
fn cases() -> Vec<(Bug, Schedule, &'static [&'static str])> {
    vec![
        (Bug::StaleReads, Schedule::Partitions, &["not linearizable"]),
        (
            Bug::AckBeforeCommit,
            Schedule::Partitions,
            &["not linearizable", "acknowledged writes lost"],
        ),
        (Bug::AckBeforeFlush, Schedule::PowerLoss, FINDINGS),
        (Bug::ScanWithoutView, Schedule::Calm, &["torn scan"]),
        (Bug::NoDedup, Schedule::NetChaos, &["not linearizable"]),
        (
            Bug::PdLocalClock,
            Schedule::Calm,
            &["into different PD states"],
        ),
        (
            Bug::HeartbeatGivesUp,
            Schedule::Partitions,
            &["the PD is not healthy"],
        ),
        (
            Bug::NoApplyRangeCheck,
            Schedule::NetChaos,
            &[
                "not linearizable",
                "did not converge",
                "acknowledged writes lost",
            ],
        ),
        (
            Bug::SplitLeavesGap,
            Schedule::Calm,
            &[
                "do not tile the key space",
                "no shard is known to hold the key",
            ],
        ),
        (
            Bug::ChildOnlyOnParentLeader,
            Schedule::Calm,
            &[
                "were created empty in a calm run",
                "were opened only when a member asked for them",
                "took no write",
                "writes did not resume",
                "the PD is not healthy",
                "did not converge",
            ],
        ),
        (
            Bug::JoinWithoutSnapshot,
            Schedule::Mixed,
            &[
                "awaiting their first snapshot held an applied state",
                "did not converge",
                "acknowledged writes lost",
                "not linearizable",
                "do not tile the key space",
                "took no write",
            ],
        ),
        (Bug::ReincarnationVotes, Schedule::Mixed, FINDINGS),
        (
            Bug::CreateOverSplitChild,
            Schedule::Calm,
            &[
                "awaiting their first snapshot held an applied state",
                "were created empty in a calm run",
            ],
        ),
        (
            Bug::ReuseReplicaIds,
            Schedule::Mixed,
            &["a replica id was used again"],
        ),
        (
            Bug::KeepStaleReplicas,
            Schedule::Crashes,
            &["still hosts shard"],
        ),
        (
            Bug::PdGroupStays,
            Schedule::Calm,
            &["the placement driver's group never moved"],
        ),
        // Two leaders in one term also trip openraft's own invariants.
        (Bug::ResumeLeadership, Schedule::LeaderRestarts, FINDINGS),
    ]
}

/// Seeds each broken mode may use, and the healthy control runs.
const SEEDS: u64 = 5;

fn case(bug: Bug) -> (Schedule, &'static [&'static str]) {
    cases()
        .into_iter()
        .find(|(b, _, _)| *b == bug)
        .map(|(_, s, e)| (s, e))
        .expect("every tested bug has a case")
}

#[track_caller]
fn assert_caught_by_its_checks(bug: Bug) {
    let (schedule, expect) = case(bug);
    assert_caught(bug, schedule, SEEDS, expect);
}

#[test]
fn reads_without_read_index_are_caught_within_5_seeds() {
    assert_caught_by_its_checks(Bug::StaleReads);
}

#[test]
fn acknowledging_before_commit_is_caught_within_5_seeds() {
    assert_caught_by_its_checks(Bug::AckBeforeCommit);
}

#[test]
fn acknowledging_before_flush_is_caught_within_5_seeds() {
    assert_caught_by_its_checks(Bug::AckBeforeFlush);
}

#[test]
fn scanning_without_the_consistent_view_is_caught_within_5_seeds() {
    assert_caught_by_its_checks(Bug::ScanWithoutView);
}

#[test]
fn resuming_leadership_after_a_restart_is_caught_within_5_seeds() {
    assert_caught_by_its_checks(Bug::ResumeLeadership);
}

/// Dropped and delayed Raft messages make clients time out and retry writes
/// that were (or will be) applied; without dedup a retry applies again, and
/// the cas or delete answers with what its second application found.
#[test]
fn applying_retried_writes_again_is_caught_within_5_seeds() {
    assert_caught_by_its_checks(Bug::NoDedup);
}

/// The PD state machine must take time from its commands only: a replica
/// that reads its own clock holds another state after the same entries.
#[test]
fn a_pd_state_machine_reading_its_own_clock_is_caught_within_5_seeds() {
    assert_caught_by_its_checks(Bug::PdLocalClock);
}

/// A node that stops reporting after a failed heartbeat stays Down once
/// its partition heals; the PD health check after the run must see it.
#[test]
fn a_heartbeat_loop_that_gives_up_is_caught_within_5_seeds() {
    assert_caught_by_its_checks(Bug::HeartbeatGivesUp);
}

/// A parent that does not check the range again when it applies a write
/// applies a write that crossed a split into the child's range, behind the
/// child's back. (Caught at seeds 10 and 36 in two runs of 2026-11-30, but
/// one run of `scripts/test.sh` went past 100: the bound is 300.)
#[test]
fn a_range_not_rechecked_at_apply_is_caught_within_300_seeds() {
    let (schedule, expect) = case(Bug::NoApplyRangeCheck);
    assert_caught(Bug::NoApplyRangeCheck, schedule, 300, expect);
}

/// A split child starting after the split key leaves a gap in the key space.
#[test]
fn a_split_that_leaves_a_gap_is_caught_within_5_seeds() {
    assert_caught_by_its_checks(Bug::SplitLeavesGap);
}

/// A split child opened on the parent leader's node only has no quorum.
#[test]
fn a_child_opened_on_one_replica_only_is_caught_within_5_seeds() {
    assert_caught_by_its_checks(Bug::ChildOnlyOnParentLeader);
}

/// A replica that joins without starting from a snapshot replays old
/// splits, or installs a snapshot older than a split it has seen, over the
/// newer shards of its node.
#[test]
fn a_replica_joining_without_a_fresh_snapshot_is_caught_within_40_seeds() {
    let (schedule, expect) = case(Bug::JoinWithoutSnapshot);
    assert_caught(Bug::JoinWithoutSnapshot, schedule, 40, expect);
}

/// A replica added back to a node it was removed from, under its old id,
/// that votes before its first snapshot lets a lagging replica with an old
/// membership win.
#[test]
fn votes_of_a_replica_added_back_before_its_snapshot_are_caught_within_200_seeds() {
    let (schedule, expect) = case(Bug::ReincarnationVotes);
    assert_caught(Bug::ReincarnationVotes, schedule, 200, expect);
}

/// A node added back to a shard it left under its old replica id (its node
/// id, as before replica ids) is caught by the replica-id check.
#[test]
fn a_replica_id_used_again_is_caught_within_40_seeds() {
    let (schedule, expect) = case(Bug::ReuseReplicaIds);
    assert_caught(Bug::ReuseReplicaIds, schedule, 40, expect);
}

/// A node that never compares what it hosts with the PD's view keeps a
/// replica that was removed while it was down.
#[test]
fn a_replica_left_behind_after_its_removal_is_caught_within_40_seeds() {
    let (schedule, expect) = case(Bug::KeepStaleReplicas);
    assert_caught(Bug::KeepStaleReplicas, schedule, 40, expect);
}

/// A node that writes an empty replica's marks over a split child it has
/// not opened yet (asked to create it by the child's other members, with
/// children opened late) holds a replica that awaits a snapshot with a
/// state of its own.
#[test]
fn a_replica_created_over_its_split_child_is_caught_within_5_seeds() {
    assert_caught_by_its_checks(Bug::CreateOverSplitChild);
}

/// A PD leader that never moves the PD's own group leaves it on drained
/// nodes. The check applies only to a run in which a PD node stayed drained
/// for 5 s (the random drains hold 3–6 s), so not every seed can catch it:
/// one of seeds 1–5 did until the client's stream changed the runs' course;
/// since, run with the rest of this file, seed 6 is the first.
#[test]
fn a_placement_driver_group_that_never_moves_is_caught_within_20_seeds() {
    let (schedule, expect) = case(Bug::PdGroupStays);
    assert_caught(Bug::PdGroupStays, schedule, 20, expect);
}

/// The control: the healthy node passes every seed and schedule that the
/// broken modes above are allowed to use, so what catches them is the bug.
#[test]
fn the_healthy_node_passes_the_same_seeds() {
    let mut schedules: Vec<Schedule> = cases().into_iter().map(|(_, s, _)| s).collect();
    schedules.sort_by_key(|s| s.name());
    schedules.dedup();
    let variants = |s| [(s, false, false), (s, true, false), (s, true, true)];
    for (schedule, splits, moves) in schedules.into_iter().flat_map(variants) {
        let scenario = Scenario {
            splits,
            moves,
            nodes: if moves { 4 } else { 3 },
            ..Scenario::new(schedule)
        };
        for seed in 1..=SEEDS {
            if let Err(e) = run_seed(seed, &scenario) {
                panic!(
                    "healthy run failed at seed {seed} under {}: {e}",
                    schedule.name()
                );
            }
        }
    }
}
