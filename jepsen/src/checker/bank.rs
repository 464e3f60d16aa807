//! The `bank` checker, ready for the `bank` workload. That workload needs a conditional
//! multi-key write within one shard (compare balances, then write both accounts, all or
//! nothing), which the store does not have yet; see docs/decisions/0015-jepsen-harness.md.
//!
//! Its reads are snapshots of every account. A snapshot is valid if the balances add up to
//! the total the accounts started with and none is negative: a read that sees half of a
//! transfer, or a transfer applied twice, breaks the sum.

use std::collections::BTreeMap;

use super::Verdict;

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
            (sum != total || !negative.is_empty()).then(|| {
                let accounts: Vec<String> =
                    r.balances.iter().map(|(a, b)| format!("{a}={b}")).collect();
                format!(
                    "#{} c{} read [{}, {}]: total {sum} (expected {total}){}: {}",
                    r.index,
                    r.client,
                    r.call,
                    r.ret,
                    if negative.is_empty() {
                        String::new()
                    } else {
                        format!(", negative {negative:?}")
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
        }
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
