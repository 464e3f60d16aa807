//! Leader transfer: move a shard's leadership to another voter with a short
//! write pause (issue 9, item 6; docs/decisions/0018-leader-transfer.md).
//!
//! openraft 0.9 has no `transfer_leader`, and its followers refuse votes for
//! a leader lease after each heartbeat. Atoll's openraft patch adds a
//! leader-transfer election whose votes are granted within the lease
//! (`trigger().elect_for_leader_transfer()`, third_party/PATCHES.md). On the
//! leader, [`transfer`]:
//! 1. checks that the target is a voter, and waits, writes still flowing,
//!    until it lags by at most [`MAX_LAG`] entries;
//! 2. pauses the proposer ([`super::proposer::Proposer::pause`]): entries
//!    in flight finish, new writes wait in the queue;
//! 3. waits until the replication metrics show the target holds the
//!    leader's last log id;
//! 4. asks the target to campaign (the Raft service's `TimeoutNow`); the
//!    target checks [`may_campaign`] and starts a leader-transfer election;
//! 5. waits until the target leads in a higher term, then resumes: queued
//!    writes meet `ForwardToLeader` and are answered `NotLeader` naming the
//!    new leader, which clients follow.
//!
//! Any failure or timeout resumes proposing (the pause is a guard) and
//! returns a [`TransferError`]. Raft safety never rests on this module: a
//! vote still needs a higher term and an up-to-date log, and a node grants
//! one vote per term; the worst a misfire costs is an election.

use std::time::Duration;

use atoll_proto as pb;
use openraft::{BasicNode, RaftMetrics, ServerState};
use tokio::time::Instant;
use tracing::Instrument;

use super::replica::Replica;
use crate::raft::peer_pool::PeerPool;
use crate::raft::type_config::{NodeId, Raft, ReplicaId};

/// The target may lag by this many entries before writes are paused; the
/// rest it receives during the pause.
pub const MAX_LAG: u64 = 64;

type Metrics = RaftMetrics<ReplicaId, BasicNode>;

/// How long each phase may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferTimeouts {
    /// The whole call.
    pub total: Duration,
    /// Writes paused before the target campaigns: draining the entries in
    /// flight plus the last catch-up.
    pub pause: Duration,
    /// From the campaign request until this node sees the target lead.
    pub win: Duration,
}

impl TransferTimeouts {
    /// `total` as asked (0: a default of 10 s); each paused phase at most
    /// `phase`, the time a failover would take anyway
    /// ([`RaftTuning::failover_bound`](crate::config::RaftTuning::failover_bound)).
    pub fn new(total: Duration, phase: Duration) -> Self {
        let total = if total.is_zero() {
            Duration::from_secs(10)
        } else {
            total
        };
        Self {
            total,
            pause: phase.min(total),
            win: phase.min(total),
        }
    }
}

/// A transfer that happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transferred {
    pub leader: NodeId,
    pub term: u64,
    /// How long this node held back new proposals.
    pub paused: Duration,
}

/// Why a transfer did not happen. Proposals have resumed when it is
/// returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    #[error("this node is not the leader of the shard")]
    NotLeader {
        leader_id: Option<NodeId>,
        leader_addr: Option<String>,
    },
    #[error("node {target} is not a voter of shard {shard}; pick a voter (see `atollctl status`), or add it first (add-learner, then change-membership)")]
    TargetNotVoter { shard: u64, target: NodeId },
    #[error("node {target} did not catch up (it has the log up to {matched}, the leader up to {last}); check that it is up and reachable, then retry")]
    TargetLagging {
        target: NodeId,
        matched: u64,
        last: u64,
    },
    #[error("node {target} could not be asked to campaign: {reason}; check that it is up and reachable, then retry")]
    TargetUnreachable { target: NodeId, reason: String },
    #[error("node {target} did not become leader within {waited:?} (leader now: {}); writes go to that leader; retry the transfer", leader.map_or("none yet".to_string(), |l| format!("node {l}")))]
    TimedOut {
        target: NodeId,
        waited: Duration,
        leader: Option<NodeId>,
    },
    #[error("the shard's Raft group has stopped")]
    Stopped,
}

/// Entries the target misses, as the leader's replication metrics tell;
/// `None` when this node is not leader or does not replicate to `target`.
pub fn lag(m: &Metrics, target: ReplicaId) -> Option<u64> {
    let matched = m.replication.as_ref()?.get(&target)?;
    let last = m.last_log_index.unwrap_or(0);
    Some(last.saturating_sub(matched.map_or(0, |l| l.index)))
}

