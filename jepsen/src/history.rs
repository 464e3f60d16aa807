//! Histories of client operations on the KV store, and a recorder that builds them.
//!
//! An [`Op`] is one client request: what was asked ([`OpKind`]), when it was invoked (`call`),
//! when the client learnt its fate (`ret`), and that fate ([`Outcome`]). Times are plain `u64`s
//! from one clock per history: nanoseconds, simulated time, or a logical counter
//! ([`Recorder::tick`]). Op `a` precedes op `b` in real time iff `a.ret < b.call`; equal times
//! count as concurrent.
//!
//! A [`History`] holds only well-formed ops (see [`Op::validate`]) and is saved and loaded as JSON
//! lines, one op per line, so that real-process tests can write history files and check them
//! later.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

/// Identifies the client (process) that issued an op.
pub type ClientId = u64;

/// What a client asked for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    Get {
        key: Vec<u8>,
    },
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        key: Vec<u8>,
    },
    /// Compare-and-swap: if the current value equals `expected` (`None`: the key is absent), set
    /// it to `new` (`None`: delete the key).
    Cas {
        key: Vec<u8>,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    },
    /// A conditional multi-key transaction within one shard: if every compare holds, its
    /// `ops` run in order, all at once; otherwise nothing happens. (The `bank` workload; the
    /// register checker leaves these ops out.)
    Txn {
        compares: Vec<TxnCompare>,
        ops: Vec<TxnStep>,
    },
}

/// A condition of an [`OpKind::Txn`]: `key` holds exactly `value` (`None`: absent).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TxnCompare {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// One step of an [`OpKind::Txn`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxnStep {
    Get { key: Vec<u8> },
    Put { key: Vec<u8>, value: Vec<u8> },
}

impl TxnStep {
    pub fn key(&self) -> &[u8] {
        match self {
            TxnStep::Get { key } | TxnStep::Put { key, .. } => key,
        }
    }
}

impl OpKind {
    pub fn get(key: impl Into<Vec<u8>>) -> Self {
        OpKind::Get { key: key.into() }
    }

    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        OpKind::Put {
            key: key.into(),
            value: value.into(),
        }
    }

    pub fn delete(key: impl Into<Vec<u8>>) -> Self {
        OpKind::Delete { key: key.into() }
    }

    pub fn cas(key: impl Into<Vec<u8>>, expected: Option<Vec<u8>>, new: Option<Vec<u8>>) -> Self {
        OpKind::Cas {
            key: key.into(),
            expected,
            new,
        }
    }

    /// A transaction: `ops` run if every compare holds.
    pub fn txn(compares: Vec<TxnCompare>, ops: Vec<TxnStep>) -> Self {
        OpKind::Txn { compares, ops }
    }

    /// The single key this op touches; `None` for a transaction (which may touch several).
    pub fn key(&self) -> Option<&[u8]> {
        match self {
            OpKind::Get { key }
            | OpKind::Put { key, .. }
            | OpKind::Delete { key }
            | OpKind::Cas { key, .. } => Some(key),
            OpKind::Txn { .. } => None,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            OpKind::Get { .. } => "get",
            OpKind::Put { .. } => "put",
            OpKind::Delete { .. } => "delete",
            OpKind::Cas { .. } => "cas",
            OpKind::Txn { .. } => "txn",
        }
    }
}

/// The result of an op that definitely took effect; its variant matches the [`OpKind`].
///
/// Write results carry what the write found (a delete's `existed`, a cas's `previous`): the
/// checker requires them to match the state where the op linearizes, so a reply that belongs to
/// another application of the write (a retry applied twice, a misattributed dedup answer) is
/// caught. They are `None` in histories recorded before they were kept; such ops are checked
/// without them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpResult {
    /// The value read; `None` if the key was absent.
    Get(Option<Vec<u8>>),
    Put,
    Delete {
        /// Whether the key held a value just before the delete; `None`: not recorded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        existed: Option<bool>,
    },
    Cas {
        /// Whether the comparison held (and so the swap happened).
        succeeded: bool,
        /// The value the comparison saw: `Some(None)` if the key was absent, `None` if not
        /// recorded. In JSON: the field missing, `null`, or the bytes.
        #[serde(default, skip_serializing_if = "Option::is_none", with = "recorded")]
        previous: Option<Option<Vec<u8>>>,
    },
    Txn {
        /// Whether every compare held (and so the ops ran).
        succeeded: bool,
        /// What the `get` steps read, in order (empty if the compares failed).
        reads: Vec<Option<Vec<u8>>>,
    },
}

