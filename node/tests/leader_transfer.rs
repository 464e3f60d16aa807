//! Leader transfer under load with real processes (issue 9, item 6): 16
//! writers keep writing while the leadership of shard 1 moves five times,
//! each time to the next node. Every transfer must put its target in the
//! lead, no write may fail, and every acknowledged write must be readable at
//! the end. Prints how long writes paused around each transfer (the longest
//! gap between acknowledgements), the number `docs/benchmarks.md` quotes
//! from a release build:
//!
//! ```text
//! cargo test --release -p atoll-node --test leader_transfer -- --nocapture
//! ```

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atoll_client::admin::on_leader;
use atoll_client::{Client, ClientConfig};
use support::Cluster;
use tokio::time::Instant;

const SECS: fn(u64) -> Duration = Duration::from_secs;
const WRITERS: usize = 16;
const TRANSFERS: usize = 5;

/// What the writers share: acknowledged writes with the time of their
/// acknowledgement, and failed writes.
#[derive(Default)]
struct Tally {
    acked: Mutex<Vec<(Instant, String, String)>>,
    failed: Mutex<Vec<String>>,
}

impl Tally {
    fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }
}

async fn writer(w: usize, c: Client, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let (k, v) = (format!("t{w:02}-{i:06}"), format!("value-{w}-{i}"));
        match c.put(&k, &v).await {
            Ok(()) => tally.acked.lock().unwrap().push((Instant::now(), k, v)),
            Err(e) => tally.failed.lock().unwrap().push(format!("{k}: {e}")),
        }
        i += 1;
    }
}

/// The longest gap between consecutive acknowledgements that ends in
/// `[from, to]`.
fn longest_gap(acks: &[Instant], from: Instant, to: Instant) -> Duration {
    acks.windows(2)
        .filter(|w| w[1] >= from && w[1] <= to)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_moves_to_each_target_under_load_without_failing_or_losing_a_write() {
    let cluster = Cluster::start(3, "");
    let mut leader = cluster.wait_leader(1, SECS(20)).await;
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let c = Client::with_config(cluster.endpoints(), ClientConfig::default())
            .await
            .expect("client connects");
        writers.push(tokio::spawn(writer(w, c, tally.clone(), stop.clone())));
    }
    cluster
        .wait_until("writes before the transfers", SECS(20), || {
            let n = tally.acked();
            async move { n >= 20 * WRITERS }
        })
        .await;

    // (asked at, answered at, pause the leader reported)
    let mut windows = Vec::new();
    let endpoints = cluster.endpoints();
    for _ in 0..TRANSFERS {
        tokio::time::sleep(SECS(1)).await;
        let target = leader % 3 + 1;
        let asked = Instant::now();
        let outcome = on_leader(&endpoints, SECS(10), |admin| async move {
            admin.transfer_leader(1, target).await
        })
        .await
        .unwrap_or_else(|e| panic!("transfer call: {e}\n{}", cluster.logs()))
        .unwrap_or_else(|e| panic!("transfer to {target}: {e}\n{}", cluster.logs()));
        let answered = Instant::now();
        assert_eq!(outcome.leader_id, target);
        assert_eq!(
            cluster.wait_leader(1, SECS(5)).await,
            target,
            "the target must be the leader the nodes report"
        );
        windows.push((asked, answered, outcome.paused));
        leader = target;
    }
    tokio::time::sleep(SECS(1)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer task");
    }

    let mut acks: Vec<Instant> = tally.acked.lock().unwrap().iter().map(|a| a.0).collect();
    acks.sort();
    let first = acks.first().copied().unwrap_or_else(Instant::now);
    let calm = longest_gap(&acks, first, windows[0].0);
    eprintln!(
        "{} writes acknowledged by {WRITERS} writers; longest gap before the first transfer: {calm:?}",
        acks.len()
    );
    for (i, (asked, answered, paused)) in windows.iter().enumerate() {
        let gap = longest_gap(&acks, *asked, *answered + SECS(1));
        eprintln!(
            "transfer {}: call took {:?}, proposals held back {paused:?}, longest gap between acknowledged writes {gap:?}",
            i + 1,
            *answered - *asked,
        );
        assert!(gap < SECS(5), "writes stalled {gap:?} around transfer {i}");
    }
    let failed = tally.failed.lock().unwrap().clone();
    assert!(failed.is_empty(), "writes failed: {failed:?}");

    let c = Client::with_config(cluster.endpoints(), ClientConfig::default())
        .await
        .expect("client connects");
    let stored: BTreeMap<Vec<u8>, Vec<u8>> = c
        .scan("t", "u", 0)
        .await
        .unwrap_or_else(|e| panic!("scan: {e}\n{}", cluster.logs()))
        .into_iter()
        .collect();
    for (_, k, v) in tally.acked.lock().unwrap().iter() {
        assert_eq!(
            stored.get(k.as_bytes()).map(Vec::as_slice),
            Some(v.as_bytes()),
            "acknowledged write {k} lost"
        );
    }
}
