//! A simulated cluster for the PD core: "true" shards that execute the
//! steps the PD hands out (with some probability per round), leaders that
//! die and are re-elected, joint changes a dead leader leaves behind,
//! splits reported in order, stale reports, and PD leader changes that
//! drop the leader-local operators.

#![allow(dead_code)]

pub mod truth;

use std::collections::{BTreeMap, BTreeSet};

use atoll_pd::command::{Command, CommandResult, NodeTarget};
use atoll_pd::config::PdConfig;
use atoll_pd::ids::{IdKind, IdPool};
use atoll_pd::node::{NodeId, NodeState};
use atoll_pd::operator::OperatorSet;
use atoll_pd::scheduler::{Round, Scheduler};
use atoll_pd::shard::{Replica, Role, ShardDescriptor, ShardId};
use atoll_pd::state::PdState;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub use truth::TrueShard;

pub const ZONES: [&str; 3] = ["z1", "z2", "z3"];

pub struct Sim {
    pub rng: StdRng,
    pub now: u64,
    pub pd: PdState,
    pub ops: OperatorSet,
    pub ids: IdPool,
    pub scheduler: Scheduler,
    /// Node → alive.
    pub alive: BTreeMap<NodeId, bool>,
    pub shards: BTreeMap<ShardId, TrueShard>,
    pub keys: BTreeSet<Vec<u8>>,
    /// Chance a step handed out in a round is carried out.
    pub p_execute: f64,
    pub zoned: bool,
    pub removed: BTreeSet<NodeId>,
    pub log_index: u64,
    /// Old reports, resent now and then.
    pub old_reports: Vec<ShardDescriptor>,
    /// Leaders step down at random and stale reports are resent.
    pub chaos: bool,
    /// A deposed PD leader's operators, whose steps still reach leaders for
    /// a few rounds, and the rounds left.
    pub zombie: Option<(OperatorSet, u32)>,
    /// What happened, by name, for reports on coverage.
    pub counts: BTreeMap<String, u64>,
}

impl Sim {
    pub fn new(seed: u64, config: PdConfig, zoned: bool) -> Self {
        let rf = config.replication_factor;
        let mut sim = Sim {
            rng: StdRng::seed_from_u64(seed),
            now: 1_000,
            pd: PdState::new(seed, config),
            ops: OperatorSet::new(),
            ids: IdPool::default(),
            scheduler: Scheduler::default(),
            alive: BTreeMap::new(),
            shards: BTreeMap::new(),
            keys: BTreeSet::new(),
            p_execute: 0.6,
            zoned,
            removed: BTreeSet::new(),
            log_index: 1,
            old_reports: Vec::new(),
            chaos: true,
            counts: BTreeMap::new(),
            zombie: None,
        };
        for _ in 0..rf {
            sim.join();
        }
        let replicas: Vec<Replica> = (1..=rf as u64)
            .map(|i| Replica {
                id: i,
                node: i,
                role: Role::Voter,
            })
            .collect();
        let mut desc = ShardDescriptor::whole_keyspace(1, replicas);
        desc.leader = Some(1);
        desc.term = 1;
        desc.epoch.conf_ver = 1;
        let r = sim.pd.apply(Command::Bootstrap {
            shard: desc.clone(),
        });
        assert_eq!(r, CommandResult::Bootstrap(Ok(())));
        sim.shards.insert(1, TrueShard::new(desc));
        sim
    }

    pub fn rf(&self) -> usize {
        self.pd.config().replication_factor
    }

    pub fn join(&mut self) -> NodeId {
        let n = self.alive.len();
        let mut labels = BTreeMap::new();
        if self.zoned {
            labels.insert("zone".to_string(), ZONES[n % ZONES.len()].to_string());
        }
        let r = self.pd.apply(Command::JoinNode {
            address: format!("n{n}:7000"),
            labels,
            now_ms: self.now,
        });
        let CommandResult::JoinNode(j) = r else {
            panic!("{r:?}")
        };
        assert!(j.fresh);
        self.alive.insert(j.node, true);
        j.node
    }

