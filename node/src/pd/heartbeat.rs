//! Every node's heartbeat loop: one node heartbeat (liveness) per interval,
//! then a report of each shard this node leads whose descriptor or stats
//! changed since the PD last accepted one ([`super::reported`]), and of the
//! others every [`super::reported::REFRESH_ROUNDS`] rounds. A node the PD does not know
//! (a node added with `--join`, or any node before the PD's bootstrap)
//! registers itself under its id, address and labels.

use std::sync::Arc;
use std::time::Duration;

use atoll_pd::command::{Command, CommandResult, HeartbeatOutcome, IgnoredReport, NodeError};

use super::{now_ms, report, route, PdError, PdReply, PdRequest, PD_SHARD};
use crate::cluster::identity;
use crate::service::NodeCtx;

/// Runs until the task is aborted (at node shutdown).
pub async fn run(ctx: Arc<NodeCtx>) {
    let every = Duration::from_millis(ctx.config.pd.heartbeat_ms);
    let mut removed_said = false;
    let mut missing = crate::shard::missing_replicas::MissingReplicas::default();
    let mut sizes = super::sizes::Sizes::default();
    let mut reported = super::reported::Reported::default();
    let mut rounds = 0u64;
    loop {
        tokio::time::sleep(every).await;
        missing.round(&ctx).await;
        // A node that joins learns its cluster from the first message.
        if ctx.cluster.get() == identity::UNKNOWN {
            continue;
        }
        rounds += 1;
        #[cfg(all(madsim, feature = "sim-bugs"))]
        let keep_stale = crate::sim_hooks::bug(crate::sim_hooks::Bug::KeepStaleReplicas);
        #[cfg(not(all(madsim, feature = "sim-bugs")))]
        let keep_stale = false;
        if rounds.is_multiple_of(super::stale_replicas::EVERY) {
            if let Some((state, pd_leader)) = super::stale_replicas::read_state(&ctx).await {
                if !keep_stale {
                    super::stale_replicas::compare(&ctx, &state, pd_leader).await;
                }
                super::own_record::sync(&ctx, &state).await;
            }
        }
        match beat(&ctx, &mut sizes, &mut reported).await {
            Ok(Beat::Removed) if !removed_said => {
                removed_said = true;
                tracing::warn!(
                    node = ctx.node_id(),
                    "the placement driver lists this node as removed; it gets no new replicas. \
                     To use this machine again, start it with a fresh data directory and join it"
                );
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(node = ctx.node_id(), "pd heartbeat: {e}");
                #[cfg(all(madsim, feature = "sim-bugs"))]
                if crate::sim_hooks::bug(crate::sim_hooks::Bug::HeartbeatGivesUp) {
                    return;
                }
            }
        }
    }
}

enum Beat {
    Done,
    Removed,
}

/// Runs a command on the PD leader.
pub async fn command(ctx: &Arc<NodeCtx>, cmd: Command) -> Result<CommandResult, PdError> {
    command_until(ctx, cmd, None).await
}

/// [`command`], not proposed after `deadline` ([`route::call_until`]).
pub async fn command_until(
    ctx: &Arc<NodeCtx>,
    cmd: Command,
    deadline: Option<tokio::time::Instant>,
) -> Result<CommandResult, PdError> {
    match route::call_until(ctx, PdRequest::Command(Box::new(cmd)), 0, deadline).await? {
        PdReply::Result(r) => Ok(r),
        PdReply::State { .. } => Err(PdError::Malformed(
            "the PD answered a command with its state".into(),
        )),
    }
}

async fn beat(
    ctx: &Arc<NodeCtx>,
    sizes: &mut super::sizes::Sizes,
    reported: &mut super::reported::Reported,
) -> Result<Beat, PdError> {
    let node = ctx.node_id();
    let now = now_ms();
    let (capacity_bytes, used_bytes) = disk_space(&ctx.config.data_dir);
    let hb = Command::NodeHeartbeat {
        node,
        now_ms: now,
        capacity_bytes,
        used_bytes,
    };
    match command(ctx, hb).await? {
        CommandResult::NodeHeartbeat(Err(NodeError::Unknown(_))) => {
            let reg = Command::RegisterNode {
                node,
                address: ctx.config.advertise_addr(),
                labels: ctx.config.labels.clone(),
                now_ms: now,
            };
            let r = command(ctx, reg).await?;
            tracing::info!(node, result = ?r, "registered with the placement driver");
        }
        CommandResult::NodeHeartbeat(Err(NodeError::Removed(_))) => return Ok(Beat::Removed),
        _ => {}
    }
    let walk = sizes.round();
    reported.round();
    let replicas = ctx.host.all();
    reported.retain(replicas.iter().map(|r| r.id));
    for replica in replicas {
        if replica.id == PD_SHARD || !replica.is_leader() {
            continue;
        }
        if walk {
            sizes.refresh(&ctx.engine, &replica).await;
        }
        let desc = report::descriptor(&replica);
        let stats = report::stats(&replica, sizes.get(&replica));
        if !reported.due(&desc, &stats) {
            continue;
        }
        let cmd = Command::ShardHeartbeat {
            report: desc.clone(),
            stats: stats.clone(),
            now_ms: now,
        };
        let outcome = command(ctx, cmd).await?;
        if let CommandResult::ShardHeartbeat(HeartbeatOutcome::Accepted { .. }) = outcome {
            reported.accepted(desc, stats);
        }
        if let CommandResult::ShardHeartbeat(HeartbeatOutcome::Ignored(why)) = outcome {
            tracing::debug!(
                node,
                shard = replica.id,
                ?why,
                "the PD ignored a shard report"
            );
            if why == IgnoredReport::RangeChangedWithoutSplit(replica.id) {
                crate::shard::split::report_pending(ctx, &replica).await?;
            }
        }
    }
    Ok(Beat::Done)
}

/// The size of the filesystem holding `dir` and how much of it is used (by
/// anything, as `df` counts it); `(0, 0)`, "not measured", when it cannot
/// be read (and in the simulation, whose data dirs are not on disk).
fn disk_space(dir: &std::path::Path) -> (u64, u64) {
    #[cfg(not(madsim))]
    if let Ok(st) = rustix::fs::statvfs(dir) {
        let total = st.f_blocks.saturating_mul(st.f_frsize);
        let free = st.f_bavail.saturating_mul(st.f_frsize);
        return (total, total.saturating_sub(free));
    }
    let _ = dir;
    (0, 0)
}

#[cfg(all(test, not(madsim)))]
mod tests {
    #[test]
    fn the_disk_of_a_real_dir_has_a_size_and_a_missing_dir_reads_as_unmeasured() {
        let dir = std::env::temp_dir();
        let (total, used) = super::disk_space(&dir);
        assert!(total > 0 && used <= total, "{total} {used}");
        assert_eq!(
            super::disk_space(std::path::Path::new("/no/such/dir/at/all")),
            (0, 0)
        );
    }
}
