//! The check a fresh node runs before it bootstraps: ask every other
//! initial member (`ClusterInfo`) whether a cluster already exists there.
//!
//! [`decide`] is the rule, a pure function of the answers; [`run`] asks,
//! decides, and asks again while it must wait. Why this rule:
//! docs/decisions/0008-cluster-id-and-bootstrap-check.md.

use std::time::Duration;

use atoll_proto as pb;
use atoll_proto::admin_client::AdminClient;

use super::identity::{show, UNKNOWN};
use crate::service::NodeCtx;

/// The highest log index of a cluster that has done nothing but bootstrap:
/// the initial membership (index 0) and the first leader's blank entry
/// (index 1). A peer past it has served something this node may have
/// acknowledged and forgotten.
pub const BOOTSTRAP_LOG_END: u64 = 1;

/// How long one `ClusterInfo` call may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause between two rounds of questions while waiting for a majority.
const RETRY_EVERY: Duration = Duration::from_millis(300);
/// Log the wait once at first, then every this many rounds (~5 s).
const LOG_EVERY_ROUNDS: u32 = 16;

/// What one peer says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerInfo {
    pub node_id: u64,
    pub cluster_id: u64,
    pub initialized: bool,
    pub last_log_index: u64,
    pub term: u64,
    /// Initial members it knows started their Raft (when `started_known`).
    pub started: Vec<u64>,
    /// It keeps started records (its data dir is recent enough).
    pub started_known: bool,
}

impl From<pb::ClusterInfoResponse> for PeerInfo {
    fn from(r: pb::ClusterInfoResponse) -> Self {
        Self {
            node_id: r.node_id,
            cluster_id: r.cluster_id,
            initialized: r.initialized,
            last_log_index: r.last_log_index,
            term: r.term,
            started: r.started_members,
            started_known: r.started_known,
        }
    }
}

/// How many other initial members must durably record that a node starts
/// its Raft before it does: a majority of the initial members, less the
/// node itself (its own record would go with its data dir).
pub fn record_quorum(members: usize) -> usize {
    members / 2
}

/// How many other initial members must answer a fresh node, none of them
/// listing it as started, before it may join a cluster that already runs:
/// enough that every set of [`record_quorum`] others meets them.
pub fn proof_quorum(members: usize) -> usize {
    let others = members.saturating_sub(1);
    (others + 1).saturating_sub(record_quorum(members))
}

/// The answer of one other initial member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// No answer (down, not started yet, timed out); the reason, for logs.
    Unreachable(String),
    Info(PeerInfo),
}

/// One other initial member and its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    pub id: u64,
    pub addr: String,
    pub answer: Answer,
}

/// What a fresh node does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Bootstrap,
    /// Too few of the initial members answered; ask again.
    Wait {
        /// Members that answered, this node included.
        reachable: usize,
        needed: usize,
        silent: Vec<u64>,
        why: WaitFor,
    },
    Refuse(Refusal),
}

/// The operator's way back for a node whose data dir was lost.
const RECOVER: &str = "To bring it back: remove it from every shard it was a voter of \
     (`atollctl change-membership --shard <S> --voters <the other voters>`), start it with \
     `--join` instead of `--initial-cluster`, then re-add it (`atollctl add-learner --shard <S> \
     --node <id> --addr <its address>`, then `atollctl change-membership --shard <S> \
     --voters <all voters>`). See docs/operations.md, \"After a lost disk\"";

/// What a waiting node needs more answers for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitFor {
    /// A majority, to bootstrap a new cluster together.
    Majority,
    /// Enough peers to show that this node never started, to join the
    /// cluster that its peers already run ([`proof_quorum`]).
    NeverStarted,
}

