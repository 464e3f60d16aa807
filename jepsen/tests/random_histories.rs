//! Randomised checker tests: histories generated from a sequential run of the model are
//! linearizable by construction, whatever concurrency windows are drawn around each op; a
//! corrupted read in them must be caught.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use atoll_jepsen::{check, Anomaly, CheckResult, History, Op, OpKind, OpResult, Outcome};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

struct Shape {
    ops: usize,
    keys: usize,
    /// Each client has one op in flight at a time, so this bounds concurrency.
    clients: u64,
    /// Max time from call to linearization point, and from there to return.
    latency: u64,
    /// Chance that an op times out (half of those take effect).
    indeterminate: f64,
    failed: f64,
    /// Distinct values to write from; `None`: every write writes a fresh one.
    values: Option<u64>,
}

/// Lays out each client's ops in time (call, linearization point, return, then the next call),
/// then runs random ops against a model in linearization-point order. The history is
/// linearizable by construction.
fn generate(seed: u64, shape: &Shape) -> History {
    let mut rng = StdRng::seed_from_u64(seed);
    // (linearization point, call, return, client)
    let mut slots: Vec<(u64, u64, u64, u64)> = Vec::with_capacity(shape.ops);
    let mut next_call: Vec<u64> = (0..shape.clients)
        .map(|_| rng.gen_range(0..=shape.latency))
        .collect();
    while slots.len() < shape.ops {
        let (client, &call) = next_call
            .iter()
            .enumerate()
            .min_by_key(|(_, t)| **t)
            .expect("at least one client");
        let lin = call + rng.gen_range(1..=shape.latency.max(1));
        let ret = lin + rng.gen_range(0..=shape.latency);
        slots.push((lin, call, ret, client as u64));
        next_call[client] = ret + 1 + rng.gen_range(0..=shape.latency / 4);
    }
    slots.sort_unstable();

    let mut model: HashMap<Vec<u8>, Option<Vec<u8>>> = HashMap::new();
    let mut written: Vec<Vec<u8>> = Vec::new();
    let mut ops = Vec::with_capacity(shape.ops);
    for (i, &(_, call, ret, client)) in slots.iter().enumerate() {
        let key = format!("k{}", rng.gen_range(0..shape.keys)).into_bytes();
        let current = model.get(&key).cloned().flatten();
        let fresh = match shape.values {
            None => format!("v{i}"),
            Some(n) => format!("v{}", rng.gen_range(0..n)),
        }
        .into_bytes();
        let kind = match rng.gen_range(0..10) {
            0..=3 => OpKind::Get { key: key.clone() },
            4..=6 => OpKind::put(key.clone(), fresh),
            7 => OpKind::delete(key.clone()),
            _ => {
                let expected = if rng.gen_bool(0.6) || written.is_empty() {
                    current.clone()
                } else {
                    Some(written[rng.gen_range(0..written.len())].clone())
                };
                let new = (!rng.gen_bool(0.1)).then_some(fresh);
                OpKind::cas(key.clone(), expected, new)
            }
        };
        let roll: f64 = rng.gen();
        let (failed, indeterminate) = (
            roll < shape.failed,
            roll >= shape.failed && roll < shape.failed + shape.indeterminate,
        );
        let applies = !failed && (!indeterminate || rng.gen_bool(0.5));
        let mut result = None;
        if applies {
            let slot = model.entry(key).or_default();
            result = Some(match &kind {
                OpKind::Get { .. } => OpResult::Get(slot.clone()),
                OpKind::Put { value, .. } => {
                    *slot = Some(value.clone());
                    written.push(value.clone());
                    OpResult::Put
                }
                OpKind::Delete { .. } => OpResult::delete(slot.take().is_some()),
                OpKind::Cas { expected, new, .. } => {
                    let previous = slot.clone();
                    let succeeded = slot == expected;
                    if succeeded {
                        slot.clone_from(new);
                        written.extend(new.iter().cloned());
                    }
                    OpResult::cas(succeeded, previous)
                }
                OpKind::Txn { .. } => unreachable!("this generator makes no txns"),
            });
        }
        let (ret, outcome) = match result {
            _ if failed => (Some(ret), Outcome::Failed),
            _ if indeterminate => (None, Outcome::Indeterminate),
            Some(result) => (Some(ret), Outcome::Ok(result)),
            None => unreachable!("a completed op applies"),
        };
        ops.push(Op {
            client,
            kind,
            call,
            ret,
            outcome,
        });
    }
    // Record in call order, as a recorder would.
    ops.sort_by_key(|o| o.call);
    History::from_ops(ops).expect("generated ops are well-formed")
}

