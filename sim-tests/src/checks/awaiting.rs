//! A replica that awaits its first snapshot holds nothing of its own: it
//! was created empty to join the shard, and the snapshot's install gives
//! it its state and clears the mark in one batch. A replica that opens
//! with both (`atoll_node::sim_hooks::record_awaiting_with_state`) had an
//! empty replica's marks written over another replica's state (a split
//! child's, 2026-12-01): it takes the leader's snapshot as one it holds
//! already and waits for ever.

use atoll_node::sim_hooks;

pub fn check_no_replica_awaits_with_state() -> Result<(), String> {
    let found = sim_hooks::awaiting_with_state();
    if found.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "replicas awaiting their first snapshot held an applied state ({} times), first: {}",
            found.len(),
            found[0]
        ))
    }
}
