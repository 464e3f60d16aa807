//! Replica moves asked for by an operator while the workload and the
//! nemesis run: every 2-4 s a random node is drained
//! (`atoll_client::admin::set_node_state`), and 3-6 s later it is set Up
//! again, so the PD's operators add learners, promote them, move leaders
//! away and remove replicas (with tombstones) all through the run, and
//! move replicas back onto nodes that held them before. At the end every
//! node is Up again.

use std::time::Duration;

use atoll_client::admin::{set_node_state, NodeTarget};
use rand::Rng;

/// When the first drain is asked for: the PD must be up and know the nodes.
const FIRST_AFTER: Duration = Duration::from_secs(6);

/// One state change asked for and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub at_ms: u128,
    pub node: u64,
    pub target: &'static str,
    pub outcome: Result<(), String>,
}

async fn set(
    endpoints: &[String],
    node: u64,
    target: NodeTarget,
    start: tokio::time::Instant,
    attempts: &mut Vec<Attempt>,
) {
    let at_ms = start.elapsed().as_millis();
    let outcome = set_node_state(endpoints, Duration::from_secs(3), node, target, false)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    attempts.push(Attempt {
        at_ms,
        node,
        target: match target {
            NodeTarget::Up => "up",
            NodeTarget::Draining => "draining",
            NodeTarget::Removed => "removed",
        },
        outcome,
    });
}

/// Whether one of `nodes` was drained (the PD took it) and stayed so for
/// at least `min` before the next state change asked for it.
pub fn drained_for(attempts: &[Attempt], nodes: &[u64], min: Duration) -> bool {
    attempts.iter().enumerate().any(|(i, a)| {
        a.target == "draining"
            && a.outcome.is_ok()
            && nodes.contains(&a.node)
            && attempts[i + 1..]
                .iter()
                .find(|b| b.node == a.node)
                .is_none_or(|b| b.at_ms.saturating_sub(a.at_ms) >= min.as_millis())
    })
}

/// Drains and un-drains random nodes of `nodes` for `duration`. The first
/// drain picks one of the first `initial` nodes (those that bootstrapped the
/// cluster, which hold the first shard), so a calm run always moves a
/// replica; later ones pick any node, a node that joined later included.
pub async fn run(
    endpoints: Vec<String>,
    nodes: Vec<u64>,
    initial: usize,
    duration: Duration,
) -> Vec<Attempt> {
    let start = tokio::time::Instant::now();
    let mut attempts = Vec::new();
    tokio::time::sleep(FIRST_AFTER).await;
    let mut first = true;
    while start.elapsed() < duration {
        let (pause, node, hold) = {
            let mut rng = madsim::rand::thread_rng();
            let among = if first {
                initial.clamp(1, nodes.len())
            } else {
                nodes.len()
            };
            (
                Duration::from_millis(rng.gen_range(2000..4000)),
                nodes[rng.gen_range(0..among)],
                Duration::from_millis(rng.gen_range(3000..6000)),
            )
        };
        first = false;
        tokio::time::sleep(pause).await;
        set(&endpoints, node, NodeTarget::Draining, start, &mut attempts).await;
        tokio::time::sleep(hold).await;
        set(&endpoints, node, NodeTarget::Up, start, &mut attempts).await;
    }
    // Every node Up again, retried until the PD answers.
    for node in nodes {
        for _ in 0..20 {
            set(&endpoints, node, NodeTarget::Up, start, &mut attempts).await;
            if attempts.last().is_some_and(|a| a.outcome.is_ok()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    attempts
}
