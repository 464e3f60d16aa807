//! Checker tests for what writes report having found: a delete's `existed` and a cas's
//! `previous` must hold where the op linearizes. Each rejected history here is linearizable
//! once those reports are dropped (as older histories lack them), so it is the report that
//! catches it: a retried write applied twice answers with what its second application found.

mod common;

use atoll_jepsen::{Anomaly, CheckResult, Op, OpKind, OpResult, Outcome};
use common::{assert_linearizable, b, get, indeterminate, op, put, verdict};

/// A delete that reported whether the key `existed`.
fn del(client: u64, call: u64, ret: u64, existed: bool) -> Op {
    let result = OpResult::delete(existed);
    op(client, OpKind::delete("k"), call, ret, result)
}

/// A cas that reported whether it `ok` (succeeded) and the value it saw (`was`).
fn cas(
    client: u64,
    (call, ret): (u64, u64),
    expected: Option<&str>,
    new: Option<&str>,
    ok: bool,
    was: Option<&str>,
) -> Op {
    let kind = OpKind::cas("k", expected.map(b), new.map(b));
    op(client, kind, call, ret, OpResult::cas(ok, was.map(b)))
}

/// The same ops with `existed` and `previous` dropped.
fn unreported(ops: &[Op]) -> Vec<Op> {
    let mut ops = ops.to_vec();
    for o in &mut ops {
        match &mut o.outcome {
            Outcome::Ok(OpResult::Delete { existed }) => *existed = None,
            Outcome::Ok(OpResult::Cas { previous, .. }) => *previous = None,
            _ => {}
        }
    }
    ops
}

/// A violation that only the reports reveal.
#[track_caller]
fn assert_caught_by_reports(ops: Vec<Op>) -> Anomaly {
    let without = verdict(unreported(&ops));
    assert!(
        without.is_linearizable(),
        "linearizable without reports: {without:?}"
    );
    match verdict(ops) {
        CheckResult::NotLinearizable(v) => {
            println!("{v}");
            v.anomaly
        }
        other => panic!("expected a violation, got {other:?}"),
    }
}

// ---- delete: existed ----

#[test]
fn deletes_reporting_what_they_found() {
    assert_linearizable(vec![
        del(1, 0, 1, false),
        put(1, 2, 3, "a"),
        del(2, 4, 5, true),
        del(2, 6, 7, false),
    ]);
    // Concurrent with a put, a delete may have come first (found nothing) or second.
    for existed in [false, true] {
        assert_linearizable(vec![put(1, 0, 10, "a"), del(2, 5, 15, existed)]);
    }
}

#[test]
fn delete_found_a_value_where_the_key_was_absent() {
    assert_caught_by_reports(vec![del(1, 0, 1, true)]);
    // The second of two deletes, a retry applied twice, say, cannot find the key again.
    assert_caught_by_reports(vec![
        put(1, 0, 10, "a"),
        del(1, 20, 30, true),
        del(2, 40, 50, true),
    ]);
}

#[test]
fn delete_found_nothing_where_the_key_was_present() {
    assert_caught_by_reports(vec![put(1, 0, 10, "a"), del(2, 20, 30, false)]);
    // Having found nothing, the delete came before the concurrent put, so the put's value
    // stays.
    assert_caught_by_reports(vec![
        put(1, 0, 10, "a"),
        del(2, 5, 15, false),
        get(3, 20, 30, None),
    ]);
}

#[test]
fn delete_that_found_a_value_needs_an_unread_timed_out_write() {
    // Nobody read "u", but the delete found the key present: the write happened. The write
    // must not be dropped as unobservable.
    let ops = vec![indeterminate(put(1, 0, 10, "u")), del(2, 20, 30, true)];
    assert_linearizable(ops.clone());
    let anomaly = assert_caught_by_reports(vec![ops[1].clone()]);
    assert!(matches!(anomaly, Anomaly::NoLinearization { .. }));
}

// ---- cas: previous ----

