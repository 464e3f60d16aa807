//! The `set` workload: each client adds unique elements, one key `s/{client}-{n}` each; after
//! the faults end, one scan of `s/` reads the whole set back.

use std::collections::BTreeSet;

use atoll_client::Client;
use rand::SeedableRng;

use super::{think, write_error, Ctx};
use crate::{OpKind, OpResult, Outcome};

const PREFIX: &str = "s/";
/// The key right after every `s/...` key.
const END: &str = "s0";

pub async fn client(c: Client, me: u64, ctx: Ctx) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(ctx.seed ^ me);
    let mut n = 0u64;
    while !ctx.stopped() {
        n += 1;
        let key = format!("{PREFIX}{me:03}-{n:07}").into_bytes();
        let h = ctx
            .rec
            .invoke(me, OpKind::put(key.clone(), "1"), ctx.clock.now());
        let outcome = match c.put(&key, "1").await {
            Ok(()) => Outcome::Ok(OpResult::Put),
            Err(e) => write_error(&e),
        };
        let _ = ctx.rec.complete(h, outcome, ctx.clock.now());
        think(&mut rng).await;
    }
}

/// Every element, or `None` if the scan failed (tried a few times).
pub async fn final_read(c: &Client) -> Option<BTreeSet<Vec<u8>>> {
    for _ in 0..5 {
        if let Ok(kvs) = c.scan(PREFIX, END, 0).await {
            return Some(kvs.into_iter().map(|(k, _)| k).collect());
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    None
}