/// Why a fresh node refuses to bootstrap. Each message tells the operator
/// what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "node {peer} at {addr} recorded that this node ({node}) started in cluster {}, but \
         this node has an empty data directory: it was lost. Bootstrapping it again could \
         lose committed writes. {RECOVER}",
        show(*.cluster_id)
    )]
    LostDataDir {
        node: u64,
        peer: u64,
        addr: String,
        cluster_id: u64,
    },
    #[error(
        "node {peer} at {addr} already runs cluster {} and has gone past its bootstrap \
         (last log index {last_log_index}, term {term}), but this node ({node}) has an empty \
         data directory, and node {peer}'s data dir predates the records that would tell \
         whether this node ever started: its data directory was lost, or it never took part \
         and the cluster went on without it. Bootstrapping it again could lose committed \
         writes. {RECOVER}",
        show(*.cluster_id)
    )]
    ClusterExists {
        node: u64,
        peer: u64,
        addr: String,
        cluster_id: u64,
        last_log_index: u64,
        term: u64,
    },
    #[error(
        "node {peer} at {addr} belongs to cluster {}, but this node's --initial-cluster and \
         --initial-cluster-token give cluster {}: every initial member must be started with \
         the same --initial-cluster and --initial-cluster-token. To join that cluster \
         instead, start this node with `--join` and add it with `atollctl add-learner`",
        show(*.theirs),
        show(*.ours)
    )]
    ForeignCluster {
        peer: u64,
        addr: String,
        theirs: u64,
        ours: u64,
    },
    #[error(
        "--initial-cluster lists {addr} as node {listed}, but node {actual} answers there: \
         fix --initial-cluster"
    )]
    WrongNode {
        addr: String,
        listed: u64,
        actual: u64,
    },
}

/// The rule. `me` is this node, `ours` the cluster id its config derives,
/// `members` the number of initial members (this node included) and
/// `answers` those of the other members. In order:
/// 1. a peer that is not the node `--initial-cluster` says -> refuse;
/// 2. a peer that recorded this node as started -> refuse (its data dir
///    was lost); a peer that keeps no such records and is past
///    [`BOOTSTRAP_LOG_END`] -> refuse (it cannot tell);
/// 3. a peer of another cluster -> refuse;
/// 4. a peer already runs the cluster past [`BOOTSTRAP_LOG_END`]: wait
///    until [`proof_quorum`] peers answered (none of them listing this
///    node), then bootstrap: this node never started, and joins as the
///    initial member it is;
/// 5. otherwise, fewer than a majority answered (this node counts) -> wait;
/// 6. otherwise bootstrap.
pub fn decide(me: u64, ours: u64, members: usize, answers: &[Asked]) -> Verdict {
    let infos = answers.iter().filter_map(|a| match &a.answer {
        Answer::Info(info) => Some((a, info)),
        Answer::Unreachable(_) => None,
    });
    for (a, info) in infos.clone() {
        if info.node_id != a.id {
            return Verdict::Refuse(Refusal::WrongNode {
                addr: a.addr.clone(),
                listed: a.id,
                actual: info.node_id,
            });
        }
    }
    for (a, info) in infos.clone() {
        if info.started_known && info.started.contains(&me) {
            return Verdict::Refuse(Refusal::LostDataDir {
                node: me,
                peer: a.id,
                addr: a.addr.clone(),
                cluster_id: info.cluster_id,
            });
        }
        if !info.started_known && info.initialized && info.last_log_index > BOOTSTRAP_LOG_END {
            return Verdict::Refuse(Refusal::ClusterExists {
                node: me,
                peer: a.id,
                addr: a.addr.clone(),
                cluster_id: info.cluster_id,
                last_log_index: info.last_log_index,
                term: info.term,
            });
        }
    }
    for (a, info) in infos.clone() {
        if info.cluster_id != UNKNOWN && info.cluster_id != ours {
            return Verdict::Refuse(Refusal::ForeignCluster {
                peer: a.id,
                addr: a.addr.clone(),
                theirs: info.cluster_id,
                ours,
            });
        }
    }
    let answered = infos.clone().count();
    // Peers whose data dirs predate the started records fall under the old
    // rule alone (2, second half). Peers that only bootstrapped do not need
    // the proof (the rule before the records, decision 0008): a node whose
    // peer bootstrapped while it checked must not wait for a third that is
    // down.
    let running = infos.clone().any(|(_, info)| {
        info.initialized && info.started_known && info.last_log_index > BOOTSTRAP_LOG_END
    });
    let (needed, why) = if running {
        (1 + proof_quorum(members), WaitFor::NeverStarted)
    } else {
        (members / 2 + 1, WaitFor::Majority)
    };
    let reachable = 1 + answered;
    if reachable < needed {
        let silent = answers
            .iter()
            .filter(|a| matches!(a.answer, Answer::Unreachable(_)))
            .map(|a| a.id)
            .collect();
        return Verdict::Wait {
            reachable,
            needed,
            silent,
            why,
        };
    }
    Verdict::Bootstrap
}

