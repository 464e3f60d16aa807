//! What nodes say about themselves, recorded as it happens: every
//! (shard, term) in which a node saw itself leader, and in which life of the
//! node (a restart begins a new one).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use atoll_node::Node;
use openraft::ServerState;

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
    errors: Vec<String>,
}

impl Observer {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Watches every replica of `node` until the node dies.
    pub fn watch(&self, node: &Node) {
        let life = {
            let mut s = self.lock();
            let n = s.lives.entry(node.id()).or_default();
            *n += 1;
            *n
        };
        for replica in node.host().all() {
            let mut rx = replica.raft.metrics();
            let (obs, node_id, shard) = (self.clone(), node.id(), replica.id);
            tokio::spawn(async move {
                loop {
                    let m = rx.borrow_and_update().clone();
                    {
                        let mut s = obs.lock();
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
                            s.last_leader.insert(node_id, m.current_leader);
                        }
                    }
                    if rx.changed().await.is_err() {
                        break;
                    }
                }
            });
        }
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
