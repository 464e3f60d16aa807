//! Checker tests on small hand-written histories: ones that are linearizable, and known
//! anomalies that must be reported.

mod common;

use atoll_jepsen::{
    check, check_with, Anomaly, CheckOptions, CheckResult, History, Op, OpKind, OpResult, Outcome,
};
use common::{assert_linearizable, b, get, indeterminate, op, put, verdict};

fn del(client: u64, call: u64, ret: u64) -> Op {
    // Without `existed`, as older histories recorded it (see reported_results.rs).
    op(
        client,
        OpKind::delete("k"),
        call,
        ret,
        OpResult::Delete { existed: None },
    )
}

fn cas(
    client: u64,
    call: u64,
    ret: u64,
    expected: Option<&str>,
    new: Option<&str>,
    ok: bool,
) -> Op {
    let kind = OpKind::cas("k", expected.map(b), new.map(b));
    let result = OpResult::Cas {
        succeeded: ok,
        previous: None,
    };
    op(client, kind, call, ret, result)
}

fn failed(mut op: Op) -> Op {
    op.outcome = Outcome::Failed;
    op
}

fn on(key: &str, mut op: Op) -> Op {
    match &mut op.kind {
        OpKind::Get { key: k }
        | OpKind::Put { key: k, .. }
        | OpKind::Delete { key: k }
        | OpKind::Cas { key: k, .. } => *k = b(key),
        OpKind::Txn { .. } => unreachable!("these tests make no txns"),
    }
    op
}

fn indices(ops: &[atoll_jepsen::IndexedOp]) -> Vec<usize> {
    ops.iter().map(|o| o.index).collect()
}

#[track_caller]
fn assert_violation(ops: Vec<Op>) -> atoll_jepsen::Violation {
    match verdict(ops) {
        CheckResult::NotLinearizable(v) => *v,
        other => panic!("expected a violation, got {other:?}"),
    }
}

// ---- linearizable ----

#[test]
fn empty_history() {
    assert_linearizable(vec![]);
}

#[test]
fn sequential_ops_of_every_kind() {
    assert_linearizable(vec![
        get(1, 0, 1, None),
        put(1, 2, 3, "a"),
        get(2, 4, 5, Some("a")),
        cas(1, 6, 7, Some("a"), Some("b"), true),
        cas(2, 8, 9, Some("a"), Some("c"), false),
        get(1, 10, 11, Some("b")),
        cas(2, 12, 13, Some("b"), None, true),
        get(1, 14, 15, None),
        cas(2, 16, 17, None, Some("d"), true),
        del(1, 18, 19),
        cas(2, 20, 21, Some("d"), Some("e"), false),
        get(2, 22, 23, None),
    ]);
}

#[test]
fn concurrent_writes_with_reads_seeing_either() {
    // Two overlapping puts; reads inside the overlap may see them in either order, as long as
    // all readers agree on one order.
    for (first, second) in [("a", "b"), ("b", "a")] {
        assert_linearizable(vec![
            put(1, 0, 100, "a"),
            put(2, 0, 100, "b"),
            get(3, 10, 20, Some(first)),
            get(4, 30, 40, Some(second)),
            get(3, 110, 120, Some(second)),
        ]);
    }
    // A read overlapping a put may see the old or the new value.
    assert_linearizable(vec![
        put(1, 0, 10, "a"),
        put(2, 20, 40, "b"),
        get(3, 25, 30, Some("a")),
    ]);
    assert_linearizable(vec![
        put(1, 0, 10, "a"),
        put(2, 20, 40, "b"),
        get(3, 25, 30, Some("b")),
    ]);
}

#[test]
fn writes_linearized_in_reverse_call_order() {
    assert_linearizable(vec![
        put(0, 0, 100, "1"),
        put(1, 1, 100, "2"),
        put(2, 2, 100, "3"),
        get(3, 10, 20, Some("3")),
        get(3, 30, 40, Some("2")),
        get(3, 50, 60, Some("1")),
    ]);
}

#[test]
fn equal_times_count_as_concurrent() {
    assert_linearizable(vec![
        put(1, 5, 5, "a"),
        get(2, 5, 5, None),
        get(3, 5, 6, Some("a")),
    ]);
}

#[test]
fn indeterminate_write_that_happened() {
    // The put timed out, yet took effect, even long after the client gave up.
    assert_linearizable(vec![
        put(1, 0, 10, "a"),
        indeterminate(put(2, 20, 30, "b")),
        get(3, 40, 50, Some("a")),
        get(3, 1000, 1010, Some("b")),
        get(4, 1020, 1030, Some("b")),
    ]);
    // Same for a timed-out delete and cas.
    assert_linearizable(vec![
        put(1, 0, 10, "a"),
        indeterminate(del(2, 20, 30)),
        get(3, 40, 50, None),
    ]);
    assert_linearizable(vec![
        put(1, 0, 10, "a"),
        indeterminate(cas(2, 20, 30, Some("a"), Some("c"), true)),
        get(3, 40, 50, Some("c")),
    ]);
}

