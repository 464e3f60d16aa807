//! The `register` workload: gets, puts and compare-and-swaps on 5 keys. Values are unique per
//! client and op. A share of the gets ([`Ctx::direct_reads`]) go straight to a random node
//! ([`super::direct`]). The keys rotate every [`ROTATE`]: the per-key linearizability search grows
//! fast with the number of concurrent and indeterminate ops on a key, so each key is used for
//! a bounded time only.

use std::collections::BTreeMap;
use std::time::Duration;

use atoll_client::Client;
use rand::{Rng, SeedableRng};

use super::direct::DirectReader;
use super::{think, write_error, Ctx};
use crate::{OpKind, OpResult, Outcome};

const KEYS: u64 = 5;
const ROTATE: Duration = Duration::from_secs(15);

fn key(ctx: &Ctx, rng: &mut impl Rng) -> Vec<u8> {
    let generation = ctx.clock.now() / ROTATE.as_nanos() as u64;
    format!("r/{generation}/{}", rng.gen_range(0..KEYS)).into_bytes()
}

pub async fn client(c: Client, me: u64, ctx: Ctx) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(ctx.seed ^ me);
    let mut seen: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
    let direct = DirectReader::new(&ctx);
    let mut n = 0u64;
    while !ctx.stopped() {
        n += 1;
        let key = key(&ctx, &mut rng);
        if !direct.is_empty() && rng.gen_bool(ctx.direct_reads.clamp(0.0, 1.0)) {
            let node = rng.gen_range(0..direct.len());
            if let Outcome::Ok(OpResult::Get(v)) = direct.get(me, &ctx, node, &key).await {
                seen.insert(key, v);
            }
            think(&mut rng).await;
            continue;
        }
        let value = format!("{me}.{n}").into_bytes();
        let kind = match rng.gen_range(0..100u32) {
            0..=49 => OpKind::get(key.clone()),
            50..=74 => OpKind::put(key.clone(), value.clone()),
            _ => OpKind::cas(
                key.clone(),
                seen.get(&key).cloned().flatten(),
                Some(value.clone()),
            ),
        };
        let h = ctx.rec.invoke(me, kind.clone(), ctx.clock.now());
        let outcome = match kind {
            OpKind::Get { .. } => match c.get(&key).await {
                Ok(v) => {
                    seen.insert(key.clone(), v.clone());
                    Outcome::Ok(OpResult::Get(v))
                }
                Err(_) => Outcome::Failed,
            },
            OpKind::Put { .. } => match c.put(&key, &value).await {
                Ok(()) => Outcome::Ok(OpResult::Put),
                Err(e) => write_error(&e),
            },
            OpKind::Delete { .. } => match c.delete(&key).await {
                Ok(existed) => Outcome::Ok(OpResult::delete(existed)),
                Err(e) => write_error(&e),
            },
            OpKind::Cas { expected, new, .. } => {
                match c.cas(&key, expected.as_deref(), new.as_deref()).await {
                    Ok(o) => {
                        let now = if o.succeeded { new } else { o.previous.clone() };
                        seen.insert(key.clone(), now);
                        Outcome::Ok(OpResult::cas(o.succeeded, o.previous))
                    }
                    Err(e) => write_error(&e),
                }
            }
            // This workload issues no transactions.
            OpKind::Txn { .. } => Outcome::Failed,
        };
        let _ = ctx.rec.complete(h, outcome, ctx.clock.now());
        think(&mut rng).await;
    }
}
