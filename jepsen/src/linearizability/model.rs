//! The register model of one key, and the preparation of that key's ops for the search.
//!
//! Values are interned to small integers. What a write reports having found is part of its step:
//! a delete that found the key absent is a read of absence, one that found it present needs some
//! present value ([`Step::DeleteExisting`]), and a mismatched cas that reports the value it saw is
//! a read of that value. (A cas whose report contradicts itself is rejected before preparation,
//! see [`contradicts_itself`].) Preparation then removes freedom the search would otherwise
//! explore in vain, without changing the verdict:
//! 1. failed ops and indeterminate gets are dropped: they constrain nothing;
//! 2. an indeterminate write whose value was observed is given a return time (see
//!    [`bound_observed`]);
//! 3. an indeterminate write whose value nobody could observe is dropped (see
//!    [`prune_unobservable`]);
//! 4. values no op can tell apart are merged into one (see [`merge_unobservable`]);
//! 5. ops with identical steps are chained (see [`KeyOp::twin_before`]).

use std::collections::{HashMap, HashSet};

use crate::history::{Op, OpKind, OpResult, Outcome};

/// An interned register value: [`ABSENT`] is `None`, others index a key's distinct values.
pub(super) type Val = u32;
pub(super) const ABSENT: Val = 0;
/// Stands for every present value that no get returned and no cas expected.
pub(super) const UNSEEN: Val = Val::MAX;

/// The model transition of one op.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Step {
    Read(Val),
    Write(Val),
    CasOk {
        expected: Val,
        new: Val,
    },
    /// A cas that did not swap and did not report what it saw (older histories).
    CasMismatch {
        expected: Val,
    },
    /// A delete that found the key present: needs any present value, leaves it absent.
    DeleteExisting,
    /// An indeterminate cas: applies iff the comparison holds. One that did not apply is the
    /// same as one linearized after everything else, which the search also tries.
    CasMaybe {
        expected: Val,
        new: Val,
    },
}

impl Step {
    /// The state after this op, or `None` if the op cannot happen in `state`.
    pub(super) fn apply(self, state: Val) -> Option<Val> {
        match self {
            Step::Read(v) => (v == state).then_some(state),
            Step::Write(v) => Some(v),
            Step::CasOk { expected, new } => (expected == state).then_some(new),
            Step::CasMismatch { expected } => (expected != state).then_some(state),
            Step::DeleteExisting => (state != ABSENT).then_some(ABSENT),
            Step::CasMaybe { expected, new } => Some(if expected == state { new } else { state }),
        }
    }

    /// The value this op may write, `ABSENT` included.
    pub(super) fn writes(self) -> Option<Val> {
        match self {
            Step::Write(v) | Step::CasOk { new: v, .. } | Step::CasMaybe { new: v, .. } => Some(v),
            Step::DeleteExisting => Some(ABSENT),
            Step::Read(_) | Step::CasMismatch { .. } => None,
        }
    }

    /// The value the state must hold for this op to fit, if one.
    pub(super) fn needs(self) -> Option<Val> {
        match self {
            Step::Read(v) | Step::CasOk { expected: v, .. } => Some(v),
            Step::Write(_)
            | Step::CasMismatch { .. }
            | Step::DeleteExisting
            | Step::CasMaybe { .. } => None,
        }
    }

    /// Apply `f` to every value this op names.
    fn map_values(&mut self, mut f: impl FnMut(Val) -> Val) {
        match self {
            Step::Read(v) | Step::Write(v) | Step::CasMismatch { expected: v } => *v = f(*v),
            Step::CasOk { expected, new } | Step::CasMaybe { expected, new } => {
                *expected = f(*expected);
                *new = f(*new);
            }
            Step::DeleteExisting => {}
        }
    }

    /// The value this op may write, if it writes a present one.
    fn written(self) -> Option<Val> {
        match self {
            Step::Write(v) | Step::CasOk { new: v, .. } | Step::CasMaybe { new: v, .. } => {
                (v != ABSENT).then_some(v)
            }
            Step::Read(_) | Step::CasMismatch { .. } | Step::DeleteExisting => None,
        }
    }
}

/// One op of a key's sub-history, ready for the search.
#[derive(Clone, Copy, Debug)]
pub(super) struct KeyOp {
    /// Position in the whole history.
    pub(super) index: usize,
    pub(super) call: u64,
    /// `u64::MAX` while indeterminate.
    pub(super) ret: u64,
    pub(super) step: Step,
    /// The op number of the previous op with the same step, in (return, call) order, if any.
    /// Twins are interchangeable: if both could be linearized next and a linearization takes
    /// the later one first, swapping the two keeps it valid (the earlier one is already called,
    /// and the later one returns no sooner). So the search skips an op while its twin before it
    /// could be taken instead; a set of timed-out writes of never-read values, say, then counts
    /// as a number rather than a subset.
    pub(super) twin_before: Option<usize>,
}

