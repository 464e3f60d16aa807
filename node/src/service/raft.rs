//! The Raft service: decodes a shard-tagged openraft RPC, hands it to that
//! shard's Raft, and returns the bincode `Result`. A message from another
//! cluster is refused before it is decoded ([`crate::cluster::identity`]).
//! `TimeoutNow` is a leader's request that this replica campaign now, the
//! last step of a leader transfer ([`crate::shard::transfer`]). `Beat` is a
//! peer node's beat for sleeping shards ([`crate::shard::peer_beat`]); any
//! other message of a shard but a bare heartbeat wakes its replica here.
//!
//! A replica created empty to join a running shard refuses log entries
//! until its first snapshot (`Replica::awaiting_snapshot`): replaying the
//! shard's history from its first entry would re-run old splits and write
//! keys of ranges other shards on this node own now. It answers them with a
//! conflict, which moves the leader's search down to its purge point and so
//! to a snapshot, or, when there is nothing to conflict on, refuses them; the
//! leader answers that refusal with a new snapshot and a purge of the log it
//! covers (`shard::snapshot_refresh`). See [`AwaitingAnswer`].
//!
//! A message names the replica it is for (`target_replica`); a node whose
//! replica of the shard is another incarnation refuses it as not hosted.
//!
//! A snapshot whose range overlaps another shard hosted here is refused at
//! its first chunk ([`stale_snapshot`]): it is older than a split this node
//! has already seen, and installing it would delete that shard's data and
//! replay the split over it. The leader builds a newer one
//! (`shard::snapshot_refresh`).

use std::sync::Arc;

use atoll_proto as pb;
use atoll_proto::raft_server::Raft as RaftApi;
use atoll_proto::{RaftMessage, TimeoutNowRequest, TimeoutNowResponse};
use openraft::error::RaftError;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, VoteRequest,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use super::NodeCtx;
use crate::codec;
use crate::raft::type_config::{ReplicaId, TypeConfig};
use crate::shard::transfer::{self, CampaignAsk};
use crate::shard::Replica;
use crate::state_machine::snapshot;

pub struct RaftService {
    ctx: Arc<NodeCtx>,
}

impl RaftService {
    pub fn new(ctx: Arc<NodeCtx>) -> Self {
        Self { ctx }
    }

    async fn open<T: DeserializeOwned>(
        &self,
        msg: &RaftMessage,
    ) -> Result<(Arc<Replica>, T), Status> {
        let replica = self.ctx.host.get(msg.shard_id).ok_or_else(|| {
            Status::not_found(format!("shard {} is not hosted on this node", msg.shard_id))
        })?;
        // A message for another incarnation of this node's replica (an
        // older one a stale leader still lists, or a newer one not created
        // here yet) must not reach this one: replica ids are never reused.
        if msg.target_replica != 0 && msg.target_replica != replica.me().0 {
            return Err(Status::not_found(format!(
                "shard {}: this node hosts replica {}, not {}",
                msg.shard_id,
                replica.me(),
                ReplicaId(msg.target_replica)
            )));
        }
        // After the lookup: a node only learns its cluster id (trust on first
        // use) from a message for a shard it was given.
        self.ctx.cluster.admit(msg.cluster_id, "raft").await?;
        let req = codec::decode("raft request", &msg.payload)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok((replica, req))
    }
}

/// How a replica awaiting its first snapshot answers log entries.
#[derive(Debug, PartialEq, Eq)]
enum AwaitingAnswer {
    /// "I do not hold `prev_log_id`", answered here, never by the replica's
    /// Raft. The leader's search for the last entry both hold moves down,
    /// and once it passes the leader's purge point openraft sends the
    /// snapshot. A refusal alone taught openraft nothing: a split child's
    /// leader that had applied nothing past its initial snapshot had no newer
    /// one to build, so it resent the same entries for ever and, when its
    /// commit needed the empty replica, took no write (`moves` `mixed` seed
    /// 42051). Raft itself must not answer: when `prev_log_id` matched what
    /// the empty replica holds (a split child's index 0), it answered
    /// success, and the leader took entries the replica never stored as held
    /// (seed 44036). The leader cannot have counted anything on this replica
    /// yet (no request with entries ever reached its Raft, and heartbeats
    /// only repeat what the leader already counts), so a conflict never moves
    /// its count backwards.
    Conflict,
    /// Refused, and the leader builds a newer snapshot and purges the log it
    /// covers (`shard::snapshot_refresh`), so its next attempt is a snapshot.
    /// When `prev_log_id` is none there is nothing to conflict on (openraft
    /// takes a conflict at none as a bug). And when the replica holds state
    /// after all (a split child whose split this node applied after the
    /// empty replica was created, `splits` `crashes` seed 46005): the
    /// snapshot a conflict leads to may be no newer than the replica's own,
    /// which openraft then takes as installed without installing it (so the
    /// replica kept waiting, and the next conflict moved the leader's count
    /// backwards, for ever); a newer one is installed.
    Refuse,
}

