//! A fresh node started with `join` addresses and id 0 gets its node id
//! from the placement driver: `JoinNode` with its address and labels,
//! proposed on the PD leader through the first join address that answers.
//! The same address gets the same id again, so a node that stops before it
//! has stored the id asks again safely, and an address registered ahead
//! with `atollctl node add` gets the id given then (the join takes the
//! node from joining to up). The cluster id comes from the PD's
//! state in the same round, so the node claims its data dir for the right
//! cluster before any other message arrives. The PD leader hands out no
//! node id before it is bootstrapped (the initial members' ids would be
//! given out again); a joining node asks again for up to 30 s while the
//! cluster is starting. A fresh node started with `--id` and join
//! addresses asks only for the cluster id ([`cluster_from_pd`]).

use std::time::Duration;

use atoll_pd::command::{Command, CommandResult};

use super::route::send;
use super::{now_ms, PdError, PdReply, PdRequest};
use crate::config::Config;
use crate::error::NodeError;
use crate::raft::peer_pool::PeerPool;

/// How long one join address may take to answer.
const WAIT: Duration = Duration::from_secs(10);

/// How long a node keeps asking while no join address can answer (a
/// cluster that is still starting: no PD leader, or not bootstrapped).
const RETRY_FOR: Duration = Duration::from_secs(30);

/// `(node id, cluster id)` from the PD, asked through `config.join`.
pub async fn id_from_pd(config: &Config) -> Result<(u64, u64), NodeError> {
    let peers = PeerPool::new();
    through_join(config, "a node id", "or give --id", |addr| {
        let peers = &peers;
        async move { ask(peers, &addr, config).await }
    })
    .await
}

/// The cluster id from the PD, asked through `config.join`: a fresh node
/// started with `--id` and join addresses (an address registered ahead with
/// `atollctl node add`, started with the id it was given) claims its data
/// dir for it, so that it registers with its first heartbeat instead of
/// waiting for a message from a cluster that has no replica for it.
pub async fn cluster_from_pd(config: &Config) -> Result<u64, NodeError> {
    let peers = PeerPool::new();
    through_join(
        config,
        "the cluster id",
        "or start with a bare --join to wait until a shard adds this node",
        |addr| {
            let peers = &peers;
            async move { cluster_id(peers, &addr).await }
        },
    )
    .await
}

/// Asks each join address in turn until one answers, and again for up to
/// [`RETRY_FOR`] while none can (a cluster that is still starting).
async fn through_join<T, F, Fut>(
    config: &Config,
    what: &str,
    otherwise: &str,
    mut ask: F,
) -> Result<T, NodeError>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<T, PdError>>,
{
    let started = tokio::time::Instant::now();
    let mut errors = Vec::new();
    loop {
        errors.clear();
        for addr in &config.join {
            match ask(addr.clone()).await {
                Ok(answer) => return Ok(answer),
                Err(e) => errors.push((addr, e)),
            }
        }
        // A cluster that is still starting (no PD leader yet, or not
        // bootstrapped) answers in a moment: ask again for a while.
        let unavailable = errors
            .iter()
            .all(|(_, e)| matches!(e, PdError::Unavailable(_)));
        if !unavailable || started.elapsed() >= RETRY_FOR {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let errors: Vec<String> = errors.iter().map(|(a, e)| format!("{a}: {e}")).collect();
    Err(NodeError::Config(format!(
        "could not get {what} from the placement driver through {:?}: {}; \
         check that these are addresses of running nodes of the cluster, {otherwise}",
        config.join,
        errors.join("; ")
    )))
}

/// The cluster id in the PD's state, read through `addr`.
async fn cluster_id(peers: &PeerPool, addr: &str) -> Result<u64, PdError> {
    match send(peers, 0, WAIT, addr, &PdRequest::State, 0).await? {
        PdReply::State { state, .. } => Ok(state.cluster_id()),
        other => Err(PdError::Malformed(format!(
            "a state read answered {other:?}"
        ))),
    }
}

async fn ask(peers: &PeerPool, addr: &str, config: &Config) -> Result<(u64, u64), PdError> {
    let join = Command::JoinNode {
        address: config.advertise_addr(),
        labels: config.labels.clone(),
        now_ms: now_ms(),
    };
    let node = match send(peers, 0, WAIT, addr, &PdRequest::Command(Box::new(join)), 0).await? {
        PdReply::Result(CommandResult::JoinNode(joined)) => joined.node,
        other => return Err(PdError::Malformed(format!("a join answered {other:?}"))),
    };
    let cluster = cluster_id(peers, addr).await?;
    if node == 0 || node >= super::report::MAX_NODE_ID {
        return Err(PdError::Malformed(format!(
            "the placement driver gave node id {node}, outside 1..{}",
            super::report::MAX_NODE_ID
        )));
    }
    Ok((node, cluster))
}