impl KeyOp {
    pub(super) fn indeterminate(&self) -> bool {
        self.ret == u64::MAX
    }
}

/// A key's ops, completed ones first, naming values `0..values` (`ABSENT` is 0).
pub(super) struct Prepared {
    pub(super) ops: Vec<KeyOp>,
    /// `ops[..completed]` return; `ops[completed..]` are indeterminate.
    pub(super) completed: usize,
    pub(super) values: usize,
}

/// Whether a cas's reply contradicts itself: the value it reports having compared against
/// equals `expected` though it did not swap, or differs though it did. No state fits such an op.
pub(super) fn contradicts_itself(op: &Op) -> bool {
    match (&op.kind, &op.outcome) {
        (
            OpKind::Cas { expected, .. },
            Outcome::Ok(OpResult::Cas {
                succeeded,
                previous: Some(previous),
            }),
        ) => (previous == expected) != *succeeded,
        _ => false,
    }
}

/// Prepares the ops at `indices` (all on one key) of `ops`. A cas that
/// [`contradicts_itself`] is prepared as if it had not reported `previous`; the caller reports
/// it first.
pub(super) fn prepare<'a>(ops: &'a [Op], indices: &[usize]) -> Prepared {
    let mut ids: HashMap<&'a [u8], Val> = HashMap::new();
    let mut intern = |v: Option<&'a [u8]>| -> Val {
        let Some(v) = v else { return ABSENT };
        let next = ids.len() as Val + 1;
        *ids.entry(v).or_insert(next)
    };

    let mut out = Vec::with_capacity(indices.len());
    for &index in indices {
        let op = &ops[index];
        let step = match (&op.kind, &op.outcome) {
            // Failed ops, and txns (outside the register model; never among one key's ops).
            (_, Outcome::Failed) | (OpKind::Txn { .. }, _) => continue,
            (OpKind::Get { .. }, Outcome::Ok(OpResult::Get(v))) => Step::Read(intern(v.as_deref())),
            (OpKind::Get { .. }, _) => continue,
            (OpKind::Put { value, .. }, _) => Step::Write(intern(Some(value))),
            (
                OpKind::Delete { .. },
                Outcome::Ok(OpResult::Delete {
                    existed: Some(true),
                }),
            ) => Step::DeleteExisting,
            (
                OpKind::Delete { .. },
                Outcome::Ok(OpResult::Delete {
                    existed: Some(false),
                }),
            ) => Step::Read(ABSENT),
            (OpKind::Delete { .. }, _) => Step::Write(ABSENT),
            (OpKind::Cas { expected, new, .. }, outcome) => match outcome {
                // Succeeded: `previous`, if reported, is `expected` (else it contradicts itself).
                Outcome::Ok(OpResult::Cas {
                    succeeded: true, ..
                }) => Step::CasOk {
                    expected: intern(expected.as_deref()),
                    new: intern(new.as_deref()),
                },
                // Mismatched, having seen `previous`: exactly a read of it, since it differs
                // from `expected` (else it contradicts itself).
                Outcome::Ok(OpResult::Cas {
                    succeeded: false,
                    previous: Some(previous),
                }) if previous != expected => Step::Read(intern(previous.as_deref())),
                Outcome::Ok(_) => Step::CasMismatch {
                    expected: intern(expected.as_deref()),
                },
                _ => Step::CasMaybe {
                    expected: intern(expected.as_deref()),
                    new: intern(new.as_deref()),
                },
            },
        };
        let ret = match op.outcome {
            Outcome::Ok(_) => op.ret.unwrap_or(u64::MAX),
            _ => u64::MAX,
        };
        out.push(KeyOp {
            index,
            call: op.call,
            ret,
            step,
            twin_before: None,
        });
    }
    bound_observed(&mut out);
    let mut out = prune_unobservable(out);
    merge_unobservable(&mut out);
    out.sort_by_key(|o| (o.indeterminate(), o.call));
    let completed = out.iter().take_while(|o| !o.indeterminate()).count();
    let values = renumber(&mut out);
    let mut by_return: Vec<usize> = (0..out.len()).collect();
    by_return.sort_by_key(|&i| (out[i].ret, out[i].call, i));
    let mut last_twin: HashMap<Step, usize> = HashMap::new();
    for i in by_return {
        out[i].twin_before = last_twin.insert(out[i].step, i);
    }
    Prepared {
        ops: out,
        completed,
        values,
    }
}

