//! Tests of the state machine: sessions and dedup, multi entries, snapshot
//! installs, membership epochs, and the apply-time range check.

use std::sync::Arc;

use openraft::testing::log_id;

use crate::raft::type_config::ReplicaId;

use super::*;
use crate::storage::MemoryEngine;

fn open(engine: &SharedEngine) -> StateMachine {
    let meta = Arc::new(RwLock::new(ShardMeta::whole_keyspace(1)));
    StateMachine::open(
        1,
        engine.clone(),
        Flusher::spawn(engine.clone()),
        meta,
        ApplyGate::new(),
        SnapshotStore::Memory,
        None,
    )
    .expect("open state machine")
}

fn entry(index: u64, req: Request) -> Entry {
    Entry {
        log_id: log_id(1, ReplicaId(1), index),
        payload: EntryPayload::Normal(req),
    }
}

fn register(max_sessions: u64) -> Request {
    Request::RegisterSession { max_sessions }
}

fn put(client: u64, seq: u64, value: &[u8]) -> Request {
    Request::Write {
        write_id: WriteId {
            client_id: client,
            seq,
            first_incomplete: seq,
        },
        op: WriteOp::Put {
            key: b"k".to_vec(),
            value: value.to_vec(),
        },
    }
}

fn value(engine: &SharedEngine) -> Option<Vec<u8>> {
    engine.get(&keys::data(b"k")).expect("engine get")
}

async fn apply_one(sm: &mut StateMachine, index: u64, req: Request) -> Response {
    let mut out = sm.apply([entry(index, req)]).await.expect("apply");
    out.pop().expect("one response")
}

#[tokio::test]
async fn a_retry_after_its_session_was_evicted_is_refused_not_applied_twice() {
    let engine: SharedEngine = Arc::new(MemoryEngine::new());
    let mut sm = open(&engine);
    let registered = sm
        .apply([entry(1, register(2)), entry(2, register(2))])
        .await
        .unwrap();
    assert_eq!(
        registered,
        vec![
            Response::SessionRegistered { client_id: 1 },
            Response::SessionRegistered { client_id: 2 }
        ]
    );
    assert_eq!(apply_one(&mut sm, 3, put(1, 1, b"a")).await, Response::Put);
    assert_eq!(apply_one(&mut sm, 4, put(2, 1, b"b")).await, Response::Put);
    // Session 1 (last write at 3) is the least recently written.
    assert_eq!(
        apply_one(&mut sm, 5, register(2)).await,
        Response::SessionRegistered { client_id: 3 }
    );
    let expired = Response::Rejected(Rejection::SessionExpired { client_id: 1 });
    assert_eq!(apply_one(&mut sm, 6, put(1, 1, b"a")).await, expired);
    assert_eq!(value(&engine), Some(b"b".to_vec()), "applied twice");
    // A write under an id no registration ever gave out is refused too.
    assert_eq!(
        apply_one(&mut sm, 7, put(99, 1, b"x")).await,
        Response::Rejected(Rejection::SessionExpired { client_id: 99 })
    );

    // The table and the id counter survive a restart...
    drop(sm);
    let mut sm = open(&engine);
    assert_eq!(apply_one(&mut sm, 8, put(1, 1, b"a")).await, expired);
    assert_eq!(apply_one(&mut sm, 9, put(2, 1, b"b")).await, Response::Put);
    assert_eq!(value(&engine), Some(b"b".to_vec()));

    // ...and travel in snapshots.
    let mut builder = sm.get_snapshot_builder().await;
    let snapshot = builder.build_snapshot().await.unwrap();
    let other: SharedEngine = Arc::new(MemoryEngine::new());
    let mut copy = open(&other);
    copy.install_snapshot(&snapshot.meta, snapshot.snapshot)
        .await
        .unwrap();
    assert_eq!(apply_one(&mut copy, 10, put(1, 1, b"a")).await, expired);
    assert_eq!(
        apply_one(&mut copy, 11, register(2)).await,
        Response::SessionRegistered { client_id: 4 }
    );
    assert_eq!(value(&other), Some(b"b".to_vec()));
    drop(copy);
    let mut reopened = open(&other);
    assert_eq!(
        apply_one(&mut reopened, 12, register(2)).await,
        Response::SessionRegistered { client_id: 5 }
    );
}