fn small(clients: u64) -> Shape {
    Shape {
        ops: 200,
        keys: 3,
        clients,
        latency: 20,
        indeterminate: 0.05,
        failed: 0.05,
        values: None,
    }
}

fn completed_reads(h: &History) -> Vec<usize> {
    (0..h.len())
        .filter(|&i| matches!(h.ops()[i].outcome, Outcome::Ok(OpResult::Get(_))))
        .collect()
}

fn with_read_result(h: &History, index: usize, value: Option<Vec<u8>>) -> History {
    let mut ops = h.ops().to_vec();
    ops[index].outcome = Outcome::Ok(OpResult::Get(value));
    History::from_ops(ops).unwrap()
}

#[test]
fn generated_histories_are_linearizable() {
    for seed in 0..300 {
        let h = generate(seed, &small(1 + seed % 8));
        let result = check(&h);
        assert!(result.is_linearizable(), "seed {seed}: {result:?}");
    }
}

#[test]
fn read_of_a_never_written_value_is_always_caught() {
    let mut caught = 0;
    for seed in 0..200 {
        let h = generate(seed, &small(1 + seed % 8));
        let reads = completed_reads(&h);
        let mut rng = StdRng::seed_from_u64(seed);
        let victim = reads[rng.gen_range(0..reads.len())];
        let bad = with_read_result(&h, victim, Some(b"corrupt".to_vec()));
        match check(&bad) {
            CheckResult::NotLinearizable(v) => {
                assert_eq!(Some(v.key.as_slice()), h.ops()[victim].kind.key());
                assert!(matches!(v.anomaly, Anomaly::NeverWritten { .. }), "{v}");
                caught += 1;
            }
            other => panic!("seed {seed}: corrupted read #{victim} not caught: {other:?}"),
        }
    }
    assert_eq!(caught, 200);
}

#[test]
fn mismatched_cas_reporting_a_never_written_value_is_always_caught() {
    let mut tried = 0;
    for seed in 0..200 {
        let h = generate(seed, &small(1 + seed % 8));
        let Some(victim) = (0..h.len()).find(|&i| {
            matches!(
                h.ops()[i].outcome,
                Outcome::Ok(OpResult::Cas {
                    succeeded: false,
                    ..
                })
            )
        }) else {
            continue;
        };
        tried += 1;
        let mut ops = h.ops().to_vec();
        ops[victim].outcome = Outcome::Ok(OpResult::cas(false, Some(b"corrupt".to_vec())));
        match check(&History::from_ops(ops).unwrap()) {
            CheckResult::NotLinearizable(v) => {
                assert!(matches!(v.anomaly, Anomaly::NeverWritten { .. }), "{v}")
            }
            other => panic!("seed {seed}: corrupted previous #{victim} not caught: {other:?}"),
        }
    }
    assert!(tried > 150, "only {tried} histories had a mismatched cas");
}

#[test]
fn sequential_delete_reporting_the_wrong_existed_is_caught() {
    // With one client every op is ordered, so flipping what a delete found is a violation
    // unless a timed-out write (which may land anywhere after its call) explains it.
    let (mut caught, mut tried) = (0, 0);
    for seed in 0..200 {
        let h = generate(seed, &small(1));
        let Some(victim) = (0..h.len())
            .find(|&i| matches!(h.ops()[i].outcome, Outcome::Ok(OpResult::Delete { .. })))
        else {
            continue;
        };
        tried += 1;
        let mut ops = h.ops().to_vec();
        if let Outcome::Ok(OpResult::Delete {
            existed: Some(existed),
        }) = &mut ops[victim].outcome
        {
            *existed = !*existed;
        }
        if check(&History::from_ops(ops).unwrap()).is_violation() {
            caught += 1;
        }
    }
    println!("flipped existed: caught {caught}/{tried}");
    assert!(
        tried > 150 && caught * 10 >= tried * 9,
        "caught {caught}/{tried}"
    );
}

