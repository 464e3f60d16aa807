//! Shard commands: bootstrap, leader reports, split reports, id allocation.

use crate::command::{
    AllocError, BootstrapError, HeartbeatOutcome, IgnoredReport, SplitError, SplitOutcome,
};
use crate::ids::{IdKind, IdRange};
use crate::shard::{ShardDescriptor, ShardInfo, ShardStats};
use crate::state::PdState;

/// The most ids one `AllocIds` may take.
pub const MAX_ID_BATCH: u64 = 1 << 20;

impl PdState {
    pub(super) fn bootstrap(&mut self, shard: ShardDescriptor) -> Result<(), BootstrapError> {
        if self.bootstrapped {
            return Err(BootstrapError::AlreadyBootstrapped);
        }
        if !shard.start.is_empty() || shard.end.is_some() {
            return Err(BootstrapError::NotWholeKeyspace);
        }
        if let Some(r) = shard
            .replicas
            .iter()
            .find(|r| !self.nodes.contains_key(&r.node))
        {
            return Err(BootstrapError::UnknownNode {
                replica: r.id,
                node: r.node,
            });
        }
        self.insert_shard(shard, ShardStats::default(), 0);
        self.bootstrapped = true;
        Ok(())
    }

    pub(super) fn shard_heartbeat(
        &mut self,
        report: ShardDescriptor,
        stats: ShardStats,
        now_ms: u64,
    ) -> HeartbeatOutcome {
        if !self.bootstrapped {
            return HeartbeatOutcome::Ignored(IgnoredReport::NotBootstrapped);
        }
        let Some(known) = self.shards.get(&report.id) else {
            return HeartbeatOutcome::Ignored(IgnoredReport::UnknownShard(report.id));
        };
        let (k, r) = (known.desc.epoch, report.epoch);
        if r.version < k.version || r.conf_ver < k.conf_ver {
            return HeartbeatOutcome::Ignored(IgnoredReport::StaleEpoch {
                known: k,
                reported: r,
            });
        }
        if r == k && report.term < known.desc.term {
            return HeartbeatOutcome::Ignored(IgnoredReport::StaleTerm {
                known: known.desc.term,
                reported: report.term,
            });
        }
        if report.start != known.desc.start || report.end != known.desc.end {
            return HeartbeatOutcome::Ignored(IgnoredReport::RangeChangedWithoutSplit(report.id));
        }
        let changed = report != known.desc;
        self.insert_shard(report, stats, now_ms);
        HeartbeatOutcome::Accepted { changed }
    }

    pub(super) fn report_split(
        &mut self,
        parent: ShardDescriptor,
        child: ShardDescriptor,
        now_ms: u64,
    ) -> Result<SplitOutcome, SplitError> {
        let known = self
            .shards
            .get(&parent.id)
            .ok_or(SplitError::UnknownParent(parent.id))?;
        if let Some(c) = self.shards.get(&child.id) {
            // A retried report finds its child in place; anything else is a clash.
            return if c.desc.start == child.start
                && parent.epoch.version <= known.desc.epoch.version
            {
                Ok(SplitOutcome::AlreadyApplied)
            } else {
                Err(SplitError::ChildIdTaken(child.id))
            };
        }
        if parent.epoch.version <= known.desc.epoch.version {
            return Err(SplitError::NotNewer {
                known: known.desc.epoch.version,
                reported: parent.epoch.version,
            });
        }
        let tiles = parent.start == known.desc.start
            && parent.end.as_deref() == Some(child.start.as_slice())
            && child.end == known.desc.end
            && parent.start < child.start
            && child
                .end
                .as_deref()
                .is_none_or(|e| child.start.as_slice() < e);
        if !tiles {
            return Err(SplitError::RangeMismatch);
        }
        let half = ShardStats {
            approx_size_bytes: known.stats.approx_size_bytes / 2,
            approx_keys: known.stats.approx_keys / 2,
            pending_replicas: Vec::new(),
            down_replicas: Vec::new(),
        };
        self.insert_shard(parent, half.clone(), now_ms);
        self.insert_shard(child, half, now_ms);
        Ok(SplitOutcome::Applied)
    }

