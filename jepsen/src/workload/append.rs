//! The `append` workload: keys `a/{generation}/{k}` hold lists (see
//! [`crate::checker::append`] for the encoding). An append reads the list (a recorded get)
//! and compare-and-swaps it for the list plus a unique element (a recorded cas), retrying
//! on a failed compare; if a read already shows the element (an earlier indeterminate
//! attempt applied), the append is done. A third of the ops are plain reads. Keys rotate
//! every [`ROTATE`] to keep lists short.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use atoll_client::Client;
use rand::{Rng, SeedableRng};

use super::{think, write_error, Ctx};
use crate::checker::append::{decode, encode};
use crate::{OpKind, OpResult, Outcome};

const KEYS: u64 = 3;
const ROTATE: Duration = Duration::from_secs(20);
const TRIES: usize = 6;

/// Every key used, for the final reads.
static USED: Mutex<BTreeSet<Vec<u8>>> = Mutex::new(BTreeSet::new());

fn key(ctx: &Ctx, rng: &mut impl Rng) -> Vec<u8> {
    let generation = ctx.clock.now() / ROTATE.as_nanos() as u64;
    let k = format!("a/{}/{generation}/{}", ctx.seed, rng.gen_range(0..KEYS)).into_bytes();
    USED.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(k.clone());
    k
}

/// A recorded get; `None` if it failed.
async fn read(c: &Client, me: u64, ctx: &Ctx, key: &[u8]) -> Option<Option<Vec<u8>>> {
    let h = ctx.rec.invoke(me, OpKind::get(key), ctx.clock.now());
    let (outcome, v) = match c.get(key).await {
        Ok(v) => (Outcome::Ok(OpResult::Get(v.clone())), Some(v)),
        Err(_) => (Outcome::Failed, None),
    };
    let _ = ctx.rec.complete(h, outcome, ctx.clock.now());
    v
}

async fn append(c: &Client, me: u64, ctx: &Ctx, key: &[u8], elem: &str) {
    let mut current = match read(c, me, ctx, key).await {
        Some(v) => v,
        None => return,
    };
    for _ in 0..TRIES {
        let mut list = decode(current.as_deref());
        if list.iter().any(|e| e == elem) {
            return; // an earlier, indeterminate attempt applied
        }
        list.push(elem.to_string());
        let new = encode(&list);
        let h = ctx.rec.invoke(
            me,
            OpKind::cas(key, current.clone(), Some(new.clone())),
            ctx.clock.now(),
        );
        let r = c.cas(key, current.as_deref(), Some(&new)).await;
        let (outcome, next) = match r {
            Ok(o) if o.succeeded => (Outcome::Ok(OpResult::cas(true, o.previous)), None),
            Ok(o) => (
                Outcome::Ok(OpResult::cas(false, o.previous.clone())),
                Some(o.previous),
            ),
            Err(e) => (write_error(&e), None),
        };
        let done = matches!(
            outcome,
            Outcome::Ok(OpResult::Cas {
                succeeded: true,
                ..
            })
        );
        let _ = ctx.rec.complete(h, outcome, ctx.clock.now());
        if done || ctx.stopped() {
            return;
        }
        current = match next {
            Some(prev) => prev,
            None => match read(c, me, ctx, key).await {
                Some(v) => v,
                None => return,
            },
        };
    }
}

pub async fn client(c: Client, me: u64, ctx: Ctx) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(ctx.seed ^ me);
    let mut n = 0u64;
    while !ctx.stopped() {
        let key = key(&ctx, &mut rng);
        if rng.gen_range(0..3) == 0 {
            let _ = read(&c, me, &ctx, &key).await;
        } else {
            n += 1;
            append(&c, me, &ctx, &key, &format!("{me}.{n}")).await;
        }
        think(&mut rng).await;
    }
}

/// One recorded read of every key this run used (client id 0).
pub async fn final_reads(c: &Client, ctx: &Ctx) {
    let prefix = format!("a/{}/", ctx.seed).into_bytes();
    let keys: Vec<Vec<u8>> = USED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .filter(|k| k.starts_with(&prefix))
        .cloned()
        .collect();
    for k in keys {
        let _ = read(c, 0, ctx, &k).await;
    }
}