/// Finds a read R (at or after position `from`), a completed write W2 of its key before it in
/// real time, and a completed put W1 before W2; R reading W1's value is then a stale read no
/// interleaving can explain (values are unique).
fn stale_read_candidate(h: &History, from: usize) -> Option<(usize, Vec<u8>)> {
    let ops = h.ops();
    fn before<'a>(ops: &'a [Op], key: &'a [u8], t: u64) -> impl Iterator<Item = &'a Op> {
        ops.iter()
            .filter(move |o| o.kind.key() == Some(key) && o.ret.is_some_and(|r| r < t))
    }
    completed_reads(h)
        .into_iter()
        .filter(|&r| r >= from)
        .find_map(|r| {
            let key = ops[r].kind.key()?;
            let w2 = before(ops, key, ops[r].call)
                .filter(|o| {
                    matches!(
                        o.outcome,
                        Outcome::Ok(
                            OpResult::Put
                                | OpResult::Delete { .. }
                                | OpResult::Cas {
                                    succeeded: true,
                                    ..
                                }
                        )
                    )
                })
                .max_by_key(|o| o.ret)?;
            let w1 = before(ops, key, w2.call)
                .filter(|o| o.outcome == Outcome::Ok(OpResult::Put))
                .max_by_key(|o| o.ret)?;
            match &w1.kind {
                OpKind::Put { value, .. } => Some((r, value.clone())),
                _ => None,
            }
        })
}

#[test]
fn stale_read_is_always_caught() {
    let mut tried = 0;
    for seed in 0..200 {
        let h = generate(seed, &small(1 + seed % 8));
        let Some((r, stale)) = stale_read_candidate(&h, 0) else {
            continue;
        };
        tried += 1;
        let bad = with_read_result(&h, r, Some(stale));
        assert!(
            check(&bad).is_violation(),
            "seed {seed}: stale read #{r} not caught"
        );
    }
    assert!(
        tried > 150,
        "only {tried} histories had a stale-read candidate"
    );
}

#[test]
fn read_of_another_written_value_is_mostly_caught() {
    // Not every such mutation is a violation (the read may overlap the write it now names), so
    // this only asserts a rate, on sequential histories (always caught) and concurrent ones.
    for (clients, min_rate) in [(1, 0.9), (8, 0.5)] {
        let mut caught = 0;
        let mut tried = 0;
        for seed in 0..200 {
            let h = generate(seed, &small(clients));
            let mut rng = StdRng::seed_from_u64(seed ^ 0xbad);
            let reads = completed_reads(&h);
            let victim = reads[rng.gen_range(0..reads.len())];
            let key = h.ops()[victim]
                .kind
                .key()
                .expect("a get has one key")
                .to_vec();
            let Outcome::Ok(OpResult::Get(current)) = &h.ops()[victim].outcome else {
                unreachable!()
            };
            let others: Vec<Vec<u8>> = h
                .ops()
                .iter()
                .filter(|o| {
                    matches!(o.outcome, Outcome::Ok(OpResult::Put))
                        && o.kind.key() == Some(key.as_slice())
                })
                .filter_map(|o| match &o.kind {
                    OpKind::Put { value, .. } if Some(value) != current.as_ref() => {
                        Some(value.clone())
                    }
                    _ => None,
                })
                .collect();
            if others.is_empty() {
                continue;
            }
            tried += 1;
            let value = others[rng.gen_range(0..others.len())].clone();
            if check(&with_read_result(&h, victim, Some(value))).is_violation() {
                caught += 1;
            }
        }
        let rate = f64::from(caught) / f64::from(tried);
        println!("{clients} clients: caught {caught}/{tried}");
        assert!(
            tried > 100 && rate >= min_rate,
            "{clients} clients: caught {caught}/{tried}"
        );
    }
}

fn timed_check(h: &History) -> (CheckResult, Duration) {
    let start = Instant::now();
    let result = check(h);
    (result, start.elapsed())
}

