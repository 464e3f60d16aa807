//! Shard splits on real processes (issue 9, item 4): under a continuous
//! write load, shard 1 is split by command at a key, then again at its
//! middle key; the children get leaders, the PD learns them, the load sees
//! no error, every acknowledged write is readable through the new shards,
//! bad split keys are refused with a message, and the children survive a
//! restart of the whole cluster.

mod support;

use std::time::Duration;

use atoll_client::admin::on_leader;
use atoll_client::{Client, ClientConfig};
use atoll_proto::pd_client::PdClient;
use atoll_proto::ClusterStateRequest;
use support::load::{read_all, Load};
use support::Cluster;

const SECS: fn(u64) -> Duration = Duration::from_secs;
const WRITERS: usize = 8;
const PD_TOML: &str = "[pd]\nheartbeat_ms = 200\ndown_after_ms = 2000\n";

async fn split(
    c: &Cluster,
    shard: u64,
    key: Option<&str>,
) -> Result<(u64, Vec<u8>), atoll_client::Error> {
    let key = key.map(|k| k.as_bytes().to_vec());
    on_leader(&c.endpoints(), SECS(10), |admin| {
        let key = key.clone();
        async move { admin.split_shard(shard, key.as_deref()).await }
    })
    .await
    .map(|(left, right)| {
        assert_eq!(left.end, right.start, "the halves meet at the split key");
        (right.id, right.start)
    })
}