#[test]
fn indeterminate_write_that_did_not_happen() {
    assert_linearizable(vec![
        put(1, 0, 10, "a"),
        indeterminate(put(2, 20, 30, "b")),
        get(3, 40, 50, Some("a")),
        get(3, 60, 70, Some("a")),
    ]);
    assert_linearizable(vec![
        put(1, 0, 10, "a"),
        indeterminate(cas(2, 20, 30, Some("a"), Some("c"), true)),
        get(3, 40, 50, Some("a")),
        cas(3, 60, 70, Some("a"), Some("d"), true),
        get(3, 80, 90, Some("d")),
    ]);
}

#[test]
fn indeterminate_write_seen_then_overwritten() {
    assert_linearizable(vec![
        indeterminate(put(1, 0, 10, "a")),
        get(2, 20, 30, Some("a")),
        put(3, 40, 50, "b"),
        get(2, 60, 70, Some("b")),
    ]);
}

#[test]
fn failed_ops_are_ignored() {
    assert_linearizable(vec![
        put(1, 0, 10, "a"),
        failed(put(2, 20, 30, "b")),
        failed(del(2, 31, 32)),
        get(3, 40, 50, Some("a")),
    ]);
}

#[test]
fn keys_are_independent() {
    // Per key fine, though a single register could not explain it.
    assert_linearizable(vec![
        on("x", put(1, 0, 10, "1")),
        on("y", put(2, 0, 10, "2")),
        on("x", get(3, 20, 30, Some("1"))),
        on("y", get(3, 20, 30, Some("2"))),
        on("z", get(4, 20, 30, None)),
    ]);
}

#[test]
fn mismatched_cas_with_a_concurrent_write() {
    // The cas may be linearized after "b" overwrote "a".
    assert_linearizable(vec![
        put(1, 0, 10, "a"),
        put(2, 20, 40, "b"),
        cas(3, 25, 30, Some("a"), Some("c"), false),
        get(1, 50, 60, Some("b")),
    ]);
}

// ---- not linearizable ----

/// The parts of a violation the search found: prefix, state, pending, deadline, starved.
type Found = (Vec<usize>, Option<Vec<u8>>, Vec<usize>, usize, Vec<usize>);

#[track_caller]
fn assert_search_violation(ops: Vec<Op>) -> Found {
    match assert_violation(ops).anomaly {
        Anomaly::NoLinearization {
            prefix,
            state,
            pending,
            deadline,
            starved,
        } => (
            indices(&prefix),
            state,
            indices(&pending),
            deadline.index,
            indices(&starved),
        ),
        other => panic!("expected the search to find it, got {other:?}"),
    }
}

#[test]
fn stale_read_after_completed_write() {
    let v = assert_violation(vec![
        put(1, 0, 10, "a"),
        put(2, 20, 30, "b"),
        get(3, 40, 50, Some("a")),
    ]);
    assert_eq!(v.key, b("k"));
    let Anomaly::Overwritten {
        write,
        overwrite,
        reader,
    } = &v.anomaly
    else {
        panic!("{v:?}")
    };
    assert_eq!((write.index, overwrite.index, reader.index), (0, 1, 2));
    let text = v.to_string();
    assert!(text.contains("#2 c3 get(\"k\") [40, 50] = \"a\""), "{text}");

    // With "a" written again after the read, only the search can tell.
    let (prefix, state, pending, deadline, starved) = assert_search_violation(vec![
        put(1, 0, 10, "a"),
        put(2, 20, 30, "b"),
        get(3, 40, 50, Some("a")),
        put(1, 60, 70, "a"),
    ]);
    assert_eq!(prefix, [0, 1]);
    assert_eq!(state, Some(b("b")));
    assert_eq!(pending, [2]);
    assert_eq!(deadline, 2);
    assert!(starved.is_empty());
}

