//! The wire form of a transaction (`Kv/Txn`) to and from the command
//! that goes through the Raft log ([`crate::command::WriteOp::Txn`]). A
//! compare with an unknown op, or an op with none of put/delete/get set,
//! is an `InvalidArgument`; size limits are checked by
//! [`super::validate::txn`].

use atoll_proto as pb;

use crate::command::{Compare, CompareOp, TxnOp, TxnOpResult};
use crate::error::KvError;

/// The parts of a [`crate::command::WriteOp::Txn`]: compares, success
/// and failure ops.
pub type Parts = (Vec<Compare>, Vec<TxnOp>, Vec<TxnOp>);

/// The command form of a `TxnRequest`'s compares and branches.
pub fn from_proto(
    compares: Vec<pb::Compare>,
    success: Vec<pb::TxnOp>,
    failure: Vec<pb::TxnOp>,
) -> Result<Parts, KvError> {
    let compares = compares
        .into_iter()
        .enumerate()
        .map(|(i, c)| compare(i, c))
        .collect::<Result<_, _>>()?;
    Ok((
        compares,
        branch("success", success)?,
        branch("failure", failure)?,
    ))
}

fn compare(i: usize, c: pb::Compare) -> Result<Compare, KvError> {
    let op = match pb::CompareOp::try_from(c.op) {
        Ok(pb::CompareOp::Equal) => CompareOp::Equal,
        Ok(pb::CompareOp::NotEqual) => CompareOp::NotEqual,
        Err(_) => {
            return Err(KvError::InvalidArgument(format!(
                "compare {i} has an unknown op {}; expected EQUAL (0) or NOT_EQUAL (1)",
                c.op
            )))
        }
    };
    Ok(Compare {
        key: c.key,
        op,
        value: c.value,
    })
}

fn branch(name: &str, ops: Vec<pb::TxnOp>) -> Result<Vec<TxnOp>, KvError> {
    use pb::txn_op::Op;
    ops.into_iter()
        .enumerate()
        .map(|(i, op)| match op.op {
            Some(Op::Put(p)) => Ok(TxnOp::Put {
                key: p.key,
                value: p.value,
            }),
            Some(Op::Delete(d)) => Ok(TxnOp::Delete { key: d.key }),
            Some(Op::Get(g)) => Ok(TxnOp::Get { key: g.key }),
            None => Err(KvError::InvalidArgument(format!(
                "{name} op {i} sets none of put, delete, get"
            ))),
        })
        .collect()
}

/// The wire form of the state machine's answer.
pub fn to_proto(succeeded: bool, results: Vec<TxnOpResult>) -> pb::TxnResponse {
    use pb::txn_op_result::Kind;
    let results = results
        .into_iter()
        .map(|r| pb::TxnOpResult {
            kind: Some(match r {
                TxnOpResult::Put => Kind::Put(pb::TxnPutResult {}),
                TxnOpResult::Delete { existed } => Kind::Delete(pb::TxnDeleteResult { existed }),
                TxnOpResult::Get { value } => Kind::Get(pb::TxnGetResult { value }),
            }),
        })
        .collect();
    pb::TxnResponse {
        error: None,
        succeeded,
        results,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(op: pb::txn_op::Op) -> pb::TxnOp {
        pb::TxnOp { op: Some(op) }
    }

    #[test]
    fn wire_txns_become_commands_in_order() {
        let compares = vec![
            pb::Compare {
                key: b"a".to_vec(),
                op: pb::CompareOp::NotEqual as i32,
                value: None,
            },
            pb::Compare {
                key: b"b".to_vec(),
                op: pb::CompareOp::Equal as i32,
                value: Some(b"1".to_vec()),
            },
        ];
        let success = vec![
            op(pb::txn_op::Op::Put(pb::TxnPut {
                key: b"a".to_vec(),
                value: b"2".to_vec(),
            })),
            op(pb::txn_op::Op::Get(pb::TxnGet { key: b"a".to_vec() })),
        ];
        let failure = vec![op(pb::txn_op::Op::Delete(pb::TxnDelete {
            key: b"b".to_vec(),
        }))];
        let parts = from_proto(compares, success, failure).unwrap();
        assert_eq!(
            parts,
            (
                vec![
                    Compare {
                        key: b"a".to_vec(),
                        op: CompareOp::NotEqual,
                        value: None
                    },
                    Compare {
                        key: b"b".to_vec(),
                        op: CompareOp::Equal,
                        value: Some(b"1".to_vec())
                    },
                ],
                vec![
                    TxnOp::Put {
                        key: b"a".to_vec(),
                        value: b"2".to_vec()
                    },
                    TxnOp::Get { key: b"a".to_vec() },
                ],
                vec![TxnOp::Delete { key: b"b".to_vec() }],
            )
        );
    }

    #[test]
    fn unknown_compare_ops_and_empty_ops_are_invalid() {
        let bad = pb::Compare {
            key: b"a".to_vec(),
            op: 7,
            value: None,
        };
        let err = from_proto(vec![bad], vec![], vec![]).unwrap_err();
        assert!(matches!(&err, KvError::InvalidArgument(m) if m.contains("unknown op 7")));
        let err = from_proto(vec![], vec![], vec![pb::TxnOp { op: None }]).unwrap_err();
        assert!(matches!(&err, KvError::InvalidArgument(m) if m.contains("failure op 0")));
    }

    #[test]
    fn results_keep_their_order_and_absence() {
        let r = to_proto(
            false,
            vec![
                TxnOpResult::Get { value: None },
                TxnOpResult::Delete { existed: true },
                TxnOpResult::Put,
            ],
        );
        use pb::txn_op_result::Kind;
        assert!(!r.succeeded);
        let kinds: Vec<_> = r.results.into_iter().map(|r| r.kind).collect();
        assert_eq!(
            kinds,
            vec![
                Some(Kind::Get(pb::TxnGetResult { value: None })),
                Some(Kind::Delete(pb::TxnDeleteResult { existed: true })),
                Some(Kind::Put(pb::TxnPutResult {})),
            ]
        );
    }
}
