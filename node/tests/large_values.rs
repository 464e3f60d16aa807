//! Large entries on real processes: a follower that was down while many
//! 1 MiB values were written catches up (AppendEntries are bounded by bytes,
//! and a reply over the gRPC cap makes the leader send fewer entries), and a
//! scan over more data than one gRPC message can carry pages through it.

mod support;

use std::time::Duration;

use atoll_client::{Client, ClientConfig};
use support::Cluster;

const MIB: usize = 1024 * 1024;
const VALUES: usize = 100;

fn value(i: usize) -> Vec<u8> {
    // Distinct per key, and not one repeated byte, so a mixed-up value shows.
    let mut v = vec![(i % 251) as u8; MIB];
    v[..8].copy_from_slice(&(i as u64).to_be_bytes());
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_down_during_100_puts_of_1_mib_catches_up_and_scans_page_through() {
    let mut cluster = Cluster::start(3, "");
    let leader = cluster.wait_leader(1, Duration::from_secs(20)).await;
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    let config = ClientConfig {
        deadline: Duration::from_secs(30),
        request_timeout: Duration::from_secs(10),
        ..ClientConfig::default()
    };
    let c = Client::with_config(cluster.endpoints(), config)
        .await
        .expect("client connects");
    cluster.kill9(follower);
    for i in 0..VALUES {
        c.put(format!("big{i:03}"), value(i))
            .await
            .unwrap_or_else(|e| panic!("put {i}: {e}\n{}", cluster.logs()));
    }
    let target = cluster.status(leader).await.expect("leader status").shards[0].last_log_index;

    cluster.restart(follower);
    cluster
        .wait_until(
            "the follower to catch up on 100 MiB of log",
            Duration::from_secs(60),
            || {
                let status = cluster.status(follower);
                async move {
                    status
                        .await
                        .and_then(|s| s.shards.first().map(|sh| sh.last_applied))
                        .is_some_and(|applied| applied >= target)
                }
            },
        )
        .await;

    // The leader steps away: the caught-up follower can serve every value.
    cluster.kill9(leader);
    cluster.wait_leader(1, Duration::from_secs(20)).await;
    let all = c.scan("big", "bih", 0).await.expect("scan of 100 MiB");
    assert_eq!(
        all.len(),
        VALUES,
        "scan returned {} of {VALUES} pairs",
        all.len()
    );
    for (i, (k, v)) in all.iter().enumerate() {
        assert_eq!(k, format!("big{i:03}").as_bytes());
        assert!(*v == value(i), "value of big{i:03} differs");
    }
}
