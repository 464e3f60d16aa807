//! The placement driver on real processes (issue 9, items 1 and 2): the PD
//! group runs on the first three nodes, every node reports to it (a node
//! without a PD replica through forwarding), it knows the first shard and
//! its leader, marks a killed node Down and a restarted one Up again, and
//! keeps doing so after its own leader is killed.

mod support;

use std::time::Duration;

use atoll_client::admin::{add_node, set_node_state, NodeTarget};
use atoll_proto::pd_client::PdClient;
use atoll_proto::{ClusterStateRequest, ClusterStateResponse};
use support::Cluster;

const PD_TOML: &str = "[pd]\nheartbeat_ms = 200\ndown_after_ms = 2000\n";

async fn cluster_state(c: &Cluster, id: u64) -> Option<ClusterStateResponse> {
    let mut pd = PdClient::connect(format!("http://{}", c.addr(id)))
        .await
        .ok()?;
    let r = tokio::time::timeout(
        Duration::from_secs(3),
        pd.cluster_state(ClusterStateRequest {}),
    )
    .await
    .ok()?
    .ok()?
    .into_inner();
    r.error.is_none().then_some(r)
}

fn node_state(s: &ClusterStateResponse, id: u64) -> Option<&str> {
    s.nodes
        .iter()
        .find(|n| n.id == id)
        .map(|n| n.state.as_str())
}