#[test]
fn read_of_a_value_never_written() {
    for ops in [
        vec![put(1, 0, 10, "a"), get(2, 20, 30, Some("zzz"))],
        vec![get(2, 0, 1, Some("zzz"))],
        // A failed put's value counts as never written.
        vec![failed(put(1, 0, 10, "zzz")), get(2, 20, 30, Some("zzz"))],
    ] {
        let read = ops.len() - 1;
        match assert_violation(ops).anomaly {
            Anomaly::NeverWritten { reader, .. } => assert_eq!(reader.index, read),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn read_sees_a_write_that_started_after_the_read_completed() {
    for ops in [
        vec![get(1, 0, 10, Some("a")), put(2, 20, 30, "a")],
        vec![
            put(2, 0, 5, "x"),
            get(1, 10, 20, Some("a")),
            indeterminate(put(2, 30, 40, "a")),
        ],
    ] {
        assert!(matches!(
            assert_violation(ops).anomaly,
            Anomaly::NeverWritten { .. }
        ));
    }
}

#[test]
fn reads_observing_the_order_flip() {
    // Reader 3 sees a then b; reader 4, later, sees b then a.
    assert_search_violation(vec![
        put(1, 0, 100, "a"),
        put(2, 0, 100, "b"),
        get(3, 10, 20, Some("a")),
        get(3, 30, 40, Some("b")),
        get(4, 50, 60, Some("b")),
        get(4, 70, 80, Some("a")),
    ]);
    // Sequentially consistent but not linearizable: the reads do not overlap.
    assert_search_violation(vec![
        put(1, 0, 100, "a"),
        get(2, 10, 20, Some("a")),
        get(3, 30, 40, None),
    ]);
}

#[test]
fn lost_cas_both_succeed_with_the_same_expected_value() {
    let v = assert_violation(vec![
        put(1, 0, 10, "a"),
        cas(2, 20, 40, Some("a"), Some("b"), true),
        cas(3, 20, 40, Some("a"), Some("c"), true),
    ]);
    let Anomaly::ReplacedTwice {
        write,
        first,
        second,
    } = &v.anomaly
    else {
        panic!("{v:?}")
    };
    assert_eq!((write.index, first.index, second.index), (0, 1, 2));

    // The same with "a" written again later: found by the search.
    let (prefix, state, pending, deadline, _) = assert_search_violation(vec![
        put(1, 0, 10, "a"),
        cas(2, 20, 40, Some("a"), Some("b"), true),
        cas(3, 20, 40, Some("a"), Some("c"), true),
        put(1, 100, 110, "a"),
    ]);
    assert_eq!(prefix, [0, 1]);
    assert_eq!(state, Some(b("b")));
    assert_eq!((pending, deadline), (vec![2], 2));
}

#[test]
fn mismatched_cas_while_the_value_matched() {
    assert_search_violation(vec![
        put(1, 0, 10, "a"),
        cas(2, 20, 30, Some("a"), Some("b"), false),
    ]);
    assert_search_violation(vec![cas(2, 0, 1, None, Some("b"), false)]);
}

#[test]
fn read_after_delete_sees_old_value() {
    let v = assert_violation(vec![
        put(1, 0, 10, "a"),
        del(1, 20, 30),
        get(2, 40, 50, Some("a")),
    ]);
    assert!(matches!(v.anomaly, Anomaly::Overwritten { .. }), "{v:?}");
    // Reading "no value" after a completed put: only the search sees it (absence has many
    // writers, the initial state among them).
    let (prefix, _, pending, deadline, _) = assert_search_violation(vec![
        del(1, 0, 10),
        put(1, 20, 30, "a"),
        get(2, 40, 50, None),
    ]);
    assert_eq!((prefix, pending, deadline), (vec![0], vec![1], 1));
}

#[test]
fn indeterminate_write_seen_then_undone() {
    // Once a read saw "b", a later read cannot see the older "a" again.
    let v = assert_violation(vec![
        put(1, 0, 10, "a"),
        indeterminate(put(2, 20, 30, "b")),
        get(3, 40, 50, Some("b")),
        get(3, 60, 70, Some("a")),
    ]);
    assert!(matches!(v.anomaly, Anomaly::Overwritten { .. }), "{v:?}");
    let text = v.to_string();
    assert!(
        text.contains("#1 c2 put(\"k\", \"b\") [20, -] indeterminate"),
        "{text}"
    );
}

#[test]
fn violation_reported_for_the_bad_key_only() {
    let v = assert_violation(vec![
        on("good", put(1, 0, 10, "a")),
        on("bad", put(1, 0, 10, "a")),
        on("good", get(2, 20, 30, Some("a"))),
        on("bad", get(2, 20, 30, None)),
    ]);
    assert_eq!(v.key, b("bad"));
    let Anomaly::NoLinearization {
        pending, starved, ..
    } = &v.anomaly
    else {
        panic!("{v:?}")
    };
    assert_eq!((indices(pending), indices(starved)), (vec![1], vec![3]));
}

#[test]
fn budget_exceeded_gives_unknown() {
    // Twelve concurrent puts, then reads of two different ones: many orders to rule out.
    let mut ops = vec![];
    for i in 0..12 {
        ops.push(put(i, 0, 1000, &i.to_string()));
    }
    ops.push(get(99, 2000, 2001, Some("3")));
    ops.push(get(99, 2002, 2003, Some("5")));
    let history = History::from_ops(ops).unwrap();
    let tight = CheckOptions {
        max_steps_per_key: 100,
        ..CheckOptions::default()
    };
    assert_eq!(
        check_with(&history, &tight),
        CheckResult::Unknown { keys: vec![b("k")] }
    );
    assert!(check(&history).is_violation());
}
