//! Transactions: [`Txn`], a conditional multi-key write within one shard
//! (like etcd's Txn), and [`Client::txn`], which runs it.
//!
//! A txn holds compares and two branches of ops. When every compare holds
//! (or there are none) the `then` ops run, otherwise the `otherwise` ops.
//! The ops of the branch run in order and each sees the earlier ones (a
//! `get` after a `put` of the same key reads the new value). The whole txn
//! is one atomic step of the shard's Raft state machine, so no other write
//! lands between its compares and its ops and no read sees part of it.
//! Every txn goes through the shard's Raft log, also one of gets only: its
//! reads are linearizable and consistent with each other.
//!
//! ```no_run
//! use atoll_client::{Client, Compare, Error, Txn, TxnOp};
//!
//! # async fn demo(client: Client) -> Result<(), Error> {
//! // Move 10 from alice to bob, if both balances are what we read before.
//! let outcome = client
//!     .txn(
//!         Txn::new()
//!             .when(Compare::equal("alice", "50"))
//!             .when(Compare::equal("bob", "20"))
//!             .then(TxnOp::put("alice", "40"))
//!             .then(TxnOp::put("bob", "30"))
//!             .otherwise(TxnOp::get("alice"))
//!             .otherwise(TxnOp::get("bob")),
//!     )
//!     .await?;
//! if !outcome.succeeded {
//!     let now: Vec<Option<&[u8]>> = outcome.values().collect();
//!     println!("balances changed meanwhile: {now:?}");
//! }
//! # Ok(())
//! # }
//! ```

use atoll_proto::{txn_op, txn_op_result, TxnRequest, TxnResponse};
use tracing::Instrument;

use crate::client::Client;
use crate::dispatch::{RouteBy, Target};
use crate::error::Error;
use crate::limits::{check_key, check_value, MAX_TXN_OPS};

/// How a [`Compare`] relates the current value to its `value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// The current value equals `value` (absent when `value` is `None`).
    Equal,
    /// The current value differs from `value` (present when `value` is
    /// `None`).
    NotEqual,
}

/// A condition of a [`Txn`] on the current value of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    /// The key compared.
    pub key: Vec<u8>,
    /// Equal or not equal.
    pub op: CompareOp,
    /// The value compared with; `None` stands for absence.
    pub value: Option<Vec<u8>>,
}

impl Compare {
    /// Holds when `key` has exactly `value`.
    pub fn equal(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Self::new(key, CompareOp::Equal, Some(value.into()))
    }

    /// Holds when `key` is absent or has another value than `value`.
    pub fn not_equal(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Self::new(key, CompareOp::NotEqual, Some(value.into()))
    }

    /// Holds when `key` is absent.
    pub fn absent(key: impl Into<Vec<u8>>) -> Self {
        Self::new(key, CompareOp::Equal, None)
    }

    /// Holds when `key` is present (with any value, the empty one included).
    pub fn present(key: impl Into<Vec<u8>>) -> Self {
        Self::new(key, CompareOp::NotEqual, None)
    }

    fn new(key: impl Into<Vec<u8>>, op: CompareOp, value: Option<Vec<u8>>) -> Self {
        Compare {
            key: key.into(),
            op,
            value,
        }
    }
}

/// One operation of a [`Txn`] branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOp {
    /// Sets `key` to `value`.
    Put { key: Vec<u8>, value: Vec<u8> },
    /// Deletes `key`; answers whether it existed.
    Delete { key: Vec<u8> },
    /// Reads `key` as of this point of the txn.
    Get { key: Vec<u8> },
}

impl TxnOp {
    /// Sets `key` to `value`.
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        TxnOp::Put {
            key: key.into(),
            value: value.into(),
        }
    }

    /// Deletes `key`.
    pub fn delete(key: impl Into<Vec<u8>>) -> Self {
        TxnOp::Delete { key: key.into() }
    }

    /// Reads `key`.
    pub fn get(key: impl Into<Vec<u8>>) -> Self {
        TxnOp::Get { key: key.into() }
    }

    /// The key the op acts on.
    pub fn key(&self) -> &[u8] {
        match self {
            TxnOp::Put { key, .. } | TxnOp::Delete { key } | TxnOp::Get { key } => key,
        }
    }
}

/// A conditional multi-key write within one shard, built with
/// [`Txn::when`], [`Txn::then`] and [`Txn::otherwise`]; run with
/// [`Client::txn`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    /// All must hold for `success` to run.
    pub compares: Vec<Compare>,
    /// Run in order when every compare holds (also when there are none).
    pub success: Vec<TxnOp>,
    /// Run in order when a compare does not hold.
    pub failure: Vec<TxnOp>,
}

impl Txn {
    /// An empty txn.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a compare; all of them must hold for the `then` ops to run.
    pub fn when(mut self, compare: Compare) -> Self {
        self.compares.push(compare);
        self
    }

    /// Adds an op to run (after the earlier ones) when the compares hold.
    pub fn then(mut self, op: TxnOp) -> Self {
        self.success.push(op);
        self
    }

