//! Growing a cluster on real processes (issue 9, "Real processes"): under
//! a continuous write load, 3 nodes grow to 5; the shard splits by itself
//! as its key count passes the threshold; the PD spreads replicas and
//! leaders over the new nodes; then node 5 is drained and removed, and the
//! cluster is back to 4. The load sees no error, and every acknowledged
//! write reads back. Also: replicas spread over zones, and a replication
//! factor of 5.

mod support;

use std::time::Duration;

use atoll_client::admin::{set_node_state, NodeTarget};
use atoll_client::{Client, ClientConfig, ClusterState, NodeState, ReplicaRole};
use support::load::Load;
use support::Cluster;

const SECS: fn(u64) -> Duration = Duration::from_secs;
const WRITERS: usize = 3;
const TOML: &str = "[pd]\nheartbeat_ms = 200\ndown_after_ms = 3000\nsplit_keys = 1500\n";

async fn state(c: &Cluster) -> Option<ClusterState> {
    support::pd_view(c).await
}

/// Replicas and leaders spread over `nodes`: each holds a replica, and
/// the counts differ by at most the PD's tolerances (2 replicas, 1
/// leader), so with fewer shards than nodes no node leads two.
fn spread(s: &ClusterState, nodes: &[u64]) -> bool {
    let counts: Vec<(u64, u64)> = nodes
        .iter()
        .map(|id| s.node(*id).map_or((0, 0), |n| (n.replicas, n.leaders)))
        .collect();
    let span = |f: fn(&(u64, u64)) -> u64| {
        let v: Vec<u64> = counts.iter().map(f).collect();
        v.iter().max().unwrap_or(&0) - v.iter().min().unwrap_or(&0)
    };
    counts.iter().all(|c| c.0 > 0) && span(|c| c.0) <= 2 && span(|c| c.1) <= 1
}

fn shards_whole_without(s: &ClusterState, gone: u64) -> bool {
    s.node(gone).is_some_and(|n| n.replicas == 0)
        && s.shards.iter().all(|sh| {
            sh.replicas.len() == 3
                && sh
                    .replicas
                    .iter()
                    .all(|r| r.node_id != gone && r.role == ReplicaRole::Voter)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_grow_to_five_under_load_rebalance_and_one_leaves() {
    let mut c = Cluster::start(3, TOML);
    support::wait_fresh(&c, 3).await;
    let load = Load::start(c.endpoints(), WRITERS).await;

    c.wait_until("the shard split by itself", SECS(90), || async {
        state(&c).await.is_some_and(|s| s.shards.len() >= 3)
    })
    .await;

    for _ in 0..2 {
        let slot = c.add_joining_node(1, TOML);
        c.restart(slot);
    }
    c.wait_until("nodes 4 and 5 up", SECS(30), || async {
        state(&c).await.is_some_and(|s| {
            [4, 5]
                .iter()
                .all(|id| s.node(*id).is_some_and(|n| n.state == NodeState::Up))
        })
    })
    .await;
    c.wait_until(
        "replicas and leaders spread over 5 nodes",
        SECS(150),
        || async {
            state(&c)
                .await
                .is_some_and(|s| spread(&s, &[1, 2, 3, 4, 5]))
        },
    )
    .await;
    let grown = state(&c).await.expect("cluster state");

    set_node_state(&c.endpoints(), SECS(10), 5, NodeTarget::Draining, false)
        .await
        .unwrap_or_else(|e| panic!("drain node 5: {e}\n{}", c.logs()));
    c.wait_until("node 5 drained", SECS(150), || async {
        state(&c).await.is_some_and(|s| shards_whole_without(&s, 5))
    })
    .await;
    set_node_state(&c.endpoints(), SECS(10), 5, NodeTarget::Removed, false)
        .await
        .unwrap_or_else(|e| panic!("remove node 5: {e}\n{}", c.logs()));

    let acked = load
        .stop_and_check(c.endpoints(), "after growing", || c.logs())
        .await;
    let counts = |s: &ClusterState| -> Vec<(u64, u64, u64)> {
        s.nodes
            .iter()
            .map(|n| (n.id, n.replicas, n.leaders))
            .collect()
    };
    println!(
        "{} writes acknowledged; {} shards; at 5 nodes (node, replicas, leaders): {:?}",
        acked,
        grown.shards.len(),
        counts(&grown)
    );
}

/// Zones: the first three nodes carry zone "a"; a fourth node in zone "b"
/// joins, and the PD moves one replica of every shard onto it, so that
/// each shard's replicas span both zones (three voters still, the other
/// two in zone "a").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_spread_over_zones_when_a_node_of_a_new_zone_joins() {
    const BASE: &str = "[pd]\nheartbeat_ms = 200\ndown_after_ms = 3000\n";
    let mut c = Cluster::start(3, &format!("{BASE}[labels]\nzone = \"a\"\n"));
    support::wait_fresh(&c, 3).await;
    support::split_retrying(&c, 1, b"m").await;

    let slot = c.add_joining_node(1, &format!("{BASE}[labels]\nzone = \"b\"\n"));
    c.restart(slot);
    c.wait_until("every shard on both zones", SECS(90), || async {
        state(&c).await.is_some_and(|s| {
            s.shards.len() == 2
                && s.shards.iter().all(|sh| {
                    let zones: std::collections::BTreeSet<&str> = sh
                        .replicas
                        .iter()
                        .filter_map(|r| s.node(r.node_id).and_then(|n| n.zone()))
                        .collect();
                    sh.replicas.len() == 3
                        && sh.replicas.iter().all(|r| r.role == ReplicaRole::Voter)
                        && zones.len() == 2
                })
        })
    })
    .await;
    let s = state(&c).await.expect("cluster state");
    let on4 = s.node(4).map(|n| n.replicas);
    assert_eq!(
        on4,
        Some(2),
        "node 4, zone b, holds a replica of each shard"
    );
}

/// A replication factor of 5 (`[pd] replication_factor = 5`): a cluster
/// started on 3 nodes puts every shard on the 4th and 5th node as they
/// join, until each has 5 voters, and keeps serving writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_replication_factor_of_five_every_shard_grows_to_five_voters() {
    const RF5: &str = "[pd]\nheartbeat_ms = 200\ndown_after_ms = 3000\nreplication_factor = 5\n";
    let mut c = Cluster::start(3, RF5);
    support::wait_fresh(&c, 3).await;
    support::split_retrying(&c, 1, b"m").await;
    for _ in 0..2 {
        let slot = c.add_joining_node(1, RF5);
        c.restart(slot);
    }
    c.wait_until("every shard at 5 voters", SECS(90), || async {
        state(&c).await.is_some_and(|s| {
            s.shards.len() == 2
                && s.shards.iter().all(|sh| {
                    sh.replicas.len() == 5
                        && sh.replicas.iter().all(|r| r.role == ReplicaRole::Voter)
                })
        })
    })
    .await;
    let client = Client::with_config(c.endpoints(), ClientConfig::default())
        .await
        .expect("client connects");
    for key in ["a", "z"] {
        client
            .put(key, "five")
            .await
            .unwrap_or_else(|e| panic!("put {key}: {e}\n{}", c.logs()));
    }
}