fn matched(m: &Metrics, target: ReplicaId) -> u64 {
    let last = m.last_log_index.unwrap_or(0);
    last.saturating_sub(lag(m, target).unwrap_or(last))
}

/// The voter of `m`'s membership on `node`, if any.
fn voter_on(m: &Metrics, node: NodeId) -> Option<ReplicaId> {
    crate::raft::replica_id::voter_on(m.membership_config.membership(), node)
}

/// What the leader asks the target to check before it campaigns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignAsk {
    /// The asking leader's replica id (`TimeoutNowRequest.leader_id`).
    pub leader_id: ReplicaId,
    pub term: u64,
    pub last_log_index: u64,
}

/// On the target: whether to campaign at `ask`'s request. Only while it
/// still follows that leader in that term (a late or replayed request does
/// nothing) and holds the whole log the leader had.
pub fn may_campaign(m: &Metrics, ask: &CampaignAsk) -> Result<(), String> {
    if m.state != ServerState::Follower {
        return Err(format!("it is {:?}, not a follower", m.state));
    }
    if voter_on(m, m.id.node()) != Some(m.id) {
        return Err("it is not a voter".into());
    }
    if m.current_term != ask.term || m.current_leader != Some(ask.leader_id) {
        return Err(format!(
            "it follows {:?} in term {}, not replica {} in term {}",
            m.current_leader, m.current_term, ask.leader_id, ask.term
        ));
    }
    let have = m.last_log_index.unwrap_or(0);
    if have < ask.last_log_index {
        return Err(format!(
            "it has the log up to {have}, the leader up to {}",
            ask.last_log_index
        ));
    }
    Ok(())
}

/// How long the target waits for its own metrics to show the log the
/// leader saw it acknowledge (metrics are published just after the reply).
const LOG_VISIBLE_WITHIN: Duration = Duration::from_millis(200);

/// On the target: checks the request and starts a leader-transfer election.
pub async fn campaign(raft: &Raft, ask: &CampaignAsk) -> Result<(), String> {
    let want = ask.last_log_index;
    let m = match raft
        .wait(Some(LOG_VISIBLE_WITHIN))
        .metrics(
            move |m| m.last_log_index.unwrap_or(0) >= want,
            "the leader's log",
        )
        .await
    {
        Ok(m) => m,
        Err(_) => raft.metrics().borrow().clone(),
    };
    may_campaign(&m, ask)?;
    tracing::info!(
        replica = %m.id,
        term = m.current_term,
        leader = %ask.leader_id,
        "campaigning at the leader's request"
    );
    raft.trigger()
        .elect_for_leader_transfer()
        .await
        .map_err(|e| e.to_string())
}

/// Where the leader sends its campaign request.
pub struct Peers<'a> {
    pub pool: &'a PeerPool,
    pub cluster_id: u64,
}

/// On the leader: moves leadership of `replica`'s shard to `target`.
pub async fn transfer(
    replica: &Replica,
    target: NodeId,
    peers: Peers<'_>,
    t: TransferTimeouts,
) -> Result<Transferred, TransferError> {
    replica.touch();
    let m = replica.raft.metrics().borrow().clone();
    let span = tracing::info_span!(
        "transfer",
        replica = %m.id,
        shard = replica.id,
        term = m.current_term,
        target
    );
    run(replica, target, peers, t, m).instrument(span).await
}

