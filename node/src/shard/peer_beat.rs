//! The node-to-node beat that lets quiet shards sleep
//! ([`super::hibernation`]).
//!
//! Every [`beat_every`] each node sends one `Raft.Beat` to every peer node
//! it shares a shard with: its boot id, the shards it leads there (with
//! their terms), and the quiet shards it leads that it asks to put to sleep.
//! The peer answers with the asked shards whose replica now sleeps; a
//! leader sleeps once every other member has. One message per peer pair,
//! whatever the number of shards: this replaces, for sleeping shards, the
//! per-shard heartbeats of every Raft group.
//!
//! The same loop is the sleeping followers' watchdog: a follower whose
//! leader's node has been silent for [`wake_after`] wakes, and with it its
//! election timer. [`handle`] is the receiving side.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atoll_proto as pb;
use openraft::ServerState;

use super::hibernation::{follower_moved_on, SleepAsk, State};
use super::Replica;
use crate::raft::type_config::{NodeId, ReplicaId};
use crate::service::NodeCtx;

type Metrics = openraft::RaftMetrics<ReplicaId, openraft::BasicNode>;

/// How often a node beats to its peers.
pub fn beat_every(raft: &crate::config::RaftTuning) -> Duration {
    Duration::from_millis(raft.heartbeat_ms.saturating_mul(2).max(1))
}

/// How long a sleeping follower waits without a beat from its leader's
/// node before it wakes: twice the longest election timeout, and at least
/// four beats, so that a beat delayed by a busy machine does not wake
/// every sleeping shard at once.
pub fn wake_after(raft: &crate::config::RaftTuning) -> Duration {
    (Duration::from_millis(raft.election_timeout_max_ms) * 2).max(beat_every(raft) * 4)
}

/// What this node knows about its peers' beats, and its own boot id.
pub struct PeerBook {
    boot_id: u64,
    start: tokio::time::Instant,
    peers: Mutex<BTreeMap<NodeId, Heard>>,
    /// Beats received (for tests and status).
    received: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
struct Heard {
    at_ms: u64,
    boot_id: u64,
}

/// What a beat says about its sender, compared with the one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum News {
    /// The first beat from this node since this node started.
    First,
    /// Beating as before.
    Steady,
    /// The sender restarted since its last beat.
    Restarted,
    /// The sender was silent for longer than the wake-up time.
    BackFromSilence,
}

impl PeerBook {
    pub fn new() -> Self {
        Self {
            boot_id: rand::random::<u64>() | 1,
            start: tokio::time::Instant::now(),
            peers: Mutex::new(BTreeMap::new()),
            received: AtomicU64::new(0),
        }
    }

    pub fn boot_id(&self) -> u64 {
        self.boot_id
    }

    /// Milliseconds since this node started (the clock of sleep times).
    pub fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Records a beat from `node`.
    pub fn heard(&self, node: NodeId, boot_id: u64, silence: Duration) -> News {
        self.received.fetch_add(1, Ordering::Relaxed);
        let now = self.now_ms();
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let before = peers.insert(
            node,
            Heard {
                at_ms: now,
                boot_id,
            },
        );
        match before {
            None => News::First,
            Some(h) if h.boot_id != boot_id => News::Restarted,
            Some(h) if now.saturating_sub(h.at_ms) > silence.as_millis() as u64 => {
                News::BackFromSilence
            }
            Some(_) => News::Steady,
        }
    }