    pub fn node_state(&self, n: NodeId) -> Option<NodeState> {
        self.pd.node(n).map(|i| i.state)
    }

    /// Nodes alive and neither draining nor removed.
    pub fn serving_nodes(&self) -> Vec<NodeId> {
        self.alive
            .iter()
            .filter(|(n, a)| **a && self.node_state(**n) == Some(NodeState::Up))
            .map(|(n, _)| *n)
            .collect()
    }

    /// Kills `n` only if every shard keeps a live quorum and enough nodes remain.
    pub fn try_kill(&mut self, n: NodeId) -> bool {
        if !self.alive.get(&n).copied().unwrap_or(false) {
            return false;
        }
        let serving_after = self.serving_nodes().iter().filter(|m| **m != n).count();
        if serving_after < self.rf() + 1 {
            return false;
        }
        let mut alive = self.alive.clone();
        alive.insert(n, false);
        if !self.shards.values().all(|s| s.has_quorum(&alive)) {
            return false;
        }
        self.alive = alive;
        self.count("killed".into());
        true
    }

    pub fn try_drain(&mut self, n: NodeId) -> bool {
        let serving = self.serving_nodes();
        if !serving.contains(&n) || serving.len() < self.rf() + 1 {
            return false;
        }
        let r = self.pd.apply(Command::SetNodeState {
            node: n,
            target: NodeTarget::Draining,
            force: false,
        });
        matches!(r, CommandResult::SetNodeState(Ok(_)))
    }

    /// Removes drained or dead nodes the PD sees empty. A drained node must
    /// be accepted; no replica may ever appear on it afterwards.
    pub fn remove_empty_nodes(&mut self) {
        let candidates: Vec<NodeId> = self
            .pd
            .nodes()
            .filter(|n| n.state == NodeState::Draining || n.state == NodeState::Down)
            .filter(|n| self.pd.replica_count(n.id) == 0)
            .map(|n| n.id)
            .collect();
        for n in candidates {
            let held_in_truth = self.shards.values().any(|s| s.desc.replica_on(n).is_some());
            if held_in_truth {
                continue; // the PD has not heard of a replica yet (its leader is down)
            }
            let before = self.node_state(n);
            let r = self.pd.apply(Command::SetNodeState {
                node: n,
                target: NodeTarget::Removed,
                force: false,
            });
            assert!(
                matches!(r, CommandResult::SetNodeState(Ok(_))),
                "removing empty node {n}: {r:?}"
            );
            self.removed.insert(n);
            self.count(format!("removed after {before:?}"));
            self.alive.insert(n, false);
        }
    }

    pub fn write(&mut self, count: usize) {
        for _ in 0..count {
            let k: [u8; 6] = self.rng.gen();
            self.keys.insert(k.to_vec());
        }
    }

    fn refill_ids(&mut self) {
        for kind in [IdKind::Shard, IdKind::Replica] {
            if self.ids.available(kind) < 64 {
                let r = self.pd.apply(Command::AllocIds { kind, count: 256 });
                let CommandResult::AllocIds(Ok(range)) = r else {
                    panic!("{r:?}")
                };
                self.ids.refill(kind, range);
            }
        }
    }

    /// A new PD leader: leader-local operators and id pool are gone.
    pub fn pd_leader_change(&mut self) {
        let old = std::mem::take(&mut self.ops);
        self.zombie = Some((old, 5));
        self.ids = IdPool::default();
    }

