//! The `bank` workload: [`ACCOUNTS`] accounts `bank/{i}` in one shard, opened with
//! [`START`] each by one transaction at setup, then moved between by concurrent clients.
//!
//! - a transfer reads the two balances (a txn of two gets), then commits `if from = bf,
//!   to = bt then put(from, bf - amount), put(to, bt + amount)`; a failed compare is an ok
//!   no-op (someone moved money in between), an error is indeterminate;
//! - a read is one txn of gets over every account: one consistent view, checked by
//!   [`crate::checker::bank`] (sum = [`TOTAL`], no negative balance). An indeterminate
//!   transfer may or may not have happened, but either way it conserves the total, so every
//!   read must still sum exactly.
//!
//! Every txn (setup, the transfer's read, the transfer, the reads) is recorded as an
//! [`OpKind::Txn`].

use atoll_client::{Client, Compare, Txn, TxnOp, TxnOpResult};
use rand::{Rng, SeedableRng};

use super::{think, write_error, Ctx};
use crate::{OpKind, OpResult, Outcome, TxnCompare, TxnStep};

pub const ACCOUNTS: usize = 5;
pub const START: i64 = 20;
pub const TOTAL: i64 = ACCOUNTS as i64 * START;
/// Every account's key starts with this.
pub const PREFIX: &str = "bank/";
/// Client id of the setup and the final read.
const ADMIN: u64 = 0;

pub fn account(i: usize) -> String {
    format!("{PREFIX}{i}")
}

fn to_client(kind: &OpKind) -> Txn {
    let OpKind::Txn { compares, ops } = kind else {
        return Txn::new();
    };
    let txn = compares.iter().fold(Txn::new(), |t, c| {
        t.when(match &c.value {
            Some(v) => Compare::equal(c.key.clone(), v.clone()),
            None => Compare::absent(c.key.clone()),
        })
    });
    ops.iter().fold(txn, |t, s| {
        t.then(match s {
            TxnStep::Get { key } => TxnOp::get(key.clone()),
            TxnStep::Put { key, value } => TxnOp::put(key.clone(), value.clone()),
        })
    })
}

/// Runs `kind` (an [`OpKind::Txn`]) as client `me` and records it; returns the outcome.
async fn txn(c: &Client, me: u64, ctx: &Ctx, kind: OpKind) -> Outcome {
    let request = to_client(&kind);
    let reads_only = request
        .success
        .iter()
        .all(|o| matches!(o, TxnOp::Get { .. }))
        && request.compares.is_empty();
    let h = ctx.rec.invoke(me, kind, ctx.clock.now());
    let outcome = match c.txn(request).await {
        Ok(o) => {
            let reads = if o.succeeded {
                o.results
                    .into_iter()
                    .filter_map(|r| match r {
                        TxnOpResult::Get { value } => Some(value),
                        TxnOpResult::Put | TxnOpResult::Delete { .. } => None,
                    })
                    .collect()
            } else {
                Vec::new()
            };
            Outcome::Ok(OpResult::Txn {
                succeeded: o.succeeded,
                reads,
            })
        }
        // A failed read changed nothing.
        Err(_) if reads_only => Outcome::Failed,
        Err(e) => write_error(&e),
    };
    let _ = ctx.rec.complete(h, outcome.clone(), ctx.clock.now());
    outcome
}

/// A txn of gets over `accounts`.
fn read_of(accounts: &[usize]) -> OpKind {
    let ops = accounts
        .iter()
        .map(|&i| TxnStep::Get {
            key: account(i).into_bytes(),
        })
        .collect();
    OpKind::txn(Vec::new(), ops)
}

fn parse(v: &Option<Vec<u8>>) -> Option<i64> {
    std::str::from_utf8(v.as_deref()?).ok()?.parse().ok()
}

/// Opens the accounts (if absent) before the clients start; retried until it is known to
/// have happened, or gives up after a few tries (the reads will then show it).
pub async fn setup(c: &Client, ctx: &Ctx) {
    let compares = (0..ACCOUNTS)
        .map(|i| TxnCompare {
            key: account(i).into_bytes(),
            value: None,
        })
        .collect();
    let ops = (0..ACCOUNTS)
        .map(|i| TxnStep::Put {
            key: account(i).into_bytes(),
            value: START.to_string().into_bytes(),
        })
        .collect();
    let open = OpKind::txn(compares, ops);
    for _ in 0..10 {
        // A retry after an indeterminate attempt finds the accounts present: also done.
        if let Outcome::Ok(_) = txn(c, ADMIN, ctx, open.clone()).await {
            return;
        }
    }
}

async fn transfer(c: &Client, me: u64, ctx: &Ctx, rng: &mut impl Rng) {
    let from = rng.gen_range(0..ACCOUNTS);
    let to = (from + rng.gen_range(1..ACCOUNTS)) % ACCOUNTS;
    let Outcome::Ok(OpResult::Txn { reads, .. }) = txn(c, me, ctx, read_of(&[from, to])).await
    else {
        return;
    };
    let (Some(bf), Some(bt)) = (reads.first().and_then(parse), reads.get(1).and_then(parse)) else {
        return;
    };
    let amount = rng.gen_range(0..=bf.clamp(0, 5));
    let compares = vec![
        TxnCompare {
            key: account(from).into_bytes(),
            value: Some(bf.to_string().into_bytes()),
        },
        TxnCompare {
            key: account(to).into_bytes(),
            value: Some(bt.to_string().into_bytes()),
        },
    ];
    let ops = vec![
        TxnStep::Put {
            key: account(from).into_bytes(),
            value: (bf - amount).to_string().into_bytes(),
        },
        TxnStep::Put {
            key: account(to).into_bytes(),
            value: (bt + amount).to_string().into_bytes(),
        },
    ];
    txn(c, me, ctx, OpKind::txn(compares, ops)).await;
}

pub async fn client(c: Client, me: u64, ctx: Ctx) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(ctx.seed ^ me);
    let all: Vec<usize> = (0..ACCOUNTS).collect();
    while !ctx.stopped() {
        if rng.gen_range(0..2) == 0 {
            txn(&c, me, &ctx, read_of(&all)).await;
        } else {
            transfer(&c, me, &ctx, &mut rng).await;
        }
        think(&mut rng).await;
    }
}

/// One recorded read of every account after the faults healed.
pub async fn final_read(c: &Client, ctx: &Ctx) {
    let all: Vec<usize> = (0..ACCOUNTS).collect();
    txn(c, ADMIN, ctx, read_of(&all)).await;
}