impl OpResult {
    /// A delete's result, `existed` as the server reported it.
    pub fn delete(existed: bool) -> Self {
        OpResult::Delete {
            existed: Some(existed),
        }
    }

    /// A cas's result, with the value it compared against (`None`: the key was absent).
    pub fn cas(succeeded: bool, previous: Option<Vec<u8>>) -> Self {
        OpResult::Cas {
            succeeded,
            previous: Some(previous),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            OpResult::Get(_) => "get",
            OpResult::Put => "put",
            OpResult::Delete { .. } => "delete",
            OpResult::Cas { .. } => "cas",
            OpResult::Txn { .. } => "txn",
        }
    }
}

/// Serde for a recorded optional value: a present field is recorded, `null` included.
mod recorded {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(
        v: &Option<Option<Vec<u8>>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        // Only called for `Some`: the field is skipped when `None`.
        v.as_ref().unwrap_or(&None).serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<Vec<u8>>>, D::Error> {
        Option::<Vec<u8>>::deserialize(d).map(Some)
    }
}

/// Reads a result as written now, or as histories written before deletes recorded `existed`
/// wrote a delete's: the bare string `"delete"`.
fn result_any_version<'de, D: serde::Deserializer<'de>>(d: D) -> Result<OpResult, D::Error> {
    #[derive(Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Unit {
        Delete,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum AnyVersion {
        Current(OpResult),
        Unit(Unit),
    }
    Ok(match AnyVersion::deserialize(d)? {
        AnyVersion::Current(r) => r,
        AnyVersion::Unit(Unit::Delete) => OpResult::Delete { existed: None },
    })
}

/// How an op ended, as far as the client knows.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It took effect, once, between `call` and `ret`, with this result.
    Ok(#[serde(deserialize_with = "result_any_version")] OpResult),
    /// It definitely did not take effect (e.g. `InvalidArgument`, or `NotLeader` before the
    /// request was proposed). The checker ignores such ops.
    Failed,
    /// It may or may not have taken effect, at any time after `call` (a timeout, a lost
    /// connection, or an op still in flight when the history ended). The checker treats it as
    /// never returning and its result as unconstrained.
    Indeterminate,
}

/// One client operation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Op {
    pub client: ClientId,
    pub kind: OpKind,
    /// When the client sent the request.
    pub call: u64,
    /// When the client saw the outcome; `None` if it never did. Ignored by the checker for
    /// [`Outcome::Indeterminate`] ops (kept for latency plots).
    pub ret: Option<u64>,
    pub outcome: Outcome,
}

impl Op {
    /// Checks that the result matches the kind and that the times are in order.
    pub fn validate(&self) -> Result<(), HistoryError> {
        if let Some(ret) = self.ret {
            if ret < self.call {
                return Err(HistoryError::ReturnBeforeCall {
                    call: self.call,
                    ret,
                });
            }
        }
        match &self.outcome {
            Outcome::Ok(result) => {
                if result.name() != self.kind.name() {
                    return Err(HistoryError::ResultMismatch {
                        kind: self.kind.name(),
                        result: result.name(),
                    });
                }
                if self.ret.is_none() {
                    return Err(HistoryError::MissingReturn);
                }
                if let (OpKind::Txn { ops, .. }, OpResult::Txn { succeeded, reads }) =
                    (&self.kind, result)
                {
                    let gets = if *succeeded {
                        ops.iter()
                            .filter(|s| matches!(s, TxnStep::Get { .. }))
                            .count()
                    } else {
                        0
                    };
                    if reads.len() != gets {
                        return Err(HistoryError::TxnReads {
                            gets,
                            reads: reads.len(),
                        });
                    }
                }
                Ok(())
            }
            Outcome::Failed | Outcome::Indeterminate => Ok(()),
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{} ", self.client)?;
        match &self.kind {
            OpKind::Get { key } => write!(f, "get({})", Bytes(key))?,
            OpKind::Put { key, value } => write!(f, "put({}, {})", Bytes(key), Bytes(value))?,
            OpKind::Delete { key } => write!(f, "delete({})", Bytes(key))?,
            OpKind::Cas { key, expected, new } => write!(
                f,
                "cas({}, {} -> {})",
                Bytes(key),
                MaybeBytes(expected.as_deref()),
                MaybeBytes(new.as_deref())
            )?,
            OpKind::Txn { compares, ops } => {
                write!(f, "txn(")?;
                for (i, c) in compares.iter().enumerate() {
                    let sep = if i == 0 { "if " } else { ", " };
                    write!(
                        f,
                        "{sep}{} = {}",
                        Bytes(&c.key),
                        MaybeBytes(c.value.as_deref())
                    )?;
                }
                let mut sep = if compares.is_empty() { "" } else { " then " };
                for s in ops {
                    match s {
                        TxnStep::Get { key } => write!(f, "{sep}get({})", Bytes(key))?,
                        TxnStep::Put { key, value } => {
                            write!(f, "{sep}put({}, {})", Bytes(key), Bytes(value))?
                        }
                    }
                    sep = ", ";
                }
                write!(f, ")")?
            }
        }
        match self.ret {
            Some(ret) => write!(f, " [{}, {}]", self.call, ret)?,
            None => write!(f, " [{}, -]", self.call)?,
        }
        match &self.outcome {
            Outcome::Ok(OpResult::Get(v)) => write!(f, " = {}", MaybeBytes(v.as_deref())),
            Outcome::Ok(OpResult::Put | OpResult::Delete { existed: None }) => write!(f, " ok"),
            Outcome::Ok(OpResult::Delete {
                existed: Some(existed),
            }) => write!(f, " ok, {}", if *existed { "existed" } else { "absent" }),
            Outcome::Ok(OpResult::Cas {
                succeeded,
                previous,
            }) => {
                write!(f, " {}", if *succeeded { "ok" } else { "mismatch" })?;
                match previous {
                    Some(p) => write!(f, ", was {}", MaybeBytes(p.as_deref())),
                    None => Ok(()),
                }
            }
            Outcome::Ok(OpResult::Txn { succeeded, reads }) => {
                write!(f, " {}", if *succeeded { "ok" } else { "mismatch" })?;
                if !reads.is_empty() {
                    write!(f, " =")?;
                    for r in reads {
                        write!(f, " {}", MaybeBytes(r.as_deref()))?;
                    }
                }
                Ok(())
            }
            Outcome::Failed => write!(f, " failed"),
            Outcome::Indeterminate => write!(f, " indeterminate"),
        }
    }
}

/// Displays bytes as a quoted string when printable ASCII, else as hex.
pub(crate) struct Bytes<'a>(pub(crate) &'a [u8]);