async fn wait_node_state(c: &Cluster, ask: u64, node: u64, want: &str) -> ClusterStateResponse {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut last = None;
    loop {
        if let Some(s) = cluster_state(c, ask).await {
            if node_state(&s, node) == Some(want) {
                return s;
            }
            last = Some(s);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node {node} not {want} (asking node {ask}); last state {last:?}\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pd_tracks_nodes_and_shards_and_survives_its_leader() {
    let mut c = Cluster::start(4, PD_TOML);
    let shard_leader = c.wait_leader(1, Duration::from_secs(20)).await;

    // Node 4 hosts no PD replica: its answer is forwarded from the PD leader.
    // (Nodes register themselves with their first heartbeat, possibly
    // before the PD leader has bootstrapped the PD.)
    c.wait_until(
        "the PD bootstrapped with 4 nodes",
        Duration::from_secs(30),
        || async {
            cluster_state(&c, 4)
                .await
                .is_some_and(|s| s.bootstrapped && s.nodes.len() == 4)
        },
    )
    .await;
    let s = wait_node_state(&c, 4, 4, "up").await;
    assert!(
        (1..=3).contains(&s.pd_leader),
        "the PD runs on nodes 1-3: {s:?}"
    );
    assert_eq!(s.down_after_ms, 2000);
    c.wait_until(
        "the first shard's leader reported",
        Duration::from_secs(20),
        || async {
            cluster_state(&c, 4).await.is_some_and(|s| {
                // 4 initial replicas; the PD may already have taken one
                // away (the replication factor is 3).
                s.shards.len() == 1
                    && s.shards[0].id == 1
                    && s.shards[0].replicas.len() >= 3
                    && s.shards[0].leader_node.is_some()
            })
        },
    )
    .await;
    let st = c.status(1).await.expect("status of node 1");
    assert_eq!(
        st.pd.as_ref().and_then(|p| p.shard.as_ref()).map(|d| d.id),
        Some(0)
    );
    assert!(st
        .shards
        .iter()
        .all(|s| s.shard.as_ref().is_some_and(|d| d.id != 0)));
    assert!(c.status(4).await.expect("status of node 4").pd.is_none());
    println!(
        "shard 1 led by node {shard_leader}, PD led by node {}",
        s.pd_leader
    );

    // A killed node turns Down, and Up again once it is back.
    c.kill9(4);
    wait_node_state(&c, 1, 4, "down").await;
    c.restart(4);
    wait_node_state(&c, 4, 4, "up").await;

    // Kill the PD leader: another PD member takes over, answers, and marks
    // the dead one Down once it has led for down_after_ms.
    let old = cluster_state(&c, 4).await.expect("state").pd_leader;
    c.kill9(old);
    let ask = if old == 1 { 2 } else { 1 };
    let s = wait_node_state(&c, ask, old, "down").await;
    assert_ne!(s.pd_leader, old);
    assert!(
        s.nodes
            .iter()
            .filter(|n| n.id != old)
            .all(|n| n.state == "up"),
        "{s:?}"
    );
    c.restart(old);
    wait_node_state(&c, 4, old, "up").await;
}

/// A drain whose caller timed out is not proposed later, behind the
/// caller's next request: node 4 (no PD replica) forwards it to node 1
/// first, which is paused, and gives up at the caller's deadline instead of
/// forwarding to node 2 once its wait for node 1 ends (the simulation's
/// moves seed 438: a node stayed Draining after the operator set it Up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_whose_caller_timed_out_does_not_apply_after_the_next_request() {
    // Node states here come from requests only, not from missed heartbeats.
    let mut c = Cluster::start(4, "[pd]\nheartbeat_ms = 200\ndown_after_ms = 60000\n");
    for node in 1..=4 {
        wait_node_state(&c, 4, node, "up").await;
    }
    // Node 1 must not lead the PD: the "up" below is to commit at once.
    // Node 4 (no PD replica) must have last heard the PD through node 1.
    // A node asks the member that answered it last first, so a restart
    // makes it start over with its lowest initial member, node 1, which
    // answers its heartbeats from then on. (Without the restart, one early
    // answer from another member during the PD's first elections was
    // enough to send the drain around node 1.)
    c.kill9(4);
    c.restart(4);
    c.wait_until("node 4 serves again", Duration::from_secs(20), || async {
        c.status(4).await.is_some()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    c.pause(1, true);
    let drain = set_node_state(
        &[c.addr(4)],
        Duration::from_secs(1),
        3,
        NodeTarget::Draining,
        false,
    )
    .await;
    // If node 1 led the PD, the "up" waits for the next leader.
    let paused = tokio::time::Instant::now();
    let up = loop {
        let up = set_node_state(
            &[c.addr(2)],
            Duration::from_secs(2),
            3,
            NodeTarget::Up,
            false,
        )
        .await;
        if up.is_ok() || paused.elapsed() > Duration::from_secs(20) {
            break up;
        }
    };
    // Node 4's wait for node 1 ends 6 s (write timeout + 1 s) after it
    // started; without a deadline it then forwarded the drain to node 2.
    tokio::time::sleep(Duration::from_secs(8).saturating_sub(paused.elapsed())).await;
    let s = cluster_state(&c, 2).await;
    c.pause(1, false);
    assert_eq!(up.expect("set node 3 up").to, "up");
    let s = s.expect("the PD's state");
    assert_eq!(node_state(&s, 3), Some("up"), "{s:?}");
    // The caller was told that nothing was applied.
    let err = drain.expect_err("the drain had no way to the PD");
    assert!(err.to_string().contains("deadline passed"), "{err}");
}

/// `atollctl node add`, then the node started with the id it was given
/// and join addresses (not id 0): it learns the cluster id from the PD,
/// registers, and turns Up. (It used to wait for a first message from the
/// cluster and stayed `joining`, so it never got a replica.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_added_ahead_and_started_with_its_id_and_join_turns_up() {
    let mut c = Cluster::start(3, PD_TOML);
    c.wait_until("the PD bootstrapped", Duration::from_secs(30), || async {
        cluster_state(&c, 1).await.is_some_and(|s| s.bootstrapped)
    })
    .await;
    let id = c.add_node_with_id(2);
    let added = add_node(
        &c.endpoints()[..3],
        Duration::from_secs(10),
        &c.addr(id),
        &Default::default(),
    )
    .await
    .expect("node add");
    assert_eq!(added.node, id);
    wait_node_state(&c, 1, id, "joining").await;
    c.restart(id);
    let s = wait_node_state(&c, 1, id, "up").await;
    let n = s.nodes.iter().find(|n| n.id == id).expect("node listed");
    assert_eq!(n.addr, c.addr(id));
    assert!(c
        .log_of(id)
        .contains("joining the cluster the placement driver runs"));
}

/// libfaketime, which `scripts/jepsen.sh --setup` installs (Debian
/// `libfaketime`); the tests that need it say so if it is missing.
fn libfaketime() -> String {
    let found = ["x86_64-linux-gnu", "aarch64-linux-gnu"]
        .iter()
        .map(|arch| format!("/usr/lib/{arch}/faketime/libfaketime.so.1"))
        .find(|p| std::path::Path::new(p).is_file());
    found.expect("libfaketime is not installed: run scripts/jepsen.sh --setup (Debian: apt-get install libfaketime)")
}

/// A node whose wall clock is 2 minutes behind stays Up: the PD leader
/// times heartbeats by its own clock. (Stamped by the sender, every
/// heartbeat of this node looked 2 minutes old, and the PD marked it Down
/// with `down_after_ms` = 2 s.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_clock_runs_behind_stays_up() {
    let library = libfaketime();
    let mut c = Cluster::start(4, PD_TOML);
    for node in 1..=4 {
        wait_node_state(&c, 1, node, "up").await;
    }
    // Only the wall clock: a skewed machine, not a broken timer.
    c.restart_with_env(
        4,
        &[],
        &[
            ("LD_PRELOAD", &library),
            ("FAKETIME", "-120"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
    );
    c.wait_until("node 4 to answer", Duration::from_secs(20), || async {
        c.status(4).await.is_some()
    })
    .await;
    let node_now = c.status(4).await.map_or(0, |s| s.now_ms);
    let skew = i128::from(node_now) - i128::from(atoll_node::pd::now_ms());
    assert!(
        (-121_000..=-119_000).contains(&skew),
        "node 4's clock is {skew} ms off, not -120 s: libfaketime not in effect?"
    );
    // Well past down_after_ms (2 s), node 4 is Up every time the PD is asked.
    wait_node_state(&c, 1, 4, "up").await;
    for _ in 0..25 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Some(s) = cluster_state(&c, 1).await {
            assert_eq!(node_state(&s, 4), Some("up"), "{s:?}");
        }
    }
}

/// Issue 9, item 1: "a fresh node joining with --join gets its node id from
/// the PD and keeps it in its data dir".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joining_through_any_node_gets_its_id_from_the_pd_and_keeps_it() {
    let mut c = Cluster::start(3, PD_TOML);
    c.wait_until(
        "the PD bootstrapped with 3 nodes",
        Duration::from_secs(30),
        || async {
            cluster_state(&c, 1)
                .await
                .is_some_and(|s| s.bootstrapped && s.nodes.len() == 3)
        },
    )
    .await;
    // Node 3 holds a PD replica but may not lead the PD: forwarded.
    let slot = c.add_joining_node(3, &format!("{PD_TOML}[labels]\nzone = \"z9\"\n"));
    c.restart(slot);
    let s = wait_node_state(&c, 1, 4, "up").await;
    let joined = s.nodes.iter().find(|n| n.id == 4).expect("node 4 is known");
    assert_eq!(joined.addr, c.addr(slot), "{s:?}");
    assert_eq!(joined.labels.get("zone").map(String::as_str), Some("z9"));
    // The PD lists a node from its join on, before the node serves.
    c.wait_until(
        "the joined node serving as node 4",
        Duration::from_secs(20),
        || async { c.status(slot).await.is_some_and(|st| st.node_id == 4) },
    )
    .await;

    // Restarted, it keeps its id: the PD still has 4 nodes, node 4 Up.
    c.kill9(slot);
    c.restart(slot);
    c.wait_until("the joined node back", Duration::from_secs(20), || async {
        c.status(slot).await.is_some_and(|st| st.node_id == 4)
    })
    .await;
    let s = wait_node_state(&c, 1, 4, "up").await;
    assert_eq!(s.nodes.len(), 4, "no second id for the same node: {s:?}");
}
