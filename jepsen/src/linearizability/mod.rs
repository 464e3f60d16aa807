//! Linearizability checker for KV histories, in the style of Porcupine.
//!
//! - `model`: the per-key register model and the preparation of a key's ops for the search
//!   (dropping and bounding ops that cannot matter).
//! - `anomalies`: quick proofs of common anomalies (stale reads, lost updates) on values with
//!   a single writer, reported without search.
//! - `search`: Wing & Gong's search with Lowe's memoization, over one key.
//!
//! Ops on different keys commute, so a history is linearizable iff each key's sub-history is
//! (P-compositionality): each key is checked on its own, with its own budget.
//!
//! The model per key is a register `Option<Vec<u8>>` starting at `None`: a get returns it, put
//! sets it, delete clears it, cas sets it to `new` iff it equals `expected`, and a cas reported
//! as not succeeded must have seen a different value. What a write reports having found must
//! hold where it linearizes: a delete's `existed` whether the register held a value, a cas's
//! `previous` the register's value (so a mismatched cas is a read of it, and a cas whose
//! `previous` contradicts its own `succeeded` fits nowhere). Failed ops are ignored;
//! indeterminate ops may take effect at any time after their call, or never.

mod anomalies;
mod model;
mod search;

use std::collections::BTreeMap;
use std::fmt;

use self::anomalies::Found;
use crate::history::{Bytes, History, MaybeBytes, Op, OpKind, OpResult, Outcome};

/// Limits that keep a check from running away; exceeding one gives [`CheckResult::Unknown`].
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// Search steps allowed per key.
    pub max_steps_per_key: u64,
    /// Bytes the memo cache of one key may use.
    pub max_cache_bytes_per_key: usize,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            max_steps_per_key: 20_000_000,
            max_cache_bytes_per_key: 512 << 20,
        }
    }
}

/// The verdict on a whole history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckResult {
    Linearizable,
    /// The first key (in key order) whose sub-history has no linearization.
    NotLinearizable(Box<Violation>),
    /// No violation found, but these keys ran out of budget.
    Unknown {
        keys: Vec<Vec<u8>>,
    },
}

impl CheckResult {
    pub fn is_linearizable(&self) -> bool {
        matches!(self, CheckResult::Linearizable)
    }

    pub fn is_violation(&self) -> bool {
        matches!(self, CheckResult::NotLinearizable(_))
    }
}

/// An op together with its position in the [`History`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexedOp {
    pub index: usize,
    pub op: Op,
}

/// Why one key's sub-history is not linearizable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub key: Vec<u8>,
    pub anomaly: Anomaly,
}

