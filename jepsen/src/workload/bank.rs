//! The `bank` workload, designed but not runnable yet.
//!
//! Design (for when the store has a conditional multi-key write within one shard, like
//! etcd's Txn: compares on values or absence, then mutations, all or nothing):
//! - accounts `b/{i}` for i in 0..5, all in one shard, created with 20 each (total 100) by
//!   one transaction at setup;
//! - a transfer reads two balances, then commits `compare(b/x == bx, b/y == by) → put(b/x,
//!   bx - amount), put(b/y, by + amount)`; a failed compare is an ok no-op, an error is
//!   indeterminate;
//! - a read is one snapshot of every account (a transaction with only compares, or a
//!   single-shard snapshot scan), recorded as a
//!   [`BankRead`](crate::checker::bank::BankRead);
//! - the checker ([`crate::checker::bank`]) requires every read to sum to 100 with no
//!   negative balance.
//!
//! The history needs one new op kind for it (a transaction with its compares and mutations,
//! and its result), added to `history.rs` together with the client call.

/// Why the workload cannot run today.
pub const MISSING: &str =
    "the store has no conditional multi-key transaction yet (compare + multi-key write)";
