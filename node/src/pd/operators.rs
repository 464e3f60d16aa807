//! The PD leader's operators at work (issue 9, item 3): each round the
//! stored shard reports confirm or cancel running operators, stuck steps
//! time out, the scheduler (`atoll_pd::scheduler`: replica repair, then
//! replica and leader balance) admits new ones, and the current step of
//! each is sent to the shard's leader (`Admin.ChangeReplica`,
//! `Admin.TransferLeader`; `shard::membership` runs them there).
//!
//! Operators are leader-local: a new PD leader starts with none and its
//! checkers rebuild what is still needed from the replicated state. A step
//! is sent again every [`RESEND_ROUNDS`] rounds until a report confirms it
//! (every step is idempotent); one call per shard is in flight at a time.
//! Splits stay with `duties` (the leader picks the key), so the
//! scheduler's split checker is off here.
//!
//! A replica an operator adds gets an id that is never reused
//! (`raft::replica_id`): the PD leader keeps a pool of replica numbers
//! committed by `Command::AllocIds` and refills it in the background.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use atoll_pd::ids::{IdKind, IdPool, IdRange, IdSource};
use atoll_pd::node::NodeId;
use atoll_pd::operator::{OperatorSet, Outcome, Step};
use atoll_pd::scheduler::Scheduler;
use atoll_pd::shard::ShardId;
use atoll_pd::state::PdState;
use atoll_proto as pb;
use atoll_proto::admin_client::AdminClient;
use tokio::task::JoinHandle;

use crate::error::KvError;
use crate::raft::type_config::ReplicaId;
use crate::service::NodeCtx;
use crate::state_machine::{read_pd, SharedPd};
use futures::FutureExt;

/// Rounds after which an unconfirmed step is sent again.
const RESEND_ROUNDS: u64 = 5;

/// Replica numbers fetched at a time, and the level that starts a refill.
const POOL_REFILL: u64 = 64;
const POOL_LOW: u64 = 16;

/// Replica ids for the scheduler: a committed replica number from the
/// pool, with the node in its low bits as the Raft groups use it
/// (`raft::replica_id`). Shard ids for splits are not handed out here
/// (splits run through `duties`).
struct PooledIds<'a>(&'a mut IdPool);

impl IdSource for PooledIds<'_> {
    fn next_id(&mut self, kind: IdKind) -> Option<u64> {
        match kind {
            IdKind::Replica => self.0.next_id(kind),
            IdKind::Shard | IdKind::Node => None,
        }
    }

    fn replica_id(&mut self, _shard: ShardId, node: NodeId) -> Option<u64> {
        let number = self.0.next_id(IdKind::Replica)?;
        ReplicaId::new(number, node).map(|r| r.0)
    }
}

/// The PD leader's running operators and the calls carrying their steps.
pub struct Operators {
    set: OperatorSet,
    scheduler: Scheduler,
    round: u64,
    /// Per shard: the step index last sent, the round, and the call.
    sent: BTreeMap<ShardId, (usize, u64, JoinHandle<()>)>,
    /// Committed replica numbers (they stay valid across PD leader changes:
    /// the allocator never hands them out again).
    ids: IdPool,
    refill: Option<JoinHandle<Result<IdRange, KvError>>>,
}

impl Default for Operators {
    fn default() -> Self {
        Self {
            set: OperatorSet::new(),
            scheduler: Scheduler {
                repair: true,
                split: false,
                balance: true,
            },
            round: 0,
            sent: BTreeMap::new(),
            ids: IdPool::default(),
            refill: None,
        }
    }
}

impl Operators {
    /// Drops every operator (this node stopped leading the PD).
    pub fn clear(&mut self) {
        for (_, (_, _, call)) in std::mem::take(&mut self.sent) {
            call.abort();
        }
        self.set = OperatorSet::new();
    }

    /// One round on the PD leader.
    pub fn round(&mut self, ctx: &Arc<NodeCtx>, state: &SharedPd, now_ms: u64) {
        self.round += 1;
        self.refill_ids(ctx);
        let pd: PdState = read_pd(state, Clone::clone);
        let mut ended: Vec<Outcome> = pd
            .shards()
            .filter_map(|shard| self.set.observe(shard, now_ms))
            .collect();
        ended.extend(self.set.tick(&pd, now_ms));
        for o in ended {
            tracing::info!(
                node = ctx.node_id(),
                shard = o.shard,
                kind = ?o.kind,
                status = ?o.status,
                "operator ended"
            );
        }
        let created = self
            .scheduler
            .run(&pd, &mut self.set, &mut PooledIds(&mut self.ids), now_ms)
            .created;
        for (shard, kind) in created {
            let steps = self.set.get(shard).map(|op| op.steps().to_vec());
            tracing::info!(
                node = ctx.node_id(),
                shard,
                ?kind,
                ?steps,
                "operator created"
            );
        }
        self.sent.retain(|shard, _| self.set.get(*shard).is_some());
        for op in self.set.iter() {
            let (Some(step), index) = (op.current_step(), op.current_index()) else {
                continue;
            };
            if let Some((i, at, call)) = self.sent.get(&op.shard) {
                let fresh_step = *i != index;
                let due = self.round >= at + RESEND_ROUNDS;
                if !call.is_finished() || !(fresh_step || due) {
                    continue;
                }
            }
            let Some(target) = Target::of(&pd, op.shard) else {
                continue;
            };
            // A first step is made for the shard's membership version when
            // the operator was created; the leader refuses it at another
            // (later steps follow changes of the operator's own).
            let expected = if index == 0 { op.epoch().conf_ver } else { 0 };
            let call = tokio::spawn(send_step(ctx.clone(), target, step.clone(), expected));
            self.sent.insert(op.shard, (index, self.round, call));
        }
    }
}

