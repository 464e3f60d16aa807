//! openraft's network for one shard: every RPC is a `RaftMessage` tagged
//! with the shard id, bincode inside, sent over the node's shared channel to
//! the peer ([`PeerPool`]). Each message carries this node's cluster id
//! ([`ClusterIdentity`]); a peer of another cluster refuses it.

use openraft::error::{
    Infallible, InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError,
    RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use openraft::RPCTypes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;
use tokio::sync::Notify;

use super::peer_pool::{PeerPool, MAX_MESSAGE_BYTES};
use super::type_config::{Entry, ReplicaId, TypeConfig};
use crate::cluster::ClusterIdentity;
use crate::codec;
use crate::storage::keys::ShardId;
use atoll_proto::raft_client::RaftClient;
use atoll_proto::RaftMessage;

/// Creates per-target clients for one shard's Raft group.
#[derive(Clone)]
pub struct ShardNetwork {
    shard: ShardId,
    /// This replica: the sender of every RPC.
    me: ReplicaId,
    peers: PeerPool,
    cluster: ClusterIdentity,
    /// Largest encoded AppendEntries; larger ones are cut by entry count.
    max_append_bytes: usize,
    /// Told when a follower refuses this replica's snapshot as stale.
    stale_snapshot: Arc<Notify>,
}

impl ShardNetwork {
    pub fn new(
        shard: ShardId,
        me: ReplicaId,
        peers: PeerPool,
        cluster: ClusterIdentity,
        max_append_bytes: usize,
    ) -> Self {
        Self {
            shard,
            me,
            peers,
            cluster,
            max_append_bytes,
            stale_snapshot: Arc::new(Notify::new()),
        }
    }

    /// Whom to tell when a follower refuses a snapshot as stale
    /// (`shard::snapshot_refresh` builds a newer one).
    pub fn on_stale_snapshot(mut self, notify: Arc<Notify>) -> Self {
        self.stale_snapshot = notify;
        self
    }
}

impl RaftNetworkFactory<TypeConfig> for ShardNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: ReplicaId, node: &BasicNode) -> Self::Network {
        PeerClient {
            shard: self.shard,
            me: self.me,
            target,
            addr: node.addr.clone(),
            peers: self.peers.clone(),
            cluster: self.cluster.clone(),
            max_append_bytes: self.max_append_bytes,
            stale_snapshot: self.stale_snapshot.clone(),
        }
    }
}

/// The connection from one shard replica to one peer replica.
pub struct PeerClient {
    shard: ShardId,
    me: ReplicaId,
    target: ReplicaId,
    addr: String,
    peers: PeerPool,
    cluster: ClusterIdentity,
    max_append_bytes: usize,
    stale_snapshot: Arc<Notify>,
}

#[derive(Clone, Copy)]
enum Rpc {
    Append,
    Vote,
    Snapshot,
}

type RpcResult<T, E> = Result<T, RPCError<ReplicaId, BasicNode, RaftError<ReplicaId, E>>>;

impl PeerClient {
    fn request(message: RaftMessage, option: &RPCOption) -> tonic::Request<RaftMessage> {
        let mut request = tonic::Request::new(message);
        // openraft bounds every RPC by `hard_ttl` itself and treats its own
        // expiry as a plain timeout (retried at once). The transport's
        // deadline sits a little later so that openraft's fires first: a
        // transport deadline would look like an unreachable peer and cost a
        // backoff.
        request.set_timeout(option.hard_ttl() + TRANSPORT_GRACE);
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
        self.send_payload(rpc, payload, false, option).await
    }

