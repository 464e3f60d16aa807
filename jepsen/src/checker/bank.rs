//! The `bank` checker, for the `bank` workload ([`crate::workload`]'s `bank`).
//!
//! Its reads are snapshots of every account (ok txns of gets only, over exactly the
//! accounts). A snapshot is valid if the balances add up to the total the accounts started
//! with and none is negative: a read that sees half of a transfer, a transfer applied twice,
//! or a lost one breaks the sum. Transfers themselves need no check: ok, failed or
//! indeterminate, each moves money without creating or destroying any, so whatever subset
//! of the indeterminate ones took effect, the sum stays exact.

use std::collections::{BTreeMap, BTreeSet};

use super::Verdict;
use crate::{History, OpKind, OpResult, Outcome, TxnStep};

const NAME: &str = "bank";

/// One read of all accounts, as the workload recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BankRead {
    /// Where the read sits in the history (for the report).
    pub index: usize,
    pub client: u64,
    pub call: u64,
    pub ret: u64,
    pub balances: BTreeMap<String, i64>,
    /// Accounts read as absent or not a number (each makes the read wrong).
    pub unreadable: Vec<String>,
}

/// The snapshots in `history`: ok txns with no compares whose steps are gets of exactly
/// `accounts`.
pub fn reads(history: &History, accounts: &BTreeSet<Vec<u8>>) -> Vec<BankRead> {
    let mut out = Vec::new();
    for (index, op) in history.ops().iter().enumerate() {
        let (OpKind::Txn { compares, ops }, Outcome::Ok(OpResult::Txn { reads, .. })) =
            (&op.kind, &op.outcome)
        else {
            continue;
        };
        let keys: Option<Vec<&[u8]>> = ops
            .iter()
            .map(|s| match s {
                TxnStep::Get { key } => Some(key.as_slice()),
                TxnStep::Put { .. } => None,
            })
            .collect();
        let Some(keys) = keys else { continue };
        let distinct: BTreeSet<&[u8]> = keys.iter().copied().collect();
        if !compares.is_empty()
            || keys.len() != accounts.len()
            || distinct.len() != accounts.len()
            || !distinct.iter().all(|k| accounts.contains(*k))
        {
            continue;
        }
        let mut balances = BTreeMap::new();
        let mut unreadable = Vec::new();
        for (key, value) in keys.iter().zip(reads) {
            let name = String::from_utf8_lossy(key).into_owned();
            let parsed = value
                .as_deref()
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.parse::<i64>().ok());
            match parsed {
                Some(b) => {
                    balances.insert(name, b);
                }
                None => unreadable.push(name),
            }
        }
        out.push(BankRead {
            index,
            client: op.client,
            call: op.call,
            ret: op.ret.unwrap_or(op.call),
            balances,
            unreadable,
        });
    }
    out
}

/// Checks every snapshot of `accounts` in `history` against `total`.
pub fn check_history(history: &History, accounts: &BTreeSet<Vec<u8>>, total: i64) -> Verdict {
    let snapshots = reads(history, accounts);
    if snapshots.is_empty() {
        return Verdict::unknown(
            NAME,
            "no read of all accounts succeeded",
            vec![format!("{} ops in the history", history.len())],
        );
    }
    check(&snapshots, total)
}

