//! Commands on one shard: `atollctl shard transfer-leader`.

use anyhow::Context as _;
use atoll_client::admin::{on_leader, TransferFailure};
use clap::{Args, Subcommand};
use serde_json::json;

use super::{Context, Failed, Usage};

#[derive(Debug, Subcommand)]
pub enum ShardCommand {
    /// Move the leadership of SHARD_ID to NODE_ID, a voter of the shard.
    /// Writes to the shard pause briefly (tens of milliseconds) and resume
    /// on the new leader; if the transfer fails they resume on whoever
    /// leads. Sent to the shard leader.
    TransferLeader(TransferLeaderArgs),
}

#[derive(Debug, Args)]
pub struct TransferLeaderArgs {
    /// The shard whose leadership moves.
    pub shard_id: u64,
    /// The node that should lead it (a voter of the shard).
    pub node_id: u64,
}

pub async fn run(command: ShardCommand, ctx: &Context) -> anyhow::Result<()> {
    match command {
        ShardCommand::TransferLeader(args) => transfer_leader(args, ctx).await,
    }
}

async fn transfer_leader(args: TransferLeaderArgs, ctx: &Context) -> anyhow::Result<()> {
    let (shard, node) = (args.shard_id, args.node_id);
    let outcome = on_leader(&ctx.endpoints, ctx.timeout, |admin| async move {
        admin.transfer_leader(shard, node).await
    })
    .await
    .with_context(|| format!("transferring the leadership of shard {shard} to node {node}"))?;
    match outcome {
        Ok(t) => {
            let doc = json!({
                "ok": true,
                "shard_id": t.shard_id,
                "leader_id": t.leader_id,
                "term": t.term,
                "paused_ms": t.paused.as_millis() as u64,
            });
            let text = if t.paused.is_zero() {
                format!("node {node} already leads shard {shard} (term {})", t.term)
            } else {
                format!(
                    "node {} now leads shard {shard} (term {}); new writes were held back for {} ms",
                    t.leader_id,
                    t.term,
                    t.paused.as_millis()
                )
            };
            ctx.out.done(doc, &text)
        }
        Err(f) => {
            if ctx.out.json {
                ctx.out.print_json(&json!({
                    "ok": false,
                    "shard_id": shard,
                    "reason": f.reason.as_str(),
                    "error": f.message,
                    "leader_id": f.leader_id,
                }))?;
            }
            let message = format!("shard {shard} was not transferred: {}", f.message);
            match f.reason {
                TransferFailure::TargetNotVoter => Err(Usage(message).into()),
                TransferFailure::TargetLagging
                | TransferFailure::TargetUnreachable
                | TransferFailure::TimedOut
                | TransferFailure::Other => Err(Failed(message).into()),
            }
        }
    }
}