    /// Adds an op to run (after the earlier ones) when a compare fails.
    pub fn otherwise(mut self, op: TxnOp) -> Self {
        self.failure.push(op);
        self
    }

    /// Compares plus ops of both branches (at most [`MAX_TXN_OPS`]).
    pub fn len(&self) -> usize {
        self.compares.len() + self.success.len() + self.failure.len()
    }

    /// No compares and no ops.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every key of the txn: compares and both branches.
    pub fn keys(&self) -> Vec<&[u8]> {
        let compared = self.compares.iter().map(|c| c.key.as_slice());
        let ops = self.success.iter().chain(&self.failure).map(TxnOp::key);
        compared.chain(ops).collect()
    }

    /// The client-side checks: the op count, every key and value.
    pub fn check(&self) -> Result<(), Error> {
        if self.len() > MAX_TXN_OPS {
            return Err(Error::InvalidArgument(format!(
                "the txn has {} compares and ops; the limit is {MAX_TXN_OPS}",
                self.len()
            )));
        }
        for key in self.keys() {
            check_key(key)?;
        }
        for value in self.compares.iter().filter_map(|c| c.value.as_deref()) {
            check_value(value)?;
        }
        for op in self.success.iter().chain(&self.failure) {
            if let TxnOp::Put { value, .. } = op {
                check_value(value)?;
            }
        }
        Ok(())
    }

    fn to_request(&self) -> TxnRequest {
        let compares = self
            .compares
            .iter()
            .map(|c| atoll_proto::Compare {
                key: c.key.clone(),
                op: match c.op {
                    CompareOp::Equal => atoll_proto::CompareOp::Equal,
                    CompareOp::NotEqual => atoll_proto::CompareOp::NotEqual,
                }
                .into(),
                value: c.value.clone(),
            })
            .collect();
        let branch = |ops: &[TxnOp]| ops.iter().map(wire_op).collect();
        TxnRequest {
            header: None,
            write_id: None,
            compares,
            success: branch(&self.success),
            failure: branch(&self.failure),
        }
    }
}

fn wire_op(op: &TxnOp) -> atoll_proto::TxnOp {
    let op = match op {
        TxnOp::Put { key, value } => txn_op::Op::Put(atoll_proto::TxnPut {
            key: key.clone(),
            value: value.clone(),
        }),
        TxnOp::Delete { key } => txn_op::Op::Delete(atoll_proto::TxnDelete { key: key.clone() }),
        TxnOp::Get { key } => txn_op::Op::Get(atoll_proto::TxnGet { key: key.clone() }),
    };
    atoll_proto::TxnOp { op: Some(op) }
}

/// What one op of the branch that ran answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOpResult {
    /// A put was done.
    Put,
    /// A delete was done; whether the key existed just before it.
    Delete { existed: bool },
    /// The value a get read (`None`: absent).
    Get { value: Option<Vec<u8>> },
}

/// The result of [`Client::txn`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnOutcome {
    /// Whether every compare held, so that the `then` ops ran (else the
    /// `otherwise` ops did). A failed compare is an outcome, not an error.
    pub succeeded: bool,
    /// One result per op of the branch that ran, in order.
    pub results: Vec<TxnOpResult>,
}

impl TxnOutcome {
    /// The values read by the gets of the branch that ran, in order.
    pub fn values(&self) -> impl Iterator<Item = Option<&[u8]>> {
        self.results.iter().filter_map(|r| match r {
            TxnOpResult::Get { value } => Some(value.as_deref()),
            TxnOpResult::Put | TxnOpResult::Delete { .. } => None,
        })
    }
}

/// Checks a reply against the branch it says ran: one result per op, each
/// of the op's kind.
fn outcome(txn: &Txn, reply: TxnResponse) -> Result<TxnOutcome, Error> {
    let branch = if reply.succeeded {
        &txn.success
    } else {
        &txn.failure
    };
    if reply.results.len() != branch.len() {
        return Err(Error::Protocol(format!(
            "txn answered {} results for a branch of {} ops",
            reply.results.len(),
            branch.len()
        )));
    }
    let results = branch
        .iter()
        .zip(reply.results)
        .enumerate()
        .map(|(i, (op, result))| {
            use txn_op_result::Kind;
            match (op, result.kind) {
                (TxnOp::Put { .. }, Some(Kind::Put(_))) => Ok(TxnOpResult::Put),
                (TxnOp::Delete { .. }, Some(Kind::Delete(d))) => {
                    Ok(TxnOpResult::Delete { existed: d.existed })
                }
                (TxnOp::Get { .. }, Some(Kind::Get(g))) => Ok(TxnOpResult::Get { value: g.value }),
                (op, kind) => Err(Error::Protocol(format!(
                    "txn result {i} is {kind:?} for the op {op:?}"
                ))),
            }
        })
        .collect::<Result<_, _>>()?;
    Ok(TxnOutcome {
        succeeded: reply.succeeded,
        results,
    })
}

