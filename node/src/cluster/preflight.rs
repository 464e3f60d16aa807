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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeerInfo {
    pub node_id: u64,
    pub cluster_id: u64,
    pub initialized: bool,
    pub last_log_index: u64,
    pub term: u64,
}

impl From<pb::ClusterInfoResponse> for PeerInfo {
    fn from(r: pb::ClusterInfoResponse) -> Self {
        Self {
            node_id: r.node_id,
            cluster_id: r.cluster_id,
            initialized: r.initialized,
            last_log_index: r.last_log_index,
            term: r.term,
        }
    }
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
    /// Fewer than a majority of the initial members (counting this node)
    /// answered; ask again.
    Wait {
        reachable: usize,
        needed: usize,
        silent: Vec<u64>,
    },
    Refuse(Refusal),
}

/// Why a fresh node refuses to bootstrap. Each message tells the operator
/// what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "node {peer} at {addr} already runs cluster {} and has gone past its bootstrap \
         (last log index {last_log_index}, term {term}), but this node ({node}) has an empty \
         data directory: its data directory was lost, or it never took part and the cluster \
         went on without it. Bootstrapping it again could lose committed writes. To bring it \
         back: remove node {node} from every shard it was a voter of \
         (`atollctl change-membership --shard <S> --voters <the other voters>`), start it with \
         `--join` instead of `--initial-cluster`, then re-add it \
         (`atollctl add-learner --shard <S> --node {node} --addr <its address>`, then \
         `atollctl change-membership --shard <S> --voters <all voters>`). \
         See docs/operations.md, \"After a lost disk\"",
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
/// 2. a peer past [`BOOTSTRAP_LOG_END`] -> refuse (a cluster exists);
/// 3. a peer of another cluster -> refuse;
/// 4. fewer than a majority answered (this node counts) -> wait;
/// 5. otherwise bootstrap.
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
        if info.initialized && info.last_log_index > BOOTSTRAP_LOG_END {
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
    let reachable = 1 + infos.count();
    let needed = members / 2 + 1;
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
            } => {
                if round.is_multiple_of(LOG_EVERY_ROUNDS) {
                    tracing::info!(
                        node = me,
                        reachable,
                        needed,
                        ?silent,
                        "waiting for a majority of the initial cluster before bootstrapping"
                    );
                }
            }
        }
        round = round.wrapping_add(1);
        tokio::time::sleep(RETRY_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: u64 = 0xabc;

    fn info(id: u64, cluster_id: u64, initialized: bool, last: u64, term: u64) -> Asked {
        Asked {
            id,
            addr: format!("h{id}:1"),
            answer: Answer::Info(PeerInfo {
                node_id: id,
                cluster_id,
                initialized,
                last_log_index: last,
                term,
            }),
        }
    }

    fn down(id: u64) -> Asked {
        Asked {
            id,
            addr: format!("h{id}:1"),
            answer: Answer::Unreachable("connection refused".into()),
        }
    }

    fn fresh(id: u64) -> Asked {
        info(id, UNKNOWN, false, 0, 0)
    }

    #[test]
    fn nodes_started_together_bootstrap_once_a_majority_answers() {
        assert_eq!(
            decide(1, OURS, 3, &[down(2), down(3)]),
            Verdict::Wait {
                reachable: 1,
                needed: 2,
                silent: vec![2, 3]
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
                ..
            }
        ));
    }

    #[test]
    fn a_late_starter_joins_peers_that_only_bootstrapped_even_after_split_votes() {
        // Peers elected a leader (blank entry at 1), after a few split votes.
        let peers = [info(1, OURS, true, 1, 4), info(2, OURS, true, 1, 4)];
        assert_eq!(decide(3, OURS, 3, &peers), Verdict::Bootstrap);
        // Or are still electing, with only the membership entry.
        let peers = [info(1, OURS, true, 0, 2), down(2)];
        assert_eq!(decide(3, OURS, 3, &peers), Verdict::Bootstrap);
    }

    #[test]
    fn a_node_that_lost_its_data_dir_refuses_when_any_peer_went_past_bootstrap() {
        let peers = [info(1, OURS, true, 57, 2), info(2, OURS, true, 1, 2)];
        match decide(3, OURS, 3, &peers) {
            Verdict::Refuse(r @ Refusal::ClusterExists { peer: 1, .. }) => {
                let text = r.to_string();
                assert!(text.contains("--join"), "{text}");
                assert!(text.contains("atollctl change-membership"), "{text}");
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
                &[info(1, OURS, true, 9, 3), down(2), down(4), down(5)]
            ),
            Verdict::Refuse(Refusal::ClusterExists { .. })
        ));
        // A peer whose data dir predates cluster ids still counts.
        assert!(matches!(
            decide(3, OURS, 3, &[info(1, UNKNOWN, true, 9, 3), down(2)]),
            Verdict::Refuse(Refusal::ClusterExists { .. })
        ));
    }

    #[test]
    fn a_peer_of_another_cluster_or_another_node_is_refused() {
        assert!(matches!(
            decide(1, OURS, 3, &[info(2, 0x999, true, 1, 1), fresh(3)]),
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