impl Operators {
    /// Takes a finished refill into the pool, and starts one when the pool
    /// runs low.
    fn refill_ids(&mut self, ctx: &Arc<NodeCtx>) {
        if let Some(call) = self.refill.take_if(|c| c.is_finished()) {
            match call.now_or_never() {
                Some(Ok(Ok(range))) => self.ids.refill(IdKind::Replica, range),
                Some(Ok(Err(e))) => tracing::debug!("no replica ids from the PD yet: {e}"),
                Some(Err(e)) => tracing::warn!("replica id refill task failed: {e}"),
                None => {}
            }
        }
        if self.refill.is_none() && self.ids.available(IdKind::Replica) < POOL_LOW {
            let ctx = ctx.clone();
            self.refill = Some(tokio::spawn(async move {
                super::ids::alloc_ids(&ctx, IdKind::Replica, POOL_REFILL).await
            }));
        }
    }
}

/// Where a step goes: the shard's leader, as the PD last heard.
struct Target {
    shard: ShardId,
    leader_addr: String,
    /// Node addresses, for steps naming a node.
    addrs: BTreeMap<NodeId, String>,
}

impl Target {
    fn of(pd: &PdState, shard: ShardId) -> Option<Self> {
        let info = pd.shard(shard)?;
        let leader = info.desc.leader_node()?;
        let leader_addr = pd.node(leader)?.address.clone();
        let addrs = pd.nodes().map(|n| (n.id, n.address.clone())).collect();
        Some(Self {
            shard,
            leader_addr,
            addrs,
        })
    }

    fn addr(&self, node: NodeId) -> String {
        self.addrs.get(&node).cloned().unwrap_or_default()
    }
}

/// How long the shard leader may take over a leader transfer.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(10);

async fn send_step(ctx: Arc<NodeCtx>, to: Target, step: Step, expected_conf_ver: u64) {
    let shard = to.shard;
    let change = |kind: pb::ReplicaChange, node: NodeId| pb::ChangeReplicaRequest {
        shard_id: shard,
        change: kind as i32,
        node_id: node,
        addr: to.addr(node),
        replica_id: 0,
        expected_conf_ver: 0,
    };
    let channel = match ctx.peers.channel(&to.leader_addr) {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(shard, "operator step: no channel to the leader: {e}");
            return;
        }
    };
    let mut admin = AdminClient::new(channel);
    let result = match &step {
        Step::AddLearner { node, replica } => admin
            .change_replica(pb::ChangeReplicaRequest {
                replica_id: *replica,
                expected_conf_ver,
                ..change(pb::ReplicaChange::AddLearner, *node)
            })
            .await
            .map(|r| r.into_inner().error.map(|e| e.message)),
        Step::PromoteLearner { node, .. } => admin
            .change_replica(change(pb::ReplicaChange::Promote, *node))
            .await
            .map(|r| r.into_inner().error.map(|e| e.message)),
        Step::RemoveReplica { node, .. } => admin
            .change_replica(change(pb::ReplicaChange::Remove, *node))
            .await
            .map(|r| r.into_inner().error.map(|e| e.message)),
        Step::LeaveJoint => admin
            .change_replica(change(pb::ReplicaChange::LeaveJoint, 0))
            .await
            .map(|r| r.into_inner().error.map(|e| e.message)),
        Step::TransferLeader { node, .. } => admin
            .transfer_leader(pb::TransferLeaderRequest {
                shard_id: shard,
                target_node: *node,
                timeout_ms: TRANSFER_TIMEOUT.as_millis() as u64,
            })
            .await
            .map(|r| {
                let r = r.into_inner();
                r.error
                    .map(|e| e.message)
                    .or(r.failure.map(|f| format!("{f:?}")))
            }),
        Step::Split { .. } => Ok(Some("splits are asked for by the PD duties".into())),
    };
    match result {
        Ok(None) => tracing::info!(node = ctx.node_id(), shard, ?step, "operator step done"),
        Ok(Some(why)) => tracing::info!(shard, ?step, "operator step not done: {why}"),
        Err(status) => tracing::debug!(shard, ?step, "operator step: {}", status.message()),
    }
}
