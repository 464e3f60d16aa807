//! The checker against a brute-force one on many small random histories, linearizable or not.
//! Every shortcut of the checker (pruning, merging, static proofs, search cuts) must agree with
//! plainly trying every order, with and without the reports of what writes found (a delete's
//! `existed`, a cas's `previous`).

use atoll_jepsen::{check, History, Op, OpKind, OpResult, Outcome};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

type Value = Option<Vec<u8>>;

/// Tries every order of the ops (every subset of the indeterminate ones) on one register.
fn brute_force(ops: &[Op]) -> bool {
    let ops: Vec<&Op> = ops
        .iter()
        .filter(|o| !matches!(o.outcome, Outcome::Failed))
        .collect();
    let mut placed = vec![false; ops.len()];
    search(&ops, &mut placed, None)
}

fn search(ops: &[&Op], placed: &mut [bool], state: Value) -> bool {
    // Done when every completed op is placed; leftover indeterminate ops never happened.
    if (0..ops.len()).all(|i| placed[i] || ops[i].outcome == Outcome::Indeterminate) {
        return true;
    }
    for x in 0..ops.len() {
        // Everything that returned before x was called must already be placed.
        let blocked = (0..ops.len()).any(|y| {
            !placed[y]
                && y != x
                && ops[y].outcome != Outcome::Indeterminate
                && ops[y].ret.unwrap() < ops[x].call
        });
        if placed[x] || blocked {
            continue;
        }
        let Some(next) = step(ops[x], &state) else {
            continue;
        };
        placed[x] = true;
        let ok = search(ops, placed, next);
        placed[x] = false;
        if ok {
            return true;
        }
    }
    false
}

fn step(op: &Op, state: &Value) -> Option<Value> {
    let result = match &op.outcome {
        Outcome::Ok(r) => Some(r),
        _ => None,
    };
    match (&op.kind, result) {
        (OpKind::Get { .. }, Some(OpResult::Get(v))) => (v == state).then(|| state.clone()),
        (OpKind::Get { .. }, _) => Some(state.clone()),
        (OpKind::Put { value, .. }, _) => Some(Some(value.clone())),
        (OpKind::Delete { .. }, Some(OpResult::Delete { existed: Some(e) }))
            if *e != state.is_some() =>
        {
            None
        }
        (OpKind::Delete { .. }, _) => Some(None),
        (OpKind::Cas { expected, new, .. }, result) => {
            let matches = state == expected;
            match result {
                Some(OpResult::Cas { succeeded, .. }) if *succeeded != matches => None,
                Some(OpResult::Cas {
                    previous: Some(p), ..
                }) if p != state => None,
                _ if matches => Some(new.clone()),
                _ => Some(state.clone()),
            }
        }
        (OpKind::Txn { .. }, _) => unreachable!("these histories hold no txns"),
    }
}

fn random_history(rng: &mut StdRng) -> History {
    let alphabet = [
        None,
        Some(b"a".to_vec()),
        Some(b"b".to_vec()),
        Some(b"c".to_vec()),
    ];
    let value = |rng: &mut StdRng| alphabet[rng.gen_range(0..alphabet.len())].clone();
    let present = |rng: &mut StdRng| alphabet[rng.gen_range(1..alphabet.len())].clone().unwrap();
    let n = rng.gen_range(1..=9);
    let ops = (0..n)
        .map(|i| {
            let call = rng.gen_range(0..20);
            let ret = call + rng.gen_range(0..8);
            let (kind, result) = match rng.gen_range(0..4) {
                0 => (OpKind::get("k"), OpResult::Get(value(rng))),
                1 => (OpKind::put("k", present(rng)), OpResult::Put),
                // Reports of what a write found: sometimes missing, as in older histories.
                2 => (
                    OpKind::delete("k"),
                    OpResult::Delete {
                        existed: rng.gen_bool(0.7).then(|| rng.gen_bool(0.5)),
                    },
                ),
                _ => (
                    OpKind::cas("k", value(rng), value(rng)),
                    OpResult::Cas {
                        succeeded: rng.gen_bool(0.5),
                        previous: rng.gen_bool(0.5).then(|| value(rng)),
                    },
                ),
            };
            let (ret, outcome) = match rng.gen_range(0..10) {
                0 | 1 => (None, Outcome::Indeterminate),
                2 => (Some(ret), Outcome::Failed),
                _ => (Some(ret), Outcome::Ok(result)),
            };
            Op {
                client: i,
                kind,
                call,
                ret,
                outcome,
            }
        })
        .collect();
    History::from_ops(ops).unwrap()
}

#[test]
fn agrees_with_brute_force_on_random_small_histories() {
    let mut rng = StdRng::seed_from_u64(0x11ea);
    let (mut linearizable, mut not) = (0, 0);
    for i in 0..50_000 {
        let h = random_history(&mut rng);
        let expected = brute_force(h.ops());
        let got = check(&h);
        assert!(
            !matches!(got, atoll_jepsen::CheckResult::Unknown { .. }),
            "#{i}"
        );
        assert_eq!(
            got.is_linearizable(),
            expected,
            "history #{i}:\n{}\nchecker: {got:?}",
            h.ops()
                .iter()
                .map(|o| format!("  {o}\n"))
                .collect::<String>()
        );
        if expected {
            linearizable += 1;
        } else {
            not += 1;
        }
    }
    println!("{linearizable} linearizable, {not} not");
    assert!(
        linearizable > 5_000 && not > 5_000,
        "{linearizable} / {not}"
    );
}
