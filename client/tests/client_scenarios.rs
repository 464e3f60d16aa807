//! Client scenarios against an in-process fake cluster (real gRPC over
//! localhost, see `fake_cluster`): routing, leader changes, splits, lost
//! replies, dead nodes, deadlines, paging, admin calls.
#![cfg(not(madsim))]

mod fake_cluster;

use std::time::Duration;

use atoll_client::admin::on_leader;
use atoll_client::{
    cluster_status, Client, ClientConfig, Compare, Error, Mutation, Txn, TxnOp, TxnOpResult,
};
use fake_cluster::{lock, Shared};

fn fast() -> ClientConfig {
    ClientConfig {
        request_timeout: Duration::from_millis(500),
        deadline: Duration::from_secs(3),
        ..ClientConfig::default()
    }
}

async fn client(world: &Shared) -> Client {
    let addrs = lock(world).addrs.clone();
    Client::with_config(addrs, fast()).await.expect("connect")
}

fn requests(world: &Shared, method: &str) -> Vec<u64> {
    let log = &lock(world).log;
    log.iter()
        .filter(|(_, m)| *m == method)
        .map(|(n, _)| *n)
        .collect()
}

#[tokio::test]
async fn kv_round_trip() {
    let world = fake_cluster::start().await;
    let client = client(&world).await;
    assert_eq!(client.get("k").await, Ok(None));
    client.put("k", "v1").await.expect("put");
    assert_eq!(client.get("k").await, Ok(Some(b"v1".to_vec())));
    let failed = client
        .cas("k", Some(b"nope"), Some(b"v2"))
        .await
        .expect("cas");
    assert!(!failed.succeeded);
    assert_eq!(failed.previous.as_deref(), Some(&b"v1"[..]));
    let swapped = client.cas("k", Some(b"v1"), None).await.expect("cas");
    assert!(swapped.succeeded);
    assert_eq!(client.get_stale("k").await.map(|(v, _)| v), Ok(None));
    client.put("k", "v3").await.expect("put");
    assert_eq!(client.delete("k").await, Ok(true));
    assert_eq!(client.delete("k").await, Ok(false));
}

