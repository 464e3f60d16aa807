//! Integration tests on real `atoll-node` processes over loopback: cluster
//! formation, replication, kill -9 failover under load, full restart, and
//! snapshot catch-up after log purge.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atoll_client::{Client, ClientConfig, Mutation};
use support::stale_get;
use support::{Cluster, FAST_SNAPSHOTS};

const SECS: fn(u64) -> Duration = Duration::from_secs;

async fn client(c: &Cluster) -> Client {
    let config = ClientConfig {
        deadline: SECS(20),
        ..ClientConfig::default()
    };
    Client::with_config(c.endpoints(), config)
        .await
        .expect("client connects")
}

/// The term node `id` reports for shard 1.
async fn shard_term(c: &Cluster, id: u64) -> u64 {
    let status = c.status(id).await.expect("status of a running node");
    status
        .shards
        .iter()
        .find(|s| s.shard.as_ref().is_some_and(|d| d.id == 1))
        .map(|s| s.term)
        .expect("node hosts shard 1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_form_a_cluster_and_replicate_every_operation() {
    let cluster = Cluster::start(3, "");
    cluster.wait_leader(1, SECS(20)).await;
    let c = client(&cluster).await;

    for i in 0..50 {
        c.put(format!("key{i:03}"), format!("v{i}")).await.unwrap();
    }
    assert_eq!(c.get("key007").await.unwrap(), Some(b"v7".to_vec()));
    assert_eq!(c.get("missing").await.unwrap(), None);
    assert!(c.delete("key000").await.unwrap());
    assert!(!c.delete("key000").await.unwrap());
    let ok = c
        .cas("key001", Some(b"v1"), Some(b"swapped"))
        .await
        .unwrap();
    assert!(ok.succeeded);
    let lost = c.cas("key001", Some(b"v1"), Some(b"again")).await.unwrap();
    assert!(!lost.succeeded);
    assert_eq!(lost.previous.as_deref(), Some(&b"swapped"[..]));
    assert!(c.cas("fresh", None, Some(b"1")).await.unwrap().succeeded);
    c.batch(vec![
        Mutation::put("b1", "x"),
        Mutation::put("b2", "y"),
        Mutation::delete("key002"),
    ])
    .await
    .unwrap();
    let scanned = c.scan("key", "key010", 0).await.unwrap();
    let keys: Vec<String> = scanned
        .iter()
        .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert_eq!(
        keys,
        ["key001", "key003", "key004", "key005", "key006", "key007", "key008", "key009"]
    );
    assert_eq!(c.scan("", "", 3).await.unwrap().len(), 3);

    // Every replica converges to the same data.
    for id in 1..=3 {
        let addr = cluster.addr(id);
        cluster
            .wait_until(&format!("node {id} to apply everything"), SECS(10), || {
                let addr = addr.clone();
                async move {
                    stale_get(&addr, b"b2").await.as_deref() == Some(&b"y"[..])
                        && stale_get(&addr, b"key002").await.is_none()
                        && stale_get(&addr, b"key001").await.as_deref() == Some(&b"swapped"[..])
                }
            })
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_under_load_elects_a_new_one_and_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start(3, "");
    let old_leader = cluster.wait_leader(1, SECS(20)).await;
    let c = client(&cluster).await;
    let acked: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));

    let mut writers = Vec::new();
    for w in 0..4 {
        let (c, acked, stop) = (c.clone(), acked.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0u64;
            let mut errors = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (k, v) = (format!("w{w}-{i:05}"), format!("value-{i}"));
                match c.put(&k, &v).await {
                    Ok(()) => {
                        acked.lock().unwrap().insert(k, v);
                    }
                    Err(_) => errors += 1,
                }
                i += 1;
            }
            errors
        }));
    }
    tokio::time::sleep(SECS(2)).await;
    let before_kill = acked.lock().unwrap().len();
    assert!(before_kill > 0, "no write acknowledged before the kill");
    let old_term = shard_term(&cluster, old_leader).await;
    cluster.kill9(old_leader);
    let new_leader = cluster.wait_leader(1, SECS(10)).await;
    // `wait_leader` asks only running nodes, so the new leader is another
    // node by construction; what must hold is a new election: a higher term.
    let new_term = shard_term(&cluster, new_leader).await;
    assert!(
        new_term > old_term,
        "node {new_leader} leads in term {new_term}, not after the killed leader's term {old_term}"
    );
    // Writes resume on the new leader without operator action.
    cluster
        .wait_until("writes to resume after failover", SECS(15), || {
            let n = acked.lock().unwrap().len();
            async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                n > before_kill + 20
            }
        })
        .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }

    let acked = acked.lock().unwrap().clone();
    for (k, v) in &acked {
        assert_eq!(
            c.get(k).await.unwrap().as_deref(),
            Some(v.as_bytes()),
            "acknowledged write {k} lost"
        );
    }

    // The killed node comes back and catches up.
    cluster.restart(old_leader);
    let (last_key, last_val) = acked.iter().next_back().unwrap();
    let addr = cluster.addr(old_leader);
    cluster
        .wait_until("the old leader to catch up", SECS(20), || {
            let addr = addr.clone();
            async move {
                stale_get(&addr, last_key.as_bytes()).await.as_deref() == Some(last_val.as_bytes())
            }
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_every_node_after_sigterm_or_kill9_keeps_every_acknowledged_key() {
    let mut cluster = Cluster::start(3, FAST_SNAPSHOTS);
    cluster.wait_leader(1, SECS(20)).await;
    let c = client(&cluster).await;
    let mut acked = Vec::new();
    for i in 0..200 {
        let (k, v) = (format!("k{i:04}"), format!("v{i}"));
        c.put(&k, &v).await.unwrap();
        acked.push((k, v));
    }
    // Node 1 stops gracefully (SIGTERM), the others are killed.
    assert!(
        cluster.terminate(1),
        "SIGTERM should stop node 1 cleanly (exit 0)\n{}",
        cluster.logs()
    );
    for id in 2..=3 {
        cluster.kill9(id);
    }
    for id in 1..=3 {
        cluster.restart(id);
    }
    cluster.wait_leader(1, SECS(20)).await;
    let c = client(&cluster).await;
    for (k, v) in &acked {
        assert_eq!(
            c.get(k).await.unwrap().as_deref(),
            Some(v.as_bytes()),
            "{k} lost across restart"
        );
    }
    // And the cluster still takes writes.
    c.put("after-restart", "ok").await.unwrap();
    assert_eq!(c.get("after-restart").await.unwrap(), Some(b"ok".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_was_down_catches_up_by_snapshot_after_log_purge() {
    let mut cluster = Cluster::start(3, FAST_SNAPSHOTS);
    let leader = cluster.wait_leader(1, SECS(20)).await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let c = client(&cluster).await;
    c.put("before", "1").await.unwrap();
    cluster.kill9(follower);

    for i in 0..300 {
        c.put(format!("k{i:04}"), format!("v{i}")).await.unwrap();
    }
    let admin = atoll_client::AdminClient::connect(cluster.addr(leader))
        .await
        .unwrap();
    admin.compact(1).await.unwrap();
    let status = cluster.status(leader).await.unwrap();
    let purged = status.shards[0].purged_index;
    assert!(
        purged > 100,
        "leader should have purged its log, purged index {purged}"
    );

    cluster.restart(follower);
    let addr = cluster.addr(follower);
    cluster
        .wait_until(
            "the follower to install a snapshot and catch up",
            SECS(30),
            || {
                let addr = addr.clone();
                async move { stale_get(&addr, b"k0299").await.as_deref() == Some(&b"v299"[..]) }
            },
        )
        .await;
    // Its data is readable a moment before openraft's metrics show the
    // install (the install's last fsync comes between): the follower may
    // first have installed an older snapshot the leader had begun to send
    // while it was down, so wait for the metric rather than read it once.
    let status = &cluster;
    cluster
        .wait_until(
            "the follower's snapshot to reach the leader's purge point",
            SECS(10),
            || async move {
                status
                    .status(follower)
                    .await
                    .is_some_and(|st| st.shards[0].snapshot_index >= purged)
            },
        )
        .await;
    assert_eq!(
        stale_get(&addr, b"before").await.as_deref(),
        Some(&b"1"[..])
    );
    assert_eq!(
        stale_get(&addr, b"k0000").await.as_deref(),
        Some(&b"v0"[..])
    );
}

/// A raw put of `k` to shard 1 with an 8 s deadline and, if given, the
/// "could not reach" metadata a client adds after a failed attempt.
fn raw_put(unreachable: Option<&str>) -> tonic::Request<atoll_proto::PutRequest> {
    use atoll_proto::{PutRequest, RequestHeader, WriteId};
    let mut request = tonic::Request::new(PutRequest {
        header: Some(RequestHeader {
            shard_id: 1,
            epoch: None,
        }),
        write_id: Some(WriteId {
            client_id: 42_000_000,
            seq: 1,
            first_incomplete: 1,
        }),
        key: b"k".to_vec(),
        value: b"v".to_vec(),
    });
    request.set_timeout(SECS(8));
    if let Some(addr) = unreachable {
        request.metadata_mut().insert(
            atoll_proto::UNREACHABLE_METADATA,
            addr.parse().expect("an address is valid metadata"),
        );
    }
    request
}

/// The leader a `NotLeader` answer names (panics on any other answer).
fn named_leader(answer: atoll_proto::PutResponse) -> (u64, String) {
    use atoll_proto::error::Kind;
    let error = answer.error.expect("a redirect to a leader");
    match error.kind {
        Some(Kind::NotLeader(nl)) => (nl.leader_id.expect("a leader is named"), nl.leader_addr),
        other => panic!("expected NotLeader, got {other:?}: {}", error.message),
    }
}

/// A replica that knows no leader (its leader is gone and no election has
/// ended yet) holds a request until one is elected, then names the new
/// leader. Answering at once with no leader sent the client into backoff
/// between replicas that knew none, which made a failover's write gap about
/// a backoff longer than the election.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_without_a_leader_holds_a_request_until_one_is_elected() {
    use atoll_proto::kv_client::KvClient;

    let mut c = Cluster::start(3, "");
    // Every node must host the shard before two of them stop (a node still
    // in its start-up checks would never host it).
    let leader = c.wait_all_know_leader(1, SECS(20)).await;
    let others: Vec<u64> = (1..=3).filter(|&i| i != leader).collect();
    let (asked, peer) = (others[0], others[1]);
    // The leader and the other follower stop: `asked` loses its leader and
    // cannot elect one on its own.
    c.pause(leader, true);
    c.pause(peer, true);
    c.wait_until("the asked replica knows no leader", SECS(15), || async {
        c.status(asked).await.is_some_and(|s| {
            s.shards
                .iter()
                .any(|sh| sh.shard.as_ref().is_some_and(|d| d.id == 1) && sh.leader_id.is_none())
        })
    })
    .await;

    let mut kv = KvClient::connect(format!("http://{}", c.addr(asked)))
        .await
        .expect("connect");
    let call = tokio::spawn(async move { kv.put(raw_put(None)).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !call.is_finished(),
        "answered before any leader was elected"
    );
    // The peer comes back: the two elect a leader, and the held request is
    // answered with it.
    c.pause(peer, false);
    let answer = call.await.expect("task").expect("rpc").into_inner();
    let (named, addr) = named_leader(answer);
    assert!(named == asked || named == peer, "named {named}");
    assert_eq!(addr, c.addr(named));
    c.pause(leader, false);
}

/// A follower told by the client that its leader did not answer (the
/// client's previous attempt failed to reach it) holds the request until
/// another leader is elected and names that one, instead of sending the
/// client back to the dead leader, with backoff, until its own election
/// timeout ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_told_its_leader_is_unreachable_names_the_next_leader() {
    use atoll_proto::kv_client::KvClient;

    let mut c = Cluster::start(3, "");
    let leader = c.wait_all_know_leader(1, SECS(20)).await;
    let asked = (1..=3).find(|&i| i != leader).expect("a follower");
    c.pause(leader, true);
    let mut kv = KvClient::connect(format!("http://{}", c.addr(asked)))
        .await
        .expect("connect");
    let dead = c.addr(leader);
    let answer = kv
        .put(raw_put(Some(&dead)))
        .await
        .expect("rpc")
        .into_inner();
    let (named, addr) = named_leader(answer);
    assert_ne!(named, leader, "pointed back at the unreachable leader");
    assert_eq!(addr, c.addr(named));
    c.pause(leader, false);
}
