//! The Raft service: decodes a shard-tagged openraft RPC, hands it to that
//! shard's Raft, and returns the bincode `Result`. A message from another
//! cluster is refused before it is decoded ([`crate::cluster::identity`]).
//! `TimeoutNow` is a leader's request that this replica campaign now, the
//! last step of a leader transfer ([`crate::shard::transfer`]).

use std::sync::Arc;

use atoll_proto::raft_server::Raft as RaftApi;
use atoll_proto::{RaftMessage, TimeoutNowRequest, TimeoutNowResponse};
use openraft::raft::VoteRequest;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use super::NodeCtx;
use crate::codec;
use crate::raft::type_config::NodeId;
use crate::shard::transfer::{self, CampaignAsk};
use crate::shard::Replica;

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
        // After the lookup: a node only learns its cluster id (trust on first
        // use) from a message for a shard it was given.
        self.ctx.cluster.admit(msg.cluster_id, "raft").await?;
        let req = codec::decode("raft request", &msg.payload)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok((replica, req))
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
        let (replica, req) = self.open(&msg).await?;
        reply(msg.shard_id, &replica.raft.append_entries(req).await)
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let msg = request.into_inner();
        let (replica, mut req): (_, VoteRequest<NodeId>) = self.open(&msg).await?;
        req.leader_transfer = msg.leader_transfer;
        reply(msg.shard_id, &replica.raft.vote(req).await)
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
            leader_id: req.leader_id,
            term: req.term,
            last_log_index: req.last_log_index,
        };
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
        let (replica, req) = self.open(&msg).await?;
        reply(msg.shard_id, &replica.raft.install_snapshot(req).await)
    }
}