/// `holds_nothing`: the replica's Raft has no log, no snapshot and nothing
/// applied.
fn awaiting_answer(req: &AppendEntriesRequest<TypeConfig>, holds_nothing: bool) -> AwaitingAnswer {
    match req.prev_log_id {
        Some(_) if holds_nothing => AwaitingAnswer::Conflict,
        _ => AwaitingAnswer::Refuse,
    }
}

fn reply<T: Serialize>(shard_id: u64, result: &T) -> Result<Response<RaftMessage>, Status> {
    let payload =
        codec::encode("raft response", result).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(RaftMessage {
        shard_id,
        payload,
        ..Default::default()
    }))
}

#[tonic::async_trait]
impl RaftApi for RaftService {
    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let msg = request.into_inner();
        let (replica, req): (_, AppendEntriesRequest<TypeConfig>) = self.open(&msg).await?;
        #[cfg(all(madsim, feature = "sim-bugs"))]
        let broken = crate::sim_hooks::bug(crate::sim_hooks::Bug::JoinWithoutSnapshot);
        #[cfg(not(all(madsim, feature = "sim-bugs")))]
        let broken = false;
        if replica.awaiting_snapshot() && !req.entries.is_empty() && !broken {
            let holds_nothing = {
                let m = replica.raft.metrics().borrow().clone();
                m.snapshot.is_none() && m.last_log_index.is_none() && m.last_applied.is_none()
            };
            return match awaiting_answer(&req, holds_nothing) {
                AwaitingAnswer::Conflict => {
                    let conflict: Result<AppendEntriesResponse<ReplicaId>, RaftError<ReplicaId>> =
                        Ok(AppendEntriesResponse::Conflict);
                    reply(msg.shard_id, &conflict)
                }
                AwaitingAnswer::Refuse => Err(Status::aborted(format!(
                    "shard {}: this replica joined empty and takes no log entry before its \
                     first snapshot; the leader sends one",
                    msg.shard_id
                ))),
            };
        }
        let carries_entries = !req.entries.is_empty();
        let result = replica.raft.append_entries(req).await;
        // Handled first, so the election timer restarts from this message.
        if carries_entries {
            replica.wake("log entries arrived");
        }
        reply(msg.shard_id, &result)
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let msg = request.into_inner();
        let (replica, mut req): (_, VoteRequest<ReplicaId>) = self.open(&msg).await?;
        if !replica.may_vote() {
            return Err(Status::aborted(format!(
                "shard {}: this replica was removed from this node and added back; it grants \
                 no vote before its first snapshot",
                msg.shard_id
            )));
        }
        req.leader_transfer = msg.leader_transfer;
        let result = replica.raft.vote(req).await;
        replica.wake("a candidate asked for a vote");
        reply(msg.shard_id, &result)
    }

    async fn timeout_now(
        &self,
        request: Request<TimeoutNowRequest>,
    ) -> Result<Response<TimeoutNowResponse>, Status> {
        let req = request.into_inner();
        let replica = self.ctx.host.get(req.shard_id).ok_or_else(|| {
            Status::not_found(format!("shard {} is not hosted on this node", req.shard_id))
        })?;
        self.ctx
            .cluster
            .admit(req.cluster_id, "timeout-now")
            .await?;
        let ask = CampaignAsk {
            leader_id: ReplicaId(req.leader_id),
            term: req.term,
            last_log_index: req.last_log_index,
        };
        replica.wake("asked to campaign");
        let refused = transfer::campaign(&replica.raft, &ask).await.err();
        if let Some(why) = &refused {
            tracing::info!(
                shard = req.shard_id,
                term = req.term,
                leader = req.leader_id,
                "not campaigning: {why}"
            );
        }
        Ok(Response::new(TimeoutNowResponse {
            refused: refused.unwrap_or_default(),
        }))
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let msg = request.into_inner();
        let (replica, req): (_, InstallSnapshotRequest<TypeConfig>) = self.open(&msg).await?;
        if let Some(refusal) = stale_snapshot(&self.ctx, &req) {
            tracing::info!(node = self.ctx.node_id(), shard = msg.shard_id, "{refusal}");
            return Err(Status::aborted(refusal));
        }
        let result = replica.raft.install_snapshot(req).await;
        replica.wake("a snapshot arrived");
        reply(msg.shard_id, &result)
    }

    async fn beat(
        &self,
        request: Request<pb::PeerBeat>,
    ) -> Result<Response<pb::PeerBeatReply>, Status> {
        let beat = request.into_inner();
        self.ctx.cluster.admit(beat.cluster_id, "beat").await?;
        let sleeping = crate::shard::peer_beat::handle(&self.ctx, &beat);
        Ok(Response::new(pb::PeerBeatReply { sleeping }))
    }
}