/// Gives a return time to indeterminate writes whose value was observed.
///
/// If an indeterminate op is the only one that writes `v`, and a completed op observed `v` (a
/// get returned it, or a successful cas expected it), then the write took effect, and before
/// that observer returned: it is a completed op with that return time (an indeterminate cas
/// becomes a successful one). Such a cas in turn observes its `expected` value, so repeat until
/// nothing changes. A write "observed" before it was called is left alone for the search to
/// reject.
fn bound_observed(ops: &mut [KeyOp]) {
    let mut writers: HashMap<Val, usize> = HashMap::new();
    for o in ops.iter() {
        if let Some(v) = o.step.written() {
            *writers.entry(v).or_default() += 1;
        }
    }
    let mut observed_by: HashMap<Val, u64> = HashMap::new();
    let observe = |observed_by: &mut HashMap<Val, u64>, o: &KeyOp| {
        let seen = match o.step {
            Step::Read(v) | Step::CasOk { expected: v, .. } => v,
            _ => return,
        };
        if seen != ABSENT && !o.indeterminate() {
            let t = observed_by.entry(seen).or_insert(o.ret);
            *t = (*t).min(o.ret);
        }
    };
    for o in ops.iter() {
        observe(&mut observed_by, o);
    }
    loop {
        let mut changed = false;
        for o in ops.iter_mut().filter(|o| o.indeterminate()) {
            let Some(v) = o.step.written() else { continue };
            let Some(&seen_at) = observed_by.get(&v) else {
                continue;
            };
            if writers[&v] != 1 || seen_at < o.call {
                continue;
            }
            o.ret = seen_at;
            if let Step::CasMaybe { expected, new } = o.step {
                o.step = Step::CasOk { expected, new };
            }
            observe(&mut observed_by, o);
            changed = true;
        }
        if !changed {
            return;
        }
    }
}

/// Drops indeterminate writes of a value that no op could observe.
///
/// A value is observed if a read returned it (a get, or a mismatched cas or a delete reporting
/// what it found) or any cas expected it. If the key has no op that some *other* value
/// satisfies (a mismatched cas that reported nothing, a delete that found the key present), an
/// indeterminate write of an unobserved value `v` can be moved to the end of any
/// linearization: until the next write, the ops after it were valid in state `v`, so they are
/// writes or indeterminate cas ops (which can move to the end too). Moved to the end, it means
/// "did not take effect", so it can be dropped. Timed-out writes whose value nobody read are
/// the common case.
fn prune_unobservable(ops: Vec<KeyOp>) -> Vec<KeyOp> {
    if ops
        .iter()
        .any(|o| matches!(o.step, Step::CasMismatch { .. } | Step::DeleteExisting))
    {
        return ops;
    }
    let mut observed = HashSet::new();
    for o in &ops {
        match o.step {
            Step::Read(v)
            | Step::CasOk { expected: v, .. }
            | Step::CasMaybe { expected: v, .. } => {
                observed.insert(v);
            }
            Step::Write(_) | Step::CasMismatch { .. } | Step::DeleteExisting => {}
        }
    }
    ops.into_iter()
        .filter(|o| !o.indeterminate() || o.step.written().is_none_or(|v| observed.contains(&v)))
        .collect()
}

/// Writes every present value that no get returned and no cas expected as [`UNSEEN`].
///
/// In a state holding such a value, every op behaves alike: gets and successful cas fail
/// (they name observed values), mismatched cas succeed, writes overwrite, deletes that found
/// the key present fit (the value is present: [`ABSENT`] is never merged). Merging them lets the
/// memo see that, say, two timed-out writes of never-read values led to the same place.
fn merge_unobservable(ops: &mut [KeyOp]) {
    let mut observed = HashSet::new();
    for o in ops.iter() {
        match o.step {
            Step::Read(v)
            | Step::CasOk { expected: v, .. }
            | Step::CasMismatch { expected: v }
            | Step::CasMaybe { expected: v, .. } => {
                observed.insert(v);
            }
            Step::Write(_) | Step::DeleteExisting => {}
        }
    }
    let merge = |v: &mut Val| {
        if *v != ABSENT && !observed.contains(v) {
            *v = UNSEEN;
        }
    };
    for o in ops.iter_mut() {
        match &mut o.step {
            Step::Write(v) | Step::CasOk { new: v, .. } | Step::CasMaybe { new: v, .. } => merge(v),
            Step::Read(_) | Step::CasMismatch { .. } | Step::DeleteExisting => {}
        }
    }
}

