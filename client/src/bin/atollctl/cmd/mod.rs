//! The subcommands. Each returns `Ok(())` on success or an error whose text
//! is printed after `error: `; see `main::exit_code` for the exit status.

mod admin;
mod cluster;
mod kv;
mod shard;
mod txn;

use std::time::Duration;

use anyhow::Context as _;
use atoll_client::{Client, ClientConfig};
use clap::Subcommand;

use crate::output::Printer;

/// What every command gets from the global options.
#[derive(Debug)]
pub struct Context {
    pub endpoints: Vec<String>,
    pub timeout: Duration,
    pub out: Printer,
}

impl Context {
    /// A KV client bounded by `--timeout`.
    pub async fn client(&self) -> anyhow::Result<Client> {
        let config = ClientConfig {
            request_timeout: self.timeout.min(Duration::from_secs(2)),
            deadline: self.timeout,
            ..ClientConfig::default()
        };
        Client::with_config(self.endpoints.iter().cloned(), config)
            .await
            .with_context(|| format!("cannot connect to {}", self.endpoints.join(",")))
    }
}

/// A mistake in how the command was called (exit status 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// An expected negative outcome (exit status 1): missing key, failed compare.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Failed(pub String);

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the value of KEY (linearizable read). A missing key prints
    /// nothing on stdout, "key not found" on stderr, and exits with 1.
    Get(kv::GetArgs),
    /// Set KEY to VALUE.
    Put(kv::PutArgs),
    /// Delete KEY; prints whether it existed.
    Delete(kv::KeyArgs),
    /// Compare-and-swap: set (or delete) KEY only if its value is as
    /// expected. Exits with 1 when the comparison does not hold.
    Cas(kv::CasArgs),
    /// Print the pairs with START <= key < END, one pair a line, key and
    /// value separated by a tab.
    Scan(kv::ScanArgs),
    /// Conditional multi-key write within one shard: if every --if holds,
    /// run the --then ops, else the --else ops, in order, all at once.
    /// Prints which branch ran and one line per op result.
    Txn(txn::TxnArgs),
    /// Show every node's shard replicas (role, term, log and apply indexes).
    Status,
    /// The cluster as the placement driver sees it (status).
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// List every shard as the placement driver knows it: key range, epoch,
    /// replicas, leader, term, size. Any node answers (it asks the PD
    /// leader); --endpoints are tried in turn.
    Shards,
    /// Initialize a new cluster with the given voters.
    Init(admin::InitArgs),
    /// Add a node as learner of a shard (sent to the shard leader).
    AddLearner(admin::AddLearnerArgs),
    /// Set the complete voter set of a shard (sent to the shard leader).
    ChangeMembership(admin::ChangeMembershipArgs),
    /// Snapshot a shard and purge its log, on every endpoint hosting it.
    Compact(admin::CompactArgs),
    /// Commands on one shard (transfer-leader).
    #[command(subcommand)]
    Shard(shard::ShardCommand),
}

pub async fn run(command: Command, ctx: &Context) -> anyhow::Result<()> {
    match command {
        Command::Get(args) => kv::get(args, ctx).await,
        Command::Put(args) => kv::put(args, ctx).await,
        Command::Delete(args) => kv::delete(args, ctx).await,
        Command::Cas(args) => kv::cas(args, ctx).await,
        Command::Scan(args) => kv::scan(args, ctx).await,
        Command::Txn(args) => txn::txn(args, ctx).await,
        Command::Status => admin::status(ctx).await,
        Command::Cluster(command) => cluster::run(command, ctx).await,
        Command::Shards => cluster::shards(ctx).await,
        Command::Init(args) => admin::init(args, ctx).await,
        Command::AddLearner(args) => admin::add_learner(args, ctx).await,
        Command::ChangeMembership(args) => admin::change_membership(args, ctx).await,
        Command::Compact(args) => admin::compact(args, ctx).await,
        Command::Shard(command) => shard::run(command, ctx).await,
    }
}