/// The evidence. A "reader" is a get that returned a value, a successful cas that expected it,
/// or a mismatched cas that reported it as `previous`. All but the last are found without
/// search; the first three for values that a single op writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Anomaly {
    /// A cas reported a `previous` value that its own `succeeded` rules out: equal to
    /// `expected` though it did not swap, or different though it did.
    ContradictoryReply { op: IndexedOp },
    /// The reader saw a value that no op wrote, or only ops called after it returned.
    ///
    /// `asked` lists the ops that asked to write that value all the same: called after the
    /// reader returned, failed, or a cas that reported not swapping. A cas that reports it saw
    /// its own new value was applied twice: the reply is from the second application.
    NeverWritten {
        reader: IndexedOp,
        asked: Vec<IndexedOp>,
    },
    /// The reader saw the value only `write` writes, though `overwrite` replaced it in between:
    /// `write` returned before `overwrite` was called, which returned before the reader was.
    Overwritten {
        write: IndexedOp,
        overwrite: IndexedOp,
        reader: IndexedOp,
    },
    /// Two cas ops both saw the value only `write` writes and replaced it (a lost update).
    ReplacedTwice {
        write: IndexedOp,
        first: IndexedOp,
        second: IndexedOp,
    },
    /// The search found no linearization; this is the furthest it got.
    NoLinearization {
        /// The longest sequence of ops linearized, in order.
        prefix: Vec<IndexedOp>,
        /// The register value after `prefix`.
        state: Option<Vec<u8>>,
        /// Ops invoked but not linearized at that point; none of them fits next.
        pending: Vec<IndexedOp>,
        /// The pending op that returned first, so one of `pending` had to fit before it.
        deadline: IndexedOp,
        /// Completed ops, not in `prefix`, needing a value that only the current state still
        /// holds: the pending writes that would otherwise fit would destroy it for good.
        starved: Vec<IndexedOp>,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "key {} is not linearizable:", Bytes(&self.key))?;
        let op =
            |f: &mut fmt::Formatter<'_>, o: &IndexedOp| writeln!(f, "    #{} {}", o.index, o.op);
        match &self.anomaly {
            Anomaly::ContradictoryReply { op: o } => {
                writeln!(
                    f,
                    "  this cas reported a previous value its own result rules out:"
                )?;
                op(f, o)
            }
            Anomaly::NeverWritten { reader, asked } => {
                writeln!(
                    f,
                    "  this saw a value that nothing wrote before it returned:"
                )?;
                op(f, reader)?;
                if !asked.is_empty() {
                    writeln!(
                        f,
                        "  ops asking to write it (called later, failed, or reporting no swap):"
                    )?;
                    for o in asked {
                        op(f, o)?;
                    }
                }
                Ok(())
            }
            Anomaly::Overwritten {
                write,
                overwrite,
                reader,
            } => {
                writeln!(
                    f,
                    "  the only write of a value, then an overwrite, then a read of it:"
                )?;
                op(f, write)?;
                op(f, overwrite)?;
                op(f, reader)
            }
            Anomaly::ReplacedTwice {
                write,
                first,
                second,
            } => {
                writeln!(
                    f,
                    "  the only write of a value, replaced by two cas ops that both saw it:"
                )?;
                op(f, write)?;
                op(f, first)?;
                op(f, second)
            }
            Anomaly::NoLinearization {
                prefix,
                state,
                pending,
                deadline,
                starved,
            } => {
                const SHOWN: usize = 10;
                let skipped = prefix.len().saturating_sub(SHOWN);
                write!(f, "  longest linearization found: {} ops", prefix.len())?;
                if skipped > 0 {
                    write!(f, ", the last {SHOWN}")?;
                }
                writeln!(f, ":")?;
                for o in &prefix[skipped..] {
                    op(f, o)?;
                }
                writeln!(f, "  value then: {}", MaybeBytes(state.as_deref()))?;
                writeln!(f, "  none of these fits next:")?;
                for o in pending {
                    op(f, o)?;
                }
                writeln!(f, "  and #{} returned before one did", deadline.index)?;
                if !starved.is_empty() {
                    writeln!(
                        f,
                        "  (a write there would leave no way to give these the value they saw:"
                    )?;
                    for o in starved {
                        op(f, o)?;
                    }
                    writeln!(f, "  )")?;
                }
                Ok(())
            }
        }
    }
}

/// Checks `history` with default [`CheckOptions`].
pub fn check(history: &History) -> CheckResult {
    check_with(history, &CheckOptions::default())
}

