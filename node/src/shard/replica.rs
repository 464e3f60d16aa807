//! One shard replica: its Raft instance over the node's WAL (log) and
//! shared engine (state machine), and the
//! shard's range/epoch as the state machine last applied it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use atoll_proto as pb;
use openraft::ServerState;

use super::hibernation::Sleep;
use super::meta::ShardMeta;
use super::peer_beat::PeerBook;
use super::proposer::{Paused, Proposer, WriteResult};
use super::read_index::{ReadIndexResult, ReadIndexer};
use crate::cluster::ClusterIdentity;
use crate::error::NodeError;
use crate::raft::network::ShardNetwork;
use crate::raft::peer_pool::PeerPool;
use crate::raft::replica_id::{member_on, voter_on};
use crate::raft::type_config::{NodeId, Raft, ReplicaId};
use crate::state_machine::snapshot_store::SnapshotStore;
use crate::state_machine::view::{ApplyGate, ViewGuard};
use crate::state_machine::{self, SharedMeta, SharedPd, StateMachine};
use crate::storage::engine::SharedEngine;
use crate::storage::keys::{self, ShardId, SmMeta};
use crate::storage::{Flusher, LogStore};
use crate::wal::Wal;

pub struct Replica {
    pub id: ShardId,
    /// This replica's member id in the shard's Raft group.
    me: ReplicaId,
    pub raft: Raft,
    meta: SharedMeta,
    gate: ApplyGate,
    proposer: Proposer,
    reads: ReadIndexer,
    /// The PD state, on a replica of the PD group ([`crate::pd`]).
    pd: Option<SharedPd>,
    /// Created empty to join the shard and no snapshot installed yet: it
    /// refuses log entries (`service::raft`), so that it never replays the
    /// shard's history over a node that already hosts later parts of it.
    awaiting_snapshot: Arc<AtomicBool>,
    /// Created again after a removal from this node (a tombstone was
    /// there); it grants no vote before its first snapshot.
    reincarnated: bool,
    /// Whether the shard sleeps (its Raft timers stopped), and when it was
    /// last used ([`super::hibernation`]).
    pub sleep: Arc<Sleep>,
    book: Arc<PeerBook>,
}

/// What a replica needs from its node.
#[derive(Clone)]
pub struct ReplicaDeps {
    pub node_id: NodeId,
    pub engine: SharedEngine,
    pub flusher: Flusher,
    /// The node's write-ahead log, holding every shard's Raft log.
    pub wal: Wal,
    pub peers: PeerPool,
    pub cluster: ClusterIdentity,
    pub raft_config: Arc<openraft::Config>,
    /// Largest encoded AppendEntries sent to a peer.
    pub max_append_bytes: usize,
    /// Where the node keeps snapshots.
    pub snapshots: SnapshotStore,
    /// The longest a write waits for commit (`raft.write_timeout_ms`).
    pub write_timeout: std::time::Duration,
    /// Entries a leader keeps proposed at once (`raft.proposals_in_flight`).
    pub proposals_in_flight: usize,
    /// Where applied splits announce their children ([`super::split`]).
    pub splits: crate::state_machine::SplitSink,
    /// Peers' beats and this node's clock for sleeping shards
    /// ([`super::peer_beat`]).
    pub book: Arc<PeerBook>,
}

