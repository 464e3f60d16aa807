//! Operator calls: [`AdminClient`] talks to the Admin service of one node;
//! [`cluster_status`] asks every node; [`on_leader`] finds the node that
//! accepts a leader-only call by following `NotLeader` hints.
//! [`AdminClient::transfer_leader`] answers a transfer that was tried and
//! did not happen as an inner `Err(TransferFailed)`, apart from failures of
//! the call itself.

use std::collections::{BTreeSet, VecDeque};
use std::future::Future;
use std::time::Duration;

use atoll_proto::transfer_leader_failure::Reason;
use atoll_proto::{
    AddLearnerRequest, AdminResult, ChangeMembershipRequest, CompactRequest, InitClusterRequest,
    Replica, ShardDescriptor, SplitShardRequest, StatusRequest, StatusResponse,
    TransferLeaderRequest,
};
use tonic::transport::Channel;

use crate::error::Error;
use crate::pool::{admin_client, check_addr, lazy_channel};

/// Default time an admin call may take: membership changes wait for a
/// commit, so this is longer than a KV request timeout.
pub const DEFAULT_ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The Admin service of one node. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AdminClient {
    addr: String,
    channel: Channel,
    timeout: Duration,
}

impl AdminClient {
    /// A client for the node at `addr` (`host:port`). Connects on first use;
    /// fails only on a malformed address.
    pub async fn connect(addr: impl Into<String>) -> Result<AdminClient, Error> {
        let addr = addr.into();
        check_addr(&addr)?;
        let channel = lazy_channel(&addr, DEFAULT_ADMIN_TIMEOUT)?;
        Ok(AdminClient {
            addr,
            channel,
            timeout: DEFAULT_ADMIN_TIMEOUT,
        })
    }

    /// Sets the time each call may take.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The node's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Initializes the cluster with these voters `(node id, address)`. Send
    /// it to one of the members.
    pub async fn init_cluster(&self, members: &[(u64, String)]) -> Result<(), Error> {
        let members = members
            .iter()
            .map(|(node_id, addr)| Replica {
                node_id: *node_id,
                addr: addr.clone(),
                voter: true,
            })
            .collect();
        let req = InitClusterRequest { members };
        self.admin_call(|mut c| async move { c.init_cluster(req).await })
            .await
    }

    /// Adds node `node_id` at `addr` as a learner of `shard_id`. Leader only.
    pub async fn add_learner(&self, shard_id: u64, node_id: u64, addr: &str) -> Result<(), Error> {
        let req = AddLearnerRequest {
            shard_id,
            node_id,
            addr: addr.to_string(),
        };
        self.admin_call(|mut c| async move { c.add_learner(req).await })
            .await
    }

    /// Makes `voters` the complete voter set of `shard_id`. Leader only.
    pub async fn change_membership(&self, shard_id: u64, voters: &[u64]) -> Result<(), Error> {
        let req = ChangeMembershipRequest {
            shard_id,
            voters: voters.to_vec(),
        };
        self.admin_call(|mut c| async move { c.change_membership(req).await })
            .await
    }

    /// Moves the leadership of `shard_id` to voter `target`. Leader only
    /// (follow `NotLeader` with [`on_leader`]). Writes to the shard pause
    /// briefly and resume on the new leader; a transfer that did not happen
    /// (target not a voter, lagging, unreachable, or not elected in time) is
    /// the inner `Err`, and writes have resumed on whoever leads.
    pub async fn transfer_leader(
        &self,
        shard_id: u64,
        target: u64,
    ) -> Result<Result<Transferred, TransferFailed>, Error> {
        // The node gives up a little before this call does, so its answer
        // says why rather than the call timing out.
        let req = TransferLeaderRequest {
            shard_id,
            target_node: target,
            timeout_ms: (self.timeout.as_millis() as u64).saturating_mul(4) / 5,
        };
        let reply = self
            .call(|mut c| async move { c.transfer_leader(req).await })
            .await?;
        if let Some(error) = reply.error {
            return Err(Error::from_wire(&error));
        }
        Ok(match reply.failure {
            Some(f) => Err(TransferFailed {
                reason: TransferFailure::from_wire(f.reason()),
                message: f.message,
                leader_id: f.leader_id,
            }),
            None => Ok(Transferred {
                shard_id,
                leader_id: reply.leader_id,
                term: reply.term,
                paused: Duration::from_millis(reply.paused_ms),
            }),
        })
    }

    /// Splits `shard_id` at `key` (None: about its middle key) and returns
    /// the shard's new descriptor and the new shard's. Leader only (follow
    /// `NotLeader` with [`on_leader`]).
    pub async fn split_shard(
        &self,
        shard_id: u64,
        key: Option<&[u8]>,
    ) -> Result<(ShardDescriptor, ShardDescriptor), Error> {
        let req = SplitShardRequest {
            shard_id,
            split_key: key.map(<[u8]>::to_vec).unwrap_or_default(),
        };
        let reply = self
            .call(|mut c| async move { c.split_shard(req).await })
            .await?;
        if let Some(error) = reply.error {
            return Err(Error::from_wire(&error));
        }
        match (reply.left, reply.right) {
            (Some(left), Some(right)) => Ok((left, right)),
            _ => Err(Error::Protocol(
                "a split reply without the two descriptors".into(),
            )),
        }
    }

