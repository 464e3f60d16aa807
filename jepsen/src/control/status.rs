//! Who leads: the nodes' admin `Status` answers, read for the first shard's
//! leader; and the operator calls the nemeses make (transfer, split, and the
//! node commands of `membership`: add, drain, up, remove, and the placement
//! driver's view of one node).

use std::collections::BTreeMap;
use std::time::Duration;

use atoll_client::admin::NodeTarget;
use atoll_client::NodeState;

/// How long one placement driver call may take, over every endpoint it tries.
const PD_CALL: Duration = Duration::from_secs(5);

/// The id of a node that reports itself leader of the lowest-numbered shard, if any answers.
pub async fn leader(endpoints: &[String]) -> Option<u64> {
    let statuses =
        atoll_client::admin::cluster_status(endpoints.to_vec(), Duration::from_millis(500)).await;
    let mut best: Option<(u64, u64)> = None; // (shard, node)
    for s in statuses {
        let Ok(resp) = s.result else { continue };
        for sh in &resp.shards {
            let Some(desc) = sh.shard.as_ref() else {
                continue;
            };
            if sh.role == "leader" && best.is_none_or(|(shard, _)| desc.id < shard) {
                best = Some((desc.id, resp.node_id));
            }
        }
    }
    best.map(|(_, node)| node)
}

/// Moves shard 1's leadership to `target` through whichever node leads
/// (`atollctl shard transfer-leader`). `Ok` describes what happened: the
/// move, or why the cluster declined it (a refusal is not a harness error).
pub async fn transfer_leader(endpoints: &[String], target: u64) -> Result<String, String> {
    let moved = atoll_client::admin::on_leader(endpoints, Duration::from_secs(5), |a| async move {
        a.transfer_leader(1, target).await
    })
    .await
    .map_err(|e| e.to_string())?;
    Ok(match moved {
        Ok(t) => format!(
            "node {} leads term {} (proposals held back {:?})",
            t.leader_id, t.term, t.paused
        ),
        Err(f) => format!("declined: {:?}: {}", f.reason, f.message),
    })
}

/// Splits the shard holding `key` at `key` (`atollctl shard split`). `Ok`
/// describes the split; a refusal (the key already starts a shard, the PD
/// has not heard of a new shard yet) is an `Err` the nemesis records, not a
/// harness error.
pub async fn split_at(endpoints: &[String], key: &[u8]) -> Result<String, String> {
    let (left, right) = atoll_client::admin::split_at(endpoints, key, Duration::from_secs(5))
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!("shard {} split off shard {}", right.id, left.id))
}

/// Registers a node at `addr` with the placement driver before it starts
/// (`atollctl node add`): the id it gets. The same address gets the same id
/// again, so a retry after a lost answer is safe.
pub async fn add_node(endpoints: &[String], addr: &str) -> Result<u64, String> {
    atoll_client::admin::add_node(endpoints, PD_CALL, addr, &BTreeMap::new())
        .await
        .map(|added| added.node)
        .map_err(|e| e.to_string())
}

/// Moves `node` to `target` (`atollctl node drain | up | remove`, never
/// `--force`): `Ok` says `from -> to`; a refusal (it still holds replicas,
/// it would break a quorum) is an `Err` with the cluster's reason.
pub async fn set_node_state(
    endpoints: &[String],
    node: u64,
    target: NodeTarget,
) -> Result<String, String> {
    atoll_client::admin::set_node_state(endpoints, PD_CALL, node, target, false)
        .await
        .map(|c| format!("{} -> {}", c.from, c.to))
        .map_err(|e| e.to_string())
}

/// What the placement driver says of one node (`atollctl cluster status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PdNode {
    pub state: NodeState,
    /// Data shard replicas it hosts (the PD's own group is not counted).
    pub replicas: u64,
}

/// Every node the placement driver knows, by id (`atollctl cluster status`).
pub async fn pd_nodes(endpoints: &[String]) -> Result<BTreeMap<u64, PdNode>, String> {
    let state = atoll_client::admin::cluster_state(endpoints, PD_CALL)
        .await
        .map_err(|e| e.to_string())?;
    Ok(state
        .nodes
        .iter()
        .map(|n| {
            let node = PdNode {
                state: n.state.clone(),
                replicas: n.replicas,
            };
            (n.id, node)
        })
        .collect())
}

/// How far node `addr`'s wall clock is from this machine's, in ms (its `Status` answer's
/// `now_ms`, less the local time halfway through the call).
pub async fn clock_offset_ms(addr: &str) -> Result<i64, String> {
    let ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    };
    let admin = atoll_client::admin::AdminClient::connect(addr.to_string())
        .await
        .map_err(|e| e.to_string())?
        .with_timeout(Duration::from_secs(2));
    let before = ms();
    let status = admin.status().await.map_err(|e| e.to_string())?;
    let after = ms();
    let node = i64::try_from(status.now_ms).unwrap_or(i64::MAX);
    Ok(node - (before + after) / 2)
}

/// The median of 5 TCP connects to `addr`, in ms (each waits for the node's SYN-ACK).
pub fn connect_rtt_ms(addr: &str) -> Result<f64, String> {
    let sock: std::net::SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let mut rtts = Vec::new();
    for _ in 0..5 {
        let start = std::time::Instant::now();
        std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(2))
            .map_err(|e| format!("connect: {e}"))?;
        rtts.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    rtts.sort_by(f64::total_cmp);
    Ok(rtts[rtts.len() / 2])
}