impl Replica {
    /// Opens the replica of shard `meta.id` from what the engine holds.
    pub async fn open(deps: &ReplicaDeps, meta: ShardMeta) -> Result<Self, NodeError> {
        let id = meta.id;
        let meta: SharedMeta = Arc::new(RwLock::new(meta));
        let log = LogStore::new(id, deps.wal.clone(), deps.flusher.clone());
        let gate = ApplyGate::new();
        let pd: Option<SharedPd> = (id == crate::pd::PD_SHARD).then(|| {
            let state = atoll_pd::state::PdState::new(
                deps.cluster.get(),
                atoll_pd::config::PdConfig::default(),
            );
            Arc::new(RwLock::new(state))
        });
        let sm = StateMachine::open(
            id,
            deps.engine.clone(),
            deps.flusher.clone(),
            meta.clone(),
            gate.clone(),
            deps.snapshots.clone(),
            pd.clone(),
        )?;
        // Read after the open, which finishes an interrupted install: that
        // install may have been the first snapshot this replica waited for.
        let awaiting = deps
            .engine
            .get(&keys::sm_meta(id, SmMeta::AwaitingSnapshot))?;
        let reincarnated = awaiting.as_deref() == Some(&[1]);
        #[cfg(madsim)]
        if awaiting.is_some()
            && deps
                .engine
                .get(&keys::sm_meta(id, SmMeta::Applied))?
                .is_some()
        {
            crate::sim_hooks::record_awaiting_with_state(id);
        }
        let awaiting_snapshot = Arc::new(AtomicBool::new(awaiting.is_some()));
        let sm = sm
            .with_split_sink(deps.splits.clone())
            .with_awaiting_snapshot(awaiting_snapshot.clone());
        let (mut log, mut sm) = (log, sm);
        cover_applied_by_snapshot(id, &mut log, &mut sm).await?;
        let me = own_id(deps, id, &mut sm).await?;
        let first_snapshot_due = sm.first_snapshot_due()?;
        let stale_snapshot = Arc::new(tokio::sync::Notify::new());
        let network = ShardNetwork::new(
            id,
            me,
            deps.peers.clone(),
            deps.cluster.clone(),
            deps.max_append_bytes,
        )
        .on_stale_snapshot(stale_snapshot.clone());
        let raft = Raft::new(me, staggered(&deps.raft_config, me), network, log, sm)
            .await
            .map_err(|e| NodeError::Raft(format!("starting shard {id}: {e}")))?;
        super::snapshot_refresh::spawn(raft.clone(), id, stale_snapshot);
        if first_snapshot_due {
            start_first_snapshot(&raft, id).await;
        }
        let sleep = Arc::new(Sleep::new(deps.book.now_ms()));
        Ok(Self {
            id,
            me,
            // A little longer than any caller waits, so a caller always
            // gets its own timeout answer, never the proposer giving up.
            proposer: Proposer::spawn(
                raft.clone(),
                deps.proposals_in_flight,
                deps.write_timeout + Duration::from_secs(1),
            ),
            reads: ReadIndexer::spawn(raft.clone()),
            raft,
            meta,
            gate,
            pd,
            awaiting_snapshot,
            reincarnated,
            sleep,
            book: deps.book.clone(),
        })
    }

    /// This replica's member id in the shard's Raft group.
    pub fn me(&self) -> ReplicaId {
        self.me
    }

    /// The shard is being used: it wakes if it sleeps, and stays awake for
    /// another quiet period ([`super::hibernation`]).
    pub fn touch(&self) {
        self.sleep.touch(&self.raft, self.book.now_ms());
    }

    /// Wakes the replica if it sleeps (a message of its group arrived).
    pub fn wake(&self, why: &str) {
        if self.sleep.is_asleep() {
            self.sleep.wake(&self.raft, why);
        }
    }

    /// Whether the replica may grant votes: not a new incarnation (the
    /// node was a member before, its replica was removed) before its first
    /// snapshot (see `shard::removal`).
    pub fn may_vote(&self) -> bool {
        #[cfg(all(madsim, feature = "sim-bugs"))]
        if crate::sim_hooks::bug(crate::sim_hooks::Bug::ReincarnationVotes) {
            return true;
        }
        !(self.reincarnated && self.awaiting_snapshot())
    }

    /// Stops every further write of the replica's state machine (it is
    /// being removed; its Raft is stopped already), after the one in
    /// flight.
    pub async fn close_state_machine(&self) {
        self.gate.close().await;
    }

    /// Whether the replica waits for its first snapshot (it was created
    /// empty to join the shard) and so takes no log entry yet.
    pub fn awaiting_snapshot(&self) -> bool {
        self.awaiting_snapshot.load(Ordering::Acquire)
    }

    /// The PD state, on a replica of the PD group.
    pub fn pd(&self) -> Option<&SharedPd> {
        self.pd.as_ref()
    }

    /// Whether this replica leads its group (as far as it knows).
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// Proposes a write (batched with concurrent ones, see
    /// [`super::proposer`]) and waits until it is applied.
    pub async fn propose(&self, req: crate::command::Request) -> WriteResult {
        self.touch();
        self.proposer.propose(req).await
    }

    /// Holds back new proposals until the guard is dropped (for a leader
    /// transfer, [`super::transfer`]); see [`Proposer::pause`].
    pub async fn pause_proposals(&self) -> Paused {
        self.proposer.pause().await
    }

    /// The ReadIndex barrier, shared with concurrent reads (see
    /// [`super::read_index`]).
    pub async fn ensure_linearizable(&self) -> ReadIndexResult {
        self.touch();
        self.reads.ensure_linearizable().await
    }

    /// A consistent view of the shard's data for a multi-key read: no
    /// applied batch lands while the guard is held (see
    /// [`state_machine::view`]).
    pub async fn consistent_view(&self) -> ViewGuard {
        self.gate.view().await
    }

    /// The shard's range and epoch as last applied.
    pub fn meta(&self) -> ShardMeta {
        state_machine::read_meta(&self.meta)
    }

