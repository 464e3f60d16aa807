//! Integration tests on real `atoll-node` processes: a node that lost its
//! data dir must not bootstrap again, a node of another cluster must not be
//! let in, and nodes that join learn their cluster's id
//! (docs/decisions/0008-cluster-id-and-bootstrap-check.md).

mod support;

use std::time::Duration;

use atoll_client::admin::on_leader;
use atoll_client::{AdminClient, Client, ClientConfig};
use atoll_proto::admin_client::AdminClient as RawAdmin;
use atoll_proto::raft_client::RaftClient;
use atoll_proto::{ClusterInfoRequest, RaftMessage};
use support::stale_get;
use support::Cluster;

const SECS: fn(u64) -> Duration = Duration::from_secs;

async fn client(endpoints: Vec<String>) -> Client {
    let config = ClientConfig {
        deadline: SECS(20),
        ..ClientConfig::default()
    };
    Client::with_config(endpoints, config)
        .await
        .expect("client connects")
}

async fn cluster_id_of(addr: &str) -> u64 {
    let mut admin = RawAdmin::connect(format!("http://{addr}"))
        .await
        .expect("admin connects");
    admin
        .cluster_info(ClusterInfoRequest { node_id: 0 })
        .await
        .expect("cluster info")
        .into_inner()
        .cluster_id
}

