//! Invariants of the PD state, checked by `PdState::check_invariants` and
//! reusable by the simulation's checkers: shard ranges never overlap and
//! together cover the key space; replica ids are unique; ids in use are
//! never handed out again.

use std::collections::BTreeMap;

use thiserror::Error;

use crate::ids::IdKind;
use crate::node::NodeId;
use crate::shard::{ReplicaId, ShardId};
use crate::state::PdState;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Violation {
    #[error("shard {0} has an empty range")]
    EmptyRange(ShardId),
    #[error("shards {left} and {right} overlap")]
    Overlap { left: ShardId, right: ShardId },
    /// Keys from `from` (after shard `after`, or from the start of the key
    /// space) are in no shard.
    #[error("keys from {from:?} (after shard {after:?}) belong to no shard")]
    Gap {
        after: Option<ShardId>,
        from: Vec<u8>,
    },
    #[error("the range index does not match the shard descriptors")]
    RangeIndex,
    #[error("shard {shard} has two replicas on node {node}")]
    TwoReplicasOnOneNode { shard: ShardId, node: NodeId },
    #[error("replica id {replica} is used by shards {first} and {second}")]
    ReplicaIdReused {
        replica: ReplicaId,
        first: ShardId,
        second: ShardId,
    },
    #[error("shard {shard} has replica {replica} on unknown node {node}")]
    UnknownNode {
        shard: ShardId,
        replica: ReplicaId,
        node: NodeId,
    },
    #[error("shard {0}'s leader is not one of its replicas")]
    LeaderNotAReplica(ShardId),
    #[error("{kind:?} id {id} is in use but could be allocated again")]
    IdNotReserved { kind: IdKind, id: u64 },
}

impl PdState {
    /// All violations, empty when the state is sound.
    pub fn check_invariants(&self) -> Vec<Violation> {
        let mut v = Vec::new();
        self.check_ranges(&mut v);
        self.check_replicas(&mut v);
        v
    }

    fn check_ranges(&self, v: &mut Vec<Violation>) {
        let by_start: BTreeMap<&[u8], ShardId> = self
            .shards()
            .map(|s| (s.desc.start.as_slice(), s.desc.id))
            .collect();
        let index_ok = by_start.len() == self.shards().count()
            && by_start.len() == self.range_index().len()
            && by_start
                .iter()
                .zip(self.range_index())
                .all(|((a, ia), (b, ib))| *a == b.as_slice() && ia == ib);
        if !index_ok {
            v.push(Violation::RangeIndex);
        }
        if !self.is_bootstrapped() {
            return;
        }
        // Walk in start order; each shard must begin where the previous ended.
        let mut expected: Option<Vec<u8>> = Some(Vec::new());
        let mut prev: Option<ShardId> = None;
        let mut ordered: Vec<_> = self.shards().collect();
        ordered.sort_by(|a, b| a.desc.start.cmp(&b.desc.start));
        for s in ordered {
            let d = &s.desc;
            if d.end.as_deref().is_some_and(|e| e <= d.start.as_slice()) {
                v.push(Violation::EmptyRange(d.id));
            }
            match &expected {
                None => v.push(Violation::Overlap {
                    left: prev.unwrap_or(d.id),
                    right: d.id,
                }),
                Some(exp) if d.start < *exp => v.push(Violation::Overlap {
                    left: prev.unwrap_or(d.id),
                    right: d.id,
                }),
                Some(exp) if d.start > *exp => v.push(Violation::Gap {
                    after: prev,
                    from: exp.clone(),
                }),
                Some(_) => {}
            }
            expected = d.end.clone();
            prev = Some(d.id);
        }
        if let Some(from) = expected {
            v.push(Violation::Gap { after: prev, from });
        }
    }

    fn check_replicas(&self, v: &mut Vec<Violation>) {
        let mut owner: BTreeMap<ReplicaId, ShardId> = BTreeMap::new();
        let next_replica = self.id_allocator().peek(IdKind::Replica);
        let next_shard = self.id_allocator().peek(IdKind::Shard);
        for s in self.shards() {
            let d = &s.desc;
            if d.id >= next_shard {
                v.push(Violation::IdNotReserved {
                    kind: IdKind::Shard,
                    id: d.id,
                });
            }
            let mut nodes = BTreeMap::new();
            for r in &d.replicas {
                if nodes.insert(r.node, r.id).is_some() {
                    v.push(Violation::TwoReplicasOnOneNode {
                        shard: d.id,
                        node: r.node,
                    });
                }
                if let Some(first) = owner.insert(r.id, d.id) {
                    v.push(Violation::ReplicaIdReused {
                        replica: r.id,
                        first,
                        second: d.id,
                    });
                }
                if self.node(r.node).is_none() {
                    v.push(Violation::UnknownNode {
                        shard: d.id,
                        replica: r.id,
                        node: r.node,
                    });
                }
                if crate::ids::replica_number(r.id) >= next_replica {
                    v.push(Violation::IdNotReserved {
                        kind: IdKind::Replica,
                        id: r.id,
                    });
                }
            }
            if d.leader.is_some() && d.leader_replica().is_none() {
                v.push(Violation::LeaderNotAReplica(d.id));
            }
        }
    }
}