#[test]
fn cas_reporting_what_it_saw() {
    assert_linearizable(vec![
        cas(1, (0, 1), Some("x"), Some("y"), false, None),
        cas(1, (2, 3), None, Some("a"), true, None),
        cas(2, (4, 5), Some("x"), Some("y"), false, Some("a")),
        cas(2, (6, 7), Some("a"), None, true, Some("a")),
        get(1, 8, 9, None),
    ]);
}

#[test]
fn mismatched_cas_saw_an_overwritten_value() {
    let anomaly = assert_caught_by_reports(vec![
        put(1, 0, 10, "a"),
        put(1, 20, 30, "b"),
        cas(2, (40, 50), Some("x"), Some("y"), false, Some("a")),
    ]);
    assert!(
        matches!(anomaly, Anomaly::Overwritten { .. }),
        "{anomaly:?}"
    );
}

#[test]
fn mismatched_cas_saw_absence_where_the_key_was_present() {
    assert_caught_by_reports(vec![
        put(1, 0, 10, "a"),
        cas(2, (20, 30), Some("x"), Some("y"), false, None),
    ]);
}

#[test]
fn cas_applied_twice_sees_its_own_value() {
    // A retried cas applied twice: the first application swapped "a" for "b", the second
    // found "b" and answered "mismatch, was b". A concurrent put lets the plain mismatch fit;
    // "was b" does not: only the cas itself could have written "b".
    let anomaly = assert_caught_by_reports(vec![
        put(1, 0, 10, "a"),
        put(3, 15, 25, "c"),
        cas(2, (20, 30), Some("a"), Some("b"), false, Some("b")),
    ]);
    match anomaly {
        // The cas itself is the reader, and the only op asking to write "b".
        Anomaly::NeverWritten { reader, asked } => {
            assert_eq!(reader.index, 2);
            assert!(asked.is_empty(), "{asked:?}");
        }
        other => panic!("{other:?}"),
    }
    // A read of the first application's "b" (a violation with or without reports) names
    // the cas as the op that asked to write it.
    let ops = vec![
        put(1, 0, 10, "a"),
        cas(2, (20, 30), Some("a"), Some("b"), false, Some("b")),
        get(4, 22, 24, Some("b")),
    ];
    match verdict(ops) {
        CheckResult::NotLinearizable(v) => match v.anomaly {
            Anomaly::NeverWritten { reader, asked } => {
                assert_eq!(reader.index, 2);
                assert_eq!(asked.iter().map(|o| o.index).collect::<Vec<_>>(), [1]);
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn cas_whose_previous_contradicts_its_result() {
    // Succeeded though it saw "z" or absence, or mismatched though it saw "a", the value it
    // expected. Without the report, only the mismatch is a violation.
    for (ok, was) in [(true, Some("z")), (true, None), (false, Some("a"))] {
        let ops = vec![
            put(1, 0, 10, "a"),
            cas(2, (20, 30), Some("a"), Some("b"), ok, was),
        ];
        match verdict(ops.clone()) {
            CheckResult::NotLinearizable(v) => {
                assert!(
                    matches!(v.anomaly, Anomaly::ContradictoryReply { .. }),
                    "{v}"
                );
            }
            other => panic!("{ok} {was:?}: {other:?}"),
        }
        let without = verdict(unreported(&ops));
        assert_eq!(without.is_linearizable(), ok, "{ok} {was:?}: {without:?}");
    }
}

#[test]
fn a_value_seen_only_through_previous_counts_as_observed() {
    // The timed-out put of "b" is seen by the mismatched cas, so it happened, before the cas
    // returned: it cannot be dropped as unobservable, and a later read of "b" after "c"
    // overwrote it is stale.
    let seen = vec![
        indeterminate(put(1, 0, 10, "b")),
        cas(2, (20, 30), Some("x"), Some("y"), false, Some("b")),
    ];
    assert_linearizable(seen.clone());
    let mut stale = seen;
    stale.push(put(3, 40, 50, "c"));
    stale.push(get(4, 60, 70, Some("b")));
    let anomaly = assert_caught_by_reports(stale);
    assert!(
        matches!(anomaly, Anomaly::Overwritten { .. }),
        "{anomaly:?}"
    );
}