#[tokio::test]
async fn a_multi_entry_applies_each_request_in_order_with_its_own_dedup() {
    let engine: SharedEngine = Arc::new(MemoryEngine::new());
    let mut sm = open(&engine);
    apply_one(&mut sm, 1, register(10)).await;
    apply_one(&mut sm, 2, register(10)).await;
    let cas = |client, seq, expected: Option<&[u8]>, new: &[u8]| Request::Write {
        write_id: WriteId {
            client_id: client,
            seq,
            first_incomplete: seq,
        },
        op: WriteOp::Cas {
            key: b"k".to_vec(),
            expected: expected.map(<[u8]>::to_vec),
            new: Some(new.to_vec()),
        },
    };
    // Client 1 puts "a"; client 2's CAS sees it; client 1's retry of its
    // put (same write id) in the same entry is answered, not re-applied;
    // a nested Multi is refused.
    let multi = Request::Multi(vec![
        put(1, 1, b"a"),
        cas(2, 1, Some(b"a"), b"b"),
        put(1, 1, b"a"),
        Request::Multi(vec![put(1, 2, b"z")]),
    ]);
    assert_eq!(
        apply_one(&mut sm, 3, multi).await,
        Response::Multi(vec![
            Response::Put,
            Response::Cas {
                succeeded: true,
                previous: Some(b"a".to_vec())
            },
            Response::Put,
            Response::Rejected(Rejection::NestedMulti),
        ])
    );
    assert_eq!(value(&engine), Some(b"b".to_vec()), "the retry re-applied");
    // A later retry of the CAS gets its first answer.
    assert_eq!(
        apply_one(&mut sm, 4, cas(2, 1, Some(b"a"), b"b")).await,
        Response::Cas {
            succeeded: true,
            previous: Some(b"a".to_vec())
        }
    );
}

#[tokio::test]
async fn an_install_cut_short_by_a_crash_is_finished_when_the_replica_opens() {
    let engine: SharedEngine = Arc::new(MemoryEngine::new());
    let mut sm = open(&engine);
    apply_one(&mut sm, 1, register(10)).await;
    apply_one(&mut sm, 2, put(1, 1, b"from-snapshot")).await;
    let membership = Entry {
        log_id: log_id(1, ReplicaId(1), 3),
        payload: EntryPayload::Membership(openraft::Membership::new(
            vec![std::collections::BTreeSet::from([ReplicaId(1)])],
            None,
        )),
    };
    sm.apply([membership]).await.expect("apply membership");
    let snap_shard = read_meta(&sm.meta);
    assert_eq!(snap_shard.epoch.conf_ver, 1);
    let mut builder = sm.get_snapshot_builder().await;
    let snap = builder.build_snapshot().await.unwrap();
    let (stored_meta, stored) = sm.current_record().unwrap().unwrap();
    assert_eq!(stored_meta, snap.meta);

    // Another replica crashed half way through installing it: the
    // marker is durable, its old data partly deleted.
    let other: SharedEngine = Arc::new(MemoryEngine::new());
    let mut batch = WriteBatch::new();
    batch.put(keys::data(b"stale"), b"old".to_vec());
    let marker: SnapshotRecord = (snap.meta.clone(), stored);
    batch.put(
        keys::sm_meta(1, SmMeta::Installing),
        codec::encode("marker", &marker).unwrap(),
    );
    other.write(batch).unwrap();
    let mut reopened = open(&other);
    // The descriptor it runs with is the snapshot's, not the one it had:
    // the next membership entry counts conf_ver on from the snapshot's.
    assert_eq!(read_meta(&reopened.meta), snap_shard);
    assert_eq!(value(&other), Some(b"from-snapshot".to_vec()));
    assert_eq!(other.get(&keys::data(b"stale")).unwrap(), None);
    assert_eq!(
        other.get(&keys::sm_meta(1, SmMeta::Installing)).unwrap(),
        None
    );
    let (applied, _) = reopened.applied_state().await.unwrap();
    assert_eq!(applied, snap.meta.last_log_id);
    // Its sessions came along: a retry of the applied write is answered.
    assert_eq!(
        apply_one(&mut reopened, 4, put(1, 1, b"from-snapshot")).await,
        Response::Put
    );
}

