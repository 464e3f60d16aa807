//! The placement driver's core: deterministic, no I/O, no clock. Time comes
//! in as `now_ms` arguments, so the same code runs in the madsim simulation
//! and in production. Decision record: `docs/decisions/0016-placement-driver-core.md`.
//!
//! # Map
//! - **Replicated state** (the PD Raft group's state machine):
//!   - [`state::PdState`]: nodes, shard descriptors, id allocator, cluster
//!     id, [`config::PdConfig`]. Mutated only by
//!     [`PdState::apply`](state::PdState::apply)`(`[`command::Command`]`)`,
//!     which returns a typed [`command::CommandResult`]. Node commands live
//!     in `state/nodes.rs`, shard commands in `state/shards.rs`.
//!   - [`node`], [`shard`]: the records (`NodeInfo`, `ShardDescriptor` with
//!     never-reused replica ids and voter / learner / joint roles).
//!   - [`ids`]: the replicated allocator, and the PD leader's pool of
//!     committed ids that operators draw from.
//!   - [`invariants`]: `check_invariants()` → typed [`invariants::Violation`]s
//!     (ranges tile the key space, unique replica ids, ...).
//! - **Leader-local scheduling** (not replicated; rebuilt after a PD leader change):
//!   - [`operator`]: an [`operator::Operator`] is a list of [`operator::Step`]s
//!     for one shard, confirmed by later reports, timed out, cancelled when
//!     the shard moves in a way its steps do not explain;
//!     [`operator::OperatorSet`] keeps one per shard and the per-node
//!     snapshot limit; [`operator::build`] makes them.
//!   - [`checker`]: per-shard repair (replica count, dead / draining nodes,
//!     zones, joint leftovers) and split.
//!   - [`scheduler`]: [`scheduler::Scheduler::run`] runs repair, then split,
//!     then replica and leader balance, and admits the operators.
//!
//! # Example: a drain
//! ```
//! use atoll_pd::command::{Command, CommandResult, NodeTarget};
//! use atoll_pd::config::PdConfig;
//! use atoll_pd::ids::{IdKind, IdPool};
//! use atoll_pd::operator::{OperatorSet, Step};
//! use atoll_pd::scheduler::Scheduler;
//! use atoll_pd::shard::{Replica, Role, ShardDescriptor, ShardStats};
//! use atoll_pd::state::PdState;
//!
//! let mut pd = PdState::new(42, PdConfig::default());
//! for addr in ["10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000", "10.0.0.4:7000"] {
//!     let r = pd.apply(Command::JoinNode { address: addr.into(), labels: Default::default(), now_ms: 0 });
//!     assert!(matches!(r, CommandResult::JoinNode(_)));
//! }
//! let replicas = (1..=3).map(|i| Replica { id: i, node: i, role: Role::Voter }).collect();
//! pd.apply(Command::Bootstrap { shard: ShardDescriptor::whole_keyspace(1, replicas) });
//!
//! // Shard 1's leader (replica 1 on node 1) reports in.
//! let mut report = pd.shard(1).unwrap().desc.clone();
//! report.leader = Some(1);
//! report.term = 1;
//! pd.apply(Command::ShardHeartbeat { report, stats: ShardStats::default(), now_ms: 10 });
//!
//! // An operator drains node 2.
//! let r = pd.apply(Command::SetNodeState { node: 2, target: NodeTarget::Draining, force: false });
//! assert!(matches!(r, CommandResult::SetNodeState(Ok(_))));
//!
//! // The PD leader keeps committed ids at hand and runs a round.
//! let mut ids = IdPool::default();
//! if let CommandResult::AllocIds(Ok(range)) = pd.apply(Command::AllocIds { kind: IdKind::Replica, count: 100 }) {
//!     ids.refill(IdKind::Replica, range);
//! }
//! let mut ops = OperatorSet::new();
//! Scheduler::default().run(&pd, &mut ops, &mut ids, 20);
//!
//! // Replica 2 moves to node 4: add a learner there, promote it, remove replica 2.
//! let op = ops.get(1).unwrap();
//! assert!(matches!(op.steps(), [
//!     Step::AddLearner { node: 4, .. },
//!     Step::PromoteLearner { node: 4, .. },
//!     Step::RemoveReplica { node: 2, replica: 2 },
//! ]));
//! // The host sends `op.current_step()` to shard 1's leader, and feeds each
//! // accepted report of shard 1 to `ops.observe(..)` to confirm the steps.
//! assert!(matches!(op.current_step(), Some(Step::AddLearner { node: 4, .. })));
//! ```

pub mod checker;
pub mod command;
pub mod config;
pub mod ids;
pub mod invariants;
pub mod node;
pub mod operator;
pub mod scheduler;
pub mod shard;
pub mod state;
