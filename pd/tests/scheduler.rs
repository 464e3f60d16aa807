//! Scheduler scenarios on the simulated cluster, with every step carried
//! out at once and no random leader changes: each reads as a story.

mod common;

use std::collections::BTreeSet;

use atoll_pd::command::{Command, CommandResult, NodeTarget, SetNodeStateError};
use atoll_pd::config::PdConfig;
use atoll_pd::node::{NodeId, NodeState};
use atoll_pd::operator::OpKind;
use atoll_pd::shard::Role;
use common::Sim;

fn config(rf: usize) -> PdConfig {
    PdConfig {
        replication_factor: rf,
        split_keys: 100,
        split_size_bytes: u64::MAX,
        down_after_ms: 3_000,
        learner_step_timeout_ms: 20_000,
        step_timeout_ms: 10_000,
        ..PdConfig::default()
    }
}

fn calm_sim(seed: u64, rf: usize, zoned: bool) -> Sim {
    let mut sim = Sim::new(seed, config(rf), zoned);
    sim.p_execute = 1.0;
    sim.chaos = false;
    sim
}

/// Runs rounds until nothing is created or running for 3 rounds in a row.
fn settle(sim: &mut Sim) -> usize {
    let mut quiet = 0;
    for i in 0..1_000 {
        let round = sim.round();
        sim.check_always();
        if round.created.is_empty() && sim.ops.is_empty() {
            quiet += 1;
            if quiet == 3 {
                return i;
            }
        } else {
            quiet = 0;
        }
    }
    panic!("did not settle: {:?}", sim.settled_problems());
}

fn replica_counts(sim: &Sim) -> Vec<usize> {
    sim.pd
        .nodes()
        .filter(|n| n.is_up())
        .map(|n| sim.pd.replica_count(n.id))
        .collect()
}

fn leader_counts(sim: &Sim) -> Vec<usize> {
    sim.pd
        .nodes()
        .filter(|n| n.is_up())
        .map(|n| sim.pd.leader_count(n.id))
        .collect()
}

fn spread(v: &[usize]) -> usize {
    v.iter().max().unwrap_or(&0) - v.iter().min().unwrap_or(&0)
}

#[test]
fn a_growing_shard_splits_and_balancing_settles_then_emits_nothing() {
    let mut sim = calm_sim(1, 3, false);
    for _ in 0..3 {
        sim.join();
    }
    for _ in 0..40 {
        sim.write(40);
        sim.round();
        sim.check_always();
    }
    settle(&mut sim);
    assert!(sim.shards.len() >= 8, "only {} shards", sim.shards.len());
    assert!(
        sim.settled_problems().is_empty(),
        "{:?}",
        sim.settled_problems()
    );
    assert!(
        spread(&replica_counts(&sim)) <= 2,
        "replicas {:?}",
        replica_counts(&sim)
    );
    assert!(
        spread(&leader_counts(&sim)) <= 1,
        "leaders {:?}",
        leader_counts(&sim)
    );
    for _ in 0..50 {
        let round = sim.round();
        assert_eq!(round.created, vec![], "a settled cluster got new operators");
    }
}

#[test]
fn draining_a_node_moves_every_replica_off_it_then_it_can_be_removed() {
    let mut sim = calm_sim(2, 3, false);
    sim.join();
    sim.write(500);
    settle(&mut sim);
    let leader_node = sim
        .shards
        .values()
        .find_map(|s| s.desc.leader_node())
        .unwrap();
    let r = sim.pd.apply(Command::SetNodeState {
        node: leader_node,
        target: NodeTarget::Removed,
        force: false,
    });
    assert!(
        matches!(
            r,
            CommandResult::SetNodeState(Err(SetNodeStateError::HoldsReplicas { .. }))
        ),
        "{r:?}"
    );
    assert!(sim.try_drain(leader_node));
    settle(&mut sim);
    assert_eq!(sim.pd.replica_count(leader_node), 0);
    assert!(
        sim.settled_problems().is_empty(),
        "{:?}",
        sim.settled_problems()
    );
    let r = sim.pd.apply(Command::SetNodeState {
        node: leader_node,
        target: NodeTarget::Removed,
        force: false,
    });
    assert!(matches!(r, CommandResult::SetNodeState(Ok(_))), "{r:?}");
}

