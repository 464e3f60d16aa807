//! The client's map from keys to shards.
//!
//! Invariant: **no two cached shards intersect** (and no shard id appears
//! twice). Entries are keyed by their start key; inserting a descriptor
//! removes every cached shard it overlaps or whose id it shares, unless one
//! of those is strictly newer, in which case the insert is the stale one and
//! is dropped. "Newer" compares `(epoch.version,
//! epoch.conf_ver)` for the same shard id and `epoch.version` (bumped by
//! splits and merges) across shard ids; on a tie the incoming descriptor
//! wins, as it is the fresher observation.
//!
//! Each entry also carries a leader hint (a node id, resolved to an address
//! through the descriptor's `replicas`).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use atoll_proto::{Epoch, ShardDescriptor};

/// Where to send a request for one shard, as far as the cache knows.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// The shard id to put in the request header.
    pub shard_id: u64,
    /// The epoch to put in the request header.
    pub epoch: Option<Epoch>,
    /// Addresses to try, best first: the hinted leader, then the other
    /// voters, then learners. No duplicates.
    pub addrs: Vec<String>,
}

impl Route {
    /// The address to try at `rotation` (wrapping around), if any.
    pub fn pick(&self, rotation: usize) -> Option<String> {
        let n = self.addrs.len();
        (n > 0).then(|| self.addrs[rotation % n].clone())
    }
}

/// A range map from keys to shard descriptors. See the module docs.
#[derive(Debug, Default, Clone)]
pub struct RouteCache {
    by_start: BTreeMap<Vec<u8>, ShardDescriptor>,
}

impl RouteCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of cached shards.
    pub fn len(&self) -> usize {
        self.by_start.len()
    }

    /// True when no shard is cached.
    pub fn is_empty(&self) -> bool {
        self.by_start.is_empty()
    }

    /// Caches `desc`, evicting the shards it overlaps. Returns false (and
    /// changes nothing) when `desc` is malformed or older than a cached
    /// shard it overlaps.
    pub fn insert(&mut self, mut desc: ShardDescriptor) -> bool {
        if !desc.end.is_empty() && desc.start >= desc.end {
            return false;
        }
        let mut overlapping = self.overlapping(&desc.start, &desc.end);
        let same_id = self.by_start.iter().filter(|(_, d)| d.id == desc.id);
        overlapping.extend(same_id.map(|(k, _)| k.clone()));
        if overlapping.iter().any(|start| {
            self.by_start
                .get(start)
                .is_some_and(|old| newer(old, &desc))
        }) {
            return false;
        }
        for start in overlapping {
            if let Some(old) = self.by_start.remove(&start) {
                let same = old.id == desc.id && old.replicas == desc.replicas;
                if same && desc.leader_id.is_none() {
                    desc.leader_id = old.leader_id;
                }
            }
        }
        self.by_start.insert(desc.start.clone(), desc);
        true
    }

    /// The shard whose range holds `key` (`start <= key < end`, an empty end
    /// meaning no upper bound).
    pub fn lookup(&self, key: &[u8]) -> Option<&ShardDescriptor> {
        let (_, desc) = self
            .by_start
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()?;
        contains_key(desc, key).then_some(desc)
    }

    /// The route for `key`, if a cached shard holds it.
    pub fn route(&self, key: &[u8]) -> Option<Route> {
        self.lookup(key).map(route_of)
    }

    /// The cached shard with this id.
    pub fn get(&self, shard_id: u64) -> Option<&ShardDescriptor> {
        self.by_start.values().find(|d| d.id == shard_id)
    }

    /// Records `leader_id` as the leader hint of `shard_id`. Returns the
    /// leader's address when the cached descriptor lists it.
    pub fn set_leader(&mut self, shard_id: u64, leader_id: u64) -> Option<String> {
        let desc = self.by_start.values_mut().find(|d| d.id == shard_id)?;
        desc.leader_id = Some(leader_id);
        replica_addr(desc, leader_id)
    }

    /// Records the replica at `addr` as the leader of `shard_id` (after it
    /// answered a leader-only request). Unknown addresses are ignored.
    pub fn set_leader_addr(&mut self, shard_id: u64, addr: &str) {
        if let Some(desc) = self.by_start.values_mut().find(|d| d.id == shard_id) {
            if let Some(r) = desc.replicas.iter().find(|r| r.addr == addr) {
                desc.leader_id = Some(r.node_id);
            }
        }
    }

    /// Drops the leader hint of `shard_id` if it points at `addr`.
    pub fn forget_leader(&mut self, shard_id: u64, addr: &str) {
        if let Some(desc) = self.by_start.values_mut().find(|d| d.id == shard_id) {
            let hinted = desc.leader_id.and_then(|id| replica_addr(desc, id));
            if hinted.as_deref() == Some(addr) {
                desc.leader_id = None;
            }
        }
    }

    /// Every replica address of every cached shard.
    pub fn addresses(&self) -> BTreeSet<String> {
        let replicas = self.by_start.values().flat_map(|d| d.replicas.iter());
        replicas.map(|r| r.addr.clone()).collect()
    }

    /// Start keys of the cached shards that intersect `[start, end)`.
    fn overlapping(&self, start: &[u8], end: &[u8]) -> Vec<Vec<u8>> {
        let mut found = Vec::new();
        if let Some((k, d)) = self
            .by_start
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(start)))
            .next_back()
        {
            if d.end.is_empty() || d.end.as_slice() > start {
                found.push(k.clone());
            }
        }
        let after = (Bound::Excluded(start), Bound::Unbounded);
        for k in self.by_start.range::<[u8], _>(after).map(|(k, _)| k) {
            if !end.is_empty() && k.as_slice() >= end {
                break;
            }
            found.push(k.clone());
        }
        found
    }
}

