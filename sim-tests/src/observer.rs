//! What nodes say about themselves, recorded as it happens: every
//! (shard, term) in which a node saw itself leader, and in which life of the
//! node (a restart begins a new one).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use atoll_node::raft::type_config::ReplicaId;
use atoll_node::Node;
use openraft::ServerState;

/// How often a node's new replicas are looked for.
const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

type MetricsRx =
    tokio::sync::watch::Receiver<openraft::RaftMetrics<ReplicaId, openraft::BasicNode>>;

#[derive(Default, Clone)]
pub struct Observer {
    inner: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    /// (shard, term) -> nodes that claimed leadership.
    leaders: BTreeMap<(u64, u64), BTreeSet<u64>>,
    /// (shard, term, node) -> the lives of the node in which it led.
    lives_leading: BTreeMap<(u64, u64, u64), BTreeSet<u64>>,
    /// node -> how many times it has started.
    lives: BTreeMap<u64, u64>,
    /// node -> the leader of shard 1 as the node sees it.
    last_leader: BTreeMap<u64, Option<u64>>,
    /// shard -> log index -> the members of the committed membership there.
    memberships: BTreeMap<u64, BTreeMap<u64, BTreeSet<ReplicaId>>>,
    /// (node, shard) -> the replica's latest Raft metrics, in one line
    /// (printed when a check fails).
    latest: BTreeMap<(u64, u64), String>,
    errors: Vec<String>,
}

impl Observer {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Watches every replica of `node`, also those it gets later (learners,
    /// split children), until the node dies: never returns.
    pub async fn follow(&self, node: &Node) {
        let life = {
            let mut s = self.lock();
            let n = s.lives.entry(node.id()).or_default();
            *n += 1;
            *n
        };
        let mut watched: BTreeSet<(u64, ReplicaId)> = BTreeSet::new();
        loop {
            for replica in node.host().all() {
                if watched.insert((replica.id, replica.me())) {
                    self.watch(node.id(), life, replica.id, replica.raft.metrics());
                }
            }
            tokio::time::sleep(FOLLOW_EVERY).await;
        }
    }

    fn watch(&self, node_id: u64, life: u64, shard: u64, mut rx: MetricsRx) {
        let obs = self.clone();
        tokio::spawn(async move {
            loop {
                let m = rx.borrow_and_update().clone();
                {
                    let mut s = obs.lock();
                    s.latest.insert((node_id, shard), summary(&m));
                    if m.state == ServerState::Leader {
                        s.leaders
                            .entry((shard, m.current_term))
                            .or_default()
                            .insert(node_id);
                        s.lives_leading
                            .entry((shard, m.current_term, node_id))
                            .or_default()
                            .insert(life);
                    }
                    // "The leader" the nemesis aims at is the first
                    // data shard's (not the PD group's, nor a split
                    // child's).
                    if shard == atoll_node::service::admin::FIRST_SHARD {
                        s.last_leader
                            .insert(node_id, m.current_leader.map(ReplicaId::node));
                    }
                    // A membership this replica has applied is committed:
                    // the one at its log index, for every replica.
                    let at = m.membership_config.log_id().map(|l| l.index);
                    if at.is_some() && m.last_applied.map(|l| l.index) >= at {
                        let members = m
                            .membership_config
                            .membership()
                            .nodes()
                            .map(|(id, _)| *id)
                            .collect();
                        s.memberships
                            .entry(shard)
                            .or_default()
                            .insert(at.unwrap_or(0), members);
                    }
                }
                if rx.changed().await.is_err() {
                    break;
                }
            }
        });
    }

    /// Replica ids that left a shard's committed membership and were in a
    /// later one again: `(shard, replica, left at index, back at index)`.
    /// Replica ids are never reused (`atoll_node::raft::replica_id`).
    pub fn reused_replica_ids(&self) -> Vec<(u64, ReplicaId, u64, u64)> {
        let s = self.lock();
        let mut out = Vec::new();
        for (shard, by_index) in &s.memberships {
            let mut left: BTreeMap<ReplicaId, u64> = BTreeMap::new();
            let mut seen: BTreeSet<ReplicaId> = BTreeSet::new();
            for (index, members) in by_index {
                for r in members {
                    if let Some(at) = left.remove(r) {
                        out.push((*shard, *r, at, *index));
                    }
                }
                for r in seen.difference(members) {
                    left.entry(*r).or_insert(*index);
                }
                seen.extend(members.iter().copied());
                seen.retain(|r| members.contains(r));
            }
        }
        out
    }

    /// Each replica's latest Raft metrics, one line per (node, shard), for
    /// a failure report.
    pub fn latest_metrics(&self) -> Vec<String> {
        self.lock()
            .latest
            .iter()
            .map(|((node, shard), m)| format!("node {node} shard {shard}: {m}"))
            .collect()
    }

    /// [`Observer::latest_metrics`] as a block for a failure message.
    pub fn metrics_report(&self) -> String {
        format!(
            "\n  replicas' latest Raft metrics:\n    {}",
            self.latest_metrics().join("\n    ")
        )
    }

    pub fn record_error(&self, e: String) {
        self.lock().errors.push(e);
    }

    pub fn errors(&self) -> Vec<String> {
        self.lock().errors.clone()
    }

    /// (shard, term) pairs with more than one self-declared leader.
    pub fn leader_conflicts(&self) -> Vec<((u64, u64), BTreeSet<u64>)> {
        self.lock()
            .leaders
            .iter()
            .filter(|(_, n)| n.len() > 1)
            .map(|(k, v)| (*k, v.clone()))
            .collect()
    }

    /// (shard, term, node) where the node led the term in more than one
    /// life: it resumed leadership after a restart without an election.
    pub fn resumed_leadership(&self) -> Vec<(u64, u64, u64)> {
        self.lock()
            .lives_leading
            .iter()
            .filter(|(_, lives)| lives.len() > 1)
            .map(|(k, _)| *k)
            .collect()
    }

    /// Whether `node` said it led `shard` in `term`.
    pub fn led(&self, shard: u64, term: u64, node: u64) -> bool {
        self.lock()
            .leaders
            .get(&(shard, term))
            .is_some_and(|n| n.contains(&node))
    }

    pub fn terms_with_leader(&self) -> usize {
        self.lock().leaders.len()
    }

    /// The leader most nodes currently believe in.
    pub fn believed_leader(&self) -> Option<u64> {
        let s = self.lock();
        let mut votes: BTreeMap<u64, usize> = BTreeMap::new();
        for l in s.last_leader.values().flatten() {
            *votes.entry(*l).or_default() += 1;
        }
        votes.into_iter().max_by_key(|(_, n)| *n).map(|(l, _)| l)
    }
}

/// One replica's metrics in a line: state, term, leader, log, applied,
/// snapshot, purged and membership.
fn summary(m: &openraft::RaftMetrics<ReplicaId, openraft::BasicNode>) -> String {
    let index = |l: Option<openraft::LogId<ReplicaId>>| l.map(|l| l.index);
    format!(
        "{} {:?} term {} leader {:?} last_log {:?} applied {:?} snapshot {:?} purged {:?} \
         membership {:?} at {:?}",
        m.id,
        m.state,
        m.current_term,
        m.current_leader,
        m.last_log_index,
        index(m.last_applied),
        index(m.snapshot),
        index(m.purged),
        m.membership_config.membership().get_joint_config(),
        index(*m.membership_config.log_id()),
    )
}