    pub(super) fn alloc_ids(&mut self, kind: IdKind, count: u64) -> Result<IdRange, AllocError> {
        if kind == IdKind::Node {
            return Err(AllocError::NodeIdsByJoinOnly);
        }
        if count == 0 || count > MAX_ID_BATCH {
            return Err(AllocError::InvalidCount {
                count,
                max: MAX_ID_BATCH,
            });
        }
        self.ids.alloc(kind, count).ok_or(AllocError::Exhausted)
    }

    /// Stores a descriptor, keeping the range index and the id allocator in
    /// step (ids that arrive from outside are never handed out again).
    fn insert_shard(&mut self, desc: ShardDescriptor, stats: ShardStats, now_ms: u64) {
        self.ids.reserve_through(IdKind::Shard, desc.id);
        for r in &desc.replicas {
            self.ids
                .reserve_through(IdKind::Replica, crate::ids::replica_number(r.id));
        }
        if let Some(old) = self.shards.get(&desc.id) {
            if self.ranges.get(&old.desc.start) == Some(&desc.id) {
                self.ranges.remove(&old.desc.start);
            }
        }
        self.ranges.insert(desc.start.clone(), desc.id);
        self.shards.insert(
            desc.id,
            ShardInfo {
                desc,
                stats,
                last_report_ms: now_ms,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::command::{
        AllocError, Command, CommandResult, HeartbeatOutcome, IgnoredReport, SplitError,
        SplitOutcome,
    };
    use crate::config::PdConfig;
    use crate::ids::{IdKind, IdRange};
    use crate::invariants::Violation;
    use crate::shard::{Epoch, Replica, Role, ShardDescriptor, ShardStats};
    use crate::state::PdState;

    fn cluster() -> PdState {
        let mut s = PdState::new(1, PdConfig::default());
        for a in ["a", "b", "c"] {
            s.apply(Command::JoinNode {
                address: a.into(),
                labels: Default::default(),
                now_ms: 0,
            });
        }
        let replicas = (1..=3)
            .map(|i| Replica {
                id: i,
                node: i,
                role: Role::Voter,
            })
            .collect();
        s.apply(Command::Bootstrap {
            shard: ShardDescriptor::whole_keyspace(1, replicas),
        });
        s
    }

    fn report(s: &PdState, f: impl FnOnce(&mut ShardDescriptor)) -> ShardDescriptor {
        let mut d = s.shard(1).map(|i| i.desc.clone()).unwrap();
        f(&mut d);
        d
    }

    fn heartbeat(s: &mut PdState, d: ShardDescriptor) -> CommandResult {
        s.apply(Command::ShardHeartbeat {
            report: d,
            stats: ShardStats::default(),
            now_ms: 1,
        })
    }

    fn split_at(s: &PdState, at: &[u8], child: u64) -> Command {
        let parent = report(s, |d| {
            d.end = Some(at.to_vec());
            d.epoch.version += 1;
        });
        let mut c = parent.clone();
        c.id = child;
        c.start = at.to_vec();
        c.end = s.shard(1).and_then(|i| i.desc.end.clone());
        c.replicas.iter_mut().for_each(|r| {
            r.id = crate::ids::pack_replica(10 * child + r.node, r.node).unwrap_or_default()
        });
        Command::ReportSplit {
            parent,
            child: c,
            now_ms: 2,
        }
    }

    #[test]
    fn stale_reports_are_ignored_and_say_why() {
        let mut s = cluster();
        let newer = report(&s, |d| {
            d.epoch = Epoch {
                version: 1,
                conf_ver: 5,
            };
            d.term = 3;
            d.leader = Some(2);
        });
        assert_eq!(
            heartbeat(&mut s, newer),
            CommandResult::ShardHeartbeat(HeartbeatOutcome::Accepted { changed: true })
        );
        let old_epoch = report(&s, |d| d.epoch.conf_ver = 4);
        assert_eq!(
            heartbeat(&mut s, old_epoch),
            CommandResult::ShardHeartbeat(HeartbeatOutcome::Ignored(IgnoredReport::StaleEpoch {
                known: Epoch {
                    version: 1,
                    conf_ver: 5
                },
                reported: Epoch {
                    version: 1,
                    conf_ver: 4
                },
            }))
        );
        let old_term = report(&s, |d| d.term = 2);
        assert_eq!(
            heartbeat(&mut s, old_term),
            CommandResult::ShardHeartbeat(HeartbeatOutcome::Ignored(IgnoredReport::StaleTerm {
                known: 3,
                reported: 2
            }))
        );
        let moved = report(&s, |d| {
            d.epoch.version = 2;
            d.end = Some(b"k".to_vec());
        });
        assert_eq!(
            heartbeat(&mut s, moved),
            CommandResult::ShardHeartbeat(HeartbeatOutcome::Ignored(
                IgnoredReport::RangeChangedWithoutSplit(1)
            ))
        );
        let same = report(&s, |_| {});
        assert_eq!(
            heartbeat(&mut s, same),
            CommandResult::ShardHeartbeat(HeartbeatOutcome::Accepted { changed: false })
        );
    }

    #[test]
    fn a_split_report_narrows_the_parent_adds_the_child_and_keeps_coverage() {
        let mut s = cluster();
        assert_eq!(s.check_invariants(), vec![]);
        let cmd = split_at(&s, b"m", 2);
        assert_eq!(
            s.apply(cmd.clone()),
            CommandResult::ReportSplit(Ok(SplitOutcome::Applied))
        );
        assert_eq!(
            s.apply(cmd),
            CommandResult::ReportSplit(Ok(SplitOutcome::AlreadyApplied))
        );
        assert_eq!(s.check_invariants(), vec![]);
        assert_eq!(s.shard_for_key(b"a").map(|i| i.desc.id), Some(1));
        assert_eq!(s.shard_for_key(b"m").map(|i| i.desc.id), Some(2));
        assert_eq!(s.shard_for_key(b"zz").map(|i| i.desc.id), Some(2));
        // A later split of the parent must tile the parent's current range.
        let mut bad = split_at(&s, b"c", 3);
        if let Command::ReportSplit { child, .. } = &mut bad {
            child.end = None;
        }
        assert_eq!(
            s.apply(bad),
            CommandResult::ReportSplit(Err(SplitError::RangeMismatch))
        );
        let next = split_at(&s, b"c", 3);
        assert_eq!(
            s.apply(next),
            CommandResult::ReportSplit(Ok(SplitOutcome::Applied))
        );
        assert_eq!(s.check_invariants(), vec![]);
        let ids: Vec<_> = s.shards_by_range().map(|i| i.desc.id).collect();
        assert_eq!(ids, vec![1, 3, 2]);
        // Allocated ids never collide with those that came in by reports.
        let r = s.apply(Command::AllocIds {
            kind: IdKind::Replica,
            count: 2,
        });
        assert_eq!(
            r,
            CommandResult::AllocIds(Ok(IdRange { start: 34, end: 36 }))
        );
        let r = s.apply(Command::AllocIds {
            kind: IdKind::Node,
            count: 2,
        });
        assert_eq!(
            r,
            CommandResult::AllocIds(Err(AllocError::NodeIdsByJoinOnly))
        );
    }

    #[test]
    fn the_invariant_check_finds_a_gap_and_two_replicas_on_one_node() {
        let mut s = cluster();
        let d = report(&s, |d| {
            d.replicas[1].node = 1;
            d.epoch.conf_ver = 9;
        });
        heartbeat(&mut s, d);
        assert_eq!(
            s.check_invariants(),
            vec![Violation::TwoReplicasOnOneNode { shard: 1, node: 1 }]
        );
        let mut empty = PdState::new(1, PdConfig::default());
        assert_eq!(empty.check_invariants(), vec![]);
        let r = empty.apply(Command::Bootstrap {
            shard: ShardDescriptor::whole_keyspace(1, vec![]),
        });
        assert_eq!(r, CommandResult::Bootstrap(Ok(())));
        assert_eq!(empty.check_invariants(), vec![]);
    }
}