#[tokio::test]
async fn invalid_arguments_fail_without_a_round_trip() {
    let world = fake_cluster::start().await;
    let client = client(&world).await;
    let before = lock(&world).log.len();
    assert!(matches!(
        client.get("").await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        client.put(vec![b'k'; 4097], "v").await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        client.put("k", vec![0; (1 << 20) + 1]).await,
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(lock(&world).log.len(), before);
}

#[tokio::test]
async fn every_kv_request_carries_its_attempt_deadline() {
    let world = fake_cluster::start().await;
    let client = client(&world).await;
    client.put("k", "v").await.expect("put");
    client.get("k").await.expect("get");
    client.get_stale("k").await.expect("get_stale");
    client.cas("k", Some(b"v"), Some(b"w")).await.expect("cas");
    client
        .batch(vec![Mutation::put("b", "1")])
        .await
        .expect("batch");
    client.scan("", "", 0).await.expect("scan");
    client.delete("k").await.expect("delete");
    let deadlines = lock(&world).kv_deadlines.clone();
    // Shards, OpenSession and the seven calls above, at least.
    assert!(deadlines.len() >= 9, "{deadlines:?}");
    // No attempt ran near the operation's deadline, so each one carries the
    // request timeout (500 ms), in tonic's encoding: a unary call all of it,
    // an operation on the stream what was left of it when it was written.
    for d in deadlines {
        let micros = d
            .as_deref()
            .and_then(|d| d.strip_suffix('u'))
            .and_then(|n| n.parse::<u64>().ok());
        assert!(
            micros.is_some_and(|us| (400_000..=500_000).contains(&us)),
            "{d:?}"
        );
    }
}

#[tokio::test]
async fn point_operations_to_a_node_share_one_stream() {
    let world = fake_cluster::start().await;
    let client = client(&world).await;
    for i in 0..5 {
        client.put(format!("k{i}"), "v").await.expect("put");
    }
    client.get("k1").await.expect("get");
    client.cas("k1", Some(b"v"), Some(b"w")).await.expect("cas");
    client.delete("k2").await.expect("delete");
    assert_eq!(requests(&world, "put"), vec![1; 5]);
    assert_eq!(requests(&world, "get"), vec![1]);
    assert_eq!(requests(&world, "cas"), vec![1]);
    assert_eq!(requests(&world, "delete"), vec![1]);
    assert_eq!(requests(&world, "multiplex"), vec![1]);
    // A large value goes as a unary call, on its own.
    let big = vec![7u8; 100 * 1024];
    client.put("big", big.clone()).await.expect("put big");
    assert_eq!(client.get("big").await.expect("get big"), Some(big));
    assert_eq!(requests(&world, "multiplex"), vec![1]);
}

#[tokio::test]
async fn a_node_without_the_stream_is_sent_unary_calls() {
    let world = fake_cluster::start().await;
    lock(&world).no_multiplex = true;
    let client = client(&world).await;
    client.put("k", "v").await.expect("put");
    assert_eq!(client.get("k").await.expect("get"), Some(b"v".to_vec()));
    client.delete("k").await.expect("delete");
    assert_eq!(client.get("k").await.expect("get"), None);
    // Asked once, then never again.
    assert_eq!(requests(&world, "multiplex"), vec![1]);
    assert_eq!(requests(&world, "put"), vec![1]);
    assert_eq!(requests(&world, "get"), vec![1, 1]);
}

#[tokio::test]
async fn follows_the_leader_after_a_leader_change() {
    let world = fake_cluster::start().await;
    let client = client(&world).await;
    client.put("a", "1").await.expect("put");
    lock(&world).leaders.insert(1, 3);
    client.put("a", "2").await.expect("put after leader change");
    // Node 1 answered NotLeader, node 3 (the hinted leader) served it, and
    // the next request goes straight to node 3.
    assert_eq!(requests(&world, "put"), [1, 1, 3]);
    assert_eq!(client.get("a").await, Ok(Some(b"2".to_vec())));
    assert_eq!(requests(&world, "get"), [3]);
}

#[tokio::test]
async fn repairs_routes_after_a_split() {
    let world = fake_cluster::start().await;
    let client = client(&world).await;
    client.put("b", "1").await.expect("put");
    lock(&world).split(b"m", 2);
    client
        .put("x", "2")
        .await
        .expect("put into the new right shard");
    client
        .put("c", "3")
        .await
        .expect("put into the shrunk left shard");
    let all = client.scan("", "", 0).await.expect("scan");
    let keys: Vec<&[u8]> = all.iter().map(|(k, _)| k.as_slice()).collect();
    assert_eq!(keys, [&b"b"[..], b"c", b"x"]);
}

#[tokio::test]
async fn a_retried_write_is_applied_once() {
    let world = fake_cluster::start().await;
    let client = client(&world).await;
    lock(&world).lose_next_reply = true;
    // The first attempt applies and loses its reply; the retry carries the
    // same write id and gets the first outcome back.
    let outcome = client.cas("once", None, Some(b"v")).await.expect("cas");
    assert!(
        outcome.succeeded,
        "a second application would have failed the compare"
    );
    assert_eq!(lock(&world).applied_writes, 1);
    // Leader (applied, reply lost) -> next replica (NotLeader) -> leader.
    assert_eq!(requests(&world, "cas"), [1, 2, 1]);
}

#[tokio::test]
async fn a_write_whose_session_expired_is_an_unknown_outcome_and_never_resent() {
    let world = fake_cluster::start().await;
    let client = client(&world).await;
    assert!(client.session_ids().is_empty(), "no session before a write");
    {
        let mut w = lock(&world);
        w.lose_next_reply = true;
        w.expire_with_lost_reply = true;
    }
    // The first attempt applies and loses its reply; by the retry the
    // session was evicted. The retry must not count as a fresh write.
    let err = client.put("k", "v1").await.expect_err("unknown outcome");
    assert!(
        matches!(err, Error::SessionExpired { shard_id: 1, .. }),
        "{err:?}"
    );
    assert!(err.is_indeterminate());
    assert_eq!(lock(&world).applied_writes, 1, "applied exactly once");
    // Leader (applied, reply lost) -> next replica (NotLeader) -> leader
    // (SessionExpired), and then nothing: no re-send under a new session.
    assert_eq!(requests(&world, "put"), [1, 2, 1]);
    assert_eq!(requests(&world, "open_session").len(), 1);
    assert!(client.session_ids().is_empty(), "the session was dropped");

    // The next write opens a fresh session and succeeds.
    client.put("k", "v2").await.expect("put in a new session");
    assert_eq!(requests(&world, "open_session").len(), 2);
    let ids = client.session_ids();
    assert_eq!(ids.len(), 1);
    assert_eq!(ids[0].0, 1);
    assert_eq!(lock(&world).applied_writes, 2);
    assert_eq!(client.get("k").await.expect("get"), Some(b"v2".to_vec()));
}

#[tokio::test]
async fn concurrent_first_writes_open_one_session() {
    let world = fake_cluster::start().await;
    let client = client(&world).await;
    let writes = (0..8).map(|i| {
        let c = client.clone();
        async move { c.put(format!("k{i}"), "v").await }
    });
    for r in futures::future::join_all(writes).await {
        r.expect("put");
    }
    assert_eq!(requests(&world, "open_session").len(), 1);
}

#[tokio::test]
async fn moves_on_from_a_dead_leader() {
    let world = fake_cluster::start().await;
    let client = client(&world).await;
    client.put("a", "1").await.expect("put");
    {
        let mut w = lock(&world);
        w.down.insert(1);
        w.leaders.insert(1, 2);
    }
    client.put("a", "2").await.expect("put with node 1 down");
    assert_eq!(client.get("a").await, Ok(Some(b"2".to_vec())));
}

#[tokio::test]
async fn times_out_when_every_node_is_down() {
    let world = fake_cluster::start().await;
    let client = client(&world).await;
    lock(&world).down.extend([1, 2, 3]);
    let started = tokio::time::Instant::now();
    let err = client.put("a", "1").await.expect_err("no node is up");
    let elapsed = started.elapsed();
    assert!(
        matches!(&err, Error::Timeout { op: "put", last, .. } if matches!(**last, Error::Transport(_))),
        "{err}"
    );
    assert!(
        elapsed >= Duration::from_secs(3) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn scan_pages_through_shards_and_respects_limits() {
    let world = fake_cluster::start().await;
    let client = client(&world).await;
    for i in 0..26u8 {
        client.put([b'a' + i], [b'0' + i % 10]).await.expect("put");
    }
    {
        let mut w = lock(&world);
        w.split(b"h", 2);
        w.split(b"q", 3);
        w.page_cap = 3;
    }
    let all = client.scan("", "", 0).await.expect("scan all");
    assert_eq!(all.len(), 26);
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
    let some = client.scan("c", "t", 0).await.expect("scan range");
    assert_eq!(some.first().map(|kv| kv.0.clone()), Some(b"c".to_vec()));
    assert_eq!(some.len(), (b't' - b'c') as usize);
    let limited = client.scan("f", "", 7).await.expect("scan limit");
    let keys: Vec<u8> = limited.iter().map(|(k, _)| k[0]).collect();
    assert_eq!(keys, b"fghijkl");
    assert_eq!(client.scan("x", "c", 0).await, Ok(vec![]));
}

#[tokio::test]
async fn batches_stay_within_one_shard() {
    let world = fake_cluster::start().await;
    let client = client(&world).await;
    lock(&world).split(b"m", 2);
    let cross = client
        .batch(vec![Mutation::put("a", "1"), Mutation::put("z", "2")])
        .await;
    assert_eq!(cross, Err(Error::CrossShardBatch));
    client
        .batch(vec![
            Mutation::put("n", "1"),
            Mutation::put("z", "2"),
            Mutation::delete("q"),
        ])
        .await
        .expect("single-shard batch");
    assert_eq!(client.get("z").await, Ok(Some(b"2".to_vec())));
    assert_eq!(client.batch(vec![]).await, Ok(()));
}

#[tokio::test]
async fn txns_stay_within_one_shard_and_a_retried_txn_applies_once() {
    let world = fake_cluster::start().await;
    let client = client(&world).await;
    lock(&world).split(b"m", 2);
    // A key of the branch that would not run counts too.
    let cross = Txn::new()
        .when(Compare::absent("a"))
        .then(TxnOp::put("a", "1"))
        .otherwise(TxnOp::get("z"));
    assert_eq!(client.txn(cross).await, Err(Error::CrossShardBatch));
    assert!(
        requests(&world, "txn").is_empty(),
        "a cross-shard txn was sent"
    );

    // The first attempt applies and loses its reply; the retry (same write
    // id) gets the first answer, not a failed compare.
    lock(&world).lose_next_reply = true;
    let claim = Txn::new()
        .when(Compare::absent("n"))
        .then(TxnOp::put("n", "mine"))
        .then(TxnOp::get("n"))
        .otherwise(TxnOp::get("n"));
    let outcome = client.txn(claim.clone()).await.expect("txn");
    assert!(outcome.succeeded, "applied twice: {outcome:?}");
    assert_eq!(
        outcome.results,
        vec![
            TxnOpResult::Put,
            TxnOpResult::Get {
                value: Some(b"mine".to_vec())
            }
        ]
    );
    assert_eq!(requests(&world, "txn"), [1, 2, 1]);
    // Run again, it is a new write: the compare fails now.
    let again = client.txn(claim).await.expect("txn");
    assert!(!again.succeeded);
    assert_eq!(again.values().collect::<Vec<_>>(), vec![Some(&b"mine"[..])]);
    assert_eq!(client.txn(Txn::new()).await.map(|o| o.succeeded), Ok(true));
}

#[tokio::test]
async fn concurrent_operations_share_one_client() {
    let world = fake_cluster::start().await;
    let client = client(&world).await;
    lock(&world).leaders.insert(1, 2);
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.put(format!("k{i}"), "v").await })
        })
        .collect();
    for task in tasks {
        task.await.expect("join").expect("put");
    }
    assert_eq!(lock(&world).applied_writes, 20);
}

