//! The `set` checker. Adds are puts of unique keys (one key per element); after the faults
//! end, one read of the whole set. Every acknowledged add must be in it (else *lost*); every
//! element in it must have been attempted (else *unexpected*). Adds whose fate was unknown may
//! or may not be there (counted as *recovered* when they are).

use std::collections::{BTreeMap, BTreeSet};

use super::Verdict;
use crate::history::Bytes;
use crate::{History, Op, OpKind, Outcome};

const NAME: &str = "set";
/// Offending elements shown at most (the counts give the rest).
const SHOW: usize = 10;

/// `final_read`: the elements the final read returned, `None` if it failed.
pub fn check(history: &History, final_read: Option<&BTreeSet<Vec<u8>>>) -> Verdict {
    let mut attempted: BTreeMap<&[u8], &Op> = BTreeMap::new();
    let mut acked: BTreeMap<&[u8], &Op> = BTreeMap::new();
    let mut unknown = 0usize;
    for op in history.ops() {
        let OpKind::Put { key, .. } = &op.kind else {
            continue;
        };
        attempted.entry(key).or_insert(op);
        match op.outcome {
            Outcome::Ok(_) => {
                acked.insert(key, op);
            }
            Outcome::Indeterminate => unknown += 1,
            Outcome::Failed => {}
        }
    }
    let Some(read) = final_read else {
        return Verdict::unknown(
            NAME,
            format!(
                "{} adds acknowledged, but the final read failed",
                acked.len()
            ),
            vec!["no final read: cannot tell which elements survived".into()],
        );
    };
    let lost: Vec<&Op> = acked
        .iter()
        .filter(|(k, _)| !read.contains(**k))
        .map(|(_, op)| *op)
        .collect();
    let unexpected: Vec<&Vec<u8>> = read
        .iter()
        .filter(|e| !attempted.contains_key(e.as_slice()))
        .collect();
    let recovered = read
        .iter()
        .filter(|e| attempted.contains_key(e.as_slice()) && !acked.contains_key(e.as_slice()))
        .count();
    let counts = format!(
        "{} attempted, {} acknowledged, {} indeterminate, {} read back, {} recovered, {} lost, {} unexpected",
        attempted.len(),
        acked.len(),
        unknown,
        read.len(),
        recovered,
        lost.len(),
        unexpected.len()
    );
    if lost.is_empty() && unexpected.is_empty() {
        return Verdict::valid(NAME, counts);
    }
    let mut details = Vec::new();
    for op in lost.iter().take(SHOW) {
        details.push(format!(
            "lost: {op} acknowledged, absent from the final read"
        ));
    }
    for e in unexpected.iter().take(SHOW) {
        details.push(format!(
            "unexpected: {} read back but never added",
            Bytes(e)
        ));
    }
    Verdict::invalid(NAME, counts, details)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{OpResult, Recorder};

    fn add(rec: &Recorder, c: u64, e: &str, outcome: Outcome) {
        let h = rec.invoke(c, OpKind::put(e, "1"), rec.tick());
        rec.complete(h, outcome, rec.tick()).ok();
    }

    fn set(items: &[&str]) -> BTreeSet<Vec<u8>> {
        items.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn a_lost_acknowledged_add_is_reported_with_its_op() {
        let rec = Recorder::new();
        add(&rec, 1, "s/1", Outcome::Ok(OpResult::Put));
        add(&rec, 2, "s/2", Outcome::Ok(OpResult::Put));
        let v = check(&rec.into_history(), Some(&set(&["s/1"])));
        assert_eq!(v.valid, Some(false));
        assert_eq!(v.details.len(), 1, "{}", v.render());
        assert!(v.details[0].contains("lost") && v.details[0].contains("s/2"));
    }

    #[test]
    fn an_element_never_added_is_unexpected() {
        let rec = Recorder::new();
        add(&rec, 1, "s/1", Outcome::Ok(OpResult::Put));
        let v = check(&rec.into_history(), Some(&set(&["s/1", "s/9"])));
        assert_eq!(v.valid, Some(false));
        assert!(v.details[0].contains("unexpected"), "{}", v.render());
    }

    #[test]
    fn indeterminate_adds_may_or_may_not_survive() {
        let rec = Recorder::new();
        add(&rec, 1, "s/1", Outcome::Ok(OpResult::Put));
        add(&rec, 1, "s/2", Outcome::Indeterminate);
        add(&rec, 1, "s/3", Outcome::Indeterminate);
        let v = check(&rec.into_history(), Some(&set(&["s/1", "s/2"])));
        assert!(v.is_valid(), "{}", v.render());
        assert!(v.summary.contains("1 recovered"));
    }

    #[test]
    fn no_final_read_is_unknown_not_valid() {
        let rec = Recorder::new();
        add(&rec, 1, "s/1", Outcome::Ok(OpResult::Put));
        assert_eq!(check(&rec.into_history(), None).valid, None);
    }
}
