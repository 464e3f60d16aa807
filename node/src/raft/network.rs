//! openraft's network for one shard: every RPC is a `RaftMessage` tagged
//! with the shard id, bincode inside, sent over the node's shared channel to
//! the peer ([`PeerPool`]). Each message carries this node's cluster id
//! ([`ClusterIdentity`]); a peer of another cluster refuses it.

use openraft::error::{
    Infallible, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::peer_pool::{PeerPool, MAX_MESSAGE_BYTES};
use super::type_config::{NodeId, TypeConfig};
use crate::cluster::ClusterIdentity;
use crate::codec;
use crate::storage::keys::ShardId;
use atoll_proto::raft_client::RaftClient;
use atoll_proto::RaftMessage;

/// Creates per-target clients for one shard's Raft group.
#[derive(Clone)]
pub struct ShardNetwork {
    shard: ShardId,
    peers: PeerPool,
    cluster: ClusterIdentity,
}

impl ShardNetwork {
    pub fn new(shard: ShardId, peers: PeerPool, cluster: ClusterIdentity) -> Self {
        Self {
            shard,
            peers,
            cluster,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for ShardNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        PeerClient {
            shard: self.shard,
            target,
            addr: node.addr.clone(),
            peers: self.peers.clone(),
            cluster: self.cluster.clone(),
        }
    }
}

/// The connection from one shard replica to one peer replica.
pub struct PeerClient {
    shard: ShardId,
    target: NodeId,
    addr: String,
    peers: PeerPool,
    cluster: ClusterIdentity,
}

#[derive(Clone, Copy)]
enum Rpc {
    Append,
    Vote,
    Snapshot,
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl PeerClient {
    fn request(message: RaftMessage, option: &RPCOption) -> tonic::Request<RaftMessage> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(option.hard_ttl());
        request
    }

    async fn send(
        client: &mut RaftClient<tonic::transport::Channel>,
        rpc: Rpc,
        request: tonic::Request<RaftMessage>,
    ) -> Result<tonic::Response<RaftMessage>, tonic::Status> {
        match rpc {
            Rpc::Append => client.append_entries(request).await,
            Rpc::Vote => client.vote(request).await,
            Rpc::Snapshot => client.install_snapshot(request).await,
        }
    }

    async fn call<Req, Resp, E>(
        &self,
        rpc: Rpc,
        req: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let payload = codec::encode("raft request", req)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let channel = self
            .peers
            .channel(&self.addr)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let mut client = RaftClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let message = RaftMessage {
            shard_id: self.shard,
            payload,
            cluster_id: self.cluster.get(),
        };
        #[cfg(madsim)]
        let fate = crate::sim_hooks::rpc_fate();
        #[cfg(madsim)]
        {
            if !fate.delay.is_zero() {
                tokio::time::sleep(fate.delay).await;
            }
            if fate.drop {
                let lost = std::io::Error::other("simulated message loss");
                return Err(RPCError::Unreachable(Unreachable::new(&lost)));
            }
            if fate.duplicate {
                // A second delivery of the same message; its answer is ignored.
                let mut dup = client.clone();
                let request = Self::request(message.clone(), option);
                let _ = Self::send(&mut dup, rpc, request).await;
            }
        }
        let reply = Self::send(&mut client, rpc, Self::request(message, option)).await;
        let reply = reply.map_err(|status| match status.code() {
            // The peer does not host this shard (yet): like an unreachable node.
            // FailedPrecondition: the peer belongs to another cluster; also
            // unreachable, so openraft backs off instead of retrying at once.
            tonic::Code::NotFound
            | tonic::Code::FailedPrecondition
            | tonic::Code::Unavailable
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Cancelled => RPCError::Unreachable(Unreachable::new(&status)),
            _ => RPCError::Network(NetworkError::new(&status)),
        })?;
        let result: Result<Resp, RaftError<NodeId, E>> =
            codec::decode("raft response", &reply.into_inner().payload)
                .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                BasicNode::new(&self.addr),
                e,
            ))
        })
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, Infallible> {
        self.call(Rpc::Append, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call(Rpc::Snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, Infallible> {
        self.call(Rpc::Vote, &rpc, &option).await
    }
}