async fn voters(cluster: &Cluster, id: u64) -> Vec<u64> {
    let st = cluster.status(id).await.expect("status");
    let shard = st.shards[0].shard.clone().expect("descriptor");
    shard
        .replicas
        .iter()
        .filter(|r| r.voter)
        .map(|r| r.node_id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_lost_its_data_dir_refuses_to_bootstrap_again_and_rejoins_with_join() {
    let mut cluster = Cluster::start(3, "");
    cluster.wait_leader(1, SECS(20)).await;
    let c = client(cluster.endpoints()).await;
    for i in 0..30 {
        c.put(format!("key{i:03}"), format!("v{i}")).await.unwrap();
    }

    // Node 3 loses its disk and is restarted with its usual config.
    cluster.kill9(3);
    cluster.wipe(3);
    cluster.restart(3);
    let exit = cluster.wait_exit(3, SECS(20));
    let log = cluster.log_of(3);
    let status = exit.unwrap_or_else(|| panic!("node 3 kept running\n{}", cluster.logs()));
    assert!(!status.success(), "node 3 must exit non-zero\n{log}");
    assert!(log.contains("refusing to bootstrap"), "{log}");
    assert!(log.contains("--join"), "{log}");
    assert!(log.contains("atollctl change-membership"), "{log}");

    // The cluster kept its data and its membership, and takes writes.
    let leader = cluster.wait_leader(1, SECS(20)).await;
    for i in 0..30 {
        assert_eq!(
            c.get(format!("key{i:03}")).await.unwrap(),
            Some(format!("v{i}").into_bytes()),
            "key{i:03} lost"
        );
    }
    c.put("after-refusal", "ok").await.unwrap();
    assert_eq!(voters(&cluster, leader).await, vec![1, 2, 3]);

    // The operator follows the message: remove node 3, start it with
    // --join on the same (refused) data dir, add it back.
    // Nodes 1 and 2: node 3 hosts no shard until it is added back.
    let endpoints = cluster.endpoints()[..2].to_vec();
    on_leader(&endpoints, SECS(10), |a| async move {
        a.change_membership(1, &[1, 2]).await
    })
    .await
    .unwrap();
    cluster.restart_with(3, &["--join"]);
    let addr3 = cluster.addr(3);
    cluster
        .wait_until("node 3 to serve after --join", SECS(20), || async {
            cluster.status(3).await.is_some()
        })
        .await;
    let leader = cluster.wait_leader(1, SECS(20)).await;
    // The PD's replica repair may be adding node 3 back at the same
    // moment (openraft then refuses a second change while one is under
    // way): retry until the membership is {1, 2, 3}, whoever made it.
    let a3 = addr3.clone();
    let deadline = tokio::time::Instant::now() + SECS(30);
    loop {
        let added = on_leader(&endpoints, SECS(5), |a| {
            let a3 = a3.clone();
            async move { a.add_learner(1, 3, &a3).await }
        })
        .await;
        let changed = on_leader(&endpoints, SECS(5), |a| async move {
            a.change_membership(1, &[1, 2, 3]).await
        })
        .await;
        let now = voters(&cluster, leader).await;
        if now == vec![1, 2, 3] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node 3 is not a voter again after 30 s: voters {now:?}, last add-learner \
             {added:?}, last change-membership {changed:?}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    cluster
        .wait_until("node 3 to catch up", SECS(20), || {
            let addr3 = addr3.clone();
            async move { stale_get(&addr3, b"after-refusal").await.as_deref() == Some(&b"ok"[..]) }
        })
        .await;
    assert_eq!(
        stale_get(&addr3, b"key007").await.as_deref(),
        Some(&b"v7"[..])
    );
    assert_eq!(
        cluster_id_of(&addr3).await,
        cluster_id_of(&cluster.addr(1)).await
    );
}

/// An initial member started well after the others (they bootstrapped and
/// served writes without it) never started its Raft, so no peer recorded
/// it: it joins as the member it is and catches up. Before the started
/// records it was refused like a node that lost its disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_initial_member_that_never_started_joins_and_catches_up() {
    let mut cluster = Cluster::configure(3, "");
    cluster.restart(1);
    cluster.restart(2);
    let leader = cluster.wait_leader(1, SECS(20)).await;
    let c = client(cluster.endpoints()[..2].to_vec()).await;
    for i in 0..20 {
        c.put(format!("early{i:03}"), format!("v{i}"))
            .await
            .unwrap();
    }

    cluster.restart(3);
    let addr3 = cluster.addr(3);
    cluster
        .wait_until("node 3 to catch up", SECS(30), || {
            let addr3 = addr3.clone();
            async move { stale_get(&addr3, b"early019").await.as_deref() == Some(&b"v19"[..]) }
        })
        .await;
    let log = cluster.log_of(3);
    assert!(!log.contains("refusing to bootstrap"), "{log}");
    assert_eq!(voters(&cluster, leader).await, vec![1, 2, 3]);
    assert_eq!(
        cluster_id_of(&addr3).await,
        cluster_id_of(&cluster.addr(1)).await
    );

    // It is a full member now: with node 1 down, nodes 2 and 3 still
    // commit writes.
    cluster.kill9(1);
    let c23 = client(cluster.endpoints()[1..].to_vec()).await;
    c23.put("after", "ok").await.unwrap();
    assert_eq!(c23.get("early007").await.unwrap(), Some(b"v7".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_another_cluster_is_refused_and_both_clusters_keep_their_data() {
    let mut cluster = Cluster::start(3, "");
    cluster.wait_leader(1, SECS(20)).await;
    let c = client(cluster.endpoints()).await;
    c.put("ours", "1").await.unwrap();

    // Node 4 was started without --join: it bootstrapped a cluster alone.
    let lone = cluster.add_lone_node();
    cluster.restart(lone);
    let lone_addr = cluster.addr(lone);
    cluster.wait_leader(1, SECS(20)).await;
    cluster
        .wait_until("node 4 to lead its own cluster", SECS(20), || async {
            cluster
                .status(lone)
                .await
                .is_some_and(|s| s.shards.iter().any(|sh| sh.role == "leader"))
        })
        .await;
    let theirs = client(vec![lone_addr.clone()]).await;
    theirs.put("theirs", "4").await.unwrap();
    let (ours_id, lone_id) = (
        cluster_id_of(&cluster.addr(1)).await,
        cluster_id_of(&lone_addr).await,
    );
    assert_ne!(ours_id, lone_id);
    assert_ne!(ours_id, 0);

    // Adding it as a learner is refused, with the cluster-id message.
    let a4 = lone_addr.clone();
    let err = on_leader(&cluster.endpoints()[..3], SECS(10), |a| {
        let a4 = a4.clone();
        async move { a.add_learner(1, lone, &a4).await }
    })
    .await
    .expect_err("a node of another cluster must be refused");
    let text = err.to_string();
    assert!(text.contains("message from cluster"), "{text}");
    assert!(text.contains("this node belongs to cluster"), "{text}");

    // A Raft message from the other cluster is refused before it is read.
    let mut raft = RaftClient::connect(format!("http://{}", cluster.addr(1)))
        .await
        .unwrap();
    let refused = raft
        .append_entries(RaftMessage {
            shard_id: 1,
            payload: vec![1, 2, 3],
            cluster_id: lone_id,
            ..Default::default()
        })
        .await
        .expect_err("foreign raft message must be refused");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused.message().contains(&format!(
            "message from cluster {lone_id:016x}, this node belongs to cluster {ours_id:016x}"
        )),
        "{}",
        refused.message()
    );

    // Neither cluster changed: memberships, data, and both still serve.
    let leader = cluster.wait_leader(1, SECS(20)).await;
    assert_eq!(voters(&cluster, leader).await, vec![1, 2, 3]);
    assert_eq!(voters(&cluster, lone).await, vec![lone]);
    c.put("ours-after", "2").await.unwrap();
    assert_eq!(c.get("ours").await.unwrap(), Some(b"1".to_vec()));
    assert_eq!(c.get("theirs").await.unwrap(), None);
    assert_eq!(theirs.get("theirs").await.unwrap(), Some(b"4".to_vec()));
    assert_eq!(stale_get(&lone_addr, b"ours").await, None);
    assert!(cluster
        .log_of(lone)
        .contains("refused: message from cluster"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_started_with_join_and_initialised_by_atollctl_share_one_cluster_id() {
    let cluster = Cluster::start_joining(3);
    let cluster = &cluster;
    for id in 1..=3 {
        cluster
            .wait_until(&format!("node {id} to serve"), SECS(20), || async move {
                cluster.status(id).await.is_some()
            })
            .await;
        assert_eq!(
            cluster_id_of(&cluster.addr(id)).await,
            0,
            "no id before init"
        );
    }
    let members: Vec<(u64, String)> = (1..=3).map(|id| (id, cluster.addr(id))).collect();
    AdminClient::connect(cluster.addr(2))
        .await
        .unwrap()
        .init_cluster(&members)
        .await
        .unwrap();
    cluster.wait_leader(1, SECS(20)).await;
    let c = client(cluster.endpoints()).await;
    c.put("k", "v").await.unwrap();
    let id = cluster_id_of(&cluster.addr(1)).await;
    assert_ne!(id, 0);
    for n in 2..=3 {
        assert_eq!(cluster_id_of(&cluster.addr(n)).await, id, "node {n}");
    }
}