/// The PD's ranges, by start key: (start, end, id).
async fn pd_ranges(c: &Cluster) -> Option<Vec<(Vec<u8>, Vec<u8>, u64)>> {
    let mut pd = PdClient::connect(format!("http://{}", c.addr(1)))
        .await
        .ok()?;
    let s = pd
        .cluster_state(ClusterStateRequest {})
        .await
        .ok()?
        .into_inner();
    Some(
        s.shards
            .into_iter()
            .map(|s| (s.start, s.end, s.id))
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splits_under_load_lose_nothing_and_surface_no_error() {
    let mut c = Cluster::start(3, PD_TOML);
    c.wait_leader(1, SECS(20)).await;
    let load = Load::start(c.endpoints(), WRITERS).await;
    let tally = load.tally.clone();
    c.wait_until("writes before the first split", SECS(20), || {
        let n = tally.acked.lock().unwrap().len();
        async move { n >= 200 }
    })
    .await;

    // The PD must know shard 1 before it can be split (its first report).
    let mut tries = 0;
    let (first_child, at) = loop {
        match split(&c, 1, Some("m")).await {
            Ok(done) => break done,
            Err(atoll_client::Error::NotApplied(_)) if tries < 50 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("split of shard 1 at \"m\": {e}\n{}", c.logs()),
        }
    };
    assert_eq!(at, b"m");
    c.wait_leader(first_child, SECS(10)).await;
    tokio::time::sleep(SECS(1)).await;

    // Split the child at its middle key, once the PD has its report.
    let mut tries = 0;
    let (second_child, middle) = loop {
        match split(&c, first_child, None).await {
            Ok(done) => break done,
            Err(atoll_client::Error::NotApplied(_)) if tries < 50 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("split of shard {first_child}: {e}\n{}", c.logs()),
        }
    };
    assert!(middle.as_slice() > b"m".as_slice(), "{middle:?}");
    c.wait_leader(second_child, SECS(10)).await;
    tokio::time::sleep(SECS(2)).await;
    load.stop().await;
    let failed = tally.failed.lock().unwrap().clone();
    assert!(failed.is_empty(), "writes failed: {failed:?}\n{}", c.logs());

    // Bad keys: outside the shard, or at its start.
    let e = split(&c, 1, Some("z"))
        .await
        .expect_err("z is not in shard 1");
    assert!(
        matches!(&e, atoll_client::Error::InvalidArgument(m) if m.contains("not strictly inside shard 1")),
        "{e}"
    );
    let e = split(&c, first_child, Some("m"))
        .await
        .expect_err("m starts the child");
    assert!(
        matches!(&e, atoll_client::Error::InvalidArgument(m) if m.contains("not strictly inside")),
        "{e}"
    );

    // A key over the key limit (4096 bytes by default) would become a
    // shard bound: refused as a client's key is.
    let long = "k".repeat(70_000);
    let e = split(&c, 1, Some(&long))
        .await
        .expect_err("a 70 000-byte split key");
    assert!(
        matches!(&e, atoll_client::Error::InvalidArgument(m)
            if m.contains("split key is 70000 bytes; the limit is 4096 bytes")),
        "{e}"
    );

    // The PD's ranges tile the key space: ["", m) [m, middle) [middle, +inf).
    c.wait_until("the PD knows both splits", SECS(20), || async {
        pd_ranges(&c).await.is_some_and(|r| {
            r == vec![
                (Vec::new(), b"m".to_vec(), 1),
                (b"m".to_vec(), middle.clone(), first_child),
                (middle.clone(), Vec::new(), second_child),
            ]
        })
    })
    .await;

    // Every acknowledged write reads back, across the three shards, also
    // after a restart of every node.
    let acked = tally.acked.lock().unwrap().clone();
    for round in ["before", "after"] {
        if round == "after" {
            for id in 1..=3 {
                c.kill9(id);
            }
            for id in 1..=3 {
                c.restart(id);
            }
            for shard in [1, first_child, second_child] {
                c.wait_leader(shard, SECS(20)).await;
            }
        }
        let reader = Client::with_config(c.endpoints(), ClientConfig::default())
            .await
            .expect("client connects");
        let stored = read_all(&reader)
            .await
            .unwrap_or_else(|e| panic!("scan {round} the restart: {e}\n{}", c.logs()));
        let missing: Vec<&String> = acked.keys().filter(|k| !stored.contains_key(*k)).collect();
        assert!(
            missing.is_empty(),
            "{} acknowledged writes missing {round} the restart, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        for (k, v) in &acked {
            assert_eq!(stored.get(k), Some(v), "{k} {round} the restart");
        }
    }
    println!(
        "{} writes acknowledged, split at \"m\" (shard {first_child}) and at {:?} (shard {second_child})",
        acked.len(),
        String::from_utf8_lossy(&middle)
    );
}

/// Issue 9: "a shard splits automatically past the threshold". With a
/// threshold of 300 keys, writing about 1,200 keys makes the PD have shard
/// 1 split, and its halves again, while the writers see no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_past_the_key_threshold_splits_by_itself() {
    let c = Cluster::start(3, &format!("{PD_TOML}split_keys = 300\n"));
    c.wait_leader(1, SECS(20)).await;
    let load = Load::start(c.endpoints(), 4).await;
    let tally = load.tally.clone();
    c.wait_until(
        "the PD to split shard 1 and a half of it",
        SECS(60),
        || async { pd_ranges(&c).await.is_some_and(|r| r.len() >= 3) },
    )
    .await;
    load.stop().await;
    let failed = tally.failed.lock().unwrap().clone();
    assert!(failed.is_empty(), "writes failed: {failed:?}\n{}", c.logs());
    let ranges = pd_ranges(&c).await.expect("the PD answers");
    assert_eq!(ranges.first().map(|r| r.0.clone()), Some(Vec::new()));
    assert_eq!(ranges.last().map(|r| r.1.clone()), Some(Vec::new()));
    for pair in ranges.windows(2) {
        assert_eq!(
            pair[0].1, pair[1].0,
            "the ranges tile the key space: {ranges:?}"
        );
    }
    let reader = Client::with_config(c.endpoints(), ClientConfig::default())
        .await
        .expect("client connects");
    let acked = tally.acked.lock().unwrap().clone();
    let stored = reader.scan("", "~", 0).await.expect("scan");
    assert_eq!(stored.len(), acked.len(), "every acknowledged write, once");
    println!(
        "{} writes, {} shards: {ranges:?}",
        acked.len(),
        ranges.len()
    );
}