    /// The wire descriptor: range, epoch, replicas and leader hint.
    pub fn descriptor(&self) -> pb::ShardDescriptor {
        let meta = self.meta();
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: Vec<ReplicaId> = membership.voter_ids().collect();
        let replicas = membership
            .nodes()
            .map(|(id, node)| pb::Replica {
                node_id: id.node(),
                addr: node.addr.clone(),
                voter: voters.contains(id),
                replica_id: id.0,
            })
            .collect();
        pb::ShardDescriptor {
            id: meta.id,
            start: meta.start,
            end: meta.end.unwrap_or_default(),
            epoch: Some(pb::Epoch {
                version: meta.epoch.version,
                conf_ver: meta.epoch.conf_ver,
            }),
            replicas,
            leader_id: m.current_leader.map(ReplicaId::node),
        }
    }

    /// Whether `node` is a voter of this shard (as this replica knows it).
    pub fn is_voter(&self, node: NodeId) -> bool {
        let m = self.raft.metrics().borrow().clone();
        voter_on(m.membership_config.membership(), node).is_some()
    }

    /// Whether no leader ever reached this replica: no term, no log, no
    /// snapshot (an empty replica created for an add-learner).
    pub fn never_contacted(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.current_term == 0 && m.last_log_index.is_none() && m.snapshot.is_none()
    }

    /// The member (voter or learner) on `node`, as this replica knows it.
    pub fn member_on(&self, node: NodeId) -> Option<ReplicaId> {
        let m = self.raft.metrics().borrow().clone();
        member_on(m.membership_config.membership(), node)
    }

    /// Waits, at most `within`, until this replica knows a leader of its
    /// shard other than `not`: the leader's replica id and address. `None`
    /// if there is none by then (or the replica shut down).
    pub async fn wait_for_leader(
        &self,
        within: Duration,
        not: Option<ReplicaId>,
    ) -> Option<(ReplicaId, Option<String>)> {
        let mut metrics = self.raft.metrics();
        let until = tokio::time::Instant::now() + within;
        loop {
            {
                let m = metrics.borrow_and_update();
                if let Some(leader) = m.current_leader.filter(|l| Some(*l) != not) {
                    let membership = m.membership_config.membership();
                    let addr = membership.get_node(&leader).map(|n| n.addr.clone());
                    return Some((leader, addr));
                }
                if m.state == ServerState::Shutdown {
                    return None;
                }
            }
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, metrics.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return None,
            }
        }
    }

    /// Address of a member of this shard, if known.
    pub fn member_addr(&self, member: ReplicaId) -> Option<String> {
        let m = self.raft.metrics().borrow().clone();
        m.membership_config
            .membership()
            .get_node(&member)
            .map(|n| n.addr.clone())
    }

    pub fn status(&self) -> pb::ShardStatus {
        let m = self.raft.metrics().borrow().clone();
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        pb::ShardStatus {
            shard: Some(self.descriptor()),
            role: role.to_string(),
            term: m.current_term,
            leader_id: m.current_leader.map(ReplicaId::node),
            last_log_index: m.last_log_index.unwrap_or(0),
            last_applied: m.last_applied.map(|l| l.index).unwrap_or(0),
            snapshot_index: m.snapshot.map(|l| l.index).unwrap_or(0),
            purged_index: m.purged.map(|l| l.index).unwrap_or(0),
            asleep: self.sleep.is_asleep(),
        }
    }
}

/// This node's member id in shard `shard`: pinned in the engine
/// (`SmMeta::ReplicaId`) when the replica was created to join the shard;
/// otherwise this node's member of the membership the state machine holds
/// (a founding member, or a split child, which shares its parent's ids),
/// pinned from then on; a founding id when neither names one.
async fn own_id(
    deps: &ReplicaDeps,
    shard: ShardId,
    sm: &mut StateMachine,
) -> Result<ReplicaId, NodeError> {
    use openraft::storage::RaftStateMachine;
    let key = keys::sm_meta(shard, SmMeta::ReplicaId);
    if let Some(bytes) = deps.engine.get(&key)? {
        let raw: [u8; 8] = bytes.as_slice().try_into().map_err(|_| {
            NodeError::Engine(crate::storage::EngineError::Corrupt(format!(
                "shard {shard}: the stored replica id has {} bytes, not 8",
                bytes.len()
            )))
        })?;
        return Ok(ReplicaId(u64::from_be_bytes(raw)));
    }
    let (_, membership) = sm.applied_state().await?;
    let me = member_on(membership.membership(), deps.node_id)
        .unwrap_or(ReplicaId::founding(deps.node_id));
    let mut batch = crate::storage::engine::WriteBatch::new();
    batch.put(key, me.0.to_be_bytes().to_vec());
    deps.engine.write(batch)?;
    Ok(me)
}

