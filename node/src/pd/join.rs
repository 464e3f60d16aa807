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
//! cluster is starting.

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
    let started = tokio::time::Instant::now();
    let mut errors = Vec::new();
    loop {
        errors.clear();
        for addr in &config.join {
            match ask(&peers, addr, config).await {
                Ok(ids) => return Ok(ids),
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
        "could not get a node id from the placement driver through {:?}: {}; \
         check that these are addresses of running nodes of the cluster, or give --id",
        config.join,
        errors.join("; ")
    )))
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
    let cluster = match send(peers, 0, WAIT, addr, &PdRequest::State, 0).await? {
        PdReply::State { state, .. } => state.cluster_id(),
        other => {
            return Err(PdError::Malformed(format!(
                "a state read answered {other:?}"
            )))
        }
    };
    if node == 0 || node >= super::report::MAX_NODE_ID {
        return Err(PdError::Malformed(format!(
            "the placement driver gave node id {node}, outside 1..{}",
            super::report::MAX_NODE_ID
        )));
    }
    Ok((node, cluster))
}