    /// Sends one encoded request; `leader_transfer` marks a vote asked for
    /// by the leader (see [`RaftMessage::leader_transfer`]).
    async fn send_payload<Resp, E>(
        &self,
        rpc: Rpc,
        payload: Vec<u8>,
        leader_transfer: bool,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
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
            leader_transfer,
            target_replica: self.target.0,
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
        #[cfg(madsim)]
        if fate.lose_reply {
            // The peer handled the request; only its answer is lost.
            let lost = std::io::Error::other("simulated loss of the reply");
            return Err(RPCError::Unreachable(Unreachable::new(&lost)));
        }
        let reply = reply.map_err(|status| self.classify(rpc, option, status))?;
        let result: Result<Resp, RaftError<ReplicaId, E>> =
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

impl PeerClient {
    /// Turns a transport failure into the error openraft acts on.
    fn classify<E: std::error::Error>(
        &self,
        rpc: Rpc,
        option: &RPCOption,
        status: tonic::Status,
    ) -> RPCError<ReplicaId, BasicNode, RaftError<ReplicaId, E>> {
        match status.code() {
            // The peer refused our snapshot as older than a split it has
            // seen, or log entries before its first snapshot: build a
            // newer snapshot and purge the log it covers (so the next
            // attempt sends it), and back off meanwhile.
            tonic::Code::Aborted if matches!(rpc, Rpc::Snapshot | Rpc::Append) => {
                tracing::info!(
                    shard = self.shard,
                    target = %self.target,
                    "refused: {}",
                    status.message()
                );
                self.stale_snapshot.notify_one();
                RPCError::Unreachable(Unreachable::new(&status))
            }
            // The peer does not host this shard (yet), cannot be reached, or
            // belongs to another cluster (FailedPrecondition): back off.
            tonic::Code::NotFound | tonic::Code::Unavailable | tonic::Code::FailedPrecondition => {
                RPCError::Unreachable(Unreachable::new(&status))
            }
            // Alive but slow: retry at once, no backoff.
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => RPCError::Timeout(Timeout {
                action: rpc.kind(),
                id: self.me,
                target: self.target,
                timeout: option.hard_ttl(),
            }),
            // Over a message size cap (ours or the peer's: tonic answers
            // OutOfRange): openraft resends fewer entries on
            // `PayloadTooLarge`, and only on that. (ResourceExhausted is not
            // a size cap: h2 uses it for a GOAWAY, e.g. too many small DATA
            // frames from a starved peer; that is a network error, retried
            // with the same entries.)
            tonic::Code::OutOfRange if matches!(rpc, Rpc::Append) => {
                tracing::warn!(
                    shard = self.shard,
                    target = %self.target,
                    "AppendEntries over the message cap ({status}); resending fewer entries"
                );
                RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(1))
            }
            _ => RPCError::Network(NetworkError::new(&status)),
        }
    }
}

impl Rpc {
    fn kind(self) -> RPCTypes {
        match self {
            Rpc::Append => RPCTypes::AppendEntries,
            Rpc::Vote => RPCTypes::Vote,
            Rpc::Snapshot => RPCTypes::InstallSnapshot,
        }
    }
}

/// How much later than openraft's own RPC timeout the transport gives up.
const TRANSPORT_GRACE: std::time::Duration = std::time::Duration::from_millis(50);

/// How many of `entries` (at least one) fit in `budget` encoded bytes.
pub fn entries_within(entries: &[Entry], budget: usize) -> u64 {
    let mut used = 0u64;
    let mut n = 0u64;
    for e in entries {
        used += bincode::serialized_size(e).unwrap_or(u64::MAX);
        if n > 0 && used > budget as u64 {
            break;
        }
        n += 1;
    }
    n.max(1)
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<ReplicaId>, Infallible> {
        let payload = codec::encode("raft request", &rpc)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        // Bound each AppendEntries by bytes, not only by entry count: a
        // batch of large entries would take longer than openraft's time
        // budget to write on the follower, or pass the message cap.
        if payload.len() > self.max_append_bytes && rpc.entries.len() > 1 {
            let fit = entries_within(&rpc.entries, self.max_append_bytes);
            tracing::debug!(
                shard = self.shard,
                target = %self.target,
                bytes = payload.len(),
                entries = rpc.entries.len(),
                fit,
                "AppendEntries over the byte budget; resending fewer entries"
            );
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(fit),
            ));
        }
        self.send_payload(Rpc::Append, payload, false, &option)
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<ReplicaId>, InstallSnapshotError> {
        self.call(Rpc::Snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<ReplicaId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<ReplicaId>, Infallible> {
        // The leader-transfer mark travels beside the payload: openraft
        // does not serialize it (third_party/PATCHES.md).
        let payload = codec::encode("raft request", &rpc)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.send_payload(Rpc::Vote, payload, rpc.leader_transfer, &option)
            .await
    }
}
