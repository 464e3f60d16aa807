//! What the PD last accepted from this node about each shard it leads, so
//! that an idle shard is not reported every round.
//!
//! A report is a PD Raft entry (a proposal, a WAL sync on the PD's three
//! nodes, an apply): at one report per shard per second, an idle cluster of
//! a few hundred shards spent most of its CPU on them. A shard is reported
//! when its descriptor (range, epoch, replicas, leader, term) or its stats
//! (size, keys, pending replicas) differ from what the PD last accepted, and
//! otherwise every [`REFRESH_ROUNDS`] rounds, staggered by shard id so the
//! refreshes do not all fall in one round. Operators are confirmed by the
//! change their step makes, which is reported at the next round. A report
//! the PD ignored or that failed is not remembered, so it is sent again.

use std::collections::HashMap;

use atoll_pd::shard::{ShardDescriptor, ShardStats};

use crate::storage::keys::ShardId;

/// Heartbeat rounds after which an unchanged shard is reported again (at
/// most twice this, by shard id).
pub const REFRESH_ROUNDS: u64 = 30;

fn refresh_period(shard: ShardId) -> u64 {
    REFRESH_ROUNDS + shard % REFRESH_ROUNDS
}

#[derive(Default)]
pub struct Reported {
    /// shard -> (descriptor, stats, round) last accepted by the PD.
    last: HashMap<ShardId, (ShardDescriptor, ShardStats, u64)>,
    round: u64,
}

impl Reported {
    /// Starts a round.
    pub fn round(&mut self) {
        self.round += 1;
    }

    /// Forgets the shards not in `hosted` (removed, or no longer led here
    /// and gone).
    pub fn retain(&mut self, hosted: impl Iterator<Item = ShardId>) {
        let hosted: std::collections::HashSet<ShardId> = hosted.collect();
        self.last.retain(|id, _| hosted.contains(id));
    }

    /// Whether this round must report the shard: it changed since the PD
    /// last accepted it, or its refresh is due.
    pub fn due(&self, desc: &ShardDescriptor, stats: &ShardStats) -> bool {
        match self.last.get(&desc.id) {
            Some((d, s, at)) if d == desc && s == stats => {
                self.round.saturating_sub(*at) >= refresh_period(desc.id)
            }
            _ => true,
        }
    }

    /// The PD accepted this report.
    pub fn accepted(&mut self, desc: ShardDescriptor, stats: ShardStats) {
        self.last.insert(desc.id, (desc, stats, self.round));
    }
}

#[cfg(test)]
mod tests {
    use atoll_pd::shard::{ShardDescriptor, ShardStats};

    use super::{Reported, REFRESH_ROUNDS};

    #[test]
    fn an_unchanged_shard_is_reported_again_only_when_its_refresh_is_due() {
        let mut r = Reported::default();
        let desc = ShardDescriptor::whole_keyspace(7, Vec::new());
        let stats = ShardStats::default();
        r.round();
        assert!(r.due(&desc, &stats), "never reported");
        r.accepted(desc.clone(), stats.clone());
        let mut reports = 0;
        for _ in 0..3 * REFRESH_ROUNDS {
            r.round();
            if r.due(&desc, &stats) {
                reports += 1;
                r.accepted(desc.clone(), stats.clone());
            }
        }
        let period = super::refresh_period(7);
        assert!((REFRESH_ROUNDS..2 * REFRESH_ROUNDS).contains(&period));
        assert_eq!(
            reports,
            3 * REFRESH_ROUNDS / period,
            "one refresh per period"
        );
        let mut moved = desc.clone();
        moved.term += 1;
        assert!(r.due(&moved, &stats), "a new term is reported at once");
        let grown = ShardStats {
            approx_keys: 5,
            ..ShardStats::default()
        };
        assert!(r.due(&desc, &grown), "new stats are reported at once");
        r.retain(std::iter::empty());
        assert!(r.due(&desc, &stats), "a forgotten shard is reported");
    }
}
