//! The subcommands. Each returns `Ok(())` on success or an error whose text
//! is printed after `error: `; see `main::exit_code` for the exit status.

mod admin;
mod cluster;
mod kv;
mod node;
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

    /// A key given on the command line: its UTF-8 bytes, or with `--hex`
    /// the bytes its hex digits spell (as keys print with `--hex`).
    pub fn key(&self, text: &str) -> Result<Vec<u8>, Usage> {
        if !self.out.hex {
            return Ok(text.as_bytes().to_vec());
        }
        decode_hex(text).ok_or_else(|| {
            Usage(format!(
                "{text:?} is not hex (with --hex, give keys as pairs of hex digits, e.g. 6d for \"m\")"
            ))
        })
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
    /// Commands on one shard (transfer-leader, split).
    #[command(subcommand)]
    Shard(shard::ShardCommand),
    /// Commands on one node (add, drain, up, remove), through the placement
    /// driver.
    #[command(subcommand)]
    Node(node::NodeCommand),
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
        Command::Node(command) => node::run(command, ctx).await,
    }
}

/// The bytes of an even number of hex digits (either case); None for
/// anything else.
fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

/// A context with no endpoints, for unit tests of argument handling.
#[cfg(test)]
pub(crate) fn test_context(hex: bool) -> Context {
    Context {
        endpoints: Vec::new(),
        timeout: Duration::from_secs(1),
        out: Printer { json: false, hex },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(hex: bool) -> Context {
        test_context(hex)
    }

    #[test]
    fn keys_are_utf8_or_hex_with_the_hex_flag() {
        assert_eq!(context(false).key("6d").ok(), Some(b"6d".to_vec()));
        assert_eq!(context(true).key("6d").ok(), Some(b"m".to_vec()));
        assert_eq!(context(true).key("00fFa0").ok(), Some(vec![0, 0xff, 0xa0]));
        assert_eq!(context(true).key("").ok(), Some(Vec::new()));
        for bad in ["6", "6g", "+1", " 6d", "é1"] {
            let err = context(true).key(bad).expect_err(bad);
            assert!(err.0.contains("is not hex"), "{bad}: {err}");
        }
    }
}