/// Why a snapshot must not be installed here, judged from its first chunk:
/// its range overlaps another shard this node hosts. Splits only narrow a
/// shard, so such a snapshot predates a split that this node has applied
/// (or whose child it got some other way), e.g. the first snapshot sent to
/// a replica just created empty.
fn stale_snapshot(ctx: &NodeCtx, req: &InstallSnapshotRequest<TypeConfig>) -> Option<String> {
    if req.offset != 0 {
        return None;
    }
    #[cfg(all(madsim, feature = "sim-bugs"))]
    if crate::sim_hooks::bug(crate::sim_hooks::Bug::JoinWithoutSnapshot) {
        return None;
    }
    let meta = snapshot::peek_shard(&req.data)?;
    let other = ctx.host.overlapping(&meta)?;
    Some(format!(
        "refused a snapshot of shard {} at version {} (index {:?}): its range overlaps \
         shard {} hosted here, so it predates a split; the leader sends a newer one",
        meta.id,
        meta.epoch.version,
        req.meta.last_log_id.map(|l| l.index),
        other.id
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload, LogId, Vote};

    fn entries_after(prev: Option<u64>) -> AppendEntriesRequest<TypeConfig> {
        let log_id = |index| LogId::new(CommittedLeaderId::new(1, ReplicaId(1)), index);
        let next = prev.map_or(0, |p| p + 1);
        AppendEntriesRequest {
            vote: Vote::new_committed(1, ReplicaId(1)),
            prev_log_id: prev.map(log_id),
            leader_commit: None,
            entries: vec![openraft::Entry {
                log_id: log_id(next),
                payload: EntryPayload::Blank,
            }],
        }
    }

    #[test]
    fn an_empty_replica_answers_entries_with_a_conflict_when_it_can() {
        // A split child's index 0: the empty replica may hold the same log
        // id, and must still not take entries after it.
        assert_eq!(
            awaiting_answer(&entries_after(Some(0)), true),
            AwaitingAnswer::Conflict
        );
        assert_eq!(
            awaiting_answer(&entries_after(Some(6)), true),
            AwaitingAnswer::Conflict
        );
        assert_eq!(
            awaiting_answer(&entries_after(None), true),
            AwaitingAnswer::Refuse
        );
        // A replica that holds a split child's state after all.
        assert_eq!(
            awaiting_answer(&entries_after(Some(0)), false),
            AwaitingAnswer::Refuse
        );
    }

    #[test]
    fn the_conflict_answer_decodes_as_openraft_s_own() {
        let answer: Result<AppendEntriesResponse<ReplicaId>, RaftError<ReplicaId>> =
            Ok(AppendEntriesResponse::Conflict);
        let bytes = codec::encode("raft response", &answer).expect("encode");
        let back: Result<AppendEntriesResponse<ReplicaId>, RaftError<ReplicaId>> =
            codec::decode("raft response", &bytes).expect("decode");
        assert!(matches!(back, Ok(AppendEntriesResponse::Conflict)));
    }
}