async fn run(
    replica: &Replica,
    target: NodeId,
    peers: Peers<'_>,
    t: TransferTimeouts,
    m: Metrics,
) -> Result<Transferred, TransferError> {
    let start = Instant::now();
    let raft = &replica.raft;
    if m.state != ServerState::Leader {
        return Err(not_leader(replica, &m));
    }
    if target == m.id.node() {
        return Ok(Transferred {
            leader: target,
            term: m.current_term,
            paused: Duration::ZERO,
        });
    }
    let Some(target) = voter_on(&m, target) else {
        return Err(TransferError::TargetNotVoter {
            shard: replica.id,
            target,
        });
    };
    let term = m.current_term;
    let deadline = start + t.total;
    let left = || deadline.saturating_duration_since(Instant::now());

    // 1. Nearly caught up, with writes flowing.
    let near = left().saturating_sub(t.pause + t.win);
    wait_leading(raft, near, "target nearly caught up", move |m| {
        lag(m, target).is_some_and(|l| l <= MAX_LAG)
    })
    .await
    .map_err(|m| lagging(replica, target, &m))?;

    // 2. Pause; 3. fully caught up.
    let pause_deadline = Instant::now() + t.pause.min(left());
    let paused = tokio::time::timeout(
        pause_deadline.saturating_duration_since(Instant::now()),
        replica.pause_proposals(),
    )
    .await
    .map_err(|_| lagging(replica, target, &raft.metrics().borrow()))?;
    let paused_at = Instant::now();
    let m = wait_leading(
        raft,
        pause_deadline.saturating_duration_since(Instant::now()),
        "target caught up",
        move |m| lag(m, target) == Some(0),
    )
    .await
    .map_err(|m| lagging(replica, target, &m))?;
    tracing::debug!(last = ?m.last_log_index, "target caught up; asking it to campaign");

    // 4. Campaign.
    let ask = CampaignAsk {
        leader_id: m.id,
        term,
        last_log_index: m.last_log_index.unwrap_or(0),
    };
    ask_to_campaign(replica, target, &peers, &ask, t.win.min(left())).await?;

    // 5. Won?
    let win = t.win.min(left());
    let now = raft
        .wait(Some(win))
        .metrics(
            move |m| m.current_term > term && m.current_leader.is_some(),
            "a leader in a later term",
        )
        .await;
    drop(paused);
    let paused = paused_at.elapsed();
    match now {
        Ok(m) if m.current_leader == Some(target) => {
            tracing::info!(new_term = m.current_term, ?paused, "leadership transferred");
            Ok(Transferred {
                leader: target.node(),
                term: m.current_term,
                paused,
            })
        }
        Ok(m) => Err(timed_out(target, start, &m)),
        Err(openraft::metrics::WaitError::ShuttingDown) => Err(TransferError::Stopped),
        Err(openraft::metrics::WaitError::Timeout(..)) => {
            Err(timed_out(target, start, &raft.metrics().borrow()))
        }
    }
}

/// Waits until `cond` holds while this node still leads in its term;
/// returns the last metrics as the error when it stops leading or time
/// runs out.
async fn wait_leading<F>(
    raft: &Raft,
    within: Duration,
    what: &str,
    cond: F,
) -> Result<Metrics, Metrics>
where
    F: Fn(&Metrics) -> bool + Send + 'static,
{
    let term = raft.metrics().borrow().current_term;
    let leading = move |m: &Metrics| m.state == ServerState::Leader && m.current_term == term;
    let got = raft
        .wait(Some(within))
        .metrics(move |m| !leading(m) || cond(m), what)
        .await;
    match got {
        Ok(m) if leading(&m) => Ok(m),
        Ok(m) => Err(m),
        Err(_) => Err(raft.metrics().borrow().clone()),
    }
}

async fn ask_to_campaign(
    replica: &Replica,
    target: ReplicaId,
    peers: &Peers<'_>,
    ask: &CampaignAsk,
    within: Duration,
) -> Result<(), TransferError> {
    let unreachable = |reason: String| TransferError::TargetUnreachable {
        target: target.node(),
        reason,
    };
    let addr = replica
        .member_addr(target)
        .ok_or_else(|| unreachable("its address is not in the membership".into()))?;
    let channel = peers
        .pool
        .channel(&addr)
        .map_err(|e| unreachable(e.to_string()))?;
    let mut client = pb::raft_client::RaftClient::new(channel);
    let mut request = tonic::Request::new(pb::TimeoutNowRequest {
        shard_id: replica.id,
        cluster_id: peers.cluster_id,
        leader_id: ask.leader_id.0,
        term: ask.term,
        last_log_index: ask.last_log_index,
    });
    request.set_timeout(within);
    let reply = tokio::time::timeout(within, client.timeout_now(request))
        .await
        .map_err(|_| unreachable(format!("no answer from {addr} within {within:?}")))?
        .map_err(|s| unreachable(format!("{addr}: {}", s.message())))?
        .into_inner();
    if reply.refused.is_empty() {
        Ok(())
    } else {
        Err(unreachable(format!("it refused: {}", reply.refused)))
    }
}

fn not_leader(replica: &Replica, m: &Metrics) -> TransferError {
    TransferError::NotLeader {
        leader_id: m.current_leader.map(ReplicaId::node),
        leader_addr: m.current_leader.and_then(|l| replica.member_addr(l)),
    }
}

fn lagging(replica: &Replica, target: ReplicaId, m: &Metrics) -> TransferError {
    if m.state != ServerState::Leader {
        return not_leader(replica, m);
    }
    TransferError::TargetLagging {
        target: target.node(),
        matched: matched(m, target),
        last: m.last_log_index.unwrap_or(0),
    }
}