    /// One round: node heartbeats, tick, shards act and report, schedule.
    pub fn round(&mut self) -> Round {
        self.now += 1_000;
        let live: Vec<NodeId> = self
            .alive
            .iter()
            .filter(|(_, a)| **a)
            .map(|(n, _)| *n)
            .collect();
        for n in live {
            self.pd.apply(Command::NodeHeartbeat {
                node: n,
                now_ms: self.now,
                capacity_bytes: 1 << 30,
                used_bytes: 0,
            });
        }
        self.pd.apply(Command::Tick { now_ms: self.now });
        for o in self.ops.tick(&self.pd, self.now) {
            self.count(format!("ended {:?}", o.status));
        }
        let ids: Vec<ShardId> = self.shards.keys().copied().collect();
        for id in ids {
            self.act_zombie(id);
            self.act(id);
        }
        if let Some((_, left)) = &mut self.zombie {
            *left = left.saturating_sub(1);
            if *left == 0 {
                self.zombie = None;
            }
        }
        self.report_splits();
        let ids: Vec<ShardId> = self.shards.keys().copied().collect();
        for id in ids {
            self.report(id);
        }
        self.refill_ids();
        let round = self
            .scheduler
            .run(&self.pd, &mut self.ops, &mut self.ids, self.now);
        for (id, kind) in &round.created {
            let steps = self
                .ops
                .get(*id)
                .map(|o| o.steps().to_vec())
                .unwrap_or_default();
            let name: Vec<String> = steps
                .iter()
                .map(|s| {
                    format!("{s:?}")
                        .split([' ', '{', '('])
                        .next()
                        .unwrap_or("")
                        .to_string()
                })
                .collect();
            let name = name.join(",");
            self.count(format!("created {kind:?} {name}"));
        }
        round
    }

    pub fn count(&mut self, what: String) {
        *self.counts.entry(what).or_default() += 1;
    }

    /// The shard's leader carries out (maybe) the step the PD asks for.
    fn act(&mut self, id: ShardId) {
        let p = self.p_execute;
        let step = self
            .ops
            .get(id)
            .and_then(|op| Some((op.current_step()?.clone(), op.epoch())));
        let alive = self.alive.clone();
        let Some(shard) = self.shards.get_mut(&id) else {
            return;
        };
        shard.elect_if_leader_dead(&alive, &mut self.rng);
        if !shard.leader_alive(&alive) {
            return;
        }
        let step_down = if self.chaos { 0.03 } else { 0.0 };
        shard.progress(&alive, p, step_down, &mut self.rng, &mut self.log_index);
        let Some((step, epoch)) = step else { return };
        if !self.rng.gen_bool(p) {
            return;
        }
        let Some(shard) = self.shards.get_mut(&id) else {
            return;
        };
        let child = shard.execute(&step, epoch, &alive, &self.keys, &mut self.log_index);
        if let Some(child) = child {
            self.shards.insert(child.desc.id, child);
        }
    }

    /// A step of the deposed PD leader, still in flight.
    fn act_zombie(&mut self, id: ShardId) {
        let Some((old, _)) = &self.zombie else { return };
        let Some((step, epoch)) = old
            .get(id)
            .and_then(|op| Some((op.current_step()?.clone(), op.epoch())))
        else {
            return;
        };
        let alive = self.alive.clone();
        if !self.rng.gen_bool(0.5) {
            return;
        }
        if !self.shards.get(&id).is_some_and(|s| s.leader_alive(&alive)) {
            return;
        }
        self.count("zombie step".into());
        let Some(shard) = self.shards.get_mut(&id) else {
            return;
        };
        if let Some(child) = shard.execute(&step, epoch, &alive, &self.keys, &mut self.log_index) {
            self.shards.insert(child.desc.id, child);
        }
    }

    /// Split reports, oldest first per shard, retried until the PD takes them.
    fn report_splits(&mut self) {
        loop {
            let mut progress = false;
            let ids: Vec<ShardId> = self.shards.keys().copied().collect();
            for id in ids {
                let alive = self.alive.clone();
                let Some(s) = self.shards.get(&id) else {
                    continue;
                };
                if !s.leader_alive(&alive) {
                    continue;
                }
                let Some((parent, child)) = s.unreported_splits.first().cloned() else {
                    continue;
                };
                let r = self.pd.apply(Command::ReportSplit {
                    parent,
                    child: child.clone(),
                    now_ms: self.now,
                });
                if let CommandResult::ReportSplit(Ok(_)) = r {
                    if let Some(s) = self.shards.get_mut(&id) {
                        s.unreported_splits.remove(0);
                    }
                    self.count("split reported".into());
                    for sid in [id, child.id] {
                        if let Some(info) = self.pd.shard(sid) {
                            if let Some(o) = self.ops.observe(info, self.now) {
                                self.count(format!("ended {:?}", o.status));
                            }
                        }
                    }
                    progress = true;
                }
            }
            if !progress {
                break;
            }
        }
    }

