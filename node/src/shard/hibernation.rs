//! Quiet shards sleep: a replica of a shard that has been idle stops its
//! Raft timers (openraft's tick: no heartbeats from the leader, no election
//! timeout on the followers), so an idle node with many shards costs almost
//! nothing. TiKV's hibernate regions and CockroachDB's quiescence do the
//! same; docs/decisions/0022-sleeping-shards.md has the reasons.
//!
//! Sleeping only switches timers, never Raft state, so it cannot break
//! safety; what it must not break is liveness. The rules:
//! - **A leader sleeps** when nothing has touched the shard for
//!   `raft.hibernate_after_ms`, its membership is not joint, and every
//!   member has every entry applied at the leader; and only after every
//!   other member has agreed to sleep at the same term, leader and last
//!   index ([`super::peer_beat`] carries the ask and the answers).
//! - **A follower agrees** only if it follows that leader at that term and
//!   has that last index.
//! - **The leader wakes** on anything that needs its Raft: a write, a
//!   linearizable read, a membership change, a split, a leader transfer
//!   ([`Sleep::touch`]). A sleeping leader still answers votes and appends.
//! - **A follower wakes** when a message of the shard other than a bare
//!   heartbeat arrives (entries, a vote, a snapshot, a campaign request),
//!   when its term or leader changes, and when the leader's node stops
//!   vouching for it: no peer beat from that node for
//!   `raft.election_timeout_max_ms`, a beat from a restarted node (new boot
//!   id), or a beat that no longer lists the shard as led at that term.
//!   Woken, its election timer runs again, from the last time it heard
//!   from its leader, so it campaigns at its next tick if the leader is gone.
//! - **A sleeping leader wakes** when a member's node restarts or is heard
//!   again after a silence, so that member hears heartbeats before its own
//!   election timeout.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use openraft::ServerState;

use crate::raft::type_config::{NodeId, Raft, ReplicaId};

/// Per-replica sleep state.
#[derive(Default)]
pub struct Sleep {
    /// Fast path of [`Sleep::touch`]: whether `state` is not `Awake`.
    asleep: AtomicBool,
    /// Last time (ms on the node's clock, [`super::peer_beat::now_ms`]) the
    /// shard was used.
    last_active_ms: AtomicU64,
    state: Mutex<State>,
}

/// What a replica is doing about sleep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum State {
    #[default]
    Awake,
    /// Leading at `term`; timers stopped.
    Leading { term: u64 },
    /// Following `leader` at `term`; timers stopped.
    Following { leader: NodeId, term: u64 },
}

/// What a leader asks a follower when it wants the shard to sleep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SleepAsk {
    pub leader: NodeId,
    pub term: u64,
    pub last_index: u64,
}

impl Sleep {
    pub fn new(now_ms: u64) -> Self {
        let s = Self::default();
        s.last_active_ms.store(now_ms, Ordering::Relaxed);
        s
    }

    pub fn state(&self) -> State {
        *self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_asleep(&self) -> bool {
        self.asleep.load(Ordering::Acquire)
    }

    pub fn last_active_ms(&self) -> u64 {
        self.last_active_ms.load(Ordering::Relaxed)
    }

    /// The shard is being used: it stays awake for another quiet period,
    /// and a sleeping leader wakes now. A sleeping follower stays asleep: a
    /// request that reaches it (a client with an old route) is refused
    /// with the leader's address, and waking it would make it campaign
    /// against a healthy leader, its last heartbeat being long ago.
    pub fn touch(&self, raft: &Raft, now_ms: u64) {
        self.last_active_ms.fetch_max(now_ms, Ordering::Relaxed);
        if self.is_asleep() && matches!(self.state(), State::Leading { .. }) {
            self.wake(raft, "used");
        }
    }

    /// Starts the timers again (a no-op when awake). A woken leader sends a
    /// heartbeat at once.
    pub fn wake(&self, raft: &Raft, why: &str) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let was = *state;
        if was == State::Awake {
            return;
        }
        *state = State::Awake;
        self.asleep.store(false, Ordering::Release);
        raft.runtime_config().tick(true);
        drop(state);
        tracing::debug!(?was, "shard wakes: {why}");
        if let State::Leading { .. } = was {
            // Errors mean the Raft stopped: nothing to wake.
            let raft = raft.clone();
            tokio::spawn(async move { raft.trigger().heartbeat().await });
        }
    }

    /// The leader puts its replica to sleep, unless the shard was used
    /// since `checked_at_ms` (when the members were asked) or the Raft
    /// moved on from `term`.
    pub fn sleep_leading(&self, raft: &Raft, term: u64, checked_at_ms: u64) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if *state != State::Awake || self.last_active_ms() > checked_at_ms {
            return false;
        }
        let m = raft.metrics().borrow().clone();
        if m.state != ServerState::Leader || m.current_term != term {
            return false;
        }
        raft.runtime_config().tick(false);
        *state = State::Leading { term };
        self.asleep.store(true, Ordering::Release);
        true
    }

    /// A follower agrees to sleep, if it follows `ask.leader` at `ask.term`
    /// with the same last index; returns whether it sleeps.
    pub fn sleep_following(&self, raft: &Raft, ask: SleepAsk) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let wanted = State::Following {
            leader: ask.leader,
            term: ask.term,
        };
        if *state == wanted {
            return true;
        }
        if *state != State::Awake {
            return false;
        }
        let m = raft.metrics().borrow().clone();
        let agrees = matches!(m.state, ServerState::Follower | ServerState::Learner)
            && m.current_leader.map(ReplicaId::node) == Some(ask.leader)
            && m.current_term == ask.term
            && m.last_log_index == Some(ask.last_index)
            && m.last_applied.map(|l| l.index) == Some(ask.last_index);
        if !agrees {
            return false;
        }
        raft.runtime_config().tick(false);
        *state = wanted;
        self.asleep.store(true, Ordering::Release);
        true
    }
}

/// Why a sleeping follower must wake, judged from its Raft's metrics: it
/// is no longer following the leader it fell asleep under.
pub fn follower_moved_on(raft: &Raft, leader: NodeId, term: u64) -> bool {
    let metrics = raft.metrics();
    let m = metrics.borrow();
    m.current_term != term
        || m.current_leader.map(ReplicaId::node) != Some(leader)
        || m.state == ServerState::Shutdown
}