/// Before the Raft starts: if the state machine applied entries that the
/// log no longer holds (a power loss kept the state machine's last write but
/// not the log's unsynced tail: the leader applies an entry once a majority
/// has it, before its own flush), snapshot the state machine as it stands.
/// openraft then treats the log as purged up to the applied index, which it
/// requires a snapshot to cover; the previous snapshot may be older.
/// A split child starts with its log purged at index 0 (its initial state)
/// and no snapshot: openraft no longer builds that snapshot while the child
/// starts (openraft patch "A split child starts without building its snapshot"; it kept the child's keys unavailable for the
/// whole build, 0.3-0.7 s at 100k keys). It is built here in the
/// background, so that a replica added to the child later can be sent one;
/// until it exists, such a replica waits (openraft retries after a backoff).
/// (Decided from the state machine before the Raft instance starts: its
/// metrics are not filled in yet when `Raft::new` returns.) A build that
/// did not happen (it failed, or the trigger came too early) is asked for
/// again every second until the snapshot exists or the replica stops.
async fn start_first_snapshot(raft: &Raft, shard: ShardId) {
    if let Err(e) = raft.trigger().snapshot().await {
        tracing::warn!(shard, "cannot start the first snapshot: {e}");
        return;
    }
    let raft = raft.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if raft.metrics().borrow().snapshot.is_some() {
                return;
            }
            if raft.trigger().snapshot().await.is_err() {
                return; // the replica stopped
            }
        }
    });
}

/// openraft's settings for replica `me`: its snapshot threshold is moved by
/// up to a quarter, by its replica id, so that the replicas of a shard do not
/// all build their snapshot at the same index. When they did, the three
/// builds slowed every member of the quorum at once (12 ms write stalls at
/// one client with three nodes on one machine, docs/benchmarks.md).
fn staggered(base: &Arc<openraft::Config>, me: ReplicaId) -> Arc<openraft::Config> {
    match base.snapshot_policy {
        openraft::SnapshotPolicy::LogsSinceLast(n) => {
            let mut c = (**base).clone();
            c.snapshot_policy = openraft::SnapshotPolicy::LogsSinceLast(n + stagger(me, n / 4));
            Arc::new(c)
        }
        _ => base.clone(),
    }
}

/// A spread of `0..span` picked by the replica id: founding replicas 1, 2
/// and 3 (and replicas of later incarnations) land apart.
fn stagger(me: ReplicaId, span: u64) -> u64 {
    if span == 0 {
        return 0;
    }
    // Fibonacci hashing: consecutive ids spread over the whole range.
    (me.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % span
}

async fn cover_applied_by_snapshot(
    shard: ShardId,
    log: &mut LogStore,
    sm: &mut StateMachine,
) -> Result<(), NodeError> {
    use openraft::storage::{RaftLogStorage, RaftSnapshotBuilder, RaftStateMachine};
    let last_log = log.get_log_state().await?.last_log_id.map(|l| l.index);
    let (applied, _) = sm.applied_state().await?;
    let applied = applied.map(|l| l.index);
    let snapshot = sm
        .get_current_snapshot()
        .await?
        .and_then(|s| s.meta.last_log_id)
        .map(|l| l.index);
    // Index 0 is a shard's initial state (a split child, a bootstrapped
    // shard): nothing applied that a log ever held.
    if applied > last_log && applied > snapshot && applied > Some(0) {
        tracing::warn!(
            shard,
            ?applied,
            ?last_log,
            ?snapshot,
            "the state machine is ahead of the log (its tail was lost with the power); \
             snapshotting the applied state before starting"
        );
        sm.get_snapshot_builder().await.build_snapshot().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_founding_replicas_of_a_shard_snapshot_at_different_indexes() {
        for n in [100, 10_000] {
            let base = Arc::new(openraft::Config {
                snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(n),
                ..Default::default()
            });
            let at: Vec<u64> = (1..=3)
                .map(|r| match staggered(&base, ReplicaId(r)).snapshot_policy {
                    openraft::SnapshotPolicy::LogsSinceLast(m) => m,
                    _ => unreachable!("the policy kind is kept"),
                })
                .collect();
            assert!(at.iter().all(|m| (n..n + n / 4).contains(m)), "{at:?}");
            assert!(at[0] != at[1] && at[1] != at[2] && at[0] != at[2], "{at:?}");
        }
        let never = Arc::new(openraft::Config {
            snapshot_policy: openraft::SnapshotPolicy::Never,
            ..Default::default()
        });
        assert!(matches!(
            staggered(&never, ReplicaId(1)).snapshot_policy,
            openraft::SnapshotPolicy::Never
        ));
    }
}
