//! The `register` checker: the history, key by key, must be linearizable against a register
//! with put, delete and compare-and-swap (the checker shared with sim-tests).

use super::Verdict;
use crate::linearizability::{check_with, CheckOptions, CheckResult};
use crate::History;

const NAME: &str = "linearizable";

pub fn check(history: &History, opts: &CheckOptions) -> Verdict {
    let keys: std::collections::BTreeSet<&[u8]> =
        history.ops().iter().filter_map(|o| o.kind.key()).collect();
    match check_with(history, opts) {
        CheckResult::Linearizable => Verdict::valid(
            NAME,
            format!("{} ops on {} keys linearizable", history.len(), keys.len()),
        ),
        CheckResult::NotLinearizable(v) => Verdict::invalid(
            NAME,
            format!("key {} not linearizable", String::from_utf8_lossy(&v.key)),
            v.to_string().lines().map(str::to_string).collect(),
        ),
        CheckResult::Unknown { keys } => Verdict::unknown(
            NAME,
            format!(
                "search budget exhausted on {} keys, no violation found",
                keys.len()
            ),
            keys.iter()
                .map(|k| format!("undecided: {}", String::from_utf8_lossy(k)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{OpKind, OpResult, Outcome, Recorder};

    #[test]
    fn a_stale_read_after_an_acknowledged_write_is_rejected() {
        let rec = Recorder::new();
        let w = rec.invoke(1, OpKind::put("k", "new"), 1);
        rec.complete(w, Outcome::Ok(OpResult::Put), 2).ok();
        let r = rec.invoke(2, OpKind::get("k"), 3);
        rec.complete(r, Outcome::Ok(OpResult::Get(None)), 4).ok();
        let v = check(&rec.into_history(), &CheckOptions::default());
        assert_eq!(v.valid, Some(false), "{}", v.render());
        assert!(v.render().contains("get"), "{}", v.render());
    }

    #[test]
    fn concurrent_ops_in_any_order_are_accepted() {
        let rec = Recorder::new();
        let w = rec.invoke(1, OpKind::put("k", "a"), 1);
        let r = rec.invoke(2, OpKind::get("k"), 2);
        rec.complete(r, Outcome::Ok(OpResult::Get(Some(b"a".to_vec()))), 3)
            .ok();
        rec.complete(w, Outcome::Ok(OpResult::Put), 4).ok();
        assert!(check(&rec.into_history(), &CheckOptions::default()).is_valid());
    }
}