/// Checks `history` key by key, in key order; stops at the first violation.
pub fn check_with(history: &History, options: &CheckOptions) -> CheckResult {
    let mut by_key: BTreeMap<&[u8], Vec<usize>> = BTreeMap::new();
    // Transactions (several keys at once) are outside the register model: left out.
    for (i, op) in history.ops().iter().enumerate() {
        if let Some(key) = op.kind.key() {
            by_key.entry(key).or_default().push(i);
        }
    }
    let mut unknown = Vec::new();
    for (key, indices) in by_key {
        if let Some(&index) = indices
            .iter()
            .find(|&&i| model::contradicts_itself(&history.ops()[i]))
        {
            return CheckResult::NotLinearizable(Box::new(Violation {
                key: key.to_vec(),
                anomaly: Anomaly::ContradictoryReply {
                    op: IndexedOp {
                        index,
                        op: history.ops()[index].clone(),
                    },
                },
            }));
        }
        let prepared = model::prepare(history.ops(), &indices);
        let indexed = |op: usize| IndexedOp {
            index: prepared.ops[op].index,
            op: history.ops()[prepared.ops[op].index].clone(),
        };
        let anomaly = match anomalies::find(&prepared) {
            Some(Found::NeverWritten { reader }) => {
                let reader = indexed(reader);
                let value = seen(&reader.op);
                let asked = indices
                    .iter()
                    .filter(|&&i| i != reader.index && asks_to_write(&history.ops()[i]) == value)
                    .map(|&index| IndexedOp {
                        index,
                        op: history.ops()[index].clone(),
                    })
                    .collect();
                Anomaly::NeverWritten { reader, asked }
            }
            Some(Found::Overwritten {
                writer,
                overwrite,
                reader,
            }) => Anomaly::Overwritten {
                write: indexed(writer),
                overwrite: indexed(overwrite),
                reader: indexed(reader),
            },
            Some(Found::ReplacedTwice {
                writer,
                first,
                second,
            }) => Anomaly::ReplacedTwice {
                write: indexed(writer),
                first: indexed(first),
                second: indexed(second),
            },
            None => match search::run(&prepared, options) {
                search::Verdict::Linearizable => continue,
                search::Verdict::Unknown => {
                    unknown.push(key.to_vec());
                    continue;
                }
                search::Verdict::Stuck(stuck) => {
                    let from_history = |index: usize| IndexedOp {
                        index,
                        op: history.ops()[index].clone(),
                    };
                    let prefix: Vec<IndexedOp> =
                        stuck.prefix.into_iter().map(from_history).collect();
                    Anomaly::NoLinearization {
                        state: replay(&prefix),
                        prefix,
                        pending: stuck.pending.into_iter().map(from_history).collect(),
                        deadline: from_history(stuck.deadline),
                        starved: stuck.starved.into_iter().map(from_history).collect(),
                    }
                }
            },
        };
        return CheckResult::NotLinearizable(Box::new(Violation {
            key: key.to_vec(),
            anomaly,
        }));
    }
    if unknown.is_empty() {
        CheckResult::Linearizable
    } else {
        CheckResult::Unknown { keys: unknown }
    }
}

/// The present value a completed op reports having seen, if any.
fn seen(op: &Op) -> Option<&[u8]> {
    match (&op.kind, &op.outcome) {
        (_, Outcome::Ok(OpResult::Get(v))) => v.as_deref(),
        (
            OpKind::Cas { expected, .. },
            Outcome::Ok(OpResult::Cas {
                succeeded: true, ..
            }),
        ) => expected.as_deref(),
        (
            _,
            Outcome::Ok(OpResult::Cas {
                succeeded: false,
                previous: Some(previous),
            }),
        ) => previous.as_deref(),
        _ => None,
    }
}

/// The present value an op asks to write, if any.
fn asks_to_write(op: &Op) -> Option<&[u8]> {
    match &op.kind {
        OpKind::Put { value, .. } => Some(value),
        OpKind::Cas { new, .. } => new.as_deref(),
        // Txns are left out of the register model.
        OpKind::Get { .. } | OpKind::Delete { .. } | OpKind::Txn { .. } => None,
    }
}

/// The register value after applying `ops` in order (each must fit, as in a found prefix).
fn replay(ops: &[IndexedOp]) -> Option<Vec<u8>> {
    let mut state = None;
    for o in ops {
        match &o.op.kind {
            // Txns are never among one key's ops.
            OpKind::Get { .. } | OpKind::Txn { .. } => {}
            OpKind::Put { value, .. } => state = Some(value.clone()),
            OpKind::Delete { .. } => state = None,
            OpKind::Cas { expected, new, .. } => {
                if state == *expected {
                    state.clone_from(new);
                }
            }
        }
    }
    state
}
