//! Nodes as the PD knows them: address, labels, state, liveness, capacity.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub type NodeId = u64;

/// The label whose values replicas of one shard are spread over.
pub const ZONE_LABEL: &str = "zone";

/// `Up` → `Draining` (operator) → `Removed` (operator, once empty).
/// `Up`/`Draining` → `Down` after `down_after_ms` of silence; a heartbeat
/// brings a `Down` node back to the state it had before. `Removed` is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NodeState {
    Up,
    Draining,
    Down,
    Removed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: NodeId,
    pub address: String,
    pub labels: BTreeMap<String, String>,
    pub state: NodeState,
    /// Whether the node was draining when it went down, so a heartbeat
    /// restores the right state.
    pub draining: bool,
    pub last_heartbeat_ms: u64,
    pub capacity_bytes: u64,
    pub used_bytes: u64,
}

impl NodeInfo {
    /// A node that just joined or registered: Up, last heard from at `now_ms`.
    pub fn joined(
        id: NodeId,
        address: String,
        labels: BTreeMap<String, String>,
        now_ms: u64,
    ) -> Self {
        NodeInfo {
            id,
            address,
            labels,
            state: NodeState::Up,
            draining: false,
            last_heartbeat_ms: now_ms,
            capacity_bytes: 0,
            used_bytes: 0,
        }
    }

    pub fn zone(&self) -> Option<&str> {
        self.labels.get(ZONE_LABEL).map(String::as_str)
    }

    /// May receive new replicas.
    pub fn is_up(&self) -> bool {
        self.state == NodeState::Up
    }

    /// Counts towards a live quorum (its replicas are presumably running).
    pub fn is_alive(&self) -> bool {
        match self.state {
            NodeState::Up | NodeState::Draining => true,
            NodeState::Down | NodeState::Removed => false,
        }
    }
}