impl fmt::Display for Bytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
            write!(f, "{:?}", String::from_utf8_lossy(self.0))
        } else {
            write!(f, "0x")?;
            self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
        }
    }
}

/// Displays an optional value, `nil` for absence.
pub(crate) struct MaybeBytes<'a>(pub(crate) Option<&'a [u8]>);

impl fmt::Display for MaybeBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(b) => Bytes(b).fmt(f),
            None => write!(f, "nil"),
        }
    }
}

/// Why a history or an op is rejected.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("{result} result for a {kind} op")]
    ResultMismatch {
        kind: &'static str,
        result: &'static str,
    },
    #[error("returned at {ret}, before its call at {call}")]
    ReturnBeforeCall { call: u64, ret: u64 },
    #[error("a txn that ran {gets} gets reports {reads} values read")]
    TxnReads { gets: usize, reads: usize },
    #[error("an Ok outcome needs a return time")]
    MissingReturn,
    #[error("op {index}: {source}")]
    InvalidOp {
        index: usize,
        #[source]
        source: Box<HistoryError>,
    },
    #[error("handle {0} does not belong to this recorder")]
    UnknownHandle(usize),
    #[error("line {line}: {source}")]
    Json {
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A sequence of well-formed ops; an op's position is its id in checker reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    ops: Vec<Op>,
}

impl History {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a history, validating every op.
    pub fn from_ops(ops: Vec<Op>) -> Result<Self, HistoryError> {
        for (index, op) in ops.iter().enumerate() {
            op.validate().map_err(|e| HistoryError::InvalidOp {
                index,
                source: Box::new(e),
            })?;
        }
        Ok(Self { ops })
    }

    pub fn push(&mut self, op: Op) -> Result<(), HistoryError> {
        op.validate().map_err(|e| HistoryError::InvalidOp {
            index: self.ops.len(),
            source: Box::new(e),
        })?;
        self.ops.push(op);
        Ok(())
    }

    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Writes one JSON object per line.
    pub fn write_jsonl(&self, mut w: impl Write) -> Result<(), HistoryError> {
        for (line, op) in self.ops.iter().enumerate() {
            serde_json::to_writer(&mut w, op).map_err(|source| HistoryError::Json {
                line: line + 1,
                source,
            })?;
            w.write_all(b"\n")?;
        }
        w.flush()?;
        Ok(())
    }

