//! Node commands: add (ahead of the node's start), join, heartbeat,
//! drain/remove, and the silence tick. A node added ahead is `Joining`
//! until it is first heard from (join, registration or heartbeat); it gets
//! no replicas, counts in no quorum, and is never marked `Down`.

use std::collections::BTreeMap;

use crate::command::{
    AddNodeError, Added, Joined, NodeError, NodeStateChange, NodeTarget, SetNodeStateError,
};
use crate::ids::IdKind;
use crate::node::{check_address, NodeId, NodeInfo, NodeState};
use crate::state::PdState;

impl PdState {
    pub(super) fn join_node(
        &mut self,
        address: String,
        labels: BTreeMap<String, String>,
        now_ms: u64,
    ) -> Joined {
        if let Some(n) = self.node_at_mut(&address) {
            if n.state == NodeState::Joining {
                // Added ahead (`AddNode`): the labels given then stay
                // unless the node brings its own.
                if !labels.is_empty() {
                    n.labels = labels;
                }
                n.heard_from(now_ms);
            } else {
                n.labels = labels;
            }
            return Joined {
                node: n.id,
                fresh: false,
            };
        }
        let id = self.alloc_node_id();
        self.nodes
            .insert(id, NodeInfo::joined(id, address, labels, now_ms));
        Joined {
            node: id,
            fresh: true,
        }
    }

    pub(super) fn add_node(
        &mut self,
        address: String,
        labels: BTreeMap<String, String>,
    ) -> Result<Added, AddNodeError> {
        check_address(&address).map_err(|problem| AddNodeError::BadAddress {
            address: address.clone(),
            problem,
        })?;
        if labels.keys().any(String::is_empty) {
            return Err(AddNodeError::EmptyLabelKey);
        }
        if let Some(n) = self.node_at_mut(&address) {
            if n.state == NodeState::Joining && !labels.is_empty() {
                n.labels = labels;
            }
            return Ok(Added {
                node: n.id,
                fresh: false,
                state: n.state,
            });
        }
        let id = self.alloc_node_id();
        self.nodes.insert(id, NodeInfo::added(id, address, labels));
        Ok(Added {
            node: id,
            fresh: true,
            state: NodeState::Joining,
        })
    }

    /// The node that is not removed with this address.
    fn node_at_mut(&mut self, address: &str) -> Option<&mut NodeInfo> {
        self.nodes
            .values_mut()
            .find(|n| n.address == address && n.state != NodeState::Removed)
    }