    /// How long since the last beat from `node` (since this node started,
    /// if none came).
    pub fn silent_for(&self, node: NodeId) -> Duration {
        let now = self.now_ms();
        let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let at = peers.get(&node).map(|h| h.at_ms).unwrap_or(0);
        Duration::from_millis(now.saturating_sub(at))
    }

    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

impl Default for PeerBook {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs until the task is aborted (at node shutdown). Does nothing when
/// sleeping is turned off (`raft.sleep_after_ms = 0`).
pub async fn run(ctx: Arc<NodeCtx>) {
    let tuning = ctx.config.raft.clone();
    if tuning.sleep_after_ms == 0 {
        return;
    }
    let every = beat_every(&tuning);
    loop {
        tokio::time::sleep(every).await;
        watch_sleepers(&ctx, wake_after(&tuning));
        beat(&ctx, &tuning).await;
    }
}

/// Wakes the sleeping replicas that must not sleep any more.
fn watch_sleepers(ctx: &NodeCtx, wake_after: Duration) {
    #[cfg(all(madsim, feature = "sim-bugs"))]
    let deaf = crate::sim_hooks::bug(crate::sim_hooks::Bug::SleepThroughLeaderLoss);
    #[cfg(not(all(madsim, feature = "sim-bugs")))]
    let deaf = false;
    for replica in ctx.host.all() {
        match replica.sleep.state() {
            State::Awake => {}
            State::Leading { term } => {
                let m = replica.raft.metrics().borrow().clone();
                if m.state != ServerState::Leader || m.current_term != term {
                    replica.sleep.wake(&replica.raft, "no longer leads");
                }
            }
            State::Following { leader, term } => {
                if follower_moved_on(&replica.raft, leader, term) {
                    replica.sleep.wake(&replica.raft, "new term or leader");
                } else if ctx.peer_book.silent_for(leader) > wake_after && !deaf {
                    replica
                        .sleep
                        .wake(&replica.raft, "the leader's node is silent");
                }
            }
        }
    }
}

/// What this node tells one peer in a beat.
#[derive(Default)]
struct Outgoing {
    addr: String,
    led: Vec<(u64, u64)>,
    asks: Vec<pb::SleepAsk>,
}

/// A quiet shard this node leads, and the members that must agree.
struct Candidate {
    replica: Arc<Replica>,
    term: u64,
    members: BTreeSet<NodeId>,
}

async fn beat(ctx: &Arc<NodeCtx>, tuning: &crate::config::RaftTuning) {
    let me = ctx.node_id();
    let now = ctx.peer_book.now_ms();
    let mut out: BTreeMap<NodeId, Outgoing> = BTreeMap::new();
    let mut candidates: BTreeMap<u64, Candidate> = BTreeMap::new();
    for replica in ctx.host.all() {
        let m = replica.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let members: Vec<(NodeId, String)> = membership
            .nodes()
            .filter(|(id, _)| id.node() != me)
            .map(|(id, n)| (id.node(), n.addr.clone()))
            .collect();
        // Every peer sharing a shard hears from this node, also one it
        // leads nothing with: a node that just started tells the sleeping
        // leaders of its shards so (a new boot id), and they wake before
        // its replicas' election timeouts.
        for (node, addr) in &members {
            out.entry(*node).or_default().addr.clone_from(addr);
        }
        if m.state != ServerState::Leader {
            continue;
        }
        let ask = quiet_enough(&replica, &m, now, tuning.sleep_after_ms);
        for (node, _) in &members {
            let o = out.entry(*node).or_default();
            o.led.push((replica.id, m.current_term));
            if let Some(ask) = &ask {
                o.asks.push(pb::SleepAsk {
                    shard_id: replica.id,
                    term: ask.term,
                    last_index: ask.last_index,
                });
            }
        }
        if let Some(ask) = ask {
            candidates.insert(
                replica.id,
                Candidate {
                    replica: replica.clone(),
                    term: ask.term,
                    members: members.iter().map(|(n, _)| *n).collect(),
                },
            );
        }
    }
    let cluster_id = ctx.cluster.get();
    let within = beat_every(tuning);
    let sends = out.into_iter().map(|(node, o)| {
        let ctx = ctx.clone();
        async move {
            let request = pb::PeerBeat {
                cluster_id,
                from_node: me,
                boot_id: ctx.peer_book.boot_id(),
                led_shards: o.led.iter().map(|(s, _)| *s).collect(),
                led_terms: o.led.iter().map(|(_, t)| *t).collect(),
                sleep: o.asks,
            };
            (node, send(&ctx, &o.addr, request, within).await)
        }
    });
    let answers = futures::future::join_all(sends).await;
    let mut agreed: BTreeMap<u64, BTreeSet<NodeId>> = BTreeMap::new();
    for (node, sleeping) in answers {
        for shard in sleeping.unwrap_or_default() {
            agreed.entry(shard).or_default().insert(node);
        }
    }
    for (shard, c) in candidates {
        let all = agreed.get(&shard).is_some_and(|a| c.members.is_subset(a));
        if all && c.replica.sleep.sleep_leading(&c.replica.raft, c.term, now) {
            tracing::debug!(node = me, shard, term = c.term, "shard sleeps");
        }
    }
}

/// The ask to send if `replica`, which this node leads, may sleep: it is
/// not the PD's group, has been unused for `sleep_after_ms`, its membership
/// is not joint, and every member holds and the leader has applied its
/// whole log.
fn quiet_enough(
    replica: &Replica,
    m: &Metrics,
    now_ms: u64,
    sleep_after_ms: u64,
) -> Option<SleepAsk> {
    if replica.id == crate::pd::PD_SHARD
        || replica.sleep.is_asleep()
        || now_ms.saturating_sub(replica.sleep.last_active_ms()) < sleep_after_ms
    {
        return None;
    }
    let membership = m.membership_config.membership();
    if membership.get_joint_config().len() != 1 {
        return None;
    }
    let last = m.last_log_index?;
    if m.last_applied.map(|l| l.index) != Some(last) {
        return None;
    }
    let replication = m.replication.as_ref()?;
    let members: Vec<ReplicaId> = membership.nodes().map(|(id, _)| *id).collect();
    let all_matched = members.iter().filter(|id| **id != m.id).all(|id| {
        replication
            .get(id)
            .is_some_and(|matched| matched.map(|l| l.index) == Some(last))
    });
    if !all_matched {
        return None;
    }
    Some(SleepAsk {
        leader: m.id.node(),
        term: m.current_term,
        last_index: last,
    })
}

/// Sends one beat; the shards the peer put to sleep, or `None` if it did
/// not answer.
async fn send(
    ctx: &NodeCtx,
    addr: &str,
    request: pb::PeerBeat,
    within: Duration,
) -> Option<Vec<u64>> {
    let channel = ctx.peers.channel(addr).ok()?;
    let mut client = pb::raft_client::RaftClient::new(channel);
    let mut request = tonic::Request::new(request);
    request.set_timeout(within);
    match tokio::time::timeout(within, client.beat(request)).await {
        Ok(Ok(reply)) => Some(reply.into_inner().sleeping),
        Ok(Err(status)) => {
            tracing::trace!(node = ctx.node_id(), addr, "beat: {}", status.message());
            None
        }
        Err(_) => None,
    }
}

/// Handles a beat from a peer: notes that it is alive, wakes what its
/// news require, and puts the asked shards to sleep where this replica
/// agrees. Returns the shards that now sleep.
pub fn handle(ctx: &NodeCtx, beat: &pb::PeerBeat) -> Vec<u64> {
    let from = beat.from_node;
    let news = ctx
        .peer_book
        .heard(from, beat.boot_id, wake_after(&ctx.config.raft));
    let led: BTreeMap<u64, u64> = beat
        .led_shards
        .iter()
        .copied()
        .zip(beat.led_terms.iter().copied())
        .collect();
    for replica in ctx.host.all() {
        match replica.sleep.state() {
            State::Awake => {}
            State::Leading { .. } => {
                // A member that restarted, or that was cut off and may have
                // campaigned, hears heartbeats again before its own timeout.
                if matches!(news, News::Restarted | News::BackFromSilence)
                    && replica.member_on(from).is_some()
                {
                    replica.sleep.wake(&replica.raft, "a member's node is back");
                }
            }
            State::Following { leader, term } if leader == from => {
                if led.get(&replica.id) != Some(&term) {
                    replica.sleep.wake(
                        &replica.raft,
                        "the leader's node no longer leads it at that term",
                    );
                }
            }
            State::Following { .. } => {}
        }
    }
    let mut sleeping = Vec::new();
    for ask in &beat.sleep {
        let Some(replica) = ctx.host.get(ask.shard_id) else {
            continue;
        };
        let ask_ = SleepAsk {
            leader: from,
            term: ask.term,
            last_index: ask.last_index,
        };
        if led.get(&ask.shard_id) == Some(&ask.term)
            && replica.sleep.sleep_following(&replica.raft, ask_)
        {
            sleeping.push(ask.shard_id);
        }
    }
    sleeping
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use std::time::Duration;

    use super::{News, PeerBook};

    #[tokio::test]
    async fn a_beat_tells_first_steady_restarted_and_back_from_silence_apart() {
        let book = PeerBook::new();
        let silence = Duration::from_millis(50);
        assert_eq!(book.heard(2, 7, silence), News::First);
        assert_eq!(book.heard(2, 7, silence), News::Steady);
        assert!(book.silent_for(2) < silence);
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(book.silent_for(2) >= Duration::from_millis(80));
        assert_eq!(book.heard(2, 7, silence), News::BackFromSilence);
        assert_eq!(book.heard(2, 8, silence), News::Restarted);
        assert_eq!(book.heard(3, 1, silence), News::First);
        assert_eq!(book.received(), 5);
        // A node never heard from has been silent since this node started.
        assert!(book.silent_for(9) >= Duration::from_millis(80));
    }
}
