//! Replica moves on real processes (issue 9, items 3, 5 and 8): under a
//! continuous write load a fourth node joins, node 3 is drained (the PD
//! leader is killed -9 in the middle of the drain, and a new PD leader
//! finishes it), and node 3 is removed. The load sees no error; every
//! acknowledged write reads back; the new node holds the data; the
//! drained node keeps no data replica (tombstones); removing a node that
//! still holds replicas is refused with what to do next.

mod support;

use std::time::Duration;

use atoll_client::admin::{set_node_state, NodeTarget};
use atoll_client::{ClusterState, NodeState, ReplicaRole};
use support::load::Load;
use support::Cluster;

const SECS: fn(u64) -> Duration = Duration::from_secs;
const WRITERS: usize = 4;
const PD_TOML: &str = "[pd]\nheartbeat_ms = 200\ndown_after_ms = 3000\n";

async fn state(c: &Cluster) -> Option<ClusterState> {
    support::pd_view(c).await
}

/// Every shard has 3 voters, none on `gone`, and the node holds nothing.
fn drained(s: &ClusterState, gone: u64) -> bool {
    let node_empty = s.node(gone).is_some_and(|n| n.replicas == 0);
    let shards_whole = s.shards.iter().all(|sh| {
        sh.replicas.len() == 3
            && sh
                .replicas
                .iter()
                .all(|r| r.node_id != gone && r.role == ReplicaRole::Voter)
    });
    node_empty && shards_whole
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_node_hands_its_replicas_to_a_new_node_under_load_and_is_removed() {
    let mut c = Cluster::start(3, PD_TOML);
    support::wait_fresh(&c, 3).await;
    // Two data shards, so the drain moves more than one.
    support::split_retrying(&c, 1, b"m").await;

    let load = Load::start(c.endpoints(), WRITERS).await;
    let tally = load.tally.clone();
    c.wait_until("writes before the join", SECS(20), || {
        let n = tally.acked.lock().unwrap().len();
        async move { n >= 100 }
    })
    .await;

    // Removing a node that holds replicas is refused, with what to do.
    let e = set_node_state(&c.endpoints(), SECS(10), 2, NodeTarget::Removed, false)
        .await
        .expect_err("node 2 holds replicas");
    assert!(e.is_invalid_argument(), "{e}");
    assert!(e.to_string().contains("drain it first"), "{e}");

    let slot = c.add_joining_node(1, PD_TOML);
    c.restart(slot);
    c.wait_until("node 4 up", SECS(30), || async {
        state(&c)
            .await
            .is_some_and(|s| s.node(4).is_some_and(|n| n.state == NodeState::Up))
    })
    .await;

    let change = set_node_state(&c.endpoints(), SECS(10), 3, NodeTarget::Draining, false)
        .await
        .unwrap_or_else(|e| panic!("drain node 3: {e}\n{}", c.logs()));
    assert_eq!(
        (change.from.as_str(), change.to.as_str()),
        ("up", "draining")
    );

    // Kill the PD leader once the drain is under way: a new one finishes it.
    c.wait_until("the drain under way", SECS(30), || async {
        state(&c).await.is_some_and(|s| {
            s.shards
                .iter()
                .any(|sh| sh.replicas.iter().any(|r| r.node_id == 4))
        })
    })
    .await;
    let pd_leader = state(&c).await.map(|s| s.pd_leader).unwrap_or(1);
    c.kill9(pd_leader);
    tokio::time::sleep(SECS(2)).await;
    c.restart(pd_leader);

    c.wait_until("node 3 drained", SECS(90), || async {
        state(&c).await.is_some_and(|s| drained(&s, 3))
    })
    .await;
    // The PD's own group moves off the drained node too (decision 0023).
    c.wait_until("the PD group off node 3", SECS(60), || async {
        c.status(3).await.is_some_and(|st| {
            !st.shards
                .iter()
                .any(|x| x.shard.as_ref().is_some_and(|d| d.id == 0))
        })
    })
    .await;
    let change = set_node_state(&c.endpoints(), SECS(10), 3, NodeTarget::Removed, false)
        .await
        .unwrap_or_else(|e| panic!("remove node 3: {e}\n{}", c.logs()));
    assert_eq!(change.to, "removed");

    tokio::time::sleep(SECS(1)).await;
    // No write failed; every acknowledged write reads back.
    let acked = load
        .stop_and_check(c.endpoints(), "after the drain", || c.logs())
        .await;

    // Node 4 holds every data shard and the PD replica node 3 had; node 3
    // none (its replicas removed, tombstones left).
    let s = state(&c).await.expect("cluster state");
    let shards: Vec<u64> = s.shards.iter().map(|sh| sh.id).collect();
    let on4 = c.status(4).await.expect("node 4 status");
    let on3 = c.status(3).await.expect("node 3 status");
    let hosted = |st: &atoll_proto::StatusResponse| -> Vec<u64> {
        st.shards
            .iter()
            .filter_map(|x| x.shard.as_ref().map(|d| d.id))
            .collect()
    };
    for id in &shards {
        assert!(
            hosted(&on4).contains(id),
            "node 4 hosts shard {id}: {on4:?}"
        );
        assert!(
            !hosted(&on3).contains(id),
            "node 3 gave up shard {id}: {on3:?}"
        );
    }
    println!(
        "{} writes acknowledged; node 3 drained and removed; shards {shards:?} on node 4",
        acked
    );
}

/// An empty replica made for an add-learner that never committed (two adds of one node
/// raced at one membership version; only one change can commit) gives way to the next add
/// of that node at that version. It used to hold the shard's place on the node for good:
/// every later add was refused as "not newer" (found as a flaky amnesia test: the PD's
/// repair and the test's own add raced).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orphan_replica_of_an_add_that_never_committed_gives_way() {
    let mut c = Cluster::start(3, PD_TOML);
    let leader = c.wait_leader(1, SECS(20)).await;
    c.wait_until("the PD to know 3 nodes", SECS(30), || async {
        state(&c).await.is_some_and(|s| s.nodes.len() == 3)
    })
    .await;
    let n4 = c.add_joining_node(1, PD_TOML);
    c.restart(n4);
    c.wait_until("node 4 to be up", SECS(30), || async {
        state(&c)
            .await
            .is_some_and(|s| s.node(n4).is_some_and(|n| n.state == NodeState::Up))
    })
    .await;

    // The orphan: node 4 creates a replica of shard 1 that no membership will name.
    let desc = c.status(leader).await.expect("status").shards[0]
        .shard
        .clone()
        .expect("descriptor");
    let mut admin =
        atoll_proto::admin_client::AdminClient::connect(format!("http://{}", c.addr(n4)))
            .await
            .expect("connect");
    let orphan = (4095u64 << 20) | n4;
    let made = admin
        .create_replica(atoll_proto::CreateReplicaRequest {
            shard: Some(desc),
            cluster_id: 0,
            awaiting_snapshot: true,
            replica_id: orphan,
        })
        .await
        .expect("create the orphan")
        .into_inner();
    assert!(made.error.is_none(), "{made:?}");

    // The next add of node 4, at the same version, replaces it.
    let a4 = c.addr(n4);
    atoll_client::admin::on_leader(&c.endpoints()[..3], SECS(10), |a| {
        let a4 = a4.clone();
        async move { a.add_learner(1, n4, &a4).await }
    })
    .await
    .expect("add node 4 as a learner of shard 1");
    assert!(
        c.log_of(n4).contains("replacing an empty replica"),
        "{}",
        c.log_of(n4)
    );
}
