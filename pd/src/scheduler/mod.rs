//! The scheduler: runs the checkers and balancers over the whole state in
//! priority order (replica repair, then split, then balance) and admits
//! what they propose into the [`OperatorSet`] within its limits.

pub mod balance;

use crate::checker::placement::Load;
use crate::checker::{replica, split};
use crate::ids::IdSource;
use crate::operator::{OpKind, Operator, OperatorSet};
use crate::shard::ShardId;
use crate::state::PdState;

/// Which parts run; all of them by default (an administrator may pause
/// splitting or balancing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scheduler {
    pub repair: bool,
    pub split: bool,
    pub balance: bool,
}

impl Default for Scheduler {
    fn default() -> Self {
        Self {
            repair: true,
            split: true,
            balance: true,
        }
    }
}

/// What one round created, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Round {
    pub created: Vec<(ShardId, OpKind)>,
}

impl Scheduler {
    /// One scheduling round. Deterministic in its inputs; call it on the PD
    /// leader every few hundred milliseconds and after heartbeats.
    pub fn run(
        &self,
        state: &PdState,
        ops: &mut OperatorSet,
        ids: &mut dyn IdSource,
        now_ms: u64,
    ) -> Round {
        let mut round = Round::default();
        if !state.is_bootstrapped() {
            return round;
        }
        let mut load = Load::compute(state, ops);
        if self.repair {
            for shard in state.shards() {
                if ops.get(shard.desc.id).is_some() {
                    continue;
                }
                let op = replica::check(state, ops, &load, shard, ids, now_ms);
                admit(state, ops, &mut load, &mut round, op);
            }
        }
        if self.split {
            for shard in state.shards() {
                if ops.get(shard.desc.id).is_some() {
                    continue;
                }
                let op = split::check(state, shard, ids, now_ms);
                admit(state, ops, &mut load, &mut round, op);
            }
        }
        if self.balance {
            let max = state.config().max_balance_ops_per_round;
            for _ in 0..max {
                let op = balance::balance_replicas(state, ops, &load, ids, now_ms);
                if !admit(state, ops, &mut load, &mut round, op) {
                    break;
                }
            }
            for _ in 0..max {
                let op = balance::balance_leaders(state, ops, &load, now_ms);
                if !admit(state, ops, &mut load, &mut round, op) {
                    break;
                }
            }
        }
        round
    }
}

/// Adds `op` if admitted, counting its load. Returns whether it was added.
fn admit(
    state: &PdState,
    ops: &mut OperatorSet,
    load: &mut Load,
    round: &mut Round,
    op: Option<Operator>,
) -> bool {
    let Some(op) = op else { return false };
    let Some(shard) = state.shard(op.shard) else {
        return false;
    };
    let (id, kind) = (op.shard, op.kind);
    if ops.check_admit(&op, state.config()).is_err() {
        return false;
    }
    load.add_operator(&op, &shard.desc);
    if ops.add(op, state.config()).is_err() {
        return false;
    }
    round.created.push((id, kind));
    true
}
