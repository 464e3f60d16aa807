//! At most one leader per (shard, term), as the nodes themselves reported.

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
