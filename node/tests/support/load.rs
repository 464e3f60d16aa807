//! A write load for tests that change the cluster under it: writers put
//! keys spread over the key space (so they cross every split and move) and
//! tally what was acknowledged and what failed; [`read_all`] reads
//! everything back in one scan.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use atoll_client::Client;

/// What the writers saw: acknowledged key → value, and failures.
#[derive(Default)]
pub struct Tally {
    pub acked: Mutex<BTreeMap<String, String>>,
    pub failed: Mutex<Vec<String>>,
}

/// Writer `w`: puts `<letter><w>-<i>` = `v<w>-<i>` until `stop`.
pub async fn writer(w: usize, c: Client, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let k = format!("{}{w:02}-{i:05}", (b'a' + (i % 26) as u8) as char);
        let v = format!("v{w}-{i}");
        match c.put(&k, &v).await {
            Ok(()) => {
                tally.acked.lock().unwrap().insert(k, v);
            }
            Err(e) => tally.failed.lock().unwrap().push(format!("{k}: {e}")),
        }
        i += 1;
    }
}

/// Every pair the writers' key space holds, by one scan.
pub async fn read_all(c: &Client) -> Result<BTreeMap<String, String>, atoll_client::Error> {
    Ok(c.scan("", "~", 0)
        .await?
        .into_iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(&k).into_owned(),
                String::from_utf8_lossy(&v).into_owned(),
            )
        })
        .collect())
}

/// `n` writers, each with a client of its own, running until [`Load::stop`].
pub struct Load {
    pub tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    writers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub async fn start(endpoints: Vec<String>, n: usize) -> Load {
        let tally = Arc::new(Tally::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..n {
            let client =
                Client::with_config(endpoints.clone(), atoll_client::ClientConfig::default())
                    .await
                    .expect("client connects");
            writers.push(tokio::spawn(writer(w, client, tally.clone(), stop.clone())));
        }
        Load {
            tally,
            stop,
            writers,
        }
    }

    /// Stops the writers and waits for their last writes.
    pub async fn stop(self) -> Arc<Tally> {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.writers {
            w.await.expect("writer task");
        }
        self.tally
    }
}

impl Load {
    /// Stops the writers and checks what they saw: no write failed, and
    /// every acknowledged write reads back (one scan through `endpoints`).
    /// Returns how many writes were acknowledged. `after` names the moment
    /// in the panic messages; `logs` are the nodes' logs to print.
    pub async fn stop_and_check(
        self,
        endpoints: Vec<String>,
        after: &str,
        logs: impl Fn() -> String,
    ) -> usize {
        let tally = self.stop().await;
        let failed = tally.failed.lock().unwrap().clone();
        assert!(failed.is_empty(), "writes failed: {failed:?}\n{}", logs());
        let acked = tally.acked.lock().unwrap().clone();
        let reader = Client::with_config(endpoints, atoll_client::ClientConfig::default())
            .await
            .expect("client connects");
        let stored = read_all(&reader)
            .await
            .unwrap_or_else(|e| panic!("scan: {e}\n{}", logs()));
        for (k, v) in &acked {
            assert_eq!(stored.get(k), Some(v), "{k} {after}\n{}", logs());
        }
        acked.len()
    }
}
