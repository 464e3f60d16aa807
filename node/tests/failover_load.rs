//! A leader killed -9 under load, seen by clients with a short deadline
//! (issue 7, item 7): 32 writers whose operations give up after 1 s keep
//! writing while the leader of shard 1 is killed. Writes must resume within
//! a generous bound, and no acknowledged write may be lost. A liveness
//! check, not a speed test: the bound is ten times the failover we expect.
//!
//! Each attempt tells the node its deadline (`grpc-timeout`), so a node that
//! cannot commit in time answers `Unavailable` before the client's timer
//! fires (docs/operations.md, "Timeouts"). How the failed operations ended
//! is printed, not asserted: it depends on the machine's load.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atoll_client::{Client, ClientConfig, Error};
use support::Cluster;

const SECS: fn(u64) -> Duration = Duration::from_secs;
const WRITERS: usize = 32;
/// How long after the kill writes must be acknowledged again.
const RESUME_WITHIN: Duration = Duration::from_secs(10);

/// What every writer shares: acknowledged writes, and how failures ended
/// (a count and the first error of each kind).
#[derive(Default)]
struct Tally {
    acked: Mutex<Vec<(String, String)>>,
    failures: Mutex<BTreeMap<&'static str, (u64, String)>>,
}

impl Tally {
    fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    fn fail(&self, e: &Error) {
        let mut failures = self.failures.lock().unwrap();
        failures.entry(kind(e)).or_insert((0, e.to_string())).0 += 1;
    }
}

/// A short name for how a failed write ended, for the printed summary.
fn kind(e: &Error) -> &'static str {
    match e {
        Error::Timeout { last, .. } => match **last {
            Error::Unavailable(_) => "timeout, last: unavailable (node answered)",
            Error::Transport(ref m) if m.contains("no reply within") => {
                "timeout, last: no reply (client timer)"
            }
            Error::Transport(_) => "timeout, last: transport",
            Error::NotLeader { .. } => "timeout, last: not leader",
            _ => "timeout, last: other",
        },
        Error::Unavailable(_) => "unavailable",
        Error::Transport(_) => "transport",
        _ => "other",
    }
}

async fn writer(w: usize, c: Client, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let (k, v) = (format!("w{w:02}-{i:06}"), format!("value-{w}-{i}"));
        match c.put(&k, &v).await {
            Ok(()) => tally.acked.lock().unwrap().push((k, v)),
            Err(e) => tally.fail(&e),
        }
        i += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_with_a_one_second_deadline_resume_after_a_leader_kill_and_lose_no_acknowledged_write(
) {
    let mut cluster = Cluster::start(3, "");
    let leader = cluster.wait_leader(1, SECS(20)).await;
    let short = ClientConfig {
        deadline: SECS(1),
        request_timeout: SECS(1),
        ..ClientConfig::default()
    };
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let c = Client::with_config(cluster.endpoints(), short.clone())
            .await
            .expect("client connects");
        writers.push(tokio::spawn(writer(w, c, tally.clone(), stop.clone())));
    }

    cluster
        .wait_until("writes before the kill", SECS(20), || {
            let n = tally.acked();
            async move { n >= 10 * WRITERS }
        })
        .await;
    tokio::time::sleep(SECS(2)).await;
    cluster.kill9(leader);
    let killed = tokio::time::Instant::now();
    // Replies already on their way when the leader died may still arrive:
    // at most one per writer. Twice that many more means the new leader
    // acknowledges writes.
    let at_kill = tally.acked();
    cluster
        .wait_until(
            "writes to resume after the leader kill",
            RESUME_WITHIN,
            || {
                let n = tally.acked();
                async move { n >= at_kill + 2 * WRITERS }
            },
        )
        .await;
    eprintln!(
        "writes resumed {:?} after killing leader {leader}",
        killed.elapsed()
    );
    tokio::time::sleep(SECS(1)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer task");
    }
    eprintln!("acknowledged {} writes", tally.acked());
    for (kind, (n, first)) in tally.failures.lock().unwrap().iter() {
        eprintln!("{n} failed writes ended {kind}, e.g. {first}");
    }

    let patient = ClientConfig {
        deadline: SECS(20),
        ..ClientConfig::default()
    };
    let c = Client::with_config(cluster.endpoints(), patient)
        .await
        .expect("client connects");
    // One scan reads everything back (each page is linearizable).
    let stored: BTreeMap<Vec<u8>, Vec<u8>> = c
        .scan("w", "x", 0)
        .await
        .unwrap_or_else(|e| panic!("scan: {e}\n{}", cluster.logs()))
        .into_iter()
        .collect();
    let acked = tally.acked.lock().unwrap().clone();
    for (k, v) in &acked {
        assert_eq!(
            stored.get(k.as_bytes()).map(Vec::as_slice),
            Some(v.as_bytes()),
            "acknowledged write {k} lost"
        );
    }
}
