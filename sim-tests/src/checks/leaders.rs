//! At most one leader per (shard, term), as the nodes themselves reported;
//! and no node leads the same term before and after a restart.

use crate::observer::Observer;

pub fn check_one_leader_per_term(observer: &Observer) -> Result<(), String> {
    let conflicts = observer.leader_conflicts();
    if conflicts.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "more than one leader in a term ((shard, term) -> nodes): {conflicts:?}"
        ))
    }
}

/// A restarted node never leads the term it led before its restart: it must
/// win a new election first (decision 0006). Resuming the old term would
/// rest on a log the crash may have cut short.
pub fn check_no_leadership_across_restarts(observer: &Observer) -> Result<(), String> {
    let resumed = observer.resumed_leadership();
    if resumed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "leadership resumed across a restart without an election ((shard, term, node)): {resumed:?}"
        ))
    }
}