#[tokio::test]
async fn conf_ver_counts_membership_entries_and_only_grows() {
    use std::collections::BTreeSet;
    let membership = |index: u64, voters: &[u64]| Entry {
        log_id: log_id(1, ReplicaId(1), index),
        payload: EntryPayload::Membership(openraft::Membership::new(
            vec![voters
                .iter()
                .copied()
                .map(ReplicaId::founding)
                .collect::<BTreeSet<_>>()],
            None,
        )),
    };
    let conf_ver = |sm: &StateMachine| read_meta(&sm.meta).epoch.conf_ver;
    let engine: SharedEngine = Arc::new(MemoryEngine::new());
    let mut sm = open(&engine);
    sm.apply([membership(1, &[1]), membership(4, &[1, 2])])
        .await
        .unwrap();
    assert_eq!(conf_ver(&sm), 2);
    // Stored with the applied index, for the next start.
    let stored: ShardMeta = codec::decode(
        "shard",
        &engine
            .get(&keys::sm_meta(1, SmMeta::Shard))
            .unwrap()
            .expect("the descriptor is stored"),
    )
    .unwrap();
    assert_eq!(stored.epoch.conf_ver, 2);

    // A split child starts with its parent's conf_ver and its own log
    // indexes start again at 1: its next membership is still newer.
    let other: SharedEngine = Arc::new(MemoryEngine::new());
    let mut meta = ShardMeta::whole_keyspace(1);
    meta.epoch.conf_ver = 130;
    let mut child = StateMachine::open(
        1,
        other.clone(),
        Flusher::spawn(other),
        Arc::new(RwLock::new(meta)),
        ApplyGate::new(),
        SnapshotStore::Memory,
        None,
    )
    .unwrap();
    child.apply([membership(5, &[1, 2])]).await.unwrap();
    assert_eq!(conf_ver(&child), 131);
}

#[tokio::test]
async fn a_txn_with_any_key_outside_the_shard_is_rejected_at_apply_and_changes_nothing() {
    use crate::command::{Compare, CompareOp, TxnOp, TxnOpResult};
    let engine: SharedEngine = Arc::new(MemoryEngine::new());
    // The shard was split at "m" after the txn was proposed.
    let mut meta = ShardMeta::whole_keyspace(1);
    meta.end = Some(b"m".to_vec());
    let mut sm = StateMachine::open(
        1,
        engine.clone(),
        Flusher::spawn(engine.clone()),
        Arc::new(RwLock::new(meta)),
        ApplyGate::new(),
        SnapshotStore::Memory,
        None,
    )
    .unwrap();
    apply_one(&mut sm, 1, register(10)).await;
    let txn = |seq, failure_key: &[u8]| Request::Write {
        write_id: WriteId {
            client_id: 1,
            seq,
            first_incomplete: seq,
        },
        op: WriteOp::Txn {
            compares: vec![Compare {
                key: b"k".to_vec(),
                op: CompareOp::Equal,
                value: None,
            }],
            success: vec![TxnOp::Put {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
            }],
            // Not the branch that would run: its keys are checked all the same.
            failure: vec![TxnOp::Get {
                key: failure_key.to_vec(),
            }],
        },
    };
    assert_eq!(
        apply_one(&mut sm, 2, txn(1, b"z")).await,
        Response::Rejected(Rejection::KeyOutOfRange { key: b"z".to_vec() })
    );
    assert_eq!(value(&engine), None, "a rejected txn wrote");
    assert_eq!(
        apply_one(&mut sm, 3, txn(2, b"a")).await,
        Response::Txn {
            succeeded: true,
            results: vec![TxnOpResult::Put]
        }
    );
    assert_eq!(value(&engine), Some(b"v".to_vec()));
}

#[tokio::test]
async fn a_slow_snapshot_build_does_not_replace_a_newer_snapshot_record() {
    let engine: SharedEngine = Arc::new(MemoryEngine::new());
    let mut sm = open(&engine);
    apply_one(&mut sm, 1, put(1, 1, b"one")).await;
    let mut older = sm.get_snapshot_builder().await;
    apply_one(&mut sm, 2, put(1, 2, b"two")).await;
    let mut newer = sm.get_snapshot_builder().await;
    newer.build_snapshot().await.unwrap();
    // The build started first finishes last.
    older.build_snapshot().await.unwrap();
    let current = sm
        .get_current_snapshot()
        .await
        .unwrap()
        .expect("a snapshot");
    assert_eq!(current.meta.last_log_id.map(|l| l.index), Some(2));
}

