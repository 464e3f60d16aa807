//! Commands on one shard: `atollctl shard transfer-leader` and
//! `atollctl shard split`.

use std::time::Duration;

use anyhow::Context as _;
use atoll_client::admin::{cluster_state, on_leader, TransferFailure};
use atoll_client::{Backoff, Error, ServerErrorKind};
use atoll_proto::ShardDescriptor;
use clap::{Args, Subcommand};
use serde_json::json;
use tokio::time::Instant;

use super::{Context, Failed, Usage};

#[derive(Debug, Subcommand)]
pub enum ShardCommand {
    /// Move the leadership of SHARD_ID to NODE_ID, a voter of the shard.
    /// Writes to the shard pause briefly (tens of milliseconds) and resume
    /// on the new leader; if the transfer fails they resume on whoever
    /// leads. Sent to the shard leader.
    TransferLeader(TransferLeaderArgs),
    /// Split SHARD_ID in two at a key: the shard keeps [start, KEY), a new
    /// shard (id from the placement driver) takes [KEY, end) on the same
    /// replicas; no data is copied. Sent to the shard leader. Retried while
    /// the cluster is not ready for it (the placement driver does not know
    /// the shard yet, a previous split is not reported yet), up to
    /// --timeout.
    Split(SplitArgs),
}

