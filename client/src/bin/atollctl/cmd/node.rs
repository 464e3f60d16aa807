//! Commands on one node, through the placement driver: `atollctl node
//! drain`, `node up` (cancel a drain) and `node remove`. A drain moves
//! every replica off the node (the PD's operators add a replica elsewhere,
//! then remove the node's); `--wait` follows it with a progress bar until
//! the node holds none.

use std::time::Duration;

use anyhow::Context as _;
use atoll_client::admin::{cluster_state, set_node_state, NodeStateChange, NodeTarget};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use tokio::time::Instant;

use super::{Context, Failed};

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Move every replica off NODE_ID, then keep it empty. The placement
    /// driver adds a replica on another Up node before it removes the
    /// node's (so a 3-replica shard needs a 4th node), moving leadership
    /// away first. `--wait` shows the progress and returns once the node
    /// holds no replica; `node remove` then takes it out.
    Drain(DrainArgs),
    /// Cancel a drain: NODE_ID takes new replicas again.
    Up(NodeArgs),
    /// Take NODE_ID out of the cluster for good. Refused while it holds
    /// replicas (drain it first, or --force: they are replaced elsewhere)
    /// and when it would leave a shard without a live quorum. A removed
    /// node's id is never used again; to bring the machine back, start it
    /// with an empty data directory and --join.
    Remove(RemoveArgs),
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The node (`atollctl cluster status` lists them).
    pub node_id: u64,
}

#[derive(Debug, Args)]
pub struct DrainArgs {
    /// The node to drain.
    pub node_id: u64,
    /// Wait until the node holds no replica, showing the progress.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: the longest to wait (e.g. 10m; a bare number is
    /// seconds).
    #[arg(long, default_value = "30m", value_parser = crate::parse_duration)]
    pub wait_timeout: Duration,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The node to remove.
    pub node_id: u64,
    /// Remove it even though it still holds replicas (for a node that is
    /// gone for good; its replicas are replaced elsewhere).
    #[arg(long)]
    pub force: bool,
}

pub async fn run(command: NodeCommand, ctx: &Context) -> anyhow::Result<()> {
    match command {
        NodeCommand::Drain(args) => drain(args, ctx).await,
        NodeCommand::Up(args) => set(ctx, args.node_id, NodeTarget::Up, false)
            .await
            .and_then(|c| report(ctx, &c, "takes new replicas again")),
        NodeCommand::Remove(args) => set(ctx, args.node_id, NodeTarget::Removed, args.force)
            .await
            .and_then(|c| report(ctx, &c, "is out of the cluster; its id is never reused")),
    }
}

async fn set(
    ctx: &Context,
    node: u64,
    target: NodeTarget,
    force: bool,
) -> anyhow::Result<NodeStateChange> {
    set_node_state(&ctx.endpoints, ctx.timeout, node, target, force)
        .await
        .with_context(|| format!("cannot change the state of node {node}"))
}

fn report(ctx: &Context, c: &NodeStateChange, what: &str) -> anyhow::Result<()> {
    let doc = json!({ "ok": true, "node_id": c.node, "from": c.from, "to": c.to });
    ctx.out.done(
        doc,
        &format!("node {}: {} -> {}; it {what}", c.node, c.from, c.to),
    )
}

async fn drain(args: DrainArgs, ctx: &Context) -> anyhow::Result<()> {
    let node = args.node_id;
    let change = set(ctx, node, NodeTarget::Draining, false).await?;
    if !args.wait {
        return report(
            ctx,
            &change,
            "is draining; follow it with `atollctl cluster status` or drain again with --wait",
        );
    }
    let left = wait_empty(ctx, node, args.wait_timeout).await?;
    let doc = json!({ "ok": true, "node_id": node, "from": change.from, "to": change.to, "replicas_left": left });
    ctx.out.done(
        doc,
        &format!("node {node} is drained: it holds no replica; `atollctl node remove {node}` takes it out"),
    )
}

/// Polls the PD until `node` holds no replica; returns the count (0).
async fn wait_empty(ctx: &Context, node: u64, limit: Duration) -> anyhow::Result<u64> {
    let deadline = Instant::now() + limit;
    let bar = if ctx.out.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0)
    };
    bar.set_style(
        ProgressStyle::with_template("draining node {msg} [{bar:30}] {pos}/{len} replicas moved")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(node.to_string());
    let mut total = None;
    loop {
        let held = match cluster_state(&ctx.endpoints, ctx.timeout).await {
            Ok(state) => match state.node(node) {
                Some(n) => Some(n.replicas),
                None => {
                    return Err(Failed(format!("node {node} is not known to the cluster")).into())
                }
            },
            Err(e) => {
                bar.println(format!("cannot read the cluster state ({e}); retrying"));
                None
            }
        };
        if let Some(held) = held {
            let all = *total.get_or_insert(held);
            let all = all.max(held);
            total = Some(all);
            bar.set_length(all);
            bar.set_position(all - held);
            if held == 0 {
                bar.finish_and_clear();
                return Ok(0);
            }
        }
        if Instant::now() >= deadline {
            bar.abandon();
            return Err(Failed(format!(
                "node {node} still holds {} replica(s) after {limit:?}; the drain goes on. \
                 Is there an Up node to take them (`atollctl cluster status`)?",
                held.map_or("some".into(), |h| h.to_string())
            ))
            .into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