#[test]
fn thousands_of_ops_on_one_key_with_dozens_indeterminate() {
    let shape = Shape {
        ops: 4000,
        keys: 1,
        clients: 10,
        latency: 100,
        indeterminate: 0.015,
        failed: 0.01,
        values: None,
    };
    for seed in 0..3 {
        let h = generate(seed, &shape);
        let indeterminate = h
            .ops()
            .iter()
            .filter(|o| o.outcome == Outcome::Indeterminate)
            .count();
        assert!(indeterminate >= 30, "{indeterminate}");
        let (result, took) = timed_check(&h);
        println!(
            "seed {seed}: {} ops, {indeterminate} indeterminate: {took:?}",
            h.len()
        );
        assert!(result.is_linearizable(), "seed {seed}: {result:?}");
        if !cfg!(debug_assertions) {
            assert!(
                took < Duration::from_millis(500),
                "seed {seed}: took {took:?}"
            );
        }

        // A corrupted read and a stale read in the middle are found as fast.
        let reads = completed_reads(&h);
        let corrupted = with_read_result(&h, reads[reads.len() / 2], Some(b"corrupt".to_vec()));
        let (r, value) = stale_read_candidate(&h, h.len() / 2).expect("a stale-read candidate");
        let stale = with_read_result(&h, r, Some(value));
        for (name, bad) in [("corrupted", corrupted), ("stale", stale)] {
            let (result, took) = timed_check(&bad);
            println!("seed {seed}: {name}: {took:?}");
            assert!(result.is_violation(), "seed {seed}: {name}: {result:?}");
            if !cfg!(debug_assertions) {
                assert!(
                    took < Duration::from_millis(500),
                    "seed {seed}: {name}: took {took:?}"
                );
            }
        }
    }
}

#[test]
fn many_keys_many_ops() {
    let shape = Shape {
        ops: 20_000,
        keys: 50,
        clients: 20,
        latency: 100,
        indeterminate: 0.02,
        failed: 0.02,
        values: None,
    };
    let h = generate(7, &shape);
    let (result, took) = timed_check(&h);
    println!("{} ops on 50 keys: {took:?}", h.len());
    assert!(result.is_linearizable(), "{result:?}");
    if !cfg!(debug_assertions) {
        assert!(took < Duration::from_secs(1), "took {took:?}");
    }
}

/// A wider sweep of shapes on one key, timing clean histories and mutated ones (a stale read
/// where values are unique, else a read of a value nobody wrote); run with `--ignored`.
#[test]
#[ignore = "slow sweep, for tuning the checker"]
fn sweep_shapes() {
    let shapes = [
        (5, 0.02, None),
        (10, 0.015, None),
        (10, 0.05, None),
        (20, 0.02, None),
        (50, 0.01, None),
        (10, 0.015, Some(5)),
        (10, 0.05, Some(20)),
        (20, 0.02, Some(3)),
    ];
    for (clients, indeterminate, values) in shapes {
        let shape = Shape {
            ops: 4000,
            keys: 1,
            clients,
            latency: 100,
            indeterminate,
            failed: 0.01,
            values,
        };
        let (mut clean_worst, mut bad_worst) = (Duration::ZERO, Duration::ZERO);
        let (mut unknown, mut missed) = (0, 0);
        for seed in 0..20 {
            let h = generate(seed, &shape);
            let (result, took) = timed_check(&h);
            assert!(!result.is_violation(), "seed {seed}: {result:?}");
            unknown += usize::from(!result.is_linearizable());
            clean_worst = clean_worst.max(took);
            let bad = match (values, stale_read_candidate(&h, h.len() / 2)) {
                (None, Some((r, value))) => with_read_result(&h, r, Some(value)),
                _ => {
                    let reads = completed_reads(&h);
                    with_read_result(&h, reads[reads.len() / 2], Some(b"corrupt".to_vec()))
                }
            };
            let (result, took) = timed_check(&bad);
            assert!(!result.is_linearizable(), "seed {seed}: mutation passed");
            missed += usize::from(!result.is_violation());
            bad_worst = bad_worst.max(took);
        }
        println!(
            "clients {clients} indeterminate {indeterminate} values {values:?}: worst clean \
             {clean_worst:?} ({unknown} unknown), worst mutated {bad_worst:?} ({missed} unknown)"
        );
    }
}
