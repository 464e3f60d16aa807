//! A transfer reported as done put its target in the lead: the node said it
//! led that term. In a calm run every transfer happens.

use crate::observer::Observer;
use crate::transfers::{Attempt, TransferOutcome};

pub fn check_transfers(
    attempts: &[Attempt],
    observer: &Observer,
    must_all_succeed: bool,
) -> Result<(), String> {
    for a in attempts {
        match &a.outcome {
            TransferOutcome::Moved { leader, term, .. } => {
                if *leader != a.target {
                    return Err(format!(
                        "transfer to {} reported leader {leader}: {a:?}",
                        a.target
                    ));
                }
                if !observer.led(atoll_node::service::admin::FIRST_SHARD, *term, *leader) {
                    return Err(format!(
                        "transfer reported node {leader} leading term {term}, but it never said so: {a:?}"
                    ));
                }
            }
            TransferOutcome::Refused(..) | TransferOutcome::CallFailed(_) if must_all_succeed => {
                return Err(format!("a transfer failed in a calm run: {a:?}"));
            }
            TransferOutcome::Refused(..) | TransferOutcome::CallFailed(_) => {}
        }
    }
    if attempts.is_empty() {
        return Err("no transfer was attempted".into());
    }
    Ok(())
}
