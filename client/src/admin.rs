//! Operator calls: [`AdminClient`] talks to the Admin service of one node
//! (and reads the placement driver's view through it);
//! [`cluster_status`] asks every node; [`cluster_state`] asks the first
//! node that answers for the placement driver's view; [`on_leader`] finds
//! the node that accepts a leader-only call by following `NotLeader` hints;
//! [`split_at`] splits whichever shard holds a key; [`set_node_state`]
//! drains, un-drains or removes a node; [`add_node`] registers a node
//! before it starts.
//! [`AdminClient::transfer_leader`] answers a transfer that was tried and
//! did not happen as an inner `Err(TransferFailed)`, apart from failures of
//! the call itself.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::time::Duration;

use atoll_proto::transfer_leader_failure::Reason;
use atoll_proto::{
    AddLearnerRequest, AddNodeRequest, AdminResult, ChangeMembershipRequest, ClusterStateRequest,
    CompactRequest, InitClusterRequest, Replica, SetNodeStateRequest, ShardDescriptor,
    SplitShardRequest, StatusRequest, StatusResponse, TransferLeaderRequest,
};
use tonic::transport::Channel;

use crate::error::{EndpointFailure, Error, ServerErrorKind};
use crate::pd_view::ClusterState;
use crate::pool::{admin_client, check_addr, lazy_channel, pd_client};

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
                // Founding members: their replica ids are their node ids.
                replica_id: 0,
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

    /// The placement driver's view of the cluster. Any node answers: it
    /// forwards the read to the PD leader, and says `Unavailable` when the
    /// PD has no leader or no quorum.
    pub async fn cluster_state(&self) -> Result<ClusterState, Error> {
        let mut pd = pd_client(self.channel.clone());
        let reply = self
            .within_timeout(pd.cluster_state(ClusterStateRequest {}))
            .await?;
        ClusterState::from_wire(&self.addr, reply)
    }

    /// Asks the placement driver (through this node) to move `node` to
    /// `target`. `force` removes a node that still holds replicas (they
    /// are then replaced elsewhere).
    pub async fn set_node_state(
        &self,
        node: u64,
        target: NodeTarget,
        force: bool,
    ) -> Result<NodeStateChange, Error> {
        let mut pd = pd_client(self.channel.clone());
        let reply = self
            .within_timeout(pd.set_node_state(self.with_deadline(SetNodeStateRequest {
                node_id: node,
                target: target.to_wire() as i32,
                force,
            })))
            .await?;
        match reply.error {
            Some(e) => Err(Error::from_wire(&e)),
            None => Ok(NodeStateChange {
                node,
                from: reply.from,
                to: reply.to,
            }),
        }
    }

    /// Asks the placement driver (through this node) to register a node
    /// at `address` before it starts, with `labels`.
    pub async fn add_node(
        &self,
        address: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<AddedNode, Error> {
        let mut pd = pd_client(self.channel.clone());
        let reply = self
            .within_timeout(pd.add_node(self.with_deadline(AddNodeRequest {
                address: address.to_string(),
                labels: labels.clone().into_iter().collect(),
            })))
            .await?;
        match reply.error {
            Some(e) => Err(Error::from_wire(&e)),
            None => Ok(AddedNode {
                node: reply.node_id,
                address: address.to_string(),
                fresh: reply.fresh,
                state: reply.state,
            }),
        }
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
        self.within_timeout(f(admin_client(self.channel.clone())))
            .await
    }

    /// `message` with this client's timeout as its gRPC deadline: the node
    /// proposes nothing for it after that (a drain that timed out is not
    /// applied later, behind the caller's next request).
    fn with_deadline<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.timeout);
        request
    }

    /// Runs one RPC to this node, bounded by the client's timeout.
    async fn within_timeout<T>(
        &self,
        rpc: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, Error> {
        match tokio::time::timeout(self.timeout, rpc).await {
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

/// The placement driver's view of the cluster, from the first of
/// `endpoints` that answers it (any node can: it forwards to the PD
/// leader). Tries them in order, one at a time; each gets an equal share of
/// what is left of `timeout`, so a silent node leaves time for the others.
/// A malformed endpoint fails at once with [`Error::InvalidArgument`]; when
/// no endpoint answers, [`Error::NoNodeAnswered`] says what each did.
pub async fn cluster_state(endpoints: &[String], timeout: Duration) -> Result<ClusterState, Error> {
    first_answer(endpoints, timeout, |client| async move {
        client.cluster_state().await
    })
    .await
}

/// Where `atollctl node drain | up | remove` moves a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeTarget {
    Up,
    Draining,
    Removed,
}

impl NodeTarget {
    fn to_wire(self) -> atoll_proto::NodeTarget {
        match self {
            Self::Up => atoll_proto::NodeTarget::NodeUp,
            Self::Draining => atoll_proto::NodeTarget::NodeDraining,
            Self::Removed => atoll_proto::NodeTarget::NodeRemoved,
        }
    }
}

/// A node state change the placement driver made (states as in
/// [`crate::pd_view::NodeInfo`]: up, draining, down, removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStateChange {
    pub node: u64,
    pub from: String,
    pub to: String,
}

/// Moves `node` to `target` through the first of `endpoints` that
/// answers. A refusal (the node still holds replicas, removing it would
/// break a quorum, unknown node) is returned at once as
/// [`Error::InvalidArgument`] with what to do next.
pub async fn set_node_state(
    endpoints: &[String],
    timeout: Duration,
    node: u64,
    target: NodeTarget,
    force: bool,
) -> Result<NodeStateChange, Error> {
    first_answer(endpoints, timeout, |client| async move {
        client.set_node_state(node, target, force).await
    })
    .await
}

/// A node [`add_node`] registered, or found already registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedNode {
    pub node: u64,
    pub address: String,
    /// False when a node (not removed) already had the address: `node` is
    /// its id. Also false when this call's first attempt registered the
    /// node but its answer was lost, and a retry found it.
    pub fresh: bool,
    /// Its state now (as in [`crate::pd_view::NodeInfo`]): "joining" until
    /// the node is first heard from.
    pub state: String,
}