#[tokio::test]
async fn status_reports_unreachable_nodes_individually() {
    let world = fake_cluster::start().await;
    let mut endpoints = lock(&world).addrs.clone();
    lock(&world).down.insert(2);
    endpoints.push("127.0.0.1:1".into());
    let nodes = cluster_status(endpoints, Duration::from_millis(500)).await;
    let up: Vec<bool> = nodes.iter().map(|n| n.result.is_ok()).collect();
    assert_eq!(up, [true, false, true, false]);
    let leader = nodes[0].result.as_ref().map(|s| s.shards[0].role.clone());
    assert_eq!(leader.as_deref(), Ok("leader"));
}

#[tokio::test]
async fn leader_only_admin_calls_follow_the_hint() {
    let world = fake_cluster::start().await;
    lock(&world).leaders.insert(1, 3);
    let endpoints = lock(&world).addrs.clone();
    on_leader(&endpoints, Duration::from_secs(1), |admin| async move {
        admin.change_membership(1, &[1, 2, 3]).await
    })
    .await
    .expect("change membership");
    assert_eq!(requests(&world, "change_membership"), [1, 3]);
}

/// A node that does not host the shard (not a replica, or one that has not
/// applied the split creating it yet) cannot lead it: the next is asked.
#[tokio::test]
async fn leader_only_admin_calls_pass_nodes_without_the_shard() {
    let world = fake_cluster::start().await;
    lock(&world).leaders.insert(1, 3);
    lock(&world).not_hosted.insert((1, 1));
    let endpoints = lock(&world).addrs.clone();
    on_leader(&endpoints, Duration::from_secs(1), |admin| async move {
        admin.change_membership(1, &[1, 2, 3]).await
    })
    .await
    .expect("change membership");
    assert_eq!(requests(&world, "change_membership"), [1, 2, 3]);
}
