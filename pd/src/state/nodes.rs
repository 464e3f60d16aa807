//! Node commands: join, heartbeat, drain/remove, and the silence tick.

use std::collections::BTreeMap;

use crate::command::{Joined, NodeError, NodeStateChange, NodeTarget, SetNodeStateError};
use crate::ids::IdKind;
use crate::node::{NodeId, NodeInfo, NodeState};
use crate::state::PdState;

impl PdState {
    pub(super) fn join_node(
        &mut self,
        address: String,
        labels: BTreeMap<String, String>,
        now_ms: u64,
    ) -> Joined {
        let existing = self
            .nodes
            .values_mut()
            .find(|n| n.address == address && n.state != NodeState::Removed);
        if let Some(n) = existing {
            n.labels = labels;
            return Joined {
                node: n.id,
                fresh: false,
            };
        }
        // Node ids are u64 allocated one at a time: overflow is not reachable.
        let id = self
            .ids
            .alloc(IdKind::Node, 1)
            .map_or(u64::MAX, |r| r.start);
        self.nodes
            .insert(id, NodeInfo::joined(id, address, labels, now_ms));
        Joined {
            node: id,
            fresh: true,
        }
    }

    pub(super) fn register_node(
        &mut self,
        id: NodeId,
        address: String,
        labels: BTreeMap<String, String>,
        now_ms: u64,
    ) -> Result<Joined, NodeError> {
        self.ids.reserve_through(IdKind::Node, id);
        if let Some(n) = self.nodes.get_mut(&id) {
            if n.state == NodeState::Removed {
                return Err(NodeError::Removed(id));
            }
            n.address = address;
            if !labels.is_empty() {
                n.labels = labels;
            }
            return Ok(Joined {
                node: id,
                fresh: false,
            });
        }
        self.nodes
            .insert(id, NodeInfo::joined(id, address, labels, now_ms));
        Ok(Joined {
            node: id,
            fresh: true,
        })
    }

    pub(super) fn node_heartbeat(
        &mut self,
        id: NodeId,
        now_ms: u64,
        capacity_bytes: u64,
        used_bytes: u64,
    ) -> Result<NodeState, NodeError> {
        let n = self.nodes.get_mut(&id).ok_or(NodeError::Unknown(id))?;
        if n.state == NodeState::Removed {
            return Err(NodeError::Removed(id));
        }
        n.last_heartbeat_ms = n.last_heartbeat_ms.max(now_ms);
        n.capacity_bytes = capacity_bytes;
        n.used_bytes = used_bytes;
        if n.state == NodeState::Down {
            n.state = if n.draining {
                NodeState::Draining
            } else {
                NodeState::Up
            };
        }
        Ok(n.state)
    }

    pub(super) fn set_node_state(
        &mut self,
        id: NodeId,
        target: NodeTarget,
        force: bool,
    ) -> Result<NodeStateChange, SetNodeStateError> {
        let n = self.nodes.get(&id).ok_or(NodeError::Unknown(id))?;
        let from = n.state;
        if from == NodeState::Removed {
            return Err(NodeError::Removed(id).into());
        }
        if target == NodeTarget::Removed {
            self.check_removable(id, force)?;
        }
        let n = self.nodes.get_mut(&id).ok_or(NodeError::Unknown(id))?;
        match target {
            NodeTarget::Up => {
                n.draining = false;
                if from == NodeState::Draining {
                    n.state = NodeState::Up;
                }
            }
            NodeTarget::Draining => {
                n.draining = true;
                if from == NodeState::Up {
                    n.state = NodeState::Draining;
                }
            }
            NodeTarget::Removed => n.state = NodeState::Removed,
        }
        Ok(NodeStateChange { from, to: n.state })
    }

