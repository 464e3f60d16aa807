//! The placement driver's view of the cluster ([`ClusterState`]): nodes,
//! their liveness and load, and every shard's range, epoch, replicas and
//! last reported leader; typed from the wire's `ClusterStateResponse`. Read
//! it with [`crate::admin::cluster_state`].

use std::collections::BTreeMap;
use std::time::Duration;

use atoll_proto as pb;

use crate::error::Error;

/// The label whose values the PD spreads a shard's replicas over.
pub const ZONE_LABEL: &str = "zone";

/// What the placement driver (PD) knows about the cluster, as its leader
/// answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterState {
    /// The endpoint that answered (it forwarded the read to the PD leader).
    pub endpoint: String,
    pub cluster_id: u64,
    /// False until the PD's first leader has recorded the first shard and
    /// the initial nodes; nodes and shards are empty until then.
    pub bootstrapped: bool,
    /// The node whose PD replica answered: the PD leader.
    pub pd_leader: u64,
    /// The PD leader's clock when it answered (ms since the Unix epoch);
    /// every time in this state is on that clock.
    pub now_ms: u64,
    /// Replicas the PD wants per shard.
    pub replication_factor: u64,
    /// A node silent this long is marked [`NodeState::Down`].
    pub down_after: Duration,
    /// By node id.
    pub nodes: Vec<NodeInfo>,
    /// By start key.
    pub shards: Vec<ShardInfo>,
}

/// One node as the PD knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: u64,
    pub addr: String,
    pub state: NodeState,
    pub labels: BTreeMap<String, String>,
    /// PD time (ms since the Unix epoch) of the node's last heartbeat; 0:
    /// never (a joining node).
    pub last_heartbeat_ms: u64,
    /// 0: not measured.
    pub capacity_bytes: u64,
    /// 0: not measured.
    pub used_bytes: u64,
    /// Shard replicas the node hosts.
    pub replicas: u64,
    /// Shards whose last reported leader is this node.
    pub leaders: u64,
}

impl NodeInfo {
    /// The node's `zone` label, if it has one.
    pub fn zone(&self) -> Option<&str> {
        self.labels.get(ZONE_LABEL).map(String::as_str)
    }
}

/// A node's state in the PD. `Up` → `Draining` → `Removed` by operator
/// command; `Up` or `Draining` → `Down` after `down_after` of silence, and
/// back on its next heartbeat. `Joining` (added with
/// [`crate::admin::add_node`]) → `Up` when the node is first heard from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeState {
    /// Heartbeating; may receive new replicas.
    Up,
    /// Heartbeating; its replicas are being moved away.
    Draining,
    /// Silent for at least `down_after`.
    Down,
    /// Taken out of the cluster for good.
    Removed,
    /// Registered before it started, not heard from yet; gets no replicas.
    Joining,
    /// A state this client does not know (a newer node), as sent.
    Other(String),
}

impl NodeState {
    fn from_wire(state: String) -> Self {
        match state.as_str() {
            "up" => Self::Up,
            "draining" => Self::Draining,
            "down" => Self::Down,
            "removed" => Self::Removed,
            "joining" => Self::Joining,
            _ => Self::Other(state),
        }
    }

    /// The wire name: "up", "draining", "down", "removed", "joining" (or
    /// the unknown one).
    pub fn as_str(&self) -> &str {
        match self {
            Self::Up => "up",
            Self::Draining => "draining",
            Self::Down => "down",
            Self::Removed => "removed",
            Self::Joining => "joining",
            Self::Other(state) => state,
        }
    }
}

/// One shard as the PD knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    pub id: u64,
    /// The first key of the range (empty: the start of the key space).
    pub start: Vec<u8>,
    /// The first key past the range (empty: the end of the key space).
    pub end: Vec<u8>,
    /// Bumped by splits and merges.
    pub version: u64,
    /// Bumped by membership changes.
    pub conf_ver: u64,
    pub replicas: Vec<ReplicaInfo>,
    /// The node of the leader that reported last, if any did.
    pub leader_node: Option<u64>,
    /// The term of that leader's report (0: none yet).
    pub term: u64,
    /// 0: not measured.
    pub approx_size_bytes: u64,
    /// 0: not measured.
    pub approx_keys: u64,
    /// PD time of the last accepted report; `None` if none arrived yet.
    pub last_report_ms: Option<u64>,
}