    fn report(&mut self, id: ShardId) {
        let alive = self.alive.clone();
        let Some(s) = self.shards.get(&id) else {
            return;
        };
        if !s.leader_alive(&alive) {
            return;
        }
        let (report, stats) = s.report(&self.keys);
        if self.chaos && self.rng.gen_bool(0.05) && !self.old_reports.is_empty() {
            let i = self.rng.gen_range(0..self.old_reports.len());
            let old = self.old_reports[i].clone();
            let r = self.pd.apply(Command::ShardHeartbeat {
                report: old,
                stats: stats.clone(),
                now_ms: self.now,
            });
            if let CommandResult::ShardHeartbeat(atoll_pd::command::HeartbeatOutcome::Ignored(
                why,
            )) = r
            {
                let why = format!("{why:?}");
                self.count(format!(
                    "stale resent, ignored {}",
                    why.split([' ', '(']).next().unwrap_or("")
                ));
            }
        }
        if self.rng.gen_bool(0.1) {
            self.old_reports.push(report.clone());
            if self.old_reports.len() > 50 {
                self.old_reports.remove(0);
            }
        }
        let r = self.pd.apply(Command::ShardHeartbeat {
            report,
            stats,
            now_ms: self.now,
        });
        if let CommandResult::ShardHeartbeat(atoll_pd::command::HeartbeatOutcome::Ignored(why)) = r
        {
            let why = format!("{why:?}");
            self.count(format!(
                "ignored {}",
                why.split([' ', '(']).next().unwrap_or("")
            ));
        }
        if let Some(info) = self.pd.shard(id) {
            if let Some(o) = self.ops.observe(info, self.now) {
                self.count(format!("ended {:?}", o.status));
            }
        }
    }

    /// Invariants that hold after every round.
    pub fn check_always(&self) {
        let v = self.pd.check_invariants();
        assert!(v.is_empty(), "PD invariants: {v:?}");
        let mut ranges: Vec<_> = self
            .shards
            .values()
            .map(|s| (s.desc.start.clone(), s.desc.end.clone()))
            .collect();
        ranges.sort();
        let mut expect = Some(Vec::new());
        for (start, end) in ranges {
            assert_eq!(
                Some(&start),
                expect.as_ref(),
                "true ranges do not tile the key space"
            );
            expect = end;
        }
        assert_eq!(
            expect, None,
            "true ranges do not reach the end of the key space"
        );
        for n in &self.removed {
            for s in self.shards.values() {
                assert!(
                    s.desc.replica_on(*n).is_none(),
                    "shard {} has a replica on removed node {n}",
                    s.desc.id
                );
            }
            assert_eq!(
                self.pd.replica_count(*n),
                0,
                "PD places a replica on removed node {n}"
            );
        }
    }

    /// Every shard at the replication factor on distinct Up nodes, settled.
    pub fn settled_problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let rf = self.rf();
        for s in self.shards.values() {
            let d = &s.desc;
            let voters: Vec<_> = d
                .replicas
                .iter()
                .filter(|r| r.role == Role::Voter)
                .collect();
            let nodes: BTreeSet<_> = voters.iter().map(|r| r.node).collect();
            let up = voters
                .iter()
                .all(|r| self.node_state(r.node) == Some(NodeState::Up) && self.alive[&r.node]);
            if voters.len() != rf || nodes.len() != rf || d.replicas.len() != rf || !up {
                p.push(format!(
                    "shard {} not at rf on Up nodes: {:?}",
                    d.id, d.replicas
                ));
            }
            if !s.unreported_splits.is_empty() {
                p.push(format!("shard {} has unreported splits", d.id));
            }
            if self.pd.shard(d.id).map(|i| &i.desc) != Some(d) {
                p.push(format!("shard {} not known to the PD as it is", d.id));
            }
            if let Some(op) = self.ops.get(d.id) {
                p.push(format!(
                    "shard {} still has operator {:?}",
                    d.id,
                    op.steps()
                ));
            }
        }
        p
    }
}