    /// Reads what [`History::write_jsonl`] wrote; blank lines are skipped.
    pub fn read_jsonl(r: impl BufRead) -> Result<Self, HistoryError> {
        let mut history = History::new();
        for (i, line) in r.lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let op: Op = serde_json::from_str(&line).map_err(|source| HistoryError::Json {
                line: i + 1,
                source,
            })?;
            history.push(op)?;
        }
        Ok(history)
    }

    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), HistoryError> {
        self.write_jsonl(BufWriter::new(File::create(path)?))
    }

    pub fn load(path: impl AsRef<Path>) -> Result<Self, HistoryError> {
        Self::read_jsonl(BufReader::new(File::open(path)?))
    }
}

/// Names an op in flight in a [`Recorder`]; consumed by [`Recorder::complete`], so an op
/// completes at most once.
#[derive(Debug, PartialEq, Eq)]
pub struct OpHandle(usize);

/// Builds a [`History`] from concurrent clients: `invoke` before sending a request, `complete`
/// after its outcome is known. Ops never completed stay [`Outcome::Indeterminate`].
///
/// Times come from the caller (simulated or monotonic nanoseconds), or from [`Recorder::tick`]:
/// take the time just before sending and just after receiving, so real-time order holds.
#[derive(Debug, Default)]
pub struct Recorder {
    ops: Mutex<Vec<Op>>,
    clock: AtomicU64,
}

impl Recorder {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next value of this recorder's logical clock (strictly increasing, starts at 1). Do
    /// not mix with caller-supplied times in one history.
    pub fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Records that `client` invoked `kind` at time `at`.
    pub fn invoke(&self, client: ClientId, kind: OpKind, at: u64) -> OpHandle {
        let mut ops = self.lock();
        ops.push(Op {
            client,
            kind,
            call: at,
            ret: None,
            outcome: Outcome::Indeterminate,
        });
        OpHandle(ops.len() - 1)
    }

    /// Records the outcome of an invoked op, seen at time `at`.
    pub fn complete(
        &self,
        handle: OpHandle,
        outcome: Outcome,
        at: u64,
    ) -> Result<(), HistoryError> {
        let mut ops = self.lock();
        let index = handle.0;
        let op = ops
            .get_mut(index)
            .ok_or(HistoryError::UnknownHandle(index))?;
        let done = Op {
            ret: Some(at),
            outcome,
            ..op.clone()
        };
        done.validate().map_err(|e| HistoryError::InvalidOp {
            index,
            source: Box::new(e),
        })?;
        *op = done;
        Ok(())
    }

    /// A copy of the history so far; ops in flight appear as indeterminate.
    pub fn history(&self) -> History {
        History {
            ops: self.lock().clone(),
        }
    }