/// A split's child is pending from the split until its node opens it (or
/// gives up on it), so that a create request cannot write over it; and a
/// split writes no child state over a replica created here on request.
#[test]
fn a_split_child_is_pending_until_its_node_settles_it() {
    let (sink, rx) = SplitSink::new();
    let child = |id| SplitChild {
        parent: 1,
        meta: ShardMeta::whole_keyspace(id),
    };
    assert!(sink.begin(9, || false));
    assert!(sink.is_pending(9));
    assert_eq!(
        sink.write_unless_pending(9, || "written"),
        None,
        "a create request must not write a pending child"
    );
    sink.announce(child(9));
    assert!(sink.is_pending(9), "announced, not opened yet");
    sink.settled(9);
    assert!(!sink.is_pending(9));
    assert_eq!(sink.write_unless_pending(9, || "written"), Some("written"));
    // A child with a replica created here gets no child state from a split.
    assert!(!sink.begin(11, || true));
    assert!(!sink.is_pending(11));
    // A node that is stopping (no receiver) opens the child at its next
    // start: nothing stays pending.
    drop(rx);
    assert!(sink.begin(10, || false));
    sink.announce(child(10));
    assert!(!sink.is_pending(10));
}

#[tokio::test]
async fn a_split_at_a_key_longer_than_the_engine_stores_is_rejected_at_apply() {
    let engine: SharedEngine = Arc::new(MemoryEngine::new());
    let mut sm = open(&engine);
    let version = sm
        .meta
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .epoch
        .version;
    let split = |key: Vec<u8>| Request::Split {
        expected_version: version,
        key,
        child: 2,
        child_replicas: Vec::new(),
    };
    let long = vec![b'k'; crate::config::MAX_KEY_BYTES_LIMIT + 1];
    assert_eq!(
        apply_one(&mut sm, 1, split(long.clone())).await,
        Response::Rejected(Rejection::BadSplitKey { key: long })
    );
    let meta = sm.meta.read().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(
        (meta.end, meta.epoch.version),
        (None, version),
        "the shard changed"
    );
    // The longest key a client may be allowed still splits.
    let longest = vec![b'k'; crate::config::MAX_KEY_BYTES_LIMIT];
    assert!(matches!(
        apply_one(&mut sm, 2, split(longest.clone())).await,
        Response::Split { .. }
    ));
    let meta = sm.meta.read().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(meta.end, Some(longest));
}

#[tokio::test]
async fn a_corrupt_received_snapshot_is_refused_before_anything_is_deleted() {
    let engine: SharedEngine = Arc::new(MemoryEngine::new());
    let mut sm = open(&engine);
    apply_one(&mut sm, 1, register(10)).await;
    apply_one(&mut sm, 2, put(1, 1, b"from-snapshot")).await;
    let snap = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let Some((_, StoredSnapshot::Bytes(bytes))) = sm.current_record().unwrap() else {
        panic!("a memory store keeps bytes");
    };

    let other: SharedEngine = Arc::new(MemoryEngine::new());
    let mut batch = WriteBatch::new();
    batch.put(keys::data(b"k"), b"mine".to_vec());
    other.write(batch).unwrap();
    let mut replica = open(&other);
    let buf = |b: Vec<u8>| Box::new(SnapshotBuf::Memory(std::io::Cursor::new(b)));
    let mut flipped = bytes.clone();
    let at = flipped.len() - 12;
    flipped[at] ^= 0x01;
    for bad in [flipped, bytes[..bytes.len() - 9].to_vec()] {
        replica
            .install_snapshot(&snap.meta, buf(bad))
            .await
            .expect_err("a corrupt snapshot");
        assert_eq!(
            value(&other),
            Some(b"mine".to_vec()),
            "its data was touched"
        );
        assert_eq!(
            other.get(&keys::sm_meta(1, SmMeta::Installing)).unwrap(),
            None,
            "a marker would install it again at every start"
        );
    }
    replica
        .install_snapshot(&snap.meta, buf(bytes))
        .await
        .expect("the intact snapshot");
    assert_eq!(value(&other), Some(b"from-snapshot".to_vec()));
}