impl ShardInfo {
    /// Whether `key` lies in `[start, end)` (an empty `end` is +infinity).
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && (self.end.is_empty() || key < self.end.as_slice())
    }
}

/// One replica of a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaInfo {
    pub id: u64,
    pub node_id: u64,
    pub role: ReplicaRole,
}

/// A replica's role in its shard's Raft membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaRole {
    Voter,
    /// Receives the log, does not vote.
    Learner,
    /// A voter of the new configuration during a joint membership change.
    IncomingVoter,
    /// A voter of the old configuration during a joint membership change.
    OutgoingVoter,
    /// A role this client does not know (a newer node), as sent.
    Other(String),
}

impl ReplicaRole {
    fn from_wire(role: String) -> Self {
        match role.as_str() {
            "voter" => Self::Voter,
            "learner" => Self::Learner,
            "incoming-voter" => Self::IncomingVoter,
            "outgoing-voter" => Self::OutgoingVoter,
            _ => Self::Other(role),
        }
    }

    /// The wire name: "voter", "learner", "incoming-voter", "outgoing-voter".
    pub fn as_str(&self) -> &str {
        match self {
            Self::Voter => "voter",
            Self::Learner => "learner",
            Self::IncomingVoter => "incoming-voter",
            Self::OutgoingVoter => "outgoing-voter",
            Self::Other(role) => role,
        }
    }
}

impl ClusterState {
    /// Types a reply `endpoint` gave. A reply carrying an error is that
    /// error (`Unavailable` when the PD has no leader or no quorum).
    pub(crate) fn from_wire(
        endpoint: &str,
        reply: pb::ClusterStateResponse,
    ) -> Result<ClusterState, Error> {
        if let Some(error) = &reply.error {
            return Err(Error::from_wire(error));
        }
        let shards = reply
            .shards
            .into_iter()
            .map(ShardInfo::from_wire)
            .collect::<Result<_, _>>()?;
        Ok(ClusterState {
            endpoint: endpoint.to_string(),
            cluster_id: reply.cluster_id,
            bootstrapped: reply.bootstrapped,
            pd_leader: reply.pd_leader,
            now_ms: reply.now_ms,
            replication_factor: reply.replication_factor,
            down_after: Duration::from_millis(reply.down_after_ms),
            nodes: reply.nodes.into_iter().map(NodeInfo::from_wire).collect(),
            shards,
        })
    }

    /// How long before this answer `node` last heartbeated (zero if the
    /// heartbeat is stamped later, after a PD leader change between
    /// clocks); `None` if it never did (a joining node).
    pub fn heartbeat_age(&self, node: &NodeInfo) -> Option<Duration> {
        (node.last_heartbeat_ms != 0)
            .then(|| Duration::from_millis(self.now_ms.saturating_sub(node.last_heartbeat_ms)))
    }

    /// The node with id `id`, if the PD knows it.
    pub fn node(&self, id: u64) -> Option<&NodeInfo> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The shard with id `id`, if the PD knows it.
    pub fn shard(&self, id: u64) -> Option<&ShardInfo> {
        self.shards.iter().find(|s| s.id == id)
    }
}

impl NodeInfo {
    fn from_wire(n: pb::PdNode) -> Self {
        NodeInfo {
            id: n.id,
            addr: n.addr,
            state: NodeState::from_wire(n.state),
            labels: n.labels.into_iter().collect(),
            last_heartbeat_ms: n.last_heartbeat_ms,
            capacity_bytes: n.capacity_bytes,
            used_bytes: n.used_bytes,
            replicas: n.replicas,
            leaders: n.leaders,
        }
    }
}