/// Renumbers the values still named densely, `ABSENT` staying 0; returns how many there are.
fn renumber(ops: &mut [KeyOp]) -> usize {
    let mut dense: HashMap<Val, Val> = HashMap::from([(ABSENT, ABSENT)]);
    for o in ops.iter_mut() {
        o.step.map_values(|v| {
            let next = dense.len() as Val;
            *dense.entry(v).or_insert(next)
        });
    }
    dense.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(call: u64, ret: Option<u64>, step: Step) -> KeyOp {
        KeyOp {
            index: 0,
            call,
            ret: ret.unwrap_or(u64::MAX),
            step,
            twin_before: None,
        }
    }

    #[test]
    fn steps_follow_the_register_model() {
        assert_eq!(Step::Read(1).apply(1), Some(1));
        assert_eq!(Step::Read(1).apply(2), None);
        assert_eq!(Step::Write(3).apply(1), Some(3));
        assert_eq!(
            Step::CasOk {
                expected: 1,
                new: 2
            }
            .apply(1),
            Some(2)
        );
        assert_eq!(
            Step::CasOk {
                expected: 1,
                new: 2
            }
            .apply(0),
            None
        );
        assert_eq!(Step::CasMismatch { expected: 1 }.apply(1), None);
        assert_eq!(Step::CasMismatch { expected: 1 }.apply(0), Some(0));
        assert_eq!(Step::DeleteExisting.apply(1), Some(ABSENT));
        assert_eq!(Step::DeleteExisting.apply(UNSEEN), Some(ABSENT));
        assert_eq!(Step::DeleteExisting.apply(ABSENT), None);
        assert_eq!(
            Step::CasMaybe {
                expected: 1,
                new: 2
            }
            .apply(1),
            Some(2)
        );
        assert_eq!(
            Step::CasMaybe {
                expected: 1,
                new: 2
            }
            .apply(3),
            Some(3)
        );
    }

    #[test]
    fn observed_indeterminate_writes_get_the_observers_return() {
        let mut ops = vec![
            op(0, None, Step::Write(1)),
            op(
                5,
                None,
                Step::CasMaybe {
                    expected: 1,
                    new: 2,
                },
            ),
            op(10, Some(20), Step::Read(2)),
            op(12, Some(15), Step::Read(2)),
            op(30, None, Step::Write(3)), // unobserved
            op(40, None, Step::Write(4)), // observed before it was called
            op(35, Some(36), Step::Read(4)),
        ];
        bound_observed(&mut ops);
        assert_eq!(ops[1].ret, 15);
        assert_eq!(
            ops[1].step,
            Step::CasOk {
                expected: 1,
                new: 2
            }
        );
        // The cas, now known to have succeeded, observed 1.
        assert_eq!(ops[0].ret, 15);
        assert!(ops[4].indeterminate());
        assert!(ops[5].indeterminate());
    }

    #[test]
    fn shared_values_are_not_bounded() {
        let mut ops = vec![
            op(0, None, Step::Write(1)),
            op(1, Some(2), Step::Write(1)),
            op(3, Some(4), Step::Read(1)),
        ];
        bound_observed(&mut ops);
        assert!(ops[0].indeterminate());
    }

    #[test]
    fn unobservable_writes_are_kept_for_a_delete_that_found_a_value() {
        // The delete needs some present value; only the unread write can supply it.
        let ops = vec![
            op(0, None, Step::Write(1)),
            op(5, Some(6), Step::DeleteExisting),
        ];
        assert_eq!(prune_unobservable(ops).len(), 2);
    }

    #[test]
    fn unobservable_writes_are_pruned_unless_a_cas_mismatched() {
        let ops = vec![
            op(0, None, Step::Write(1)),
            op(0, None, Step::Write(2)),
            op(0, None, Step::Write(ABSENT)),
            op(1, Some(2), Step::Read(2)),
        ];
        let kept = prune_unobservable(ops.clone());
        assert_eq!(kept.len(), 3);
        assert!(kept.iter().all(|o| o.step != Step::Write(1)));
        let mut with_mismatch = ops;
        with_mismatch.push(op(5, Some(6), Step::CasMismatch { expected: 2 }));
        assert_eq!(prune_unobservable(with_mismatch).len(), 5);
    }

    #[test]
    fn unobservable_values_are_merged() {
        let mut ops = vec![
            op(0, Some(1), Step::Write(1)),
            op(0, None, Step::Write(2)),
            op(
                0,
                Some(1),
                Step::CasOk {
                    expected: 3,
                    new: 4,
                },
            ),
            op(1, Some(2), Step::Read(3)),
            op(1, Some(2), Step::Write(3)),
            op(1, Some(2), Step::CasMismatch { expected: 1 }),
        ];
        merge_unobservable(&mut ops);
        let steps: Vec<Step> = ops.iter().map(|o| o.step).collect();
        assert_eq!(
            steps,
            [
                Step::Write(1),
                Step::Write(UNSEEN),
                Step::CasOk {
                    expected: 3,
                    new: UNSEEN
                },
                Step::Read(3),
                Step::Write(3),
                Step::CasMismatch { expected: 1 },
            ]
        );
    }
}