fn contains_key(desc: &ShardDescriptor, key: &[u8]) -> bool {
    desc.start.as_slice() <= key && (desc.end.is_empty() || key < desc.end.as_slice())
}

/// True when the cached `old` should win over the incoming `new`.
fn newer(old: &ShardDescriptor, new: &ShardDescriptor) -> bool {
    let epoch = |d: &ShardDescriptor| d.epoch.map_or((0, 0), |e| (e.version, e.conf_ver));
    if old.id == new.id {
        epoch(old) > epoch(new)
    } else {
        epoch(old).0 > epoch(new).0
    }
}

fn replica_addr(desc: &ShardDescriptor, node_id: u64) -> Option<String> {
    let replica = desc.replicas.iter().find(|r| r.node_id == node_id)?;
    (!replica.addr.is_empty()).then(|| replica.addr.clone())
}

fn route_of(desc: &ShardDescriptor) -> Route {
    let mut addrs: Vec<String> = Vec::with_capacity(desc.replicas.len());
    let leader = desc.leader_id.and_then(|id| replica_addr(desc, id));
    let voters = desc.replicas.iter().filter(|r| r.voter);
    let learners = desc.replicas.iter().filter(|r| !r.voter);
    let others = voters.chain(learners).map(|r| r.addr.clone());
    for addr in leader.into_iter().chain(others) {
        if !addr.is_empty() && !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    Route {
        shard_id: desc.id,
        epoch: desc.epoch,
        addrs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use atoll_proto::Replica;

    fn shard(id: u64, start: &str, end: &str, version: u64) -> ShardDescriptor {
        ShardDescriptor {
            id,
            start: start.as_bytes().to_vec(),
            end: end.as_bytes().to_vec(),
            epoch: Some(Epoch {
                version,
                conf_ver: 1,
            }),
            replicas: (1..=3)
                .map(|n| Replica {
                    node_id: n,
                    addr: format!("n{n}:7100"),
                    voter: n != 3,
                    replica_id: n,
                })
                .collect(),
            leader_id: None,
        }
    }

    fn ids(cache: &RouteCache) -> Vec<u64> {
        cache.by_start.values().map(|d| d.id).collect()
    }

    /// Checks the module invariant: pairwise disjoint ranges, unique ids.
    fn assert_disjoint(cache: &RouteCache) {
        let shards: Vec<_> = cache.by_start.values().collect();
        for pair in shards.windows(2) {
            assert!(!pair[0].end.is_empty() && pair[0].end <= pair[1].start);
        }
        let unique: BTreeSet<u64> = shards.iter().map(|d| d.id).collect();
        assert_eq!(unique.len(), shards.len());
    }

    #[test]
    fn lookup_finds_the_covering_shard_and_treats_empty_end_as_infinity() {
        let mut cache = RouteCache::new();
        assert!(cache.insert(shard(1, "", "m", 1)));
        assert!(cache.insert(shard(2, "m", "", 1)));
        assert_eq!(cache.lookup(b"").map(|d| d.id), Some(1));
        assert_eq!(cache.lookup(b"apple").map(|d| d.id), Some(1));
        assert_eq!(cache.lookup(b"m").map(|d| d.id), Some(2));
        assert_eq!(cache.lookup(b"\xff\xff\xff").map(|d| d.id), Some(2));
    }

    #[test]
    fn lookup_misses_gaps() {
        let mut cache = RouteCache::new();
        cache.insert(shard(1, "b", "d", 1));
        assert!(cache.lookup(b"a").is_none());
        assert!(cache.lookup(b"d").is_none());
        assert_eq!(cache.lookup(b"c").map(|d| d.id), Some(1));
    }

    #[test]
    fn split_children_replace_the_parent() {
        let mut cache = RouteCache::new();
        cache.insert(shard(1, "", "", 1));
        assert!(cache.insert(shard(2, "m", "", 2)));
        assert_eq!(ids(&cache), vec![2]);
        assert!(cache.insert(shard(1, "", "m", 2)));
        assert_eq!(ids(&cache), vec![1, 2]);
        assert_disjoint(&cache);
    }

    #[test]
    fn a_stale_parent_does_not_evict_newer_children() {
        let mut cache = RouteCache::new();
        cache.insert(shard(1, "", "m", 2));
        cache.insert(shard(2, "m", "", 2));
        assert!(!cache.insert(shard(1, "", "", 1)));
        assert_eq!(ids(&cache), vec![1, 2]);
    }

    #[test]
    fn merged_shard_replaces_both_halves() {
        let mut cache = RouteCache::new();
        cache.insert(shard(1, "", "g", 2));
        cache.insert(shard(2, "g", "p", 2));
        cache.insert(shard(3, "p", "", 2));
        assert!(cache.insert(shard(1, "", "p", 3)));
        assert_eq!(ids(&cache), vec![1, 3]);
        assert_disjoint(&cache);
    }

    #[test]
    fn same_shard_with_newer_conf_ver_wins_and_older_loses() {
        let mut cache = RouteCache::new();
        let mut a = shard(1, "", "", 1);
        a.epoch = Some(Epoch {
            version: 1,
            conf_ver: 5,
        });
        cache.insert(a.clone());
        let mut old = a.clone();
        old.epoch = Some(Epoch {
            version: 1,
            conf_ver: 4,
        });
        assert!(!cache.insert(old));
        let mut new = a;
        new.epoch = Some(Epoch {
            version: 1,
            conf_ver: 6,
        });
        assert!(cache.insert(new));
        assert_eq!(
            cache.get(1).and_then(|d| d.epoch).map(|e| e.conf_ver),
            Some(6)
        );
    }

    #[test]
    fn a_moved_shard_leaves_no_copy_at_its_old_range() {
        let mut cache = RouteCache::new();
        cache.insert(shard(1, "a", "c", 1));
        assert!(cache.insert(shard(1, "x", "z", 2)));
        assert_eq!(ids(&cache), vec![1]);
        assert!(cache.lookup(b"b").is_none());
    }

    #[test]
    fn malformed_range_is_refused() {
        let mut cache = RouteCache::new();
        assert!(!cache.insert(shard(1, "z", "a", 1)));
        assert!(!cache.insert(shard(1, "a", "a", 1)));
        assert!(cache.is_empty());
    }

    #[test]
    fn route_puts_the_leader_first_then_voters_then_learners() {
        let mut cache = RouteCache::new();
        cache.insert(shard(7, "", "", 1));
        let route = cache.route(b"k").expect("route");
        assert_eq!(route.addrs, ["n1:7100", "n2:7100", "n3:7100"]);
        assert_eq!(cache.set_leader(7, 2).as_deref(), Some("n2:7100"));
        let route = cache.route(b"k").expect("route");
        assert_eq!(route.shard_id, 7);
        assert_eq!(route.addrs, ["n2:7100", "n1:7100", "n3:7100"]);
        assert_eq!(route.pick(4).as_deref(), Some("n1:7100"));
        let nowhere = Route {
            addrs: vec![],
            ..route
        };
        assert_eq!(nowhere.pick(0), None);
    }

    #[test]
    fn leader_hints_survive_a_refresh_without_hint_and_can_be_forgotten() {
        let mut cache = RouteCache::new();
        cache.insert(shard(7, "", "", 1));
        cache.set_leader_addr(7, "n2:7100");
        cache.insert(shard(7, "", "", 1));
        assert_eq!(cache.get(7).and_then(|d| d.leader_id), Some(2));
        cache.forget_leader(7, "n1:7100");
        assert_eq!(cache.get(7).and_then(|d| d.leader_id), Some(2));
        cache.forget_leader(7, "n2:7100");
        assert_eq!(cache.get(7).and_then(|d| d.leader_id), None);
    }

    #[test]
    fn random_inserts_keep_ranges_disjoint() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut cache = RouteCache::new();
        for i in 0..2000 {
            let a: u8 = rng.gen_range(b'a'..=b'z');
            let b: u8 = rng.gen_range(b'a'..=b'z');
            let (lo, hi) = (a.min(b), a.max(b));
            let start = if rng.gen_bool(0.2) {
                String::new()
            } else {
                (lo as char).to_string()
            };
            let end = if rng.gen_bool(0.2) || lo == hi {
                String::new()
            } else {
                (hi as char).to_string()
            };
            cache.insert(shard(i % 17, &start, &end, rng.gen_range(0..5)));
            assert_disjoint(&cache);
        }
    }
}
