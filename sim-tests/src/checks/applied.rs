//! State Machine Safety: no two replicas apply different entries at the
//! same log index. Every replica reports a digest of each entry it applies
//! (`atoll_node::sim_hooks::record_applied`); a mismatch is a violation even
//! when later writes overwrite its effect on the data.

use atoll_node::sim_hooks;

pub fn check_applied_entries_agree() -> Result<(), String> {
    let conflicts = sim_hooks::applied_conflicts();
    if conflicts.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "replicas applied different entries at the same index ({} times), first: {}",
            conflicts.len(),
            conflicts[0]
        ))
    }
}
