//! The placement driver:
//! - PD replicas that applied the same log index hold the same PD state
//!   (the node records a digest after each applied batch,
//!   `sim_hooks::record_pd_state`): the PD state machine is deterministic;
//! - once the faults heal, the PD answers (through any node, forwarded to
//!   its leader), knows every node as Up again, knows the first shard and
//!   its leader, knows every shard with the range its replicas have, and
//!   its own invariants hold (ranges tile the key space,
//!   replica ids unique, ...).

use std::time::Duration;

use atoll_node::codec;
use atoll_node::pd::{PdReply, PdRequest};
use atoll_node::shard::ShardMeta;
use atoll_node::sim_hooks;
use atoll_pd::node::NodeState;
use atoll_pd::state::PdState;
use atoll_proto::pd_client::PdClient;
use atoll_proto::PdForwardRequest;

use crate::cluster::SimCluster;

pub fn check_pd_states_agree() -> Result<(), String> {
    let conflicts = sim_hooks::pd_state_conflicts();
    if conflicts.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "PD replicas applied the same entries into different PD states: {}",
            conflicts[..conflicts.len().min(3)].join("; ")
        ))
    }
}

/// The PD state as the PD leader answers it, asked through node `via`.
async fn pd_state(addr: String) -> Result<PdState, String> {
    let request = codec::encode("pd request", &PdRequest::State).map_err(|e| e.to_string())?;
    let mut client = PdClient::connect(format!("http://{addr}"))
        .await
        .map_err(|e| e.to_string())?;
    let reply = client
        .forward(PdForwardRequest {
            request,
            hops: 0,
            cluster_id: 0,
        })
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    if let Some(e) = reply.error {
        return Err(e.message);
    }
    match codec::decode::<PdReply>("pd reply", &reply.reply).map_err(|e| e.to_string())? {
        PdReply::State { state, .. } => Ok(*state),
        PdReply::Result(r) => Err(format!("a state read answered {r:?}")),
    }
}

/// What is wrong with the PD's view of a healed cluster, if anything.
/// `shards`: the data shards a node hosts, which the PD must know as they are.
fn unhealthy(state: &PdState, nodes: &[u64], shards: &[ShardMeta]) -> Option<String> {
    if !state.is_bootstrapped() {
        return Some("not bootstrapped".into());
    }
    let violations = state.check_invariants();
    if !violations.is_empty() {
        return Some(format!("invariants violated: {violations:?}"));
    }
    for id in nodes {
        match state.node(*id).map(|n| n.state) {
            Some(NodeState::Up) => {}
            other => return Some(format!("node {id} is {other:?}, not Up")),
        }
    }
    for local in shards {
        match state.shard(local.id) {
            None => return Some(format!("shard {} is unknown", local.id)),
            Some(s) if s.desc.start != local.start || s.desc.end != local.end => {
                return Some(format!(
                    "shard {} has another range than its replicas",
                    local.id
                ))
            }
            Some(s) if s.desc.leader.is_none() => {
                return Some(format!("shard {} has no reported leader", local.id))
            }
            Some(_) => {}
        }
    }
    let extra: Vec<u64> = state
        .shards()
        .map(|s| s.desc.id)
        .filter(|id| !shards.iter().any(|l| l.id == *id))
        .collect();
    (!extra.is_empty()).then(|| format!("the PD knows shards no node hosts: {extra:?}"))
}

pub async fn wait_pd_healthy(cluster: &SimCluster, timeout: Duration) -> Result<(), String> {
    let start = tokio::time::Instant::now();
    let nodes = cluster.ids();
    let endpoints = cluster.endpoints();
    let shards: Vec<ShardMeta> = cluster.newest_shards();
    let mut attempt = 0usize;
    loop {
        let addr = endpoints[attempt % endpoints.len()].clone();
        attempt += 1;
        let problem = match cluster.on_client(pd_state(addr.clone())).await {
            Ok(state) => match unhealthy(&state, &nodes, &shards) {
                None => return Ok(()),
                Some(p) => p,
            },
            Err(e) => format!("asking {addr}: {e}"),
        };
        if start.elapsed() > timeout {
            return Err(format!(
                "the PD is not healthy {timeout:?} after the faults healed: {problem}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
