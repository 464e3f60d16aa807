//! Operator commands: status, init, add-learner, change-membership, compact.

use anyhow::Context as _;
use atoll_client::admin::{cluster_status, on_leader, AdminClient};
use clap::Args;
use serde_json::json;

use super::{Context, Failed, Usage};

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The initial voters as ID=HOST:PORT, comma separated. The request goes
    /// to the first member.
    #[arg(long, required = true, value_delimiter = ',', value_parser = parse_member)]
    pub members: Vec<(u64, String)>,
}

#[derive(Debug, Args)]
pub struct AddLearnerArgs {
    #[arg(long)]
    pub shard: u64,
    /// The new learner's node id.
    #[arg(long)]
    pub node: u64,
    /// The new learner's address (host:port).
    #[arg(long)]
    pub addr: String,
}

#[derive(Debug, Args)]
pub struct ChangeMembershipArgs {
    #[arg(long)]
    pub shard: u64,
    /// The complete new voter set, comma separated node ids.
    #[arg(long, required = true, value_delimiter = ',')]
    pub voters: Vec<u64>,
}

#[derive(Debug, Args)]
pub struct CompactArgs {
    #[arg(long)]
    pub shard: u64,
}

pub async fn status(ctx: &Context) -> anyhow::Result<()> {
    let nodes = cluster_status(ctx.endpoints.iter().cloned(), ctx.timeout).await;
    ctx.out.status(&nodes)?;
    if nodes.iter().all(|n| n.result.is_err()) {
        return Err(Failed("no node answered".into()).into());
    }
    Ok(())
}

pub async fn init(args: InitArgs, ctx: &Context) -> anyhow::Result<()> {
    let Some((_, first)) = args.members.first() else {
        return Err(Usage("--members names no node".into()).into());
    };
    let admin = AdminClient::connect(first.clone())
        .await?
        .with_timeout(ctx.timeout);
    admin
        .init_cluster(&args.members)
        .await
        .with_context(|| format!("init via {first} failed"))?;
    ctx.out.done(json!({ "ok": true }), "cluster initialized")
}

pub async fn add_learner(args: AddLearnerArgs, ctx: &Context) -> anyhow::Result<()> {
    let (shard, node, addr) = (args.shard, args.node, args.addr);
    on_leader(&ctx.endpoints, ctx.timeout, |admin| {
        let addr = addr.clone();
        async move { admin.add_learner(shard, node, &addr).await }
    })
    .await?;
    ctx.out.done(json!({ "ok": true }), "learner added")
}

pub async fn change_membership(args: ChangeMembershipArgs, ctx: &Context) -> anyhow::Result<()> {
    let (shard, voters) = (args.shard, args.voters);
    on_leader(&ctx.endpoints, ctx.timeout, |admin| {
        let voters = voters.clone();
        async move { admin.change_membership(shard, &voters).await }
    })
    .await?;
    ctx.out.done(json!({ "ok": true }), "membership changed")
}

pub async fn compact(args: CompactArgs, ctx: &Context) -> anyhow::Result<()> {
    let mut results = Vec::new();
    for endpoint in &ctx.endpoints {
        let admin = AdminClient::connect(endpoint.clone())
            .await?
            .with_timeout(ctx.timeout);
        let result = admin.compact(args.shard).await;
        results.push((endpoint.clone(), result));
    }
    ctx.out.per_node(&results)?;
    if results.iter().all(|(_, r)| r.is_err()) {
        return Err(Failed(format!("no endpoint compacted shard {}", args.shard)).into());
    }
    Ok(())
}

/// Parses `ID=HOST:PORT`.
fn parse_member(text: &str) -> Result<(u64, String), String> {
    let (id, addr) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected ID=HOST:PORT"))?;
    let id = id
        .trim()
        .parse()
        .map_err(|_| format!("{text:?}: node id {id:?} is not a number"))?;
    let addr = addr.trim();
    if addr.is_empty() {
        return Err(format!("{text:?}: missing address"));
    }
    Ok((id, addr.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_parse_as_id_equals_address() {
        assert_eq!(
            parse_member("1=127.0.0.1:7101"),
            Ok((1, "127.0.0.1:7101".into()))
        );
        assert!(parse_member("127.0.0.1:7101").is_err());
        assert!(parse_member("x=127.0.0.1:7101").is_err());
        assert!(parse_member("1=").is_err());
    }
}
