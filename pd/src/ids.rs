//! Id allocation. The replicated [`IdAllocator`] hands out ranges that are
//! never reused; the PD leader keeps a local [`IdPool`] of committed ranges
//! and the schedulers draw from it through [`IdSource`], so building
//! operators needs no Raft round trip and a lost pool only leaves holes.

use serde::{Deserialize, Serialize};

use crate::node::NodeId;
use crate::shard::ShardId;

/// A replica id holds its node in its low [`REPLICA_NODE_BITS`] bits and
/// its *replica number* above them: the number is what the allocator hands
/// out (0 for a shard's founding members, whose replica id is their node
/// id). The node crate's `raft::replica_id` builds them.
pub const REPLICA_NODE_BITS: u32 = 20;

/// The allocated number of replica id `id` (0 for a founding member).
pub fn replica_number(id: u64) -> u64 {
    id >> REPLICA_NODE_BITS
}

/// Replica id `number` on `node`; `None` if it does not fit.
pub fn pack_replica(number: u64, node: NodeId) -> Option<u64> {
    if node >= 1 << REPLICA_NODE_BITS {
        return None;
    }
    number
        .checked_shl(REPLICA_NODE_BITS)
        .filter(|shifted| shifted >> REPLICA_NODE_BITS == number)
        .map(|shifted| shifted | node)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IdKind {
    Node,
    Shard,
    Replica,
}

/// The ids `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    pub start: u64,
    pub end: u64,
}

impl IdRange {
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The next free id of each kind. Ids start at 1 (0 means "none" on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdAllocator {
    next_node: u64,
    next_shard: u64,
    next_replica: u64,
}

impl Default for IdAllocator {
    fn default() -> Self {
        Self {
            next_node: 1,
            next_shard: 1,
            next_replica: 1,
        }
    }
}

impl IdAllocator {
    /// Allocates `count` ids; `None` on overflow (never in practice).
    pub fn alloc(&mut self, kind: IdKind, count: u64) -> Option<IdRange> {
        let next = match kind {
            IdKind::Node => &mut self.next_node,
            IdKind::Shard => &mut self.next_shard,
            IdKind::Replica => &mut self.next_replica,
        };
        let start = *next;
        let end = start.checked_add(count)?;
        *next = end;
        Some(IdRange { start, end })
    }

    /// Makes sure ids up to and including `used` are never handed out (for
    /// ids that entered the state from outside, e.g. at bootstrap).
    pub fn reserve_through(&mut self, kind: IdKind, used: u64) {
        let next = match kind {
            IdKind::Node => &mut self.next_node,
            IdKind::Shard => &mut self.next_shard,
            IdKind::Replica => &mut self.next_replica,
        };
        *next = (*next).max(used.saturating_add(1));
    }

    pub fn peek(&self, kind: IdKind) -> u64 {
        match kind {
            IdKind::Node => self.next_node,
            IdKind::Shard => self.next_shard,
            IdKind::Replica => self.next_replica,
        }
    }
}

/// Where checkers and schedulers take fresh shard and replica ids from.
pub trait IdSource {
    /// `None` when no committed id is at hand: the caller builds nothing.
    fn next_id(&mut self, kind: IdKind) -> Option<u64>;

    /// The id of a new replica of `shard` on `node`: a fresh replica
    /// number with the node in its low bits ([`pack_replica`]).
    fn replica_id(&mut self, shard: ShardId, node: NodeId) -> Option<u64> {
        let _ = shard;
        pack_replica(self.next_id(IdKind::Replica)?, node)
    }
}

/// Committed id ranges held by the PD leader.
#[derive(Debug, Clone, Default)]
pub struct IdPool {
    shard: Vec<IdRange>,
    replica: Vec<IdRange>,
}

impl IdPool {
    /// Adds a range committed by `Command::AllocIds`.
    pub fn refill(&mut self, kind: IdKind, range: IdRange) {
        match kind {
            IdKind::Shard => self.shard.push(range),
            IdKind::Replica => self.replica.push(range),
            IdKind::Node => {} // node ids are allocated only by JoinNode
        }
    }

    /// How many ids of `kind` are left.
    pub fn available(&self, kind: IdKind) -> u64 {
        let ranges = match kind {
            IdKind::Shard => &self.shard,
            IdKind::Replica => &self.replica,
            IdKind::Node => return 0,
        };
        ranges.iter().map(IdRange::len).sum()
    }
}

impl IdSource for IdPool {
    fn next_id(&mut self, kind: IdKind) -> Option<u64> {
        let ranges = match kind {
            IdKind::Shard => &mut self.shard,
            IdKind::Replica => &mut self.replica,
            IdKind::Node => return None,
        };
        while let Some(r) = ranges.first_mut() {
            if r.is_empty() {
                ranges.remove(0);
                continue;
            }
            let id = r.start;
            r.start += 1;
            return Some(id);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocator_never_hands_out_an_id_twice() {
        let mut a = IdAllocator::default();
        let r1 = a.alloc(IdKind::Replica, 3);
        let r2 = a.alloc(IdKind::Replica, 2);
        assert_eq!(r1, Some(IdRange { start: 1, end: 4 }));
        assert_eq!(r2, Some(IdRange { start: 4, end: 6 }));
        a.reserve_through(IdKind::Replica, 3);
        assert_eq!(a.peek(IdKind::Replica), 6);
        a.reserve_through(IdKind::Replica, 10);
        assert_eq!(a.peek(IdKind::Replica), 11);
    }

    #[test]
    fn pool_drains_ranges_in_order() {
        let mut p = IdPool::default();
        p.refill(IdKind::Shard, IdRange { start: 5, end: 7 });
        p.refill(IdKind::Shard, IdRange { start: 9, end: 10 });
        assert_eq!(p.available(IdKind::Shard), 3);
        let got: Vec<_> = (0..4).map(|_| p.next_id(IdKind::Shard)).collect();
        assert_eq!(got, vec![Some(5), Some(6), Some(9), None]);
    }
}
