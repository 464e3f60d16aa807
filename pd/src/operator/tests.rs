use crate::config::PdConfig;
use crate::ids::{IdKind, IdPool, IdRange};
use crate::operator::{build, AdmitError, CancelReason, OpKind, OpStatus, OperatorSet, Step};
use crate::shard::{Epoch, Replica, Role, ShardDescriptor, ShardInfo, ShardStats};

fn shard3() -> ShardInfo {
    let replicas = (1..=3)
        .map(|i| Replica {
            id: i,
            node: i,
            role: Role::Voter,
        })
        .collect();
    let mut desc = ShardDescriptor::whole_keyspace(1, replicas);
    desc.leader = Some(1);
    desc.term = 2;
    desc.epoch = Epoch {
        version: 1,
        conf_ver: 10,
    };
    ShardInfo {
        desc,
        stats: ShardStats::default(),
        last_report_ms: 0,
    }
}

/// The learner's id: replica number 100 (the pool's first) on node 4.
const NEW: u64 = (100 << crate::ids::REPLICA_NODE_BITS) | 4;

fn pool() -> IdPool {
    let mut p = IdPool::default();
    p.refill(
        IdKind::Replica,
        IdRange {
            start: 100,
            end: 200,
        },
    );
    p.refill(IdKind::Shard, IdRange { start: 10, end: 20 });
    p
}

fn set_role(s: &mut ShardInfo, id: u64, node: u64, role: Option<Role>) {
    s.desc.replicas.retain(|r| r.id != id);
    if let Some(role) = role {
        s.desc.replicas.push(Replica { id, node, role });
    }
    s.desc.epoch.conf_ver += 2;
}

#[test]
fn moving_the_leaders_replica_adds_promotes_transfers_then_removes() {
    let s = shard3();
    let op = build::move_replica(&s, 1, 4, OpKind::Replica, &mut pool(), 0).unwrap();
    assert_eq!(
        op.steps(),
        &[
            Step::AddLearner {
                node: 4,
                replica: NEW
            },
            Step::PromoteLearner {
                node: 4,
                replica: NEW
            },
            Step::TransferLeader {
                node: 4,
                replica: NEW
            },
            Step::RemoveReplica {
                node: 1,
                replica: 1
            },
        ]
    );
}

#[test]
fn each_step_is_confirmed_by_a_later_report_through_joint_states() {
    let mut s = shard3();
    let mut op = build::move_replica(&s, 1, 4, OpKind::Replica, &mut pool(), 0).unwrap();
    // Learner present but still catching up: not yet confirmed.
    set_role(&mut s, NEW, 4, Some(Role::Learner));
    s.stats.pending_replicas = vec![NEW];
    assert_eq!(op.observe(&s, 1), &OpStatus::Running);
    assert_eq!(op.current_index(), 0);
    s.stats.pending_replicas.clear();
    op.observe(&s, 2);
    assert_eq!(op.current_index(), 1);
    // Joint, then uniform.
    set_role(&mut s, NEW, 4, Some(Role::IncomingVoter));
    assert_eq!(op.observe(&s, 3), &OpStatus::Running);
    assert_eq!(op.current_index(), 1);
    set_role(&mut s, NEW, 4, Some(Role::Voter));
    op.observe(&s, 4);
    assert_eq!(
        op.current_step(),
        Some(&Step::TransferLeader {
            node: 4,
            replica: NEW
        })
    );
    s.desc.leader = Some(NEW);
    s.desc.term += 1;
    op.observe(&s, 5);
    set_role(&mut s, 1, 1, Some(Role::OutgoingVoter));
    assert_eq!(op.observe(&s, 6), &OpStatus::Running);
    set_role(&mut s, 1, 1, None);
    assert_eq!(op.observe(&s, 7), &OpStatus::Finished);
}