#[derive(Debug, Args)]
pub struct SplitArgs {
    /// The shard to split (`atollctl shards` lists them).
    pub shard_id: u64,
    /// The first key of the new shard, strictly inside the shard (UTF-8,
    /// or hex with --hex). Omitted: the node picks about the middle key of
    /// the shard (it needs at least two keys).
    #[arg(long, value_name = "KEY")]
    pub at: Option<String>,
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
        ShardCommand::Split(args) => split(args, ctx).await,
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

async fn split(args: SplitArgs, ctx: &Context) -> anyhow::Result<()> {
    let shard = args.shard_id;
    let outcome = match args.at.as_deref().map(|k| split_key(ctx, k)).transpose() {
        Ok(key) => split_with_retries(ctx, shard, key.as_deref()).await,
        Err(usage) => Err(usage.into()),
    };
    match outcome {
        Ok((left, right)) => ctx.out.split(shard, &left, &right),
        Err(err) => {
            if ctx.out.json {
                let error = format!("{err:#}");
                ctx.out
                    .print_json(&json!({ "ok": false, "shard_id": shard, "error": error }))?;
            }
            Err(err)
        }
    }
}

/// The key of `--at`; never empty, as an empty key asks the node for the
/// middle key.
fn split_key(ctx: &Context, text: &str) -> Result<Vec<u8>, Usage> {
    let key = ctx.key(text)?;
    if key.is_empty() {
        return Err(Usage(
            "--at needs a non-empty key (a shard cannot split at its first key); \
             omit --at to split at about the middle key"
                .into(),
        ));
    }
    Ok(key)
}

/// What one round over the endpoints came to.
#[derive(Debug)]
enum Round {
    Split(ShardDescriptor, ShardDescriptor),
    /// Nothing was split, and asking again may succeed.
    Retry(Error),
    /// The answer; asking again would not help.
    Fail(Error),
    /// `--timeout` ran out during the round.
    OutOfTime,
}

/// Asks the shard leader to split, again after a backoff while the answer
/// is [`Round::Retry`], until `--timeout` runs out.
async fn split_with_retries(
    ctx: &Context,
    shard: u64,
    key: Option<&[u8]>,
) -> anyhow::Result<(ShardDescriptor, ShardDescriptor)> {
    let deadline = Instant::now() + ctx.timeout;
    let backoff = Backoff::default();
    let mut rng = rand::thread_rng();
    let mut last = None;
    for attempt in 0.. {
        let time_left = deadline.saturating_duration_since(Instant::now());
        let error = match split_once(ctx, shard, key, time_left).await {
            Round::Split(left, right) => return Ok((left, right)),
            Round::Fail(error) => return Err(refused(shard, error)),
            Round::OutOfTime => break,
            Round::Retry(error) => {
                if unknown_shard(ctx, shard, &error, deadline).await {
                    return Err(Usage(format!(
                        "there is no shard {shard}: no node hosts it and the placement \
                         driver does not know it; `atollctl shards` lists the shards"
                    ))
                    .into());
                }
                last.insert(error)
            }
        };
        let delay = backoff.next_delay(attempt, &mut rng);
        if Instant::now() + delay >= deadline {
            break;
        }
        tracing::debug!(shard, ?delay, "shard not split yet, retrying: {error}");
        tokio::time::sleep(delay).await;
    }
    Err(gave_up(shard, ctx.timeout, last.as_ref()))
}

/// Whether no node hosting `shard` (`error` is `ShardNotFound`) is because there is no
/// such shard: the placement driver answers and does not list it. A shard just made by a
/// split is hosted by its nodes before the PD hears of it, so this never turns away a real
/// one; a PD that does not answer leaves the question open.
async fn unknown_shard(ctx: &Context, shard: u64, error: &Error, deadline: Instant) -> bool {
    if !matches!(
        error,
        Error::Server {
            kind: ServerErrorKind::ShardNotFound,
            ..
        }
    ) {
        return false;
    }
    let left = deadline.saturating_duration_since(Instant::now());
    let ask = left.min(Duration::from_secs(2));
    match cluster_state(&ctx.endpoints, ask).await {
        Ok(state) => state.bootstrapped && !state.shards.iter().any(|s| s.id == shard),
        Err(_) => false,
    }
}

/// One round over the endpoints ([`on_leader`]), within `time_left`. The
/// leader's `Unavailable` ends the round: `on_leader` would go on to the
/// followers, which only point back to it, and lose its message.
async fn split_once(ctx: &Context, shard: u64, key: Option<&[u8]>, time_left: Duration) -> Round {
    let round = on_leader(&ctx.endpoints, time_left, |admin| async move {
        match admin.split_shard(shard, key).await {
            Err(unavailable @ Error::Unavailable(_)) => Ok(Err(unavailable)),
            other => other.map(Ok),
        }
    });
    match tokio::time::timeout(time_left, round).await {
        Ok(Ok(Ok((left, right)))) => Round::Split(left, right),
        Ok(Ok(Err(error)) | Err(error)) => classify(error),
        Err(_) => Round::OutOfTime,
    }
}

/// [`Round::Retry`] when no leader answered (an election, an unreachable
/// node, a node that has not opened the shard yet) or the leader refused
/// before proposing the split; [`Round::Fail`] for anything else.
fn classify(error: Error) -> Round {
    let retry = match &error {
        Error::NotLeader { .. }
        | Error::Transport(_)
        | Error::Server {
            kind: ServerErrorKind::ShardNotFound,
            ..
        } => true,
        // Refused with nothing proposed (the PD does not know the shard's
        // current version yet, the shard changed meanwhile, the PD is
        // unavailable): asking again cannot split twice. Any `Unavailable`
        // ("not committed within 5s; it may still apply") leaves the
        // outcome open, so it is not retried.
        Error::NotApplied(_) => true,
        _ => false,
    };
    if retry {
        Round::Retry(error)
    } else {
        Round::Fail(error)
    }
}

/// The error of a split the leader refused: exit status 2 for a bad key or
/// too few keys (the node's message says which), 1 otherwise.
fn refused(shard: u64, error: Error) -> anyhow::Error {
    match error {
        Error::InvalidArgument(message) => {
            Usage(format!("cannot split shard {shard}: {message}")).into()
        }
        Error::Unavailable(message) => Failed(format!(
            "cannot split shard {shard}: {message}; `atollctl shards` shows whether it split, \
             check before running the command again"
        ))
        .into(),
        other => anyhow::Error::new(other).context(format!("cannot split shard {shard}")),
    }
}

/// The error once `--timeout` ran out: the last answer of a whole round
/// (none when the first round was cut short), and what to do next.
fn gave_up(shard: u64, timeout: Duration, last: Option<&Error>) -> anyhow::Error {
    let next = match last {
        Some(Error::NotApplied(_)) => {
            "the cluster was not ready for it yet: run the command again, or give a longer --timeout"
        }
        Some(Error::NotLeader { .. } | Error::Server { .. }) => {
            "no node led the shard: check its id with `atollctl shards` and its leader with \
             `atollctl status`"
        }
        _ => {
            "is the cluster running? check --endpoints; if a node stopped answering during \
             the split, it may still apply: `atollctl shards` shows whether it did"
        }
    };
    let last = last.map_or("no node answered".into(), Error::to_string);
    Failed(format!(
        "shard {shard} was not split within {timeout:?}: {last}; {next}"
    ))
    .into()
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: ShardCommand,
    }

    fn parse(args: &[&str]) -> Result<ShardCommand, clap::Error> {
        let argv = std::iter::once("shard").chain(args.iter().copied());
        Cli::try_parse_from(argv).map(|cli| cli.command)
    }