    /// Refuses while the node holds replicas (unless `force`), and always
    /// when taking it away would leave a shard with a live quorum without one.
    fn check_removable(&self, id: NodeId, force: bool) -> Result<(), SetNodeStateError> {
        let held = self.replica_count(id);
        if held > 0 && !force {
            return Err(SetNodeStateError::HoldsReplicas {
                node: id,
                replicas: held,
            });
        }
        let alive = |node: NodeId| self.nodes.get(&node).is_some_and(NodeInfo::is_alive);
        if !alive(id) {
            return Ok(()); // a dead node adds nothing to any live quorum
        }
        for s in self.shards.values() {
            if !s.desc.voters().any(|r| r.node == id) {
                continue;
            }
            let voters = s.desc.voters().count();
            let quorum = voters / 2 + 1;
            let live = s.desc.voters().filter(|r| alive(r.node)).count();
            if live >= quorum && live - 1 < quorum {
                return Err(SetNodeStateError::WouldBreakQuorum {
                    node: id,
                    shard: s.desc.id,
                });
            }
        }
        Ok(())
    }

    pub(super) fn tick(&mut self, now_ms: u64) -> Vec<NodeId> {
        let after = self.config.down_after_ms;
        let mut down = Vec::new();
        for n in self.nodes.values_mut() {
            let silent = now_ms.saturating_sub(n.last_heartbeat_ms) >= after;
            if n.is_alive() && silent {
                n.state = NodeState::Down;
                down.push(n.id);
            }
        }
        down
    }
}

#[cfg(test)]
mod tests {
    use crate::command::{
        Command, CommandResult, Joined, NodeError, NodeStateChange, NodeTarget, SetNodeStateError,
    };
    use crate::config::PdConfig;
    use crate::node::NodeState;
    use crate::shard::{Replica, Role, ShardDescriptor};
    use crate::state::PdState;