/// Registers a node at `address` (`host:port`, the address it will
/// advertise) with the placement driver before it starts, through the
/// first of `endpoints` that answers, so its id is known in advance and it
/// carries `labels`. The node is "joining" (no replicas) until it starts
/// with `--join` and the same address. An address a node already has gets
/// that node's id back. A malformed address or label is
/// [`Error::InvalidArgument`] at once.
pub async fn add_node(
    endpoints: &[String],
    timeout: Duration,
    address: &str,
    labels: &BTreeMap<String, String>,
) -> Result<AddedNode, Error> {
    first_answer(endpoints, timeout, |client| async move {
        client.add_node(address, labels).await
    })
    .await
}

/// The answer of the first of `endpoints` that gives one, asking them in
/// order; each gets an equal share of what is left of `timeout`, so a
/// silent node leaves time for the others. An invalid argument is an
/// answer too (every node would say the same).
async fn first_answer<T, F, Fut>(
    endpoints: &[String],
    timeout: Duration,
    call: F,
) -> Result<T, Error>
where
    F: Fn(AdminClient) -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    if endpoints.is_empty() {
        return Err(Error::NoEndpoints);
    }
    let mut clients = Vec::with_capacity(endpoints.len());
    for endpoint in endpoints {
        clients.push(AdminClient::connect(endpoint.clone()).await?);
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut tried = Vec::new();
    for (i, client) in clients.into_iter().enumerate() {
        let share = fair_share(deadline, endpoints.len() - i);
        match call(client.with_timeout(share)).await {
            Ok(answer) => return Ok(answer),
            Err(error) if error.is_invalid_argument() => return Err(error),
            Err(error) => tried.push(EndpointFailure {
                endpoint: endpoints[i].clone(),
                error,
            }),
        }
    }
    Err(Error::NoNodeAnswered { tried })
}

/// What is left before `deadline`, split evenly among `waiting` attempts.
fn fair_share(deadline: tokio::time::Instant, waiting: usize) -> Duration {
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    left / u32::try_from(waiting.max(1)).unwrap_or(u32::MAX)
}

/// Runs a leader-only admin call: tries `endpoints` in order, jumps to the
/// leader a `NotLeader` reply names, moves on from unreachable nodes and
/// from nodes that do not host the shard (`ShardNotFound`: not a replica,
/// or one that has not applied the split creating it yet), and returns the
/// first answer that is none of these. When all fail, returns the last
/// error.
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
            Err(
                e @ (Error::Transport(_)
                | Error::Unavailable(_)
                | Error::Server {
                    kind: ServerErrorKind::ShardNotFound,
                    ..
                }),
            ) => last = e,
            other => return other,
        }
    }
    Err(last)
}

/// Splits the shard that holds `key` at `key`, as the placement driver
/// knows the shards, through that shard's leader: the answer of
/// [`AdminClient::split_shard`]. `timeout` bounds each of the two steps.
pub async fn split_at(
    endpoints: &[String],
    key: &[u8],
    timeout: Duration,
) -> Result<(ShardDescriptor, ShardDescriptor), Error> {
    let state = cluster_state(endpoints, timeout).await?;
    let shard = state
        .shards
        .iter()
        .find(|s| s.contains(key))
        .map(|s| s.id)
        .ok_or_else(|| {
            Error::Unavailable("the placement driver knows no shard holding the key yet".into())
        })?;
    on_leader(endpoints, timeout, |admin| async move {
        admin.split_shard(shard, Some(key)).await
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cluster_state_needs_well_formed_endpoints() {
        assert_eq!(
            cluster_state(&[], Duration::from_secs(1)).await,
            Err(Error::NoEndpoints)
        );
        let bad = ["127.0.0.1:1".to_string(), "no-port".to_string()];
        let err = cluster_state(&bad, Duration::from_secs(1)).await.err();
        assert!(
            err.as_ref().is_some_and(Error::is_invalid_argument),
            "{err:?}"
        );
    }

    /// Two ports nobody listens on: both are tried, in order, each named
    /// in the error.
    #[cfg(not(madsim))]
    #[tokio::test]
    async fn cluster_state_reports_every_endpoint_tried() {
        let closed = || {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").to_string()
        };
        let endpoints = [closed(), closed()];
        let err = cluster_state(&endpoints, Duration::from_secs(2))
            .await
            .expect_err("nobody listens");
        let Error::NoNodeAnswered { tried } = &err else {
            panic!("{err:?}");
        };
        let asked: Vec<&str> = tried.iter().map(|t| t.endpoint.as_str()).collect();
        assert_eq!(asked, [endpoints[0].as_str(), endpoints[1].as_str()]);
        assert!(
            err.to_string()
                .ends_with("is the cluster running? check the endpoints"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn each_endpoint_gets_an_even_share_of_the_time_left() {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let share = fair_share(deadline, 3);
        assert!(share <= Duration::from_secs(10), "{share:?}");
        assert!(share > Duration::from_secs(9), "{share:?}");
        assert_eq!(fair_share(tokio::time::Instant::now(), 2), Duration::ZERO);
        assert!(fair_share(deadline, 0) > Duration::from_secs(29));
    }
}
