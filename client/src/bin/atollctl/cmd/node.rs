//! Commands on one node, through the placement driver: `atollctl node
//! add` (register a node before it starts), `node drain`, `node up`
//! (cancel a drain) and `node remove`. A drain moves every replica off the
//! node (the PD's operators add a replica elsewhere, then remove the
//! node's); `--wait` follows it with a progress bar until the node holds
//! none.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use atoll_client::admin::{
    add_node, cluster_state, set_node_state, AddedNode, NodeStateChange, NodeTarget,
};
use atoll_client::AdminClient;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use tokio::time::Instant;

use super::{Context, Failed, Usage};

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Register a node before it starts, as `etcdctl member add` does: the
    /// placement driver gives it its id now and keeps its labels. It is
    /// `joining`, with no replicas, until it starts with `--join` and the
    /// address ADDR; it then gets this id and is `up`. Prints the command
    /// that starts it. An address already registered gets its id again.
    Add(AddArgs),
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
pub struct AddArgs {
    /// The host:port the node will be reached at (its --advertise, else
    /// its --listen), e.g. 10.0.0.4:7101.
    pub addr: String,
    /// A label, KEY=VALUE (e.g. zone=eu-1a: replicas of a shard are spread
    /// over zones); repeat for more.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
}

/// Parses `key=value`; the key may not be empty.
fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.trim().to_string()))
        }
        _ => Err(format!("{text:?}: expected KEY=VALUE, e.g. zone=eu-1a")),
    }
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
        NodeCommand::Add(args) => add(args, ctx).await,
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

async fn add(args: AddArgs, ctx: &Context) -> anyhow::Result<()> {
    let mut labels = BTreeMap::new();
    for (key, value) in args.labels {
        if labels.contains_key(&key) {
            return Err(Usage(format!("label {key:?} is given twice")).into());
        }
        labels.insert(key, value);
    }
    let added = add_node(&ctx.endpoints, ctx.timeout, &args.addr, &labels)
        .await
        .with_context(|| format!("cannot add a node at {}", args.addr))?;
    let start = (added.state == "joining").then(|| start_command(&added, &ctx.endpoints));
    let doc = json!({
        "ok": true,
        "node_id": added.node,
        "addr": added.address,
        "fresh": added.fresh,
        "state": added.state,
        "start_command": start,
    });
    ctx.out.done(doc, &added_text(&added, start.as_deref()))
}

/// What `node add` says: the id, whether it was new, and what to do next.
fn added_text(added: &AddedNode, start: Option<&str>) -> String {
    let (id, addr) = (added.node, &added.address);
    let first = if added.fresh {
        format!("node {id} added at {addr}: joining, it gets no replicas until it starts")
    } else if start.is_some() {
        format!("{addr} is already node {id}: joining, not started yet")
    } else {
        format!(
            "{addr} is already node {id}, which is {}; nothing changed",
            added.state
        )
    };
    match start {
        Some(command) => format!("{first}\nstart it with an empty data dir: {command}"),
        None => first,
    }
}

/// The `atoll-node` command line that starts an added node: it joins
/// through `endpoints`, and the PD knows it by its address.
fn start_command(added: &AddedNode, endpoints: &[String]) -> String {
    format!(
        "atoll-node --listen {} --join {} --data-dir <dir>",
        added.address,
        endpoints.join(",")
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
                // The PD's own group moves too, after the data replicas
                // (or with them); the node itself says whether it still
                // holds a PD replica.
                Some(n) => Some(n.replicas + u64::from(holds_pd_replica(ctx, &n.addr).await)),
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

/// Whether the node at `addr` hosts a replica of the PD's own group
/// (shard 0); false if it cannot be asked (a dead node holds nothing that
/// counts).
async fn holds_pd_replica(ctx: &Context, addr: &str) -> bool {
    let Ok(admin) = AdminClient::connect(addr.to_string()).await else {
        return false;
    };
    match admin.with_timeout(ctx.timeout).status().await {
        Ok(status) => status
            .shards
            .iter()
            .any(|s| s.shard.as_ref().is_some_and(|d| d.id == 0)),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn added(fresh: bool, state: &str) -> AddedNode {
        AddedNode {
            node: 4,
            address: "10.0.0.4:7101".into(),
            fresh,
            state: state.into(),
        }
    }

    #[test]
    fn labels_parse_as_key_equals_value() {
        assert_eq!(
            parse_label("zone=eu-1a"),
            Ok(("zone".to_string(), "eu-1a".to_string()))
        );
        assert_eq!(
            parse_label("rack="),
            Ok(("rack".to_string(), String::new()))
        );
        assert!(parse_label("zone").is_err());
        assert!(parse_label("=eu-1a").is_err());
    }

    #[test]
    fn an_added_node_is_told_how_to_start() {
        let endpoints = ["10.0.0.1:7101".to_string(), "10.0.0.2:7101".to_string()];
        let start = start_command(&added(true, "joining"), &endpoints);
        assert_eq!(
            start,
            "atoll-node --listen 10.0.0.4:7101 --join 10.0.0.1:7101,10.0.0.2:7101 --data-dir <dir>"
        );
        assert_eq!(
            added_text(&added(true, "joining"), Some(&start)),
            format!(
                "node 4 added at 10.0.0.4:7101: joining, it gets no replicas until it starts\n\
                 start it with an empty data dir: {start}"
            )
        );
        assert!(added_text(&added(false, "joining"), Some(&start))
            .starts_with("10.0.0.4:7101 is already node 4: joining, not started yet\n"));
        assert_eq!(
            added_text(&added(false, "up"), None),
            "10.0.0.4:7101 is already node 4, which is up; nothing changed"
        );
    }
}
