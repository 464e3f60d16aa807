//! Batch groups: writers set every key of one small group in a single atomic
//! batch (or delete them all), scanners read the group's range as one page.
//! A page must show the group whole: either no key, or every key with one
//! value. A page that mixes values saw half of a batch (a torn scan).

use std::time::Duration;

use atoll_client::{Client, Mutation};
use rand::Rng;

/// Keys in the group.
pub const GROUP_SIZE: usize = 6;
const PREFIX: &str = "grp/";
/// Just past every group key (`'/' + 1 == '0'`).
const END: &str = "grp0";

fn key(i: usize) -> Vec<u8> {
    format!("{PREFIX}{i:02}").into_bytes()
}

/// What one scan page showed: the values in key order.
pub type Page = Vec<(Vec<u8>, Vec<u8>)>;

/// Writes whole-group batches until `duration` has passed.
pub async fn writer(client: Client, me: u64, duration: Duration) {
    let start = tokio::time::Instant::now();
    let mut n = 0u64;
    while start.elapsed() < duration {
        n += 1;
        let (delete, pause) = {
            let mut rng = madsim::rand::thread_rng();
            (rng.gen_range(0..10u32) == 0, rng.gen_range(0..40u64))
        };
        let value = format!("w{me}-{n}").into_bytes();
        let mutations = (0..GROUP_SIZE)
            .map(|i| Mutation {
                key: key(i),
                value: (!delete).then(|| value.clone()),
            })
            .collect();
        // The outcome does not matter: only what scans see is checked.
        let _ = client.batch(mutations).await;
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}

/// Scans the group as one page until `duration` has passed; returns every
/// page it read.
pub async fn scanner(client: Client, duration: Duration) -> Vec<Page> {
    let start = tokio::time::Instant::now();
    let mut pages = Vec::new();
    while start.elapsed() < duration {
        if let Ok(page) = client.scan(PREFIX, END, GROUP_SIZE).await {
            pages.push(page);
        }
        let pause = madsim::rand::thread_rng().gen_range(0..20u64);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    pages
}