pub fn check(reads: &[BankRead], total: i64) -> Verdict {
    let bad: Vec<String> = reads
        .iter()
        .filter_map(|r| {
            let sum: i64 = r.balances.values().sum();
            let negative: Vec<&String> = r
                .balances
                .iter()
                .filter(|(_, &b)| b < 0)
                .map(|(a, _)| a)
                .collect();
            (sum != total || !negative.is_empty() || !r.unreadable.is_empty()).then(|| {
                let accounts: Vec<String> =
                    r.balances.iter().map(|(a, b)| format!("{a}={b}")).collect();
                format!(
                    "#{} c{} read [{}, {}]: total {sum} (expected {total}){}{}: {}",
                    r.index,
                    r.client,
                    r.call,
                    r.ret,
                    if negative.is_empty() {
                        String::new()
                    } else {
                        format!(", negative {negative:?}")
                    },
                    if r.unreadable.is_empty() {
                        String::new()
                    } else {
                        format!(", absent or not a number {:?}", r.unreadable)
                    },
                    accounts.join(" ")
                )
            })
        })
        .collect();
    let summary = format!("{} reads, {} wrong", reads.len(), bad.len());
    if bad.is_empty() {
        Verdict::valid(NAME, summary)
    } else {
        Verdict::invalid(NAME, summary, bad.into_iter().take(10).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(index: usize, balances: &[(&str, i64)]) -> BankRead {
        BankRead {
            index,
            client: 1,
            call: index as u64,
            ret: index as u64 + 1,
            balances: balances.iter().map(|(a, b)| (a.to_string(), *b)).collect(),
            unreadable: Vec::new(),
        }
    }

    fn txn_read(rec: &crate::Recorder, values: &[Option<&str>]) {
        let ops = (0..values.len())
            .map(|i| TxnStep::Get {
                key: format!("b/{i}").into_bytes(),
            })
            .collect();
        let h = rec.invoke(1, OpKind::txn(Vec::new(), ops), rec.tick());
        let reads = values
            .iter()
            .map(|v| v.map(|s| s.as_bytes().to_vec()))
            .collect();
        rec.complete(
            h,
            Outcome::Ok(OpResult::Txn {
                succeeded: true,
                reads,
            }),
            rec.tick(),
        )
        .unwrap();
    }

    fn accounts(n: usize) -> BTreeSet<Vec<u8>> {
        (0..n).map(|i| format!("b/{i}").into_bytes()).collect()
    }

    #[test]
    fn snapshots_come_from_read_txns_over_every_account() {
        let rec = crate::Recorder::new();
        txn_read(&rec, &[Some("50"), Some("50")]);
        txn_read(&rec, &[Some("50")]); // one account only: not a snapshot
                                       // A transfer whose outcome is unknown changes nothing the checker needs.
        let t = rec.invoke(
            2,
            OpKind::txn(
                vec![crate::TxnCompare {
                    key: b"b/0".to_vec(),
                    value: Some(b"50".to_vec()),
                }],
                vec![
                    TxnStep::Put {
                        key: b"b/0".to_vec(),
                        value: b"40".to_vec(),
                    },
                    TxnStep::Put {
                        key: b"b/1".to_vec(),
                        value: b"60".to_vec(),
                    },
                ],
            ),
            rec.tick(),
        );
        rec.complete(t, Outcome::Indeterminate, rec.tick()).unwrap();
        txn_read(&rec, &[Some("40"), Some("60")]);
        let h = rec.into_history();
        assert_eq!(reads(&h, &accounts(2)).len(), 2);
        assert!(check_history(&h, &accounts(2), 100).is_valid());
    }

    #[test]
    fn a_read_of_half_a_transfer_or_a_missing_account_is_rejected() {
        let rec = crate::Recorder::new();
        txn_read(&rec, &[Some("50"), Some("50")]);
        txn_read(&rec, &[Some("40"), Some("50")]);
        txn_read(&rec, &[None, Some("100")]);
        let v = check_history(&rec.into_history(), &accounts(2), 100);
        assert_eq!(v.valid, Some(false), "{}", v.render());
        assert_eq!(v.details.len(), 2);
        assert!(v.details[0].starts_with("#1"), "{}", v.render());
        assert!(v.details[1].contains("absent"), "{}", v.render());
    }

    #[test]
    fn no_snapshot_at_all_is_unknown() {
        let v = check_history(&History::new(), &accounts(2), 100);
        assert_eq!(v.valid, None);
    }

    #[test]
    fn a_read_that_sees_half_a_transfer_is_rejected() {
        let reads = [
            read(0, &[("a", 50), ("b", 50)]),
            read(1, &[("a", 40), ("b", 50)]),
        ];
        let v = check(&reads, 100);
        assert_eq!(v.valid, Some(false));
        assert_eq!(v.details.len(), 1);
        assert!(v.details[0].starts_with("#1"), "{}", v.render());
    }

    #[test]
    fn conserved_totals_are_valid() {
        let reads = [
            read(0, &[("a", 50), ("b", 50)]),
            read(1, &[("a", 10), ("b", 90)]),
        ];
        assert!(check(&reads, 100).is_valid());
    }

    #[test]
    fn a_negative_balance_is_rejected() {
        let reads = [read(0, &[("a", -10), ("b", 110)])];
        assert_eq!(check(&reads, 100).valid, Some(false));
    }
}