    pub fn into_history(self) -> History {
        History {
            ops: self.ops.into_inner().unwrap_or_else(|e| e.into_inner()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Op>> {
        // A panic elsewhere while holding the lock leaves the Vec consistent.
        self.ops.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(client: ClientId, call: u64, ret: u64, v: Option<&str>) -> Op {
        Op {
            client,
            kind: OpKind::get("k"),
            call,
            ret: Some(ret),
            outcome: Outcome::Ok(OpResult::Get(v.map(|s| s.as_bytes().to_vec()))),
        }
    }

    #[test]
    fn validate_rejects_mismatched_result_and_reversed_times() {
        let mut op = get(1, 5, 9, Some("a"));
        assert!(op.validate().is_ok());
        op.outcome = Outcome::Ok(OpResult::Put);
        assert!(matches!(
            op.validate(),
            Err(HistoryError::ResultMismatch { .. })
        ));
        let mut op = get(1, 9, 5, None);
        assert!(matches!(
            op.validate(),
            Err(HistoryError::ReturnBeforeCall { .. })
        ));
        op.ret = None;
        assert!(matches!(op.validate(), Err(HistoryError::MissingReturn)));
        op.outcome = Outcome::Indeterminate;
        assert!(op.validate().is_ok());
        assert!(History::from_ops(vec![get(1, 1, 2, None), get(1, 4, 3, None)]).is_err());
    }

    #[test]
    fn jsonl_round_trip() {
        let ops = vec![
            get(1, 1, 2, Some("a")),
            Op {
                client: 2,
                kind: OpKind::cas("k", None, Some(vec![0, 255])),
                call: 3,
                ret: Some(4),
                outcome: Outcome::Ok(OpResult::Cas {
                    succeeded: false,
                    previous: None,
                }),
            },
            Op {
                client: 3,
                kind: OpKind::delete("k"),
                call: 5,
                ret: None,
                outcome: Outcome::Indeterminate,
            },
            Op {
                client: 2,
                kind: OpKind::cas("k", None, Some(vec![1])),
                call: 5,
                ret: Some(6),
                outcome: Outcome::Ok(OpResult::cas(true, None)),
            },
            Op {
                client: 2,
                kind: OpKind::cas("k", None, Some(vec![2])),
                call: 5,
                ret: Some(6),
                outcome: Outcome::Ok(OpResult::cas(false, Some(vec![1]))),
            },
            Op {
                client: 3,
                kind: OpKind::delete("k"),
                call: 7,
                ret: Some(8),
                outcome: Outcome::Ok(OpResult::delete(true)),
            },
            Op {
                client: 3,
                kind: OpKind::delete("k"),
                call: 7,
                ret: Some(8),
                outcome: Outcome::Ok(OpResult::Delete { existed: None }),
            },
            Op {
                client: 3,
                kind: OpKind::put("k", "v"),
                call: 6,
                ret: Some(6),
                outcome: Outcome::Failed,
            },
        ];
        let history = History::from_ops(ops).unwrap();
        let mut buf = Vec::new();
        history.write_jsonl(&mut buf).unwrap();
        assert_eq!(buf.iter().filter(|b| **b == b'\n').count(), 8);
        let text = String::from_utf8(buf.clone()).unwrap();
        assert!(text.contains(r#""ok":{"cas":{"succeeded":true,"previous":null}}"#));
        assert!(text.contains(r#""ok":{"delete":{"existed":true}}"#));
        assert!(text.contains(r#""ok":{"delete":{}}"#));
        let back = History::read_jsonl(&buf[..]).unwrap();
        assert_eq!(back, history);

        let bad = b"{\"client\":1}\n";
        assert!(matches!(
            History::read_jsonl(&bad[..]),
            Err(HistoryError::Json { line: 1, .. })
        ));
    }

    #[test]
    fn histories_without_existed_and_previous_still_load() {
        let old = br#"{"client":1,"kind":{"delete":{"key":[107]}},"call":1,"ret":2,"outcome":{"ok":"delete"}}
{"client":1,"kind":{"cas":{"key":[107],"expected":null,"new":[97]}},"call":3,"ret":4,"outcome":{"ok":{"cas":{"succeeded":true}}}}
"#;
        let h = History::read_jsonl(&old[..]).unwrap();
        assert_eq!(
            h.ops()[0].outcome,
            Outcome::Ok(OpResult::Delete { existed: None })
        );
        assert_eq!(
            h.ops()[1].outcome,
            Outcome::Ok(OpResult::Cas {
                succeeded: true,
                previous: None
            })
        );
    }

    #[test]
    fn recorder_from_threads() {
        let rec = Recorder::new();
        std::thread::scope(|s| {
            for c in 0..4u64 {
                let rec = &rec;
                s.spawn(move || {
                    for i in 0..100u64 {
                        let h = rec.invoke(c, OpKind::put("k", i.to_string()), rec.tick());
                        if i % 10 != 9 {
                            rec.complete(h, Outcome::Ok(OpResult::Put), rec.tick())
                                .unwrap();
                        }
                    }
                });
            }
        });
        let h = rec.into_history();
        assert_eq!(h.len(), 400);
        let in_flight = h.ops().iter().filter(|o| o.ret.is_none()).count();
        assert_eq!(in_flight, 40);
        assert!(h.ops().iter().all(|o| o.ret.is_none_or(|r| r > o.call)));
    }

    #[test]
    fn recorder_rejects_wrong_result() {
        let rec = Recorder::new();
        let h = rec.invoke(1, OpKind::get("k"), 1);
        assert!(rec.complete(h, Outcome::Ok(OpResult::Put), 2).is_err());
        assert_eq!(rec.history().ops()[0].outcome, Outcome::Indeterminate);
    }

    #[test]
    fn display_is_readable() {
        let op = get(7, 10, 20, Some("v1"));
        assert_eq!(op.to_string(), "c7 get(\"k\") [10, 20] = \"v1\"");
        let op = Op {
            client: 1,
            kind: OpKind::cas("k", None, Some(vec![0, 1])),
            call: 3,
            ret: None,
            outcome: Outcome::Indeterminate,
        };
        assert_eq!(
            op.to_string(),
            "c1 cas(\"k\", nil -> 0x0001) [3, -] indeterminate"
        );
        let op = Op {
            outcome: Outcome::Ok(OpResult::cas(false, Some(b"a".to_vec()))),
            ret: Some(4),
            ..op
        };
        assert_eq!(
            op.to_string(),
            "c1 cas(\"k\", nil -> 0x0001) [3, 4] mismatch, was \"a\""
        );
        let op = Op {
            kind: OpKind::delete("k"),
            outcome: Outcome::Ok(OpResult::delete(false)),
            ..op
        };
        assert_eq!(op.to_string(), "c1 delete(\"k\") [3, 4] ok, absent");
    }
}
