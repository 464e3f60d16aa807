//! Quick proofs of non-linearizability that need no search, for values with one writer.
//!
//! Workloads write unique values, so most anomalies show up as a value seen where its only
//! writer could not have put it. Found statically, they are reported at once and plainly; the
//! search would have to rule out every ordering of everything before them first. Each rule is
//! sound for any history: it only fires on values that exactly one op may write.

use super::model::{KeyOp, Prepared, Step, Val, ABSENT};

/// A static anomaly; ops are numbers into [`Prepared::ops`].
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Found {
    /// `reader` needed a value no op writes, or whose every writer was called after `reader`
    /// returned.
    NeverWritten { reader: usize },
    /// `reader` needed the value only `writer` writes, but `overwrite` replaced it after
    /// `writer` returned and returned before `reader` was called.
    Overwritten {
        writer: usize,
        overwrite: usize,
        reader: usize,
    },
    /// `first` and `second` both saw the value only `writer` writes and replaced it.
    ReplacedTwice {
        writer: usize,
        first: usize,
        second: usize,
    },
}

/// The first static anomaly among `key`'s ops, if any.
pub(super) fn find(key: &Prepared) -> Option<Found> {
    let ops = &key.ops[..];
    let completed = &ops[..key.completed];
    let mut writers: Vec<Vec<usize>> = vec![Vec::new(); key.values];
    for (i, o) in ops.iter().enumerate() {
        if let Some(v) = o.step.writes() {
            writers[v as usize].push(i);
        }
    }
    let sole_writer = |v: Val| match writers[v as usize][..] {
        [w] if v != ABSENT => Some(w),
        _ => None,
    };

    // Readers by return time, so the first finding is the earliest.
    let mut readers: Vec<usize> = (0..completed.len())
        .filter(|&r| completed[r].step.needs().is_some_and(|v| v != ABSENT))
        .collect();
    readers.sort_by_key(|&r| completed[r].ret);

    for &reader in &readers {
        let v = completed[reader].step.needs().expect("filtered above");
        if writers[v as usize]
            .iter()
            .all(|&w| ops[w].call > completed[reader].ret)
        {
            return Some(Found::NeverWritten { reader });
        }
    }

    let overwrites = Overwrites::new(completed);
    for &reader in &readers {
        let v = completed[reader].step.needs().expect("filtered above");
        let Some(writer) = sole_writer(v) else {
            continue;
        };
        // Any definite write called after `writer` returned writes a value other than `v`.
        if let Some(overwrite) =
            overwrites.returning_before(ops[writer].ret, completed[reader].call)
        {
            return Some(Found::Overwritten {
                writer,
                overwrite,
                reader,
            });
        }
    }

    let mut replaced_by: Vec<Option<usize>> = vec![None; key.values];
    for &cas in &readers {
        let Step::CasOk { expected: v, new } = completed[cas].step else {
            continue;
        };
        let Some(writer) = sole_writer(v).filter(|_| new != v) else {
            continue;
        };
        match replaced_by[v as usize] {
            Some(first) => {
                return Some(Found::ReplacedTwice {
                    writer,
                    first,
                    second: cas,
                })
            }
            None => replaced_by[v as usize] = Some(cas),
        }
    }
    None
}

/// Completed ops that surely replace the state (writes, successful cas), by call time, with
/// the earliest-returning one among each suffix.
struct Overwrites {
    calls: Vec<u64>,
    /// `earliest[i]`: the op returning first among those from position `i` on.
    earliest: Vec<(u64, usize)>,
}

impl Overwrites {
    fn new(completed: &[KeyOp]) -> Self {
        let mut by_call: Vec<usize> = (0..completed.len())
            .filter(|&i| {
                matches!(
                    completed[i].step,
                    Step::Write(_) | Step::CasOk { .. } | Step::DeleteExisting
                )
            })
            .collect();
        by_call.sort_by_key(|&i| completed[i].call);
        let mut earliest = vec![(u64::MAX, usize::MAX); by_call.len()];
        let mut best = (u64::MAX, usize::MAX);
        for (pos, &i) in by_call.iter().enumerate().rev() {
            best = best.min((completed[i].ret, i));
            earliest[pos] = best;
        }
        Overwrites {
            calls: by_call.iter().map(|&i| completed[i].call).collect(),
            earliest,
        }
    }

    /// An op called strictly after `after` and returning strictly before `before`.
    fn returning_before(&self, after: u64, before: u64) -> Option<usize> {
        let pos = self.calls.partition_point(|&c| c <= after);
        self.earliest
            .get(pos)
            .filter(|(ret, _)| *ret < before)
            .map(|&(_, op)| op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ops: Vec<(u64, u64, Step)>, values: usize) -> Prepared {
        let ops: Vec<KeyOp> = ops
            .into_iter()
            .enumerate()
            .map(|(index, (call, ret, step))| KeyOp {
                index,
                call,
                ret,
                step,
                twin_before: None,
            })
            .collect();
        let completed = ops.iter().filter(|o| !o.indeterminate()).count();
        Prepared {
            ops,
            completed,
            values,
        }
    }

    #[test]
    fn read_of_a_value_written_only_later() {
        let k = key(vec![(0, 1, Step::Read(1)), (2, 3, Step::Write(1))], 2);
        assert_eq!(find(&k), Some(Found::NeverWritten { reader: 0 }));
        let k = key(vec![(0, 5, Step::Read(1)), (2, 3, Step::Write(1))], 2);
        assert_eq!(find(&k), None);
    }

    #[test]
    fn read_after_an_overwrite() {
        let k = key(
            vec![
                (0, 1, Step::Write(1)),
                (2, 3, Step::Write(2)),
                (4, 5, Step::Read(1)),
            ],
            3,
        );
        assert_eq!(
            find(&k),
            Some(Found::Overwritten {
                writer: 0,
                overwrite: 1,
                reader: 2
            })
        );
        // Overlapping the read or the write, the overwrite may come after the read.
        for (call, ret) in [(2, 4), (1, 3)] {
            let k = key(
                vec![
                    (0, 1, Step::Write(1)),
                    (call, ret, Step::Write(2)),
                    (4, 5, Step::Read(1)),
                ],
                3,
            );
            assert_eq!(find(&k), None);
        }
    }

    #[test]
    fn one_write_replaced_twice() {
        let cas = Step::CasOk {
            expected: 1,
            new: 2,
        };
        let k = key(vec![(0, 1, Step::Write(1)), (2, 9, cas), (2, 9, cas)], 3);
        assert_eq!(
            find(&k),
            Some(Found::ReplacedTwice {
                writer: 0,
                first: 1,
                second: 2
            })
        );
        // With a second writer of the value, both may have seen it.
        let k = key(
            vec![
                (0, 1, Step::Write(1)),
                (2, 9, cas),
                (2, 9, cas),
                (2, 9, Step::Write(1)),
            ],
            3,
        );
        assert_eq!(find(&k), None);
    }
}