async fn ask(ctx: &NodeCtx, id: u64, addr: &str) -> Asked {
    let answer = match ctx.peers.channel(addr) {
        Err(e) => Answer::Unreachable(e.to_string()),
        Ok(channel) => {
            let mut client = AdminClient::new(channel);
            let req = pb::ClusterInfoRequest {
                node_id: ctx.node_id(),
            };
            match tokio::time::timeout(ASK_TIMEOUT, client.cluster_info(req)).await {
                Err(_) => Answer::Unreachable("timed out".into()),
                Ok(Err(status)) => Answer::Unreachable(status.message().to_string()),
                Ok(Ok(reply)) => Answer::Info(reply.into_inner().into()),
            }
        }
    };
    Asked {
        id,
        addr: addr.to_string(),
        answer,
    }
}

/// Asks the other `members` until [`decide`] says bootstrap (`Ok`) or
/// refuse (`Err`). Returns at once for a single-member cluster.
pub async fn run(ctx: &NodeCtx, members: &[(u64, String)], ours: u64) -> Result<(), Refusal> {
    let me = ctx.node_id();
    let others: Vec<&(u64, String)> = members.iter().filter(|(id, _)| *id != me).collect();
    let mut round: u32 = 0;
    loop {
        let answers =
            futures::future::join_all(others.iter().map(|(id, addr)| ask(ctx, *id, addr))).await;
        match decide(me, ours, members.len(), &answers) {
            Verdict::Bootstrap => return Ok(()),
            Verdict::Refuse(r) => return Err(r),
            Verdict::Wait {
                reachable,
                needed,
                silent,
                why,
            } => {
                if round.is_multiple_of(LOG_EVERY_ROUNDS) {
                    let what = match why {
                        WaitFor::Majority => "a majority of the initial cluster",
                        WaitFor::NeverStarted => {
                            "enough peers of the running cluster to show this node never started"
                        }
                    };
                    tracing::info!(
                        node = me,
                        reachable,
                        needed,
                        ?silent,
                        "waiting for {what} before bootstrapping"
                    );
                }
            }
        }
        round = round.wrapping_add(1);
        tokio::time::sleep(RETRY_EVERY).await;
    }
}