    fn alloc_node_id(&mut self) -> NodeId {
        // Node ids are u64 allocated one at a time: overflow is not reachable.
        self.ids
            .alloc(IdKind::Node, 1)
            .map_or(u64::MAX, |r| r.start)
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
            if n.state == NodeState::Joining {
                n.heard_from(now_ms);
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
        n.heard_from(now_ms);
        n.capacity_bytes = capacity_bytes;
        n.used_bytes = used_bytes;
        if n.state == NodeState::Down {
            n.state = n.state_when_alive();
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
        AddNodeError, Added, Command, CommandResult, Joined, NodeError, NodeStateChange,
        NodeTarget, SetNodeStateError,
    };
    use crate::config::PdConfig;
    use crate::ids::{IdKind, IdPool};
    use crate::node::{AddressProblem, NodeState};
    use crate::operator::{OperatorSet, Step};
    use crate::scheduler::{Round, Scheduler};
    use crate::shard::{Replica, Role, ShardDescriptor, ShardStats};
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

    fn add(s: &mut PdState, addr: &str, labels: &[(&str, &str)]) -> CommandResult {
        s.apply(Command::AddNode {
            address: addr.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
    }

    fn added(r: CommandResult) -> Added {
        match r {
            CommandResult::AddNode(Ok(a)) => a,
            other => panic!("{other:?}"),
        }
    }

    fn heartbeat(s: &mut PdState, node: u64, now: u64) -> CommandResult {
        s.apply(Command::NodeHeartbeat {
            node,
            now_ms: now,
            capacity_bytes: 0,
            used_bytes: 0,
        })
    }

    #[test]
    fn an_added_node_is_joining_until_its_first_heartbeat_brings_it_up() {
        let mut s = three_node_cluster();
        let a = added(add(&mut s, "d:1", &[("zone", "z9")]));
        assert_eq!(
            a,
            Added {
                node: 4,
                fresh: true,
                state: NodeState::Joining
            }
        );
        let n = s.node(4).expect("node 4");
        assert_eq!(n.state, NodeState::Joining);
        assert_eq!(n.zone(), Some("z9"));
        assert_eq!(n.last_heartbeat_ms, 0, "never heard from");
        assert!(!n.is_up() && !n.is_alive());

        assert_eq!(
            heartbeat(&mut s, 4, 50),
            CommandResult::NodeHeartbeat(Ok(NodeState::Up))
        );
        let n = s.node(4).expect("node 4");
        assert_eq!((n.state, n.last_heartbeat_ms), (NodeState::Up, 50));
        assert_eq!(n.zone(), Some("z9"), "the labels stay");
    }

    #[test]
    fn adding_an_address_again_gives_the_same_id_and_its_join_too() {
        let mut s = PdState::new(1, PdConfig::default());
        assert_eq!(added(add(&mut s, "a:1", &[("zone", "z1")])).node, 1);
        // Again while joining: same id, the new labels.
        let again = added(add(&mut s, "a:1", &[("zone", "z2")]));
        assert_eq!(
            again,
            Added {
                node: 1,
                fresh: false,
                state: NodeState::Joining
            }
        );
        assert_eq!(s.node(1).and_then(|n| n.zone()), Some("z2"));
        // The node starts with `--join` and no labels of its own: it gets
        // id 1, is up, and keeps the labels it was added with.
        assert_eq!(
            join(&mut s, "a:1", 70),
            Joined {
                node: 1,
                fresh: false
            }
        );
        let n = s.node(1).expect("node 1");
        assert_eq!((n.state, n.last_heartbeat_ms), (NodeState::Up, 70));
        assert_eq!(n.zone(), Some("z2"));
        // Adding a running node changes nothing.
        let up = added(add(&mut s, "a:1", &[("zone", "z3")]));
        assert_eq!(
            up,
            Added {
                node: 1,
                fresh: false,
                state: NodeState::Up
            }
        );
        assert_eq!(s.node(1).and_then(|n| n.zone()), Some("z2"));
        assert_eq!(join(&mut s, "b:1", 0).node, 2, "ids are shared with joins");
    }

    #[test]
    fn a_registration_under_the_added_id_brings_the_node_up() {
        let mut s = PdState::new(1, PdConfig::default());
        let a = added(add(&mut s, "a:1", &[("zone", "z1")]));
        let r = s.apply(Command::RegisterNode {
            node: a.node,
            address: "a:1".into(),
            labels: Default::default(),
            now_ms: 30,
        });
        assert!(matches!(r, CommandResult::RegisterNode(Ok(_))), "{r:?}");
        let n = s.node(a.node).expect("the node");
        assert_eq!((n.state, n.last_heartbeat_ms), (NodeState::Up, 30));
        assert_eq!(n.zone(), Some("z1"));
    }

    #[test]
    fn a_joining_node_is_never_marked_down() {
        let mut s = PdState::new(
            1,
            PdConfig {
                down_after_ms: 100,
                ..PdConfig::default()
            },
        );
        join(&mut s, "a:1", 0);
        added(add(&mut s, "b:1", &[]));
        assert_eq!(
            s.apply(Command::Tick { now_ms: 1_000_000 }),
            CommandResult::Tick(vec![1])
        );
        assert_eq!(s.node(2).map(|n| n.state), Some(NodeState::Joining));
        // Once up, silence takes it down as any other node.
        heartbeat(&mut s, 2, 1_000_000);
        assert_eq!(
            s.apply(Command::Tick { now_ms: 1_000_100 }),
            CommandResult::Tick(vec![2])
        );
    }

    #[test]
    fn a_joining_node_is_removed_without_force_and_its_address_may_be_added_again() {
        let mut s = three_node_cluster();
        added(add(&mut s, "d:1", &[]));
        assert_eq!(
            set(&mut s, 4, NodeTarget::Removed, false),
            CommandResult::SetNodeState(Ok(NodeStateChange {
                from: NodeState::Joining,
                to: NodeState::Removed
            }))
        );
        assert_eq!(
            heartbeat(&mut s, 4, 10),
            CommandResult::NodeHeartbeat(Err(NodeError::Removed(4)))
        );
        assert_eq!(added(add(&mut s, "d:1", &[])).node, 5);
    }

    #[test]
    fn a_joining_node_drained_before_it_starts_comes_up_draining() {
        let mut s = PdState::new(1, PdConfig::default());
        added(add(&mut s, "a:1", &[]));
        assert_eq!(
            set(&mut s, 1, NodeTarget::Draining, false),
            CommandResult::SetNodeState(Ok(NodeStateChange {
                from: NodeState::Joining,
                to: NodeState::Joining
            }))
        );
        assert_eq!(
            heartbeat(&mut s, 1, 10),
            CommandResult::NodeHeartbeat(Ok(NodeState::Draining))
        );
    }

    #[test]
    fn bad_addresses_and_empty_label_keys_are_refused_without_using_an_id() {
        let mut s = PdState::new(1, PdConfig::default());
        assert_eq!(
            add(&mut s, "10.0.0.4", &[]),
            CommandResult::AddNode(Err(AddNodeError::BadAddress {
                address: "10.0.0.4".into(),
                problem: AddressProblem::NoPort
            }))
        );
        assert_eq!(
            add(&mut s, "0.0.0.0:7101", &[]),
            CommandResult::AddNode(Err(AddNodeError::BadAddress {
                address: "0.0.0.0:7101".into(),
                problem: AddressProblem::Wildcard
            }))
        );
        assert_eq!(
            add(&mut s, "a:1", &[("", "x")]),
            CommandResult::AddNode(Err(AddNodeError::EmptyLabelKey))
        );
        assert_eq!(s.nodes().count(), 0);
        assert_eq!(join(&mut s, "a:1", 0).node, 1);
    }

    /// Three nodes, shard 1 on them with a leader on node 1, and node 4
    /// added (joining). Node 2 drains: its replica has nowhere to go until
    /// node 4 starts.
    #[test]
    fn the_scheduler_places_no_replica_on_a_joining_node() {
        let mut s = three_node_cluster();
        let mut report = s.shard(1).expect("shard 1").desc.clone();
        report.leader = Some(1);
        report.term = 1;
        s.apply(Command::ShardHeartbeat {
            report,
            stats: ShardStats::default(),
            now_ms: 10,
        });
        added(add(&mut s, "d:1", &[]));
        set(&mut s, 2, NodeTarget::Draining, false);
        let mut ids = IdPool::default();
        if let CommandResult::AllocIds(Ok(range)) = s.apply(Command::AllocIds {
            kind: IdKind::Replica,
            count: 100,
        }) {
            ids.refill(IdKind::Replica, range);
        }
        let mut ops = OperatorSet::new();
        let round = Scheduler::default().run(&s, &mut ops, &mut ids, 20);
        assert_eq!(round, Round::default(), "nothing may go to node 4 yet");

        heartbeat(&mut s, 4, 30);
        Scheduler::default().run(&s, &mut ops, &mut ids, 40);
        let op = ops.get(1).expect("an operator for shard 1");
        assert!(
            matches!(op.steps(), [Step::AddLearner { node: 4, .. }, ..]),
            "{:?}",
            op.steps()
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
