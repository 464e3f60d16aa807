//! The PD state machine: the replicated state and `apply`. Node commands
//! live in `nodes.rs`, shard commands in `shards.rs`; both only mutate
//! through `apply`, so the state is a pure function of the command log.

mod nodes;
mod shards;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::command::{Command, CommandResult};
use crate::config::PdConfig;
use crate::ids::IdAllocator;
use crate::node::{NodeId, NodeInfo};
use crate::shard::{ShardId, ShardInfo};

/// Everything the PD group replicates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PdState {
    cluster_id: u64,
    config: PdConfig,
    nodes: BTreeMap<NodeId, NodeInfo>,
    shards: BTreeMap<ShardId, ShardInfo>,
    /// Start key → shard: the range index (kept in step with `shards`).
    ranges: BTreeMap<Vec<u8>, ShardId>,
    ids: IdAllocator,
    bootstrapped: bool,
}

impl PdState {
    pub fn new(cluster_id: u64, config: PdConfig) -> Self {
        Self {
            cluster_id,
            config,
            nodes: BTreeMap::new(),
            shards: BTreeMap::new(),
            ranges: BTreeMap::new(),
            ids: IdAllocator::default(),
            bootstrapped: false,
        }
    }

    /// Applies one committed command. Deterministic: no clock, no randomness.
    pub fn apply(&mut self, cmd: Command) -> CommandResult {
        match cmd {
            Command::Bootstrap { shard } => CommandResult::Bootstrap(self.bootstrap(shard)),
            Command::JoinNode {
                address,
                labels,
                now_ms,
            } => CommandResult::JoinNode(self.join_node(address, labels, now_ms)),
            Command::RegisterNode {
                node,
                address,
                labels,
                now_ms,
            } => CommandResult::RegisterNode(self.register_node(node, address, labels, now_ms)),
            Command::NodeHeartbeat {
                node,
                now_ms,
                capacity_bytes,
                used_bytes,
            } => CommandResult::NodeHeartbeat(self.node_heartbeat(
                node,
                now_ms,
                capacity_bytes,
                used_bytes,
            )),
            Command::ShardHeartbeat {
                report,
                stats,
                now_ms,
            } => CommandResult::ShardHeartbeat(self.shard_heartbeat(report, stats, now_ms)),
            Command::SetNodeState {
                node,
                target,
                force,
            } => CommandResult::SetNodeState(self.set_node_state(node, target, force)),
            Command::AllocIds { kind, count } => {
                CommandResult::AllocIds(self.alloc_ids(kind, count))
            }
            Command::ReportSplit {
                parent,
                child,
                now_ms,
            } => CommandResult::ReportSplit(self.report_split(parent, child, now_ms)),
            Command::Tick { now_ms } => CommandResult::Tick(self.tick(now_ms)),
            Command::SetConfig { config } => {
                CommandResult::SetConfig(config.validate().map(|()| {
                    self.config = config;
                }))
            }
            Command::AddNode { address, labels } => {
                CommandResult::AddNode(self.add_node(address, labels))
            }
        }
    }

    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    pub fn config(&self) -> &PdConfig {
        &self.config
    }

    pub fn is_bootstrapped(&self) -> bool {
        self.bootstrapped
    }

    pub fn node(&self, id: NodeId) -> Option<&NodeInfo> {
        self.nodes.get(&id)
    }

    pub fn nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.nodes.values()
    }

    pub fn shard(&self, id: ShardId) -> Option<&ShardInfo> {
        self.shards.get(&id)
    }

    /// Shards in id order.
    pub fn shards(&self) -> impl Iterator<Item = &ShardInfo> {
        self.shards.values()
    }

    /// Shards in key order.
    pub fn shards_by_range(&self) -> impl Iterator<Item = &ShardInfo> {
        self.ranges.values().filter_map(|id| self.shards.get(id))
    }

    /// The shard whose range holds `key`.
    pub fn shard_for_key(&self, key: &[u8]) -> Option<&ShardInfo> {
        use std::ops::Bound;
        let bounds: (Bound<&[u8]>, Bound<&[u8]>) = (Bound::Unbounded, Bound::Included(key));
        let (_, id) = self.ranges.range::<[u8], _>(bounds).next_back()?;
        self.shards.get(id).filter(|s| s.desc.contains(key))
    }

    /// Replicas (any role) per node, over all shards.
    pub fn replica_count(&self, node: NodeId) -> usize {
        self.shards
            .values()
            .filter(|s| s.desc.replica_on(node).is_some())
            .count()
    }

    pub fn leader_count(&self, node: NodeId) -> usize {
        self.shards
            .values()
            .filter(|s| s.desc.leader_node() == Some(node))
            .count()
    }

    /// The next id of each kind, for inspection.
    pub fn id_allocator(&self) -> &IdAllocator {
        &self.ids
    }

    pub(crate) fn range_index(&self) -> &BTreeMap<Vec<u8>, ShardId> {
        &self.ranges
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::{Replica, Role, ShardDescriptor};

    #[test]
    fn state_and_commands_round_trip_through_bincode_and_replay_to_the_same_state() {
        let cmds = vec![
            Command::JoinNode {
                address: "a:1".into(),
                labels: [("zone".to_string(), "z1".to_string())].into(),
                now_ms: 1,
            },
            Command::Bootstrap {
                shard: ShardDescriptor::whole_keyspace(
                    1,
                    vec![Replica {
                        id: 1,
                        node: 1,
                        role: Role::Voter,
                    }],
                ),
            },
            Command::AddNode {
                address: "b:1".into(),
                labels: [("zone".to_string(), "z2".to_string())].into(),
            },
            Command::Tick { now_ms: 100_000 },
        ];
        let mut a = PdState::new(9, PdConfig::default());
        let mut b = PdState::new(9, PdConfig::default());
        for c in cmds {
            let bytes = bincode::serialize(&c).unwrap();
            let decoded: Command = bincode::deserialize(&bytes).unwrap();
            assert_eq!(a.apply(c), b.apply(decoded));
        }
        assert_eq!(a, b);
        let snapshot = bincode::serialize(&a).unwrap();
        let restored: PdState = bincode::deserialize(&snapshot).unwrap();
        assert_eq!(restored, a);
        assert_eq!(restored.check_invariants(), vec![]);
    }
}