    /// Snapshots `shard_id` on this node now and purges the log it covers.
    pub async fn compact(&self, shard_id: u64) -> Result<(), Error> {
        let req = CompactRequest { shard_id };
        self.admin_call(|mut c| async move { c.compact(req).await })
            .await
    }

    /// The node's id, address and the state of every shard replica it hosts.
    pub async fn status(&self) -> Result<StatusResponse, Error> {
        self.call(|mut c| async move { c.status(StatusRequest {}).await })
            .await
    }

    /// A call whose reply is an [`AdminResult`].
    async fn admin_call<F, Fut>(&self, f: F) -> Result<(), Error>
    where
        F: FnOnce(atoll_proto::admin_client::AdminClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<AdminResult>, tonic::Status>>,
    {
        match self.call(f).await?.error {
            None => Ok(()),
            Some(error) => Err(Error::from_wire(&error)),
        }
    }

    async fn call<T, F, Fut>(&self, f: F) -> Result<T, Error>
    where
        F: FnOnce(atoll_proto::admin_client::AdminClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let client = admin_client(self.channel.clone());
        match tokio::time::timeout(self.timeout, f(client)).await {
            Ok(Ok(reply)) => Ok(reply.into_inner()),
            Ok(Err(status)) => Err(Error::from_status(&self.addr, &status)),
            Err(_) => Err(Error::Transport(format!(
                "{}: no reply within {:?}",
                self.addr, self.timeout
            ))),
        }
    }
}

/// A leader transfer that happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transferred {
    pub shard_id: u64,
    /// The new leader: the target.
    pub leader_id: u64,
    /// The new leader's term.
    pub term: u64,
    /// How long the old leader held back new proposals.
    pub paused: Duration,
}

/// A leader transfer that was tried and did not happen; the shard serves
/// writes on whoever leads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TransferFailed {
    pub reason: TransferFailure,
    /// The node's explanation, with what to do next.
    pub message: String,
    /// The leader when the node gave up, if known.
    pub leader_id: Option<u64>,
}

/// Why a leader transfer did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferFailure {
    /// The target is a learner or not a member: a mistake of the caller.
    TargetNotVoter,
    /// The target did not receive the whole log in time.
    TargetLagging,
    /// The target could not be asked to campaign.
    TargetUnreachable,
    /// The target campaigned but was not elected in time.
    TimedOut,
    /// A reason this client does not know (a newer node).
    Other,
}

impl TransferFailure {
    fn from_wire(reason: Reason) -> Self {
        match reason {
            Reason::TargetNotVoter => Self::TargetNotVoter,
            Reason::TargetLagging => Self::TargetLagging,
            Reason::TargetUnreachable => Self::TargetUnreachable,
            Reason::TimedOut => Self::TimedOut,
            Reason::Unspecified => Self::Other,
        }
    }

    /// A name for JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TargetNotVoter => "target_not_voter",
            Self::TargetLagging => "target_lagging",
            Self::TargetUnreachable => "target_unreachable",
            Self::TimedOut => "timed_out",
            Self::Other => "other",
        }
    }
}

/// What one node said to a status request.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeStatus {
    /// The endpoint that was asked.
    pub endpoint: String,
    /// Its status, or why it could not be had (unreachable, ...).
    pub result: Result<StatusResponse, Error>,
}

/// Asks every endpoint for its status at once. An unreachable node is
/// reported in its [`NodeStatus`], never as a failure of the whole call.
pub async fn cluster_status(
    endpoints: impl IntoIterator<Item = impl Into<String>>,
    timeout: Duration,
) -> Vec<NodeStatus> {
    let asks = endpoints.into_iter().map(|endpoint| async move {
        let endpoint: String = endpoint.into();
        let result = match AdminClient::connect(endpoint.clone()).await {
            Ok(client) => client.with_timeout(timeout).status().await,
            Err(e) => Err(e),
        };
        NodeStatus { endpoint, result }
    });
    futures::future::join_all(asks).await
}

/// Runs a leader-only admin call: tries `endpoints` in order, jumps to the
/// leader a `NotLeader` reply names, moves on from unreachable nodes, and
/// returns the first answer that is neither. When all fail, returns the
/// last error.
pub async fn on_leader<T, F, Fut>(
    endpoints: &[String],
    timeout: Duration,
    mut call: F,
) -> Result<T, Error>
where
    F: FnMut(AdminClient) -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let mut queue: VecDeque<String> = endpoints.iter().cloned().collect();
    let mut tried = BTreeSet::new();
    let mut last = Error::NoEndpoints;
    while let Some(addr) = queue.pop_front() {
        if !tried.insert(addr.clone()) {
            continue;
        }
        let client = match AdminClient::connect(addr).await {
            Ok(client) => client.with_timeout(timeout),
            Err(e) => {
                last = e;
                continue;
            }
        };
        match call(client).await {
            Err(Error::NotLeader {
                shard_id,
                leader_id,
                leader_addr,
            }) => {
                if let Some(leader) = &leader_addr {
                    queue.push_front(leader.clone());
                }
                last = Error::NotLeader {
                    shard_id,
                    leader_id,
                    leader_addr,
                };
            }
            Err(e @ (Error::Transport(_) | Error::Unavailable(_))) => last = e,
            other => return other,
        }
    }
    Err(last)
}