fn timed_out(target: ReplicaId, start: Instant, m: &Metrics) -> TransferError {
    TransferError::TimedOut {
        target: target.node(),
        waited: start.elapsed(),
        leader: m.current_leader.map(ReplicaId::node),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;

    use openraft::{CommittedLeaderId, LogId, Membership, StoredMembership};

    use super::*;

    fn r(n: u64) -> ReplicaId {
        ReplicaId::founding(n)
    }

    fn log_id(index: u64) -> LogId<ReplicaId> {
        LogId::new(CommittedLeaderId::new(1, r(0)), index)
    }

    /// Node `id` of a shard whose voters are 1, 2, 3 (and learner 4).
    fn metrics(id: u64, state: ServerState, last: u64) -> Metrics {
        let voters = BTreeSet::from([r(1), r(2), r(3)]);
        let nodes: BTreeMap<ReplicaId, BasicNode> = (1..=4)
            .map(|n| (r(n), BasicNode::new(format!("n{n}"))))
            .collect();
        let membership = Membership::new(vec![voters], nodes);
        let mut m = Metrics::new_initial(r(id));
        m.state = state;
        m.current_term = 5;
        m.current_leader = Some(r(1));
        m.last_log_index = Some(last);
        m.membership_config = Arc::new(StoredMembership::new(Some(log_id(1)), membership));
        m
    }

    #[test]
    fn lag_is_what_the_leader_has_and_the_target_lacks() {
        let mut m = metrics(1, ServerState::Leader, 100);
        assert_eq!(lag(&m, r(2)), None, "no replication metrics: not a leader");
        m.replication = Some(BTreeMap::from([(r(2), Some(log_id(90))), (r(3), None)]));
        assert_eq!(lag(&m, r(2)), Some(10));
        assert_eq!(lag(&m, r(3)), Some(100), "nothing matched yet");
        assert_eq!(lag(&m, r(4)), None, "not replicated to");
        assert_eq!(matched(&m, r(2)), 90);
        assert_eq!(matched(&m, r(3)), 0);
    }

    fn ask() -> CampaignAsk {
        CampaignAsk {
            leader_id: r(1),
            term: 5,
            last_log_index: 100,
        }
    }

    #[test]
    fn a_follower_of_the_asking_leader_with_its_whole_log_campaigns() {
        assert_eq!(
            may_campaign(&metrics(2, ServerState::Follower, 100), &ask()),
            Ok(())
        );
        assert_eq!(
            may_campaign(&metrics(2, ServerState::Follower, 101), &ask()),
            Ok(())
        );
    }

    #[test]
    fn a_late_or_misdirected_campaign_request_is_refused() {
        let short = metrics(2, ServerState::Follower, 99);
        assert!(may_campaign(&short, &ask())
            .unwrap_err()
            .contains("up to 99"));
        let mut later = metrics(2, ServerState::Follower, 100);
        later.current_term = 6;
        assert!(may_campaign(&later, &ask()).is_err());
        let mut other = metrics(2, ServerState::Follower, 100);
        other.current_leader = Some(r(3));
        assert!(may_campaign(&other, &ask()).is_err());
        assert!(may_campaign(&metrics(2, ServerState::Candidate, 100), &ask()).is_err());
        assert!(may_campaign(&metrics(1, ServerState::Leader, 100), &ask()).is_err());
        let learner = metrics(4, ServerState::Learner, 100);
        assert!(may_campaign(&learner, &ask()).is_err());
    }

    #[test]
    fn timeouts_bound_each_paused_phase_by_an_election_timeout() {
        let t = TransferTimeouts::new(Duration::ZERO, Duration::from_secs(1));
        assert_eq!(t.total, Duration::from_secs(10));
        assert_eq!(t.pause, Duration::from_secs(1));
        let t = TransferTimeouts::new(Duration::from_millis(300), Duration::from_secs(1));
        assert_eq!(
            (t.pause, t.win),
            (Duration::from_millis(300), Duration::from_millis(300))
        );
    }

    #[test]
    fn errors_say_what_to_do_next() {
        let e = TransferError::TargetNotVoter {
            shard: 1,
            target: 4,
        };
        assert!(e.to_string().contains("add it first"), "{e}");
        let e = TransferError::TimedOut {
            target: 2,
            waited: Duration::from_secs(1),
            leader: Some(3),
        };
        assert!(e.to_string().contains("leader now: node 3"), "{e}");
    }
}