impl ShardInfo {
    fn from_wire(s: pb::PdShard) -> Result<Self, Error> {
        let epoch = s.epoch.ok_or_else(|| {
            Error::Protocol(format!("the cluster state gives shard {} no epoch", s.id))
        })?;
        Ok(ShardInfo {
            id: s.id,
            start: s.start,
            end: s.end,
            version: epoch.version,
            conf_ver: epoch.conf_ver,
            replicas: s
                .replicas
                .into_iter()
                .map(|r| ReplicaInfo {
                    id: r.id,
                    node_id: r.node_id,
                    role: ReplicaRole::from_wire(r.role),
                })
                .collect(),
            leader_node: s.leader_node,
            term: s.term,
            approx_size_bytes: s.approx_size_bytes,
            approx_keys: s.approx_keys,
            last_report_ms: (s.last_report_ms != 0).then_some(s.last_report_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire_node(id: u64, state: &str) -> pb::PdNode {
        pb::PdNode {
            id,
            addr: format!("10.0.0.{id}:7101"),
            state: state.into(),
            labels: [("zone".to_string(), "a".to_string())].into(),
            last_heartbeat_ms: 1_000,
            replicas: 1,
            ..Default::default()
        }
    }

    fn wire_shard(id: u64, epoch: Option<pb::Epoch>) -> pb::PdShard {
        pb::PdShard {
            id,
            epoch,
            replicas: vec![
                pb::PdReplica {
                    id: 10,
                    node_id: 1,
                    role: "voter".into(),
                },
                pb::PdReplica {
                    id: 11,
                    node_id: 4,
                    role: "learner".into(),
                },
            ],
            leader_node: Some(1),
            term: 3,
            ..Default::default()
        }
    }

    #[test]
    fn replies_become_typed_states() {
        let reply = pb::ClusterStateResponse {
            cluster_id: 7,
            bootstrapped: true,
            pd_leader: 2,
            now_ms: 1_400,
            down_after_ms: 2_000,
            replication_factor: 3,
            nodes: vec![wire_node(1, "up"), wire_node(2, "zombie")],
            shards: vec![wire_shard(
                1,
                Some(pb::Epoch {
                    version: 1,
                    conf_ver: 2,
                }),
            )],
            error: None,
        };
        let state = ClusterState::from_wire("a:1", reply).expect("typed");
        assert_eq!(state.endpoint, "a:1");
        assert_eq!(state.down_after, Duration::from_secs(2));
        let node = state.node(1).expect("node 1");
        assert_eq!(node.state, NodeState::Up);
        assert_eq!(node.zone(), Some("a"));
        assert_eq!(state.heartbeat_age(node), Some(Duration::from_millis(400)));
        assert_eq!(
            state.node(2).map(|n| n.state.as_str()),
            Some("zombie"),
            "an unknown state is kept as sent"
        );
        let shard = state.shard(1).expect("shard 1");
        assert_eq!((shard.version, shard.conf_ver), (1, 2));
        assert_eq!(shard.replicas[1].role, ReplicaRole::Learner);
        assert_eq!(shard.last_report_ms, None, "0 on the wire: never");
    }

    #[test]
    fn an_error_reply_is_that_error() {
        let reply = pb::ClusterStateResponse {
            error: Some(pb::Error {
                message: "no PD leader".into(),
                kind: Some(pb::ErrorKind::Unavailable(pb::Unavailable {})),
            }),
            ..Default::default()
        };
        assert_eq!(
            ClusterState::from_wire("a:1", reply),
            Err(Error::Unavailable("no PD leader".into()))
        );
    }

    #[test]
    fn a_shard_without_epoch_breaks_the_protocol() {
        let reply = pb::ClusterStateResponse {
            shards: vec![wire_shard(5, None)],
            ..Default::default()
        };
        assert!(matches!(
            ClusterState::from_wire("a:1", reply),
            Err(Error::Protocol(_))
        ));
    }

    #[test]
    fn heartbeats_stamped_after_now_have_no_age() {
        let state = ClusterState::from_wire(
            "a:1",
            pb::ClusterStateResponse {
                now_ms: 500,
                nodes: vec![wire_node(1, "up")],
                ..Default::default()
            },
        )
        .expect("typed");
        assert_eq!(state.heartbeat_age(&state.nodes[0]), Some(Duration::ZERO));
    }

    #[test]
    fn a_joining_node_never_heartbeated() {
        let joining = pb::PdNode {
            last_heartbeat_ms: 0,
            ..wire_node(4, "joining")
        };
        let state = ClusterState::from_wire(
            "a:1",
            pb::ClusterStateResponse {
                now_ms: 500,
                nodes: vec![joining],
                ..Default::default()
            },
        )
        .expect("typed");
        assert_eq!(state.nodes[0].state, NodeState::Joining);
        assert_eq!(state.nodes[0].state.as_str(), "joining");
        assert_eq!(state.heartbeat_age(&state.nodes[0]), None);
    }
}