impl Client {
    /// Runs `txn` atomically: if every compare holds, its `then` ops, else
    /// its `otherwise` ops (see [the module](crate::txn)). All keys must lie
    /// in one shard, else [`Error::CrossShardBatch`]. Applied at most once,
    /// however often retried; a txn with no compares and no ops answers
    /// `succeeded` without a round trip.
    pub async fn txn(&self, txn: Txn) -> Result<TxnOutcome, Error> {
        txn.check()?;
        if txn.is_empty() {
            return Ok(TxnOutcome {
                succeeded: true,
                results: Vec::new(),
            });
        }
        let keys = txn.keys();
        let wire = txn.to_request();
        let span = tracing::debug_span!("atoll.txn", len = txn.len());
        let send = |mut t: Target, write_id| {
            let req = t.budget.request(TxnRequest {
                header: Some(t.header),
                write_id: Some(write_id),
                ..wire.clone()
            });
            async move { t.kv.txn(req).await }
        };
        let reply = self
            .write("txn", RouteBy::AllKeys(&keys), send)
            .instrument(span)
            .await?;
        outcome(&txn, reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builder_keeps_compares_and_branches_in_order() {
        let txn = Txn::new()
            .when(Compare::equal("a", "1"))
            .when(Compare::absent("b"))
            .when(Compare::present("c"))
            .when(Compare::not_equal("d", "2"))
            .then(TxnOp::put("a", "2"))
            .then(TxnOp::delete("c"))
            .then(TxnOp::get("a"))
            .otherwise(TxnOp::get("b"));
        assert_eq!(txn.len(), 8);
        let keys: Vec<&[u8]> = vec![b"a", b"b", b"c", b"d", b"a", b"c", b"a", b"b"];
        assert_eq!(txn.keys(), keys);
        assert_eq!(
            txn.compares[1],
            Compare {
                key: b"b".to_vec(),
                op: CompareOp::Equal,
                value: None
            }
        );
        assert_eq!(txn.compares[2].op, CompareOp::NotEqual);
        assert_eq!(txn.compares[2].value, None);
        let wire = txn.to_request();
        assert_eq!(wire.compares[3].op, atoll_proto::CompareOp::NotEqual as i32);
        assert_eq!(wire.compares[3].value.as_deref(), Some(&b"2"[..]));
        assert_eq!(wire.success.len(), 3);
        assert!(matches!(
            &wire.success[1].op,
            Some(txn_op::Op::Delete(d)) if d.key == b"c"
        ));
        assert!(matches!(&wire.failure[0].op, Some(txn_op::Op::Get(g)) if g.key == b"b"));
    }

    #[test]
    fn checks_cover_every_key_value_and_the_op_count() {
        assert!(Txn::new().check().is_ok());
        assert!(Txn::new().when(Compare::absent("")).check().is_err());
        assert!(Txn::new().otherwise(TxnOp::get("")).check().is_err());
        let huge = vec![0u8; crate::limits::MAX_VALUE_LEN + 1];
        assert!(Txn::new()
            .when(Compare::equal("k", huge.clone()))
            .check()
            .is_err());
        assert!(Txn::new().then(TxnOp::put("k", huge)).check().is_err());
        let full = (0..MAX_TXN_OPS).fold(Txn::new(), |t, i| t.then(TxnOp::get(format!("k{i}"))));
        assert!(full.check().is_ok());
        let err = full.when(Compare::present("k")).check();
        assert!(matches!(err, Err(Error::InvalidArgument(m)) if m.contains("129")));
    }

    #[test]
    fn replies_must_match_the_branch_that_ran() {
        use txn_op_result::Kind;
        let txn = Txn::new()
            .then(TxnOp::get("a"))
            .then(TxnOp::delete("a"))
            .otherwise(TxnOp::put("x", "1"));
        let result = |kind| atoll_proto::TxnOpResult { kind: Some(kind) };
        let ok = TxnResponse {
            error: None,
            succeeded: true,
            results: vec![
                result(Kind::Get(atoll_proto::TxnGetResult {
                    value: Some(b"v".to_vec()),
                })),
                result(Kind::Delete(atoll_proto::TxnDeleteResult { existed: true })),
            ],
        };
        let got = outcome(&txn, ok.clone()).unwrap();
        assert_eq!(
            got.results,
            vec![
                TxnOpResult::Get {
                    value: Some(b"v".to_vec())
                },
                TxnOpResult::Delete { existed: true }
            ]
        );
        assert_eq!(got.values().collect::<Vec<_>>(), vec![Some(&b"v"[..])]);
        // The failure branch has one op: two results are a protocol error.
        let wrong_branch = TxnResponse {
            succeeded: false,
            ..ok.clone()
        };
        assert!(matches!(
            outcome(&txn, wrong_branch),
            Err(Error::Protocol(_))
        ));
        let wrong_kind = TxnResponse {
            succeeded: false,
            results: vec![result(Kind::Get(atoll_proto::TxnGetResult { value: None }))],
            ..ok
        };
        assert!(matches!(outcome(&txn, wrong_kind), Err(Error::Protocol(_))));
    }
}
