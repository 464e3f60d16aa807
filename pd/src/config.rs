//! Per-cluster PD settings, replicated in the PD state.

use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PdConfig {
    /// Voters per shard (3 by default; 5 works).
    pub replication_factor: usize,
    /// Split a shard at or above this approximate size.
    pub split_size_bytes: u64,
    /// Split a shard at or above this approximate key count.
    pub split_keys: u64,
    /// A node silent for this long is `Down`.
    pub down_after_ms: u64,
    /// Replica counts across Up nodes may differ by this much before the
    /// balance scheduler moves a replica (at least 1, so it settles).
    pub replica_balance_tolerance: u64,
    /// The same for leader counts.
    pub leader_balance_tolerance: u64,
    /// Concurrent snapshots (learner adds) a node may send or receive.
    pub max_snapshots_per_node: usize,
    /// Timeout of an `AddLearner` step (it ships a snapshot).
    pub learner_step_timeout_ms: u64,
    /// Timeout of every other step.
    pub step_timeout_ms: u64,
    /// Balance operators created per scheduler round.
    pub max_balance_ops_per_round: usize,
}

impl Default for PdConfig {
    fn default() -> Self {
        Self {
            replication_factor: 3,
            split_size_bytes: 96 * 1024 * 1024,
            split_keys: 960_000,
            down_after_ms: 30_000,
            replica_balance_tolerance: 2,
            leader_balance_tolerance: 1,
            max_snapshots_per_node: 3,
            learner_step_timeout_ms: 10 * 60 * 1000,
            step_timeout_ms: 60_000,
            max_balance_ops_per_round: 4,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum ConfigError {
    #[error("replication factor must be at least 1, got {0}")]
    ReplicationFactor(usize),
    #[error("balance tolerances must be at least 1 so balancing settles")]
    Tolerance,
    #[error("split thresholds must be non-zero")]
    SplitThreshold,
    #[error("max_snapshots_per_node must be at least 1")]
    SnapshotLimit,
}

impl PdConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.replication_factor == 0 {
            return Err(ConfigError::ReplicationFactor(self.replication_factor));
        }
        if self.replica_balance_tolerance == 0 || self.leader_balance_tolerance == 0 {
            return Err(ConfigError::Tolerance);
        }
        if self.split_size_bytes == 0 || self.split_keys == 0 {
            return Err(ConfigError::SplitThreshold);
        }
        if self.max_snapshots_per_node == 0 {
            return Err(ConfigError::SnapshotLimit);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_zero_tolerance_is_refused() {
        assert_eq!(PdConfig::default().validate(), Ok(()));
        let c = PdConfig {
            replica_balance_tolerance: 0,
            ..PdConfig::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::Tolerance));
        let c = PdConfig {
            replication_factor: 0,
            ..PdConfig::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::ReplicationFactor(0)));
    }
}
