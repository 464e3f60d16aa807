//! What the PD leader does on its own, once per heartbeat interval:
//! - once: registers the nodes of the first shard and the shard itself
//!   (`Bootstrap`), with the down timeout of this node's `[pd]` settings;
//! - marks nodes silent for `down_after_ms` as `Down` (`Tick`), but only
//!   after leading for `down_after_ms` itself, so that a new leader does
//!   not mark nodes down whose heartbeats went to the old one.

use std::sync::Arc;
use std::time::Duration;

use atoll_pd::command::{Command, CommandResult};
use atoll_pd::config::PdConfig;

use super::heartbeat::command;
use super::{now_ms, report, PdError, PD_SHARD};
use crate::service::admin::FIRST_SHARD;
use crate::service::NodeCtx;
use crate::state_machine::read_pd;

/// Runs on a PD member until the task is aborted (at node shutdown).
pub async fn run(ctx: Arc<NodeCtx>) {
    let every = Duration::from_millis(ctx.config.pd.heartbeat_ms);
    // (term, when this node saw itself lead in it)
    let mut leading: Option<(u64, u64)> = None;
    loop {
        tokio::time::sleep(every).await;
        let Some(pd) = ctx.host.get(PD_SHARD) else {
            continue;
        };
        let Some(state) = pd.pd() else { continue };
        let term = pd.raft.metrics().borrow().current_term;
        if !pd.is_leader() {
            leading = None;
            continue;
        }
        let now = now_ms();
        let since = match leading {
            Some((t, since)) if t == term => since,
            _ => {
                leading = Some((term, now));
                now
            }
        };
        let (bootstrapped, down_after) =
            read_pd(state, |s| (s.is_bootstrapped(), s.config().down_after_ms));
        let done = if !bootstrapped {
            bootstrap(&ctx).await
        } else if now.saturating_sub(since) >= down_after {
            tick(&ctx, now).await
        } else {
            Ok(())
        };
        if let Err(e) = done {
            tracing::debug!(node = ctx.node_id(), term, "pd leader duty: {e}");
        }
    }
}

async fn bootstrap(ctx: &Arc<NodeCtx>) -> Result<(), PdError> {
    let Some(first) = ctx.host.get(FIRST_SHARD) else {
        return Ok(());
    };
    let mut shard = report::descriptor(&first);
    shard.leader = None;
    shard.term = 0;
    let now = now_ms();
    for r in &shard.replicas {
        let Some(address) = first.member_addr(r.node) else {
            continue;
        };
        let labels = if r.node == ctx.node_id() {
            ctx.config.labels.clone()
        } else {
            Default::default()
        };
        command(
            ctx,
            Command::RegisterNode {
                node: r.node,
                address,
                labels,
                now_ms: now,
            },
        )
        .await?;
    }
    let config = PdConfig {
        down_after_ms: ctx.config.pd.down_after_ms,
        ..PdConfig::default()
    };
    command(ctx, Command::SetConfig { config }).await?;
    let r = command(ctx, Command::Bootstrap { shard }).await?;
    tracing::info!(node = ctx.node_id(), result = ?r, "placement driver bootstrapped");
    Ok(())
}

async fn tick(ctx: &Arc<NodeCtx>, now: u64) -> Result<(), PdError> {
    if let CommandResult::Tick(down) = command(ctx, Command::Tick { now_ms: now }).await? {
        if !down.is_empty() {
            tracing::warn!(
                node = ctx.node_id(),
                ?down,
                "nodes silent too long are now Down"
            );
        }
    }
    Ok(())
}