    fn parsed_split(args: &[&str]) -> (u64, Option<String>) {
        match parse(args) {
            Ok(ShardCommand::Split(a)) => (a.shard_id, a.at),
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn split_takes_a_shard_id_and_an_optional_key() {
        assert_eq!(
            parsed_split(&["split", "7", "--at", "m"]),
            (7, Some("m".into()))
        );
        assert_eq!(parsed_split(&["split", "7"]), (7, None));
        assert!(parse(&["split"]).is_err(), "the shard id is required");
        assert!(parse(&["split", "seven"]).is_err());
        assert!(parse(&["split", "7", "--at"]).is_err(), "--at needs a key");
    }

    fn context(hex: bool) -> Context {
        super::super::test_context(hex)
    }

    #[test]
    fn split_keys_are_never_empty_and_follow_hex() {
        assert_eq!(split_key(&context(false), "m").ok(), Some(b"m".to_vec()));
        assert_eq!(split_key(&context(true), "6d").ok(), Some(b"m".to_vec()));
        for (hex, text) in [(false, ""), (true, "")] {
            let err = split_key(&context(hex), text).expect_err("empty");
            assert!(err.0.contains("omit --at"), "{err}");
        }
        assert!(split_key(&context(true), "m").is_err(), "not hex");
    }

    fn retried(error: Error) -> bool {
        match classify(error) {
            Round::Retry(_) => true,
            Round::Fail(_) => false,
            Round::Split(..) | Round::OutOfTime => unreachable!("classify only judges errors"),
        }
    }

    #[test]
    fn refusals_before_the_proposal_are_retried_and_the_rest_are_not() {
        // The node's `NotApplied` refusals (node/src/shard/split.rs): nothing
        // was proposed, or the split was refused when applied.
        for message in [
            "not applied: the placement driver does not know shard 1 yet; nothing changed, retry",
            "not applied: shard 1 changed during the split (version 1 -> 2); nothing changed, retry",
            "not applied: the placement driver is unavailable: no leader yet; nothing changed, retry",
        ] {
            assert!(retried(Error::NotApplied(message.into())), "{message}");
        }
        // `Unavailable` may hide a split that still applies, whatever it says.
        let open =
            "unavailable: the split was not committed within 5s (no quorum?); it may still apply";
        assert!(!retried(Error::Unavailable(open.into())));
        assert!(!retried(Error::Unavailable("retry".into())));
        let not_leader = Error::NotLeader {
            shard_id: 1,
            leader_id: None,
            leader_addr: None,
        };
        assert!(retried(not_leader));
        assert!(retried(Error::Transport("a:1: refused".into())));
        let not_hosted = |kind| Error::Server {
            kind,
            message: "shard 2 is not hosted on this node".into(),
        };
        assert!(retried(not_hosted(ServerErrorKind::ShardNotFound)));
        assert!(!retried(not_hosted(ServerErrorKind::EpochMismatch)));
        assert!(!retried(Error::InvalidArgument("bad key".into())));
    }

    #[test]
    fn refusals_say_what_to_do_and_bad_keys_are_usage_errors() {
        let outside =
            "invalid argument: split key \"z\" is not strictly inside shard 1 [\"\", \"m\")";
        let err = refused(1, Error::InvalidArgument(outside.into()));
        assert!(err.is::<Usage>(), "exit status 2");
        assert_eq!(err.to_string(), format!("cannot split shard 1: {outside}"));

        let open =
            "unavailable: the split was not committed within 5s (no quorum?); it may still apply";
        let err = refused(1, Error::Unavailable(open.into()));
        assert!(err.is::<Failed>(), "exit status 1");
        assert!(
            err.to_string().ends_with(
                "`atollctl shards` shows whether it split, check before running the command again"
            ),
            "{err}"
        );

        let later = Error::NotApplied("the placement driver does not know shard 1 yet".into());
        let err = gave_up(1, Duration::from_secs(10), Some(&later));
        assert!(err.is::<Failed>());
        let text = err.to_string();
        assert!(
            text.starts_with(
                "shard 1 was not split within 10s: not applied: the placement driver does not know"
            ),
            "{text}"
        );
        assert!(
            text.ends_with("run the command again, or give a longer --timeout"),
            "{text}"
        );
        let silent = gave_up(1, Duration::from_millis(500), None).to_string();
        assert!(
            silent.starts_with(
                "shard 1 was not split within 500ms: no node answered; is the cluster running?"
            ),
            "{silent}"
        );
    }
}