#[test]
fn a_dead_nodes_replicas_are_replaced_with_five_replicas() {
    let mut sim = calm_sim(3, 5, false);
    sim.join();
    sim.join();
    sim.write(300);
    settle(&mut sim);
    let victim: NodeId = 2;
    assert!(sim.try_kill(victim));
    settle(&mut sim);
    assert_eq!(sim.node_state(victim), Some(NodeState::Down));
    assert_eq!(sim.pd.replica_count(victim), 0);
    assert!(
        sim.settled_problems().is_empty(),
        "{:?}",
        sim.settled_problems()
    );
    for s in sim.pd.shards() {
        assert_eq!(s.desc.voters().count(), 5);
    }
}

#[test]
fn replicas_spread_over_zones_when_nodes_carry_them() {
    // Nodes 1..=6 in zones z1 z2 z3 z1 z2 z3: the first three already differ.
    let mut sim = calm_sim(4, 3, true);
    for _ in 0..3 {
        sim.join();
    }
    sim.write(400);
    settle(&mut sim);
    // Drain the z1 node of the first three: its replacement must be in z1 too.
    assert!(sim.try_drain(1));
    settle(&mut sim);
    for s in sim.pd.shards() {
        let zones: BTreeSet<_> = s
            .desc
            .replicas
            .iter()
            .filter_map(|r| {
                sim.pd
                    .node(r.node)
                    .and_then(|n| n.zone())
                    .map(str::to_string)
            })
            .collect();
        assert_eq!(zones.len(), 3, "shard {} on zones {zones:?}", s.desc.id);
    }
}

#[test]
fn a_joint_config_left_by_a_dead_leader_is_finished() {
    let mut sim = calm_sim(5, 3, false);
    sim.join();
    sim.join();
    settle(&mut sim);
    // The leader enters a joint config (node 4 incoming) and dies in it.
    let log_index = sim.log_index;
    let shard = sim.shards.get_mut(&1).unwrap();
    let leader_node = shard.desc.leader_node().unwrap();
    shard.desc.replicas.push(atoll_pd::shard::Replica {
        id: 900,
        node: 4,
        role: Role::IncomingVoter,
    });
    shard.desc.epoch.conf_ver = log_index + 1;
    shard.joint_leader = None; // the leader that would finish it is gone
    sim.log_index = log_index + 1;
    let r = sim.pd.apply(Command::AllocIds {
        kind: atoll_pd::ids::IdKind::Replica,
        count: 1_000,
    });
    assert!(matches!(r, CommandResult::AllocIds(Ok(_))));
    assert!(sim.try_kill(leader_node));
    let mut saw_leave_joint = false;
    for _ in 0..20 {
        let round = sim.round();
        saw_leave_joint |= round.created.iter().any(|(id, k)| {
            *id == 1
                && *k == OpKind::Replica
                && sim
                    .ops
                    .get(1)
                    .is_some_and(|o| o.steps() == [atoll_pd::operator::Step::LeaveJoint])
        });
    }
    assert!(saw_leave_joint, "no LeaveJoint operator");
    settle(&mut sim);
    assert!(!sim.pd.shard(1).unwrap().desc.is_joint());
    assert!(
        sim.settled_problems().is_empty(),
        "{:?}",
        sim.settled_problems()
    );
}

#[test]
fn learner_adds_respect_the_snapshot_limit_per_node() {
    let mut sim = calm_sim(6, 3, false);
    let mut c = config(3);
    c.max_snapshots_per_node = 1;
    assert_eq!(
        sim.pd.apply(Command::SetConfig { config: c }),
        CommandResult::SetConfig(Ok(()))
    );
    sim.write(1_000);
    settle(&mut sim);
    sim.join();
    sim.join();
    for _ in 0..30 {
        sim.round();
        for n in sim.pd.nodes() {
            assert!(
                sim.ops.snapshots_on(n.id) <= 1,
                "node {} over its snapshot limit",
                n.id
            );
        }
    }
}
