//! The running operators of the PD leader (leader-local, not replicated:
//! after a PD leader change the checkers rebuild what is still needed).
//! At most one operator per shard; at most `max_snapshots_per_node`
//! unconfirmed learner adds sending from or arriving at one node.

use std::collections::BTreeMap;

use thiserror::Error;

use crate::config::PdConfig;
use crate::node::NodeId;
use crate::operator::{CancelReason, OpKind, OpStatus, Operator};
use crate::shard::{ShardId, ShardInfo};
use crate::state::PdState;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AdmitError {
    #[error("shard {0} already has a running operator")]
    ShardBusy(ShardId),
    #[error("node {node} already has {running} snapshots in flight")]
    SnapshotLimit { node: NodeId, running: usize },
}

/// An operator that left the set, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub shard: ShardId,
    pub kind: OpKind,
    pub status: OpStatus,
}

#[derive(Debug, Clone, Default)]
pub struct OperatorSet {
    ops: BTreeMap<ShardId, Operator>,
}

impl OperatorSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, shard: ShardId) -> Option<&Operator> {
        self.ops.get(&shard)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Operator> {
        self.ops.values()
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Unconfirmed learner adds that `node` sends or receives.
    pub fn snapshots_on(&self, node: NodeId) -> usize {
        self.ops
            .values()
            .flat_map(Operator::snapshot_nodes)
            .filter(|n| *n == node)
            .count()
    }

    /// Whether `op` would be admitted now.
    pub fn check_admit(&self, op: &Operator, config: &PdConfig) -> Result<(), AdmitError> {
        if self.ops.contains_key(&op.shard) {
            return Err(AdmitError::ShardBusy(op.shard));
        }
        for node in op.snapshot_nodes() {
            let running = self.snapshots_on(node);
            if running >= config.max_snapshots_per_node {
                return Err(AdmitError::SnapshotLimit { node, running });
            }
        }
        Ok(())
    }

    pub fn add(&mut self, op: Operator, config: &PdConfig) -> Result<(), AdmitError> {
        self.check_admit(&op, config)?;
        self.ops.insert(op.shard, op);
        Ok(())
    }

    /// Feeds the stored state of `shard` after an accepted report (or split
    /// report). Returns the outcome if the operator ended.
    pub fn observe(&mut self, shard: &ShardInfo, now_ms: u64) -> Option<Outcome> {
        let op = self.ops.get_mut(&shard.desc.id)?;
        op.observe(shard, now_ms);
        self.take_if_ended(shard.desc.id)
    }

    /// Times out stuck steps and drops operators of unknown shards.
    pub fn tick(&mut self, state: &PdState, now_ms: u64) -> Vec<Outcome> {
        let config = state.config();
        let shards: Vec<ShardId> = self.ops.keys().copied().collect();
        let mut ended = Vec::new();
        for id in shards {
            if let Some(op) = self.ops.get_mut(&id) {
                if state.shard(id).is_none() {
                    op.cancel(CancelReason::ShardGone);
                } else {
                    op.check_timeout(now_ms, config);
                }
            }
            ended.extend(self.take_if_ended(id));
        }
        ended
    }

    pub fn cancel(&mut self, shard: ShardId, reason: CancelReason) -> Option<Outcome> {
        self.ops.get_mut(&shard)?.cancel(reason);
        self.take_if_ended(shard)
    }

    fn take_if_ended(&mut self, shard: ShardId) -> Option<Outcome> {
        if self.ops.get(&shard)?.is_running() {
            return None;
        }
        let op = self.ops.remove(&shard)?;
        Some(Outcome {
            shard,
            kind: op.kind,
            status: op.status().clone(),
        })
    }
}