    fn join(s: &mut PdState, addr: &str, now: u64) -> Joined {
        match s.apply(Command::JoinNode {
            address: addr.into(),
            labels: Default::default(),
            now_ms: now,
        }) {
            CommandResult::JoinNode(j) => j,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_registered_id_is_reserved_and_registering_again_updates_the_address() {
        let mut s = PdState::new(7, PdConfig::default());
        let reg = |s: &mut PdState, id, addr: &str| {
            s.apply(Command::RegisterNode {
                node: id,
                address: addr.into(),
                labels: Default::default(),
                now_ms: 0,
            })
        };
        let fresh = Joined {
            node: 5,
            fresh: true,
        };
        assert_eq!(
            reg(&mut s, 5, "a:1"),
            CommandResult::RegisterNode(Ok(fresh))
        );
        assert_eq!(
            reg(&mut s, 5, "a:2"),
            CommandResult::RegisterNode(Ok(Joined {
                fresh: false,
                ..fresh
            }))
        );
        assert_eq!(s.node(5).map(|n| n.address.as_str()), Some("a:2"));
        assert_eq!(
            join(&mut s, "b:1", 0).node,
            6,
            "the allocator skips registered ids"
        );
    }

    fn set(s: &mut PdState, node: u64, target: NodeTarget, force: bool) -> CommandResult {
        s.apply(Command::SetNodeState {
            node,
            target,
            force,
        })
    }

    fn three_node_cluster() -> PdState {
        let mut s = PdState::new(7, PdConfig::default());
        for a in ["a:1", "b:1", "c:1"] {
            join(&mut s, a, 0);
        }
        let replicas = (1..=3)
            .map(|i| Replica {
                id: i,
                node: i,
                role: Role::Voter,
            })
            .collect();
        let r = s.apply(Command::Bootstrap {
            shard: ShardDescriptor::whole_keyspace(1, replicas),
        });
        assert_eq!(r, CommandResult::Bootstrap(Ok(())));
        s
    }

    #[test]
    fn join_allocates_once_per_address_and_again_after_removal() {
        let mut s = PdState::new(1, PdConfig::default());
        let a = join(&mut s, "a:1", 0);
        assert_eq!(
            a,
            Joined {
                node: 1,
                fresh: true
            }
        );
        assert_eq!(
            join(&mut s, "a:1", 5),
            Joined {
                node: 1,
                fresh: false
            }
        );
        assert_eq!(join(&mut s, "b:1", 5).node, 2);
        assert!(matches!(
            set(&mut s, 1, NodeTarget::Removed, false),
            CommandResult::SetNodeState(Ok(_))
        ));
        assert_eq!(
            join(&mut s, "a:1", 9),
            Joined {
                node: 3,
                fresh: true
            }
        );
    }

    #[test]
    fn tick_marks_silent_nodes_down_and_a_heartbeat_restores_the_state() {
        let mut s = PdState::new(
            1,
            PdConfig {
                down_after_ms: 100,
                ..PdConfig::default()
            },
        );
        join(&mut s, "a:1", 0);
        join(&mut s, "b:1", 0);
        set(&mut s, 2, NodeTarget::Draining, false);
        s.apply(Command::NodeHeartbeat {
            node: 1,
            now_ms: 60,
            capacity_bytes: 10,
            used_bytes: 1,
        });
        assert_eq!(
            s.apply(Command::Tick { now_ms: 120 }),
            CommandResult::Tick(vec![2])
        );
        assert_eq!(
            s.apply(Command::Tick { now_ms: 200 }),
            CommandResult::Tick(vec![1])
        );
        let r = s.apply(Command::NodeHeartbeat {
            node: 2,
            now_ms: 210,
            capacity_bytes: 10,
            used_bytes: 1,
        });
        assert_eq!(r, CommandResult::NodeHeartbeat(Ok(NodeState::Draining)));
        let r = s.apply(Command::NodeHeartbeat {
            node: 9,
            now_ms: 210,
            capacity_bytes: 0,
            used_bytes: 0,
        });
        assert_eq!(r, CommandResult::NodeHeartbeat(Err(NodeError::Unknown(9))));
    }

    #[test]
    fn remove_refuses_a_node_with_replicas_unless_forced_and_never_breaks_a_quorum() {
        let mut s = three_node_cluster();
        let r = set(&mut s, 1, NodeTarget::Removed, false);
        assert_eq!(
            r,
            CommandResult::SetNodeState(Err(SetNodeStateError::HoldsReplicas {
                node: 1,
                replicas: 1
            }))
        );
        // With node 3 down, nodes 1 and 2 are exactly a quorum of 3.
        s.apply(Command::Tick { now_ms: 1_000_000 });
        s.apply(Command::NodeHeartbeat {
            node: 1,
            now_ms: 1_000_000,
            capacity_bytes: 0,
            used_bytes: 0,
        });
        s.apply(Command::NodeHeartbeat {
            node: 2,
            now_ms: 1_000_000,
            capacity_bytes: 0,
            used_bytes: 0,
        });
        let r = set(&mut s, 1, NodeTarget::Removed, true);
        assert_eq!(
            r,
            CommandResult::SetNodeState(Err(SetNodeStateError::WouldBreakQuorum {
                node: 1,
                shard: 1
            }))
        );
        // The down node may go: it is no part of the live quorum.
        let r = set(&mut s, 3, NodeTarget::Removed, true);
        assert_eq!(
            r,
            CommandResult::SetNodeState(Ok(NodeStateChange {
                from: NodeState::Down,
                to: NodeState::Removed
            }))
        );
        let r = set(&mut s, 3, NodeTarget::Up, false);
        assert_eq!(
            r,
            CommandResult::SetNodeState(Err(NodeError::Removed(3).into()))
        );
    }

    #[test]
    fn drain_and_cancel_drain() {
        let mut s = three_node_cluster();
        let r = set(&mut s, 2, NodeTarget::Draining, false);
        assert_eq!(
            r,
            CommandResult::SetNodeState(Ok(NodeStateChange {
                from: NodeState::Up,
                to: NodeState::Draining
            }))
        );
        let r = set(&mut s, 2, NodeTarget::Up, false);
        assert_eq!(
            r,
            CommandResult::SetNodeState(Ok(NodeStateChange {
                from: NodeState::Draining,
                to: NodeState::Up
            }))
        );
    }
}