/// Before this node first starts its Raft: has [`record_quorum`] other
/// initial members durably record that it does, asking again until they
/// have. A refusal (another cluster) ends it.
pub async fn record(ctx: &NodeCtx, members: &[(u64, String)], ours: u64) -> Result<(), Refusal> {
    let me = ctx.node_id();
    let needed = record_quorum(members.len());
    let mut recorded: Vec<u64> = Vec::new();
    let mut round: u32 = 0;
    while recorded.len() < needed {
        let pending = members
            .iter()
            .filter(|(id, _)| *id != me && !recorded.contains(id));
        let asks = pending.map(|(id, addr)| async move {
            let result = match ctx.peers.channel(addr) {
                Err(e) => Err(e.to_string()),
                Ok(channel) => {
                    let req = pb::RecordStartedRequest {
                        node_id: me,
                        cluster_id: ours,
                    };
                    let mut client = AdminClient::new(channel);
                    match tokio::time::timeout(ASK_TIMEOUT, client.record_started(req)).await {
                        Err(_) => Err("timed out".to_string()),
                        Ok(Err(status)) if status.code() == tonic::Code::FailedPrecondition => {
                            return (
                                *id,
                                Err(Some(Refusal::ForeignCluster {
                                    peer: *id,
                                    addr: addr.clone(),
                                    theirs: UNKNOWN,
                                    ours,
                                })),
                            );
                        }
                        Ok(Err(status)) => Err(status.message().to_string()),
                        Ok(Ok(_)) => Ok(()),
                    }
                }
            };
            (
                *id,
                result.map_err(|why| {
                    tracing::debug!(peer = *id, %why, "start not recorded yet");
                    None
                }),
            )
        });
        for (id, result) in futures::future::join_all(asks).await {
            match result {
                Ok(()) => recorded.push(id),
                Err(Some(refusal)) => return Err(refusal),
                Err(None) => {}
            }
        }
        if recorded.len() < needed {
            if round.is_multiple_of(LOG_EVERY_ROUNDS) {
                tracing::info!(
                    node = me,
                    ?recorded,
                    needed,
                    "waiting for peers to record that this node starts"
                );
            }
            round = round.wrapping_add(1);
            tokio::time::sleep(RETRY_EVERY).await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: u64 = 0xabc;

    fn with(id: u64, info: PeerInfo) -> Asked {
        Asked {
            id,
            addr: format!("h{id}:1"),
            answer: Answer::Info(PeerInfo {
                node_id: id,
                ..info
            }),
        }
    }

    /// A peer that keeps started records and lists `started`.
    fn peer(id: u64, initialized: bool, last: u64, started: &[u64]) -> Asked {
        with(
            id,
            PeerInfo {
                cluster_id: if initialized { OURS } else { UNKNOWN },
                initialized,
                last_log_index: last,
                term: if initialized { 2 } else { 0 },
                started: started.to_vec(),
                started_known: true,
                ..Default::default()
            },
        )
    }

    /// A peer whose data dir predates the started records.
    fn old(id: u64, cluster_id: u64, initialized: bool, last: u64, term: u64) -> Asked {
        with(
            id,
            PeerInfo {
                cluster_id,
                initialized,
                last_log_index: last,
                term,
                ..Default::default()
            },
        )
    }

    fn down(id: u64) -> Asked {
        Asked {
            id,
            addr: format!("h{id}:1"),
            answer: Answer::Unreachable("connection refused".into()),
        }
    }

    fn fresh(id: u64) -> Asked {
        peer(id, false, 0, &[])
    }

    #[test]
    fn quorums_meet() {
        for members in 2..=9 {
            let others = members - 1;
            let (r, p) = (record_quorum(members), proof_quorum(members));
            assert!(r + p > others, "{members}: {r} + {p}");
            // A majority of the members can always record a start.
            assert!(r < members / 2 + 1, "{members}");
        }
        assert_eq!((record_quorum(3), proof_quorum(3)), (1, 2));
        assert_eq!((record_quorum(5), proof_quorum(5)), (2, 3));
    }

    #[test]
    fn nodes_started_together_bootstrap_once_a_majority_answers() {
        assert_eq!(
            decide(1, OURS, 3, &[down(2), down(3)]),
            Verdict::Wait {
                reachable: 1,
                needed: 2,
                silent: vec![2, 3],
                why: WaitFor::Majority,
            }
        );
        assert_eq!(decide(1, OURS, 3, &[fresh(2), down(3)]), Verdict::Bootstrap);
        assert_eq!(
            decide(1, OURS, 3, &[fresh(2), fresh(3)]),
            Verdict::Bootstrap
        );
        assert_eq!(decide(1, OURS, 1, &[]), Verdict::Bootstrap);
        assert!(matches!(
            decide(1, OURS, 5, &[fresh(2), down(3), down(4), down(5)]),
            Verdict::Wait {
                reachable: 2,
                needed: 3,
                why: WaitFor::Majority,
                ..
            }
        ));
    }

    #[test]
    fn a_late_initial_member_that_never_started_joins_a_running_cluster() {
        // Its peers bootstrapped without it and went on serving writes (they
        // record each other, not node 3).
        let peers = [peer(1, true, 57, &[2]), peer(2, true, 57, &[1])];
        assert_eq!(decide(3, OURS, 3, &peers), Verdict::Bootstrap);
        // Only one of them answers: it could be the one that lacks the
        // record, so wait.
        assert_eq!(
            decide(3, OURS, 3, &[peer(1, true, 57, &[2]), down(2)]),
            Verdict::Wait {
                reachable: 2,
                needed: 3,
                silent: vec![2],
                why: WaitFor::NeverStarted,
            }
        );
        // A peer that bootstrapped while this node checked, and has not
        // gone past it (no majority yet, node 3 down): join it.
        assert_eq!(
            decide(1, OURS, 3, &[peer(2, true, 0, &[]), down(3)]),
            Verdict::Bootstrap
        );
        // Five members: three of the four others suffice.
        let peers = [
            peer(1, true, 9, &[2, 4]),
            peer(2, true, 9, &[1]),
            down(4),
            peer(5, false, 0, &[1]),
        ];
        assert_eq!(decide(3, OURS, 5, &peers), Verdict::Bootstrap);
    }

    #[test]
    fn a_node_recorded_as_started_refuses_with_an_empty_data_dir() {
        let peers = [peer(1, true, 57, &[2, 3]), down(2)];
        match decide(3, OURS, 3, &peers) {
            Verdict::Refuse(
                r @ Refusal::LostDataDir {
                    peer: 1, node: 3, ..
                },
            ) => {
                let text = r.to_string();
                assert!(text.contains("--join"), "{text}");
                assert!(text.contains("atollctl change-membership"), "{text}");
                assert!(text.contains("After a lost disk"), "{text}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        // Even if the peer that recorded it has not bootstrapped itself.
        assert!(matches!(
            decide(3, OURS, 3, &[peer(1, false, 0, &[3]), down(2)]),
            Verdict::Refuse(Refusal::LostDataDir { .. })
        ));
    }

    #[test]
    fn peers_without_records_keep_the_old_rule() {
        let peers = [old(1, OURS, true, 57, 2), old(2, OURS, true, 1, 2)];
        match decide(3, OURS, 3, &peers) {
            Verdict::Refuse(r @ Refusal::ClusterExists { peer: 1, .. }) => {
                let text = r.to_string();
                assert!(text.contains("--join"), "{text}");
                assert!(text.contains("After a lost disk"), "{text}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        // One answer is enough: no need to wait for a majority to refuse.
        assert!(matches!(
            decide(
                3,
                OURS,
                5,
                &[old(1, OURS, true, 9, 3), down(2), down(4), down(5)]
            ),
            Verdict::Refuse(Refusal::ClusterExists { .. })
        ));
        // A peer whose data dir predates cluster ids still counts.
        assert!(matches!(
            decide(3, OURS, 3, &[old(1, UNKNOWN, true, 9, 3), down(2)]),
            Verdict::Refuse(Refusal::ClusterExists { .. })
        ));
        // Peers that only bootstrapped (blank entry at 1): join.
        let peers = [old(1, OURS, true, 1, 4), old(2, OURS, true, 1, 4)];
        assert_eq!(decide(3, OURS, 3, &peers), Verdict::Bootstrap);
        assert_eq!(
            decide(3, OURS, 3, &[old(1, OURS, true, 0, 2), down(2)]),
            Verdict::Bootstrap
        );
    }

    #[test]
    fn a_peer_of_another_cluster_or_another_node_is_refused() {
        let mut other = peer(2, true, 1, &[]);
        if let Answer::Info(i) = &mut other.answer {
            i.cluster_id = 0x999;
        }
        assert!(matches!(
            decide(1, OURS, 3, &[other, fresh(3)]),
            Verdict::Refuse(Refusal::ForeignCluster {
                theirs: 0x999,
                ours: OURS,
                ..
            })
        ));
        let mut wrong = fresh(2);
        if let Answer::Info(i) = &mut wrong.answer {
            i.node_id = 7;
        }
        assert!(matches!(
            decide(1, OURS, 3, &[wrong, fresh(3)]),
            Verdict::Refuse(Refusal::WrongNode {
                listed: 2,
                actual: 7,
                ..
            })
        ));
    }
}
