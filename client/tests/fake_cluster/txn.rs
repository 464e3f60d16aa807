//! The fake's transaction: compares, then the chosen branch in order, on
//! the shared map (the world lock makes it atomic).

use std::collections::BTreeMap;

use atoll_proto::{
    txn_op, txn_op_result, Compare, CompareOp, TxnDeleteResult, TxnGetResult, TxnOp, TxnOpResult,
    TxnPutResult,
};

/// Runs a txn on `data`; returns whether the compares held and the results.
pub fn run(
    data: &mut BTreeMap<Vec<u8>, Vec<u8>>,
    compares: &[Compare],
    success: Vec<TxnOp>,
    failure: Vec<TxnOp>,
) -> (bool, Vec<TxnOpResult>) {
    let succeeded = compares.iter().all(|c| {
        let equal = data.get(&c.key) == c.value.as_ref();
        if c.op == CompareOp::NotEqual as i32 {
            !equal
        } else {
            equal
        }
    });
    let branch = if succeeded { success } else { failure };
    let results = branch
        .into_iter()
        .filter_map(|op| op.op)
        .map(|op| {
            let kind = match op {
                txn_op::Op::Put(p) => {
                    data.insert(p.key, p.value);
                    txn_op_result::Kind::Put(TxnPutResult {})
                }
                txn_op::Op::Delete(d) => txn_op_result::Kind::Delete(TxnDeleteResult {
                    existed: data.remove(&d.key).is_some(),
                }),
                txn_op::Op::Get(g) => txn_op_result::Kind::Get(TxnGetResult {
                    value: data.get(&g.key).cloned(),
                }),
            };
            TxnOpResult { kind: Some(kind) }
        })
        .collect();
    (succeeded, results)
}
