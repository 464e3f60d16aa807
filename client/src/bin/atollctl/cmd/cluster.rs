//! Commands that read the placement driver's view of the cluster:
//! `atollctl cluster status` (the nodes) and `atollctl shards`.

use anyhow::Context as _;
use atoll_client::admin::cluster_state;
use atoll_client::ClusterState;
use clap::Subcommand;

use super::Context;

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Show the placement driver's view of the nodes: state (up, draining,
    /// down, removed), zone, replica and leader counts, time since the last
    /// heartbeat, capacity and use. Any node answers (it asks the PD
    /// leader); --endpoints are tried in turn.
    Status,
}

pub async fn run(command: ClusterCommand, ctx: &Context) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Status => status(ctx).await,
    }
}

async fn status(ctx: &Context) -> anyhow::Result<()> {
    let state = read_state(ctx).await?;
    ctx.out.cluster_status(&state)
}

pub async fn shards(ctx: &Context) -> anyhow::Result<()> {
    let state = read_state(ctx).await?;
    ctx.out.shards(&state)
}

/// The cluster state from the first endpoint that answers within
/// `--timeout`.
async fn read_state(ctx: &Context) -> anyhow::Result<ClusterState> {
    cluster_state(&ctx.endpoints, ctx.timeout)
        .await
        .context("cannot read the cluster state")
}
