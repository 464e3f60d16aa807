//! What the PD leader does on its own, once per heartbeat interval:
//! - once: registers the nodes of the first shard and the shard itself
//!   (`Bootstrap`), with the down timeout of this node's `[pd]` settings;
//! - asks the leaders of shards past a split threshold to split them;
//! - runs the operators of replica repair and balance (`operators`), and
//!   moves the PD's own group off nodes that are not up (`pd_group`);
//! - marks nodes silent for `down_after_ms` as `Down` (`Tick`), but only
//!   after leading for `down_after_ms` itself, so that a new leader does
//!   not mark nodes down whose heartbeats went to the old one.

use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeMap;

use atoll_pd::checker::split::is_due;
use atoll_pd::command::{Command, CommandResult};
use atoll_pd::config::PdConfig;
use atoll_proto as pb;
use atoll_proto::admin_client::AdminClient;

use super::heartbeat::command;
use super::{now_ms, report, PdError, PD_SHARD};
use crate::raft::type_config::ReplicaId;
use crate::service::admin::FIRST_SHARD;
use crate::service::NodeCtx;
use crate::state_machine::{read_pd, SharedPd};

/// Runs on a PD member until the task is aborted (at node shutdown).
pub async fn run(ctx: Arc<NodeCtx>) {
    let every = Duration::from_millis(ctx.config.pd.heartbeat_ms);
    // (term, when this node saw itself lead in it)
    let mut leading: Option<(u64, u64)> = None;
    let mut asked = Asked::default();
    let mut operators = super::operators::Operators::default();
    let mut pd_group = super::pd_group::PdGroup::default();
    loop {
        tokio::time::sleep(every).await;
        let Some(pd) = ctx.host.get(PD_SHARD) else {
            continue;
        };
        let Some(state) = pd.pd() else { continue };
        let term = pd.raft.metrics().borrow().current_term;
        if !pd.is_leader() {
            if leading.take().is_some() {
                operators.clear();
                pd_group.clear();
            }
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
        } else {
            split_big_shards(&ctx, state, &mut asked).await;
            operators.round(&ctx, state, now);
            pd_group.round(&ctx, &read_pd(state, Clone::clone));
            if now.saturating_sub(since) >= down_after {
                tick(&ctx, now).await
            } else {
                Ok(())
            }
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
        let Some(address) = first.member_addr(ReplicaId(r.id)) else {
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
        split_size_bytes: ctx.config.pd.split_size_bytes,
        split_keys: ctx.config.pd.split_keys,
        replication_factor: usize::try_from(ctx.config.pd.replication_factor).unwrap_or(usize::MAX),
        ..PdConfig::default()
    };
    command(ctx, Command::SetConfig { config }).await?;
    let r = command(ctx, Command::Bootstrap { shard }).await?;
    tracing::info!(node = ctx.node_id(), result = ?r, "placement driver bootstrapped");
    Ok(())
}

/// Splits already asked for: shard -> (its version then, the round).
#[derive(Default)]
struct Asked {
    by_shard: BTreeMap<u64, (u64, u64)>,
    round: u64,
}

/// Rounds before a split that did not happen is asked for again.
const SPLIT_RETRY_ROUNDS: u64 = 10;

/// Asks the leader of each shard past a split threshold to split it at
/// about its middle key (the PD's split checker, `atoll_pd::checker::split`).
/// Once per shard version: the split moves the version, and the leader
/// reports no size for the new version until it has measured it.
async fn split_big_shards(ctx: &Arc<NodeCtx>, state: &SharedPd, asked: &mut Asked) {
    asked.round += 1;
    let due: Vec<(u64, u64, String)> = read_pd(state, |s| {
        s.shards()
            .filter(|sh| is_due(s, sh))
            .filter_map(|sh| {
                let addr = s.node(sh.desc.leader_node()?)?.address.clone();
                Some((sh.desc.id, sh.desc.epoch.version, addr))
            })
            .collect()
    });
    for (shard, version, addr) in due {
        let fresh = match asked.by_shard.get(&shard) {
            Some((v, at)) => *v != version || asked.round >= at + SPLIT_RETRY_ROUNDS,
            None => true,
        };
        if !fresh {
            continue;
        }
        asked.by_shard.insert(shard, (version, asked.round));
        match ask_split(ctx, &addr, shard).await {
            Ok(()) => tracing::info!(
                node = ctx.node_id(),
                shard,
                "split a shard past the split threshold"
            ),
            Err(e) => tracing::debug!(node = ctx.node_id(), shard, "asking for a split: {e}"),
        }
    }
}

async fn ask_split(ctx: &NodeCtx, addr: &str, shard: u64) -> Result<(), String> {
    let channel = ctx.peers.channel(addr).map_err(|e| e.to_string())?;
    let reply = AdminClient::new(channel)
        .split_shard(pb::SplitShardRequest {
            shard_id: shard,
            split_key: Vec::new(),
        })
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner();
    match reply.error {
        Some(e) => Err(e.message),
        None => Ok(()),
    }
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