#[test]
fn a_membership_change_the_operator_did_not_cause_cancels_it() {
    let mut s = shard3();
    let mut op = build::add_replica(&s, 4, OpKind::Replica, &mut pool(), 0).unwrap();
    set_role(&mut s, 3, 3, None);
    assert_eq!(
        op.observe(&s, 1),
        &OpStatus::Cancelled(CancelReason::MembershipChanged)
    );
}

#[test]
fn a_version_that_moved_under_an_unstarted_first_step_cancels_it() {
    let mut s = shard3();
    let mut op = build::add_replica(&s, 4, OpKind::Replica, &mut pool(), 0).unwrap();
    // Same members, newer version: the leader would refuse the first step forever.
    s.desc.epoch.conf_ver += 1;
    assert_eq!(
        op.observe(&s, 1),
        &OpStatus::Cancelled(CancelReason::MembershipChanged)
    );
}

#[test]
fn a_split_the_operator_did_not_ask_for_cancels_it_but_its_own_confirms_it() {
    let mut s = shard3();
    let mut op = build::transfer_leader(&s, 2, OpKind::BalanceLeader, 0).unwrap();
    s.desc.epoch.version += 1;
    assert_eq!(
        op.observe(&s, 1),
        &OpStatus::Cancelled(CancelReason::VersionChanged {
            expected: 1,
            reported: 2
        })
    );
    let s = shard3();
    let mut op = build::split(&s, Some(b"m".to_vec()), OpKind::Split, &mut pool(), 0).unwrap();
    match op.current_step() {
        Some(Step::Split {
            child,
            child_replicas,
            ..
        }) => {
            assert_eq!(*child, 10);
            let nodes: Vec<_> = child_replicas.iter().map(|r| r.node).collect();
            assert_eq!(nodes, vec![1, 2, 3]);
        }
        other => panic!("{other:?}"),
    }
    let mut after = s.clone();
    after.desc.epoch.version = 2;
    after.desc.end = Some(b"m".to_vec());
    assert_eq!(op.observe(&after, 1), &OpStatus::Finished);
}

#[test]
fn a_stuck_step_times_out() {
    let s = shard3();
    let config = PdConfig {
        step_timeout_ms: 50,
        ..PdConfig::default()
    };
    let mut op = build::transfer_leader(&s, 3, OpKind::Admin, 100).unwrap();
    assert_eq!(op.check_timeout(149, &config), &OpStatus::Running);
    assert_eq!(
        op.check_timeout(150, &config),
        &OpStatus::TimedOut { step: 0 }
    );
}

#[test]
fn one_operator_per_shard_and_a_snapshot_limit_per_node() {
    let config = PdConfig {
        max_snapshots_per_node: 1,
        ..PdConfig::default()
    };
    let s = shard3();
    let mut other = shard3();
    other.desc.id = 2;
    let mut ids = pool();
    let mut set = OperatorSet::new();
    set.add(
        build::add_replica(&s, 4, OpKind::Replica, &mut ids, 0).unwrap(),
        &config,
    )
    .unwrap();
    let again = build::transfer_leader(&s, 2, OpKind::Admin, 0).unwrap();
    assert_eq!(set.add(again, &config), Err(AdmitError::ShardBusy(1)));
    // Node 1 leads both shards, so it is the snapshot source of both adds.
    let second = build::add_replica(&other, 5, OpKind::Replica, &mut ids, 0).unwrap();
    assert_eq!(
        set.add(second, &config),
        Err(AdmitError::SnapshotLimit {
            node: 1,
            running: 1
        })
    );
    assert_eq!(set.snapshots_on(4), 1);
}

#[test]
fn leaders_replica_cannot_be_removed_without_another_voter() {
    let mut s = shard3();
    s.desc.replicas.retain(|r| r.id == 1);
    assert_eq!(
        build::remove_replica(&s, 1, OpKind::Replica, 0),
        Err(crate::operator::BuildError::NoOtherVoter)
    );
}
